"""Failure fingerprints and the incremental group index (collectors/failures.py)."""

from __future__ import annotations

import pytest

from callboard.collectors.failures import (
    MIN_SPARK_SPAN,
    NO_TRACEBACK,
    SPARK_BARS,
    TIME_BUCKET,
    Failure,
    FailureIndex,
    _bars,
    _expiring,
    group_key,
    normalise,
    split_exception,
)
from callboard.collectors.model import Bound, Framework


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        ("card 4242 declined for order 'A-17'", "card <n> declined for order <str>"),
        ('user "bob" not found', "user <str> not found"),
        ("job 9f1c2e7a-1b2c-4d5e-8f90-123456789abc expired", "job <id> expired"),
        ("object at 0x7f3a2b1c gone", "object at <id> gone"),
        ("sha deadbeef12345678 mismatch", "sha <id> mismatch"),
        ("query for rpt_a9ff3f1 exceeded", "query for rpt_<id> exceeded"),
        # Six hex digits are the shortest id; five are not one (their digits are numbers).
        ("token a1b2c3 rejected", "token <id> rejected"),
        ("token a1b2c rejected", "token a<n>b<n>c rejected"),
        ("refund for ord_123 refused", "refund for ord_<n> refused"),
        ("took 12.5s, limit 10s", "took <n>s, limit <n>s"),
        ("at 10:04:54 on 2026-11-21", "at <n> on <n>-<n>-<n>"),
        ("invalid order id -3", "invalid order id <n>"),
        ("  spaced \n  out  ", "spaced out"),
        # Words that merely look like hex stay: they vary between causes, not occurrences.
        ("decade facade", "decade facade"),
    ],
)
def test_normalise_replaces_what_varies(message: str, pattern: str) -> None:
    assert normalise(message) == pattern


def test_same_cause_different_values_share_a_pattern_but_not_different_causes() -> None:
    assert normalise("card 4242 declined for order 'A-17'") == normalise("card 1 declined for order 'B'")
    assert normalise("card 4242 declined") != normalise("card 4242 expired")


@pytest.mark.parametrize(
    ("line", "parts"),
    [
        ("ValueError: bad 3", ("ValueError", "bad 3")),
        ("app.errors.PaymentDeclined: card: declined", ("app.errors.PaymentDeclined", "card: declined")),
        (
            "dramatiq.middleware.time_limit.TimeLimitExceeded",
            ("dramatiq.middleware.time_limit.TimeLimitExceeded", ""),
        ),
        (None, (NO_TRACEBACK, "")),
        ("", (NO_TRACEBACK, "")),
        ("something odd happened", ("?", "something odd happened")),
    ],
)
def test_split_exception(line: str | None, parts: tuple[str, str]) -> None:
    assert split_exception(line) == parts


def failure(job_id: str, message: str, at: float, queue: str = "q", name: str = "charge") -> Failure:
    return Failure(job_id, queue, name, "ValueError", message, at, at + 3600)


def test_groups_count_queues_bounds_and_example() -> None:
    index = FailureIndex(Framework.DRAMATIQ)
    now = 10_000.0
    index.add(failure("a", "order 1 bad", now - 300, "q1"))
    index.add(failure("b", "order 2 bad", now - 200, "q2"))
    index.add(failure("c", "order 3 bad", now - 100, "q2"))
    index.add(failure("d", "disk full", now - 50, "q1"))
    index.add(failure("e", "order 4 bad", now - 10, "q1", name="refund"))  # other actor: other group
    groups = {(g.name, g.pattern): g for g in index.report(now)}
    assert set(groups) == {("charge", "order <n> bad"), ("charge", "disk full"), ("refund", "order <n> bad")}
    g = groups[("charge", "order <n> bad")]
    assert (g.count, g.first_seen, g.last_seen) == (3, now - 300, now - 100)
    assert g.queues == (("q2", 2), ("q1", 1))
    assert g.example == ("q2", "c")
    assert sum(g.spark) == 3 and len(g.spark) == SPARK_BARS
    assert (g.expiring_hour, g.expiring_day) == (3, 3)
    assert index.members(g.key) == {"q2": ["c", "b"], "q1": ["a"]}
    assert index.count("q1") == 3 and sorted(index.ids("q1")) == ["a", "d", "e"]
    assert sorted(index.ids("q2")) == ["b", "c"] and index.ids("q3") == []


def test_a_groups_members_as_the_operator_saw_them() -> None:
    """The failures page sends the group's count and newest failure time with "Requeue all (N)":
    failures after that time are left out, then at most N of the rest, newest first."""
    index = FailureIndex(Framework.DRAMATIQ)
    now = 10_000.0
    for job_id, at, queue in (("a", now - 300, "q1"), ("b", now - 200, "q2"), ("c", now - 100, "q2")):
        index.add(failure(job_id, "order 1 bad", at, queue))
    key = index.report(now)[0].key
    index.add(failure("late", "order 9 bad", now + 5, "q1"))  # failed after the page was drawn
    assert index.members(key, Bound(count=3, before=now - 100)) == {"q2": ["c", "b"], "q1": ["a"]}
    assert index.members(key, Bound(count=2, before=now - 100)) == {"q2": ["c", "b"]}
    assert index.members(key, Bound(count=5)) == {"q1": ["late", "a"], "q2": ["c", "b"]}
    assert index.members(key, Bound(count=0)) == {}
    assert index.members(key) == {"q1": ["late", "a"], "q2": ["c", "b"]}


def test_removal_moves_counts_bounds_and_drops_empty_groups() -> None:
    index = FailureIndex(Framework.ARQ)
    now = 10_000.0
    for i in range(5):
        index.add(failure(f"j{i}", f"order {i} bad", now - 100 + i))
    key = index.report(now)[0].key
    index.remove("j4")  # the newest: bounds recomputed at the next report
    index.remove("j0")  # the oldest
    index.remove("missing")  # unknown ids are ignored
    (g,) = index.report(now)
    assert (g.count, g.first_seen, g.last_seen, g.example[1]) == (3, now - 99, now - 97, "j3")
    for job_id in ("j1", "j2", "j3"):
        index.remove(job_id)
    assert index.report(now) == () and index.members(key) == {} and len(index) == 0


def test_re_adding_an_id_replaces_it() -> None:
    index = FailureIndex(Framework.ARQ)
    index.add(failure("x", "order 1 bad", 1.0))
    index.add(failure("x", "timeout after 5 s", 2.0))
    (g,) = index.report(3.0)
    assert (g.pattern, g.count) == ("timeout after <n> s", 1)


def test_a_full_index_refuses_and_counts() -> None:
    index = FailureIndex(Framework.DRAMATIQ, limit=2)
    assert index.add(failure("a", "x", 1.0)) and index.add(failure("b", "x", 1.0))
    assert not index.add(failure("c", "x", 1.0))
    assert (len(index), index.dropped, index.full) == (2, 1, True)


def test_report_is_reused_until_something_changes() -> None:
    index = FailureIndex(Framework.DRAMATIQ)
    index.add(failure("a", "x", 1.0))
    first = index.report(100.0)
    assert index.report(101.0) is first
    index.add(failure("b", "x", 2.0))
    assert index.report(101.0)[0].count == 2


def test_expiry_buckets() -> None:
    index = FailureIndex(Framework.ARQ)
    now = 100_000.0
    index.add(Failure("soon", "q", "f", "E", "", now - 10, now + 600))
    index.add(Failure("today", "q", "f", "E", "", now - 10, now + 7200))
    index.add(Failure("later", "q", "f", "E", "", now - 10, now + 3 * 86400))
    index.add(Failure("never", "q", "f", "E", "", now - 10, None))
    (g,) = index.report(now)
    assert (g.expiring_hour, g.expiring_day, g.count) == (1, 2, 4)
    assert g.next_expiry is not None and now + 540 <= g.next_expiry <= now + 600


# -- what mutation testing found unchecked (docs/testing.md §2) ------------------------------------------


def test_only_the_first_1000_characters_count_and_a_pattern_keeps_300() -> None:
    # A quoted value that closes at the 1000th character is one value; what follows is never read.
    quoted = "'" + "a" * 998 + "'"
    assert normalise(quoted + "5 more") == "<str>"
    assert normalise(quoted + "5") == normalise(quoted + "6") == "<str>"
    assert normalise("word " * 100) == "word " * 60  # stripped, then cut to 300 characters
    assert len(normalise("w" * 400)) == 300


def test_group_keys_are_12_hex_digits_of_every_part() -> None:
    key = group_key(Framework.ARQ, "charge", "ValueError", "bad <n>")
    assert len(key) == 12 and int(key, 16) >= 0
    assert key == group_key(Framework.ARQ, "charge", "ValueError", "bad <n>")
    others = {
        group_key(Framework.DRAMATIQ, "charge", "ValueError", "bad <n>"),
        group_key(Framework.ARQ, "refund", "ValueError", "bad <n>"),
        group_key(Framework.ARQ, "charge", "KeyError", "bad <n>"),
        group_key(Framework.ARQ, "charge", "ValueError", "bad"),
        group_key(Framework.ARQ, "charg", "eValueError", "bad <n>"),  # parts are kept apart
    }
    assert key not in others and len(others) == 5


def test_samples_name_the_exception_and_keep_500_characters() -> None:
    index = FailureIndex(Framework.ARQ)
    index.add(Failure("a", "q", "f", "TimeoutError", "", 1.0, None))
    index.add(Failure("b", "q", "g", "ValueError", "x" * 600, 1.0, None))
    samples = {g.name: g.sample for g in index.report(100.0)}
    assert samples["f"] == "TimeoutError"
    assert samples["g"] == "ValueError: " + "x" * 488 and len(samples["g"]) == 500


def test_removals_move_every_counter_of_the_group() -> None:
    index = FailureIndex(Framework.DRAMATIQ)
    now = 10_000.0
    index.add(failure("a", "order 1 bad", now - 300, "q1"))
    for job_id, at in (("b", now - 200), ("c", now - 100), ("d", now - 50)):
        index.add(failure(job_id, "order 2 bad", at, "q2"))
    index.add(Failure("e", "q2", "charge", "ValueError", "order 3 bad", None, None))  # no times known
    index.remove("a")  # the oldest, and q1's only failure
    index.remove("c")  # neither oldest nor newest
    index.remove("e")
    (g,) = index.report(now)
    assert (g.count, g.first_seen, g.last_seen, g.example) == (2, now - 200, now - 50, ("q2", "d"))
    assert g.queues == (("q2", 2),)
    assert (index.count("q1"), index.count("q2"), index.count("never")) == (0, 2, 0)
    assert sum(g.spark) == 2 and (g.expiring_hour, g.expiring_day) == (2, 2)
    assert sorted(index.ids("q2")) == ["b", "d"] and index.ids("q1") == []


def test_bounds_forgotten_by_a_removal_are_rebuilt_from_every_member() -> None:
    index = FailureIndex(Framework.ARQ)
    for job_id, at in (("a", 100.0), ("b", 200.0), ("c", 300.0)):
        index.add(failure(job_id, "x", at))
    index.remove("c")  # the newest: the bounds are recomputed at the next report...
    index.add(failure("d", "x", 250.0))  # ... not taken from the one failure added meanwhile
    (g,) = index.report(1000.0)
    assert (g.first_seen, g.last_seen, g.example[1]) == (100.0, 250.0, "d")


def test_groups_are_listed_largest_then_latest_first() -> None:
    index = FailureIndex(Framework.ARQ)
    index.add(failure("a1", "a", 100.0))
    index.add(failure("b1", "b", 300.0))
    index.add(failure("b2", "b", 301.0))
    index.add(failure("c1", "c", 500.0))
    index.add(failure("d1", "d", 400.0))
    index.add(Failure("e1", "q", "charge", "ValueError", "e", None, None))
    assert [g.pattern for g in index.report(1000.0)] == ["b", "c", "d", "a", "e"]


def test_a_report_is_rebuilt_after_its_maximum_age() -> None:
    index = FailureIndex(Framework.DRAMATIQ)
    index.add(failure("a", "x", 1.0))
    first = index.report(100.0)
    assert index.report(129.9) is first
    assert index.report(130.0) is not first
    assert index.report(1000.0)[0].spark_span == 999.0  # recomputed with the new time


def test_the_sparkline_spans_ten_minutes_or_back_to_the_first_failure() -> None:
    index = FailureIndex(Framework.ARQ)
    index.add(failure("recent", "recent", 9_900.0))
    index.add(failure("old", "old", 10_000.0 - 7_200))
    index.add(Failure("untimed", "q", "charge", "ValueError", "untimed", None, None))
    spans = {g.pattern: g.spark_span for g in index.report(10_000.0)}
    assert spans == {"recent": 600.0, "old": 7_200.0, "untimed": 600.0}


def test_sparkline_bars_place_each_failure_by_its_time() -> None:
    # 30 bars over 600 s ending at `now`: 20 s each, from start = 9405. A failure counts at the middle
    # of its 10 s bucket: 9400..9409.9 -> 9405 (the first bar, exactly at the start); 9395 -> 9395
    # (before the start: not shown); 9424 -> 9425 (bar 1); `now` itself -> the last bar.
    now = 10_005.0
    buckets = [(int(t // TIME_BUCKET), 1) for t in (9_395.0, 9_400.0, 9_409.0, 9_424.0, now)]
    bars = _bars(buckets, now, MIN_SPARK_SPAN)
    assert bars[0] == 2 and bars[1] == 1 and bars[-1] == 1 and sum(bars) == 4
    # A span that is no multiple of 30 (1000 s: bars of 33.3 s): 9665 is 660 s in, in bar 19, not 20.
    spark = _bars([(900, 1), (966, 1)], now, 1000.0)
    assert spark[0] == 1 and spark[19] == 1 and sum(spark) == 2


def test_expiry_counts_include_their_bounds() -> None:
    # Expiry times are kept by the minute (the bucket's start): now = 6000 -> buckets 160 and 1540.
    assert _expiring([(160, 1), (161, 2), (1540, 4), (1541, 8)], 6_000.0) == (1, 7, 9_600.0)
    # One second past a bound is outside it.
    assert _expiring([(160, 1), (1540, 4)], 5_999.0) == (0, 1, 9_600.0)
    assert _expiring([], 6_000.0) == (0, 0, None)
