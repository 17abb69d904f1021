"""Search through a real `callboard serve`: start and join, progress, matches linking to job pages,
stop, and stop allowed in read-only mode (still refused cross-site).

Messages are written in Dramatiq's exact layout (bench.seed), enough of them (60,000) that a search
is still running when the next request arrives, so joining and stopping are exercised, not raced:
a search of them takes a few hundred milliseconds at least.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
from markupsafe import escape
from redis.asyncio import Redis as AsyncRedis

from bench.seed import Layout, QueueSeed, seed
from tests.servers import Callboard, wait_until

pytestmark = pytest.mark.integration

TARGET = "main"
KEY = "dramatiq:default"
MESSAGES = 60_000
SCOPE = {"target": TARGET, "framework": "dramatiq", "queue": KEY}


def seed_messages(url: str) -> None:
    async def write() -> None:
        writer = AsyncRedis.from_url(url)
        try:
            await seed(writer, Layout("dramatiq", (QueueSeed("default", ready=MESSAGES, dead=10),)))
        finally:
            await writer.aclose()

    asyncio.run(write())


@contextmanager
def serving(url: str, *extra: str) -> Iterator[httpx.Client]:
    board = Callboard([f"{TARGET}={url}"], list(extra)).start(poll_interval=0.2)
    try:
        with httpx.Client(base_url=board.url, timeout=10) as http:
            wait_until(
                lambda: any(q["key"] == KEY for q in http.get("/api/v1/queues").json()["queues"]),
                timeout=15,
                what=f"{KEY} on the board",
            )
            yield http
    finally:
        board.stop()


def finished(http: httpx.Client, search_id: str) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def done() -> bool:
        state.update(http.get(f"/api/v1/searches/{search_id}").json())
        return bool(state["status"] != "running")

    wait_until(done, timeout=30, interval=0.1, what=f"search {search_id} to end")
    return state


def test_search_start_join_progress_and_stop(redis_url: str, control: redis.Redis) -> None:
    seed_messages(redis_url)
    with serving(redis_url) as http:
        page = http.get("/search", params={"q": "item-54321", "in": "args", **SCOPE})
        assert page.status_code == 200, page.text
        assert 'id="search-progress"' in page.text
        started = http.get("/api/v1/search", params={"q": "item-54321", "in": "args", **SCOPE}).json()
        assert started["joined"] is True  # the page's search, not a second one
        search_id = started["id"]
        assert f'data-search="{search_id}"' in page.text
        assert f'hx-get="/fragments/searches/{search_id}"' in page.text  # it polls while running

        done = finished(http, search_id)
        assert done["status"] == "finished"
        assert done["total"] == MESSAGES + 10 and done["scanned"] >= MESSAGES + 10
        assert [h["call"] for h in done["hits"]] == ["bench_actor(54321, 'item-54321', priority=0)"]
        hit = done["hits"][0]
        rid = control.lindex(KEY, 54321)
        assert rid is not None and hit["job_id"] == rid.decode()  # type: ignore[union-attr]
        # Each name is one path segment; ':' and '@' stay readable (dashboard.urls.segment).
        assert hit["url"] == f"/jobs/{TARGET}/dramatiq/{quote(KEY, safe=':@')}/{hit['job_id']}"
        job_page = http.get(hit["url"])
        assert job_page.status_code == 200
        assert f"› {hit['job_id']}</nav>" in job_page.text  # the page of that very message
        assert 'data-field="actor">bench_actor</span>' in job_page.text
        assert str(escape('"item-54321"')) in job_page.text  # its args

        fragment = http.get(f"/fragments/searches/{search_id}")
        assert fragment.status_code == 200
        assert "hx-get" not in fragment.text  # ended: polling stops
        assert f'href="{hit["url"]}"' in fragment.text

        # Everywhere, by exact id: found at once, nothing walked.
        by_id = http.get("/api/v1/search", params={"q": hit["job_id"], "in": "id"}).json()
        by_id = finished(http, by_id["id"])
        assert (by_id["found_by_id"], by_id["scanned"], by_id["matches"]) == (True, 0, 1)

        # Stop: a search of every message's args, stopped right away, ends stopped, part-way.
        running = http.get("/api/v1/search", params={"q": "item-", "in": "args"}).json()
        stopped = http.post(f"/api/v1/searches/{running['id']}/stop")
        assert stopped.status_code == 200, stopped.text
        ended = finished(http, running["id"])
        assert ended["status"] == "stopped" and ended["stopped"] == "stopped by a user"
        assert ended["scanned"] < ended["total"]

        assert http.get("/api/v1/searches/nope").status_code == 404
        assert http.get("/api/v1/search", params={"q": "x", "in": "everything"}).status_code == 400
        assert http.get("/api/v1/search", params={"q": "x", "target": "nope"}).status_code == 404
        assert "/api/v1/searches/{search_id}/stop" in http.get("/api/v1/openapi.json").json()["paths"]


def test_stop_is_allowed_read_only_but_not_cross_site(redis_url: str) -> None:
    seed_messages(redis_url)
    with serving(redis_url, "--read-only") as http:
        search = http.get("/api/v1/search", params={"q": "item-", "in": "args"}).json()
        refused = http.post(f"/api/v1/searches/{search['id']}/stop", headers={"Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403
        assert http.get(f"/api/v1/searches/{search['id']}").json()["status"] == "running"
        # Other POSTs stay refused in read-only mode.
        assert http.post(f"/api/v1/queues/{TARGET}/dramatiq/{quote(KEY, safe='')}/delete").status_code == 403
        stopped = http.post(
            f"/api/v1/searches/{search['id']}/stop",
            headers={"Sec-Fetch-Site": "same-origin", "HX-Request": "true"},
        )
        assert stopped.status_code == 200, stopped.text
        assert finished(http, search["id"])["status"] == "stopped"
