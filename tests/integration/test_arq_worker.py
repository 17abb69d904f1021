"""Real `arq` worker processes and a real `python -m callboard serve`, on a Redis of our own.

Jobs succeed, fail with ValueError, fail with a user exception arq itself cannot unpickle, and wait
deferred, on the default queue and a custom one; the API and /metrics must equal the truth.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from arq import create_pool
from arq.connections import RedisSettings
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.integration

CUSTOM = "custom"
TARGET = "itest"


@pytest.fixture
def server(one_redis: RedisServer) -> Iterator[RedisServer]:
    with redis.Redis.from_url(one_redis.url) as client:
        client.flushall()
    yield one_redis


async def _enqueue(port: int) -> dict[str, str]:
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    ids: dict[str, str] = {}
    try:
        jobs: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = [
            ("ok1", "succeed", (1,), {}),
            ("ok2", "succeed", (2,), {}),
            ("value", "fail_value", ("v",), {}),
            ("custom", "fail_custom", (42, "tag c1"), {}),
            ("deferred1", "succeed", (3,), {"_defer_by": 600}),
            ("deferred2", "succeed", (4,), {"_defer_by": 600}),
            ("c_ok", "succeed", (5,), {"_queue_name": CUSTOM}),
            ("c_custom", "fail_custom", (7, "other"), {"_queue_name": CUSTOM}),
            ("c_deferred", "succeed", (6,), {"_queue_name": CUSTOM, "_defer_by": 600}),
        ]
        for label, function, args, kwargs in jobs:
            job = await pool.enqueue_job(function, *args, **kwargs)
            assert job is not None
            ids[label] = job.job_id
    finally:
        await pool.aclose()
    return ids


def _worker(port: int, queue: str) -> Process:
    env = child_env(ITEST_REDIS_PORT=str(port), ITEST_ARQ_QUEUE=queue)
    args = [sys.executable, "-m", "arq", "tests.integration.arq_app.WorkerSettings"]
    return Process(args, env, f"arq-{queue.replace(':', '-')}").start()


def _metric(body: str, name: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("framework") == "arq":
                out[(sample.labels["queue"], sample.labels.get("status") or sample.labels["state"])] = (
                    sample.value
                )
    return out


def test_arq_workers_and_dashboard_agree(server: RedisServer) -> None:
    ids = asyncio.run(_enqueue(server.port))
    client = redis.Redis.from_url(server.url)
    workers = [_worker(server.port, "arq:queue"), _worker(server.port, CUSTOM)]
    board = Callboard([f"{TARGET}={server.url}"])
    try:
        finished = [ids[k] for k in ("ok1", "ok2", "value", "custom", "c_ok", "c_custom")]
        wait_until(
            lambda: client.exists(*[f"arq:result:{i}" for i in finished]) == len(finished),
            timeout=20,
            what="the arq workers to store every result: " + " / ".join(w.log()[-500:] for w in workers),
        )
        wait_until(
            lambda: client.exists("arq:queue:health-check", "custom:health-check") == 2,
            timeout=10,
            what="both health-check keys",
        )
        board.start(poll_interval=0.25)

        expected_counts = {
            "arq:queue": {"ready": 0, "deferred": 2, "in_progress": 0},
            CUSTOM: {"ready": 0, "deferred": 1, "in_progress": 0},
        }
        expected_results = {
            "arq:queue": {"succeeded": 2, "failed": 2},
            CUSTOM: {"succeeded": 1, "failed": 1},
        }

        def api_queues() -> dict[str, Any]:
            status, body = board.get("/api/v1/queues")
            assert status == 200
            data = json.loads(body)
            return {q["name"]: q for q in data["queues"] if q["framework"] == "arq"}

        def api_agrees() -> bool:
            queues = api_queues()
            return set(queues) == set(expected_counts) and all(
                queues[n]["counts"] == expected_counts[n] and queues[n]["results"] == expected_results[n]
                for n in expected_counts
            )

        wait_until(api_agrees, timeout=20, what="/api/v1/queues to match the truth")
        queues = api_queues()
        assert {n: q["counts"] for n, q in queues.items()} == expected_counts
        assert {n: q["results"] for n, q in queues.items()} == expected_results

        status, body = board.get("/metrics")
        assert status == 200
        results = _metric(body, "callboard_job_results")
        assert results == {
            (q, s): float(n) for q, by_status in expected_results.items() for s, n in by_status.items()
        }
        messages = _metric(body, "callboard_queue_messages")
        assert messages == {
            (q, s): float(n) for q, by_state in expected_counts.items() for s, n in by_state.items()
        }

        path = f"/api/v1/jobs/{TARGET}/arq/{urllib.parse.quote('arq:queue', safe='')}/{ids['custom']}"
        status, body = board.get(path)
        assert status == 200, body
        job = json.loads(body)
        assert job["state"] == "failed" and job["name"] == "fail_custom"
        assert job["result"]["ok"] is False
        assert job["result"]["exception_type"] == "tests.integration.arq_app.CustomError"
        assert job["result"]["exception_message"] == "custom 42: tag c1"
        assert job["result"]["value"] == {"code": 42, "detail": "tag c1"}
        assert job["args"] == [42, "tag c1"]

        status, body = board.get(
            f"/api/v1/jobs/{TARGET}/arq/{urllib.parse.quote(CUSTOM)}/{ids['c_deferred']}"
        )
        assert status == 200 and json.loads(body)["state"] == "deferred"

        status, body = board.get("/api/v1/workers")
        assert status == 200
        arq_workers = {w["worker_id"]: w for w in json.loads(body)["workers"] if w["framework"] == "arq"}
        assert set(arq_workers) == {"arq:queue:health-check", "custom:health-check"}
        assert arq_workers["arq:queue:health-check"]["queues"] == ["arq:queue"]
        assert arq_workers["custom:health-check"]["alive"] is True
        assert "j_complete" in arq_workers["custom:health-check"]["details"]
    finally:
        board.stop()
        for w in workers:
            w.stop()
        client.close()
