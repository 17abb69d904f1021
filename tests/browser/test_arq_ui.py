"""Arq results in a real headless Chromium: a real `arq` worker fails a job with a user exception
(one arq itself cannot unpickle) and one with ValueError, and runs one that succeeds; the queue's
Failed tab lists both failures with their error text, the user exception's job page shows the
function and the exception, and the Succeeded tab shows when the job finished and how long it ran.

The job list is server-rendered and the results index is built in the background, so the page is
reloaded (bounded, by `wait_until`) until both failed rows are there.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import redis
from arq import create_pool
from arq.connections import RedisSettings
from playwright.sync_api import Page, expect

from tests.browser import arq_worker_app
from tests.browser.conftest import TARGET, new_redis
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.browser

#: Long enough for a couple of polls; short enough to fail fast.
LIVE_TIMEOUT_MS = 10_000
CARD = "4242"


@dataclass(frozen=True)
class FailedJobs:
    declined: str
    value_error: str
    succeeded: str


async def _enqueue(port: int) -> FailedJobs:
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    try:
        declined = await pool.enqueue_job("charge_card", arq_worker_app.DECLINE_CODE, CARD)
        value_error = await pool.enqueue_job("parse_amount", "12,5x")
        succeeded = await pool.enqueue_job("settle", 7)
        assert declined is not None and value_error is not None and succeeded is not None
        return FailedJobs(declined.job_id, value_error.job_id, succeeded.job_id)
    finally:
        await pool.aclose()


@pytest.fixture(scope="module")
def arq_redis() -> Iterator[RedisServer]:
    """This module's own Redis, on a free port."""
    server = new_redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def failed_jobs(arq_redis: RedisServer) -> FailedJobs:
    """Two failed results made by a real `arq` worker, which is stopped once both are stored."""
    # Playwright's sync API keeps an event loop running on this thread: asyncio.run needs another one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        jobs = pool.submit(asyncio.run, _enqueue(arq_redis.port)).result(timeout=20)
    worker = Process(
        [sys.executable, "-m", "arq", "tests.browser.arq_worker_app.WorkerSettings"],
        child_env(BROWSER_TEST_REDIS_PORT=str(arq_redis.port)),
        "arq-worker",
    ).start()
    keys = [f"arq:result:{jobs.declined}", f"arq:result:{jobs.value_error}", f"arq:result:{jobs.succeeded}"]
    try:
        with redis.Redis.from_url(arq_redis.url) as client:
            wait_until(
                lambda: client.exists(*keys) == len(keys),
                timeout=20,
                what=f"the arq worker to store the three results (worker log: {worker.log_path})",
            )
    finally:
        worker.stop()
    return jobs


@pytest.fixture(scope="module")
def arq_callboard(arq_redis: RedisServer, failed_jobs: FailedJobs) -> Iterator[Callboard]:
    """The dashboard under test, started once the results exist (discovery runs at start)."""
    app = Callboard([f"{TARGET}={arq_redis.url}"]).start(poll_interval=0.25)
    yield app
    app.stop()


def test_failed_tab_lists_arq_exceptions_and_job_page_shows_them(
    page: Page, arq_callboard: Callboard, failed_jobs: FailedJobs
) -> None:
    queue_url = f"{arq_callboard.url}/queues/{TARGET}/arq/{quote(arq_worker_app.QUEUE, safe='')}?state=failed"
    declined_row = page.locator(f'tr[data-job="{failed_jobs.declined}"]')
    value_row = page.locator(f'tr[data-job="{failed_jobs.value_error}"]')

    def both_rows_listed() -> bool:
        page.goto(queue_url)
        return declined_row.count() == 1 and value_row.count() == 1

    wait_until(both_rows_listed, timeout=20, interval=0.25, what="both failed arq jobs on the Failed tab")

    expect(page.locator('#queue-summary a[data-tab="failed"]')).to_have_attribute("aria-current", "page")
    declined_error = declined_row.locator('td[data-field="error"]')
    expect(declined_error).to_contain_text("PaymentDeclined")
    expect(declined_error).to_contain_text(arq_worker_app.DECLINE_MESSAGE)
    expect(value_row.locator('td[data-field="error"]')).to_contain_text("ValueError")

    declined_row.locator("a[data-job-link]").click()
    page.wait_for_url(re.compile(r"/jobs/"))
    expect(page.locator('[data-field="actor"]')).to_have_text("charge_card", timeout=LIVE_TIMEOUT_MS)
    exception = page.locator("td.exception")
    expect(exception).to_contain_text("PaymentDeclined")
    expect(exception).to_contain_text(arq_worker_app.DECLINE_MESSAGE)


def test_succeeded_tab_shows_finish_and_run_time_and_the_job_page_counts_tries(
    page: Page, arq_callboard: Callboard, failed_jobs: FailedJobs, console_errors: list[str]
) -> None:
    """The list is live: the row appears once the results index has it, without a reload."""
    queue_url = f"{arq_callboard.url}/queues/{TARGET}/arq/{quote(arq_worker_app.QUEUE, safe='')}"

    def known() -> bool:  # discovery has found the queue (until then its page is a 404)
        response = page.goto(queue_url + "?state=succeeded")
        return response is not None and response.ok

    wait_until(known, timeout=20, interval=0.25, what="the arq queue's page")
    console_errors.clear()
    row = page.locator(f'tr[data-job="{failed_jobs.succeeded}"]')
    expect(row).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    headers = page.locator("table.joblist thead th")
    expect(headers).to_contain_text(["Job", "Call", "Enqueued", "Finished", "Run time"])
    expect(row.locator('td[data-field="finished"] time')).to_have_text(re.compile(r" ago$"))
    # Finish - start of a job that sleeps SETTLE_SECONDS (200 ms): what the worker recorded.
    run_time = row.locator('td[data-field="run-time"]').inner_text()
    assert re.fullmatch(r"\d+ ms", run_time) and int(run_time.split()[0]) >= 200, run_time
    # The full id: in the link (its text and title) and on the clipboard from the Copy button.
    link = row.locator("a[data-job-link]")
    expect(link).to_have_attribute("title", failed_jobs.succeeded)
    expect(link).to_have_text(failed_jobs.succeeded)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    row.locator("button[data-copy]").click()
    wait_until(
        lambda: page.evaluate("navigator.clipboard.readText()") == failed_jobs.succeeded,
        timeout=5,
        what="the full id on the clipboard",
    )

    assert console_errors == []
    link.click()
    page.wait_for_url(re.compile(r"/jobs/"))
    # Leaving a page aborts the polls still on their way, which htmx reports on the console.
    console_errors.clear()
    kv = page.locator("table.kv")
    expect(kv.locator("tr", has=page.locator("th", has_text=re.compile(r"^try$")))).to_contain_text("1")
    expect(kv.locator("th", has_text="retries")).to_have_count(0)
    assert console_errors == []


#: A colour as the page computes it: `css` (a value or a var()) resolved on a probe element.
RESOLVE = """css => {
  const probe = document.createElement("span");
  probe.style.color = css;
  document.body.appendChild(probe);
  const colour = getComputedStyle(probe).color;
  probe.remove();
  return colour;
}"""


def test_arq_states_wear_the_colours_of_their_dramatiq_twins(
    page: Page, arq_callboard: Callboard, failed_jobs: FailedJobs
) -> None:
    """One place for state colours (dashboard/words.py): the chart draws Deferred and In progress in
    the colours of their tabs (they were swapped), and Arq's Failed badge is the red of Dramatiq's Dead
    (it was grey). In both colour schemes: switching to dark redraws the chart in the dark palette's
    state colours."""
    queue = quote(arq_worker_app.QUEUE, safe="")
    legend = page.locator("#queue-chart .u-legend")

    def queue_page() -> bool:  # discovery finds the queue in the background: reload until it has
        page.goto(f"{arq_callboard.url}/queues/{TARGET}/arq/{queue}")
        return page.locator("#queue-chart").count() == 1

    wait_until(queue_page, timeout=20, interval=0.25, what="the arq queue's page")
    expect(legend).to_be_visible(timeout=LIVE_TIMEOUT_MS)  # two polls of history: the chart is drawn
    failed_count = page.locator('#queue-summary a[data-tab="failed"] .count')
    expect(failed_count).to_have_class(re.compile(r"\btone-failed\b"), timeout=LIVE_TIMEOUT_MS)
    drawn: dict[str, list[str]] = {}
    for scheme in ("light", "dark"):
        page.locator("select[data-theme-choice]").select_option(scheme)
        drawn[scheme] = []
        for label, tone in (("Ready", "ready"), ("Deferred", "waiting"), ("In progress", "running")):
            marker = legend.locator(".u-series", has_text=label).locator(".u-marker")
            drawn[scheme].append(marker.evaluate("m => getComputedStyle(m).borderColor"))
            assert drawn[scheme][-1] == page.evaluate(RESOLVE, f"var(--state-{tone})"), (scheme, label)
        # The tab's count is swapped by every poll: to_have_css retries over a detached element.
        failed = page.evaluate(RESOLVE, "var(--state-failed)")
        assert failed == page.evaluate(RESOLVE, "var(--dead)"), scheme  # Dramatiq's Dead
        expect(failed_count).to_have_css("color", failed)
    assert not set(drawn["light"]) & set(drawn["dark"])  # redrawn in the dark palette, not left light

    page.goto(f"{arq_callboard.url}/jobs/{TARGET}/arq/{queue}/{failed_jobs.declined}")  # dark, remembered
    badge = page.locator('h1 [data-state-badge="failed"]')
    expect(badge).to_have_text("Failed")
    background = badge.evaluate("b => getComputedStyle(b).backgroundColor")
    assert background == page.evaluate(RESOLVE, "var(--bad-bg)")  # .badge.bad, as Dramatiq's Dead
