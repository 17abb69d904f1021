"""The Arq results index's bookkeeping: counts, expiry by TTL (a heap, not a walk per cycle), passes."""

from __future__ import annotations

from callboard.collectors.arq.results import ResultEntry, ResultIndex
from callboard.collectors.flow import bucket


def entry(ok: bool = True, expires_at: float | None = 100.0, queue: str = "arq:queue") -> ResultEntry:
    return ResultEntry(queue, "f", ok, 1.0, expires_at, None if ok else "ValueError: x")


def test_expire_removes_only_entries_whose_ttl_ran_out() -> None:
    index = ResultIndex()
    index.add("a", entry(expires_at=10.0))
    index.add("b", entry(ok=False, expires_at=20.0))
    index.add("forever", entry(expires_at=None))  # keep_result_forever: never expires
    index.expire(now=15.0)
    assert set(index.entries) == {"b", "forever"}
    assert index.counts[("arq:queue", "succeeded")] == 1
    assert index.counts[("arq:queue", "failed")] == 1
    index.expire(now=1e9)
    assert set(index.entries) == {"forever"}
    assert index.counts[("arq:queue", "failed")] == 0


def test_a_re_added_entry_keeps_its_new_ttl() -> None:
    index = ResultIndex()
    index.add("a", entry(ok=False, expires_at=10.0))
    index.add("a", entry(ok=True, expires_at=50.0))  # same id re-read with a later TTL
    index.expire(now=20.0)  # pops the stale (10.0, "a") item, which must not remove the new entry
    assert index.entries["a"].expires_at == 50.0
    assert index.counts[("arq:queue", "succeeded")] == 1
    assert index.counts[("arq:queue", "failed")] == 0
    index.expire(now=50.0)
    assert not index.entries


def test_end_pass_forgets_unseen_keys_and_compacts_the_heap() -> None:
    index = ResultIndex()
    for i in range(3000):
        index.add(f"j{i}", entry(expires_at=1000.0 + i))
    index.seen_in_pass = {"j0", "j1"}
    index.end_pass()
    assert set(index.entries) == {"j0", "j1"}
    assert len(index.expiry) == 2  # stale items of the 2,998 forgotten entries dropped
    assert index.complete
    index.expire(now=1000.5)
    assert set(index.entries) == {"j1"}


def timed(ok: bool, finished: float, started: float, enqueued: float, function: str = "f") -> ResultEntry:
    error = None if ok else "ValueError: x"
    return ResultEntry("arq:queue", function, ok, finished, finished + 3600, error, None, started, enqueued)


def test_flow_estimates_follow_the_results_in_and_out() -> None:
    index = ResultIndex()
    minute = 29_000_000
    at = minute * 60.0 + 10
    index.add("a", timed(True, at, at - 0.3, at - 1.0))  # ran 0.3 s, waited 0.7 s
    index.add("b", timed(True, at + 5, at + 4.97, at + 4.9))  # ran 30 ms, waited 70 ms
    index.add("c", timed(False, at + 70, at + 69.9, at + 69.0))  # the next minute
    [(m1, first), (m2, second)] = sorted(index.flow_since(minute).items())
    assert (m1, m2) == (minute, minute + 1)
    [tally] = first.values()
    assert tally.outcomes == {"succeeded": 2} and tally.runs == 2
    assert tally.durations[bucket(0.3)] == 1 and tally.durations[bucket(0.03)] == 1
    assert tally.waits[bucket(0.7)] == 1 and tally.waits[bucket(0.07)] == 1
    assert [t.outcomes for t in second.values()] == [{"failed": 1}]
    # A result that goes (expired, deleted, re-run) takes its part back; an empty minute disappears.
    index.remove("c")
    assert list(index.flow_since(minute)) == [minute]
    index.add("a", timed(True, at, at - 0.3, at - 1.0))  # re-read: replaces, never counts twice
    assert index.flow_since(minute)[minute][next(iter(first))].outcomes == {"succeeded": 2}
    # The snapshot's copy does not move when the index does.
    copy = index.flow_since(minute)
    index.remove("a")
    assert next(iter(copy[minute].values())).outcomes == {"succeeded": 2}
    assert next(iter(index.flow_since(minute)[minute].values())).outcomes == {"succeeded": 1}


def test_results_without_times_or_a_queue_estimate_nothing() -> None:
    index = ResultIndex()
    index.add("x", ResultEntry("?", "f", True, 100.0, None, None))
    index.add("y", ResultEntry("arq:queue", "f", True, None, None, None))
    assert index.flow == {}


def test_pages_are_newest_first_per_queue_and_outcome_and_follow_every_change() -> None:
    """The succeeded and failed tabs read pages of an ordered index kept in step by add, re-add,
    remove and expiry: never a filter and sort of every result."""
    from dataclasses import replace

    index = ResultIndex()
    for i in range(10):
        index.add(f"ok{i}", replace(entry(), finished_at=float(i)))
        index.add(f"bad{i}", replace(entry(ok=False), finished_at=float(i), expires_at=None))
    index.add("other", replace(entry(queue="other"), finished_at=99.0))
    total, page = index.page("arq:queue", True, 0, 3)
    assert total == 10 and [j for j, _ in page] == ["ok9", "ok8", "ok7"]
    assert [j for j, _ in index.page("arq:queue", True, 8, 5)[1]] == ["ok1", "ok0"]
    index.add("ok0", replace(entry(), finished_at=50.0))  # re-run: it moves to the top
    index.add("bad9", replace(entry(), finished_at=9.5))  # now a success: it changes tabs
    index.remove("ok5")
    assert [j for j, _ in index.page("arq:queue", True, 0, 3)[1]] == ["ok0", "bad9", "ok9"]
    assert index.page("arq:queue", True, 0, 100)[0] == 10
    assert [j for j, _ in index.page("arq:queue", False, 0, 2)[1]] == ["bad8", "bad7"]
    index.expire(now=1e9)  # every success expires (the failures keep no TTL)
    assert index.page("arq:queue", True, 0, 10) == (0, [])
    assert index.page("other", True, 0, 10) == (0, [])
    assert index.page("arq:queue", False, 0, 100)[0] == 9
    assert index.page("nowhere", False, 0, 10) == (0, [])
