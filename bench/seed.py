"""Write Dramatiq's Redis layout directly, fast, with pipelines (docs/dramatiq-redis.md §1).

Going through `RedisBroker.enqueue` costs one EVALSHA per message (~26 s for 100k); writing the same
keys in batches takes about a second. Key names are spelled out here on purpose, independently of
`collectors.dramatiq`, so a mistake in the collector's key names shows up as wrong counts.

Per queue Q in namespace N, with W the seeded worker's broker id:
    ready      RPUSH N:Q rid           + HSET N:Q.msgs rid json
    in flight  SADD N:__acks__.W.Q rid + HSET N:Q.msgs rid json   (fetched, not acked)
    delayed    HSET N:Q.DQ.msgs rid json (queue_name Q.DQ, options.eta); the N:Q.DQ list stays empty,
               as it is while a worker holds delayed messages in memory
    dead       ZADD N:Q.XQ ms rid      + HSET N:Q.XQ.msgs rid json
and one heartbeat: ZADD N:__heartbeats__ ms W.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

#: Messages per RPUSH / HSET command.
CHUNK = 1000
#: Commands queued before a pipeline is sent.
FLUSH_EVERY = 64

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/tasks.py", line 42, in bench_actor\n'
    "    raise RuntimeError('bench failure')\n"
    "RuntimeError: bench failure\n"
)


@dataclass(frozen=True, slots=True)
class QueueSeed:
    queue: str
    ready: int
    in_flight: int = 0
    delayed: int = 0
    dead: int = 0

    @property
    def messages(self) -> int:
        return self.ready + self.in_flight + self.delayed + self.dead


@dataclass(frozen=True, slots=True)
class Layout:
    """What one database holds: queues of one namespace and one live-looking worker."""

    namespace: str
    queues: tuple[QueueSeed, ...]
    worker: str = "0b5e7a1c-4d2f-4e8a-9c3b-6f1d2e3a4b5c"

    @property
    def messages(self) -> int:
        return sum(q.messages for q in self.queues)

    def key(self, queue: str) -> str:
        return f"{self.namespace}:{queue}"


def payload(queue_name: str, rid: str, index: int, now_ms: int, options: dict[str, Any] | None = None) -> str:
    """A message as Dramatiq 2.x encodes it: compact JSON, `redis_message_id` in the options."""
    message = {
        "queue_name": queue_name,
        "actor_name": "bench_actor",
        "args": [index, f"item-{index}"],
        "kwargs": {"priority": index % 3},
        "options": {"redis_message_id": rid, **(options or {})},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": now_ms - 1000,
    }
    return json.dumps(message, separators=(",", ":"))


class Writer:
    """A non-transactional pipeline that sends itself every `flush_every` commands."""

    def __init__(self, redis: Redis, flush_every: int = FLUSH_EVERY) -> None:
        self.redis = redis
        self.flush_every = flush_every
        self.pipe: Pipeline = redis.pipeline(transaction=False)
        self.pending = 0
        self.round_trips = 0

    async def add(self, command: str, *args: Any, **kwargs: Any) -> None:
        getattr(self.pipe, command)(*args, **kwargs)
        self.pending += 1
        if self.pending >= self.flush_every:
            await self.flush()

    async def flush(self) -> None:
        if self.pending:
            await self.pipe.execute()
            self.round_trips += 1
            self.pending = 0

    async def close(self) -> None:
        await self.flush()  # execute() resets the pipeline; nothing else to release


def _rids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


async def seed(redis: Redis, layout: Layout) -> dict[str, Any]:
    """Write `layout` into the (empty) database of `redis`; returns what was written and how fast."""
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    ns = layout.namespace
    w = Writer(redis)
    for q in layout.queues:
        main = layout.key(q.queue)
        for start in range(0, q.ready, CHUNK):
            rids = _rids(min(CHUNK, q.ready - start))
            msgs = {rid: payload(q.queue, rid, start + i, now_ms) for i, rid in enumerate(rids)}
            await w.add("hset", f"{main}.msgs", mapping=msgs)
            await w.add("rpush", main, *rids)
        if q.in_flight:
            rids = _rids(q.in_flight)
            await w.add(
                "hset",
                f"{main}.msgs",
                mapping={r: payload(q.queue, r, i, now_ms) for i, r in enumerate(rids)},
            )
            await w.add("sadd", f"{ns}:__acks__.{layout.worker}.{q.queue}", *rids)
        for start in range(0, q.delayed, CHUNK):
            rids = _rids(min(CHUNK, q.delayed - start))
            options = {
                "eta": now_ms + 3_600_000,
                "retries": 1,
                "traceback": TRACEBACK,
                "requeue_timestamp": now_ms,
            }
            msgs = {r: payload(f"{q.queue}.DQ", r, start + i, now_ms, options) for i, r in enumerate(rids)}
            await w.add("hset", f"{main}.DQ.msgs", mapping=msgs)
        for start in range(0, q.dead, CHUNK):
            rids = _rids(min(CHUNK, q.dead - start))
            options = {"retries": 20, "traceback": TRACEBACK, "requeue_timestamp": now_ms - 60_000}
            msgs = {r: payload(q.queue, r, start + i, now_ms, options) for i, r in enumerate(rids)}
            await w.add("hset", f"{main}.XQ.msgs", mapping=msgs)
            await w.add("zadd", f"{main}.XQ", {r: now_ms - 1000 * (start + i) for i, r in enumerate(rids)})
    await w.add("zadd", f"{ns}:__heartbeats__", {layout.worker: now_ms})
    await w.close()
    return {
        "queues": len(layout.queues),
        "messages": layout.messages,
        "keys": int(await redis.dbsize()),
        "seconds": time.perf_counter() - started,
        "round_trips": w.round_trips,
    }
