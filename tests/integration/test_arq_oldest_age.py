"""README: "Oldest ready age is how long the oldest due job nobody runs has been due (now − its score)",
under a real `arq` worker. The worker runs one job at a time (`max_jobs = 1`) and is busy with `hold`,
the oldest due job, which it has claimed; two jobs wait behind it. The age Callboard reports must be
that of the older waiting job (its score is read from Redis), not the running one's, not 0."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import cast

import pytest
import redis
from arq import create_pool
from arq.connections import RedisSettings

from tests.integration.support import api_json
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.integration

QUEUE = "arq:queue"
GATE = "itest-arq-gate"
POLL = 0.2


@pytest.fixture
def busy_worker(one_redis: RedisServer, redis_url: str) -> Iterator[Process]:
    env = child_env(ITEST_REDIS_PORT=str(one_redis.port), ITEST_ARQ_MAX_JOBS="1")
    worker = Process(
        [sys.executable, "-m", "arq", "tests.integration.arq_app.WorkerSettings"], env, "arq-busy"
    )
    worker.start()
    try:
        yield worker
    finally:
        with redis.Redis.from_url(redis_url) as client:
            client.rpush(GATE, "go")
        worker.stop()


async def _enqueue(port: int, *calls: tuple[str, tuple[object, ...]]) -> list[str]:
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    try:
        ids = []
        for function, args in calls:
            job = await pool.enqueue_job(function, *args)
            assert job is not None
            ids.append(job.job_id)
        return ids
    finally:
        await pool.aclose()


def score(control: redis.Redis, job_id: str) -> float:
    """When the job is due (its score), in seconds."""
    value = cast(float | None, control.zscore(QUEUE, job_id))
    assert value is not None
    return value / 1000


def test_arq_oldest_ready_age_is_the_oldest_waiting_jobs_under_a_busy_worker(
    one_redis: RedisServer, redis_url: str, control: redis.Redis, busy_worker: Process
) -> None:
    (held,) = asyncio.run(_enqueue(one_redis.port, ("hold", (GATE,))))
    wait_until(lambda: control.get(f"{GATE}:started") == b"1", timeout=20, what="the worker to run hold")
    waiting = asyncio.run(_enqueue(one_redis.port, ("succeed", (1,)), ("succeed", (2,))))
    due = min(score(control, job_id) for job_id in waiting)
    assert score(control, held) < due  # the running job is older still
    assert control.exists(f"arq:in-progress:{held}") == 1
    assert all(control.exists(f"arq:in-progress:{j}") == 0 for j in waiting)

    board = Callboard([f"main={redis_url}"]).start(poll_interval=POLL)
    try:
        seen: dict[str, object] = {}

        def collected() -> bool:
            data = api_json(board, "/api/v1/queues")
            queue = next((q for q in data["queues"] if q["framework"] == "arq" and q["key"] == QUEUE), None)
            seen.update(queue=queue, target=data["targets"][0])
            return queue is not None and queue["counts"] == {"ready": 2, "deferred": 0, "in_progress": 1}

        wait_until(collected, timeout=20, what="the queue collected: 2 waiting, 1 running")
        for _ in range(3):  # over a few polls: the age follows the clock
            data = api_json(board, "/api/v1/queues")
            queue = next(q for q in data["queues"] if q["framework"] == "arq" and q["key"] == QUEUE)
            target = data["targets"][0]
            assert queue["counts"] == {"ready": 2, "deferred": 0, "in_progress": 1}, queue
            # The age is now - score at the cycle's start; collected_at is the cycle's end.
            expected = target["collected_at"] - due
            slack = target["collect_duration_seconds"] + 0.002
            assert expected - slack <= queue["oldest_ready_age"] <= expected + 0.002, (queue, target, due)
            assert queue["oldest_ready_age"] > POLL  # waited at least a poll before the first read
            wait_until(
                lambda c=target["collected_at"]: (
                    api_json(board, "/api/v1/queues")["targets"][0]["collected_at"] > c
                ),
                timeout=5,
                what="the next cycle",
            )
    finally:
        board.stop()
