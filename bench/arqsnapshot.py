"""Arq snapshot cycle cost and the results index, with the collector the dashboard builds.

Arq has no index of results, so `collectors.arq` keeps one: result keys found by the shared SCAN
are read in MGET + PTTL batches of at most `result_budget` keys per cycle. Per scenario:

1. The index pass: a fresh collector runs cycles until discovery has finished a full SCAN pass and
   every result key it found has been read. INFO commandstats is read around every cycle (outside
   its timing) for the SCAN calls and result keys (PTTL calls) that cycle cost the server.
2. The steady state: warm-up cycles, then the same measured loop as the Dramatiq scenarios, with a
   bare pipelined ZCARD as the floor.
3. A re-scan pass (the next SCAN pass, started at once instead of after the scanner's pause): what
   discovery costs once the index is built; it must read no result key again.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import redisinfo
from bench.scenarios import ArqScenario
from bench.sizes import Sizes
from bench.snapshot import WARM_CYCLES, db_url, make_collector, steady_cycles
from bench.stats import summary
from callboard.collectors.model import Framework, TargetSnapshot
from callboard.collectors.target import TargetCollector
from callboard.dashboard.settings import Settings

#: Cycles a full index pass may take beyond what its budgets imply (reads plus SCAN calls).
PASS_SLACK_CYCLES = 5
#: The commands of a cycle whose server time is summed: scripts, discovery, index reads. Not INFO,
#: whose per-cycle window would include the probe's own INFO.
SERVER_COMMANDS = ("evalsha", "scan", "mget", "pttl", "type", "zrange", "dbsize")


def count_mismatches(snapshot: TargetSnapshot, scenario: ArqScenario) -> list[str]:
    """Differences between the snapshot (queues, results, health checks) and what was seeded."""
    found = {q.key: q for q in snapshot.queues if q.framework == Framework.ARQ}
    layout = scenario.layout
    problems = []
    if len(found) != len(layout.queues):
        problems.append(
            f"{len(found)} Arq queues in the snapshot ({sorted(found)}), {len(layout.queues)} seeded"
        )
    for q in layout.queues:
        got = found.get(q.queue)
        counts = {"ready": q.ready, "deferred": q.deferred, "in_progress": q.in_progress}
        results = {"succeeded": q.succeeded, "failed": q.failed}
        if got is None:
            problems.append(f"{q.queue} missing")
            continue
        if dict(got.counts) != counts:
            problems.append(f"{q.queue}: got {dict(got.counts)}, seeded {counts}")
        if dict(got.results or {}) != results:
            problems.append(f"{q.queue} results: got {dict(got.results or {})}, seeded {results}")
    health = sorted(w.worker_id for w in snapshot.workers if w.framework == Framework.ARQ)
    if len(health) != len(layout.queues):
        problems.append(f"{len(health)} Arq health checks in the snapshot, {len(layout.queues)} seeded")
    return problems[:5]


def pass_cycle_limit(results: int, keys: int, result_budget: int, scan_calls: int) -> int:
    """The cycles a full index pass needs at most: its reads, the SCAN pass, and some slack."""
    return math.ceil(results / result_budget) + math.ceil(keys / scan_calls) + PASS_SLACK_CYCLES


@dataclass(frozen=True, slots=True)
class Passed:
    """What the cycles of one pass cost, cycle by cycle, and whether the pass finished."""

    complete: bool
    snapshot: TargetSnapshot
    walls: list[float]
    trips: list[int]
    #: Result keys read (PTTL calls), SCAN and MGET calls, server µs of the cycle's commands.
    reads: list[int]
    scans: list[int]
    mgets: list[int]
    server: list[int]

    def figures(self) -> dict[str, Any]:
        reading = [r for r in self.reads if r > 0]
        return {
            "complete": self.complete,
            "cycles": len(self.walls),
            "round_trips": sum(self.trips),
            "seconds": sum(self.walls),
            # The poller sleeps `poll_interval` after each cycle: how long the pass takes in a dashboard.
            "seconds_at_default_poll": sum(self.walls) + (len(self.walls) - 1) * Settings().poll_interval,
            "wall_ms": summary(self.walls, 1000.0),
            "keys_read": sum(self.reads),
            "keys_read_per_cycle_max": max(self.reads),
            "keys_read_per_cycle_median": statistics.median(reading) if reading else 0,
            "reading_cycles": len(reading),
            "mget_per_cycle_max": max(self.mgets),
            "scan_per_cycle_max": max(self.scans),
            "scan_calls": sum(self.scans),
            "server_usec_per_cycle": summary([float(u) for u in self.server]),
        }


async def run_pass(collector: TargetCollector, done: Callable[[TargetSnapshot], bool], limit: int) -> Passed:
    """Cycles until `done(snapshot)` or `limit`, with INFO commandstats read around each (untimed)."""
    redis = collector.redis
    costs: dict[str, list[int]] = {"trips": [], "reads": [], "scans": [], "mgets": [], "server": []}
    walls: list[float] = []
    before = await redisinfo.probe(redis)
    complete = False
    while len(walls) < limit and not complete:
        started = time.perf_counter()
        snapshot = await collector.collect()
        walls.append(time.perf_counter() - started)
        after = await redisinfo.probe(redis)
        window = redisinfo.Window(before, after)
        before = after
        # Every PTTL is a result key read, except the snapshot script's one per queue's health-check key.
        costs["reads"].append(window.calls("pttl") - len(collector.arq.queue_names()))
        costs["scans"].append(window.calls("scan"))
        costs["mgets"].append(window.calls("mget"))
        costs["server"].append(sum(window.usec(c) for c in SERVER_COMMANDS))
        costs["trips"].append(snapshot.round_trips)
        complete = done(snapshot)
    return Passed(complete, snapshot, walls, **costs)


async def index_pass(
    collector: TargetCollector, scenario: ArqScenario, keys: int
) -> tuple[dict[str, Any], TargetSnapshot]:
    """Cycles of a fresh collector until the SCAN pass and the results index are both complete."""
    budget = collector.arq.config.result_budget
    scan_keys = collector.scanner.budget * collector.scanner.count
    limit = pass_cycle_limit(scenario.layout.results, keys, budget, scan_keys)
    passed = await run_pass(
        collector, lambda s: s.discovery.complete and collector.arq.results.complete, limit
    )
    return passed.figures() | {
        "cycle_limit": limit,
        "result_budget": budget,
        "scan_budget": collector.scanner.budget,
        "results_seeded": scenario.layout.results,
        "index_entries": len(collector.arq.results.entries),
    }, passed.snapshot


async def rescan_pass(collector: TargetCollector, keys: int) -> tuple[dict[str, Any], TargetSnapshot]:
    """The next SCAN pass of a warm collector, started now: it must not re-read indexed results."""
    passes = collector.scanner.status().passes
    collector.scanner.rescan_soon()
    limit = pass_cycle_limit(0, keys, 1, collector.scanner.budget * collector.scanner.count)
    passed = await run_pass(collector, lambda s: s.discovery.passes > passes, limit)
    return passed.figures() | {"cycle_limit": limit}, passed.snapshot


async def bench_arq_scenario(base_url: str, scenario: ArqScenario, sizes: Sizes) -> dict[str, Any]:
    collector = make_collector(scenario.name, db_url(base_url, scenario.db))
    try:
        keys = int(await collector.redis.dbsize())
        index, snapshot = await index_pass(collector, scenario, keys)
        pass_mismatches = count_mismatches(snapshot, scenario)
        for _ in range(WARM_CYCLES):
            snapshot = await collector.collect()
        mismatches = count_mismatches(snapshot, scenario)
        steady = await steady_cycles(collector, scenario.floor_key, "zcard", sizes)
        rescan, snapshot = await rescan_pass(collector, keys)
        rescan_mismatches = count_mismatches(snapshot, scenario)
    finally:
        await collector.redis.aclose()
    return {
        "scenario": scenario.name,
        "label": scenario.label,
        "queues": len(scenario.layout.queues),
        "jobs": scenario.layout.jobs,
        "results": scenario.layout.results,
        "keys": keys,
        "index_pass": index,
        "discovery_first_pass": {k: index[k] for k in ("cycles", "round_trips", "seconds", "complete")},
        **steady,
        "rescan_pass": rescan,
        "pass_count_mismatches": pass_mismatches,
        "count_mismatches": mismatches,
        "rescan_count_mismatches": rescan_mismatches,
    }
