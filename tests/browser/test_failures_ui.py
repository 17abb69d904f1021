"""The failures page in a real headless Chromium: failures made by real workers are grouped by cause
with exact counts; "Requeue all (N)" on one group, once its cause is healed, empties that group on
screen without a reload and the worker runs exactly its N jobs; "Delete all" asks first.

A real `dramatiq` worker (tests/browser/failures_worker_app.py) dead-letters three causes: two in one
actor (CardDeclined, ValueError), one in another (CarrierTimeout). A real `arq` worker
(tests/browser/arq_worker_app.py) fails `parse_amount` twice with ValueError. Both share one Redis, so
one target shows four groups. Waits are Playwright's `expect` or `wait_until`, all bounded.

Each test has its own Redis, workers, failures and Callboard (the fixtures below are per test), so
each stands alone and in any order: two of them change the groups they act on.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from dramatiq.brokers.redis import RedisBroker
from playwright.sync_api import Locator, Page, expect

from tests.browser import arq_worker_app
from tests.browser import failures_worker_app as app
from tests.browser.conftest import (
    POLL_SECONDS,
    TARGET,
    answer_next_dialog,
    close_broker,
    new_broker,
    new_redis,
    start_callboard,
)
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.browser

#: The jobs each cause fails, by the argument each is sent with.
DECLINED_ORDERS = (101, 102, 103, 104)
INVALID_ORDERS = (-7, -8)
PARCELS = (7001, 7002, 7003)
AMOUNTS = ("12,5x", "7;3")
#: For the first render: the background readers group what the workers left within a few polls.
PAGE_TIMEOUT_MS = 10_000
#: "Within a poll or two": the control wakes the poller and its answer makes the part reload; this
#: leaves room for a slow machine without letting a missed refresh (a 15 s rescan) pass.
MOVE_TIMEOUT_MS = int(POLL_SECONDS * 1000 * 6)


@dataclass(frozen=True)
class Cause:
    """One group as the page must show it."""

    framework: str
    queue: str
    name: str
    exception: str
    pattern: str
    count: int


DECLINED = Cause(
    "dramatiq",
    f"dramatiq:{app.PAYMENTS}",
    "charge",
    f"{app.__name__}.CardDeclined",
    "card declined for order <n> (code <n>)",
    len(DECLINED_ORDERS),
)
INVALID = Cause(
    "dramatiq",
    f"dramatiq:{app.PAYMENTS}",
    "charge",
    "ValueError",
    "invalid order id <n>",
    len(INVALID_ORDERS),
)
TIMEOUT = Cause(
    "dramatiq",
    f"dramatiq:{app.SHIPPING}",
    "ship",
    f"{app.__name__}.CarrierTimeout",
    "carrier did not answer in <n> ms for parcel <n>",
    len(PARCELS),
)
ARQ_VALUE = Cause(
    "arq", arq_worker_app.QUEUE, "parse_amount", "ValueError", "not an amount: <str>", len(AMOUNTS)
)


def exactly(text: str) -> re.Pattern[str]:
    return re.compile(f"^{re.escape(text)}$")


def group_row(page: Page, cause: Cause) -> Locator:
    """The row of a cause, found by what it shows (framework, name, exception), not by its key."""
    return (
        page.locator(f'#failures tr[data-group][data-framework="{cause.framework}"]')
        .filter(has=page.locator("strong.name", has_text=exactly(cause.name)))
        .filter(has=page.locator("code.exception", has_text=exactly(cause.exception)))
    )


def expect_group(page: Page, cause: Cause, timeout: int = 5_000) -> Locator:
    row = group_row(page, cause)
    expect(row).to_have_count(1, timeout=timeout)
    expect(row.locator('[data-field="count"]')).to_have_text(str(cause.count))
    expect(row).to_have_attribute("data-count", str(cause.count))
    expect(row.locator("span.pattern")).to_have_text(cause.pattern)
    expect(row.locator('a[href^="/queues/"]')).to_have_text(cause.queue)
    verb = "Requeue" if cause.framework == "dramatiq" else "Re-run"
    expect(row.locator('button[data-action="retry"]')).to_have_text(f"{verb} all ({cause.count})")
    expect(row.locator('button[data-action="delete"]')).to_have_text("Delete all")
    return row


def dead_ids(broker: RedisBroker, queue: str) -> set[str]:
    return {rid.decode() for rid in cast(list[bytes], broker.client.zrange(f"dramatiq:{queue}.XQ", 0, -1))}


def charged(broker: RedisBroker) -> list[int]:
    """The orders `charge` succeeded for, once per run."""
    return [int(order) for order in cast(list[bytes], broker.client.lrange(app.CHARGED, 0, -1))]


async def _enqueue_arq(port: int) -> list[str]:
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    try:
        jobs = [await pool.enqueue_job("parse_amount", raw) for raw in AMOUNTS]
        return [job.job_id for job in jobs if job is not None]
    finally:
        await pool.aclose()


@pytest.fixture
def browser_redis() -> Iterator[RedisServer]:
    """This test's own Redis (the module-scoped one of conftest would carry one test's controls into
    the next)."""
    server = new_redis()
    yield server
    server.stop()


@pytest.fixture
def broker(browser_redis: RedisServer) -> Iterator[RedisBroker]:
    broker = new_broker(browser_redis.url)
    yield broker
    close_broker(broker)


@pytest.fixture
def arq_failed(browser_redis: RedisServer) -> Iterator[list[str]]:
    """The ids of ARQ_VALUE's failed results, made by a real arq worker that is stopped once both exist."""
    # Playwright's sync API keeps an event loop running on this thread: asyncio.run needs another one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        ids = pool.submit(asyncio.run, _enqueue_arq(browser_redis.port)).result(timeout=20)
    assert len(ids) == len(AMOUNTS)
    worker = Process(
        [sys.executable, "-m", "arq", f"{arq_worker_app.__name__}.WorkerSettings"],
        child_env(BROWSER_TEST_REDIS_PORT=str(browser_redis.port)),
        "arq-failures",
    ).start()
    try:
        yield ids
    finally:
        worker.stop()


@pytest.fixture
def worker(browser_redis: RedisServer, broker: RedisBroker, arq_failed: list[str]) -> Iterator[Process]:
    """A real dramatiq worker that has dead-lettered every job it was sent, and keeps running."""
    actors = app.declare_actors(broker)
    for order in DECLINED_ORDERS + INVALID_ORDERS:
        actors["charge"].send(order)
    for parcel in PARCELS:
        actors["ship"].send(parcel)
    process = Process(
        [sys.executable, "-m", "dramatiq", "tests.browser.failures_worker_app"]
        + ["--processes", "1", "--threads", "2"],
        # An idle consumer polls Redis at most every 200 ms, so requeued messages run promptly.
        child_env(FAILURES_TEST_REDIS_URL=browser_redis.url, dramatiq_worker_timeout="200"),
        "dramatiq-failures",
    ).start()
    try:
        want = {app.PAYMENTS: len(DECLINED_ORDERS + INVALID_ORDERS), app.SHIPPING: len(PARCELS)}
        wait_until(
            lambda: {q: len(dead_ids(broker, q)) for q in want} == want,
            timeout=20,
            what=f"{want} dead letters (worker log: {process.log_path})",
        )
        results = [f"arq:result:{job_id}" for job_id in arq_failed]
        wait_until(
            lambda: broker.client.exists(*results) == len(results),
            timeout=20,
            what="the arq worker to store both failed results",
        )
        yield process
    finally:
        process.stop()


@pytest.fixture
def board(browser_redis: RedisServer, worker: Process) -> Iterator[Callboard]:
    """The dashboard under test, started after the failures exist (discovery then finds them at once)."""
    started = start_callboard(TARGET, browser_redis)
    yield started
    started.stop()


def test_failures_page_groups_each_cause_with_its_count(
    page: Page, board: Callboard, console_errors: list[str]
) -> None:
    """Four causes, four rows: each with its exact count, framework, actor or function, exception
    type and the message with numbers and quoted values normalised; the same exception type in two
    frameworks is two groups. Nothing else is listed."""
    page.goto(f"{board.url}/failures")
    expect_group(page, DECLINED, timeout=PAGE_TIMEOUT_MS)
    for cause in (INVALID, TIMEOUT, ARQ_VALUE):
        expect_group(page, cause, timeout=PAGE_TIMEOUT_MS)
    expect(page.locator("#failures tr[data-group]")).to_have_count(4)
    expect(page.locator("#failures h2 .muted").first).to_have_text("11 failures in 4 groups")
    expect(page.locator("#failures [data-missing]")).to_have_count(0)
    assert console_errors == []


def test_requeue_all_empties_the_healed_group_and_runs_its_jobs(
    page: Page, board: Callboard, broker: RedisBroker, console_errors: list[str]
) -> None:
    """Heal CardDeclined, "Requeue all (4)", confirm a dialog that names 4: the panel says "4 done",
    the row goes within a poll or so without a reload, the other groups keep their counts (the
    ValueError dead letters of the same queue stay dead), and the worker charges exactly those orders."""
    dead_before = dead_ids(broker, app.PAYMENTS)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(f"{board.url}/failures")
    row = expect_group(page, DECLINED, timeout=PAGE_TIMEOUT_MS)
    key = row.get_attribute("data-group")
    assert key
    page.evaluate("window.__marker = 1")

    broker.client.set(app.HEALED, 1)
    confirmed = answer_next_dialog(page, accept=True)
    row.locator('button[data-action="retry"]').click()
    operation = page.locator("#operation .operation")
    expect(operation).to_have_count(1)
    expect(operation.locator('[data-count="done"]')).to_have_text(f"{DECLINED.count} done")
    expect(operation.locator('[data-count="skipped"]')).to_have_text("0 skipped")
    expect(operation.locator('[data-count="changed"]')).to_have_text("0 already changed")
    expect(operation).to_contain_text(f"dramatiq:{app.PAYMENTS}")
    n = DECLINED.count
    assert confirmed == [
        f"Requeue all {n} messages of this group ({DECLINED.exception})?"
        " Failures that arrive meanwhile are left alone."
    ], confirmed
    # The request carried what the dialog named, so nothing newer than the group's shown failures moved.
    expect(operation.locator(".arrived")).to_have_text(
        f"Acted on {n} of the {n} confirmed; 0 arrived since and were left alone."
    )

    expect(page.locator(f'#failures tr[data-group="{key}"]')).to_have_count(0, timeout=MOVE_TIMEOUT_MS)
    expect(page.locator("#failures h2 .muted").first).to_have_text("7 failures in 3 groups")
    for cause in (INVALID, TIMEOUT, ARQ_VALUE):
        expect_group(page, cause)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded instead of updated in place"
    assert [url.rsplit("/", 1)[-1] for url in posts] == ["retry"], posts
    assert posts[0].endswith(f"/api/v1/failures/{TARGET}/dramatiq/{key}/retry"), posts

    wait_until(
        lambda: broker.client.hlen(f"dramatiq:{app.PAYMENTS}.msgs") == 0,
        timeout=10,
        what="the worker to run every requeued job",
    )
    assert sorted(charged(broker)) == sorted(DECLINED_ORDERS), "each requeued order charged exactly once"
    assert len(dead_before) == len(DECLINED_ORDERS + INVALID_ORDERS)
    assert len(dead_ids(broker, app.PAYMENTS)) == len(INVALID_ORDERS)
    assert dead_ids(broker, app.PAYMENTS) < dead_before
    assert len(dead_ids(broker, app.SHIPPING)) == len(PARCELS)
    assert console_errors == []


def test_delete_all_asks_first_then_removes_the_group(
    page: Page, board: Callboard, broker: RedisBroker, arq_failed: list[str], console_errors: list[str]
) -> None:
    """On the Arq group, "Delete all" with the dialog dismissed sends nothing and the row stays;
    accepted, it deletes both failed results and the row goes, the Dramatiq groups untouched."""
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(f"{board.url}/failures")
    row = expect_group(page, ARQ_VALUE, timeout=PAGE_TIMEOUT_MS)
    key = row.get_attribute("data-group")
    assert key
    delete = row.locator('button[data-action="delete"]')

    dismissed = answer_next_dialog(page, accept=False)
    delete.click()
    expect(page.locator("#operation")).to_be_empty()
    n = ARQ_VALUE.count
    assert dismissed == [
        f"Delete all {n} failed results of this group? This cannot be undone."
        " Failures that arrive meanwhile are left alone."
    ], dismissed
    assert posts == []
    expect_group(page, ARQ_VALUE)

    confirmed = answer_next_dialog(page, accept=True)
    delete.click()
    expect(page.locator('#operation [data-count="done"]')).to_have_text(f"{n} done")
    assert confirmed == dismissed, confirmed
    expect(page.locator(f'#failures tr[data-group="{key}"]')).to_have_count(0, timeout=MOVE_TIMEOUT_MS)
    for cause in (INVALID, TIMEOUT):
        expect_group(page, cause)
    assert [url.rsplit("/", 1)[-1] for url in posts] == ["delete"], posts
    assert broker.client.exists(*[f"arq:result:{job_id}" for job_id in arq_failed]) == 0
    assert console_errors == []
