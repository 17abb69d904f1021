"""What a page weighs over HTTP: static files by content hash, immutable and gzipped; pages gzipped;
the chart library only where a chart is; a live job list's polls share one Redis read.

Against a real `callboard serve` on a Redis of our own, with a real Dramatiq producer's messages.
The bytes a browser transfers are measured in bench/weight.py.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import re
from collections.abc import Iterator

import httpx
import pytest
import redis

from callboard.dashboard.rendercache import GZIP_MIN
from callboard.dashboard.templating import asset_dir
from callboard.dashboard.urls import job_url, jobs_fragment_url, queue_url
from tests.integration import dramatiq_app
from tests.integration.support import api_json, wait_for_queue
from tests.servers import Callboard, RedisServer

pytestmark = pytest.mark.integration

QUEUE = "dramatiq:default"
STATIC = re.compile(r'(?:src|href)="(/static/([^"?]+)\?v=([0-9a-f]{10}))"')
IMMUTABLE = "public, max-age=31536000, immutable"
UPLOT = ("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css")


@pytest.fixture(scope="module")
def board(one_redis: RedisServer) -> Iterator[Callboard]:
    """Three ready messages in dramatiq:default; a poll interval long enough that no poll of the
    server falls between two reads a test compares."""
    url = one_redis.url
    with redis.Redis.from_url(url) as client:
        client.flushall()
    broker, actors = dramatiq_app.build(url, "dramatiq")
    for i in range(3):
        actors["fine_default"].send(f"weight-{i}")
    broker.client.connection_pool.disconnect()
    board = Callboard([f"main={url}"]).start(poll_interval=30)
    try:
        wait_for_queue(board, "dramatiq", QUEUE)
        yield board
    finally:
        board.stop()


@pytest.fixture
def http(board: Callboard) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=board.url, timeout=10) as client:
        yield client


def linked(page: str) -> dict[str, tuple[str, str]]:
    """file -> (its URL, the hash in it) for every static file the page links."""
    return {name: (url, digest) for url, name, digest in STATIC.findall(page)}


def vary(response: httpx.Response) -> list[str]:
    return [v.strip() for value in response.headers.get_list("vary") for v in value.split(",")]


def test_static_urls_carry_the_content_hash_and_are_immutable_and_gzipped(http: httpx.Client) -> None:
    files = linked(http.get("/").text)
    # theme.js too: loaded synchronously in <head> on every page, so it must be cached for good.
    assert {"app.css", "app.js", "theme.js", "vendor/htmx.min.js", *UPLOT} <= set(files), files
    for name, (url, digest) in files.items():
        body = (asset_dir("static") / name).read_bytes()
        assert digest == hashlib.sha256(body).hexdigest()[:10]
        zipped = http.get(url, headers={"Accept-Encoding": "gzip"})
        assert zipped.status_code == 200 and zipped.headers["cache-control"] == IMMUTABLE, name
        if len(body) < GZIP_MIN:  # theme.js (~600 bytes): gzip would save less than it costs
            assert "content-encoding" not in zipped.headers and zipped.content == body, name
            assert "vary" not in zipped.headers, name
            continue
        assert zipped.headers["content-encoding"] == "gzip" and vary(zipped) == ["Accept-Encoding"], name
        # httpx decodes the body; what travelled is the gzip stream, far smaller for the big files.
        assert zipped.content == body and int(zipped.headers["content-length"]) < len(body), name
        plain = http.get(url, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200 and "content-encoding" not in plain.headers
        assert plain.content == body and plain.headers["cache-control"] == IMMUTABLE
        assert vary(plain) == ["Accept-Encoding"], name
    assert files["app.js"][0] != files["app.css"][0]


def test_a_url_without_the_current_hash_is_revalidated_not_kept(http: httpx.Client) -> None:
    """An old page after an upgrade (or a hand-typed URL) still gets the file, but never for a year."""
    for url in ("/static/app.js", "/static/app.js?v=0000000000"):
        response = http.get(url, headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200 and response.headers["cache-control"] == "no-cache"
        etag = response.headers["etag"]
        again = http.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
    assert http.get("/static/no-such-file.js").status_code == 404
    assert http.get("/static/../pyproject.toml").status_code == 404
    assert http.get("/static/%2e%2e/pyproject.toml").status_code == 404


def test_the_chart_library_loads_only_on_pages_with_a_chart(http: httpx.Client, board: Callboard) -> None:
    job_id = api_json(board, f"/api/v1/queues/main/dramatiq/{QUEUE}/jobs?state=ready")["items"][0]["job_id"]
    charted = ["/", queue_url("main", "dramatiq", QUEUE, "ready")]
    chartless = ["/workers", "/failures", "/tasks", "/audit", job_url("main", "dramatiq", QUEUE, job_id)]
    for path in charted + chartless:
        page = http.get(path)
        assert page.status_code == 200, path
        files = linked(page.text)
        assert {"app.js", "app.css", "theme.js", "vendor/htmx.min.js"} <= set(files), path
        if path in charted:
            assert set(UPLOT) <= set(files), path
        else:
            assert not set(UPLOT) & set(files) and "uPlot" not in page.text, path


def test_pages_fragments_and_the_api_are_gzipped_when_accepted(http: httpx.Client) -> None:
    paths = [
        "/",  # rendered once per poll (the render cache gzips it once)
        "/fragments/overview",
        queue_url("main", "dramatiq", QUEUE, "ready"),  # read and rendered per request
        jobs_fragment_url("main", "dramatiq", QUEUE, "ready"),
        "/api/v1/openapi.json",
    ]
    for path in paths:
        zipped = http.get(path, headers={"Accept-Encoding": "gzip"})
        assert zipped.status_code == 200, path
        assert zipped.headers["content-encoding"] == "gzip" and vary(zipped) == ["Accept-Encoding"], path
        assert path.startswith("/api/") or zipped.headers["cache-control"] == "no-store", path
        plain = http.get(path, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and vary(plain) == ["Accept-Encoding"], path
        assert int(zipped.headers["content-length"]) * 2 < len(plain.content), path


def lrange_calls(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_lrange", {}).get("calls", 0))


def test_a_live_job_list_polls_one_shared_read(http: httpx.Client, one_redis: RedisServer) -> None:
    """Polls (`live=1`) of the same page share one read per poll interval, however many viewers poll;
    a read without it (a page load, the reload after a control) reads now, and the polls get that."""
    url = one_redis.url
    fragment = jobs_fragment_url("main", "dramatiq", QUEUE, "ready")
    live = fragment + "&live=1"
    assert http.get(live).status_code == 200
    before = lrange_calls(url)
    bodies = [http.get(live).text for _ in range(5)]
    assert lrange_calls(url) == before, "a live poll read Redis again within the poll interval"
    assert all("weight-0" in b for b in bodies)
    # A poll leaves the tab's count and "all" buttons on the page as they are (hx-preserve): only the
    # queue summary's out-of-band copy moves them, with the tabs, from one snapshot.
    for body in bodies:
        assert '<span id="tab-bulk" class="tab-bulk" hx-preserve="true"></span>' in body
        assert 'data-field="tab-count"' not in body
    drawn = http.get(fragment).text  # the reload after a control draws them afresh
    assert "hx-preserve" not in drawn and 'data-field="tab-count" data-count="3">3 ready messages<' in drawn
    assert lrange_calls(url) == before + 1
    assert http.get(live).status_code == 200 and lrange_calls(url) == before + 1
    # Another page of the same list is its own read.
    other = jobs_fragment_url("main", "dramatiq", QUEUE, "ready", limit=25) + "&live=1"
    assert http.get(other).status_code == 200
    assert lrange_calls(url) == before + 2


def test_viewers_opening_one_queue_at_once_share_one_read(board: Callboard, one_redis: RedisServer) -> None:
    """Ten page loads (and API calls) of the same list at the same moment read Redis once: the first
    read is joined while in flight and reused for half a second, well under a poll interval (a
    second read is allowed for a request a loaded machine starts late; without sharing, ten)."""
    url = one_redis.url
    page = board.url + queue_url("main", "dramatiq", QUEUE, "ready", limit=10)
    api = board.url + f"/api/v1/queues/main/dramatiq/{QUEUE}/jobs?state=ready&limit=10"
    before = lrange_calls(url)
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda u: httpx.get(u, timeout=10).status_code, [page] * 8 + [api] * 2))
    assert answers == [200] * 10
    assert lrange_calls(url) - before <= 2, "identical page loads at one moment each read Redis"
