"""The Content-Security-Policy in a real headless Chromium: every page renders and stays live with no
violation, the policy really blocks injected script, and a page of another origin cannot frame the
dashboard (clickjacking: framed at low opacity, one click plus OK deleted dead letters before).

Violations are collected in the page itself (`securitypolicyviolation` events, from an init script),
next to console errors and htmx's `evalDisallowedError` (a trigger filter that would need eval).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import quote

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from playwright.sync_api import ConsoleMessage, Dialog, Page, expect
from redis.asyncio import Redis as AsyncRedis

from bench.seed import Layout, QueueSeed, seed
from callboard.collectors.flow import Series
from callboard.companion.recorder import Recorder, stage
from tests.browser.conftest import TARGET, answer_next_dialog, start_callboard
from tests.servers import Callboard, RedisServer, free_port, wait_until

pytestmark = pytest.mark.browser

KEY = "dramatiq:default"
FLOW = Series("dramatiq", "dramatiq", "default", "resize")
READY, DEAD = 5, 4
TIMEOUT_MS = 10_000
COLLECT = """
(() => {
  window.__violations = [];
  window.__evalRefused = 0;
  document.addEventListener("securitypolicyviolation", (e) => {
    const where = `${e.sourceFile}:${e.lineNumber}`;
    window.__violations.push(`${e.effectiveDirective} blocked ${e.blockedURI} at ${where}`);
  });
  document.addEventListener("htmx:evalDisallowedError", () => { window.__evalRefused += 1; });
})();
"""


def queue_url(board: Callboard, state: str) -> str:
    return f"{board.url}/queues/{TARGET}/dramatiq/{quote(KEY, safe='')}?state={state}"


def dead_count(broker: RedisBroker) -> int:
    return int(cast(int, broker.client.zcard(f"{KEY}.XQ")))


@pytest.fixture(scope="module")
def board(browser_redis: RedisServer) -> Iterator[Callboard]:
    """Ready messages and dead letters in Dramatiq's layout (and a worker heartbeat), then the board."""

    async def write() -> None:
        client = AsyncRedis.from_url(browser_redis.url)
        try:
            await seed(client, Layout("dramatiq", (QueueSeed("default", ready=READY, dead=DEAD),)))
        finally:
            await client.aclose()

    # Playwright's sync API keeps an event loop on this thread: seed from another one.
    seeder = threading.Thread(target=asyncio.run, args=(write(),))
    seeder.start()
    seeder.join()
    # Flow of one task, as the worker companion writes it, for the tasks page and the task's own page.
    recorder, now = Recorder(), time.time()
    for seconds in (0.03, 0.03, 0.3):  # two cells: one bucket of 2 runs, one of 1
        recorder.record(FLOW, "succeeded", now, seconds, 0.01)
    with redis.Redis.from_url(browser_redis.url) as client, client.pipeline(transaction=False) as pipe:
        stage(pipe, recorder.take(), "test", 0)
        pipe.execute()
    board = start_callboard(TARGET, browser_redis)
    yield board
    board.stop()


@pytest.fixture
def watched(page: Page, console_errors: list[str]) -> Page:
    page.add_init_script(COLLECT)
    return page


def assert_clean(page: Page, console_errors: list[str], where: str) -> None:
    assert page.evaluate("window.__violations") == [], where
    assert page.evaluate("window.__evalRefused") == 0, where
    assert console_errors == [], where


def visit(page: Page, url: str, fragments: tuple[str, ...] = ()) -> None:
    """Open `url` and wait for a poll of each live fragment, then for one more round (the one after
    the swaps settled), so markup swapped in by htmx is checked too."""
    if not fragments:
        page.goto(url)
        return
    with page.expect_response(lambda r: fragments[0] in r.url, timeout=TIMEOUT_MS):
        page.goto(url)
    for fragment in (*fragments[1:], fragments[0]):
        with page.expect_response(lambda r, f=fragment: f in r.url, timeout=TIMEOUT_MS):  # type: ignore[misc]
            pass


def test_every_page_runs_under_the_policy_without_a_violation(
    watched: Page, console_errors: list[str], board: Callboard
) -> None:
    page = watched
    visit(page, board.url + "/", ("/fragments/overview", "/fragments/banner"))
    expect(page.locator(f'#overview [data-queue="{KEY}"][data-state="ready"]')).to_have_text(str(READY))
    assert_clean(page, console_errors, "overview")

    for state in ("ready", "dead"):
        visit(page, queue_url(board, state), ("/fragments/queues/", "/fragments/banner"))
        expect(page.locator("tr[data-job]")).to_have_count(READY if state == "ready" else DEAD)
        expect(page.locator("#queue-chart .uplot")).to_be_visible(timeout=TIMEOUT_MS)
        assert_clean(page, console_errors, f"queue page, {state} tab")

    with page.expect_request(lambda r: "/fragments/banner" in r.url, timeout=TIMEOUT_MS):
        page.locator("tr[data-job] td.id a").first.click()
    expect(page.locator("pre.traceback")).to_be_visible()
    assert_clean(page, console_errors, "job page")

    visit(page, board.url + "/workers", ("/fragments/workers",))
    assert_clean(page, console_errors, "workers")
    visit(page, board.url + "/failures", ("/fragments/failures",))
    expect(page.locator("#failures")).to_contain_text("RuntimeError")
    assert_clean(page, console_errors, "failures")
    visit(page, board.url + "/tasks", ("/fragments/tasks",))
    assert_clean(page, console_errors, "tasks")
    page.locator("a[data-task-link]").first.click()
    expect(page.locator("table.heat td[data-count]")).to_have_count(2)
    assert_clean(page, console_errors, "task page")
    page.get_by_role("link", name="last 24 hours").click()
    expect(page.locator("table.heat td[data-count]")).to_have_count(2)
    assert_clean(page, console_errors, "task page, 24 h")
    visit(page, board.url + "/search?q=bench_actor", ("/fragments/banner",))
    expect(page.locator("#search-progress")).to_have_attribute("data-status", "finished", timeout=TIMEOUT_MS)
    expect(page.locator("tr[data-hit]")).to_have_count(READY + DEAD)
    assert_clean(page, console_errors, "search")
    visit(page, board.url + "/audit", ("/fragments/banner",))
    assert_clean(page, console_errors, "audit")

    # The policy is really enforced (and the collector works): injected inline script does not run.
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
        " document.body.appendChild(s); }"
    )
    wait_until(lambda: page.evaluate("window.__violations.length") > 0, timeout=5, what="a CSP violation")
    assert page.evaluate("window.__ran") is None
    assert "script-src" in page.evaluate("window.__violations[0]")


def test_live_parts_and_controls_work_under_the_policy(
    watched: Page, console_errors: list[str], board: Callboard, broker: RedisBroker
) -> None:
    page = watched
    # Under the policy: scripts from self only, no eval (which htmx's trigger filters needed).
    policy = page.request.get(board.url + "/").headers.get("content-security-policy", "")
    assert "script-src 'self';" in policy and "unsafe" not in policy, policy
    send = dramatiq.actor(broker=broker, actor_name="csp_live", queue_name="default")(lambda: None)
    visit(page, board.url + "/", ("/fragments/overview",))
    page.evaluate("window.__marker = 1")
    count = page.locator(f'#overview [data-queue="{KEY}"][data-state="ready"]')
    before = int(count.inner_text())
    send.send()
    expect(count).to_have_text(str(before + 1), timeout=TIMEOUT_MS)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded instead of updated in place"

    # The per-page select submits its form (was an inline onchange handler).
    visit(page, queue_url(board, "dead"))
    page.locator("select[name=limit]").select_option("50")
    page.wait_for_url("**limit=50**")
    expect(page.locator("tr[data-job]")).to_have_count(dead_count(broker))

    # A control: select one dead letter, delete it through the confirmation (htmx, no eval).
    dead = dead_count(broker)
    page.locator("tr[data-job] input[name=ids]").first.check()
    messages = answer_next_dialog(page, accept=True)
    page.locator('button[data-action="delete"][data-scope="selection"]').click()
    wait_until(lambda: dead_count(broker) == dead - 1, timeout=10, what="one dead letter deleted")
    expect(page.locator("tr[data-job]")).to_have_count(dead - 1, timeout=TIMEOUT_MS)
    # One job: the confirmation's words agree with the count (the data-confirm-one question).
    assert messages == ["Delete the selected dead message? This cannot be undone."], messages
    assert_clean(page, console_errors, "live parts and controls")


class _Attacker(BaseHTTPRequestHandler):
    """Another origin's page that frames the dashboard's dead tab, nearly invisible, under a bait."""

    target = ""

    def do_GET(self) -> None:
        body = (
            "<!doctype html><title>Win a prize</title><button id=bait>Click to claim</button>"
            f'<iframe id=victim src="{self.target}" width=1000 height=700></iframe>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def attacker(board: Callboard) -> Iterator[str]:
    handler = type("Handler", (_Attacker,), {"target": queue_url(board, "dead")})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # localhost, not 127.0.0.1: another host and port, so another site as well as another origin.
    yield f"http://localhost:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_another_origin_cannot_frame_the_dashboard(page: Page, attacker: str, broker: RedisBroker) -> None:
    refused: list[str] = []

    def record(msg: ConsoleMessage) -> None:
        if "frame-ancestors" in msg.text or "X-Frame-Options" in msg.text:
            refused.append(msg.text)

    page.on("console", record)
    dialogs: list[str] = []

    def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    dead = dead_count(broker)
    assert dead > 0
    with page.expect_response(lambda r: "/queues/" in r.url, timeout=TIMEOUT_MS) as framed:
        page.goto(attacker)
    assert framed.value.status == 200  # Callboard answered; the browser refused to show it
    expect(page.locator("#victim")).to_be_visible()
    wait_until(lambda: refused, timeout=5, what="Chromium's refusal to frame the dashboard")
    assert "frame-ancestors 'none'" in refused[0]

    frame = page.frame_locator("#victim")
    expect(frame.locator("button[data-action]")).to_have_count(0)
    expect(frame.locator("tr[data-job]")).to_have_count(0)
    (child,) = page.main_frame.child_frames
    assert "Callboard" not in child.content()

    # Click where the controls would be, as the lured user would.
    box = page.locator("#victim").bounding_box()
    assert box is not None
    for dx, dy in ((0.1, 0.15), (0.5, 0.2), (0.3, 0.3), (0.5, 0.5)):
        page.mouse.click(box["x"] + box["width"] * dx, box["y"] + box["height"] * dy)
    page.wait_for_timeout(300)
    assert dialogs == []
    assert dead_count(broker) == dead
