"""README: each control ends with an audit entry "in Redis under `callboard:audit` (a list trimmed to
10,000 entries, Callboard's only key)". `collectors.audit.append` writes them; here on real Redis
and Valkey, past a small keep and past the default one."""

from __future__ import annotations

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
