"""Every page at a desktop (1440×900) and a phone (390×844) width, in light and dark, in a real Chromium.

On each: axe-core (node_modules/axe-core, a dev dependency) finds no serious or critical violation; on
the phone the page never scrolls sideways (wide content scrolls in its own box), and on the overview and
queue pages the name, ready and dead figures stay within the screen's width. A screenshot of each goes to
$CALLBOARD_SCREENSHOTS (CI keeps them; `make screenshots` picks the README's two from there), else to
pytest's temporary folder. Then the header's colour scheme choice survives a reload and is applied before
the first paint, and the keyboard shortcuts (`/`, `?`, the skip link) work.

One board for the module, seeded with what an operator sees: Dramatiq queues with ready, in-flight,
delayed and dead messages (one dead letter from a real worker, with its traceback), an Arq queue with
queued and deferred jobs, a worker heartbeat, and an hour of flow as the worker companion writes it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import dramatiq
import pytest
import redis
from arq import create_pool
from arq.connections import RedisSettings
from dramatiq.brokers.redis import RedisBroker
from playwright.sync_api import Browser, Page, ViewportSize, expect
from redis.asyncio import Redis as AsyncRedis

from bench.seed import Layout, QueueSeed, seed
from callboard.collectors.flow import Series
from callboard.companion.recorder import Recorder, stage
from callboard.dashboard.urls import job_url, queue_url, task_url
from tests.browser import worker_app
from tests.browser.conftest import TARGET, start_callboard
from tests.servers import REPO, Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.browser

TIMEOUT_MS = 15_000
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
LAYOUTS: dict[str, ViewportSize] = {
    "desktop": {"width": 1440, "height": 900},
    "phone": {"width": 390, "height": 844},
}
#: Backgrounds of <body> (app.css's --bg) in each scheme: proof that the scheme really applied.
BACKGROUNDS = {"light": "rgb(246, 247, 249)", "dark": "rgb(17, 21, 28)"}
THUMBNAILS = "dramatiq:thumbnails"
ARQ_QUEUE = "arq:queue"
RESIZE = Series("dramatiq", "dramatiq", "thumbnails", "bench_actor")
WELCOME = Series("dramatiq", "dramatiq", "emails", "send_welcome_email")
SYNC = Series("arq", "arq", ARQ_QUEUE, "sync_customer")
#: The seeded queues the board must have found before the pages are checked.
QUEUES = (("dramatiq", THUMBNAILS), ("dramatiq", "dramatiq:billing"), ("arq", ARQ_QUEUE))


def noop(*args: Any) -> None:
    pass


@dataclass(frozen=True)
class Screen:
    """A page to check: where it is, what shows it has its data, and what must fit a phone's width."""

    name: str
    path: str
    ready: str
    in_view: tuple[str, ...] = ()


@dataclass(frozen=True)
class Seeded:
    dead_letter: str
    arq_job: str


def _in_thread(coro: Any) -> Any:
    """Run a coroutine to completion on its own thread: Playwright's sync API keeps a loop on this one."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(coro)))
    thread.start()
    thread.join()
    return out[0]


async def _seed_layouts(url: str, port: int) -> str:
    """Dramatiq's layout for a busy queue (and a worker heartbeat), and an Arq queue: returns a job id."""
    client = AsyncRedis.from_url(url)
    try:
        layout = Layout("dramatiq", (QueueSeed("thumbnails", ready=12, in_flight=3, delayed=4, dead=2),))
        await seed(client, layout)
    finally:
        await client.aclose()
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    try:
        first = await pool.enqueue_job("sync_customer", 1017, full=True)
        for customer in (1018, 1019):
            await pool.enqueue_job("sync_customer", customer)
        for customer in (2001, 2002):
            await pool.enqueue_job("sync_customer", customer, _defer_by=3600)
        assert first is not None
        return first.job_id
    finally:
        await pool.aclose()


def _record_flow(url: str) -> None:
    """An hour of flow, as the worker companion writes it: runs of varied length, a few failures."""
    recorder, now = Recorder(), time.time()
    for minute in range(60):
        at = now - minute * 60
        for i in range(1 + minute % 4):
            seconds = 0.02 * (1 + (minute * 7 + i * 13) % 40)
            recorder.record(RESIZE, "failed" if (minute + i) % 11 == 0 else "succeeded", at, seconds, 0.05)
        recorder.record(WELCOME, "succeeded", at, 0.004 * (1 + minute % 5), 0.01)
        if minute % 3 == 0:
            recorder.record(SYNC, "succeeded", at, 0.3, 0.2)
    with redis.Redis.from_url(url) as client, client.pipeline(transaction=False) as pipe:
        stage(pipe, recorder.take(), "screens", 0)
        pipe.execute()


def _dead_letter(url: str, broker: RedisBroker) -> str:
    """One dead letter made by a real `dramatiq` worker, with the traceback of its first attempt."""
    worker_app.declare_actors(broker)[worker_app.DEAD_ACTOR].send(42)
    dead_key = f"dramatiq:{worker_app.DEAD_QUEUE}.XQ"
    worker = Process(
        [sys.executable, "-m", "dramatiq", "tests.browser.worker_app", "--processes", "1", "--threads", "1"],
        child_env(BROWSER_TEST_REDIS_URL=url),
        "dramatiq-worker",
    ).start()
    try:
        wait_until(
            lambda: broker.client.zcard(dead_key) == 1, timeout=20, what=f"a dead letter in {dead_key}"
        )
    finally:
        worker.stop()
    (rid,) = cast(list[bytes], broker.client.zrange(dead_key, 0, -1))
    return rid.decode()


@pytest.fixture(scope="module")
def seeded(browser_redis: RedisServer, broker: RedisBroker) -> Seeded:
    rid = _dead_letter(browser_redis.url, broker)
    for name, queue, n in [("send_welcome_email", "emails", 5), ("generate_report", "reports", 2)]:
        actor = dramatiq.actor(broker=broker, actor_name=name, queue_name=queue)(noop)
        for i in range(n):
            actor.send(i)
    arq_job = _in_thread(_seed_layouts(browser_redis.url, browser_redis.port))
    _record_flow(browser_redis.url)
    return Seeded(rid, arq_job)


@pytest.fixture(scope="module")
def board(browser_redis: RedisServer, seeded: Seeded) -> Iterator[Callboard]:
    app = start_callboard(TARGET, browser_redis)
    wait_until(
        lambda: all(app.get(queue_url(TARGET, fw, key))[0] == 200 for fw, key in QUEUES),
        timeout=30,
        what="every seeded queue discovered",
    )
    yield app
    app.stop()


def screens(seeded: Seeded) -> list[Screen]:
    overview_row = "#overview tr[data-queue-row]"
    tabs = "#queue-summary nav.tabs"
    pages = [
        Screen(
            "overview",
            "/",
            f'{overview_row}[data-queue-row="{THUMBNAILS}"]',
            (
                f"{overview_row} td:first-child a",
                f'{overview_row} [data-state="ready"]',
                f'{overview_row} [data-state="dead"]',
            ),
        )
    ]
    for fw, key, states, failed in (
        ("dramatiq", THUMBNAILS, ("ready", "in_flight", "delayed", "dead"), "dead"),
        ("arq", ARQ_QUEUE, ("ready", "deferred"), "failed"),
    ):
        for state in states:
            pages.append(
                Screen(
                    f"queue-{fw}-{state}",
                    queue_url(TARGET, fw, key, state),
                    "tr[data-job]",
                    (
                        "main h1",
                        f'{tabs} [data-tab="ready"]',
                        f'{tabs} [data-tab="{failed}"]',
                        "tr[data-job] td.id a",
                    ),
                )
            )
    return [
        *pages,
        Screen(
            "job-dramatiq",
            job_url(TARGET, "dramatiq", "dramatiq:billing", seeded.dead_letter),
            "pre.traceback",
        ),
        Screen("job-arq", job_url(TARGET, "arq", ARQ_QUEUE, seeded.arq_job), "h1 [data-field=actor]"),
        Screen("workers", "/workers", "#workers tr[data-worker]"),
        Screen("failures", "/failures", "#failures tr[data-group]", ("#failures tr[data-group] td.what",)),
        Screen("tasks", "/tasks", "#tasks tr[data-task]"),
        Screen("task", task_url(TARGET, RESIZE.id), "table.heat td[data-count]"),
        Screen("search", "/search?q=bench_actor", '#search-progress[data-status="finished"] tr[data-hit]'),
        Screen("audit", "/audit", "main table.audit"),
    ]


@pytest.fixture(scope="module")
def axe() -> str:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `npm ci` installs axe-core, a devDependency (`make setup` runs it)")
    return AXE.read_text()


def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("CALLBOARD_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


AXE_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} at `
      + v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", "));
}"""

#: Elements outside the screen's width (right of it, or left of 0), each as "selector [left, right]".
OUT_OF_VIEW = """(selectors) => selectors.flatMap((selector) => {
  const el = document.querySelector(selector);
  if (!el) return [`${selector}: missing`];
  const r = el.getBoundingClientRect();
  const shown = r.width > 0 && getComputedStyle(el).visibility !== "hidden";
  return shown && r.left >= 0 && r.right <= window.innerWidth ? [] : [`${selector} [${r.left}, ${r.right}]`];
})"""


def check(page: Page, screen: Screen, layout: str, axe: str) -> list[str]:
    """What is wrong with `screen` as the page shows it now: axe's serious and critical findings, and on
    the phone any sideways scroll of the page (or of <main>) and figures outside the screen's width."""
    problems: list[str] = []
    page.evaluate(axe)  # evaluate runs outside the page's CSP, which would refuse an injected <script>
    problems += page.evaluate(AXE_RUN)
    if layout == "phone":
        widths = page.evaluate(
            "() => { const m = document.querySelector('main'), d = document.documentElement;"
            " return [d.scrollWidth, window.innerWidth, m.scrollWidth, m.clientWidth]; }"
        )
        page_width, screen_width, main_width, main_box = widths
        if page_width > screen_width:
            problems.append(f"the page scrolls sideways: {page_width} px wide on a {screen_width} px screen")
        if main_width > main_box:
            problems.append(f"<main> scrolls sideways: {main_width} px of content in {main_box} px")
        problems += page.evaluate(OUT_OF_VIEW, list(screen.in_view))
    return problems


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("layout", ["desktop", "phone"])
def test_every_page_is_accessible_and_fits_the_screen(
    browser: Browser,
    board: Callboard,
    seeded: Seeded,
    layout: str,
    scheme: str,
    axe: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = shots_dir(tmp_path_factory)
    context = browser.new_context(viewport=LAYOUTS[layout], color_scheme=cast(Any, scheme))
    context.set_default_timeout(TIMEOUT_MS)
    found: dict[str, list[str]] = {}
    try:
        page = context.new_page()
        for screen in screens(seeded):
            page.goto(board.url + screen.path)
            expect(page.locator(screen.ready).first).to_be_attached()
            if screen.name == "overview":
                expect(page.locator("#flow-chart canvas")).to_have_count(1)
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUNDS[scheme]
            problems = check(page, screen, layout, axe)
            if problems:
                found[screen.name] = problems
            page.screenshot(path=str(folder / f"{screen.name}-{layout}-{scheme}.png"), full_page=True)
    finally:
        context.close()
    assert found == {}, "\n".join(f"{name}: {p}" for name, problems in found.items() for p in problems)


#: Run before any page script: what <html data-theme> said when <body> began, i.e. before the first paint.
THEME_AT_BODY = """
new MutationObserver((_, observer) => {
  if (!document.body) return;
  window.__themeAtBody = document.documentElement.getAttribute("data-theme");
  observer.disconnect();
}).observe(document, { childList: true, subtree: true });
"""


def test_the_colour_scheme_choice_is_remembered_and_applied_before_the_first_paint(
    browser: Browser, board: Callboard
) -> None:
    context = browser.new_context(viewport=LAYOUTS["desktop"], color_scheme="light")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.add_init_script(THEME_AT_BODY)
        page.goto(board.url + "/")
        choice = page.locator("select[data-theme-choice]")
        expect(choice).to_have_value("system")
        expect(page.locator("#flow-chart canvas")).to_have_count(1)
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUNDS["light"]
        page.evaluate("window.__chart = document.querySelector('#flow-chart canvas')")

        choice.select_option("dark")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUNDS["dark"]
        # The chart was rebuilt in the new colours.
        expect(page.locator("#flow-chart canvas")).to_have_count(1)
        assert page.evaluate("document.querySelector('#flow-chart canvas') !== window.__chart")

        page.reload()
        expect(choice).to_have_value("dark")
        assert page.evaluate("window.__themeAtBody") == "dark"
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUNDS["dark"]
        page.goto(board.url + "/workers")  # another page: the same choice
        assert page.evaluate("window.__themeAtBody") == "dark"

        choice.select_option("system")  # back to following the system (light here)
        assert page.evaluate("localStorage.getItem('callboard:theme')") is None
        page.reload()
        assert page.evaluate("window.__themeAtBody") is None
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUNDS["light"]
    finally:
        context.close()


def test_keyboard_shortcuts_and_the_skip_link(page: Page, board: Callboard) -> None:
    page.goto(board.url + "/")
    filter_field = page.locator("main input[type=search]")
    page.keyboard.press("/")
    expect(filter_field).to_be_focused()
    page.keyboard.type("thumb/")  # inside a field, "/" is typed, not taken
    expect(filter_field).to_have_value("thumb/")

    page.goto(board.url + "/workers")  # no search field of its own: the header's
    page.keyboard.press("/")
    expect(page.locator("header input[type=search]")).to_be_focused()
    page.keyboard.press("Escape")
    page.locator("main h1").click()

    dialog = page.locator("dialog#shortcuts")
    expect(dialog).to_be_hidden()
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_contain_text("Focus this page's search")
    assert page.evaluate("document.activeElement.closest('dialog') !== null"), "focus stayed outside"
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # The first Tab reaches the skip link, which moves focus to the page's content.
    page.goto(board.url + "/failures")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()
