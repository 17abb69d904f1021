"""HTTP for controls: the POST routes of the JSON API (docs/contracts.md §2.4), which also answer htmx with
HTML, the progress of operations, and the audit log.

    POST /api/v1/jobs/{target}/{framework}/{queue}/{job_id}/{retry|delete|abort}
    POST /api/v1/queues/{target}/{framework}/{queue}/{retry|delete|abort}
         JSON {"state": "dead", "ids": [...]}; without "ids": every job in that state
         form (htmx) state=dead&scope=selection&ids=..&ids=..  or  state=dead&scope=all; form ids
         are path-segment encoded (dashboard.urls.segment), so an id that is not UTF-8 round-trips
    POST /api/v1/queues/{target}/dramatiq/{queue}/recover   {"state": "orphaned"}: put back what
         workers with a stale heartbeat hold, as Dramatiq's maintenance would
    POST /api/v1/failures/{target}/{framework}/{group}/{retry|delete}: every job of a failure group
         (one operation per queue the group spans)
    GET  /api/v1/operations/{id}   /fragments/operations/{id}   /api/v1/audit   /audit

A POST answers 200 with the counts when the operation ends within `WAIT` seconds, else 202 with
its progress and a Location to poll. Access (auth, read-only, cross-site) is checked before any of
this runs, by dashboard.access. A control acts only on a queue the target's collector knows
(configured or discovered): anything else is a 404 before the body is read, with no audit entry.
Bodies are read as a stream and refused with a 413 past `MAX_BODY` bytes (a declared
Content-Length past it is refused before reading anything).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any
from urllib.parse import parse_qsl

from redis.exceptions import RedisError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from callboard.collectors import audit, payloads
from callboard.collectors.model import Bound
from callboard.dashboard import reports, views
from callboard.dashboard.api import respond
from callboard.dashboard.openapi import Doc, documented
from callboard.dashboard.operations import (
    ControlError,
    ControlRequest,
    Operation,
    UnknownQueue,
    unknown_queue_message,
)
from callboard.dashboard.services import services
from callboard.dashboard.urls import unsegment

#: Seconds a POST waits for its operation before answering 202 with progress.
WAIT = 5.0
ACTIONS = ("retry", "delete", "abort", "recover")
JOB_ACTIONS = ("retry", "delete", "abort")
GROUP_ACTIONS = ("retry", "delete")
#: Bytes of a control's body at most: 10,000 ids of ~100 bytes each, with room to spare.
MAX_BODY = 1024 * 1024
#: Audit entries shown per target.
AUDIT_PAGE = 200
#: The HX-Trigger of an answer whose control ended: the job list and live parts reload
#: (`callboard:changed from:body`). Fired at the body, not at the button that sent it: a live
#: partial may have replaced that button while the control ran, and an event on a detached
#: element reaches nobody.
CHANGED = json.dumps({"callboard:changed": {"target": "body"}})


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _user(request: Request) -> tuple[str, str]:
    user = getattr(request.state, "user", "anonymous")
    client = request.client.host if request.client else ""
    return str(user), client


async def _read_body(request: Request) -> bytes:
    """The body, at most MAX_BODY bytes; a 413 as soon as it is known to be larger (by its declared
    Content-Length, before reading anything; else once the stream passes the limit)."""
    too_large = HTTPException(413, f"The body is over {MAX_BODY:,} bytes: act on the whole state instead.")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise HTTPException(400, "Bad Content-Length.")
        if int(declared) > MAX_BODY:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _body(request: Request) -> tuple[dict[str, Any], FormData | None]:
    """The JSON object, or the form (htmx) with its fields as a dict and the form for lists."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind == "application/json":
        try:
            data = json.loads(await _read_body(request) or b"{}")
        except RecursionError:
            # The C parser stops at the interpreter's recursion limit (~1,000 levels) and unwinds
            # cleanly; a 1 MiB body cannot cost more than that. Ours is an object of depth 2.
            raise HTTPException(400, "The body nests too deep to be a control's JSON object.") from None
        except ValueError:
            raise HTTPException(400, "The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise HTTPException(400, 'The body must be a JSON object like {"state": "dead", "ids": [...]}.')
        return data, None
    if kind in ("application/x-www-form-urlencoded", ""):
        # htmx posts urlencoded forms: parsed by the stdlib (Starlette's form parser needs an extra
        # package, python-multipart, for what we never receive). Ids are short; the body is capped.
        body = await _read_body(request)
        pairs: list[tuple[str, str | UploadFile]] = list(
            parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        )
        form = FormData(pairs)
        return {k: v for k, v in form.items() if isinstance(v, str)}, form
    raise HTTPException(415, "Send JSON or a form.")


def _ids(data: dict[str, Any], form: FormData | None) -> tuple[str, ...] | None:
    if form is not None:
        scope = data.get("scope")
        if scope == "all":
            return None
        if scope != "selection":
            raise HTTPException(400, "Form posts say scope=selection (with ids) or scope=all.")
        # The page writes each id as a path segment (any bytes survive a form that way).
        ids = tuple(unsegment(v) for v in form.getlist("ids") if isinstance(v, str) and v)
        if not ids:
            raise HTTPException(400, "No jobs selected.")
        return ids
    raw = data.get("ids")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(i, str) and i for i in raw):
        raise HTTPException(400, "`ids` must be a list of job ids (strings).")
    if not all(payloads.is_key(i) for i in raw):
        raise HTTPException(
            400, "`ids` holds a string no Redis key can hold (a lone surrogate like \\ud800)."
        )
    return tuple(raw)


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"))


#: Longest text accepted for a bound's number in a form (a count, or a Unix time with decimals).
_NUMBER_TEXT = 32


def _bound(data: dict[str, Any]) -> Bound | None:
    """`count` and `before` of a whole-state or group control: what the operator saw and confirmed
    (the page sends both; either may be left out; neither: act on the state as it is at the start).
    JSON sends numbers, a form their text; an empty form field is left out."""
    count, before = _number(data.get("count")), _number(data.get("before"))
    if count is None and before is None:
        return None
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise HTTPException(400, "`count` must be a whole number of jobs, 0 or more.")
    if before is not None and (
        isinstance(before, bool) or not isinstance(before, int | float) or not math.isfinite(before)
    ):
        raise HTTPException(400, "`before` must be a Unix time in seconds, like 1767225600.5.")
    return Bound(count, None if before is None else float(before))


def _number(value: Any) -> Any:
    """A bound's value as a number: a form's text parsed ("" is None), a JSON number as it is, and
    anything else (a bool, text that is no number) as itself, for the caller to refuse."""
    if isinstance(value, bool) or not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    if len(text) > _NUMBER_TEXT:
        return value
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return value


@documented(
    Doc("{action} the jobs of `ids` in `state`, or every job in `state` when `ids` is absent", body=True)
)
async def queue_action(request: Request) -> Response:
    p = request.path_params
    target, framework, key, action = p["target"], p["framework"], p["queue"], p["action"]
    reports.require_queue(request, target, framework, key)  # a 404 before reading the body
    data, form = await _body(request)
    state = data.get("state")
    if not isinstance(state, str) or not state:
        raise HTTPException(400, 'Say which state the jobs are in: {"state": "dead", ...}.')
    ids = _ids(data, form)
    bound = _bound(data)
    if bound is not None and ids is not None:
        raise HTTPException(
            400, "`count` and `before` bound a whole state; a selection is bound by its `ids`."
        )
    control = ControlRequest(
        target, framework, key, state, action, ids, _flag(data.get("new_id")), *_user(request), bound=bound
    )
    return await _start(request, control)


@documented(Doc("{action} one job (its state is looked up when not given)", body=False))
async def job_action(request: Request) -> Response:
    p = request.path_params
    target, framework, key, job_id, action = (
        p[k] for k in ("target", "framework", "queue", "job_id", "action")
    )
    reports.require_queue(request, target, framework, key)  # a queue that does not exist is not "finished"
    data, _ = await _body(request)
    state = data.get("state")
    if not isinstance(state, str) or not state:
        detail = await reports.load_job(request, target, framework, key, job_id)
        if detail is None:
            # Idempotent: a job that is gone needs nothing more; say so rather than fail.
            return _gone(request, job_id)
        state = detail.state
    control = ControlRequest(
        target, framework, key, state, action, (job_id,), _flag(data.get("new_id")), *_user(request)
    )
    return await _start(request, control)


def _gone(request: Request, job_id: str) -> Response:
    message = f"Job {job_id} is already gone: nothing to do."
    if _htmx(request):
        return views.render(request, "partials/operation.html", {"op": None, "message": message})
    return respond({"status": "finished", "done": 0, "skipped": 0, "changed": 1, "message": message})


async def _start(request: Request, control: ControlRequest) -> Response:
    try:
        op, joined = services(request).operations.start(control)
    except UnknownQueue as exc:
        raise HTTPException(404, str(exc)) from None
    except ControlError as exc:
        raise HTTPException(400, str(exc)) from None
    assert op.task is not None
    await asyncio.wait({op.task}, timeout=WAIT)
    return _operation_response(request, op, joined)


def _status(op: Operation) -> int:
    """202 while it runs, 200 when it ended, the failure's status (403, 503, 500) when it failed."""
    if op.status == "running":
        return 202
    return (op.error_status or 500) if op.status == "failed" else 200


def _operation_response(request: Request, op: Operation, joined: bool = False) -> Response:
    headers = {"Location": f"/api/v1/operations/{op.id}"}
    if _htmx(request):
        # A failed operation answers htmx with its status too; static/app.js swaps such answers
        # into the operation panel, so the reason is on screen.
        status = _status(op) if op.status == "failed" else 200
        context = {"op": op.view(), "joined": joined}
        response = views.render(request, "partials/operation.html", context, status)
        if op.status != "running":
            response.headers["HX-Trigger"] = CHANGED
        return response
    status = _status(op)
    response = respond({**op.view(), "joined": joined}, status)
    response.headers.update(headers)
    return response


@documented(Doc("Progress and outcome of a control"))
async def operation(request: Request) -> Response:
    op = services(request).operations.get(request.path_params["op_id"])
    if op is None:
        raise HTTPException(404, "No such operation (finished ones are kept for a while only).")
    return _operation_response(request, op)


async def operation_fragment(request: Request) -> Response:
    op = services(request).operations.get(request.path_params["op_id"])
    if op is None:
        raise HTTPException(404, "No such operation (finished ones are kept for a while only).")
    response = views.render(request, "partials/operation.html", {"op": op.view()})
    if op.status != "running":
        response.headers["HX-Trigger"] = CHANGED
    return response


@documented(
    Doc("{action} every job of a failure group (one operation per queue it spans)", body=False, group=True)
)
async def group_action(request: Request) -> Response:
    """Retry or delete every job of a failure group, as the index knows it now, or as the operator
    saw it (`count` and `before`: the group's count and newest failure time on the page).

    The ids come from the failure index (the groups on screen); each id still goes through the
    recipe's compare-and-set, so a job that changed meanwhile is reported, never acted on twice."""
    p = request.path_params
    target, framework, key, action = p["target"], p["framework"], p["group"], p["action"]
    collector = reports.target_collector(request, target)
    backend = collector.backend(framework) if collector is not None else None
    if collector is None or backend is None:
        raise HTTPException(404, f"No {framework} failures on target {target!r}.")
    data, _ = await _body(request)
    bound = _bound(data)
    members = backend.failures.members(key, bound)
    if not members:
        message = "This failure group is empty now: nothing to do."
        if _htmx(request):
            response = views.render(request, "partials/operation.html", {"op": None, "message": message})
            response.headers["HX-Trigger"] = CHANGED
            return response
        return respond({"group": key, "status": "finished", "operations": [], "message": message})
    state = backend.failed_state
    user, client = _user(request)
    started: list[tuple[Operation, bool]] = []
    unknown = [q for q in members if not backend.knows(q)]
    if unknown:  # checked for all first: start none rather than some
        raise HTTPException(404, unknown_queue_message(target, framework, unknown[0]))
    try:
        for queue, ids in members.items():
            control = ControlRequest(
                target,
                framework,
                queue,
                state,
                action,
                tuple(ids),
                False,
                user,
                client,
                group=key,
                bound=bound,
            )
            started.append(services(request).operations.start(control))
    except ControlError as exc:
        raise HTTPException(400, str(exc)) from None
    tasks = {op.task for op, _ in started if op.task is not None}
    await asyncio.wait(tasks, timeout=WAIT)
    running = any(op.status == "running" for op, _ in started)
    failed = max((_status(op) for op, _ in started if op.status == "failed"), default=None)
    if _htmx(request):
        shown = [(op.view(), joined) for op, joined in started]
        response = views.render(request, "partials/operations.html", {"ops": shown}, failed or 200)
        if not running:
            response.headers["HX-Trigger"] = CHANGED
        return response
    body = {
        "group": key,
        "status": "running" if running else "finished",
        "operations": [{**op.view(), "joined": joined} for op, joined in started],
    }
    return respond(body, failed or (202 if running else 200))


async def _audit_entries(request: Request) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The newest entries of every target's audit log, and the targets whose log could not be read
    (name -> the error's type)."""
    collectors = services(request).collectors
    entries: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for name, collector in collectors.items():
        try:
            for entry in await audit.recent(collector.redis, AUDIT_PAGE):
                entries.append(_clean(entry, name))
        except (RedisError, OSError) as exc:
            errors[name] = type(exc).__name__
    entries.sort(key=lambda e: -_when(e))
    return entries[:AUDIT_PAGE], errors


_AUDIT_TIMES = ("started_at", "finished_at", "seconds")
_AUDIT_COUNTS = ("expected", "requested", "visited", "done", "skipped", "changed", "arrived")


def _clean(entry: dict[str, Any], target: str) -> dict[str, Any]:
    """An audit entry as the page and API show it. The list is in Redis, where anyone who can write
    may have edited it: times and counts that are not numbers become None, ids become strings and
    every other field text, so one odd entry is shown as it is instead of failing the page."""
    out: dict[str, Any] = {k: v if isinstance(v, str) or v is None else str(v) for k, v in entry.items()}
    for name in _AUDIT_TIMES:
        value = entry.get(name)
        out[name] = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    for name in _AUDIT_COUNTS:
        value = entry.get(name)
        out[name] = value if isinstance(value, int) and not isinstance(value, bool) else None
    ids = entry.get("ids")
    out["ids"] = [str(i) for i in ids] if isinstance(ids, list) else None
    changed_ids = entry.get("changed_ids")
    out["changed_ids"] = [str(i) for i in changed_ids] if isinstance(changed_ids, list) else []
    moved = entry.get("moved")
    out["moved"] = [
        [str(pair[0]), str(pair[1])]
        for pair in (moved if isinstance(moved, list) else [])
        if isinstance(pair, list) and len(pair) == 2
    ]
    bound = entry.get("bound")
    if isinstance(bound, dict):
        count, before = bound.get("count"), bound.get("before")
        out["bound"] = {
            "count": count if isinstance(count, int) and not isinstance(count, bool) else None,
            "before": float(before)
            if isinstance(before, int | float) and not isinstance(before, bool) and math.isfinite(before)
            else None,
        }
    else:
        out["bound"] = None
    out["target"] = out.get("target") or target
    return out


def _when(entry: dict[str, Any]) -> float:
    """When an entry ended (or began), for ordering (entries are clean: numbers or None)."""
    return float(entry.get("finished_at") or entry.get("started_at") or 0.0)


@documented(Doc("The newest controls run, from every target's audit log", redis=True))
async def audit_api(request: Request) -> Response:
    entries, errors = await _audit_entries(request)
    unreachable = [f"{name}: {error}" for name, error in errors.items()]
    return respond({"entries": entries, "unreachable": unreachable})


async def audit_page(request: Request) -> Response:
    entries, errors = await _audit_entries(request)
    running = [op.view() for op in services(request).operations.recent() if op.status == "running"]
    store = services(request).store
    # A log that could not be read, with what the poller knows of its target (down since when).
    unread = [(name, error, store.get(name)) for name, error in errors.items()]
    every = len(errors) == len(store.targets())
    context = {"entries": entries, "errors": unread, "running": running, "all_unread": every}
    return views.render(request, "pages/audit.html", context)
