"""Search over a large Dramatiq queue through a running `callboard serve`, and what it costs others.

One queue in Dramatiq's exact layout (bench.seed: ready, delayed and dead payloads, 90/5/5), three
of whose messages, picked at random among all of them, get a unique string in their args. Then:
* baseline: the overview (`GET /`, one client, back to back) and a Redis PING every 5 ms, with no
  search running;
* search: `GET /api/v1/search?q=<unique>&in=args` scoped to the queue, its progress polled, while
  the same overview client and PING probe run; repeated back to back until the window is as long as
  the baseline's (a small queue is searched in a fraction of a second);
* an exact id lookup of one needle (it must answer without walking anything).
Figures are ratios to the baseline measured in the same run.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.report import Check
from bench.seed import Layout, QueueSeed, seed
from bench.stats import ratio, summary
from tests.servers import Callboard, wait_until

DB = 6
TARGET = "search"
KEY = "dramatiq:default"
NEEDLES = 3
PING_EVERY = 0.005
PROGRESS_EVERY = 0.02
#: Invariants: the overview's p95 during a search at most this many times its idle p95; no PING over
#: this many ms while searching.
OVERVIEW_P95_RATIO = 3.0
PING_MAX_MS = 50.0


async def seed_needles(redis: Redis, jobs: int) -> tuple[dict[str, Any], str, set[str]]:
    """`jobs` messages (90 % ready, 5 % delayed, 5 % dead); 3 at random carry a unique string."""
    side = jobs // 20
    seeded = await seed(redis, Layout("dramatiq", (QueueSeed("default", jobs - 2 * side, 0, side, side),)))
    needle = f"needle-{uuid.uuid4().hex}"
    hashes = [f"{KEY}.msgs", f"{KEY}.DQ.msgs", f"{KEY}.XQ.msgs"]
    weights = [jobs - 2 * side, side, side]
    rids: set[str] = set()
    while len(rids) < NEEDLES:
        key = random.choices(hashes, weights)[0]
        rid = (await redis.hrandfield(key)).decode()
        if rid in rids:
            continue
        message = json.loads(await redis.hget(key, rid))  # type: ignore[misc]
        message["args"][1] = needle
        await redis.hset(key, rid, json.dumps(message, separators=(",", ":")))  # type: ignore[misc]
        rids.add(rid)
    return seeded, needle, rids


async def _overview(client: httpx.AsyncClient, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        response = await client.get("/")
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
        await asyncio.sleep(0.005)


async def _ping(redis: Redis, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await redis.ping()
        samples.append(time.perf_counter() - started)
        await asyncio.sleep(PING_EVERY)


async def _search(client: httpx.AsyncClient, needle: str) -> dict[str, Any]:
    """One search run to its end; its progress readings while running, and its final state."""
    params = {"q": needle, "in": "args", "target": TARGET, "framework": "dramatiq", "queue": KEY}
    started = time.perf_counter()
    state = (await client.get("/api/v1/search", params=params)).json()
    readings = [(0.0, state["scanned"], state["matches"], state["status"])]
    while state["status"] == "running":
        await asyncio.sleep(PROGRESS_EVERY)
        state = (await client.get(f"/api/v1/searches/{state['id']}")).json()
        readings.append((time.perf_counter() - started, state["scanned"], state["matches"], state["status"]))
    return {"wall_seconds": time.perf_counter() - started, "state": state, "readings": readings}


async def _window(
    client: httpx.AsyncClient, probe: Redis, seconds: float, needle: str | None
) -> tuple[list[float], list[float], list[dict[str, Any]]]:
    """Overview and PING latencies for `seconds`; with a needle, searches run back to back meanwhile."""
    overview: list[float] = []
    pings: list[float] = []
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_overview(client, overview, stop)),
        asyncio.create_task(_ping(probe, pings, stop)),
    ]
    runs: list[dict[str, Any]] = []
    deadline = time.perf_counter() + seconds
    if needle is None:
        await asyncio.sleep(seconds)
    while needle is not None and (not runs or time.perf_counter() < deadline):
        runs.append(await _search(client, needle))
    stop.set()
    await asyncio.gather(*tasks)
    return overview, pings, runs


async def bench_search(server_url: str, jobs: int, probe_seconds: float) -> dict[str, Any]:
    url = f"{server_url.rsplit('/', 1)[0]}/{DB}"
    redis = Redis.from_url(url, socket_timeout=120)
    probe = Redis.from_url(url)
    await redis.flushdb()
    seeded, needle, rids = await seed_needles(redis, jobs)
    board = Callboard([f"{TARGET}={url}"]).start(poll_interval=0.5)
    try:
        with httpx.Client(base_url=board.url, timeout=10) as sync:
            wait_until(
                lambda: any(q["key"] == KEY for q in sync.get("/api/v1/queues").json()["queues"]),
                timeout=60,
                what=f"{KEY} on the board",
            )
        async with httpx.AsyncClient(base_url=board.url, timeout=60) as client:
            for _ in range(20):  # warm the routes, templates and connections
                await client.get("/")
            idle_overview, idle_pings, _ = await _window(client, probe, probe_seconds, None)
            # Redis's own view: commands that took >= 10 ms in the server while searching.
            await redis.config_set("latency-monitor-threshold", 10)
            await redis.config_set("slowlog-log-slower-than", 10_000)
            await redis.execute_command("LATENCY", "RESET")
            await redis.slowlog_reset()
            busy_overview, busy_pings, runs = await _window(client, probe, probe_seconds, needle)
            slow = await redis.slowlog_get(20)
            latency_events = await redis.execute_command("LATENCY", "LATEST")
            by_id = await _search_id(client, sorted(rids)[0])
    finally:
        board.stop()
        await redis.flushdb()
        await redis.aclose()
        await probe.aclose()
    first = runs[0]
    idle_o, busy_o = summary(idle_overview, 1000.0), summary(busy_overview, 1000.0)
    idle_p, busy_p = summary(idle_pings, 1000.0), summary(busy_pings, 1000.0)
    total = first["state"]["total"]
    return {
        "jobs": jobs,
        "seed": seeded,
        "needles": sorted(rids),
        "searches": len(runs),
        "found": [sorted(h["job_id"] for h in r["state"]["hits"]) for r in runs],
        "statuses": [r["state"]["status"] for r in runs],
        "first": {
            "total": total,
            "scanned": first["state"]["scanned"],
            "matches": first["state"]["matches"],
            "server_seconds": first["state"]["seconds"],
            "wall_seconds": first["wall_seconds"],
            "jobs_per_second": total / first["state"]["seconds"] if first["state"]["seconds"] else None,
            "readings": first["readings"],
        },
        "by_id": by_id,
        "overview_idle_ms": idle_o,
        "overview_search_ms": busy_o,
        "overview_p50_ratio": ratio(busy_o["median"], idle_o["median"]),
        "overview_p95_ratio": ratio(busy_o["p95"], idle_o["p95"]),
        "ping_idle_ms": idle_p,
        "ping_search_ms": busy_p,
        "ping_p95_ratio": ratio(busy_p["p95"], idle_p["p95"]),
        "slowlog": [{"ms": int(e["duration"]) / 1000, "command": _text(e["command"])[:60]} for e in slow],
        "latency_events": [{"event": _text(e[0]), "max_ms": int(e[3])} for e in latency_events],
    }


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def _search_id(client: httpx.AsyncClient, rid: str) -> dict[str, Any]:
    started = time.perf_counter()
    state = (await client.get("/api/v1/search", params={"q": rid, "in": "id"})).json()
    while state["status"] == "running":
        await asyncio.sleep(0.005)
        state = (await client.get(f"/api/v1/searches/{state['id']}")).json()
    return {
        "wall_ms": (time.perf_counter() - started) * 1000,
        "found_by_id": state["found_by_id"],
        "scanned": state["scanned"],
        "found": [h["job_id"] for h in state["hits"]],
    }


def search_checks(r: dict[str, Any]) -> list[Check]:
    first = r["first"]
    running = [x for x in first["readings"] if x[3] == "running"]
    scanned = [x[1] for x in first["readings"]]
    midway = [s for _, s, _, status in first["readings"] if status == "running" and 0 < s < first["total"]]
    found_all = all(f == r["needles"] for f in r["found"]) and set(r["statuses"]) == {"finished"}
    return [
        Check(
            f"search: every run found exactly the {NEEDLES} needles among {r['jobs']:,} jobs",
            found_all and first["matches"] == NEEDLES and first["scanned"] >= first["total"],
            f"{r['searches']} run(s), {first['matches']} matches, scanned {first['scanned']:,} of "
            f"{first['total']:,} in {first['server_seconds']:.2f} s",
        ),
        Check(
            "search: progress reported while running, scanned never going back",
            scanned == sorted(scanned) and bool(midway),
            f"{len(running)} readings while running, {len(set(midway))} distinct part-way counts",
        ),
        Check(
            "search: an exact id is found at once, nothing walked",
            r["by_id"]["found_by_id"] and r["by_id"]["scanned"] == 0 and len(r["by_id"]["found"]) == 1,
            f"{r['by_id']['wall_ms']:.1f} ms",
        ),
        Check(
            f"search: overview p95 while searching ≤ {OVERVIEW_P95_RATIO:g}x idle",
            r["overview_p95_ratio"] <= OVERVIEW_P95_RATIO,
            f"{r['overview_search_ms']['p95']:.2f} ms vs {r['overview_idle_ms']['p95']:.2f} ms = "
            f"{r['overview_p95_ratio']:.2f}x",
        ),
        Check(
            f"search: no Redis PING over {PING_MAX_MS:g} ms while searching",
            r["ping_search_ms"]["max"] < PING_MAX_MS,
            f"max {r['ping_search_ms']['max']:.1f} ms, p95 {r['ping_search_ms']['p95']:.2f} ms "
            f"(idle p95 {r['ping_idle_ms']['p95']:.2f} ms)",
        ),
    ]


def search_text(r: dict[str, Any]) -> str:
    f = r["first"]
    o_idle, o_busy = r["overview_idle_ms"], r["overview_search_ms"]
    p_idle, p_busy = r["ping_idle_ms"], r["ping_search_ms"]
    rate = f"{f['jobs_per_second']:,.0f} jobs/s" if f["jobs_per_second"] else "—"
    return "\n".join(
        [
            f"   {r['jobs']:,} jobs seeded in {r['seed']['seconds']:.1f} s; args searched for a needle: "
            f"{f['matches']} matches, {f['total']:,} scanned in {f['server_seconds']:.2f} s ({rate}), "
            f"{len(f['readings'])} progress readings; {r['searches']} run(s) in the window",
            f"   exact id lookup: {r['by_id']['wall_ms']:.1f} ms, {r['by_id']['scanned']} scanned",
            f"   GET / idle:      p50 {o_idle['median']:.2f} ms, p95 {o_idle['p95']:.2f} ms, "
            f"max {o_idle['max']:.2f} ms ({o_idle['n']} requests)",
            f"   GET / searching: p50 {o_busy['median']:.2f} ms, p95 {o_busy['p95']:.2f} ms, "
            f"max {o_busy['max']:.2f} ms ({o_busy['n']} requests); "
            f"p50 x idle {r['overview_p50_ratio']:.2f}, p95 x idle {r['overview_p95_ratio']:.2f}",
            f"   PING idle:       p95 {p_idle['p95']:.2f} ms, max {p_idle['max']:.2f} ms; searching: "
            f"p95 {p_busy['p95']:.2f} ms, max {p_busy['max']:.2f} ms (p95 x idle {r['ping_p95_ratio']:.2f})",
            "   Redis slowlog while searching (>= 10 ms): "
            + (", ".join(f"{e['command'].split(' ')[0]} {e['ms']:.0f} ms" for e in r["slowlog"]) or "empty")
            + "; latency monitor: "
            + (", ".join(f"{e['event']} {e['max_ms']} ms" for e in r["latency_events"]) or "none >= 10 ms"),
        ]
    )
