"""The Arq results index's bookkeeping: counts, expiry by TTL (a heap, not a walk per cycle), passes."""

from __future__ import annotations

from callboard.collectors.arq.results import ResultEntry, ResultIndex


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
