"""Failure groups proven by real workers: three causes across two frameworks make three groups with
exact counts; retrying one group runs exactly its jobs again and leaves the others untouched; and
"recover now" puts back what a killed Dramatiq worker held, so a new worker runs it.

Workers: `dramatiq` on tests.integration.dramatiq_app (`flaky` dies at once, no traceback, while the
`broken` key exists; `doomed` always fails, once retried, so its dead letter keeps a traceback;
`hold` blocks on a gate) and `arq` on tests.integration.arq_controls_app (`flaky` fails on its
first run only). Callboard runs as `callboard serve`; the test uses the JSON API as a script would.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from tests.integration import arq_controls_app, dramatiq_app
from tests.integration.support import (
    api_json,
    control_int,
    finished_operation,
    open_gate,
    post_json,
    quick_stale_board,
    runs,
    start_worker,
    stop_worker,
)
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.integration

NS = "fg"
QUEUE = "default"
KEY = f"{NS}:{QUEUE}"
FLAKY, DOOMED, ARQ_FLAKY = 4, 3, 5


def groups(board: Callboard) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(framework, name, exception) -> group, as /api/v1/failures reports them."""
    return {
        (g["framework"], g["name"], g["exception"]): g for g in api_json(board, "/api/v1/failures")["groups"]
    }


def counts(board: Callboard) -> dict[tuple[str, str, str], int]:
    return {k: g["count"] for k, g in groups(board).items()}


@pytest.fixture
def dramatiq_worker(redis_url: str) -> Iterator[Process]:
    proc = start_worker(redis_url, NS, (QUEUE,))
    try:
        yield proc
    finally:
        stop_worker(proc)


@pytest.fixture
def arq_worker(one_redis: RedisServer, redis_url: str) -> Iterator[Process]:
    env = child_env(ITEST_REDIS_PORT=str(one_redis.port), ITEST_ARQ_ABORT="0")
    args = [sys.executable, "-m", "arq", "tests.integration.arq_controls_app.WorkerSettings"]
    proc = Process(args, env, "arq-failures").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def pool(one_redis: RedisServer, redis_url: str) -> AsyncIterator[ArqRedis]:
    p = await create_pool(RedisSettings(host="127.0.0.1", port=one_redis.port))
    yield p
    await p.aclose()


async def test_three_causes_make_three_groups_and_retrying_one_leaves_the_others(
    dramatiq_worker: Process,
    arq_worker: Process,
    pool: ArqRedis,
    board: Callboard,
    control: redis.Redis,
    redis_url: str,
) -> None:
    _, actors = dramatiq_app.build(redis_url, NS, (QUEUE,))
    control.set(dramatiq_app.BROKEN, 1)
    flaky_tags = [f"order-{1000 + i}" for i in range(FLAKY)]
    doomed_tags = [f"sku-{i}" for i in range(DOOMED)]
    for tag in flaky_tags:
        actors[f"flaky_{QUEUE}"].send(tag)
    for tag in doomed_tags:
        actors[f"doomed_{QUEUE}"].send(tag)
    arq_tags = [f"import-{i}" for i in range(ARQ_FLAKY)]
    for tag in arq_tags:
        assert await pool.enqueue_job("flaky", tag) is not None

    expected = {
        ("dramatiq", f"flaky_{QUEUE}", "(no traceback)"): FLAKY,
        ("dramatiq", f"doomed_{QUEUE}", "ValueError"): DOOMED,
        ("arq", "flaky", "ValueError"): ARQ_FLAKY,
    }
    await asyncio.to_thread(wait_until, lambda: counts(board) == expected, timeout=40, what="three groups")
    found = groups(board)
    # The values that vary between occurrences are normalised away; the cause stays.
    assert found[("dramatiq", f"doomed_{QUEUE}", "ValueError")]["pattern"] == "doomed sku-<n> attempt <n>"
    assert found[("arq", "flaky", "ValueError")]["pattern"] == "first run of import-<n>"
    assert found[("dramatiq", f"flaky_{QUEUE}", "(no traceback)")]["queues"] == [[KEY, FLAKY]]
    assert all(g["first_seen"] <= g["last_seen"] for g in found.values())
    assert sum(sum(g["spark"]) for g in found.values()) == FLAKY + DOOMED + ARQ_FLAKY

    # Fix the cause, then requeue the whole flaky group: exactly its jobs run again, once each.
    control.delete(dramatiq_app.BROKEN)
    flaky_key = found[("dramatiq", f"flaky_{QUEUE}", "(no traceback)")]["key"]
    status, body = await asyncio.to_thread(
        post_json, board, f"/api/v1/failures/main/dramatiq/{flaky_key}/retry"
    )
    assert status == 200, body
    assert [(op["queue"], op["done"], op["scope"], op["group"]) for op in body["operations"]] == [
        (KEY, FLAKY, "group", flaky_key)
    ]
    await asyncio.to_thread(
        wait_until,
        lambda: runs(control, flaky_tags) == [2] * FLAKY,
        timeout=30,
        what="the requeued group run",
    )
    remaining = {k: v for k, v in expected.items() if k[1] != f"flaky_{QUEUE}"}
    await asyncio.to_thread(wait_until, lambda: counts(board) == remaining, timeout=10, what="the group gone")
    assert control.zcard(f"{KEY}.XQ") == DOOMED, "the other Dramatiq group's dead letters are untouched"
    assert control_int(control, dramatiq_app.attempts_key("sku-0")) == 2, "doomed did not run again"

    # Retrying the group again is harmless: it is empty.
    status, body = await asyncio.to_thread(
        post_json, board, f"/api/v1/failures/main/dramatiq/{flaky_key}/retry"
    )
    assert status == 200 and body["operations"] == [] and "empty" in body["message"]

    # The Arq group: re-run under the same ids; `flaky` succeeds on its second run.
    arq_key = found[("arq", "flaky", "ValueError")]["key"]
    status, body = await asyncio.to_thread(post_json, board, f"/api/v1/failures/main/arq/{arq_key}/retry")
    assert status in (200, 202), body
    ops = body["operations"]
    assert (body["status"], [op["status"] for op in ops]) == (
        ("running", ["running"]) if status == 202 else ("finished", ["finished"])
    )
    if status == 202:  # not ended within the POST's wait (a loaded machine): follow it to its end
        ops = [await asyncio.to_thread(finished_operation, board, op["id"]) for op in ops]
    assert [(op["queue"], op["scope"], op["done"], op["skipped"], op["changed"]) for op in ops] == [
        ("arq:queue", "group", ARQ_FLAKY, 0, 0)
    ]

    async def arq_runs() -> list[int]:
        return [int(await pool.get(arq_controls_app.runs_key(t)) or 0) for t in arq_tags]

    deadline = time.monotonic() + 30
    while await arq_runs() != [2] * ARQ_FLAKY:
        assert time.monotonic() < deadline, f"arq re-runs: {await arq_runs()} {arq_worker.log()[-800:]}"
        await asyncio.sleep(0.1)
    await asyncio.to_thread(
        wait_until,
        lambda: counts(board) == {("dramatiq", f"doomed_{QUEUE}", "ValueError"): DOOMED},
        timeout=10,
        what=f"only the doomed group left: {counts(board)}",
    )


def test_recover_now_puts_back_what_a_killed_worker_held(
    redis_url: str, control: redis.Redis, tmp_path: Path
) -> None:
    board = quick_stale_board(redis_url, tmp_path)
    first = start_worker(redis_url, NS, (QUEUE,))
    try:
        _, actors = dramatiq_app.build(redis_url, NS, (QUEUE,))
        gates = [f"held-{i}" for i in range(3)]
        for gate in gates:
            actors[f"hold_{QUEUE}"].send(gate)
        # Two run (two threads, prefetch 2) and hold: they sit in its ack set; the third waits.
        wait_until(
            lambda: sum(control_int(control, dramatiq_app.started_key(g)) for g in gates) == 2,
            timeout=20,
            what="two held messages running",
        )
        assert control.llen(KEY) == 1
        held = [g for g in gates if control_int(control, dramatiq_app.started_key(g)) == 1]
        assert len(held) == 2
    finally:
        # A crash of the whole process group (main and worker processes): ack set and payloads stay.
        first.stop(signal.SIGKILL, timeout=5)
    try:

        def orphaned() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = api_json(board, "/api/v1/failures")["orphaned"]
            return found

        wait_until(lambda: [o["messages"] for o in orphaned()] == [2], timeout=20, what="2 orphaned")
        assert orphaned()[0]["queue"] == KEY and len(orphaned()[0]["workers"]) == 1
        status, body = post_json(board, f"/api/v1/queues/main/dramatiq/{NS}%3A{QUEUE}/recover")
        assert status == 400, "recover says which state it needs"
        status, result = post_json(
            board, f"/api/v1/queues/main/dramatiq/{NS}%3A{QUEUE}/recover", {"state": "orphaned"}
        )
        assert status == 200
        assert (result["done"], result["changed"], result["action"]) == (2, 0, "recover")
        assert control.llen(KEY) == 3
        wait_until(lambda: orphaned() == [], timeout=10, what="nothing orphaned any more")
        # A new worker runs what the dead one held: the two interrupted ones start a second time, the
        # one that waited its first.
        second = start_worker(redis_url, NS, (QUEUE,))
        try:
            for gate in gates:
                open_gate(control, gate, 2)
            wait_until(
                lambda: control.hlen(f"{KEY}.msgs") == 0 and control.llen(KEY) == 0,
                timeout=30,
                what="the recovered messages run and acked",
            )
            assert {g: control_int(control, dramatiq_app.started_key(g)) for g in gates} == {
                g: 2 if g in held else 1 for g in gates
            }
            assert control.zcard(f"{KEY}.XQ") == 0, "none of them failed"
        finally:
            stop_worker(second)
    finally:
        board.stop()
