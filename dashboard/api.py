"""The JSON API under /api/v1: every page's data, described by /api/v1/openapi.json."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dashboard import views
from dashboard.store import SnapshotStore, TargetState


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
    body = json.dumps(to_jsonable(data), ensure_ascii=False, allow_nan=False, default=repr)
    return Response(
        body, status_code=status, media_type="application/json", headers={"Cache-Control": "no-store"}
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


async def queues(request: Request) -> Response:
    store: SnapshotStore = request.app.state.store
    return respond(
        {
            "targets": [_target(s) for s in store.targets()],
            "queues": [{"target": s.name, "up": s.up, **to_jsonable(q)} for s, q in store.queues()],
        }
    )


async def jobs(request: Request) -> Response:
    p = request.path_params
    state = request.query_params.get("state") or "ready"
    page = await views.list_jobs(request, p["target"], p["framework"], p["queue"], state)
    return respond(page)


async def job(request: Request) -> Response:
    p = request.path_params
    key, job_id = views.split_job_path(p["rest"])
    detail = await views.load_job(request, p["target"], p["framework"], key, job_id)
    if detail is None:
        raise HTTPException(404, f"No job {job_id!r} in {key!r}: it finished, was deleted or never existed.")
    snippet = views.resend(request, p["target"], detail)
    return respond({**to_jsonable(detail), "resend_code": snippet.code, "resend_notes": snippet.notes})


async def workers(request: Request) -> Response:
    store: SnapshotStore = request.app.state.store
    out = []
    for state in store.targets():
        for w in state.snapshot.workers if state.snapshot else ():
            out.append({"target": state.name, **to_jsonable(w)})
    return respond({"workers": out})


async def failures(request: Request) -> Response:
    """Failure groups, what expires soon, orphaned and stuck work, and the per-queue counts."""
    context = views.failures_context(request)
    store: SnapshotStore = request.app.state.store
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
            "groups": [{"target": r.target, **to_jsonable(r.group)} for r in context["groups"]],
            "retention": {
                "failures": context["total"],
                "not_grouped_yet": context["missing"],
                "expiring_within_hour": context["expiring_hour"],
                "expiring_within_day": context["expiring_day"],
                "next_expiry": context["next_expiry"],
            },
            "orphaned": [
                {
                    "target": r.target,
                    "queue": r.queue.key,
                    "messages": r.queue.orphaned,
                    "workers": [w.worker_id for w in r.workers],
                }
                for r in context["orphans"]
            ],
            "stuck": [{"target": t, **to_jsonable(j)} for t, j in context["stuck"]],
        }
    )


def _post(summary: str, params: list[str], body: bool) -> dict[str, Any]:
    parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in params]
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": {"description": "The operation ended: counts done, skipped, changed, per-job outcomes"},
            "202": {"description": "Still running: progress so far; poll the Location"},
            "400": {"description": "The action does not apply to jobs in that state"},
            "401": {"description": "Auth is on and no valid credentials were sent"},
            "403": {"description": "Read-only mode, or a cross-site request"},
        },
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["state"],
                        "properties": {
                            "state": {"type": "string"},
                            "ids": {"type": "array", "items": {"type": "string"}},
                            "new_id": {"type": "boolean"},
                        },
                    }
                }
            },
        }
    return {"post": op}


def _op(summary: str, params: list[str], query: tuple[str, ...] = ()) -> dict[str, Any]:
    parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in params]
    parameters += [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in query]
    return {
        "get": {"summary": summary, "parameters": parameters, "responses": {"200": {"description": "JSON"}}}
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Callboard API", "version": "1"},
    "paths": {
        "/api/v1/queues": _op("Every queue of every target with counts by state, and target health", []),
        "/api/v1/queues/{target}/{framework}/{queue}/jobs": _op(
            "A page of jobs in one state (ready, in_flight, delayed, dead)",
            ["target", "framework", "queue"],
            ("state", "cursor", "limit"),
        ),
        "/api/v1/jobs/{target}/{framework}/{queue}/{job_id}": _op(
            "Everything stored about one job, and `resend_code`: Python that re-sends it by hand",
            ["target", "framework", "queue", "job_id"],
        ),
        "/api/v1/workers": _op("Workers of every target", []),
        "/api/v1/failures": _op(
            "Failure groups (by cause), retention, orphaned and stuck work, and queues with dead jobs",
            [],
            ("framework",),
        ),
        **{
            f"/api/v1/failures/{{target}}/{{framework}}/{{group}}/{action}": _post(
                f"{action} every job of a failure group (one operation per queue it spans)",
                ["target", "framework", "group"],
                body=False,
            )
            for action in ("retry", "delete")
        },
        "/api/v1/audit": _op("The newest controls run, from every target's audit log", []),
        "/api/v1/operations/{op_id}": _op("Progress and outcome of a control", ["op_id"]),
        "/api/v1/search": _op(
            "Start a search of stored jobs (or join the identical one running); its id and progress. "
            "`in`: any, id, name, args or error; scope: every queue, or narrowed by target, framework, queue",
            [],
            ("q", "in", "target", "framework", "queue"),
        ),
        "/api/v1/searches/{search_id}": _op(
            "A search's progress (scanned, total, matches) and its first 1,000 matches", ["search_id"]
        ),
        "/api/v1/searches/{search_id}/stop": {
            "post": {
                "summary": "Stop a search (allowed in read-only mode: it changes no job)",
                "parameters": [
                    {"name": "search_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "The search's state"},
                    "403": {"description": "A cross-site request"},
                    "404": {"description": "No such search"},
                },
            }
        },
        **{
            f"/api/v1/queues/{{target}}/{{framework}}/{{queue}}/{action}": _post(
                f"{action} the jobs of `ids` in `state`, or every job in `state` when `ids` is absent",
                ["target", "framework", "queue"],
                body=True,
            )
            for action in ("retry", "delete", "abort", "recover")
        },
        **{
            f"/api/v1/jobs/{{target}}/{{framework}}/{{queue}}/{{job_id}}/{action}": _post(
                f"{action} one job (its state is looked up when not given)",
                ["target", "framework", "queue", "job_id"],
                body=False,
            )
            for action in ("retry", "delete", "abort")
        },
    },
}


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)
