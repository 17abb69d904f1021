"""Pages and htmx fragments. Live fragments read the store only; browse pages read Redis on demand.

A fragment URL returns exactly the partial its page includes, so the markup exists once.

The data comes from dashboard/reports.py (shared with the JSON API, which renders the same reports as
JSON); this module only turns it into HTML.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from callboard.collectors import audit, flowhistory
from callboard.collectors.model import (
    QUEUE_STATES,
    QueueStats,
)
from callboard.dashboard import reports, taskreport
from callboard.dashboard.heatmap import bound, heatmap
from callboard.dashboard.rendercache import Rendered, send
from callboard.dashboard.services import services
from callboard.dashboard.store import SnapshotStore, TargetState
from callboard.dashboard.words import STATE_LABELS, STATE_STYLES, action_label

HTML = "text/html; charset=utf-8"


#: Overview rows per page: a 1,000-queue overview is ~1.4 MB of HTML and 100 ms of render per poll
#: per tab; 100 rows keep a poll under ~150 kB, and the filter finds any queue.
OVERVIEW_ROWS = 100


PAGE_SIZES = (25, 50, 100, 200)


#: Highest overview page asked for (clamped to the last page that exists).
MAX_PAGE = 10**6


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
    targets = services(request).store.targets()
    return {
        "request": request,
        "targets": targets,
        # Targets whose figures are missing now (unreachable, or not read yet): every empty state
        # names them instead of saying "nothing found".
        "unread": [t for t in targets if not t.up],
        # Nothing known of any target (each unread, none with an earlier snapshot): a page shows no
        # figure, only what is missing and why.
        "blind": not any(t.up or t.snapshot for t in targets),
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
    return reports.int_param(request, "page", 1, 1, MAX_PAGE) if reports.INTEGER.fullmatch(raw) else 1


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
    now = time.time()
    flow = {span: reports.flow_overview(store.targets(), span, now) for span in reports.FLOW_RANGES}
    return {
        "flow": flow,
        "flow_chart": {span: _flow_series(f) for span, f in flow.items()},
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


def _flow_series(flow: reports.FlowOverview) -> dict[str, Any]:
    per = "minute" if flow.step_seconds == 60 else "hour"
    return {
        "labels": [f"succeeded per {per}", f"failed per {per}"],
        "tones": [STATE_STYLES["succeeded"].tone, STATE_STYLES["failed"].tone],
        "data": [
            [p.at for p in flow.points],
            [p.succeeded for p in flow.points],
            [p.failed for p in flow.points],
        ],
    }


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


def failures_context(request: Request) -> dict[str, Any]:
    """The failures page's template context: the report, plus what only the page shows."""
    report = reports.failures_report(request)
    store = services(request).store
    return {
        **{f.name: getattr(report, f.name) for f in dataclasses.fields(report)},
        "rows": failure_rows(store),
        "controls": not services(request).settings.read_only,
        # Queues with a page: a failure of an unreadable result names no queue ("?"), so no link.
        "listed": {(s.name, q.framework.value, q.key) for s, q in store.queues()},
    }


#: `?sort=` of the tasks page: key -> (label, sort key of a row; larger first unless noted).
TASK_SORTS = {
    "p95": "p95 run time",
    "runs": "runs",
    "failure": "failure %",
    "wait": "p95 wait",
    "name": "name",
}


@dataclass(frozen=True, slots=True)
class TaskRow:
    flow: reports.FlowRow
    #: SVG polyline points of completions per minute over the window.
    spark: str
    spark_max: int


def task_sort(request: Request) -> str:
    sort = request.query_params.get("sort") or "p95"
    if sort not in TASK_SORTS:
        raise HTTPException(400, f"Unknown sort {sort!r}; one of {', '.join(TASK_SORTS)}.")
    return sort


def _task_key(sort: str) -> Callable[[reports.FlowRow], tuple[Any, ...]]:
    keys: dict[str, Callable[[reports.FlowRow], tuple[Any, ...]]] = {
        "p95": lambda r: (-(r.p95_run_seconds or 0.0), r.actor),
        # Rows whose source sees no successes have no run count: after every row that has one.
        "runs": lambda r: (-sum(r.window.values()) if "succeeded" in r.counted else 1, r.actor),
        "failure": lambda r: (-(_failure_share(r) or 0.0), r.actor),
        "wait": lambda r: (-(r.p95_wait_seconds or 0.0), r.actor),
        "name": lambda r: (r.actor, r.queue, r.target),
    }
    return keys[sort]


def _failure_share(row: reports.FlowRow) -> float | None:
    """None when nothing ended, or when the source does not count successes (dead letters alone
    would read 100 %)."""
    if not {"succeeded", "failed"} <= set(row.counted):
        return None
    ended = row.total.get("succeeded", 0) + row.total.get("failed", 0)
    return row.total.get("failed", 0) / ended if ended else None


def runs(row: reports.FlowRow) -> str:
    """Attempts over the window: "—" when the source does not count successes."""
    if "succeeded" not in row.counted:
        return "—"
    return f"{row.window['succeeded'] + row.window['failed'] + row.window['retried']:,}"


def failure_rate(row: reports.FlowRow) -> str:
    share = _failure_share(row)
    return "—" if share is None else f"{share * 100:.1f} %"


def tasks_context(request: Request) -> dict[str, Any]:
    report = reports.flow_report(request)
    sort = task_sort(request)
    rows = []
    for row in sorted(report.series, key=_task_key(sort)):
        # Completions per minute; failures where the source sees no successes (dead letters).
        done = "succeeded" in row.counted
        points = [(float(t), {"done": ok if done else failed}) for t, ok, failed in row.per_minute]
        spark, top = spark_points(points)
        rows.append(TaskRow(row, spark, top))
    return {
        "rows": rows,
        "sort": sort,
        "sorts": TASK_SORTS,
        "minutes": report.minutes,
        "errors": report.errors,
        "failure_rate": failure_rate,
        "runs": runs,
        "bound": bound,
    }


async def tasks(request: Request) -> Response:
    task_sort(request)  # a 400 here, not from the render thread
    return await _live(request, "pages/tasks.html", lambda: tasks_context(request))


async def tasks_fragment(request: Request) -> Response:
    task_sort(request)
    return await _live(request, "partials/tasks_table.html", lambda: tasks_context(request))


async def task_page(request: Request) -> Response:
    """One task over `?range=`: rendered per request (24 h and 7 d read Redis, through a 30 s cache)."""
    report = await taskreport.task_report(
        request, request.path_params["target"], request.path_params["series_id"]
    )
    context = {
        "task": report,
        "grid": heatmap(report),
        "ranges": reports.FLOW_RANGES,
        "range_words": taskreport.RANGE_WORDS,
        "bound": bound,
        "rule": CHANGE_RULE,
    }
    return render(request, "pages/task.html", context)


#: The change-mark rule (collectors/flowhistory.py), as the page states it.
CHANGE_RULE = (
    f"A step is marked when its p95 run time (given {flowhistory.MIN_RUNS} runs) is "
    f"{flowhistory.P95_BUCKETS} or more histogram buckets away from the median p95 of the last "
    f"{flowhistory.BASELINE} steps before it with that many runs, or when its failure rate (given "
    f"{flowhistory.MIN_ENDED} jobs ended) differs by {flowhistory.FAILURE_POINTS * 100:.0f} points or more "
    f"from that of the last {flowhistory.BASELINE} steps before it that ended jobs ({flowhistory.MIN_ENDED} "
    f"together). Either needs {flowhistory.MIN_BASELINE} such steps before it; a mark starts a new baseline."
)


async def failures(request: Request) -> Response:
    reports.failures_framework(request)  # a 400 here, not from the render thread
    return await _live(request, "pages/failures.html", lambda: failures_context(request))


async def failures_fragment(request: Request) -> Response:
    reports.failures_framework(request)
    return await _live(request, "partials/failures_body.html", lambda: failures_context(request))


def _queue_context(request: Request) -> dict[str, Any]:
    target, framework, key = (request.path_params[k] for k in ("target", "framework", "queue"))
    backend = reports.require_queue(request, target, framework, key)
    found = services(request).store.queue(target, framework, key)
    state = services(request).store.get(target)
    assert state is not None
    # Known (configured, or discovered since the last snapshot) but not collected yet: zero counts.
    stats = backend.empty_stats(key) if found is None else found[1]
    history = services(request).store.history(target, key)
    # A target never read (unreachable from the start) has no counts: unknown ("—"), not 0.
    known = found is not None or state.up
    tabs = [Tab(s, _tab_count(stats, s) if known else None) for s in backend.states]
    flow = state.snapshot.flow if state.snapshot else None
    drain = reports.drain_report(stats, history, flow, time.time())
    return {
        "target": state,
        "queue": stats,
        "tabs": tabs,
        "history": _history_series(history, stats),
        "drain": drain,
        # When the counts were read: a bulk control sends it, and acts on nothing that came later.
        "seen_at": state.snapshot.collected_at if state.snapshot else None,
    }


def _tab_count(stats: QueueStats, state: str) -> int | None:
    if state in stats.counts:
        return stats.counts[state]
    return stats.results.get(state) if stats.results is not None else None


def _history_series(history: list[tuple[float, Any]], stats: QueueStats) -> dict[str, Any]:
    states = QUEUE_STATES[stats.framework]
    return {
        "labels": [STATE_LABELS[s] for s in states],
        "tones": [STATE_STYLES[s].tone for s in states],
        "data": [[round(t, 1) for t, _ in history]] + [[c.get(s, 0) for _, c in history] for s in states],
    }


def control_actions(request: Request, target: str, framework: str, state: str) -> list[tuple[str, str]]:
    """(action, label) of the controls shown for jobs in `state`; none in read-only mode."""
    collector = reports.target_collector(request, target)
    backend = collector.backend(framework) if collector is not None else None
    if services(request).settings.read_only or backend is None:
        return []
    return [(a, action_label(state, a)) for a in backend.actions(state)]


async def _jobs_context(request: Request, context: dict[str, Any], mode: str = "page") -> dict[str, Any]:
    stats: QueueStats = context["queue"]
    state = request.query_params.get("state") or "ready"
    target = context["target"].name
    page = await reports.list_jobs(request, target, stats.framework.value, stats.key, state, mode)
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
    """The job list of a queue page: re-read from Redis after a control ended; with `?live=1` (its
    poll, static/app.js) the read shared by every viewer for a poll interval."""
    live = request.query_params.get("live") == "1"
    context = await _jobs_context(request, _queue_context(request), "live" if live else "fresh")
    # `live`: the list leaves #tab-bulk as it is; the summary's poll keeps it (partials/tab_bulk.html).
    return render(request, "partials/job_table.html", {**context, "live": live})


async def queue_fragment(request: Request) -> Response:
    context = _queue_context(request)  # raises 404 here, before the cache, for unknown queues
    tab = request.query_params.get("state") or "ready"
    stats: QueueStats = context["queue"]
    bulk = {
        "tab": tab,
        "tab_count": next((t.count for t in context["tabs"] if t.state == tab), None),
        # The same for every viewer: read-only is the server's setting, not the user's.
        "actions": control_actions(request, context["target"].name, stats.framework.value, tab),
        "oob_bulk": True,
    }
    return await _live(request, "partials/queue_summary.html", lambda: {**context, **bulk})


async def job_page(request: Request) -> Response:
    target, framework, key, job_id = (
        request.path_params[k] for k in ("target", "framework", "queue", "job_id")
    )
    report = await reports.job_report(request, target, framework, key, job_id)
    if report is None:
        moved = await _moved(request, target, framework, key, job_id)
        context = {"target_name": target, "framework": framework, "queue_key": key, "job_id": job_id}
        found = {"moved": moved, "moves_read": MOVES_READ}
        return render(request, "pages/job_gone.html", {**context, **found}, status=404)
    actions = control_actions(request, target, framework, report.detail.state)
    context = {"job": report.detail, "target_name": target, "actions": actions, "resend": report.resend}
    return render(request, "pages/job.html", context)


#: Newest audit entries of a target searched for where a gone job went (~16 kB each at most).
MOVES_READ = 200


async def _moved(request: Request, target: str, framework: str, key: str, job_id: str) -> audit.Move | None:
    """Where a job that is gone went, if a control gave it a new id (a requeued Dramatiq message):
    looked up in the newest MOVES_READ audit entries, read once per poll interval for every viewer,
    and again as soon as a control of this process ends. None when Redis cannot tell (the page
    still says the job is gone)."""
    collector = reports.target_collector(request, target)
    if collector is None:
        return None
    ended = services(request).operations.ended
    try:
        entries = await services(request).audit_reads.get(
            (target, ended), lambda: audit.recent(collector.redis, MOVES_READ)
        )
    except (RedisError, OSError):
        return None
    return audit.find_move(entries, framework, key, job_id)
