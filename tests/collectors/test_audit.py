"""README: each control ends with an audit entry "in Redis under `callboard:audit` (a list trimmed to
`audit_keep` entries, Callboard's only key)". `collectors.audit.append` writes them; here on real Redis
and Valkey, past a small keep and past the default one."""

from __future__ import annotations

import datetime as dt
import json

import redis
from redis.asyncio import Redis

from callboard.collectors import audit
from callboard.dashboard.settings import Settings


async def append_many(aredis: Redis, first: int, count: int, keep: int) -> None:
    """Entries `{"n": first}` .. `{"n": first + count - 1}`, in order, each through `append`."""
    for n in range(first, first + count):
        await audit.append(aredis, {"n": n, "action": "retry"}, keep)


async def test_audit_list_keeps_the_newest_entries_up_to_keep(aredis: Redis, sync_redis: redis.Redis) -> None:
    """keep = 5: at 5 entries nothing is dropped; 3 more drop the 3 oldest, newest first."""
    await append_many(aredis, 1, 5, keep=5)
    assert sync_redis.llen(audit.AUDIT_KEY) == 5
    assert [e["n"] for e in await audit.recent(aredis, 100)] == [5, 4, 3, 2, 1]
    await append_many(aredis, 6, 3, keep=5)
    assert sync_redis.llen(audit.AUDIT_KEY) == 5
    assert [e["n"] for e in await audit.recent(aredis, 100)] == [8, 7, 6, 5, 4]
    assert sync_redis.dbsize() == 1 and sync_redis.exists(audit.AUDIT_KEY) == 1


async def test_audit_list_is_trimmed_at_the_default_10000(aredis: Redis, sync_redis: redis.Redis) -> None:
    """With the default keep (Settings.audit_keep, 10,000), the 10,000th entry is kept and the
    10,001st drops the first. The first 9,999 are written as `append` writes them (JSON, LPUSH), in
    one pipeline: 10,001 transactions one by one would cost seconds per server kind."""
    keep = Settings().audit_keep
    assert keep == 10_000
    with sync_redis.pipeline(transaction=False) as pipe:
        for n in range(1, keep):
            pipe.lpush(audit.AUDIT_KEY, json.dumps({"n": n, "action": "retry"}))
        pipe.execute()
    await append_many(aredis, keep, 1, keep)
    assert sync_redis.llen(audit.AUDIT_KEY) == keep
    await append_many(aredis, keep + 1, 1, keep)
    assert sync_redis.llen(audit.AUDIT_KEY) == keep
    entries = await audit.recent(aredis, keep + 10)
    assert [e["n"] for e in entries] == list(range(keep + 1, 1, -1))


async def test_recent_returns_the_newest_limit_entries(aredis: Redis) -> None:
    await append_many(aredis, 1, 6, keep=100)
    assert [e["n"] for e in await audit.recent(aredis, 3)] == [6, 5, 4]
    assert [e["n"] for e in await audit.recent(aredis, 1)] == [6]


async def test_recent_skips_entries_it_cannot_read(aredis: Redis, sync_redis: redis.Redis) -> None:
    """The list is ours, but a hand edit (or another tool) may leave anything in it: what is not a JSON
    object is skipped, and the entries around it still come back in order. The /audit page must not
    fail on it."""
    await append_many(aredis, 1, 1, keep=100)
    odd = [b"not json", b"\xff\xfe\x00", b"[1, 2]", b"42", b'"text"', b"null", b"", b"[" * 100_000]
    odd.append(b"[" * 100_000 + b"]" * 100_000)  # valid JSON, nested past the parser's recursion limit
    sync_redis.lpush(audit.AUDIT_KEY, *odd)
    await append_many(aredis, 2, 1, keep=100)
    assert await audit.recent(aredis, 100) == [{"n": 2, "action": "retry"}, {"n": 1, "action": "retry"}]


async def test_names_that_are_not_utf8_are_stored_as_ascii_and_read_back_exactly(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    """A queue or id read from Redis with surrogateescape (bytes that are not UTF-8) holds lone
    surrogates: the entry is stored as ASCII JSON and comes back equal; what JSON cannot hold is a
    string."""
    entry = {"queue": "q\udcff", "ids": ["\udc80a", "é"], "at": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)}
    await audit.append(aredis, entry, keep=10)
    raw = sync_redis.lindex(audit.AUDIT_KEY, 0)
    assert isinstance(raw, bytes) and raw.isascii()
    assert await audit.recent(aredis, 10) == [{**entry, "at": "2024-01-02 00:00:00+00:00"}]


async def test_a_large_selection_keeps_its_first_ids_and_their_count(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    """An entry past MAX_ENTRY_BYTES (a control over thousands of ids) keeps the first 100 ids and says
    how many there were; one under it keeps them all."""
    small = [f"job-{i:05d}" for i in range(500)]
    large = [f"job-{i:05d}" for i in range(5000)]
    assert len(json.dumps(small)) < audit.MAX_ENTRY_BYTES < len(json.dumps(large))
    await audit.append(aredis, {"action": "delete", "ids": small}, keep=10)
    await audit.append(aredis, {"action": "delete", "ids": large}, keep=10)
    newest, older = await audit.recent(aredis, 10)
    assert newest == {"action": "delete", "ids": large[:100], "ids_truncated": 5000}
    assert older == {"action": "delete", "ids": small}
    stored = sync_redis.lindex(audit.AUDIT_KEY, 0)
    assert isinstance(stored, bytes) and len(stored) <= audit.MAX_ENTRY_BYTES
