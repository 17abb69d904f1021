"""Flow: what the worker companion costs a worker, and what reading its figures costs Callboard.

In one run:
* overhead: a real Dramatiq worker (1 process, 4 threads) runs `jobs` no-op messages without and
  with the companion, alternately (`rounds` each); throughput is messages per second from the seed
  to the queue being empty, and the companion's Redis commands per message come from Redis's own
  command statistics (HINCRBY, EXPIRE and HSET are its only commands: Dramatiq's are scripts);
* reading: 200 actors' totals and an hour of minute hashes, read by FlowReader as a collection cycle
  does (cold: the whole hour; warm: the two newest minutes and the totals), against a floor of one
  PING round trip measured alternately;
* memory: one actor busy every minute for a day (1,440 minute hashes, 24 hour hashes, the totals),
  by MEMORY USAGE.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

from redis.asyncio import Redis

from bench import flow_worker_app
from bench.report import Check
from bench.seed import Layout, QueueSeed, seed
from bench.stats import ratio
from callboard.collectors.flow import HOUR_TTL, MINUTE_TTL, TOTAL_KEY, Series, hour_key, minute_key
from callboard.collectors.flowreader import FlowReader
from callboard.companion.recorder import Recorder, stage
from tests.servers import Process, child_env, wait_until

DB = 6
ACTORS = 200
#: The issue's targets: under 5 % slower (a full run), under 0.05 companion commands per message.
MAX_SLOWDOWN_FULL, MAX_SLOWDOWN_SMALL = 1.05, 1.25
MAX_COMMANDS_PER_JOB = 0.05
COMPANION_COMMANDS = ("hincrby", "expire", "hset")
#: A warm poll parses in Python what the HGETALLs send: a few times the transfer (4.3x seen), no more.
MAX_READ_RATIO = 8.0


def _db_url(base: str, db: int) -> str:
    return f"{base.rstrip('/').rsplit('/', 1)[0]}/{db}"


async def _command_calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in COMPANION_COMMANDS}


async def _one_round(url: str, jobs: int, with_flow: bool) -> dict[str, Any]:
    redis = Redis.from_url(url)
    await redis.flushdb()
    env = child_env(BENCH_REDIS_URL=url, BENCH_FLOW="1" if with_flow else "0")
    args = [sys.executable, "-m", "dramatiq", "bench.flow_worker_app", "--processes", "1", "--threads", "4"]
    worker = Process(args, env, f"flow-bench-{'with' if with_flow else 'without'}").start()
    heartbeats = f"{flow_worker_app.NAMESPACE}:__heartbeats__"
    try:
        await asyncio.to_thread(
            wait_until, lambda: _zcard_sync(url, heartbeats) > 0, 30, 0.05, "the bench worker to boot"
        )
        before = await _command_calls(redis)
        started = time.perf_counter()
        await seed(redis, Layout(flow_worker_app.NAMESPACE, (QueueSeed("default", jobs),), worker="seed"))
        msgs = f"{flow_worker_app.NAMESPACE}:default.msgs"
        while await redis.hlen(msgs):
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
        recorded = 0
        deadline = time.monotonic() + 10
        while with_flow and recorded < jobs and time.monotonic() < deadline:
            # Its last flush (every 2 s): counted with the rest, and the figures must be complete.
            await asyncio.sleep(0.1)
            totals = await redis.hgetall(TOTAL_KEY)
            recorded = sum(int(v) for k, v in totals.items() if k.startswith(b"s:"))
        after = await _command_calls(redis)
        return {
            "with_flow": with_flow,
            "jobs": jobs,
            "seconds": seconds,
            "per_second": jobs / seconds,
            "companion_commands": sum(after[c] - before[c] for c in COMPANION_COMMANDS),
            "recorded": recorded,
        }
    finally:
        worker.stop()
        await redis.aclose()


def _zcard_sync(url: str, key: str) -> int:
    import redis as sync_redis

    with sync_redis.Redis.from_url(url) as client:
        return int(client.zcard(key))


async def _reading(url: str) -> dict[str, Any]:
    """FlowReader over ACTORS series: an hour of minute hashes and the totals."""
    redis = Redis.from_url(url)
    await redis.flushdb()
    now = int(time.time() // 60) * 60 + 30.0  # half a minute in: the previous minute has settled
    try:
        recorder = Recorder()
        for minute in range(60):
            at = now - minute * 60
            for a in range(ACTORS):
                series = Series("dramatiq", "dramatiq", f"q{a % 10}", f"actor_{a}")
                for duration in (0.03, 0.04, 0.3):
                    recorder.record(series, "succeeded", at, duration, 0.2)
                recorder.record(series, "failed", at, 0.03, 0.2)
        batch = recorder.take()
        async with redis.pipeline(transaction=False) as pipe:
            stage(pipe, batch, "bench", 0)
            await pipe.execute()
        reader = FlowReader()
        cold: list[float] = []
        warm: list[float] = []
        floor: list[float] = []
        for i in range(30):
            # The floor: the same reads as the warm cycle (the two newest minutes), without parsing.
            started = time.perf_counter()
            async with redis.pipeline(transaction=False) as pipe:
                for m in (int(now // 60) - 1, int(now // 60)):
                    pipe.hgetall(minute_key(m))
                await pipe.execute()
            floor.append(time.perf_counter() - started)
            started = time.perf_counter()
            async with redis.pipeline(transaction=False) as pipe:
                count = reader.stage(pipe, now)
                replies = await pipe.execute()
            snap = reader.parse(replies, now)
            (cold if i == 0 else warm).append(time.perf_counter() - started)
            assert len(snap.series) == ACTORS and count >= 1
        return {
            "actors": ACTORS,
            "cold_ms": cold[0] * 1000,
            "warm_ms": statistics.median(warm) * 1000,
            "floor_ms": statistics.median(floor) * 1000,
            "ratio": ratio(statistics.median(warm), statistics.median(floor)),
        }
    finally:
        await redis.aclose()


async def _memory(url: str) -> dict[str, Any]:
    """One actor busy every minute for a day: bytes of its minute, hour and total hashes."""
    redis = Redis.from_url(url)
    await redis.flushdb()
    series = Series("dramatiq", "dramatiq", "default", "send_welcome_email")
    start = int(time.time() // 86400) * 86400
    try:
        recorder = Recorder()
        for minute in range(1440):
            at = start + minute * 60 + 1
            for duration, wait in ((0.03, 0.2), (0.04, 0.3), (0.3, 0.6), (0.03, 1.5)):
                recorder.record(series, "succeeded", at, duration, wait)
            recorder.record(series, "retried", at, 0.04, 0.2)
        batch = recorder.take()
        async with redis.pipeline(transaction=False) as pipe:
            stage(pipe, batch, "bench", 0)
            await pipe.execute()
        keys = [minute_key(start // 60 + m) for m in range(1440)] + [
            hour_key(start // 3600 + h) for h in range(24)
        ]
        sizes = [await redis.memory_usage(k) or 0 for k in [*keys, TOTAL_KEY]]
        minutes_bytes = sum(sizes[:1440])
        return {
            "bytes_per_day": sum(sizes),
            "minute_bytes": minutes_bytes / 1440,
            "ttls": (MINUTE_TTL, HOUR_TTL),
        }
    finally:
        await redis.aclose()


async def bench_flow(base_url: str, jobs: int, rounds: int) -> dict[str, Any]:
    url = _db_url(base_url, DB)
    runs = []
    for _ in range(rounds):
        for with_flow in (False, True):
            runs.append(await _one_round(url, jobs, with_flow))
    without = statistics.median(r["per_second"] for r in runs if not r["with_flow"])
    with_ = statistics.median(r["per_second"] for r in runs if r["with_flow"])
    flushed = [r for r in runs if r["with_flow"]]
    return {
        "jobs": jobs,
        "rounds": rounds,
        "runs": runs,
        "per_second_without": without,
        "per_second_with": with_,
        "slowdown": ratio(without, with_),
        "commands_per_job": max(r["companion_commands"] / r["jobs"] for r in flushed),
        "recorded_all": all(r["recorded"] == r["jobs"] for r in flushed),
        "reading": await _reading(url),
        "memory": await _memory(url),
    }


def flow_checks(data: dict[str, Any], full: bool) -> list[Check]:
    limit = MAX_SLOWDOWN_FULL if full else MAX_SLOWDOWN_SMALL
    reading, memory = data["reading"], data["memory"]
    speeds = f"{data['per_second_without']:,.0f} vs {data['per_second_with']:,.0f} messages/s"
    timing = f"warm {reading['warm_ms']:.2f} ms, cold {reading['cold_ms']:.1f} ms"
    per_day = f"{memory['bytes_per_day'] / 1024:,.0f} kB per day"
    return [
        Check(
            f"flow: a worker with the companion is at most {limit:.2f}x slower",
            data["slowdown"] <= limit,
            f"{speeds} = {data['slowdown']:.3f}x ({data['jobs']:,} no-op messages x {data['rounds']})",
        ),
        Check(
            f"flow: companion Redis commands per message < {MAX_COMMANDS_PER_JOB}",
            data["commands_per_job"] < MAX_COMMANDS_PER_JOB,
            f"{data['commands_per_job']:.4f} per message",
        ),
        Check("flow: every message recorded", data["recorded_all"], "succeeded counts = messages sent"),
        Check(
            f"flow: reading {reading['actors']} busy actors per poll: ≤ {MAX_READ_RATIO}x the raw reads",
            reading["warm_ms"] <= MAX_READ_RATIO * reading["floor_ms"],
            f"{timing}; raw HGETALL of two minutes {reading['floor_ms']:.2f} ms: {reading['ratio']:.2f}x",
        ),
        Check(
            "flow: memory per busy actor per day under 2 MB",
            memory["bytes_per_day"] < 2 * 2**20,
            f"{per_day} ({memory['minute_bytes']:.0f} B per minute hash)",
        ),
    ]
