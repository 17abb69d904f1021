"""Failure fingerprints and the incremental group index (collectors/failures.py)."""

from __future__ import annotations

import pytest

from callboard.collectors.failures import (
    NO_TRACEBACK,
    SPARK_BARS,
    Failure,
    FailureIndex,
    normalise,
    split_exception,
)
from callboard.collectors.model import Framework


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
