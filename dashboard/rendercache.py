"""Rendered bodies of store-only responses, shared by every viewer until the next poll lands.

Every open tab polls its fragments and every scraper pulls `/metrics`; all of them read the same
snapshot. Rendering it once per store version (and per URL) instead of once per request keeps the
cost flat in the number of viewers: 50 tabs on a 1,000-queue overview cost one render per poll, not
fifty. Renders run in a worker thread so the event loop (and with it the poller and `/healthz`)
keeps moving while a large page is built, and concurrent misses for the same key wait for one render
instead of starting their own.

Entries also expire after `max_age` seconds so relative times ("3 s ago") cannot freeze if the store
stops changing (a poller stuck on a slow Redis still bumps the version when it times out).

`ReadCache` does the same for what a page reads from Redis on demand outside the poll (a task's 24 h
history, a live job list): one read per key and `max_age` for every viewer, so open tabs do not
multiply Redis reads.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from callboard.dashboard.store import SnapshotStore

#: Bodies smaller than this are sent as they are: compressing them saves less than it costs. The
#: app's GZipMiddleware (dashboard/app.py) uses the same minimum for the answers nothing compressed
#: before it, and adds `Vary: Accept-Encoding` to every uncompressed one at or above it.
GZIP_MIN = 1024


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    media_type: str
    #: The body gzipped once, for every client that accepts it: a 1,000-queue exposition is ~600 kB
    #: of text and ~40 kB compressed, and sending bytes is what a loaded server spends its time on.
    gzipped: bytes | None = None


def compressed(rendered: Rendered) -> Rendered:
    if rendered.gzipped is not None or len(rendered.body) < GZIP_MIN:
        return rendered
    # Level 5: within a few percent of level 9's size on this kind of text at a third of the time.
    return Rendered(rendered.body, rendered.media_type, gzip.compress(rendered.body, 5, mtime=0))


def send(request: Request, rendered: Rendered, headers: dict[str, str] | None = None) -> Response:
    """The cached body, gzipped when the client accepts it. `no-store`: it changes every poll.

    `Vary` goes with the gzipped body; the plain one gets it from the GZipMiddleware (see GZIP_MIN),
    so no answer carries it twice."""
    out = {"Cache-Control": "no-store", **(headers or {})}
    out["Content-Type"] = rendered.media_type
    body = rendered.body
    if rendered.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = rendered.gzipped
        out["Content-Encoding"] = "gzip"
        out["Vary"] = "Accept-Encoding"
    return Response(body, headers=out)


@dataclass(frozen=True, slots=True)
class _Entry:
    version: int
    at: float
    task: asyncio.Task[Rendered]


class RenderCache:
    def __init__(self, store: SnapshotStore, max_age: float, size: int = 128) -> None:
        self.store = store
        self.max_age = max_age
        self.size = size
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        #: Renders actually performed (tests and the bench read it to prove sharing).
        self.renders = 0

    async def get(self, key: Hashable, render: Callable[[], Rendered]) -> Rendered:
        version = self.store.version
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or entry.version != version or now - entry.at > self.max_age or _failed(entry):
            entry = _Entry(version, now, asyncio.ensure_future(self._render(render)))
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        # Shielded: a client that disconnects mid-render must not cancel the render others await.
        return await asyncio.shield(entry.task)

    async def _render(self, render: Callable[[], Rendered]) -> Rendered:
        self.renders += 1
        return await run_in_threadpool(lambda: compressed(render()))


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Read(Generic[T]):
    at: float
    task: asyncio.Task[T]


class ReadCache(Generic[T]):
    """Results of on-demand reads by key, shared for `max_age` seconds; at most `size` keys kept.

    Concurrent misses for a key wait for one read; a read that failed is not kept (the next request
    reads again, and its page says why it could not)."""

    def __init__(self, max_age: float, size: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Read[T]] = OrderedDict()
        #: Reads actually performed (tests read it to prove sharing).
        self.reads = 0

    async def get(
        self,
        key: Hashable,
        read: Callable[[], Awaitable[T]],
        fresh: bool = False,
        within: float | None = None,
    ) -> T:
        """The kept result for `key`, or a new read; `fresh`: a new read in any case, kept for the
        next viewers (a read that must see a change just made); `within`: reuse only a read started
        this recently (default `max_age`)."""
        now = self._clock()
        entry = self._entries.get(key)
        max_age = self.max_age if within is None else within
        if fresh or entry is None or now - entry.at > max_age or _failed(entry):
            self.reads += 1
            entry = _Read(now, asyncio.ensure_future(read()))
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        # Shielded: a client that disconnects mid-read must not cancel the read others await.
        return await asyncio.shield(entry.task)


def _failed(entry: _Entry | _Read[Any]) -> bool:
    # A render that raised is not cached: the next request tries again (and gets its own error page).
    return entry.task.done() and (entry.task.cancelled() or entry.task.exception() is not None)
