"""HTTP latency of `python -m callboard serve` under concurrent clients, and the Redis load meanwhile.

Each level is one endpoint at one concurrency: `concurrency` client tasks share one keep-alive
connection pool and issue at most `requests` requests in total, stopping early at a time cap.
Latency is per request, client side (send to body read), and each endpoint is compared with
`/healthz` at the same concurrency (a route that does nothing: the HTTP + client floor).

Redis load: INFO is read around an idle window, every level, and a sustained load at the top
concurrency on every page in turn (long enough to hold several poll rounds). Each poll round sends
one DBSIZE per target (the snapshot part reports `marker_calls_per_cycle`), so `rounds = DBSIZE
calls / targets`. The invariant: commands per second under the sustained load stay near the idle
rate (viewers read the store, never Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from bench import redisinfo
from bench.scenarios import Scenario
from bench.sizes import Sizes
from bench.snapshot import ROUND_MARKER
from bench.stats import ratio, summary
from tests.servers import Callboard, wait_until

FLOOR = "/healthz"
#: Pages measured against the floor. The fragment is what every open overview tab polls.
PAGES = ("/", "/fragments/overview", "/metrics")
#: Every one must answer 200 before the load: a page that does not fails the bench (it is still
#: loaded, so its failures also show as errors under load), it is never left out.
REQUIRED = (FLOOR, *PAGES)
#: Load may raise the Redis command rate by at most this factor (plus one poll round of slack).
REDIS_MARGIN = 1.25


@dataclass
class Level:
    #: What was requested: one path, or several in turn (the sustained mixed load).
    paths: tuple[str, ...]
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    body_bytes: int = 0
    redis: redisinfo.Window | None = None

    @property
    def path(self) -> str:
        return " + ".join(self.paths)


async def _client_loop(
    client: httpx.AsyncClient, level: Level, budget: list[int], deadline: float, turn: int
) -> None:
    while budget[0] > 0 and time.perf_counter() < deadline:
        budget[0] -= 1
        path = level.paths[turn % len(level.paths)]
        turn += 1
        started = time.perf_counter()
        try:
            response = await client.get(path)
        except httpx.HTTPError as exc:
            level.errors[type(exc).__name__] = level.errors.get(type(exc).__name__, 0) + 1
            continue
        level.latencies.append(time.perf_counter() - started)
        level.body_bytes = max(level.body_bytes, len(response.content))
        if response.status_code != 200:
            key = f"{path}: HTTP {response.status_code}"
            level.errors[key] = level.errors.get(key, 0) + 1


async def run_level(
    client: httpx.AsyncClient,
    redis: Redis,
    paths: tuple[str, ...],
    concurrency: int,
    requests: int,
    seconds: float,
) -> Level:
    """`concurrency` clients share `requests` requests (stopping at `seconds`); INFO read around it."""
    level = Level(paths, concurrency)
    budget = [requests]
    before = await redisinfo.probe(redis)
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_client_loop(client, level, budget, deadline, i) for i in range(concurrency)))
    level.seconds = time.perf_counter() - started
    level.redis = redisinfo.Window(before, await redisinfo.probe(redis))
    return level


def redis_load(window: redisinfo.Window, targets: int) -> dict[str, float]:
    rounds = window.calls(ROUND_MARKER) / targets
    return {
        "seconds": window.seconds,
        "commands": window.total_commands,
        "commands_per_s": window.total_commands / window.seconds,
        "poll_rounds": rounds,
        "poll_rounds_per_s": rounds / window.seconds,
        "commands_per_round": window.total_commands / rounds if rounds else float("nan"),
    }


def wait_ready(board: Callboard, scenarios: tuple[Scenario, ...], timeout: float = 60.0) -> None:
    """Until every target is up and has discovered every seeded queue."""
    want = sum(len(s.layout.queues) for s in scenarios)

    def ready() -> bool:
        status, body = board.get("/api/v1/queues")
        if status != 200:
            return False
        data = json.loads(body)
        return all(t["up"] for t in data["targets"]) and len(data["queues"]) == want

    wait_until(ready, timeout=timeout, interval=0.2, what=f"all targets up with {want} queues")


def _level_row(level: Level, floor: Level | None) -> dict[str, Any]:
    lat = summary(level.latencies, 1000.0)
    rps = len(level.latencies) / level.seconds if level.seconds else float("nan")
    row: dict[str, Any] = {
        "path": level.path,
        "concurrency": level.concurrency,
        "requests": len(level.latencies),
        "errors": level.errors,
        "seconds": level.seconds,
        "latency_ms": lat,
        "throughput_rps": rps,
        "body_bytes": level.body_bytes,
    }
    if floor is not None:
        floor_lat = summary(floor.latencies, 1000.0)
        floor_rps = len(floor.latencies) / floor.seconds if floor.seconds else float("nan")
        row["ratio_p50"] = ratio(lat["median"], floor_lat["median"])
        row["ratio_p95"] = ratio(lat["p95"], floor_lat["p95"])
        row["throughput_ratio"] = ratio(rps, floor_rps)
    return row


async def bench_http(
    redis_url: str, redis: Redis, scenarios: tuple[Scenario, ...], sizes: Sizes
) -> dict[str, Any]:
    """Serve the seeded databases (one target each), then load the pages level by level."""
    specs = [f"{s.name}={redis_url.rsplit('/', 1)[0]}/{s.db}" for s in scenarios]
    board = Callboard(specs)
    started = time.perf_counter()
    board.start(poll_interval=sizes.poll_interval)
    with serving(board):
        wait_ready(board, scenarios)
        startup = time.perf_counter() - started
        return await _measure(board, redis, len(scenarios), sizes) | {"startup_seconds": startup}


@contextlib.contextmanager
def serving(board: Callboard) -> Iterator[Callboard]:
    """A started board, stopped at the end; a failure inside prints the end of its log first."""
    try:
        yield board
    except BaseException:
        if board.proc:
            print(board.proc.log()[-4000:])
        raise
    finally:
        board.stop()


async def _measure(board: Callboard, redis: Redis, targets: int, sizes: Sizes) -> dict[str, Any]:
    status = {path: board.get(path)[0] for path in REQUIRED}
    pages = PAGES
    top = max(sizes.concurrency)
    limits = httpx.Limits(max_connections=top, max_keepalive_connections=top)
    async with httpx.AsyncClient(base_url=board.url, limits=limits, timeout=30.0) as client:
        for path in (FLOOR, *pages):  # warm templates, routes and the connection pool
            await run_level(client, redis, (path,), min(top, 4), 8, 5.0)
        idle_start = await redisinfo.probe(redis)
        await asyncio.sleep(sizes.idle_seconds)
        idle = redisinfo.Window(idle_start, await redisinfo.probe(redis))
        levels: list[tuple[Level, Level | None]] = []
        for concurrency in sizes.concurrency:
            count = sizes.requests_single if concurrency == 1 else max(sizes.requests, 2 * concurrency)
            floor = await run_level(client, redis, (FLOOR,), concurrency, count, sizes.level_seconds)
            levels.append((floor, None))
            for path in pages:
                level = await run_level(client, redis, (path,), concurrency, count, sizes.level_seconds)
                levels.append((level, floor))
        sustained = await run_level(client, redis, pages, top, sizes.sustain_requests, sizes.sustain_seconds)
    rows = []
    for level, base in levels:
        assert level.redis is not None
        rows.append(_level_row(level, base) | {"redis": redis_load(level.redis, targets)})
    assert sustained.redis is not None
    return {
        "status_before_load": status,
        "not_ok": {p: f"HTTP {s}" for p, s in status.items() if s != 200},
        "poll_interval": sizes.poll_interval,
        "targets": targets,
        "levels": rows,
        "top_concurrency": top,
        "idle_redis": redis_load(idle, targets) | {"by_command": idle.by_command()},
        "sustained": _level_row(sustained, None)
        | {"redis": redis_load(sustained.redis, targets) | {"by_command": sustained.redis.by_command()}},
    }
