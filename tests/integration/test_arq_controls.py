"""Arq controls against real `arq` worker processes (tests/integration/arq_controls_app.py) on our own Redis.

A failed job re-run under its id is run again by the worker, and only once however often it is
submitted; a deleted deferred job never runs; an abort cancels a running job on an abort-enabled worker.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from redis.asyncio import Redis

from callboard.collectors.arq.codec import decode, exception_parts
from callboard.collectors.arq.config import ArqConfig
from callboard.collectors.arq.controls import apply, select_all
from callboard.collectors.arq.keys import ABORT_KEY, in_progress_key, job_key, result_key
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.model import Outcome
from tests.integration import arq_controls_app as app
from tests.servers import Process, RedisServer, async_wait_until, child_env

pytestmark = pytest.mark.integration

Q = app.QUEUE


@pytest.fixture
async def pool(redis_url: str, one_redis: RedisServer) -> AsyncIterator[ArqRedis]:
    p = await create_pool(RedisSettings(host="127.0.0.1", port=one_redis.port))
    yield p
    await p.aclose()


def start_worker(port: int, allow_abort: bool = False) -> Process:
    env = child_env(ITEST_REDIS_PORT=str(port), ITEST_ARQ_ABORT="1" if allow_abort else "0")
    args = [sys.executable, "-m", "arq", "tests.integration.arq_controls_app.WorkerSettings"]
    return Process(args, env, "arq-controls").start()


async def enqueue(pool: ArqRedis, function: str, *args: Any, **kwargs: Any) -> str:
    job = await pool.enqueue_job(function, *args, **kwargs)
    assert job is not None, "arq refused the enqueue"
    return str(job.job_id)


async def stored_result(aredis: Redis, job_id: str, worker: Process) -> dict[str, Any]:
    """The job's result once the worker wrote it, decoded the safe way."""

    async def read() -> bytes | None:
        raw: bytes | None = await aredis.get(result_key(job_id))
        return raw

    raw = await async_wait_until(read, timeout=20, what=f"a result for {job_id}: {worker.log()[-800:]}")
    assert isinstance(raw, bytes)
    value = decode(raw)
    assert isinstance(value, dict), value
    return value


async def runs(aredis: Redis, tag: str) -> int:
    return int(await aredis.get(app.runs_key(tag)) or 0)


async def barrier(aredis: Redis, pool: ArqRedis, worker: Process) -> None:
    """Enqueue a job due now and wait for its result: the worker has by then claimed every job that
    was due before it (a duplicate, or a job that should have been deleted, would have run)."""
    job_id = await enqueue(pool, "record", f"barrier-{uuid.uuid4().hex}")
    await stored_result(aredis, job_id, worker)


async def test_rerun_failed_job_under_its_id_runs_exactly_once_more(
    aredis: Redis, pool: ArqRedis, one_redis: RedisServer
) -> None:
    worker = start_worker(one_redis.port)
    try:
        job_id = await enqueue(pool, "flaky", "a")
        first = await stored_result(aredis, job_id, worker)
        assert first["s"] is False and isinstance(first["r"], ValueError)

        c = ArqCollector()
        # A double click: two submits at once, then a third while the re-run is queued or running.
        both = await asyncio.gather(*(apply(aredis, c, Q, "failed", "retry", [job_id]) for _ in range(2)))
        assert sorted(o.outcome for [o] in both) == [Outcome.CHANGED, Outcome.DONE]
        [third] = await apply(aredis, c, Q, "failed", "retry", [job_id])
        assert third.outcome == Outcome.CHANGED, third

        second = await stored_result(aredis, job_id, worker)
        assert second["s"] is True and second["r"] == "a ok on run 2"
        assert second["t"] == 1  # the try count restarted: the retry key went with the old result
        assert await Job(job_id, pool).result(timeout=5) == "a ok on run 2"  # arq's own API agrees

        await barrier(aredis, pool, worker)
        assert await runs(aredis, "a") == 2
        assert await aredis.zcard(Q) == 0 and await aredis.exists(job_key(job_id)) == 0
    finally:
        worker.stop()


async def test_deleted_deferred_job_never_runs(aredis: Redis, pool: ArqRedis, one_redis: RedisServer) -> None:
    worker = start_worker(one_redis.port)
    try:
        doomed = await enqueue(pool, "record", "doomed", _defer_by=1.5)
        kept = await enqueue(pool, "record", "kept", _defer_by=1.5)  # proves the worker would have run it
        c = ArqCollector()
        selection = await select_all(aredis, c, Q, "deferred")
        assert selection.expected == 2 and sorted(await selection.next(10)) == sorted([doomed, kept])
        [out] = await apply(aredis, c, Q, "deferred", "delete", [doomed])
        assert out.outcome == Outcome.DONE, out

        assert (await stored_result(aredis, kept, worker))["s"] is True
        await barrier(aredis, pool, worker)
        assert (await runs(aredis, "kept"), await runs(aredis, "doomed")) == (1, 0)
        assert await aredis.exists(result_key(doomed), job_key(doomed), in_progress_key(doomed)) == 0
        assert await aredis.zcard(Q) == 0
        assert "expired" not in worker.log()
    finally:
        worker.stop()


async def test_abort_cancels_a_running_job_on_an_abort_enabled_worker(
    aredis: Redis, pool: ArqRedis, one_redis: RedisServer
) -> None:
    worker = start_worker(one_redis.port, allow_abort=True)
    try:
        job_id = await enqueue(pool, "hang", "h")

        async def running() -> bool:
            return await runs(aredis, "h") == 1 and bool(await aredis.exists(in_progress_key(job_id)))

        await async_wait_until(running, timeout=20, what=f"the job to start: {worker.log()[-800:]}")
        c = ArqCollector(ArqConfig(allow_abort_jobs=True))
        c.observe([in_progress_key(job_id)])  # what discovery's SCAN would find
        selection = await select_all(aredis, c, Q, "in_progress")
        assert await selection.next(10) == [job_id]
        [out] = await apply(aredis, c, Q, "in_progress", "abort", [job_id])
        assert out.outcome == Outcome.DONE, out

        result = await stored_result(aredis, job_id, worker)  # long before `hang`'s 60 s
        assert result["s"] is False
        # asyncio's CancelledError is on the unpickler's allow-list: decoded as the real exception.
        assert isinstance(result["r"], asyncio.CancelledError)
        assert exception_parts(result["r"])[0] == "CancelledError"
        assert await runs(aredis, "h") == 1
        assert await aredis.zcard(Q) == 0 and await aredis.zcard(ABORT_KEY) == 0
        assert "aborted" in worker.log()
    finally:
        worker.stop()
