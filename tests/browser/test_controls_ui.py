"""The controls in a real headless Chromium: on a queue's dead tab, select rows, requeue or delete,
confirm, and watch the rows go and the counts move without a reload.

Dead letters are made by a real `dramatiq` worker (tests/browser/controls_worker_app.py): its actor
fails until the test "heals" it, so the dead letters the test requeues then run and succeed on the
same worker. Waits are Playwright's own `expect` or `wait_until`, all bounded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote

import pytest
from dramatiq.brokers.redis import RedisBroker
from playwright.sync_api import Locator, Page, expect

from tests.browser import controls_worker_app as app
from tests.browser.conftest import POLL_SECONDS, TARGET, answer_next_dialog, start_callboard
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.browser

#: Dead letters made per queue: requeue two of BILLING's, delete all of REFUNDS'.
DEAD = {"billing": 5, "refunds": 3}
#: For the first render after discovery (the board starts with the queues already there).
PAGE_TIMEOUT_MS = 10_000
#: "Within one poll": the control wakes the poller, and the summary polls every POLL_SECONDS; this
#: leaves room for a slow machine without letting a missed refresh (a 15 s rescan) pass.
MOVE_TIMEOUT_MS = int(POLL_SECONDS * 1000 * 6)


@dataclass(frozen=True)
class DeadLetters:
    """The dead letters of each queue, as redis message id -> the order id the actor was called with."""

    by_queue: dict[str, dict[str, int]]


def key(queue: str) -> str:
    return f"dramatiq:{queue}"


def dead_tab(board: Callboard, queue: str) -> str:
    return f"{board.url}/queues/{TARGET}/dramatiq/{quote(key(queue), safe='')}?state=dead"


def dead_count(page: Page, queue: str) -> Locator:
    """The Dead tab's count on the queue page (the `count` macro's span in the live summary)."""
    return page.locator(f'#queue-summary [data-queue="{key(queue)}"][data-state="dead"]')


def dead_ids(broker: RedisBroker, queue: str) -> set[str]:
    return {rid.decode() for rid in cast(list[bytes], broker.client.zrange(f"{key(queue)}.XQ", 0, -1))}


def settled(broker: RedisBroker) -> set[int]:
    return {int(order) for order in cast(set[bytes], broker.client.smembers(app.SETTLED))}


@pytest.fixture(scope="module")
def worker(browser_redis: RedisServer, broker: RedisBroker) -> Iterator[DeadLetters]:
    """A real worker that dead-letters every order, then is healed and keeps running (for requeues)."""
    actors = app.declare_actors(broker)
    orders = {queue: range(100 * (i + 1), 100 * (i + 1) + n) for i, (queue, n) in enumerate(DEAD.items())}
    for queue, ids in orders.items():
        for order in ids:
            actors[app.actor_name(queue)].send(order)
    process = Process(
        [sys.executable, "-m", "dramatiq", "tests.browser.controls_worker_app"]
        + ["--processes", "1", "--threads", "2"],
        # An idle consumer polls Redis at most every 200 ms, so requeued messages run promptly.
        child_env(CONTROLS_TEST_REDIS_URL=browser_redis.url, dramatiq_worker_timeout="200"),
        "dramatiq-controls",
    ).start()
    try:
        wait_until(
            lambda: all(len(dead_ids(broker, q)) == n for q, n in DEAD.items()),
            timeout=20,
            what=f"{DEAD} dead letters (worker log: {process.log_path})",
        )
        broker.client.set(app.HEALED, 1)
        by_queue = {}
        for queue in DEAD:
            raw = cast(dict[bytes, bytes], broker.client.hgetall(f"{key(queue)}.XQ.msgs"))
            by_queue[queue] = {rid.decode(): int(json.loads(body)["args"][0]) for rid, body in raw.items()}
            assert sorted(by_queue[queue].values()) == list(orders[queue])
        yield DeadLetters(by_queue)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def board(browser_redis: RedisServer, worker: DeadLetters) -> Iterator[Callboard]:
    """The dashboard under test, started after the queues exist (discovery then finds them at once)."""
    started = start_callboard(TARGET, browser_redis)
    yield started
    started.stop()


def test_requeue_selected_rows_from_the_dead_tab(
    page: Page, board: Callboard, broker: RedisBroker, worker: DeadLetters, console_errors: list[str]
) -> None:
    """Two selected dead letters are requeued after a confirm that names how many: the panel says
    "2 done", their rows go, the Dead count drops by 2 within a poll or so, without a reload, the other
    dead letters stay, and the worker runs the two requeued orders. Dismissing a confirm sends nothing."""
    letters = worker.by_queue["billing"]
    picked, kept = sorted(letters)[:2], sorted(letters)[2:]
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    page.goto(dead_tab(board, "billing"))
    count = dead_count(page, "billing")
    expect(count).to_have_text(str(DEAD["billing"]), timeout=PAGE_TIMEOUT_MS)
    expect(page.locator("tr[data-job]")).to_have_count(DEAD["billing"])
    page.evaluate("window.__marker = 1")
    for rid in picked:
        page.locator(f'tr[data-job="{rid}"] input[name="ids"]').check()

    dismissed = answer_next_dialog(page, accept=False)
    page.locator('button[data-action="delete"][data-scope="selection"]').click()
    expect(page.locator("#operation")).to_be_empty()
    assert dismissed and "2 selected" in dismissed[0], dismissed

    confirmed = answer_next_dialog(page, accept=True)
    page.locator('button[data-action="retry"][data-scope="selection"]').click()
    expect(page.locator('#operation [data-count="done"]')).to_have_text("2 done")
    assert confirmed == ["Requeue the 2 selected dead messages?"], confirmed
    # The panel names the control as its button did, with words that agree with the count.
    expect(page.locator("#operation .operation")).to_contain_text("Requeue 2 dead messages of")
    for rid in picked:
        expect(page.locator(f'tr[data-job="{rid}"]')).to_have_count(0, timeout=MOVE_TIMEOUT_MS)
    expect(count).to_have_text(str(DEAD["billing"] - 2), timeout=MOVE_TIMEOUT_MS)
    for rid in kept:
        expect(page.locator(f'tr[data-job="{rid}"]')).to_have_count(1)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded instead of updated in place"

    assert dead_ids(broker, "billing") == set(kept)
    wanted = {letters[rid] for rid in picked}
    wait_until(lambda: settled(broker) >= wanted, timeout=10, what=f"the worker to run orders {wanted}")
    assert settled(broker) == wanted
    assert [url.rsplit("/", 1)[-1] for url in posts] == ["retry"], posts
    assert console_errors == []


def test_delete_all_empties_the_dead_tab(
    page: Page, board: Callboard, broker: RedisBroker, worker: DeadLetters, console_errors: list[str]
) -> None:
    """ "Delete all (N)" asks first, then removes every dead letter: the table empties, the controls go,
    the Dead count reaches 0 within a poll or so, and nothing that was deleted runs."""
    page.goto(dead_tab(board, "refunds"))
    count = dead_count(page, "refunds")
    n = DEAD["refunds"]
    expect(count).to_have_text(str(n), timeout=PAGE_TIMEOUT_MS)
    expect(page.locator("tr[data-job]")).to_have_count(n)
    delete_all = page.locator('button[data-action="delete"][data-scope="all"]')
    expect(delete_all).to_have_text(f"Delete all ({n})")

    confirmed = answer_next_dialog(page, accept=True)
    delete_all.click()
    expect(page.locator('#operation [data-count="done"]')).to_have_text(f"{n} done")
    assert confirmed and f"Delete all {n} dead" in confirmed[0] and "cannot be undone" in confirmed[0]
    expect(page.locator("tr[data-job]")).to_have_count(0, timeout=MOVE_TIMEOUT_MS)
    expect(page.locator("table.joblist td.empty")).to_have_text("No dead messages.")
    expect(page.locator("button[data-action]")).to_have_count(0)
    expect(count).to_have_text("0", timeout=MOVE_TIMEOUT_MS)

    assert dead_ids(broker, "refunds") == set()
    assert broker.client.hlen(f"{key('refunds')}.XQ.msgs") == 0
    assert settled(broker).isdisjoint(worker.by_queue["refunds"].values())
    assert console_errors == []
