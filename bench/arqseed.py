"""Write Arq 0.28's Redis layout directly, fast, with pipelines (docs/arq-redis.md §1-2).

`ArqRedis.enqueue_job` costs a WATCH/MULTI per job (~23 s for 100k); writing the same keys in
pipelined batches takes a few seconds. Key names come from `arq.constants` and payloads from arq's
own `serialize_job` / `serialize_result` (pickle, protocol of this Python), never from
`collectors.arq`, so a mistake in the collector's key names or decoder shows up as wrong counts.

Per queue Q (a full key name), now = seeding time in ms, due jobs 1 ms apart up to now:
    ready        ZADD Q <due> id + PSETEX arq:job:<id> (86,400 s + due - now) {t, f, a, k, et}
    in progress  as ready, plus PSETEX arq:in-progress:<id> 310 s "1" and SETEX arq:retry:<id> 88,400 s 1;
                 the first two are the oldest due jobs (inside the snapshot's head window), the third
                 is in the middle of the due range (outside it once there are > 200 due jobs)
    deferred     ZADD Q <now + 1 h + i ms> id + PSETEX arq:job:<id> (86,400 s + due - now)
    results      PSETEX arq:result:<id> <ttl> {t, f, a, k, et, s, r, st, ft, q, id}, finished over the
                 last 45 minutes with TTL = keep_result (1 h) - age, so none expires during a run;
                 failures store a builtin ValueError, arq's JobExecutionFailed or a user exception
                 class (decoded as a placeholder)
and one health check per queue: PSETEX <Q>:health-check 3,601 s "<time> j_complete=... queued=...".
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from arq.constants import (
    health_check_key_suffix,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import serialize_job, serialize_result
from arq.worker import JobExecutionFailed
from redis.asyncio import Redis

from bench.seed import CHUNK, Writer

#: Arq's defaults: result kept 1 h, job key kept 1 day past its due time, in-progress key 300 + 10 s.
KEEP_RESULT_MS = 3_600_000
JOB_EXTRA_MS = 86_400_000
IN_PROGRESS_MS = 310_000
RETRY_SECONDS = 88_400
HEALTH_MS = 3_601_000
#: Finish times of the seeded results are spread over this window (so TTLs differ, none expires).
RESULTS_SPREAD_MS = 45 * 60 * 1000
#: Single-key commands per pipeline: one round trip per 1,000 keys.
WRITE_BATCH = 1000


class BenchError(Exception):
    """A user exception with attributes, as an app would raise; the collector sees a placeholder."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"bench {code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ArqQueueSeed:
    #: The queue's full key name (`arq:queue` by default).
    queue: str
    #: Due jobs nobody runs, due jobs a worker runs (in-progress key), jobs due in the future.
    ready: int
    in_progress: int = 0
    deferred: int = 0
    #: Result keys whose `q` is this queue.
    succeeded: int = 0
    failed: int = 0

    @property
    def jobs(self) -> int:
        return self.ready + self.in_progress + self.deferred

    @property
    def results(self) -> int:
        return self.succeeded + self.failed


@dataclass(frozen=True, slots=True)
class ArqLayout:
    queues: tuple[ArqQueueSeed, ...]

    @property
    def jobs(self) -> int:
        return sum(q.jobs for q in self.queues)

    @property
    def results(self) -> int:
        return sum(q.results for q in self.queues)


def _failure(index: int) -> BaseException:
    kind = index % 3
    if kind == 0:
        return ValueError(f"bad input {index}")
    if kind == 1:
        return JobExecutionFailed("max 5 retries exceeded")
    return BenchError(index, f"tag t{index}")


def job_payload(index: int, enqueued_ms: int) -> bytes:
    payload: bytes = serialize_job(
        "bench_job", (index, f"item-{index}"), {"priority": index % 3}, None, enqueued_ms
    )
    return payload


def result_payload(queue: str, job_id: str, index: int, ok: bool, finished_ms: int) -> bytes:
    value: Any = {"n": index, "items": [index, index * 2]} if ok else _failure(index)
    started = finished_ms - 250
    payload = serialize_result(
        "bench_job", (index, f"item-{index}"), {"priority": index % 3}, 1 if ok else 5,
        started - 1000, ok, value, started, finished_ms, "", queue, job_id,
    )  # fmt: skip
    assert payload is not None  # pickle serializes everything seeded here
    return bytes(payload)


def _ids(count: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(count)]


def _running_positions(seed: ArqQueueSeed) -> set[int]:
    """Which of the due jobs are running: the oldest, then one in the middle of the due range."""
    due = seed.ready + seed.in_progress
    picks = [0, 1, due // 2, *range(2, seed.in_progress)]
    chosen: list[int] = []
    for p in picks:
        if p not in chosen and len(chosen) < seed.in_progress:
            chosen.append(p)
    return set(chosen)


async def _jobs(w: Writer, seed: ArqQueueSeed, now_ms: int) -> None:
    due = seed.ready + seed.in_progress
    running = _running_positions(seed)
    for start in range(0, due + seed.deferred, CHUNK):
        ids = _ids(min(CHUNK, due + seed.deferred - start))
        scores: dict[str, int] = {}
        for offset, job_id in enumerate(ids):
            i = start + offset
            # Due jobs 1 ms apart, the oldest first; deferred ones from 1 h ahead. The job key
            # lives until 1 day past the due time, as enqueue_job sets it.
            score = now_ms - (due - i) if i < due else now_ms + 3_600_000 + (i - due)
            scores[job_id] = score
            payload = job_payload(i, min(score, now_ms))
            await w.add("psetex", job_key_prefix + job_id, JOB_EXTRA_MS + score - now_ms, payload)
            if i in running:
                await w.add("psetex", in_progress_key_prefix + job_id, IN_PROGRESS_MS, b"1")
                await w.add("setex", retry_key_prefix + job_id, RETRY_SECONDS, 1)
        await w.add("zadd", seed.queue, scores)


async def _results(w: Writer, seed: ArqQueueSeed, now_ms: int) -> None:
    for i in range(seed.results):
        job_id = uuid.uuid4().hex
        age = RESULTS_SPREAD_MS * i // max(1, seed.results)
        ok = i >= seed.failed
        payload = result_payload(seed.queue, job_id, i, ok, now_ms - age)
        await w.add("psetex", result_key_prefix + job_id, KEEP_RESULT_MS - age, payload)


async def seed_arq(redis: Redis, layout: ArqLayout) -> dict[str, Any]:
    """Write `layout` into the (empty) database of `redis`; returns what was written and how fast."""
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    w = Writer(redis, flush_every=WRITE_BATCH)
    for q in layout.queues:
        await _jobs(w, q, now_ms)
        await _results(w, q, now_ms)
        health = time.strftime("%b-%d %H:%M:%S") + f" j_complete={q.succeeded} j_failed={q.failed}"
        health += f" j_retried=0 j_ongoing={q.in_progress} queued={q.jobs}"
        await w.add("psetex", q.queue + health_check_key_suffix, HEALTH_MS, health)
    await w.close()
    return {
        "queues": len(layout.queues),
        "jobs": layout.jobs,
        "results": layout.results,
        "keys": int(await redis.dbsize()),
        "seconds": time.perf_counter() - started,
        "round_trips": w.round_trips,
    }
