"""Browsing an Arq queue: one page of a state, or one job, read from Redis on demand."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from callboard.collectors import decoding
from callboard.collectors.arq.codec import (
    Stored,
    detail_of,
    job_summary,
    result_summary,
    unreadable_detail,
    unreadable_job,
    unreadable_result_summary,
)
from callboard.collectors.arq.keys import in_progress_key, job_key, result_key, retry_key
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.keyspace import text
from callboard.collectors.model import (
    JobDetail,
    JobPage,
    page_of,
)

BROWSE_STATES = ("ready", "deferred", "in_progress", "failed", "succeeded")


async def list_jobs(
    redis: Redis, collector: ArqCollector, queue: str, state: str, offset: int, limit: int
) -> JobPage:
    serializer = collector.config.serializer
    now_ms = int(time.time() * 1000)
    if state in ("ready", "deferred"):
        lo, hi = ("-inf", now_ms) if state == "ready" else (f"({now_ms}", "+inf")
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zcount(queue, lo, hi)
            pipe.zrangebyscore(queue, lo, hi, start=offset, num=limit, withscores=True)
            total, rows = await pipe.execute()
        ids = [text(m) for m, _ in rows]
        raws, running = await _jobs_and_running(redis, ids)
        calls = [
            (i, "in_progress" if run else state, raw, score / 1000.0, serializer)
            for i, raw, run, (_, score) in zip(ids, raws, running, rows, strict=True)
        ]
        items = await decoding.run(job_summary, calls, unreadable_job)
        order = "due time, oldest first" if state == "ready" else "due time, soonest first"
        note = "Due jobs that a worker is running are marked in progress." if state == "ready" else None
        return page_of(state, items, int(total), offset, limit, order, note)
    if state == "in_progress":
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in collector.in_progress_ids():
                pipe.zscore(queue, job_id)
            scores = await pipe.execute()
        ids = [j for j, s in zip(collector.in_progress_ids(), scores, strict=True) if s is not None]
        page_ids = ids[offset : offset + limit]
        raws, _ = await _jobs_and_running(redis, page_ids)
        calls = [(i, "in_progress", raw, None, serializer) for i, raw in zip(page_ids, raws, strict=True)]
        items = await decoding.run(job_summary, calls, unreadable_job)
        # The ids are the in-progress markers the background scan has seen (no list holds them).
        note = (
            "Jobs a worker is running now, as Callboard's background scan of Redis finds them: one that "
            "started a few seconds ago may not be listed yet."
        )
        return page_of(state, items, len(ids), offset, limit, "by job id", note)
    if state in ("failed", "succeeded"):
        want_ok = state == "succeeded"
        total, page = collector.results.page(queue, want_ok, offset, limit)
        raws = await redis.mget([result_key(j) for j, _ in page]) if page else []
        results = [(j, state, raw, serializer) for (j, _), raw in zip(page, raws, strict=True)]
        items = await decoding.run(result_summary, results, unreadable_result_summary)
        note = (
            None if collector.results.complete else "The results index is still being built: more may appear."
        )
        return page_of(state, items, total, offset, limit, "newest first", note)
    raise ValueError(f"unknown state {state!r}")


async def _jobs_and_running(redis: Redis, ids: list[str]) -> tuple[list[bytes | None], list[bool]]:
    if not ids:
        return [], []
    async with redis.pipeline(transaction=False) as pipe:
        pipe.mget([job_key(i) for i in ids])
        for i in ids:
            pipe.exists(in_progress_key(i))
        raws, *running = await pipe.execute()
    return list(raws), [bool(r) for r in running]


async def get_job(redis: Redis, collector: ArqCollector, queue: str, job_id: str) -> JobDetail | None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(job_key(job_id))
        pipe.get(result_key(job_id))
        pipe.exists(in_progress_key(job_id))
        pipe.get(retry_key(job_id))
        pipe.zscore(queue, job_id)
        pipe.pttl(result_key(job_id))
        job_raw, result_raw, running, retry, score, result_ttl = await pipe.execute()
    if job_raw is None and result_raw is None:
        return None
    # The payload a page shows: the result when there is one (it holds the call too), else the job.
    raw = result_raw if result_raw is not None else job_raw
    stored = Stored(result_raw is not None, bool(running), retry, score, int(result_ttl))
    call = (queue, job_id, raw, stored, collector.config.serializer, time.time())
    [detail] = await decoding.run(detail_of, [call], unreadable_detail)
    return detail
