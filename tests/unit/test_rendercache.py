"""The render cache: one render per store version and key, shared by concurrent viewers."""

from __future__ import annotations

import asyncio
import gzip
import threading

import pytest
from starlette.requests import Request

from callboard.dashboard.rendercache import ReadCache, RenderCache, Rendered, compressed, send
from callboard.dashboard.store import SnapshotStore


def _cache() -> tuple[SnapshotStore, RenderCache]:
    store = SnapshotStore([("t", "redis://x")])
    return store, RenderCache(store, max_age=60.0)


async def test_concurrent_viewers_share_one_render_per_version() -> None:
    store, cache = _cache()
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def render() -> Rendered:
        calls.append(store.version)
        entered.set()
        release.wait(5)  # holds the render so all 20 requests arrive while it is in progress
        return Rendered(f"v{store.version}".encode(), "text/plain")

    pending = [asyncio.ensure_future(cache.get("k", render)) for _ in range(20)]
    # All 20 tasks started in the loop turn that began the render; it is now in its thread.
    assert await asyncio.to_thread(entered.wait, 5)
    release.set()
    bodies = {r.body for r in await asyncio.gather(*pending)}
    assert bodies == {b"v0"} and calls == [0]

    store.record_error("t", "down", 0.1)  # a new poll landed: the next viewer gets a fresh render
    assert (await cache.get("k", render)).body == b"v1"
    assert (await cache.get("k", render)).body == b"v1"
    assert calls == [0, 1]
    # Another key (another URL) renders on its own.
    assert (await cache.get("other", render)).body == b"v1"
    assert len(calls) == 3


async def test_a_failed_render_is_not_cached_and_the_error_reaches_the_caller() -> None:
    _, cache = _cache()
    attempts: list[int] = []

    def render() -> Rendered:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("boom")
        return Rendered(b"ok", "text/plain")

    with pytest.raises(ValueError, match="boom"):
        await cache.get("k", render)
    assert (await cache.get("k", render)).body == b"ok"
    assert len(attempts) == 2


async def test_a_cancelled_viewer_does_not_cancel_the_render_others_wait_for() -> None:
    _, cache = _cache()
    entered, release = threading.Event(), threading.Event()

    def render() -> Rendered:
        entered.set()
        release.wait(5)
        return Rendered(b"done", "text/plain")

    first = asyncio.ensure_future(cache.get("k", render))
    second = asyncio.ensure_future(cache.get("k", render))
    assert await asyncio.to_thread(entered.wait, 5)
    first.cancel()
    release.set()
    assert (await second).body == b"done"
    assert cache.renders == 1


async def test_entries_expire_so_relative_times_cannot_freeze() -> None:
    store = SnapshotStore([("t", "redis://x")])
    cache = RenderCache(store, max_age=0.0)
    n = 0

    def render() -> Rendered:
        nonlocal n
        n += 1
        return Rendered(str(n).encode(), "text/plain")

    await cache.get("k", render)
    await asyncio.sleep(0.01)
    assert (await cache.get("k", render)).body == b"2"


async def test_reads_are_shared_for_max_age_and_a_failed_read_is_not_kept() -> None:
    """A task's history (dashboard/taskreport.py): open tabs share one Redis read per key and 30 s."""
    now = [0.0]
    cache: ReadCache[int] = ReadCache(max_age=30.0, clock=lambda: now[0])
    gate = asyncio.Event()
    results: list[int | Exception] = [ConnectionError("down"), 1, 2]

    async def read() -> int:
        await gate.wait()
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    waiting = [asyncio.ensure_future(cache.get("k", read)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes) and cache.reads == 1
    # Failed: the next viewer reads again; then the answer is shared until it is max_age old.
    assert [await cache.get("k", read) for _ in range(3)] == [1, 1, 1] and cache.reads == 2
    now[0] = 30.5
    assert await cache.get("k", read) == 2 and cache.reads == 3


async def test_a_fresh_read_is_what_the_next_viewers_get() -> None:
    """A job list's reload after a control reads now; the live polls after it share that read."""
    now = [0.0]
    cache: ReadCache[int] = ReadCache(max_age=2.0, clock=lambda: now[0])
    values = iter(range(1, 10))

    async def read() -> int:
        return next(values)

    assert await cache.get("k", read) == 1
    assert await cache.get("k", read) == 1
    assert await cache.get("k", read, fresh=True) == 2
    now[0] = 1.5
    assert [await cache.get("k", read) for _ in range(3)] == [2, 2, 2] and cache.reads == 2
    now[0] = 3.6
    assert await cache.get("k", read) == 3


def _request(accept_encoding: str | None) -> Request:
    headers = [(b"accept-encoding", accept_encoding.encode())] if accept_encoding else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_large_bodies_are_gzipped_once_and_sent_to_clients_that_accept_it() -> None:
    body = b"callboard_queue_messages 1\n" * 2000
    rendered = compressed(Rendered(body, "text/plain"))
    assert rendered.gzipped is not None and len(rendered.gzipped) < len(body) // 20
    zipped = send(_request("gzip, deflate"), rendered)
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped.body) == body
    plain = send(_request(None), rendered)
    assert "content-encoding" not in plain.headers and plain.body == body
    # The app's GZipMiddleware adds `Vary` to the plain body (tests/integration/test_weight.py): here
    # it would be there twice.
    assert "vary" not in plain.headers and plain.headers["content-type"] == "text/plain"
    # Small bodies are not worth compressing.
    assert compressed(Rendered(b"ok", "text/plain")).gzipped is None
