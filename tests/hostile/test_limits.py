"""Issue 11, items 7 and 8: limits and odd requests get a clear 4xx, never a 500, a 503 or a stall.

- a 10 MB control body is refused with 413 before it is read (the server answers while the client
  is still sending), with a Content-Length or chunked, JSON or form;
- a 100,000-deep JSON body is a 400; `cursor=10**32` and absurd `limit`/`page` are 400s;
- a wrong method is a 405 with `Allow`, on pages and API alike;
- the OpenAPI document lists the 400 and 404 answers (and the others) of every route;
- the Redis pool of a target stays at most MAX_CONNECTIONS under 50 concurrent page requests, and
  shrinks back to its floor once idle (counted by Redis itself: CLIENT LIST).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from tests.conftest import flushed
from tests.hostile.http_support import api, dramatiq_actor, dramatiq_broker, request
from tests.integration.support import wait_for_queue
from tests.servers import Callboard, RedisServer, wait_until

QUEUE = "/api/v1/queues/t/dramatiq/dramatiq:default"
#: dashboard.redispool's cap and floor (the test states them rather than importing: it runs on main too).
MAX_CONNECTIONS = 8
FLOOR = 2


@pytest.fixture(scope="module")
def board(one_redis: RedisServer) -> Iterator[Callboard]:
    url = flushed(one_redis)
    broker = dramatiq_broker(url)
    actor = dramatiq_actor(broker, "default", "work")
    for i in range(5):
        actor.send(i)
    board = Callboard([f"t={url}"]).start(poll_interval=0.2)
    try:
        wait_for_queue(board, "dramatiq", "dramatiq:default")
        yield board
    finally:
        board.stop()
        broker.client.close()


# -- request bodies ------------------------------------------------------------------------------------


def _raw(board: Callboard, head: str, chunks: Iterator[bytes], timeout: float = 10) -> bytes:
    """Send `head`, then `chunks` while the server lets us, then read its answer (or time out)."""
    with socket.create_connection(("127.0.0.1", board.port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed while we were sending: that is the point
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    return answer
                answer += data
            top, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", top)
            while length and len(body) < int(length.group(1)):
                data = sock.recv(65536)
                if not data:
                    break
                body += data
            answer = top + b"\r\n\r\n" + body
        except TimeoutError:
            pass
        return answer


def _head(board: Callboard, content_type: str, framing: str) -> str:
    return (
        f"POST {QUEUE}/delete HTTP/1.1\r\nHost: 127.0.0.1:{board.port}\r\n"
        f"Content-Type: {content_type}\r\n{framing}\r\n\r\n"
    )


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_a_10_mb_body_is_refused_before_it_is_read(board: Callboard, content_type: str) -> None:
    # Declared: the answer comes after 64 KiB of the 10 MB were sent, without waiting for the rest.
    started = time.monotonic()
    answer = _raw(board, _head(board, content_type, "Content-Length: 10000000"), iter([b"x" * 65536]))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert time.monotonic() - started < 10
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert b'"error"' in body and b"1,048,576" in body, body

    # Chunked, no length: refused once past the limit; the final chunk is never sent.
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    answer = _raw(board, _head(board, content_type, "Transfer-Encoding: chunked"), iter([chunk] * 32))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]

    # Under the limit, the most ids one request may name (10,000: ~250 kB) are read and acted on.
    ids = [f"no-such-id-{i:05d}" for i in range(10_000)]
    if content_type == "application/json":
        body = json.dumps({"state": "ready", "ids": ids}).encode()
    else:
        body = ("state=ready&scope=selection&" + "&".join(f"ids={i}" for i in ids)).encode()
    status, _, text = request(board, "POST", QUEUE + "/delete", body, {"Content-Type": content_type})
    assert status in (200, 202), text[:300]
    op = json.loads(text)
    wait_until(
        lambda: api(board, f"/api/v1/operations/{op['id']}")["status"] == "finished", what="the delete"
    )
    assert api(board, f"/api/v1/operations/{op['id']}")["changed"] == 10_000  # none existed: nothing done


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"state": "ready", "ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
    ids=["array", "inside-the-object"],
)
def test_a_deeply_nested_json_body_is_a_400(board: Callboard, body: bytes) -> None:
    status, headers, text = request(
        board, "POST", QUEUE + "/delete", body, {"Content-Type": "application/json"}
    )
    assert status == 400, text[:300]
    assert headers["content-type"].startswith("application/json") and json.loads(text)["error"]


# -- query parameters ----------------------------------------------------------------------------------


OUT_OF_RANGE = [
    f"{QUEUE}/jobs?cursor={10**32}",
    f"{QUEUE}/jobs?cursor=-1",
    f"{QUEUE}/jobs?cursor=abc",
    f"{QUEUE}/jobs?limit={10**32}",
    f"{QUEUE}/jobs?limit=0",
    f"{QUEUE}/jobs?limit=100000",
    f"/queues/t/dramatiq/dramatiq:default?cursor={10**32}",
    f"/fragments/jobs/t/dramatiq/dramatiq:default?state=ready&cursor={10**32}",
    f"/?page={10**32}",
    f"/fragments/overview?page={10**32}",
]


def test_integers_out_of_range_are_a_400_that_says_so(board: Callboard) -> None:
    wrong: dict[str, tuple[int, str]] = {}
    for path in OUT_OF_RANGE:
        status, text = board.get(path)
        name = "page" if "page=" in path else ("cursor" if "cursor=" in path else "limit")
        if status != 400 or f"`{name}` must be an integer" not in text:
            wrong[path] = (status, text[:200])
    assert not wrong, wrong
    # Sensible values still work.
    page = api(board, f"{QUEUE}/jobs?cursor=2&limit=2")
    assert len(page["items"]) == 2
    assert api(board, f"{QUEUE}/jobs?cursor=1000000&limit=500")["items"] == []
    assert board.get("/?page=abc")[0] == 200  # not a number at all: the first page, as before


# -- methods -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", f"{QUEUE}/delete", {"POST"}),
        ("POST", f"{QUEUE}/jobs", {"GET", "HEAD"}),
        ("PUT", f"{QUEUE}/jobs", {"GET", "HEAD"}),
        ("DELETE", "/api/v1/jobs/t/dramatiq/dramatiq:default/some-id", {"GET", "HEAD"}),
        ("GET", "/api/v1/jobs/t/dramatiq/dramatiq:default/some-id/retry", {"POST"}),
        ("GET", "/api/v1/failures/t/dramatiq/somegroup/delete", {"POST"}),
        ("POST", "/api/v1/queues", {"GET", "HEAD"}),
        ("GET", "/api/v1/searches/abc/stop", {"POST"}),
        ("POST", "/workers", {"GET", "HEAD"}),
        ("POST", "/queues/t/dramatiq/dramatiq:default", {"GET", "HEAD"}),
        ("PUT", "/static/app.css", {"GET", "HEAD"}),
    ],
)
def test_a_wrong_method_is_a_405_with_allow(
    board: Callboard, method: str, path: str, allowed: set[str]
) -> None:
    status, headers, text = request(board, method, path, b"{}" if method != "GET" else None)
    assert status == 405, (status, text[:300])
    assert {m.strip() for m in headers.get("allow", "").split(",")} == allowed, headers
    if path.startswith("/api/"):
        assert json.loads(text)["error"]


# -- the OpenAPI document ------------------------------------------------------------------------------


def test_openapi_documents_the_error_answers_of_every_route(board: Callboard) -> None:
    doc = api(board, "/api/v1/openapi.json")
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and error["properties"]["error"]["type"] == "string"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert {"400", "404", "405"} <= codes, (path, method, sorted(codes))
            if method == "post" and "{target}" in path:
                assert {"413", "415"} <= codes, (path, sorted(codes))
            for code in codes - {"200", "202"}:
                schema = op["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, code)
    # What it says is what a 404 looks like.
    status, _, text = request(board, "GET", f"{QUEUE}/jobs".replace("default", "nope"))
    assert status == 404 and set(json.loads(text)) == {"error"}


# -- the Redis pool ------------------------------------------------------------------------------------


def _callboard_connections(client: redis.Redis) -> int:
    clients: Any = client.client_list()
    return sum(1 for c in clients if c.get("name") == "callboard")


def test_the_redis_pool_is_capped_under_load_and_shrinks_when_idle(own_server: RedisServer) -> None:
    url = own_server.url
    broker = dramatiq_broker(url)
    actor = dramatiq_actor(broker, "default", "work")
    for i in range(200):
        actor.send(i)
    control = redis.Redis.from_url(url)
    board = Callboard([f"t={url}"]).start(poll_interval=0.2)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _callboard_connections(control))
            time.sleep(0.005)

    try:
        wait_for_queue(board, "dramatiq", "dramatiq:default")
        job_id = api(board, f"{QUEUE}/jobs")["items"][0]["job_id"]
        # Requests that are mostly Redis round trips, and one page: without a cap, 50 of them at once
        # open 9 to 13 connections here (and keep them).
        paths = [
            f"/api/v1/jobs/t/dramatiq/dramatiq:default/{job_id}",
            f"{QUEUE}/jobs?state=ready&limit=5",
            f"/jobs/t/dramatiq/dramatiq:default/{job_id}",
            "/queues/t/dramatiq/dramatiq:default?state=ready&limit=25",
        ]
        sampler = threading.Thread(target=sample)
        sampler.start()
        with ThreadPoolExecutor(max_workers=50) as pool:
            # A generous client timeout: a loaded box is slow, and a request that waits is the point.
            statuses = list(
                pool.map(lambda i: request(board, "GET", paths[i % 4], timeout=120)[0], range(400))
            )
        stop.set()
        sampler.join()
        assert statuses.count(200) == len(statuses), sorted(set(statuses))
        assert 1 <= peak <= MAX_CONNECTIONS, f"{peak} connections open at once"
        # The poller kept its own connection: the target never looked down while pages queued.
        assert api(board, "/api/v1/queues")["targets"][0]["errors_total"] == 0
        wait_until(
            lambda: _callboard_connections(control) <= FLOOR,
            timeout=20,
            what=f"idle connections to close (down to {FLOOR})",
        )
        # And it stays there while only the poller runs: five more polls (0.2 s each).
        first = api(board, "/api/v1/queues")["targets"][0]["collected_at"]
        wait_until(
            lambda: api(board, "/api/v1/queues")["targets"][0]["collected_at"] >= first + 1.0,
            timeout=20,
            what="five more polls",
        )
        assert _callboard_connections(control) <= FLOOR
    finally:
        stop.set()
        board.stop()
        broker.client.close()
        control.close()
