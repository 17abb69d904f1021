"""The UI in a real headless Chromium against a real Callboard, Redis and Dramatiq.

Live parts are htmx polls of `/fragments/...`; these tests watch numbers change on screen without a
reload, the Redis-down banner come and go, polling pause while the tab is hidden, and a dead letter's
traceback reach its job page. Waits are Playwright's own (expect/wait_for) or `wait_until`, all bounded.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from playwright.sync_api import Locator, Page, Request, expect

from tests.browser import worker_app
from tests.browser.conftest import TARGET, new_redis, start_callboard
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.browser

#: Long enough for discovery plus a couple of polls; short enough to fail fast.
LIVE_TIMEOUT_MS = 10_000


def noop(*args: Any) -> None:
    pass


def count_span(page: Page, key: str, state: str, scope: str = "#overview") -> Locator:
    """The on-screen count of `state` for the queue with Redis key `key` (the `count` macro's span)."""
    return page.locator(f'{scope} [data-queue="{key}"][data-state="{state}"]')


def queue_path(key: str, state: str | None = None) -> str:
    path = f"/queues/{TARGET}/dramatiq/{quote(key, safe='')}"
    return path + (f"?state={state}" if state else "")


@pytest.fixture(scope="module")
def seed_actors(broker: RedisBroker) -> dict[str, Any]:
    """Producer-side actors on the test's broker, in three queues (no worker consumes them)."""
    return {
        name: dramatiq.actor(broker=broker, actor_name=name, queue_name=queue)(noop)
        for name, queue in [
            ("send_welcome_email", "emails"),
            ("resize_image", "default"),
            ("generate_report", "reports"),
        ]
    }


@dataclass(frozen=True)
class DeadLetter:
    queue_key: str
    redis_id: str


@pytest.fixture(scope="module")
def dead_letter(browser_redis: RedisServer, broker: RedisBroker) -> Iterator[DeadLetter]:
    """One dead letter made by a real `dramatiq` worker: an actor that fails, is retried once, dies."""
    actors = worker_app.declare_actors(broker)
    actors[worker_app.DEAD_ACTOR].send(42)
    dead_key = f"dramatiq:{worker_app.DEAD_QUEUE}.XQ"
    worker = Process(
        [sys.executable, "-m", "dramatiq", "tests.browser.worker_app", "--processes", "1", "--threads", "1"],
        child_env(BROWSER_TEST_REDIS_URL=browser_redis.url),
        "dramatiq-worker",
    ).start()
    try:
        wait_until(
            lambda: broker.client.zcard(dead_key) == 1,
            timeout=20,
            what=f"one dead letter in {dead_key} (worker log: {worker.log_path})",
        )
    finally:
        worker.stop()
    (rid,) = cast(list[bytes], broker.client.zrange(dead_key, 0, -1))
    yield DeadLetter(f"dramatiq:{worker_app.DEAD_QUEUE}", rid.decode())


@pytest.fixture(scope="module")
def callboard(
    browser_redis: RedisServer, seed_actors: dict[str, Any], dead_letter: DeadLetter
) -> Iterator[Callboard]:
    """The dashboard under test, started once the module's queues exist (see `start_callboard`)."""
    for name, n in [("send_welcome_email", 5), ("resize_image", 3), ("generate_report", 2)]:
        for i in range(n):
            seed_actors[name].send(i)
    app = start_callboard(TARGET, browser_redis)
    yield app
    app.stop()


def test_overview_lists_queues_and_counts_move_without_reload(
    page: Page, callboard: Callboard, seed_actors: dict[str, Any]
) -> None:
    page.goto(callboard.url + "/")
    for key in ("dramatiq:emails", "dramatiq:default", "dramatiq:reports"):
        expect(page.locator(f'#overview tr[data-queue-row="{key}"]')).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    ready = count_span(page, "dramatiq:emails", "ready")
    expect(ready).to_have_text("5", timeout=LIVE_TIMEOUT_MS)
    expect(count_span(page, "dramatiq:default", "ready")).to_have_text("3")
    expect(count_span(page, "dramatiq:reports", "ready")).to_have_text("2")

    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("window.__marker = 1")
    for i in range(4):
        seed_actors["send_welcome_email"].send(100 + i)

    expect(ready).to_have_text("9", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded instead of updated in place"
    assert navigations == []


def test_the_job_list_updates_live_and_keeps_a_selection(
    page: Page, callboard: Callboard, seed_actors: dict[str, Any], console_errors: list[str]
) -> None:
    """New messages appear in an open job list without a reload. While a row is selected the list
    holds still (the selection and the scroll survive, and it says why); unselected, it catches up."""
    page.set_viewport_size({"width": 1280, "height": 480})  # so the page scrolls
    key = "dramatiq:reports"
    page.goto(callboard.url + queue_path(key, "ready"))
    rows = page.locator("#jobs tr[data-job]")
    expect(rows.first).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    before = rows.count()
    page.evaluate("window.__marker = 1")

    seed_actors["generate_report"].send(900)
    expect(rows).to_have_count(before + 1, timeout=LIVE_TIMEOUT_MS)

    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    first = rows.first.get_attribute("data-job")
    picked = page.locator(f'tr[data-job="{first}"] input[name=ids]')
    picked.check()
    held = page.locator("#jobs [data-held-note]")
    expect(held).to_be_visible()

    list_polls: list[str] = []
    page.on("request", lambda r: list_polls.append(r.url) if "/fragments/jobs/" in r.url else None)
    for i in range(2):
        seed_actors["generate_report"].send(901 + i)
    # The live summary counts them, so polls go on; the selected list holds still meanwhile.
    expect(count_span(page, key, "ready", scope="#queue-summary")).to_have_text(
        str(before + 3), timeout=LIVE_TIMEOUT_MS
    )
    wait_for_polls(page, ("/fragments/queues/",), rounds=3)
    assert list_polls == [], "the list polled while a row was selected"
    expect(rows).to_have_count(before + 1)
    expect(picked).to_be_checked()
    assert page.evaluate("window.scrollY") == scrolled

    picked.uncheck()
    expect(held).to_be_hidden()
    expect(rows).to_have_count(before + 3, timeout=LIVE_TIMEOUT_MS)
    assert list_polls and all("live=1" in url for url in list_polls), list_polls
    # The list's polls leave the count above it (#tab-bulk) in place; the summary moves it with the tabs.
    expect(page.locator('#jobs #tab-bulk [data-field="tab-count"]')).to_have_attribute(
        "data-count", str(before + 3), timeout=LIVE_TIMEOUT_MS
    )
    shown = page.evaluate(
        """key => [document.querySelector(`#queue-summary [data-queue="${key}"][data-state="ready"]`).title,
                   document.querySelector('#tab-bulk [data-field="tab-count"]').dataset.count]""",
        key,
    )
    assert shown[0] == shown[1], shown
    assert page.evaluate("window.scrollY") == scrolled
    assert page.evaluate("window.__marker") == 1, "the page was reloaded instead of updated in place"
    assert console_errors == []

    # A press on a link holds the list until it is released, so the click lands on what was pressed.
    link = rows.first.locator("a[data-job-link]")
    link.scroll_into_view_if_needed()
    link.hover()
    page.evaluate("document.querySelector('#jobs').__pressed = 1")
    page.mouse.down()
    seed_actors["generate_report"].send(904)
    expect(count_span(page, key, "ready", scope="#queue-summary")).to_have_text(
        str(before + 4), timeout=LIVE_TIMEOUT_MS
    )
    wait_for_polls(page, ("/fragments/queues/",), rounds=2)
    assert page.evaluate("document.querySelector('#jobs').__pressed") == 1, "the list was swapped"
    expect(rows).to_have_count(before + 3)
    page.mouse.up()
    page.wait_for_url(re.compile(r"/jobs/"))


def test_dead_message_page_shows_actor_and_traceback(
    page: Page, callboard: Callboard, dead_letter: DeadLetter
) -> None:
    page.goto(callboard.url + queue_path(dead_letter.queue_key, "dead"))
    expect(count_span(page, dead_letter.queue_key, "dead", scope="#queue-summary")).to_have_text(
        "1", timeout=LIVE_TIMEOUT_MS
    )
    row = page.locator(f'tr[data-job="{dead_letter.redis_id}"]')
    expect(row).to_contain_text(worker_app.DEAD_ACTOR)
    expect(row.locator("td.err")).to_contain_text("GatewayRefused")

    row.locator("td.id a").click()
    page.wait_for_url(re.compile(r"/jobs/"))
    expect(page.locator("h1 .actor")).to_have_text(worker_app.DEAD_ACTOR)
    traceback = page.locator("pre.traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text(f"GatewayRefused: {worker_app.FAILURE_MESSAGE}: order 42")
    expect(page.locator("table.kv")).to_contain_text(dead_letter.redis_id)


def test_banner_appears_when_redis_goes_down_and_clears_when_it_is_back(page: Page) -> None:
    redis = new_redis()
    app = start_callboard("flaky", redis)
    try:
        page.goto(app.url + "/")
        card = page.locator('#overview .target[data-target="flaky"]')
        expect(card).to_have_class(re.compile(r"\bup\b"), timeout=LIVE_TIMEOUT_MS)
        alert = page.locator('#banner [role="alert"][data-target="flaky"]')
        expect(alert).to_have_count(0)
        page.evaluate("window.__marker = 1")

        redis.stop()
        expect(alert).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        expect(alert).to_contain_text("is unreachable")
        expect(card).to_have_class(re.compile(r"\bdown\b"))

        redis.start()  # same port, so Callboard's client reconnects
        expect(alert).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
        expect(card).to_have_class(re.compile(r"\bup\b"))
        assert page.evaluate("window.__marker") == 1, "the page was reloaded instead of updated in place"
    finally:
        app.stop()
        redis.stop()


# Playwright keeps every page "visible" (microsoft/playwright#12099): a background tab, a minimized
# window (CDP Browser.setWindowBounds) or a second tab brought to front all leave
# document.visibilityState "visible" in headless Chromium. So the page's own view of visibility is
# emulated: document.hidden/visibilityState read a flag, and each read is counted. static/app.js's poll
# timer keeps ticking and reads document.hidden on every tick, so a growing read count proves that
# polls came due (and were held back) while hidden, without a fixed sleep. The waits pass functions,
# not strings: the page's Content-Security-Policy forbids eval, which string predicates need.
VISIBILITY_SHIM = """
(() => {
  window.__hidden = false;
  window.__hiddenReads = 0;
  const hidden = () => { window.__hiddenReads += 1; return window.__hidden; };
  Object.defineProperty(document, "hidden", { configurable: true, get: hidden });
  Object.defineProperty(document, "visibilityState", {
    configurable: true, get: () => (hidden() ? "hidden" : "visible"),
  });
  window.__setHidden = (value) => {
    window.__hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();
"""


def wait_for_request(page: Page, fragment: str) -> None:
    with page.expect_request(lambda r: fragment in r.url, timeout=LIVE_TIMEOUT_MS):
        pass


def wait_for_polls(page: Page, fragments: tuple[str, ...], rounds: int = 2) -> None:
    """Wait (event-driven, bounded) for `rounds` requests to each fragment path. Playwright delivers
    page events to Python only while it waits on the page, so this waits with `expect_request`."""
    for _ in range(rounds):
        for fragment in fragments:
            wait_for_request(page, fragment)


def test_live_parts_pause_while_the_tab_is_hidden(page: Page, callboard: Callboard) -> None:
    polls: list[str] = []

    def on_request(request: Request) -> None:
        if "/fragments/" in request.url:
            polls.append(request.url)

    page.add_init_script(VISIBILITY_SHIM)
    page.on("request", on_request)
    page.goto(callboard.url + "/")
    live = page.locator("#live-indicator")
    expect(live).to_have_text("live")
    # Visible: both live parts of the overview poll.
    wait_for_polls(page, ("/fragments/overview", "/fragments/banner"))
    assert polls, "page.on('request') saw no fragment requests"

    page.evaluate("window.__setHidden(true)")
    expect(live).to_have_text("paused")
    # Let a poll that was already in flight when the tab hid finish, then count from there.
    start = page.evaluate("window.__hiddenReads")
    page.wait_for_function("(n) => window.__hiddenReads >= n", arg=start + 2, timeout=LIVE_TIMEOUT_MS)
    before = len(polls)
    reads = page.evaluate("window.__hiddenReads")
    # The poll timer checks visibility once per poll interval: ~8 intervals of suppressed polls.
    page.wait_for_function("(n) => window.__hiddenReads >= n", arg=reads + 8, timeout=LIVE_TIMEOUT_MS)
    assert polls[before:] == [], "live parts polled while the tab was hidden"

    with page.expect_request(lambda r: "/fragments/" in r.url, timeout=LIVE_TIMEOUT_MS):
        page.evaluate("window.__setHidden(false)")
    expect(live).to_have_text("live")
    resumed = len(polls)
    wait_for_polls(page, ("/fragments/overview", "/fragments/banner"))
    assert len(polls) - resumed >= 4


def test_screenshots_of_overview_queue_and_job_pages(
    page: Page, callboard: Callboard, dead_letter: DeadLetter, tmp_path: Path
) -> None:
    shots: dict[str, Path] = {}

    page.goto(callboard.url + "/")
    expect(page.locator(f'#overview tr[data-queue-row="{dead_letter.queue_key}"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    expect(page.locator("#overview svg.spark").first).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    shots["overview"] = tmp_path / "overview.png"
    page.screenshot(path=shots["overview"], full_page=True)

    page.goto(callboard.url + queue_path(dead_letter.queue_key, "dead"))
    expect(page.locator(f'tr[data-job="{dead_letter.redis_id}"]')).to_be_visible()
    expect(page.locator("#queue-chart .uplot")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    shots["queue"] = tmp_path / "queue.png"
    page.screenshot(path=shots["queue"], full_page=True)

    page.locator(f'tr[data-job="{dead_letter.redis_id}"] td.id a').click()
    expect(page.locator("pre.traceback")).to_be_visible()
    shots["job"] = tmp_path / "job.png"
    page.screenshot(path=shots["job"], full_page=True)

    for name, path in shots.items():
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{name}: not a PNG"
        assert len(data) > 10_000, f"{name}: suspiciously small screenshot ({len(data)} bytes)"
