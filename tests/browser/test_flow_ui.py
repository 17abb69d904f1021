"""Flow in a real browser: the overview's throughput over 1 h / 24 h / 7 d from what the companion
wrote; a queue's depth chart, whose stored part outlives a restart of Callboard; the tasks page sorted
by p95; and time-to-drain on a queue that a real worker drains."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from playwright.sync_api import Page, expect

from callboard.collectors.flow import Series
from callboard.companion.recorder import Recorder, stage
from tests.browser.conftest import TARGET, start_callboard
from tests.integration import flow_app
from tests.integration.support import start_flow_worker
from tests.servers import Callboard, Process, RedisServer, wait_until

QUEUE = "dramatiq:default"
QUICK = Series("dramatiq", "dramatiq", "default", "quick")
#: Two more tasks with known run times: by p95, quick (its 2 s failures) > slow > tiny.
SLOW = Series("dramatiq", "dramatiq", "default", "slow")
TINY = Series("arq", "arq", "arq:queue", "tiny")


@pytest.fixture(scope="module")
def seeded(browser_redis: RedisServer, broker: RedisBroker) -> None:
    """A queue with messages, and what a companion would have written: 9 jobs this hour (one failed),
    4 failures and 10 successes of two other tasks three hours ago."""
    for _ in range(3):
        broker.enqueue(_message())
    recorder = Recorder()
    now = time.time()
    for minutes_ago in (0, 5, 30):
        for outcome in ("succeeded", "succeeded", "failed" if minutes_ago == 5 else "succeeded"):
            recorder.record(QUICK, outcome, now - minutes_ago * 60, 0.03, 0.1)
    for _ in range(4):
        recorder.record(QUICK, "failed", now - 3 * 3600, 2.0)
    for _ in range(5):
        recorder.record(SLOW, "succeeded", now - 3 * 3600, 0.4)
        recorder.record(TINY, "succeeded", now - 3 * 3600, 0.004)
    with redis.Redis.from_url(browser_redis.url) as client, client.pipeline(transaction=False) as pipe:
        stage(pipe, recorder.take(), "test", 0)
        pipe.execute()


def _message() -> dramatiq.Message[None]:
    return dramatiq.Message(queue_name="default", actor_name="quick", args=(), kwargs={}, options={})


@pytest.fixture
def board(browser_redis: RedisServer, seeded: None) -> Iterator[Callboard]:
    app = start_callboard(TARGET, browser_redis)
    yield app
    app.stop()


def visible_total(page: Page, field: str) -> str:
    return page.locator(f'[data-flow-range]:not([hidden]) [data-field="{field}"]').inner_text()


def test_the_overview_switches_range_and_remembers_it(
    page: Page, board: Callboard, console_errors: list[str]
) -> None:
    wait_until(
        lambda: not json.loads(board.get("/api/v1/flow/overview?range=7d")[1])["hours_missing"],
        timeout=30,
        what="the week of hours read back",
    )
    page.goto(board.url + "/")
    one_hour = page.locator('button[data-range-for="flow"][data-range="1h"]')
    day = page.locator('button[data-range-for="flow"][data-range="24h"]')
    expect(one_hour).to_have_attribute("aria-pressed", "true")
    expect(page.locator('[data-flow-range]:not([hidden]) [data-field="processed"]')).to_have_text("9")
    assert visible_total(page, "failed") == "1"
    expect(page.locator("#flow-chart canvas")).to_have_count(1)  # uPlot drew the 1 h bars

    day.click()
    expect(day).to_have_attribute("aria-pressed", "true")
    expect(one_hour).to_have_attribute("aria-pressed", "false")
    expect(page.locator('[data-flow-range]:not([hidden]) [data-field="processed"]')).to_have_text("23")
    assert visible_total(page, "failed") == "5"  # 9 + 4 jobs of quick, 5 + 5 of slow and tiny
    assert visible_total(page, "failure-rate") == "21.7%"
    assert visible_total(page, "p95").startswith("≤ 2")  # the four 2 s failures hold the 95th percentile
    labels = page.locator("#flow-chart .u-legend .u-series").all_inner_texts()
    assert any("per hour" in label.lower() for label in labels), labels

    # The choice survives a poll (the totals are swapped in) and a reload.
    with page.expect_response(lambda r: "/fragments/overview" in r.url):
        pass  # the next poll's totals
    expect(page.locator('[data-flow-range]:not([hidden]) [data-field="processed"]')).to_have_text("23")
    page.reload()
    expect(day).to_have_attribute("aria-pressed", "true")
    expect(page.locator('[data-flow-range]:not([hidden]) [data-field="processed"]')).to_have_text("23")
    assert console_errors == []


def test_the_depth_chart_keeps_its_history_across_a_restart(
    page: Page, browser_redis: RedisServer, seeded: None, console_errors: list[str]
) -> None:
    path = f"/api/v1/queues/{TARGET}/dramatiq/{QUEUE}/depth?range=7d"
    first = start_callboard(TARGET, browser_redis)
    try:
        wait_until(
            lambda: len(json.loads(first.get(path)[1])["points"]) >= 1, timeout=20, what="a depth push"
        )
        stored = json.loads(first.get(path)[1])["points"][0]
    finally:
        first.stop()
    restarted_at = time.time()
    second = start_callboard(TARGET, browser_redis)
    try:
        wait_until(lambda: second.get(path)[0] == 200, timeout=20, what="the queue known again")
        body = json.loads(second.get(path)[1])
        assert body["points"][0] == stored and stored[0] < restarted_at  # from before the restart
        assert body["points"][0][1:] == [3.0, 0.0, 0.0, 0.0]  # ready 3, in flight, delayed, dead
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if "/depth?" in r.url else None)
        page.goto(second.url + f"/queues/{TARGET}/dramatiq/{QUEUE}")
        week = page.locator('button[data-range-for="depth"][data-range="7d"]')
        week.click()
        expect(week).to_have_attribute("aria-pressed", "true")
        wait_until(lambda: any("range=7d" in u for u in requests), timeout=10, what="the 7 d fetch")
        expect(page.locator("#queue-chart canvas")).to_have_count(1)
        page.reload()
        expect(week).to_have_attribute("aria-pressed", "true")
    finally:
        second.stop()
    assert console_errors == []


def test_the_tasks_page_sorts_by_p95(page: Page, board: Callboard) -> None:
    page.goto(board.url + "/tasks?sort=name")
    rows = page.locator("#tasks tbody tr[data-task]")
    expect(rows).to_have_count(3, timeout=10_000)
    page.get_by_role("link", name="p95 run time").click()
    expect(page.get_by_role("link", name="p95 run time")).to_have_attribute("aria-current", "true")
    expect(rows.first).to_have_attribute("data-task", "quick")
    assert [r.get_attribute("data-task") for r in rows.all()] == ["quick", "slow", "tiny"]
    assert page.locator('#tasks tr[data-task="slow"] [data-field="p95"]').inner_text() == "≤ 500 ms"


def test_time_to_drain_on_a_queue_a_real_worker_drains(browser_redis: RedisServer, page: Page) -> None:
    """A backlog first, then a real Dramatiq worker: the page says it drains, and how fast."""
    url = browser_redis.url
    producer = RedisBroker(url=url, namespace=flow_app.NAMESPACE)  # type: ignore[no-untyped-call]
    try:
        for _ in range(500):  # 65 ms each on 2 threads: ~16 s of work
            producer.enqueue(
                dramatiq.Message(queue_name="work", actor_name="quick", args=(), kwargs={}, options={})
            )
    finally:
        producer.client.close()
    board = start_callboard(TARGET, browser_redis)
    worker: Process | None = None
    try:
        key = f"{flow_app.NAMESPACE}:work"
        wait_until(
            lambda: board.get(f"/fragments/queues/{TARGET}/dramatiq/{key}")[0] == 200,
            timeout=20,
            what="discovery",
        )
        page.goto(board.url + f"/queues/{TARGET}/dramatiq/{key}")
        drain = page.locator('[data-field="drain"]')
        expect(drain).to_contain_text("collecting")  # no estimate before 5 s of history
        worker = start_flow_worker(url, "browser-drain")
        expect(drain).to_contain_text("drains in ~", timeout=30_000)
        net = int(re.findall(r"\(([\d,]+)/min net\)", drain.inner_text())[0].replace(",", ""))
        assert 1000 <= net <= 1900, drain.inner_text()  # what 2 threads at 65 ms can reach, less overhead
    finally:
        if worker is not None:
            worker.stop()
        board.stop()
