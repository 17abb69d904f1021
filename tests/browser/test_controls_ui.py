"""The controls in a real headless Chromium: on a queue's dead tab, select rows, requeue or delete,
confirm, and watch the rows go and the counts move without a reload; "Delete all (N)" acts on the N
confirmed while dead letters keep arriving; a requeued job's old link leads to its new id.

Dead letters are made by a real `dramatiq` worker (tests/browser/controls_worker_app.py): its actor
fails until the test "heals" it, so the dead letters the test requeues then run and succeed on the
same worker; its `file_dispute` always fails, a stream of new dead letters. Waits are Playwright's
own `expect` or `wait_until`, all bounded.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import pytest
from dramatiq.brokers.redis import RedisBroker
from playwright.sync_api import Dialog, Locator, Page, expect

from tests.browser import controls_worker_app as app
from tests.browser.conftest import POLL_SECONDS, TARGET, answer_next_dialog, start_callboard
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.browser

#: Dead letters made per queue: requeue two of BILLING's, delete all of REFUNDS', requeue one of
#: INVOICES' and follow its old link.
DEAD = {"billing": 5, "refunds": 3, "invoices": 2}
#: Disputes dead before the page opens: more than one batch (200) of a bulk run.
DISPUTES = 450
#: Seconds between two disputes sent while the page is open (each dies at once).
DISPUTE_EVERY = 0.02
#: For the first render after discovery (the board starts with the queues already there).
PAGE_TIMEOUT_MS = 10_000
#: "Within one poll": the control wakes the poller, and the summary polls every POLL_SECONDS; this
#: leaves room for a slow machine without letting a missed refresh (a 15 s rescan) pass.
MOVE_TIMEOUT_MS = int(POLL_SECONDS * 1000 * 6)


@dataclass(frozen=True)
class DeadLetters:
    """The dead letters of each queue, as redis message id -> the order id the actor was called with."""

    by_queue: dict[str, dict[str, int]]
    #: The test process's actors (to send more), by name.
    actors: dict[str, Any]


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
    for case in range(DISPUTES):
        actors["file_dispute"].send(case)
    process = Process(
        [sys.executable, "-m", "dramatiq", "tests.browser.controls_worker_app"]
        + ["--processes", "1", "--threads", "2"],
        # An idle consumer polls Redis at most every 200 ms, so requeued messages run promptly.
        child_env(CONTROLS_TEST_REDIS_URL=browser_redis.url, dramatiq_worker_timeout="200"),
        "dramatiq-controls",
    ).start()
    try:
        wait_until(
            lambda: all(len(dead_ids(broker, q)) == n for q, n in {**DEAD, app.DISPUTES: DISPUTES}.items()),
            timeout=60,
            what=f"{DEAD} and {DISPUTES} disputes dead (worker log: {process.log_path})",
        )
        broker.client.set(app.HEALED, 1)
        by_queue = {}
        for queue in DEAD:
            raw = cast(dict[bytes, bytes], broker.client.hgetall(f"{key(queue)}.XQ.msgs"))
            by_queue[queue] = {rid.decode(): int(json.loads(body)["args"][0]) for rid, body in raw.items()}
            assert sorted(by_queue[queue].values()) == list(orders[queue])
        yield DeadLetters(by_queue, actors)
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
    assert settled(broker) & set(letters.values()) == wanted
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


#: What the live parts of a dead tab say, read in one go (one script turn: no swap lands midway):
#: the tab's count, the list's count, and the "Delete all" button's label, confirmation and bound.
NUMBERS_JS = """key => {
  const tab = document.querySelector(`#queue-summary [data-queue="${key}"][data-state="dead"]`);
  const head = document.querySelector('#tab-bulk [data-field="tab-count"]');
  const button = document.querySelector('#tab-bulk button[data-action="delete"][data-scope="all"]');
  return {
    tab: tab.title, head: head.textContent, label: button.textContent,
    confirm: button.getAttribute('hx-confirm'), vals: JSON.parse(button.getAttribute('hx-vals')),
  };
}"""


def numbers(page: Page, queue: str) -> set[int]:
    """Every count the page shows for the dead tab, as a set: one element when they all agree."""
    shown = page.evaluate(NUMBERS_JS, key(queue))
    words = [shown["tab"], shown["head"].split()[0], re.sub(r"\D", "", shown["label"])]
    return {int(w.replace(",", "")) for w in words} | {
        confirmed_count(shown["confirm"]),
        shown["vals"]["count"],
    }


def confirmed_count(question: str) -> int:
    """The N a "Delete all N dead messages of ...?" confirmation names."""
    match = re.search(r"Delete all ([\d,]+) dead", question)
    assert match, question
    return int(match.group(1).replace(",", ""))


def dead_scores(broker: RedisBroker, queue: str) -> list[tuple[str, float]]:
    """(rid, score) of every dead letter, in the order a bounded run takes them (oldest first)."""
    rows = cast(list[tuple[bytes, float]], broker.client.zrange(f"{key(queue)}.XQ", 0, -1, withscores=True))
    return [(rid.decode(), score) for rid, score in rows]


def test_delete_all_acts_on_the_n_confirmed_while_dead_letters_keep_arriving(
    page: Page, board: Callboard, broker: RedisBroker, worker: DeadLetters, console_errors: list[str]
) -> None:
    """The worker dead-letters a dispute every DISPUTE_EVERY s throughout. The tab, the list's count,
    "Delete all (N)" and its confirmation move together at every poll. Confirmed for N, the run
    deletes exactly the N oldest (what the page showed), never one that died after the page's
    snapshot; the panel says how many arrived since and were left alone; every letter not deleted
    is still there once the worker has dead-lettered all that was sent."""
    queue = app.DISPUTES
    stop = threading.Event()
    sent = [DISPUTES]

    def keep_sending() -> None:
        while not stop.wait(DISPUTE_EVERY):
            worker.actors["file_dispute"].send(sent[0])
            sent[0] += 1

    sender = threading.Thread(target=keep_sending, name="disputes", daemon=True)
    sender.start()
    try:
        page.goto(dead_tab(board, queue))
        count = dead_count(page, queue)
        expect(count).not_to_have_text(str(DISPUTES), timeout=PAGE_TIMEOUT_MS)  # arrivals show live
        shown = numbers(page, queue)
        for _ in range(3):  # at three successive polls, every figure on the page is the same
            assert len(shown) == 1, shown
            page.wait_for_function(
                "([key, n]) => document.querySelector("
                '`#queue-summary [data-queue="${key}"][data-state="dead"]`).title.replace(/,/g, \'\') !== n',
                arg=[key(queue), str(min(shown))],
            )
            shown = numbers(page, queue)
        assert len(shown) == 1, shown

        at_confirm: list[list[tuple[str, float]]] = []
        confirmed: list[str] = []

        def confirm(dialog: Dialog) -> None:
            confirmed.append(dialog.message)
            n = confirmed_count(dialog.message)
            at_confirm.append(dead_scores(broker, queue))
            # More die while the operator reads the dialog: the page's N is already behind Redis.
            wait_until(
                lambda: cast(int, broker.client.zcard(f"{key(queue)}.XQ")) >= n + 3,
                timeout=10,
                what="3 more dead",
            )
            dialog.accept()

        page.once("dialog", confirm)
        page.locator('#tab-bulk button[data-action="delete"][data-scope="all"]').click()
        expect(page.locator("#operation .operation.finished")).to_have_count(1, timeout=MOVE_TIMEOUT_MS)
        n = confirmed_count(confirmed[0])
        assert n > DISPUTES
        expect(page.locator('#operation [data-count="done"]')).to_have_text(f"{n:,} done")
        arrived = page.locator("#operation .arrived")
        m = int(arrived.get_attribute("data-arrived") or -1)
        assert m >= 3, m
        expect(arrived).to_have_text(
            f"Acted on {n:,} of the {n:,} confirmed; {m:,} arrived since and were left alone."
        )
        left = {rid for rid, _ in dead_scores(broker, queue)}
        assert m <= len(left)
    finally:
        stop.set()
        sender.join(timeout=5)

    # The N deleted are the N oldest at the time of the dialog (the page's); the rest all stayed.
    oldest_first = [rid for rid, _ in sorted(at_confirm[0], key=lambda rs: (rs[1], rs[0]))]
    assert not left & set(oldest_first[:n])
    assert set(oldest_first[n:]) <= left
    # Once the worker has dead-lettered every dispute sent, exactly N are missing.
    wait_until(
        lambda: broker.client.llen(key(queue)) == 0 and broker.client.hlen(f"{key(queue)}.msgs") == 0,
        timeout=20,
        what="the worker to dead-letter every dispute sent",
    )
    assert broker.client.zcard(f"{key(queue)}.XQ") == sent[0] - n
    # The page catches up within a poll or so, all figures together.
    expect(count).to_have_text(str(sent[0] - n), timeout=MOVE_TIMEOUT_MS)
    assert numbers(page, queue) == {sent[0] - n}
    assert console_errors == []


def test_a_requeued_jobs_old_link_leads_to_the_new_job_which_the_worker_runs(
    page: Page, board: Callboard, broker: RedisBroker, worker: DeadLetters, console_errors: list[str]
) -> None:
    """Requeue one dead letter: Dramatiq gives the message a new redis message id. Its old page says
    who requeued it, when and as what, and links there; the new job's page shows it running (the
    worker holds it until released), and the worker then settles the order. The audit row links the
    queue and both ids; the nav marks the section of each page, and the breadcrumb's target and
    framework lead to the overview filtered to them."""
    letters = worker.by_queue["invoices"]
    old = sorted(letters)[0]
    order = letters[old]
    queue_key = key("invoices")  # one path segment as it is: a colon needs no escape
    broker.client.sadd(app.HOLD, order)
    try:
        page.goto(dead_tab(board, "invoices"))
        expect(page.locator("header nav a[aria-current=page]")).to_have_text("Queues")
        crumbs = page.locator("nav.crumbs a")
        expect(crumbs).to_have_count(3)
        assert [crumbs.nth(i).get_attribute("href") for i in range(3)] == [
            "/",
            "/?q=main",
            "/?q=main+dramatiq",
        ]
        page.locator(f'tr[data-job="{old}"] input[name="ids"]').check()
        answer_next_dialog(page, accept=True)
        page.locator('button[data-action="retry"][data-scope="selection"]').click()
        expect(page.locator('#operation [data-count="done"]')).to_have_text("1 done")
        opened = page.locator("#operation .outcomes a").get_attribute("href") or ""
        new = opened.rsplit("/", 1)[-1]
        assert new and new != old and opened == f"/jobs/{TARGET}/dramatiq/{queue_key}/{new}"
        wait_until(  # fetched: the worker holds it, so its page shows it in flight
            lambda: broker.client.llen(queue_key) == 0 and broker.client.hexists(f"{queue_key}.msgs", new),
            timeout=10,
            what=f"the worker to fetch {new}",
        )

        # The old link: gone, but it says where the job went.
        page.goto(f"{board.url}/jobs/{TARGET}/dramatiq/{queue_key}/{old}")
        expect(page.locator("h1")).to_have_text("Job requeued under a new id")
        moved = page.locator("p.moved")
        expect(moved).to_have_attribute("data-moved-to", new)
        expect(moved).to_contain_text(f"by anonymous as {new}")
        expect(moved.locator("time")).to_have_count(1)
        expect(page.locator("header nav a[aria-current=page]")).to_have_text("Queues")
        page.locator("a[data-new-job]").click()
        page.wait_for_url(f"**/jobs/{TARGET}/dramatiq/{queue_key}/{new}")
        expect(page.locator("[data-field=actor]")).to_have_text(app.actor_name("invoices"))
        expect(page.locator("h1 .badge")).to_have_text("In flight")  # the worker holds it
        expect(page.locator("header nav a[aria-current=page]")).to_have_text("Queues")
        assert order not in settled(broker)
    finally:
        broker.client.srem(app.HOLD, order)
        broker.client.rpush(app.release_key(order), 1)
    wait_until(lambda: order in settled(broker), timeout=10, what=f"the worker to settle order {order}")
    assert old not in dead_ids(broker, "invoices")

    # The audit row links its queue, the old id and the new one.
    page.goto(f"{board.url}/audit")
    expect(page.locator("header nav a[aria-current=page]")).to_have_text("Audit")
    row = page.locator("table.audit tbody tr", has=page.locator(f'a[data-new-job][href$="/{new}"]'))
    expect(row).to_have_count(1)
    expect(row.locator("a[data-job-link]")).to_have_attribute(
        "href", f"/jobs/{TARGET}/dramatiq/{queue_key}/{old}"
    )
    expect(row.locator(f'a[href="/queues/{TARGET}/dramatiq/{queue_key}?state=dead"]')).to_have_count(1)
    # The old URL answers 404 (no job is stored under it), which the browser logs; nothing else.
    gone = f"status of 404 (Not Found) ({board.url}/jobs/{TARGET}/dramatiq/{queue_key}/{old})"
    assert [e for e in console_errors if not e.endswith(gone)] == [], console_errors
