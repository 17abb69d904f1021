"""`python -m bench [--small]`: start Redis, seed, measure, report; exit 1 on a broken invariant."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench import arqsnapshot, bulk, decode, flow, redisinfo, report, search, snapshot, web, weight
from bench.arqseed import seed_arq
from bench.scenarios import ArqScenario, Scenario, arq_scenarios, scenarios
from bench.seed import seed
from bench.sizes import FULL, SMALL, Sizes
from callboard.collectors.arq.snapshot import HEAD_WINDOW
from tests.servers import RedisServer, redis_binaries

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
#: `--small` is what CI runs; it must stay well inside this. 60 s until the flow and page-weight
#: benches joined (they take ~15 s of a ~53 s run on 2 quiet cores): 90 s keeps the margin.
SMALL_TIME_LIMIT = 90.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--small", action="store_true", help="CI size (well under a minute)")
    parser.add_argument(
        "--only",
        choices=("snapshot", "arq", "http", "weight", "bulk", "search", "decode", "flow"),
        help="run one part (all by default)",
        default=None,
    )
    parser.add_argument(
        "--server",
        choices=("auto", "redis", "valkey"),
        default="auto",
        help="auto: redis-server, else Valkey",
    )
    parser.add_argument("--output", type=Path, help="JSON file (default bench/results/<mode>-<time>.json)")
    return parser


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def pick_server(choice: str) -> tuple[str, str]:
    found = redis_binaries()
    kind = ("redis" if "redis" in found else "valkey") if choice == "auto" else choice
    if kind not in found:
        raise SystemExit(f"bench: no {kind} server available (found: {', '.join(found)})")
    return found[kind], kind


def machine() -> dict[str, Any]:
    packages: dict[str, str | None] = {}
    for name in ("redis", "hiredis", "starlette", "uvicorn", "jinja2", "httpx"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
        "packages": packages,
    }


async def _seed_all(url: str, plan: tuple[Scenario, ...]) -> list[dict[str, Any]]:
    out = []
    for s in plan:
        client = Redis.from_url(snapshot.db_url(url, s.db), socket_timeout=60)
        try:
            await client.flushdb()
            out.append({"scenario": s.name, "db": s.db} | await seed(client, s.layout))
        finally:
            await client.aclose()
        log(f"seeded db {s.db} ({s.label}): {out[-1]['keys']:,} keys in {out[-1]['seconds']:.2f} s")
    return out


async def _arq(
    url: str, plan: tuple[ArqScenario, ...], sizes: Sizes, data: dict[str, Any]
) -> list[report.Check]:
    """Seed each Arq database, measure it, then flush it (the HTTP part serves only Dramatiq's)."""
    results = []
    for s in plan:
        client = Redis.from_url(snapshot.db_url(url, s.db), socket_timeout=60)
        try:
            await client.flushdb()
            seeded = {"scenario": s.name, "db": s.db} | await seed_arq(client, s.layout)
            data["seed"].append(seeded)
            log(f"seeded db {s.db} ({s.label}): {seeded['keys']:,} keys in {seeded['seconds']:.2f} s")
            log(f"Arq snapshot cycles and results index: {s.label}")
            results.append(await arqsnapshot.bench_arq_scenario(url, s, sizes))
            await client.flushdb()
        finally:
            await client.aclose()
    data["arq"] = results
    return report.arq_checks(results, HEAD_WINDOW)


async def _run(url: str, sizes: Sizes, only: str | None, data: dict[str, Any]) -> list[report.Check]:
    plan = scenarios(sizes)
    probe_client = Redis.from_url(url)
    try:
        data["redis"] |= await redisinfo.server_facts(probe_client)
        data["seed"] = await _seed_all(url, plan) if only not in ("arq", "search", "decode", "flow") else []
        checks: list[report.Check] = []
        if only in (None, "snapshot"):
            results = []
            for s in plan:
                log(f"snapshot cycles: {s.label}")
                results.append(await snapshot.bench_scenario(url, s, sizes))
            data["snapshot"] = results
            checks += report.snapshot_checks(results)
        # Before the HTTP part, so that a failure or a hang there cannot hide these figures.
        if only in (None, "arq"):
            checks += await _arq(url, arq_scenarios(sizes), sizes, data)
        if only in (None, "http"):
            log("HTTP: starting `python -m callboard serve` on the seeded databases")
            result = await web.bench_http(url, probe_client, plan, sizes)
            data["http"] = result
            checks += report.http_checks(result, web.REQUIRED, web.REDIS_MARGIN)
        if only in (None, "weight"):
            log("page weight: a headless Chromium loads every page of the one-queue database, cold and warm")
            data["weight"] = await weight.bench_weight(url, plan[0], sizes.weight_pages)
            checks += weight.weight_checks(data["weight"])
        if only in (None, "bulk"):
            log(f"bulk requeue: {sizes.bulk_messages:,} dead letters, a real Dramatiq worker running")
            data["bulk"] = await bulk.bench_bulk(url, sizes.bulk_messages, sizes.bulk_drain_seconds)
            checks += bulk.bulk_checks(data["bulk"])
        if only in (None, "search"):
            log(f"search: {sizes.search_jobs:,} Dramatiq jobs, 3 needles, the overview measured meanwhile")
            data["search"] = await search.bench_search(url, sizes.search_jobs, sizes.search_window_seconds)
            checks += search.search_checks(data["search"])
        if only in (None, "decode"):
            log(f"decode budget: {sizes.decode_payloads:,} payloads in process vs in decoder processes")
            data["decode"] = await decode.bench_decode(sizes.decode_payloads)
            checks += decode.decode_checks(data["decode"])
        if only in (None, "flow"):
            log(f"flow: a real worker runs {sizes.flow_jobs:,} no-op messages without and with the companion")
            data["flow"] = await flow.bench_flow(url, sizes.flow_jobs, sizes.flow_rounds)
            checks += flow.flow_checks(data["flow"], sizes.mode == "full")
        return checks
    finally:
        await probe_client.aclose()


def print_arq(results: list[dict[str, Any]]) -> None:
    print("\n== Arq snapshot cycle: steady state after the results index is complete ==")
    print("   floor = one pipelined ZCARD of arq:queue, alternated with the cycles; columns as above")
    print(report.snapshot_table(results))
    by = {r["scenario"]: r for r in results}
    small, large = by.get("arq-small"), by.get("arq-large")
    if small and large:
        ms, ml = small["wall_ms"]["median"], large["wall_ms"]["median"]
        es, el = small["server_usec_per_cycle"]["evalsha"], large["server_usec_per_cycle"]["evalsha"]
        sizes = (
            f"{large['jobs']:,} jobs + {large['results']:,} results vs {small['jobs']} + {small['results']}"
        )
        print(
            f"   {sizes}: cycle median {ml / ms:.2f}x, scripts' Redis time {el:,.0f} vs {es:,.0f} µs "
            f"per cycle (bounded by the {HEAD_WINDOW}-job head window, not by the queue's length)"
        )
    print("\n== Arq results index: a fresh collector's full pass (SCAN, every result key read); a re-scan ==")
    print(
        "   s of cycles = its cycles back to back; s at poll = plus the default poll interval between them;"
    )
    print("   keys/cycle = result keys read (PTTL calls); server µs = per cycle, all its commands but INFO")
    print(report.index_table(results))


def print_report(data: dict[str, Any], checks: list[report.Check]) -> None:
    m, r = data["machine"], data["redis"]
    print(
        f"\nCallboard bench ({data['mode']}), {m['nproc']} CPUs, Python {m['python']}, "
        f"{r['server']} {r['version']}, load avg {m['loadavg_at_start'][0]:.2f}"
    )
    if "snapshot" in data:
        print("\n== Snapshot cycle: TargetCollector.collect(), steady state after discovery ==")
        print("   floor = one pipelined LLEN round trip on the same connection, alternated with the cycles;")
        print("   x floor = cycle median / floor median, p95 x floor = cycle p95 / floor median")
        print(report.snapshot_table(data["snapshot"]))
        small = next((x for x in data["snapshot"] if x["scenario"] == "small"), None)
        many = next((x for x in data["snapshot"] if x["scenario"] == "many"), None)
        if small and many and many["queues"] > 1:
            per_queue = (many["wall_ms"]["median"] - small["wall_ms"]["median"]) / (many["queues"] - 1) * 1000
            server = (
                many["server_usec_per_cycle"]["evalsha"] - small["server_usec_per_cycle"]["evalsha"]
            ) / (many["queues"] - 1)
            print(f"   per extra queue: {per_queue:.1f} µs wall, {server:.2f} µs in the server's script")
    if "arq" in data:
        print_arq(data["arq"])
    if "http" in data:
        h = data["http"]
        print(
            f"\n== HTTP: python -m callboard serve, {h['targets']} targets, "
            f"poll every {h['poll_interval']:g} s, ready after {h['startup_seconds']:.1f} s =="
        )
        print(
            "   latency is client side; ratios: against /healthz at the same concurrency (p50/p50, p95/p95);"
        )
        print("   the last row is the sustained mixed load that the Redis command rate is measured under")
        print(report.http_table(h))
        idle, load = h["idle_redis"], h["sustained"]["redis"]
        print(
            f"   Redis, idle {idle['seconds']:.1f} s: {idle['commands_per_s']:,.0f} commands/s, "
            f"{idle['poll_rounds_per_s']:.2f} poll rounds/s, {idle['commands_per_round']:,.0f} commands/round"
        )
        print(
            f"   Redis, {h['sustained']['concurrency']} clients on {h['sustained']['path']} for "
            f"{load['seconds']:.1f} s: {load['commands_per_s']:,.0f} commands/s, "
            f"{load['poll_rounds_per_s']:.2f} poll rounds/s, "
            f"{report.fmt(load['commands_per_round'])} commands/round"
        )
        for path, why in h["not_ok"].items():
            print(f"   FAILED: {path} answered {why} before the load (see the checks)")
    if "weight" in data:
        print(f"\n== Page weight: bytes transferred in headless Chromium, {data['weight']['scenario']} ==")
        print("   cold = empty cache; warm = opened again (static files cached); one poll = live parts once")
        print(weight.weight_text(data["weight"]))
    if "bulk" in data:
        print("\n== Bulk requeue of a queue's dead letters while a real worker runs them ==")
        print(bulk.bulk_text(data["bulk"]))
    if "search" in data:
        print("\n== Search of a queue's stored jobs through the API, while the overview is measured ==")
        print(search.search_text(data["search"]))
    if "decode" in data:
        print("\n== Decode budget: the same payloads decoded in process (main) and in decoder processes ==")
        print(decode.decode_text(data["decode"]))
    print(f"\nChecks ({data['elapsed_seconds']:.1f} s):")
    print(report.checks_text(checks))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = SMALL if args.small else FULL
    started = time.perf_counter()
    binary, kind = pick_server(args.server)
    stamp = datetime.now(UTC)
    data: dict[str, Any] = {
        "mode": sizes.mode,
        "started_at": stamp.isoformat(timespec="seconds"),
        "sizes": {k: getattr(sizes, k) for k in sizes.__slots__},
        "machine": machine(),
        "redis": {"binary": binary},
    }
    server = RedisServer(binary, kind=kind)
    try:
        server.start()
        log(f"{kind} on 127.0.0.1:{server.port} (no persistence)")
        checks = asyncio.run(_run(server.url, sizes, args.only, data))
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
    data["elapsed_seconds"] = time.perf_counter() - started
    data["machine"]["loadavg_at_end"] = list(os.getloadavg())
    if sizes is SMALL:
        checks.append(
            report.Check(
                f"--small finished within {SMALL_TIME_LIMIT:g} s",
                data["elapsed_seconds"] < SMALL_TIME_LIMIT,
                f"{data['elapsed_seconds']:.1f} s",
            )
        )
    output = args.output or RESULTS / f"{sizes.mode}-{stamp:%Y%m%d-%H%M%S}.json"
    report.write_json(output, data, checks)
    print_report(data, checks)
    print(f"\nResults: {output}")
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"{len(failed)} invariant(s) FAILED", file=sys.stderr)
        return 1
    return 0
