"""Bulk requeue of every dead letter of a queue while a real Dramatiq worker runs.

What it measures, in one run:
* the requeue itself, as an operator starts it: `POST /api/v1/queues/.../retry {"state": "dead"}` to a
  running `callboard serve`, then polling the operation until it ends (messages per second);
* the Redis latency a worker sees meanwhile: a probe connection sends PING every `PROBE_EVERY` s
  before (the baseline) and during the run; plus Redis's own latency monitor (events ≥ 10 ms);
* the truth afterwards: the worker (`bench.worker_app`) counts runs per message, so every message
  ran (none lost) and none ran twice.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import Awaitable
from typing import Any, cast

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from redis.asyncio import Redis

from bench import worker_app
from bench.report import Check
from bench.seed import Layout, QueueSeed, seed
from bench.stats import ratio, summary
from tests.servers import Callboard, Process, child_env, wait_until

DB = 5
PROBE_EVERY = 0.005
#: A stall the issue forbids: no command may wait longer than this during the run.
STALL_MS = 50.0
QUEUE = f"{worker_app.NAMESPACE}:default"


async def _probe(redis: Redis, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await redis.ping()
        samples.append(time.perf_counter() - started)
        await asyncio.sleep(PROBE_EVERY)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


async def _barrier(redis: Redis, url: str, index: int) -> None:
    """Send a message behind everything queued and wait until it ran and nothing is held: by then the
    worker has fetched, run and acked whatever was queued before it (what would run twice has)."""
    broker = RedisBroker(url=url, namespace=worker_app.NAMESPACE)  # type: ignore[no-untyped-call]
    try:
        broker.declare_queue("default")
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name="default", actor_name="bench_actor", args=(index, "barrier"), kwargs={}, options={}
        )
        broker.enqueue(message)
    finally:
        broker.client.close()

    async def done() -> bool:
        ran = await cast("Awaitable[bytes | None]", redis.hget(worker_app.RUNS, str(index)))
        return ran is not None and await cast("Awaitable[int]", redis.hlen(f"{QUEUE}.msgs")) == 0

    deadline = time.perf_counter() + 30
    while not await done():
        assert time.perf_counter() < deadline, f"barrier message {index} not run within 30 s"
        await asyncio.sleep(0.05)
    await cast("Awaitable[int]", redis.hdel(worker_app.RUNS, str(index)))


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


async def bench_bulk(server_url: str, count: int, drain_seconds: float) -> dict[str, Any]:
    url = f"{server_url.rsplit('/', 1)[0]}/{DB}"
    redis = Redis.from_url(url, socket_timeout=60)
    probe_client = Redis.from_url(url)
    await redis.flushdb()
    seeded = await seed(redis, Layout(worker_app.NAMESPACE, (QueueSeed("default", ready=0, dead=count),)))
    await redis.config_set("latency-monitor-threshold", 10)
    await redis.config_set("slowlog-log-slower-than", 10_000)
    await redis.execute_command("LATENCY", "RESET")
    await redis.slowlog_reset()
    worker = Process(
        [sys.executable, "-m", "dramatiq", "bench.worker_app", "--processes", "1", "--threads", "4"],
        child_env(BENCH_REDIS_URL=url),
        "bench-worker",
    ).start()
    board = Callboard([f"bulk={url}"]).start(poll_interval=0.5)
    try:
        # The worker is up and consuming (a barrier message ran), and idle: nothing is ready until
        # the requeue starts.
        wait_until(lambda: worker.process is not None and worker.process.poll() is None, timeout=5)
        await _barrier(redis, url, -1)
        stop = asyncio.Event()
        idle: list[float] = []
        probing = asyncio.create_task(_probe(probe_client, idle, stop))
        await asyncio.sleep(2.0)
        stop.set()
        await probing

        during: list[float] = []
        stop = asyncio.Event()
        probing = asyncio.create_task(_probe(probe_client, during, stop))
        started = time.perf_counter()
        api = f"{board.url}/api/v1/queues/bulk/dramatiq/{QUEUE.replace(':', '%3A')}/retry"
        op = await asyncio.to_thread(_post, api, {"state": "dead"})
        while op["status"] == "running":
            await asyncio.sleep(0.2)
            op = await asyncio.to_thread(_get, f"{board.url}/api/v1/operations/{op['id']}")
        requeue_seconds = time.perf_counter() - started
        requeue_pings = len(during)

        # The probe goes on while the worker runs the requeued messages.
        drained_at = None
        deadline = time.perf_counter() + drain_seconds
        while time.perf_counter() < deadline:
            if int(await redis.hlen(worker_app.RUNS)) >= count:
                drained_at = time.perf_counter()
                break
            await asyncio.sleep(0.25)
        stop.set()
        await probing
        # Which commands (if any) took ≥ 10 ms in the server, read before our own HVALS below.
        slow = await redis.slowlog_get(20)
        latency_events = await redis.execute_command("LATENCY", "LATEST")
        await _barrier(redis, url, -2)  # anything that would run twice has run by now
        runs = [int(v) for v in await redis.hvals(worker_app.RUNS)]
        dead_left = int(await redis.zcard(f"{QUEUE}.XQ"))
    finally:
        board.stop()
        worker.stop()
        await redis.aclose()
        await probe_client.aclose()
    idle_ms, during_ms = summary(idle, 1000.0), summary(during, 1000.0)
    return {
        "messages": count,
        "seed": seeded,
        "operation": {
            k: op[k] for k in ("status", "expected", "visited", "done", "skipped", "changed", "error")
        },
        "requeue_seconds": requeue_seconds,
        "requeue_per_s": count / requeue_seconds,
        "drain_seconds": (drained_at - started) if drained_at else None,
        "ran": len(runs),
        "ran_twice": sum(1 for r in runs if r > 1),
        "dead_left": dead_left,
        "probe_idle_ms": idle_ms,
        "probe_during_ms": during_ms,
        "probe_requeue_ms": summary(during[:requeue_pings], 1000.0),
        "probe_p95_ratio": ratio(during_ms["p95"], idle_ms["p95"]),
        "slowlog": [{"ms": int(e["duration"]) / 1000, "command": _text(e["command"])[:80]} for e in slow],
        "latency_events": [
            {"event": e[0].decode() if isinstance(e[0], bytes) else e[0], "max_ms": int(e[3])}
            for e in latency_events
        ],
    }


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def bulk_checks(r: dict[str, Any]) -> list[Check]:
    n = r["messages"]
    op = r["operation"]
    return [
        Check(
            "bulk requeue: every dead letter requeued",
            op["status"] == "finished" and op["done"] == n and r["dead_left"] == 0,
            f"{op['done']:,} of {n:,} done, {op['skipped']} skipped, {op['changed']} changed, "
            f"{r['dead_left']} still dead",
        ),
        Check(
            "bulk requeue: none lost, none run twice (the worker's run counts)",
            r["ran"] == n and r["ran_twice"] == 0,
            f"{r['ran']:,} of {n:,} ran, {r['ran_twice']} twice",
        ),
        Check(
            f"bulk requeue: no Redis stall over {STALL_MS:g} ms seen by a client during the run",
            r["probe_during_ms"]["max"] < STALL_MS,
            f"PING max {r['probe_during_ms']['max']:.1f} ms, p95 {r['probe_during_ms']['p95']:.2f} ms "
            f"(idle p95 {r['probe_idle_ms']['p95']:.2f} ms)",
        ),
    ]


def bulk_text(r: dict[str, Any]) -> str:
    idle, during = r["probe_idle_ms"], r["probe_during_ms"]
    drain = f"{r['drain_seconds']:.1f} s" if r["drain_seconds"] else "not within the limit"
    events = ", ".join(f"{e['event']} {e['max_ms']} ms" for e in r["latency_events"]) or "none ≥ 10 ms"
    return "\n".join(
        [
            f"   {r['messages']:,} dead letters requeued (POST .../retry) in {r['requeue_seconds']:.2f} s "
            f"({r['requeue_per_s']:,.0f}/s) while the worker ran them; all run after {drain}",
            f"   PING latency idle:   median {idle['median']:.2f} ms, p95 {idle['p95']:.2f} ms, "
            f"max {idle['max']:.2f} ms ({idle['n']} pings)",
            f"   PING latency, requeue + runs: median {during['median']:.2f} ms, p95 {during['p95']:.2f} ms, "
            f"max {during['max']:.2f} ms ({during['n']} pings); p95 x idle = {r['probe_p95_ratio']:.2f}",
            f"   Redis latency monitor (≥ 10 ms): {events}",
            "   Redis slowlog (≥ 10 ms): "
            + (", ".join(f"{e['command'].split(' ')[0]} {e['ms']:.0f} ms" for e in r["slowlog"]) or "empty"),
        ]
    )
