"""Search in a real headless Chromium: the page streams progress over a large queue, lists the matches
with links to their job pages, and a running search can be stopped from the page.

The queue is written exactly as Dramatiq 2.x stores ready messages (list of redis message ids plus
the payload hash, docs/dramatiq-redis.md §1), with a few needles among many ordinary messages.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import redis
from playwright.sync_api import Page, expect

from tests.browser.conftest import POLL_SECONDS, TARGET, new_redis, start_callboard
from tests.servers import Callboard, RedisServer

pytestmark = pytest.mark.browser

NAMESPACE = "dramatiq"
QUEUE = "bulk"
KEY = f"{NAMESPACE}:{QUEUE}"
#: Large enough that a search over it runs for seconds (it walks with pauses, Redis stays free).
MESSAGES = 200_000
NEEDLES = {17: "needle-7f3a", 99_000: "needle-7f3a", 180_001: "needle-7f3a"}


def message(rid: str, index: int, now_ms: int) -> str:
    arg = NEEDLES.get(index, f"customer-{index}")
    return json.dumps(
        {
            "queue_name": QUEUE,
            "actor_name": "sync_customer",
            "args": [arg, index],
            "kwargs": {},
            "options": {"redis_message_id": rid},
            "message_id": str(uuid.UUID(int=index)),
            "message_timestamp": now_ms,
        },
        separators=(",", ":"),
    )


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[RedisServer, dict[int, str]]]:
    server = new_redis()
    client = redis.Redis.from_url(server.url)
    now_ms = int(time.time() * 1000)
    rids: dict[int, str] = {}
    pipe = client.pipeline(transaction=False)
    client.zadd(f"{NAMESPACE}:__heartbeats__", {"producer": now_ms})
    for start in range(0, MESSAGES, 5000):
        batch = {}
        for index in range(start, start + 5000):
            rid = str(uuid.UUID(int=10**9 + index))
            rids[index] = rid
            batch[rid] = message(rid, index, now_ms)
        pipe.hset(f"{KEY}.msgs", mapping=batch)
        pipe.rpush(KEY, *batch)
        pipe.execute()
    client.close()
    yield server, {i: rids[i] for i in NEEDLES}
    server.stop()


@pytest.fixture(scope="module")
def board(seeded: tuple[RedisServer, dict[int, str]]) -> Iterator[Callboard]:
    board = start_callboard(TARGET, seeded[0])
    yield board
    board.stop()


def search_url(board: Callboard, text: str) -> str:
    query = urlencode({"q": text, "in": "args", "target": TARGET, "framework": "dramatiq", "queue": KEY})
    return f"{board.url}/search?{query}"


def test_search_streams_progress_and_lists_the_needles(
    page: Page, board: Callboard, seeded: tuple[RedisServer, dict[int, str]], console_errors: list[str]
) -> None:
    page.goto(search_url(board, "needle-7f3a"))
    progress = page.locator("#search-progress")
    # The total is known from the start (HLEN), and the page moves while the walk goes on.
    expect(progress.locator('[data-field="total"]')).to_have_text(f"{MESSAGES:,}")
    expect(progress).to_have_attribute("data-status", "finished", timeout=60_000)
    expect(progress.locator('[data-field="scanned"]')).to_have_text(f"{MESSAGES:,}")
    expect(progress.locator('[data-field="matches"]')).to_have_text("3")
    hits = progress.locator("tr[data-hit]")
    expect(hits).to_have_count(3)
    assert {hits.nth(i).get_attribute("data-hit") for i in range(3)} == set(seeded[1].values())
    # A match opens its job page.
    first = hits.first.get_attribute("data-hit")
    hits.first.locator("a[data-job-link]").click()
    expect(page.locator("h1 [data-field=actor]")).to_have_text("sync_customer")
    assert first is not None and first in page.url
    assert console_errors == []


def test_a_running_search_can_be_stopped(page: Page, board: Callboard, console_errors: list[str]) -> None:
    page.goto(search_url(board, "no-such-text-anywhere"))
    progress = page.locator("#search-progress")
    expect(progress).to_have_attribute("data-status", "running")
    page.locator("button[data-action=stop-search]").click()
    expect(progress).to_have_attribute("data-status", "stopped", timeout=int(POLL_SECONDS * 1000 * 10))
    scanned = int(progress.locator('[data-field="scanned"]').inner_text().replace(",", ""))
    assert 0 < scanned < MESSAGES, "it stopped part way"
    expect(progress.locator('[data-field="matches"]')).to_have_text("0")
    assert console_errors == []
