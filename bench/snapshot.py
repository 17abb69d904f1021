"""Snapshot cycle cost: `TargetCollector.collect()` against our own Redis, with a client made exactly
as the dashboard makes it, compared with a bare pipelined `LLEN` round trip measured alternately on the
same connection (the floor: what any one-pipeline cycle cannot beat).

First a fresh collector runs until discovery has completed a full pass (reported as the discovery
cost), then a few warm-up cycles, then `cycles` measured cycles, each preceded by one floor round
trip, with INFO commandstats read around the measured loop for the server-side cost.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from bench import redisinfo
from bench.scenarios import Scenario
from bench.sizes import Sizes
from bench.stats import ratio, summary
from callboard.collectors.model import TargetSnapshot
from callboard.collectors.target import TargetCollector
from callboard.dashboard.app import _collector as build_collector
from callboard.dashboard.settings import Settings, TargetSettings

#: Cycles a fresh collector may take to finish its first discovery pass before we give up.
MAX_DISCOVERY_CYCLES = 100
WARM_CYCLES = 5
#: Top-level commands of a steady cycle; the scripts' own commands are inside evalsha's time (and are
#: counted again under their own names, so they are not added).
CYCLE_COMMANDS = ("evalsha", "info", "dbsize", "scan")
#: A command every cycle sends exactly once, per target: the HTTP part counts poll rounds with it.
ROUND_MARKER = "dbsize"


def db_url(base: str, db: int) -> str:
    return f"{base.rstrip('/').rsplit('/', 1)[0]}/{db}"


def make_collector(name: str, url: str) -> TargetCollector:
    """What `callboard serve --redis NAME=URL` polls: the dashboard's own builder, default settings."""
    return build_collector(TargetSettings(name, url), Settings())


def count_mismatches(snapshot: TargetSnapshot, scenario: Scenario) -> list[str]:
    """Differences between the snapshot's counts and what was seeded (empty when all match)."""
    found = {q.key: q.counts for q in snapshot.queues}
    problems = []
    layout = scenario.layout
    if len(found) != len(layout.queues):
        problems.append(f"{len(found)} queues in the snapshot, {len(layout.queues)} seeded")
    for q in layout.queues:
        want = {"ready": q.ready, "in_flight": q.in_flight, "delayed": q.delayed, "dead": q.dead}
        got = found.get(layout.key(q.queue))
        if got is None:
            problems.append(f"{layout.key(q.queue)} missing")
        elif dict(got) != want:
            problems.append(f"{layout.key(q.queue)}: got {dict(got)}, seeded {want}")
    return problems[:5]


async def floor(redis: Redis, key: str, command: str = "llen") -> float:
    """One pipelined O(1) read of `key` (`llen` of a list, `zcard` of a zset): the round-trip floor."""
    started = time.perf_counter()
    async with redis.pipeline(transaction=False) as pipe:
        getattr(pipe, command)(key)
        await pipe.execute()
    return time.perf_counter() - started


async def _discover(collector: TargetCollector) -> tuple[dict[str, Any], TargetSnapshot]:
    started = time.perf_counter()
    round_trips = cycles = 0
    while cycles < MAX_DISCOVERY_CYCLES:
        cycles += 1
        snapshot = await collector.collect()
        round_trips += snapshot.round_trips
        if snapshot.discovery.complete:
            break
    return {
        "cycles": cycles,
        "round_trips": round_trips,
        "seconds": time.perf_counter() - started,
        "complete": snapshot.discovery.complete,
    }, snapshot


async def bench_scenario(base_url: str, scenario: Scenario, sizes: Sizes) -> dict[str, Any]:
    collector = make_collector(scenario.name, db_url(base_url, scenario.db))
    try:
        discovery, snapshot = await _discover(collector)
        for _ in range(WARM_CYCLES):
            snapshot = await collector.collect()
        mismatches = count_mismatches(snapshot, scenario)
        steady = await steady_cycles(collector, scenario.floor_key, "llen", sizes)
    finally:
        await collector.redis.aclose()
    return {
        "scenario": scenario.name,
        "label": scenario.label,
        "queues": len(scenario.layout.queues),
        "messages": scenario.layout.messages,
        "keys": snapshot.discovery.db_size,
        "discovery_first_pass": discovery,
        **steady,
        "count_mismatches": mismatches,
    }


async def steady_cycles(
    collector: TargetCollector, floor_key: str, floor_command: str, sizes: Sizes
) -> dict[str, Any]:
    """Up to `sizes.cycles` cycles of a warmed-up collector, each after one floor round trip."""
    redis = collector.redis
    walls: list[float] = []
    floors: list[float] = []
    trips: list[int] = []
    # Round trips of each cycle's budgeted background step (discovery SCAN, dead-letter walk), apart
    # from its counters: those must cost exactly one round trip in every cycle.
    background: list[int] = []
    discover = collector.discover

    async def counted_discover() -> int:
        background.append(await discover())
        return background[-1]

    collector.discover = counted_discover  # type: ignore[method-assign]
    before = await redisinfo.probe(redis)
    deadline = time.perf_counter() + sizes.cycle_seconds
    while len(walls) < sizes.cycles and time.perf_counter() < deadline:
        floors.append(await floor(redis, floor_key, floor_command))
        started = time.perf_counter()
        snapshot = await collector.collect()
        walls.append(time.perf_counter() - started)
        trips.append(snapshot.round_trips)
    collector.discover = discover  # type: ignore[method-assign]
    window = redisinfo.Window(before, await redisinfo.probe(redis))
    cycles = len(walls)
    steady = Counter(trips).most_common(1)[0][0]
    wall = summary(walls, 1000.0)
    floor_ms = summary(floors, 1000.0)
    server = {cmd: window.usec(cmd) / cycles for cmd in CYCLE_COMMANDS}
    return {
        "cycles": cycles,
        "round_trips": {
            "steady": steady,
            "min": min(trips),
            "max": max(trips),
            "cycles_with_discovery": sum(1 for t in trips if t != steady),
            #: (cycle, round trips, of which background steps) of every cycle not at one round trip.
            "not_one": [(i, t, b) for i, (t, b) in enumerate(zip(trips, background, strict=True)) if t != 1],
        },
        "wall_ms": wall,
        "floor_ms": floor_ms,
        "ratio_median": ratio(wall["median"], floor_ms["median"]),
        "ratio_p95": ratio(wall["p95"], floor_ms["median"]),
        "server_usec_per_cycle": {**server, "total": sum(server.values())},
        "evalsha_calls_per_cycle": window.calls("evalsha") / cycles,
        "marker_calls_per_cycle": window.calls(ROUND_MARKER) / cycles,
        "redis_commands_per_cycle": (window.total_commands - cycles) / cycles,  # minus the floor's read
        "snapshot_duration_ms": snapshot.duration * 1000.0,
        "queues_in_snapshot": len(snapshot.queues),
    }
