"""The JSON API under /api/v1: every page's data, described by /api/v1/openapi.json."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callboard.collectors.model import FailureGroup, JobDetail, JobPage, QueueStats, StuckJob, WorkerStats
from callboard.dashboard import reports, taskreport
from callboard.dashboard.openapi import STRING, Doc, document, documented, listing, with_
from callboard.dashboard.services import services
from callboard.dashboard.store import TargetState


def to_jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # NaN/Infinity are not JSON; Dramatiq's encoder writes them anyway
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Fields marked json=False hold Python objects for the server's own use (JobDetail.call).
        fields = (f for f in dataclasses.fields(value) if f.metadata.get("json", True))
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def respond(data: Any, status: int = 200) -> Response:
    jsonable = to_jsonable(data)
    body = json.dumps(jsonable, ensure_ascii=False, allow_nan=False, default=repr)
    try:
        encoded = body.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a non-UTF-8 key or file name, a JSON "\ud800"): as \u escapes the body
        # is ASCII and stays exact, so a client can send the id back and reach the same key.
        encoded = json.dumps(jsonable, ensure_ascii=True, allow_nan=False, default=repr).encode()
    return Response(
        encoded, status_code=status, media_type="application/json", headers={"Cache-Control": "no-store"}
    )


def _target(state: TargetState) -> dict[str, Any]:
    snap = state.snapshot
    return {
        "name": state.name,
        "url": state.url,
        "up": state.up,
        "error": state.error,
        "errors_total": state.errors_total,
        "down_since": state.down_since,
        "collected_at": snap.collected_at if snap else None,
        "collect_duration_seconds": state.last_duration,
        "round_trips": snap.round_trips if snap else None,
        "server": snap.server if snap else None,
        "discovery": snap.discovery if snap else None,
    }


@documented(
    Doc(
        "Every queue of every target with counts by state, and target health",
        response=lambda c: {
            "type": "object",
            "required": ["targets", "queues"],
            "properties": {
                "targets": {"type": "array", "items": {"type": "object"}},
                "queues": {
                    "type": "array",
                    "items": with_(QueueStats, c, target=STRING, up={"type": "boolean"}),
                },
            },
        },
    )
)
async def queues(request: Request) -> Response:
    store = services(request).store
    return respond(
        {
            "targets": [_target(s) for s in store.targets()],
            "queues": [{"target": s.name, "up": s.up, **to_jsonable(q)} for s, q in store.queues()],
        }
    )


@documented(
    Doc(
        "A page of jobs in one state (ready, in_flight, delayed, dead)",
        ("state", "cursor", "limit"),
        redis=True,
        response=JobPage,
    )
)
async def jobs(request: Request) -> Response:
    p = request.path_params
    state = request.query_params.get("state") or "ready"
    page = await reports.list_jobs(request, p["target"], p["framework"], p["queue"], state)
    return respond(page)


@documented(
    Doc(
        "One queue's counts by state over a chart range: stored in its Redis (by minute for `1h`, "
        "5 minutes for `24h`, hour for `7d`), then this process's memory at poll resolution",
        ("range",),
        redis=True,
        response=reports.DepthHistory,
    )
)
async def depth(request: Request) -> Response:
    p = request.path_params
    return respond(await reports.depth_report(request, p["target"], p["framework"], p["queue"]))


@documented(
    Doc(
        "Everything stored about one job, and `resend_code`: Python that re-sends it by hand",
        redis=True,
        response=lambda c: with_(
            JobDetail,
            c,
            resend_code={"type": ["string", "null"]},
            resend_notes={"type": "array", "items": STRING},
        ),
    )
)
async def job(request: Request) -> Response:
    p = request.path_params
    key, job_id = p["queue"], p["job_id"]
    report = await reports.job_report(request, p["target"], p["framework"], key, job_id)
    if report is None:
        raise HTTPException(404, f"No job {job_id!r} in {key!r}: it finished, was deleted or never existed.")
    snippet = report.resend
    return respond({**to_jsonable(report.detail), "resend_code": snippet.code, "resend_notes": snippet.notes})


@documented(Doc("Workers of every target", response=listing("workers", WorkerStats, target=STRING)))
async def workers(request: Request) -> Response:
    store = services(request).store
    out = []
    for state in store.targets():
        for w in state.snapshot.workers if state.snapshot else ():
            out.append({"target": state.name, **to_jsonable(w)})
    return respond({"workers": out})


@documented(
    Doc(
        "Flow per actor and queue, outcomes since recording began and over the last `minutes`, run- "
        "and wait-time quantiles, and per-minute counts: from the worker companions, or, for queues "
        "without one, estimated from what the broker keeps (each row's `source`; `counted` names the "
        "outcomes it counts)",
        ("minutes",),
        response=reports.FlowReport,
    )
)
async def flow(request: Request) -> Response:
    return respond(reports.flow_report(request))


@documented(
    Doc(
        "Jobs succeeded and failed over a range (`1h` by minute, `24h` and `7d` by hour), summed over "
        "every target and task: totals, failure rate, p95 run time, and where the figures come from",
        ("range",),
        response=reports.FlowOverview,
    )
)
async def flow_overview(request: Request) -> Response:
    span = reports.chart_range(request)
    return respond(reports.flow_overview(services(request).store.targets(), span, time.time()))


@documented(
    Doc(
        "One task (actor or function on a queue) over `range`: 1h per minute (from memory), 24h and 7d per "
        "hour (read from Redis, shared for 30 s): totals, run-time quantiles, per-step outcomes and run-time "
        "buckets, and the steps where the failure rate or p95 run time moved sharply. A history Redis could "
        "not give is said in `error`, and the last hour shown instead",
        ("range",),
        response=taskreport.TaskReport,
        errors={"404": "No such target, or no task with this id (12 hex digits) in its flow"},
    )
)
async def task(request: Request) -> Response:
    p = request.path_params
    return respond(await taskreport.task_report(request, p["target"], p["series_id"]))


@documented(
    Doc(
        "Failure groups (by cause), retention, orphaned and stuck work, and queues with dead jobs",
        ("framework",),
        response=lambda c: {
            "type": "object",
            "required": ["failures", "groups", "retention", "orphaned", "stuck"],
            "properties": {
                "groups": {"type": "array", "items": with_(FailureGroup, c, target=STRING)},
                "stuck": {"type": "array", "items": with_(StuckJob, c, target=STRING)},
            },
        },
    )
)
async def failures(request: Request) -> Response:
    """Failure groups, what expires soon, orphaned and stuck work, and the per-queue counts."""
    report = reports.failures_report(request)
    store = services(request).store
    out = [
        {
            "target": s.name,
            "framework": q.framework.value,
            "queue": q.name,
            "key": q.key,
            "dead": q.counts.get("dead", 0),
            "oldest_dead_age": q.oldest_dead_age,
        }
        for s, q in store.queues()
        if q.counts.get("dead")
    ]
    return respond(
        {
            "failures": out,
            "groups": [{"target": r.target, **to_jsonable(r.group)} for r in report.groups],
            "retention": {
                "failures": report.total,
                "not_grouped_yet": report.missing,
                "expiring_within_hour": report.expiring_hour,
                "expiring_within_day": report.expiring_day,
                "next_expiry": report.next_expiry,
            },
            "orphaned": [
                {
                    "target": r.target,
                    "queue": r.queue.key,
                    "messages": r.queue.orphaned,
                    "workers": [w.worker_id for w in r.workers],
                }
                for r in report.orphans
            ],
            "stuck": [{"target": t, **to_jsonable(j)} for t, j in report.stuck],
        }
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(document(request.app.routes))
