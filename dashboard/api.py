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

from callboard.dashboard import reports
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


async def queues(request: Request) -> Response:
    store = services(request).store
    return respond(
        {
            "targets": [_target(s) for s in store.targets()],
            "queues": [{"target": s.name, "up": s.up, **to_jsonable(q)} for s, q in store.queues()],
        }
    )


async def jobs(request: Request) -> Response:
    p = request.path_params
    state = request.query_params.get("state") or "ready"
    page = await reports.list_jobs(request, p["target"], p["framework"], p["queue"], state)
    return respond(page)


async def job(request: Request) -> Response:
    p = request.path_params
    key, job_id = p["queue"], p["job_id"]
    report = await reports.job_report(request, p["target"], p["framework"], key, job_id)
    if report is None:
        raise HTTPException(404, f"No job {job_id!r} in {key!r}: it finished, was deleted or never existed.")
    snippet = report.resend
    return respond({**to_jsonable(report.detail), "resend_code": snippet.code, "resend_notes": snippet.notes})


async def workers(request: Request) -> Response:
    store = services(request).store
    out = []
    for state in store.targets():
        for w in state.snapshot.workers if state.snapshot else ():
            out.append({"target": state.name, **to_jsonable(w)})
    return respond({"workers": out})


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


#: Every error answer of the API is this object, with a message that says what to change.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "What went wrong, in words"}},
}
_READ_ERRORS = {
    "400": "A parameter is invalid: not an integer, out of range, or an unknown state or framework",
    "401": "Auth is on and no valid credentials were sent",
    "404": "No such target, framework, queue (neither configured nor discovered), job, or path",
    "405": "Wrong method for this path; the `Allow` header lists the right ones",
}
_WRITE_ERRORS = {
    **_READ_ERRORS,
    "400": "Bad body or parameters: not valid JSON (or nested too deep), no `state`, bad `ids`, "
    "or the action does not apply to jobs in that state",
    "403": "Read-only mode, a cross-site request, or the Redis user's ACL refused the write",
    "413": "The body is over 1 MiB (10,000 ids fit): act on the whole state instead",
    "415": "The body is neither JSON nor a urlencoded form",
}
_REDIS_ERROR = {"503": "Redis is unreachable or failed; try again once it is back"}


def _errors(descriptions: dict[str, str]) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {
        code: {"description": text, "content": {"application/json": {"schema": schema}}}
        for code, text in sorted(descriptions.items())
    }


def _path_params(params: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in params]


_CONTROL_BODY = {
    "type": "object",
    "properties": {
        "state": {"type": "string"},
        "ids": {"type": "array", "items": {"type": "string"}, "maxItems": 10_000},
        "new_id": {"type": "boolean"},
    },
}


def _post(summary: str, params: list[str], body: bool, extra: dict[str, str] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": _path_params(params),
        "responses": {
            "200": {"description": "The operation ended: counts done, skipped, changed, per-job outcomes"},
            "202": {"description": "Still running: progress so far; poll the Location"},
            **_errors({**_WRITE_ERRORS, **_REDIS_ERROR, **(extra or {})}),
        },
    }
    schema = {**_CONTROL_BODY, "required": ["state"]} if body else _CONTROL_BODY
    op["requestBody"] = {
        "required": body,
        "content": {
            "application/json": {"schema": schema},
            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
        },
    }
    return {"post": op}


def _op(
    summary: str,
    params: list[str],
    query: tuple[str, ...] = (),
    redis: bool = False,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    parameters = _path_params(params)
    parameters += [
        {"name": n, "in": "query", "required": False, "schema": _QUERY.get(n, {"type": "string"})}
        for n in query
    ]
    errors = {**_READ_ERRORS, **(_REDIS_ERROR if redis else {}), **(extra or {})}
    responses = {"200": {"description": "JSON"}, **_errors(errors)}
    return {"get": {"summary": summary, "parameters": parameters, "responses": responses}}


_QUERY: dict[str, dict[str, Any]] = {
    "cursor": {"type": "integer", "minimum": 0, "maximum": reports.MAX_OFFSET},
    "limit": {"type": "integer", "minimum": 1, "maximum": reports.MAX_LIMIT},
    "framework": {"type": "string", "enum": ["dramatiq", "arq"]},
}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Callboard API",
        "version": "1",
        "description": (
            "Each path parameter is exactly one path segment: percent-encode its UTF-8 bytes (a key "
            "that is not UTF-8: its raw bytes), everything outside A-Za-z0-9-._~:@ included, so "
            "`report/2024/07` is `report%2F2024%2F07`. A name that is empty, `.` or `..` (after any "
            'leading tildes) takes one more leading `~`: `..` is `~..`. Errors are JSON {"error": ...}.'
        ),
    },
    "paths": {
        "/api/v1/queues": _op("Every queue of every target with counts by state, and target health", []),
        "/api/v1/queues/{target}/{framework}/{queue}/jobs": _op(
            "A page of jobs in one state (ready, in_flight, delayed, dead)",
            ["target", "framework", "queue"],
            ("state", "cursor", "limit"),
            redis=True,
        ),
        "/api/v1/jobs/{target}/{framework}/{queue}/{job_id}": _op(
            "Everything stored about one job, and `resend_code`: Python that re-sends it by hand",
            ["target", "framework", "queue", "job_id"],
            redis=True,
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
        "/api/v1/audit": _op("The newest controls run, from every target's audit log", [], redis=True),
        "/api/v1/operations/{op_id}": _op("Progress and outcome of a control", ["op_id"]),
        "/api/v1/search": _op(
            "Start a search of stored jobs (or join the identical one running); its id and progress. "
            "`in`: any, id, name, args or error; scope: every queue, or narrowed by target, framework, queue",
            [],
            ("q", "in", "target", "framework", "queue"),
            extra={"429": "Too many different searches are running: stop one, or wait"},
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
                    **_errors(
                        {
                            **_READ_ERRORS,
                            "400": "A bad request (the search id is a path segment; nothing else is read)",
                            "403": "A cross-site request",
                            "404": "No such search (finished ones are kept for a while only)",
                        }
                    ),
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
    "components": {"schemas": {"Error": ERROR_SCHEMA}},
}


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)
