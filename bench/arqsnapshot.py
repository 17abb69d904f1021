"""Arq snapshot cycle cost and the results index, with the collector the dashboard builds.

Arq has no index of results, so `collectors.arq` keeps one: result keys found by the shared SCAN
are read in MGET + PTTL batches of at most `result_budget` keys per cycle. Per scenario:

1. The index pass: a fresh collector runs cycles until discovery has finished a full SCAN pass and
   every result key it found has been read. INFO commandstats is read around every cycle (outside
   its timing) for the SCAN calls and result keys (PTTL calls) that cycle cost the server.
2. The steady state: warm-up cycles, then the same measured loop as the Dramatiq scenarios, with a
   bare pipelined ZCARD as the floor.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from bench import redisinfo
from bench.scenarios import ArqScenario
from bench.sizes import Sizes
from bench.snapshot import WARM_CYCLES, db_url, make_collector, steady_cycles
from bench.stats import summary
from collectors.model import Framework, TargetSnapshot
from collectors.target import TargetCollector
from dashboard.settings import Settings

#: Cycles a full index pass may take beyond what its budgets imply (reads plus SCAN calls).
PASS_SLACK_CYCLES = 5
#: Results read per MGET (the collector's chunk): one pipeline = one MGET + that many PTTLs.
MGET_CHUNK = 1000


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


async def index_pass(
    collector: TargetCollector, scenario: ArqScenario, keys: int
) -> tuple[dict[str, Any], TargetSnapshot]:
    """Cycles of a fresh collector until the SCAN pass and the results index are both complete."""
    redis = collector.redis
    budget = collector.arq.config.result_budget
    limit = pass_cycle_limit(
        scenario.layout.results, keys, budget, collector.scanner.budget * collector.scanner.count
    )
    walls: list[float] = []
    trips: list[int] = []
    reads: list[int] = []
    scans: list[int] = []
    mgets: list[int] = []
    server: list[int] = []
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
        reads.append(window.calls("pttl") - len(collector.arq.queue_names()))
        scans.append(window.calls("scan"))
        mgets.append(window.calls("mget"))
        server.append(sum(window.usec(c) for c in ("evalsha", "scan", "mget", "pttl", "type", "zrange")))
        trips.append(snapshot.round_trips)
        complete = snapshot.discovery.complete and collector.arq.results.complete
    reading = [r for r in reads if r > 0]
    return {
        "complete": complete,
        "cycles": len(walls),
        "cycle_limit": limit,
        "round_trips": sum(trips),
        "seconds": sum(walls),
        # The poller sleeps `poll_interval` between cycles: how long the pass takes in a running dashboard.
        "seconds_at_default_poll": sum(walls) + (len(walls) - 1) * Settings().poll_interval,
        "wall_ms": summary(walls, 1000.0),
        "result_budget": budget,
        "scan_budget": collector.scanner.budget,
        "keys_read": sum(reads),
        "keys_read_per_cycle_max": max(reads),
        "keys_read_per_cycle_median": statistics.median(reading) if reading else 0,
        "reading_cycles": len(reading),
        "mget_per_cycle_max": max(mgets),
        "scan_per_cycle_max": max(scans),
        "scan_calls": sum(scans),
        "server_usec_per_cycle": summary([float(u) for u in server]),
        "results_seeded": scenario.layout.results,
        "index_entries": len(collector.arq.results.entries),
    }, snapshot


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
        "pass_count_mismatches": pass_mismatches,
        "count_mismatches": mismatches,
    }
