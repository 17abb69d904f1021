"""Browsing a Dramatiq queue: one page of a state, or one message, read from Redis on demand.

O(limit) per page except where noted (delayed messages are sorted by eta up to SORTABLE_DELAYED).
Payloads are decoded in budgeted decoder processes (codec.py), never on the event loop.
"""

from __future__ import annotations

import dataclasses

from redis.asyncio import Redis

from callboard.collectors import decoding
from callboard.collectors.dramatiq.codec import (
    detail_of,
    result_of,
    summary,
    unreadable_detail,
    unreadable_result,
    unreadable_summary,
)
from callboard.collectors.dramatiq.config import ResultsConfig
from callboard.collectors.dramatiq.keys import AckKey, QueueKeys, result_key
from callboard.collectors.keyspace import text as _text
from callboard.collectors.model import (
    JobDetail,
    JobPage,
    JobResult,
    JobSummary,
    page_of,
)

#: Above this many delayed messages the delayed tab is shown in storage order, not sorted by eta.
SORTABLE_DELAYED = 10_000


#: Tabs of a Dramatiq queue page, in order.
BROWSE_STATES = ("ready", "in_flight", "delayed", "dead")


async def list_jobs(
    redis: Redis, q: QueueKeys, state: str, offset: int, limit: int, acks: list[AckKey]
) -> JobPage:
    """One page of a state, read on demand. O(limit) per page, except where noted."""
    if state == "ready":
        total, ids = await _range(redis, "llen", q.ready, "lrange", q.ready, offset, offset + limit - 1)
        raws = await _hmget(redis, q.msgs, ids)
        items = await _summaries([(rid, "ready", raw) for rid, raw in zip(ids, raws, strict=True)])
        return page_of(state, items, total, offset, limit, "FIFO: next to run first")
    if state == "dead":
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zcard(q.dead)
            pipe.zrevrange(q.dead, offset, offset + limit - 1, withscores=True)
            total, rows = await pipe.execute()
        ids = [_text(m) for m, _ in rows]
        raws = await _hmget(redis, q.dead_msgs, ids)
        items = await _summaries(
            [
                (rid, "dead", raw, score / 1000.0)
                for (rid, raw), (_, score) in zip(zip(ids, raws, strict=True), rows, strict=True)
            ]
        )
        return page_of(state, items, int(total), offset, limit, "newest dead letter first")
    if state == "delayed":
        return await _delayed_page(redis, q, offset, limit)
    if state == "in_flight":
        return await _in_flight_page(redis, q, offset, limit, acks)
    raise ValueError(f"unknown state {state!r}")


async def _delayed_page(redis: Redis, q: QueueKeys, offset: int, limit: int) -> JobPage:
    total = int(await redis.hlen(q.delay_msgs))  # type: ignore[misc]  # redis-py's async stubs
    if total <= SORTABLE_DELAYED:
        # O(delayed) with a bounded size: HGETALL of at most 10k payloads (~10 ms), summarised in a
        # decoder process (~0.3 s for 10k), sorted by eta.
        entries = await redis.hgetall(q.delay_msgs)  # type: ignore[misc]
        items = await _summaries([(_text(rid), "delayed", raw) for rid, raw in entries.items()])
        items.sort(key=lambda s: (s.eta is None, s.eta or 0.0, s.job_id))
        return page_of(
            "delayed", items[offset : offset + limit], total, offset, limit, "by eta, soonest first"
        )
    # Too many to sort on a request: walk the hash in storage order, at most offset + limit entries.
    items = []
    cursor = 0
    while len(items) < offset + limit:
        cursor, chunk = await redis.hscan(q.delay_msgs, cursor=cursor, count=max(limit, 100))
        items += await _summaries([(_text(rid), "delayed", raw) for rid, raw in chunk.items()])
        if cursor == 0:
            break
    note = f"More than {SORTABLE_DELAYED:,} delayed messages: shown in storage order, not sorted by eta."
    return page_of("delayed", items[offset : offset + limit], total, offset, limit, "storage order", note)


async def _in_flight_page(redis: Redis, q: QueueKeys, offset: int, limit: int, acks: list[AckKey]) -> JobPage:
    # Ack sets hold at most the prefetch of each worker (2 x threads), so reading them whole is cheap.
    held: list[tuple[str, str]] = []
    async with redis.pipeline(transaction=False) as pipe:
        for ack in acks:
            if not ack.delayed:
                pipe.smembers(ack.key)
        replies = await pipe.execute()
    for ack, members in zip([a for a in acks if not a.delayed], replies, strict=True):
        held += sorted((_text(m), ack.worker) for m in members)
    page = held[offset : offset + limit]
    raws = await _hmget(redis, q.msgs, [rid for rid, _ in page])
    items = await _summaries([(rid, "in_flight", raw) for (rid, _), raw in zip(page, raws, strict=True)])
    return page_of(
        "in_flight",
        items,
        len(held),
        offset,
        limit,
        "by worker",
        "Running and prefetched messages, from the ack sets discovery has found; the count above is exact.",
    )


async def get_job(
    redis: Redis,
    q: QueueKeys,
    rid: str,
    acks: list[AckKey],
    results: ResultsConfig | None = None,
    results_redis: Redis | None = None,
) -> JobDetail | None:
    """Everything stored about one message, wherever it is now; None when it is gone."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(q.msgs, rid)
        pipe.hget(q.delay_msgs, rid)
        pipe.hget(q.dead_msgs, rid)
        pipe.zscore(q.dead, rid)
        for ack in acks:
            pipe.sismember(ack.key, rid)
        live, delayed, dead, dead_score, *held = await pipe.execute()
    holder = next((a.worker for a, h in zip(acks, held, strict=True) if h), None)
    if dead is not None:
        state, raw = "dead", dead
    elif delayed is not None:
        state, raw = "delayed", delayed
    elif live is not None:
        state, raw = ("in_flight" if holder else "ready"), live
    else:
        return None
    return await _detail(redis, q, rid, state, raw, holder, dead_score, results, results_redis)


async def _detail(
    redis: Redis,
    q: QueueKeys,
    rid: str,
    state: str,
    raw: bytes,
    holder: str | None,
    dead_score: float | None,
    results: ResultsConfig | None,
    results_redis: Redis | None,
) -> JobDetail:
    [detail] = await decoding.run(
        detail_of, [(q.ready, rid, state, raw, holder, dead_score)], unreadable_detail
    )
    message_id = next((value for label, value in detail.ids if label == "message id"), None)
    if results is None or detail.undecodable is not None or not message_id or not detail.name:
        return detail
    result = await read_result(results_redis or redis, results, q.queue, detail.name, message_id)
    return dataclasses.replace(detail, result=result)


async def read_result(
    redis: Redis, config: ResultsConfig, queue: str, actor: str, message_id: str
) -> JobResult | None:
    key = result_key(config, queue, actor, message_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lindex(key, 0)
        pipe.pttl(key)
        raw, pttl = await pipe.execute()
    if raw is None:
        return None
    ttl = int(pttl) / 1000.0 if int(pttl) >= 0 else None
    [result] = await decoding.run(result_of, [(key, raw, ttl)], unreadable_result)
    return result


async def _summaries(
    calls: list[tuple[str, str, bytes | None] | tuple[str, str, bytes | None, float]],
) -> list[JobSummary]:
    return await decoding.run(summary, calls, unreadable_summary)


async def _range(
    redis: Redis, count_cmd: str, count_key: str, range_cmd: str, key: str, start: int, stop: int
) -> tuple[int, list[str]]:
    async with redis.pipeline(transaction=False) as pipe:
        getattr(pipe, count_cmd)(count_key)
        getattr(pipe, range_cmd)(key, start, stop)
        total, ids = await pipe.execute()
    return int(total), [_text(i) for i in ids]


async def _hmget(redis: Redis, key: str, fields: list[str]) -> list[bytes | None]:
    if not fields:
        return []
    values: list[bytes | None] = await redis.hmget(key, fields)  # type: ignore[misc]
    return values
