"""The overview with many queues: 100 rows per page, a filter, and live fragments that keep both."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from redis.asyncio import Redis

from bench.seed import Layout, QueueSeed, seed
from tests.integration.support import api_json
from tests.servers import Callboard, wait_until

pytestmark = pytest.mark.integration

QUEUES = 230


@pytest.fixture
def board(redis_url: str) -> Iterator[Callboard]:
    layout = Layout("paging", tuple(QueueSeed(f"q{i:03d}", ready=1 + i % 7) for i in range(QUEUES)))

    async def write() -> None:
        async with Redis.from_url(redis_url) as client:
            await seed(client, layout)

    asyncio.run(write())
    board = Callboard([f"main={redis_url}"]).start(poll_interval=0.2)
    try:
        wait_until(
            lambda: len(api_json(board, "/api/v1/queues")["queues"]) == QUEUES,
            timeout=20,
            what=f"{QUEUES} queues discovered",
        )
        yield board
    finally:
        board.stop()


def rows(html: str) -> list[str]:
    return re.findall(r'data-queue-row="([^"]+)"', html)


def test_pages_of_one_hundred_rows_cover_every_queue_once(board: Callboard) -> None:
    seen: list[str] = []
    for page in (1, 2, 3):
        status, html = board.get(f"/?page={page}")
        assert status == 200
        seen += rows(html)
        first = (page - 1) * 100 + 1
        last = min(page * 100, QUEUES)
        assert f"Showing {first}–{last} of {QUEUES} queues" in html
    assert len(seen) == QUEUES and len(set(seen)) == QUEUES
    # Past the end clamps to the last page rather than showing nothing.
    assert rows(board.get("/?page=99")[1]) == rows(board.get("/?page=3")[1])
    # A page that is not a number is the first page.
    status, html = board.get("/?page=abc")
    assert status == 200
    assert rows(html) == rows(board.get("/?page=1")[1]) == [f"paging:q{i:03d}" for i in range(100)]
    assert f"Showing 1–100 of {QUEUES} queues" in html


def test_filter_matches_every_word_and_the_fragment_keeps_it(board: Callboard) -> None:
    status, html = board.get("/?q=" + quote("paging q12"))
    assert status == 200
    assert rows(html) == [f"paging:q{i}" for i in range(120, 130)]
    assert f"of 10 queues matching “paging q12” ({QUEUES} in all)" in html
    # The live partial polls with the same filter, so a refresh does not bring every row back.
    assert 'hx-get="/fragments/overview?q=paging+q12"' in html
    _, fragment = board.get("/fragments/overview?q=paging+q12")
    assert rows(fragment) == rows(html)
    _, none = board.get("/?q=nothing-like-this")
    assert rows(none) == [] and "No queue matches" in none
