"""Searches as background tasks: budgeted steps, progress to poll, stop, and one run per question.

A search over a million stored jobs takes seconds, so it never runs inside a request: `start` makes
an asyncio task that runs steps of `collectors.search.Scan` (one SCAN-family call and the decoding
of its candidates each) for `budget` seconds of wall time, then sleeps `pause` seconds so the event
loop (pages, the poller) and Redis serve everyone else. Progress is read while it runs.

Load stays bounded however many people look: an identical search that is still running is joined,
not started again (reloads, several tabs), a search nobody has polled for `idle_timeout` seconds
stops itself, and at most `keep` finished searches are remembered.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from callboard.collectors import backends
from callboard.collectors.search import Hit, Query, Scan
from callboard.collectors.target import TargetCollector
from callboard.dashboard import tasks
from callboard.dashboard.store import SnapshotStore
from callboard.dashboard.tasks import Tasks
from callboard.dashboard.urls import job_url

log = logging.getLogger("callboard.search")

#: Wall time of steps run back to back before the task yields for `PAUSE`: a search takes at most
#: about half of the event loop and half a core, so a box with few cores keeps room for Redis and
#: the pages (with a 5 ms pause, a loaded 2-core box saw Redis PINGs of 100 ms while searching).
BUDGET = 0.02
PAUSE = 0.02
#: A search nobody polled for this long stops itself.
IDLE_TIMEOUT = 30.0
#: Match rows kept per search (every match is counted).
KEEP_HITS = 1000
#: Finished searches remembered for their progress URLs.
KEEP_SEARCHES = 50
#: Different searches running at once; more are refused until one ends (each is one more reader).
MAX_RUNNING = 8


class SearchError(ValueError):
    """A search that cannot be run as asked; the message says why (an HTTP 400 or 404)."""


class SearchBusy(SearchError):
    """Too many different searches are running (an HTTP 429)."""


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: Query
    #: Scope: every known queue of every target when all are None; narrowed by each one given.
    target: str | None = None
    framework: str | None = None
    queue: str | None = None

    @property
    def dedupe_key(self) -> tuple[object, ...]:
        return (self.query, self.target, self.framework, self.queue)


@dataclass(slots=True)
class Search:
    id: str
    request: SearchRequest
    started_at: float
    scans: list[Scan] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    matches: int = 0
    found_by_id: bool = False
    finished_at: float | None = None
    stopped: str | None = None
    error: str | None = None
    error_status: int | None = None
    notes: list[str] = field(default_factory=list)
    #: Targets in scope not searched: unreachable when the search started.
    unreachable: list[str] = field(default_factory=list)
    #: Targets in scope, searched or not.
    in_scope: int = 0
    polled_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        if self.finished_at is None:
            return "running"
        return "failed" if self.error else ("stopped" if self.stopped else "finished")

    @property
    def dedupe_key(self) -> tuple[object, ...]:
        return self.request.dedupe_key

    def record(self, hits: list[Hit]) -> None:
        self.matches += len(hits)
        self.hits += hits[: max(0, KEEP_HITS - len(self.hits))]

    def view(self) -> dict[str, Any]:
        r = self.request
        current = next((s.current for s in self.scans if not s.done), None)
        return {
            "id": self.id,
            "status": self.status,
            "query": {"text": r.query.text, "field": r.query.field},
            "scope": {"target": r.target, "framework": r.framework, "queue": r.queue},
            "scanned": sum(s.scanned for s in self.scans),
            "total": sum(s.total for s in self.scans),
            "matches": self.matches,
            "approximate": any(s.approximate for s in self.scans),
            "found_by_id": self.found_by_id,
            "source": current.label if current and self.finished_at is None else None,
            "hits": [_hit_view(h) for h in self.hits],
            "kept": len(self.hits),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": (self.finished_at or time.time()) - self.started_at,
            "stopped": self.stopped,
            "error": self.error,
            "notes": list(self.notes),
            "unreachable": list(self.unreachable),
            "in_scope": self.in_scope,
        }


def _hit_view(hit: Hit) -> dict[str, Any]:
    j = hit.job
    return {
        "target": hit.target,
        "framework": hit.framework.value,
        "queue": hit.queue,
        "state": j.state,
        "matched": hit.matched,
        "job_id": j.job_id,
        "name": j.name,
        "call": j.call_preview,
        "error": j.error,
        "enqueued_at": j.enqueued_at,
        "undecodable": j.undecodable.reason if j.undecodable else None,
        "url": job_url(hit.target, hit.framework.value, hit.queue, j.job_id),
    }


class Searches:
    def __init__(
        self,
        collectors: dict[str, TargetCollector],
        budget: float = BUDGET,
        pause: float = PAUSE,
        idle_timeout: float = IDLE_TIMEOUT,
        store: SnapshotStore | None = None,
    ) -> None:
        self.collectors = collectors
        #: Where a target's health is known: one that is unreachable is skipped, and the search says
        #: so, instead of walking nothing and reporting "0 matches" (or failing on its first step). One
        #: not read yet (just started) is searched: discovery may already know its queues.
        self.store = store
        self.budget = budget
        self.pause = pause
        self.idle_timeout = idle_timeout
        self.tasks: Tasks[Search] = Tasks("search", KEEP_SEARCHES)

    def get(self, search_id: str) -> Search | None:
        """The search, marked as watched (a search nobody watches stops itself)."""
        search = self.tasks.get(search_id)
        if search is not None:
            search.polled_at = time.monotonic()
        return search

    def start(self, request: SearchRequest) -> tuple[Search, bool]:
        """The search for `request`, and whether it joined an identical one already running."""
        targets = self._scope(request)
        joined = self.tasks.joinable(request.dedupe_key)
        if joined is not None:
            joined.polled_at = time.monotonic()
            return joined, True
        if len(self.tasks.running()) >= MAX_RUNNING:
            raise SearchBusy(f"{MAX_RUNNING} searches are running: stop one, or wait for one to end")
        search = Search(uuid.uuid4().hex[:16], request, time.time(), in_scope=len(targets))
        for collector in targets:
            health = self.store.get(collector.name) if self.store is not None else None
            if health is not None and health.down_since is not None:
                search.unreachable.append(collector.name)
                continue
            plan = collector.search_sources(request.framework, request.queue)
            if plan:
                search.scans.append(Scan(collector.redis, request.query, plan))
            search.notes += collector.search_notes(request.framework)
        self.tasks.start(search, self._run(search))
        return search, False

    def stop(self, search_id: str, why: str = "stopped by a user") -> Search | None:
        search = self.tasks.get(search_id)
        if search is not None and search.status == "running":
            search.stopped = why
        return search

    async def close(self) -> None:
        """Cancel running searches (the app is shutting down)."""
        await self.tasks.close()

    def _scope(self, request: SearchRequest) -> list[TargetCollector]:
        r = request
        if r.framework is not None and r.framework not in backends.NAMES:
            raise SearchError(f"unknown framework {r.framework!r}")
        if r.queue is not None and (r.target is None or r.framework is None):
            raise SearchError("a queue is named with its target and framework")
        if r.target is None:
            return list(self.collectors.values())
        if r.target not in self.collectors:
            raise SearchError(f"unknown target {r.target!r}")
        backend = self.collectors[r.target].backend(r.framework) if r.framework else None
        if r.queue is not None and (backend is None or not backend.knows(r.queue)):
            raise SearchError(f"no {r.framework} queue {r.queue!r} on target {r.target!r}")
        return [self.collectors[r.target]]

    async def _run(self, search: Search) -> None:
        async def work() -> None:
            for scan in search.scans:
                await scan.measure()
            for scan in search.scans:
                search.record(await scan.lookup())
            if search.request.query.field == "id" and search.matches:
                search.found_by_id = True  # an exact id: nothing else can match it better
                return
            await self._walk(search)

        await tasks.run(search, work, log)

    async def _walk(self, search: Search) -> None:
        for scan in search.scans:
            while not scan.done:
                slice_end = time.perf_counter() + self.budget
                while not scan.done and time.perf_counter() < slice_end:
                    if search.stopped:
                        return
                    search.record(await scan.step())
                if time.monotonic() - search.polled_at > self.idle_timeout:
                    search.stopped = f"nobody watched it for {self.idle_timeout:g} s"
                    return
                await asyncio.sleep(self.pause)
