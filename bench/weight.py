"""Bytes a browser transfers per page: cold (empty cache) and warm (the static files cached).

A real headless Chromium (Debian's /usr/bin/chromium, as the browser tests launch it) loads each
page of `python -m callboard serve` watching the seeded one-queue database. Cold: a new browser
context (an empty cache) opens the page. Warm: the same context opens it again, so only what is not
cached travels (the HTML, the fragments and API reads the page makes on load). One poll: the live
parts' refetch, once (`callboard:poll`).

Transferred bytes are what Chromium's DevTools protocol reports as each request's
`encodedDataLength` at `Network.loadingFinished`: headers and body as they crossed the wire
(compressed when compressed), the figure DevTools shows as "transferred"; a file served from the
browser's cache counts 0. A load ends at the `load` event once no request has been on its way for
300 ms (the page's own reads on load included); the server polls every 30 s, so no timed poll falls
inside a measurement.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from bench.report import Check, table
from bench.scenarios import Scenario
from bench.web import serving, wait_ready
from callboard.dashboard.urls import api_jobs_url, job_url, queue_url
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.servers import Callboard

#: Targets: a cold overview, and any page opened with the static files cached (kB = 1,000 bytes).
COLD_OVERVIEW_LIMIT = 60_000
WARM_LIMIT = 10_000
#: Long enough that no timed poll lands inside a measurement (pages load side by side, and each
#: waits for 300 ms of network quiet).
POLL_INTERVAL = 30.0
#: Pages loaded side by side (each in its own browser context, so their caches stay apart): the
#: waits for quiet overlap, which keeps `--small` short.
PARALLEL = 8


@dataclass
class Transfer:
    """What one load moved: bytes and requests by URL path, and how many came from the cache."""

    bytes_by_path: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    from_cache: int = 0

    @property
    def bytes(self) -> int:
        return sum(self.bytes_by_path.values())

    def view(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "requests": self.requests,
            "from_cache": self.from_cache,
            "bytes_by_path": self.bytes_by_path,
        }


class Meter:
    """Counts one page's network traffic through a CDP session, between `start()` and `stop()`."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}
        self.current: Transfer | None = None
        #: Requests sent and not finished (or failed) yet, and when the last one ended.
        self.in_flight: set[str] = set()
        self.sent_count = 0
        self.quiet_since = time.monotonic()

    def start(self) -> None:
        self.current = Transfer()

    def stop(self) -> Transfer:
        assert self.current is not None
        done, self.current = self.current, None
        return done

    def sent(self, event: dict[str, Any]) -> None:
        parts = urlsplit(event["request"]["url"])
        self.paths[event["requestId"]] = parts.path + (f"?{parts.query}" if parts.query else "")
        self.in_flight.add(event["requestId"])
        self.sent_count += 1

    def ended(self, event: dict[str, Any]) -> None:
        self.in_flight.discard(event["requestId"])
        self.quiet_since = time.monotonic()

    def cached(self, event: dict[str, Any]) -> None:
        if self.current is not None:
            self.current.from_cache += 1

    def finished(self, event: dict[str, Any]) -> None:
        self.ended(event)
        if self.current is None:
            return
        path = self.paths.get(event["requestId"], "?")
        self.current.requests += 1
        self.current.bytes_by_path[path] = self.current.bytes_by_path.get(path, 0) + int(
            event["encodedDataLength"]
        )


async def _metered_page(context: BrowserContext) -> tuple[Page, Meter]:
    page = await context.new_page()
    meter = Meter()
    cdp = await context.new_cdp_session(page)
    handlers: dict[str, Callable[[dict[str, Any]], None]] = {
        "Network.requestWillBeSent": meter.sent,
        "Network.requestServedFromCache": meter.cached,
        "Network.loadingFinished": meter.finished,
        "Network.loadingFailed": meter.ended,
    }
    for name, handler in handlers.items():
        cdp.on(name, handler)
    await cdp.send("Network.enable")
    return page, meter


async def _settled(meter: Meter, sent: int, quiet: float = 0.3, timeout: float = 10.0) -> None:
    """Until a request was sent after `sent` and none has been in flight for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if meter.sent_count > sent and not meter.in_flight and time.monotonic() - meter.quiet_since >= quiet:
            return
        await asyncio.sleep(0.05)
    stuck = [meter.paths.get(r, r) for r in meter.in_flight]
    raise AssertionError(f"requests did not settle within {timeout} s: {stuck}")


async def _measure_page(browser: Browser, url: str) -> dict[str, Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page, meter = await _metered_page(context)
        out: dict[str, Any] = {}
        for name in ("cold", "warm"):
            meter.start()
            sent = meter.sent_count
            response = await page.goto(url, wait_until="load")
            assert response is not None and response.status == 200, (url, response and response.status)
            await _settled(meter, sent)  # the CDP events of the last requests may still be on their way
            out[name] = meter.stop().view()
        meter.start()
        sent = meter.sent_count
        await page.evaluate("document.body.dispatchEvent(new CustomEvent('callboard:poll'))")
        await _settled(meter, sent)
        out["poll"] = meter.stop().view()
        return out
    finally:
        await context.close()


def _pages(board: Callboard, target: str) -> dict[str, str]:
    queue = "dramatiq:default"
    status, body = board.get(api_jobs_url(target, "dramatiq", queue) + "?state=ready&limit=1")
    assert status == 200, (status, body[:200])
    job_id = json.loads(body)["items"][0]["job_id"]
    return {
        "overview": "/",
        "queue (ready)": queue_url(target, "dramatiq", queue, "ready"),
        "queue (dead)": queue_url(target, "dramatiq", queue, "dead"),
        "job": job_url(target, "dramatiq", queue, job_id),
        "workers": "/workers",
        "failures": "/failures",
        "tasks": "/tasks",
        "audit": "/audit",
    }


async def bench_weight(redis_url: str, scenario: Scenario, only: tuple[str, ...] | None) -> dict[str, Any]:
    """Serve `scenario`'s database as one target and load each page (those named in `only`, else
    all) cold, warm and for one poll."""
    started = time.perf_counter()
    board = Callboard([f"{scenario.name}={redis_url.rsplit('/', 1)[0]}/{scenario.db}"])
    board.start(poll_interval=POLL_INTERVAL)
    with serving(board):
        wait_ready(board, (scenario,))
        ready = time.perf_counter() - started
        pages = {
            name: path for name, path in _pages(board, scenario.name).items() if only is None or name in only
        }
        async with async_playwright() as driver:
            browser = await driver.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                gate = asyncio.Semaphore(PARALLEL)

                async def measure(name: str, path: str) -> dict[str, Any]:
                    async with gate:
                        return {"page": name, "path": path} | await _measure_page(browser, board.url + path)

                results = await asyncio.gather(*(measure(name, path) for name, path in pages.items()))
            finally:
                await browser.close()
        return {
            "scenario": scenario.label,
            "poll_interval": POLL_INTERVAL,
            "pages": list(results),
            "startup_seconds": ready,
            "seconds": time.perf_counter() - started,
        }


def weight_checks(result: dict[str, Any]) -> list[Check]:
    by = {p["page"]: p for p in result["pages"]}
    cold = by["overview"]["cold"]["bytes"]
    checks = [
        Check(
            f"cold overview < {COLD_OVERVIEW_LIMIT / 1000:g} kB transferred",
            cold < COLD_OVERVIEW_LIMIT,
            f"{cold / 1000:.1f} kB in {by['overview']['cold']['requests']} requests",
        )
    ]
    heavy = {p["page"]: p["warm"]["bytes"] for p in result["pages"] if p["warm"]["bytes"] >= WARM_LIMIT}
    worst = max(result["pages"], key=lambda p: p["warm"]["bytes"])
    checks.append(
        Check(
            f"every page warm < {WARM_LIMIT / 1000:g} kB transferred",
            not heavy,
            ", ".join(f"{name}: {b / 1000:.1f} kB" for name, b in heavy.items())
            or f"heaviest: {worst['page']} {worst['warm']['bytes'] / 1000:.1f} kB",
        )
    )
    return checks


def weight_text(result: dict[str, Any]) -> str:
    headers = ["page", "cold kB", "requests", "warm kB", "requests", "from cache", "one poll kB"]
    rows = [
        [
            p["page"],
            p["cold"]["bytes"] / 1000,
            p["cold"]["requests"],
            p["warm"]["bytes"] / 1000,
            p["warm"]["requests"],
            p["warm"]["from_cache"],
            p["poll"]["bytes"] / 1000,
        ]
        for p in result["pages"]
    ]
    return table(headers, rows)
