"""Browser fixtures: a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), a Redis
of our own, a real `python -m callboard serve` on it, and a Dramatiq broker to seed it.

Playwright's sync API runs in plain sync tests and fixtures (no asyncio loop is running there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dramatiq.brokers.redis import RedisBroker
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Playwright, sync_playwright

from tests.conftest import SERVERS
from tests.servers import Callboard, RedisServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Short, so live parts move quickly on screen; every wait below is bounded by a few of these.
POLL_SECONDS = 0.3
#: The target name the Callboard under test gives its Redis.
TARGET = "main"


def new_redis() -> RedisServer:
    kind = "redis" if "redis" in SERVERS else "valkey"
    return RedisServer(SERVERS[kind], kind=kind).start()


def start_callboard(name: str, redis: RedisServer) -> Callboard:
    """A real `python -m callboard serve` watching `redis` as target `name`, polling every POLL_SECONDS.

    Discovery finds queues by a background SCAN that, after a full pass, waits 15 s before the next:
    seed the queues a test needs before starting it."""
    return Callboard([f"{name}={redis.url}"]).start(poll_interval=POLL_SECONDS)


def new_broker(url: str) -> RedisBroker:
    broker: RedisBroker = RedisBroker(url=url)  # type: ignore[no-untyped-call]
    return broker


def close_broker(broker: RedisBroker) -> None:
    broker.client.connection_pool.disconnect()


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium package "
            "(apt-get install chromium). Playwright's own browser download is not used here."
        )
    browser = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="module")
def browser_redis() -> Iterator[RedisServer]:
    """This module's own Redis (so queue names and screenshots are clean), on a free port."""
    server = new_redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def broker(browser_redis: RedisServer) -> Iterator[RedisBroker]:
    broker = new_broker(browser_redis.url)
    yield broker
    close_broker(broker)


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    """Script errors and failed loads the page reports, but the browser's own /favicon.ico probe."""
    errors: list[str] = []

    def record(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.location.get("url", "").endswith("/favicon.ico"):
            errors.append(f"{msg.text} ({msg.location.get('url')})")

    page.on("console", record)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def answer_next_dialog(page: Page, accept: bool) -> list[str]:
    """Accept or dismiss the next dialog; the returned list receives its message."""
    messages: list[str] = []

    def handle(dialog: Dialog) -> None:
        messages.append(dialog.message)
        if accept:
            dialog.accept()
        else:
            dialog.dismiss()

    page.once("dialog", handle)
    return messages
