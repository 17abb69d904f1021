"""`callboard_queue_workers` with real workers: the workers consuming each queue, as /metrics, the API
and the pages say it.

Dramatiq: a `dramatiq` worker consumes queue `qa` only, while the test's own broker (a producer) sends
to `qa` and `qb`; the producer is a fresh heartbeat too, yet counts for no queue. Killed with SIGKILL,
the worker turns stale once the target's `heartbeat_timeout` (2 s here) has passed. Arq: a worker on
`arq:queue` only (health_check_interval 2 s): its queue has a live worker, the other none, until a
clean stop deletes the health-check key.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import redis
from arq import create_pool
from arq.connections import RedisSettings

from tests.integration import dramatiq_app
from tests.integration.support import api_json, control_int, quick_stale_board, scrape, start_worker
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.integration

NS = "itest-qw"
CONSUMED, PRODUCED = "qa", "qb"


def queue_workers(board: Callboard, framework: str) -> dict[tuple[str, str], float]:
    """(queue, state) -> value of every callboard_queue_workers series of `framework` on target main."""
    out: dict[tuple[str, str], float] = {}
    for (name, labels), value in scrape(board).items():
        label = dict(labels)
        if name == "callboard_queue_workers" and label["framework"] == framework:
            assert set(label) == {"target", "framework", "namespace", "queue", "state"}, label
            assert label["target"] == "main"
            out[(label["queue"], label["state"])] = value
    return out


def wait_for_series(board: Callboard, framework: str, expected: dict[tuple[str, str], float]) -> None:
    seen: dict[str, Any] = {}

    def matches() -> bool:
        seen["metrics"] = queue_workers(board, framework)
        return bool(seen["metrics"] == expected)

    try:
        wait_until(matches, timeout=20, what=f"callboard_queue_workers to be {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nseen: {seen}") from None


def queue_page(board: Callboard, framework: str, key: str) -> str:
    status, body = board.get(f"/queues/main/{framework}/{urllib.parse.quote(key, safe='')}")
    assert status == 200, body[:500]
    return body


def test_dramatiq_consumers_not_producers_and_a_killed_worker_turns_stale(
    redis_url: str, control: redis.Redis, tmp_path: Path
) -> None:
    board = quick_stale_board(redis_url, tmp_path)
    worker = start_worker(redis_url, NS, (CONSUMED,))
    producer, actors = dramatiq_app.build(redis_url, NS, (CONSUMED, PRODUCED))
    try:
        # The worker takes the held message and keeps it in its ack set; nobody listens to qb.
        actors[f"hold_{CONSUMED}"].send("qw-held")
        actors[f"hold_{PRODUCED}"].send("qw-never")
        wait_until(
            lambda: control_int(control, dramatiq_app.started_key("qw-held")) == 1,
            timeout=20,
            what="the worker to run the held message: " + worker.log()[-500:],
        )
        wait_for_series(
            board,
            "dramatiq",
            {(CONSUMED, "alive"): 1, (CONSUMED, "stale"): 0, (PRODUCED, "alive"): 0, (PRODUCED, "stale"): 0},
        )

        roles = {
            w["worker_id"]: (w["role"], w["consumes"])
            for w in api_json(board, "/api/v1/workers")["workers"]
            if w["namespace"] == NS
        }
        assert roles[producer.broker_id] == ("producer or idle", [])
        consumers = [w for w, (role, _) in roles.items() if role == "consumer"]
        assert len(consumers) == 1 and roles[consumers[0]] == ("consumer", [CONSUMED])

        status, page = board.get("/workers")
        assert status == 200
        assert f"consumer of {CONSUMED}" in page and "producer or idle" in page
        waiting = queue_page(board, "dramatiq", f"{NS}:{PRODUCED}")
        assert "workers: 0 consuming" in waiting and "no live worker while work waits" in waiting
        assert "workers: 1 consuming" in queue_page(board, "dramatiq", f"{NS}:{CONSUMED}")

        # A crash: the heartbeat stops, the ack set stays. Past heartbeat_timeout it is a stale consumer.
        worker.stop(signal.SIGKILL, timeout=5)
        wait_for_series(
            board,
            "dramatiq",
            {(CONSUMED, "alive"): 0, (CONSUMED, "stale"): 1, (PRODUCED, "alive"): 0, (PRODUCED, "stale"): 0},
        )
        assert "workers: 0 consuming, 1 stale" in queue_page(board, "dramatiq", f"{NS}:{CONSUMED}")
    finally:
        worker.stop(signal.SIGKILL, timeout=5)
        producer.client.close()
        board.stop()


async def _enqueue(port: int) -> None:
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    try:
        # Due on a queue no worker listens to: it waits, ready.
        assert await pool.enqueue_job("succeed", 1, _queue_name="lonely") is not None
        assert await pool.enqueue_job("succeed", 2) is not None
    finally:
        await pool.aclose()


def test_arq_a_worker_on_one_of_two_queues(one_redis: RedisServer) -> None:
    with redis.Redis.from_url(one_redis.url) as client:
        client.flushall()
    asyncio.run(_enqueue(one_redis.port))
    env = child_env(ITEST_REDIS_PORT=str(one_redis.port), ITEST_ARQ_QUEUE="arq:queue")
    args = [sys.executable, "-m", "arq", "tests.integration.arq_app.WorkerSettings"]
    worker = Process(args, env, "arq-qw").start()
    board = Callboard([f"main={one_redis.url}"]).start(poll_interval=0.2)
    try:
        # `alive` only: an Arq health check says "at least one worker", and never goes stale.
        wait_for_series(board, "arq", {("arq:queue", "alive"): 1, ("lonely", "alive"): 0})
        assert "no live worker while work waits" in queue_page(board, "arq", "lonely")
        # A clean stop deletes the queue's health-check key.
        worker.stop(signal.SIGTERM)
        wait_for_series(board, "arq", {("arq:queue", "alive"): 0, ("lonely", "alive"): 0})
    finally:
        worker.stop(signal.SIGKILL, timeout=5)
        board.stop()
