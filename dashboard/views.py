"""Pages and htmx fragments. Live fragments read the store only; browse pages read Redis on demand.

A fragment URL returns exactly the partial its page includes, so the markup exists once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from callboard.collectors import backends
from callboard.collectors.backend import Backend
from callboard.collectors.model import (
    QUEUE_STATES,
    FailureGroup,
    JobDetail,
    JobPage,
    QueueStats,
    StuckJob,
    WorkerStats,
)
from callboard.collectors.snippets import Snippet
from callboard.collectors.target import TargetCollector
from callboard.dashboard import operations
from callboard.dashboard.rendercache import Rendered, send
from callboard.dashboard.services import services
from callboard.dashboard.settings import DEFAULT_URL
from callboard.dashboard.store import SnapshotStore, TargetState

HTML = "text/html; charset=utf-8"
#: Overview rows per page: a 1,000-queue overview is ~1.4 MB of HTML and 100 ms of render per poll
#: per tab; 100 rows keep a poll under ~150 kB, and the filter finds any queue.
OVERVIEW_ROWS = 100
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_LIMIT = 50
#: Jobs per page at most (a page is read and rendered per request).
MAX_LIMIT = 500
#: Highest cursor (an offset): beyond any real queue, well inside Redis' 64-bit indexes.
MAX_OFFSET = 10**12
#: Highest overview page asked for (clamped to the last page that exists).
MAX_PAGE = 10**6
_INTEGER = re.compile(r"[+-]?[0-9]+")
STATE_LABELS = {
    "ready": "Ready",
    "in_flight": "In flight",
    "delayed": "Delayed",
    "dead": "Dead",
    "deferred": "Deferred",
    "in_progress": "In progress",
    "failed": "Failed",
    "succeeded": "Succeeded",
}


@dataclass(frozen=True, slots=True)
class Tab:
    state: str
    count: int | None


@dataclass(frozen=True, slots=True)
class QueueRow:
    target: str
    up: bool
    queue: QueueStats
    #: SVG polyline points of the backlog (everything but dead) over the stored history.
    spark: str
    spark_max: int


def _base(request: Request) -> dict[str, Any]:
    return {
        "request": request,
        "targets": services(request).store.targets(),
        "read_only": services(request).settings.read_only,
        "poll_ms": int(services(request).settings.poll_interval * 1000),
        "now": time.time(),
        "state_labels": STATE_LABELS,
    }


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """A page that reads Redis on demand (or an error page): rendered per request."""
    response: Response = services(request).templates.TemplateResponse(
        request, name, {**_base(request), **context}, status_code=status
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def _live(request: Request, name: str, build: Callable[[], dict[str, Any]]) -> Response:
    """A page or fragment made from the store alone: rendered once per poll and URL, for every viewer.

    `build` runs with the render in a worker thread, so computing rows for a large overview does not
    hold the event loop either. Nothing user-specific may go into these templates.
    """
    cache = services(request).render_cache

    def rendered_now() -> Rendered:
        template = services(request).templates.get_template(name)
        return Rendered(template.render({**_base(request), **build()}).encode(), HTML)

    rendered = await cache.get(("html", name, request.url.path, request.url.query), rendered_now)
    return send(request, rendered)


def spark_points(history: list[tuple[float, Any]], width: int = 120, height: int = 24) -> tuple[str, int]:
    values = [sum(v for k, v in counts.items() if k != "dead") for _, counts in history[-120:]]
    if len(values) < 2:
        return "", max(values, default=0)
    top = max(values) or 1
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in enumerate(values)
    )
    return points, max(values)


def queue_row(store: SnapshotStore, state: TargetState, q: QueueStats) -> QueueRow:
    points, top = spark_points(store.history(state.name, q.key))
    return QueueRow(state.name, state.up, q, points, top)


def _matches(words: list[str], state: TargetState, q: QueueStats) -> bool:
    text = f"{state.name} {q.framework.value} {q.key} {q.name}".casefold()
    return all(w in text for w in words)


def overview_page(request: Request) -> int:
    """`?page=`: a number from 1 to MAX_PAGE (a 400 beyond), 1 when it is not a number at all."""
    raw = (request.query_params.get("page") or "").strip()
    return int_param(request, "page", 1, 1, MAX_PAGE) if _INTEGER.fullmatch(raw) else 1


def overview_context(request: Request) -> dict[str, Any]:
    """The overview's rows: filtered by `?q=` (every word must match target, framework or queue),
    `OVERVIEW_ROWS` per `?page=`. Sparklines are computed for the shown rows only."""
    store = services(request).store
    query = (request.query_params.get("q") or "").strip()[:200]
    words = query.casefold().split()
    found = [(s, q) for s, q in store.queues() if _matches(words, s, q)]
    pages = max(1, -(-len(found) // OVERVIEW_ROWS))
    page = min(overview_page(request), pages)
    start = (page - 1) * OVERVIEW_ROWS
    rows = [queue_row(store, s, q) for s, q in found[start : start + OVERVIEW_ROWS]]
    params = {k: v for k, v in (("q", query), ("page", str(page) if page > 1 else "")) if v}
    return {
        "rows": rows,
        "query": query,
        "page": page,
        "pages": pages,
        "first": start + 1 if rows else 0,
        "matched": len(found),
        "total": len(store.queues()) if words else len(found),
        "params": urlencode(params),
        "page_url": lambda n: "/?" + urlencode({k: v for k, v in (("q", query), ("page", str(n))) if v}),
    }


# -- pages -----------------------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    overview_page(request)  # a 400 here, not from the render thread
    return await _live(request, "pages/overview.html", lambda: overview_context(request))


async def overview_fragment(request: Request) -> Response:
    overview_page(request)
    return await _live(request, "partials/overview_body.html", lambda: overview_context(request))


async def banner_fragment(request: Request) -> Response:
    return await _live(request, "partials/banner.html", dict)


async def workers(request: Request) -> Response:
    return await _live(request, "pages/workers.html", dict)


async def workers_fragment(request: Request) -> Response:
    return await _live(request, "partials/workers_table.html", dict)


def failure_rows(store: SnapshotStore) -> list[QueueRow]:
    return [
        queue_row(store, s, q)
        for s, q in store.queues()
        if q.counts.get("dead") or (q.results or {}).get("failed")
    ]


@dataclass(frozen=True, slots=True)
class GroupRow:
    target: str
    group: FailureGroup
    #: SVG bars of when they failed: (x, height) per bar, in a 120 x 24 box.
    bars: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class OrphanRow:
    target: str
    queue: QueueStats
    #: Workers with a stale heartbeat that hold messages of this queue.
    workers: tuple[WorkerStats, ...]


def _bars(spark: tuple[int, ...]) -> tuple[tuple[float, float], ...]:
    top = max(spark, default=0) or 1
    width = 120 / max(1, len(spark))
    return tuple((i * width, max(1.0, 22 * n / top) if n else 0.0) for i, n in enumerate(spark))


def failures_framework(request: Request) -> str:
    """`?framework=` of the failures page: "", dramatiq or arq (a 400 otherwise)."""
    framework = request.query_params.get("framework") or ""
    if framework and framework not in backends.NAMES:
        raise HTTPException(400, f"Unknown framework {framework!r}: {' or '.join(backends.NAMES)}.")
    return framework


def failures_context(request: Request) -> dict[str, Any]:
    """Everything the failures page shows, from the store alone: groups, retention, orphans, stuck."""
    store = services(request).store
    framework = failures_framework(request)
    groups: list[GroupRow] = []
    orphans: list[OrphanRow] = []
    stuck: list[tuple[str, StuckJob]] = []
    missing = 0
    for state in store.targets():
        snap = state.snapshot
        if snap is None:
            continue
        missing += snap.failures_missing
        groups += [
            GroupRow(state.name, g, _bars(g.spark))
            for g in snap.failures
            if not framework or g.framework.value == framework
        ]
        stale = [w for w in snap.workers if not w.alive and w.in_flight]
        for q in snap.queues:
            if q.orphaned:
                holders = tuple(
                    w
                    for w in stale
                    if w.framework is q.framework and w.namespace == q.namespace and q.name in w.queues
                )
                orphans.append(OrphanRow(state.name, q, holders))
        stuck += [(state.name, j) for j in snap.stuck]
    groups.sort(key=lambda r: (-r.group.count, -(r.group.last_seen or 0.0), r.target, r.group.key))
    total = sum(r.group.count for r in groups)
    next_expiries = [r.group.next_expiry for r in groups if r.group.next_expiry is not None]
    return {
        "groups": groups,
        "framework": framework,
        "total": total,
        "missing": missing,
        "expiring_hour": sum(r.group.expiring_hour for r in groups),
        "expiring_day": sum(r.group.expiring_day for r in groups),
        "next_expiry": min(next_expiries, default=None),
        "orphans": orphans,
        "stuck": stuck,
        "rows": failure_rows(store),
        "controls": not services(request).settings.read_only,
        # Queues with a page: a failure of an unreadable result names no queue ("?"), so no link.
        "listed": {(s.name, q.framework.value, q.key) for s, q in store.queues()},
    }


async def failures(request: Request) -> Response:
    failures_framework(request)  # a 400 here, not from the render thread
    return await _live(request, "pages/failures.html", lambda: failures_context(request))


async def failures_fragment(request: Request) -> Response:
    failures_framework(request)
    return await _live(request, "partials/failures_body.html", lambda: failures_context(request))


def _queue_context(request: Request) -> dict[str, Any]:
    target, framework, key = (request.path_params[k] for k in ("target", "framework", "queue"))
    backend = require_queue(request, target, framework, key)
    found = services(request).store.queue(target, framework, key)
    state = services(request).store.get(target)
    assert state is not None
    # Known (configured, or discovered since the last snapshot) but not collected yet: zero counts.
    stats = backend.empty_stats(key) if found is None else found[1]
    history = services(request).store.history(target, key)
    tabs = [Tab(s, _tab_count(stats, s)) for s in backend.states]
    return {"target": state, "queue": stats, "tabs": tabs, "history": _history_series(history, stats)}


def _tab_count(stats: QueueStats, state: str) -> int | None:
    if state in stats.counts:
        return stats.counts[state]
    return stats.results.get(state) if stats.results is not None else None


def _history_series(history: list[tuple[float, Any]], stats: QueueStats) -> dict[str, Any]:
    states = QUEUE_STATES[stats.framework]
    return {
        "labels": [STATE_LABELS[s] for s in states],
        "data": [[round(t, 1) for t, _ in history]] + [[c.get(s, 0) for _, c in history] for s in states],
    }


def action_label(state: str, action: str) -> str:
    if action == "retry":
        return {"dead": "Requeue", "delayed": "Run now", "failed": "Re-run", "succeeded": "Re-run"}.get(
            state, "Retry"
        )
    if action == "delete":
        return "Delete result" if state in ("failed", "succeeded") else "Delete"
    return "Abort"


def control_actions(request: Request, target: str, framework: str, state: str) -> list[tuple[str, str]]:
    """(action, label) of the controls shown for jobs in `state`; none in read-only mode."""
    collector = target_collector(request, target)
    backend = collector.backend(framework) if collector is not None else None
    if services(request).settings.read_only or backend is None:
        return []
    return [(a, action_label(state, a)) for a in backend.actions(state)]


async def _jobs_context(request: Request, context: dict[str, Any]) -> dict[str, Any]:
    stats: QueueStats = context["queue"]
    state = request.query_params.get("state") or "ready"
    target = context["target"].name
    page = await list_jobs(request, target, stats.framework.value, stats.key, state)
    return {
        **context,
        "tab": state,
        "page": page,
        "page_sizes": PAGE_SIZES,
        "actions": control_actions(request, target, stats.framework.value, state),
        "tab_count": next((t.count for t in context["tabs"] if t.state == state), None),
    }


async def queue_page(request: Request) -> Response:
    context = await _jobs_context(request, _queue_context(request))
    return render(request, "pages/queue.html", context)


async def jobs_fragment(request: Request) -> Response:
    """The job list of a queue page, re-read from Redis (after a control ended, or on demand)."""
    context = await _jobs_context(request, _queue_context(request))
    return render(request, "partials/job_table.html", context)


async def queue_fragment(request: Request) -> Response:
    context = _queue_context(request)  # raises 404 here, before the cache, for unknown queues
    tab = request.query_params.get("state") or "ready"
    return await _live(request, "partials/queue_summary.html", lambda: {**context, "tab": tab})


async def job_page(request: Request) -> Response:
    target, framework, key, job_id = (
        request.path_params[k] for k in ("target", "framework", "queue", "job_id")
    )
    detail = await load_job(request, target, framework, key, job_id)
    if detail is None:
        return render(
            request,
            "pages/job_gone.html",
            {"target_name": target, "framework": framework, "queue_key": key, "job_id": job_id},
            status=404,
        )
    actions = control_actions(request, target, framework, detail.state)
    context = {
        "job": detail,
        "target_name": target,
        "actions": actions,
        "resend": resend(request, target, detail),
    }
    return render(request, "pages/job.html", context)


# -- shared with the JSON API ----------------------------------------------------------------------


def target_collector(request: Request, target: str) -> TargetCollector | None:
    collectors = services(request).collectors
    return collectors.get(target)


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """The query parameter `name` as an integer in [low, high]; a 400 that says so otherwise.

    Checked here, before Redis sees it: a cursor of 10**32 is not "Redis is unreachable"."""
    raw = (request.query_params.get(name) or "").strip()
    if not raw:
        return default
    if len(raw) > 20 or not _INTEGER.fullmatch(raw):
        raise HTTPException(400, f"`{name}` must be an integer from {low:,} to {high:,}.")
    value = int(raw)
    if not low <= value <= high:
        raise HTTPException(400, f"`{name}` must be an integer from {low:,} to {high:,}; got {value:,}.")
    return value


def _paging(request: Request) -> tuple[int, int]:
    offset = int_param(request, "cursor", 0, 0, MAX_OFFSET)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return offset, limit


def resend(request: Request, target: str, detail: JobDetail) -> Snippet:
    """The job's "copy as code" snippet, written with the target's URL minus its password."""
    settings = services(request).settings.target(target)
    backend = require_queue(request, target, detail.framework.value, detail.queue_key)
    return backend.resend(detail, settings.safe_url if settings else DEFAULT_URL)


def require_queue(request: Request, target: str, framework: str, key: str) -> Backend:
    """The target's backend `framework` when `key` is a queue it knows; else a 404 that says what is
    unknown (and how queues are discovered)."""
    collector = target_collector(request, target)
    if collector is None:
        raise HTTPException(404, f"Unknown target {target!r}.")
    backend = collector.backend(framework)
    if backend is None:
        raise HTTPException(404, f"Unknown framework {framework!r}: {' or '.join(backends.NAMES)}.")
    if not backend.knows(key):
        raise HTTPException(404, operations.unknown_queue_message(target, framework, key))
    return backend


async def list_jobs(request: Request, target: str, framework: str, key: str, state: str) -> JobPage:
    backend = require_queue(request, target, framework, key)
    if state not in backend.states:
        raise HTTPException(400, f"Unknown state {state!r}; one of {', '.join(backend.states)}.")
    offset, limit = _paging(request)
    return await backend.list_jobs(key, state, offset, limit)


async def load_job(request: Request, target: str, framework: str, key: str, job_id: str) -> JobDetail | None:
    return await require_queue(request, target, framework, key).get_job(key, job_id)
