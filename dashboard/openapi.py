"""The OpenAPI document of /api/v1, generated from the routes and the types they answer with.

Each API endpoint says what it is with `@documented(Doc(...))` next to its code; `document()` walks
the app's routes (plain routes and the segment routes' shapes, one path per literal last segment),
takes each documented endpoint's method, path parameters and Doc, and turns the dataclasses it
answers with into JSON schemas (`schema_of`). So a new route, parameter or field shows in the
document without a second copy to keep in step; tests/hostile/test_schemathesis.py checks every
answer against it.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route

from callboard.collectors import backends, depth
from callboard.dashboard import reports
from callboard.dashboard.routing import SegmentRoute

F = TypeVar("F", bound=Callable[..., Any])

DESCRIPTION = (
    "Each path parameter is exactly one path segment: percent-encode its UTF-8 bytes (a key that is "
    "not UTF-8: its raw bytes), everything outside A-Za-z0-9-._~:@ included, so `report/2024/07` is "
    "`report%2F2024%2F07`. A name that is empty, `.` or `..` (after any leading tildes) takes one more "
    'leading `~`: `..` is `~..`. Errors are JSON {"error": ...}.'
)
#: Every error answer of the API is this object, with a message that says what to change.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "What went wrong, in words"}},
}
READ_ERRORS = {
    "400": "A parameter is invalid: not an integer, out of range, or an unknown state, framework or range",
    "401": "Auth is on and no valid credentials were sent",
    "404": "No such target, framework, queue (neither configured nor discovered), job, or path",
    "405": "Wrong method for this path; the `Allow` header lists the right ones",
}
WRITE_ERRORS = {
    **READ_ERRORS,
    "400": "Bad body or parameters: not valid JSON (or nested too deep), no `state`, bad `ids`, "
    "or the action does not apply to jobs in that state",
    "403": "Read-only mode, a cross-site request, or the Redis user's ACL refused the write",
    "413": "The body is over 1 MiB (10,000 ids fit): act on the whole state instead",
    "415": "The body is neither JSON nor a urlencoded form",
}
REDIS_ERROR = {"503": "Redis is unreachable or failed; try again once it is back"}
QUERY: dict[str, dict[str, Any]] = {
    "cursor": {"type": "integer", "minimum": 0, "maximum": reports.MAX_OFFSET},
    "limit": {"type": "integer", "minimum": 1, "maximum": reports.MAX_LIMIT},
    "minutes": {"type": "integer", "minimum": 1, "maximum": reports.FLOW_WINDOW},
    "framework": {"type": "string", "enum": list(backends.NAMES)},
    "range": {"type": "string", "enum": list(depth.TIERS)},
}
#: What the operator saw, sent with a control on a whole state or a failure group so that it acts on
#: no more than that; without them it acts on the state (or group) as it is when the run starts.
BOUND: dict[str, Any] = {
    "count": {
        "type": "integer",
        "minimum": 0,
        "description": "Act on at most this many jobs: the count the operator saw and confirmed. "
        "Only without `ids`",
    },
    "before": {
        "type": "number",
        "description": "Unix time in seconds: act only on jobs that reached the state at or before it "
        "(the time of the page's snapshot, or a group's newest failure): Dramatiq dead letters by "
        "their death time, Arq ready jobs by their due time, failed and succeeded ones by their "
        "finish time, failure groups by failure time. States without a time (Dramatiq ready and "
        "delayed, Arq deferred and in progress) are bound by `count` alone, taken from the head. "
        "Only without `ids`",
    },
}
CONTROL_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "state": {"type": "string"},
        "ids": {"type": "array", "items": {"type": "string"}, "maxItems": 10_000},
        "new_id": {"type": "boolean"},
    },
}
QUEUE_BODY: dict[str, Any] = {
    **CONTROL_BODY,
    "properties": {**CONTROL_BODY["properties"], **BOUND},
    "required": ["state"],
}
GROUP_BODY: dict[str, Any] = {"type": "object", "properties": BOUND}


@dataclass(frozen=True, slots=True)
class Doc:
    """What an endpoint is, for the document; `{action}` in the summary names a path's last segment."""

    summary: str
    query: tuple[str, ...] = ()
    #: Reads Redis on demand, so it may answer 503.
    redis: bool = False
    #: The 200 answer: a dataclass (its schema is generated), or a function of the components that
    #: makes the schema (for answers that wrap dataclasses); None: any JSON.
    response: type | Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: What the 200 answer is, in words.
    ok: str = "JSON"
    #: A control (POST): None for a GET; True when the body's `state` is required, False when optional.
    body: bool | None = None
    #: A failure group's control: its body holds the bound only (`count`, `before`).
    group: bool = False
    #: Answers besides the usual ones of a read or a control, by status (replacing one of the same).
    errors: Mapping[str, str] = field(default_factory=dict)


DOCS: dict[Callable[..., Any], Doc] = {}


def documented(doc: Doc) -> Callable[[F], F]:
    def mark(endpoint: F) -> F:
        DOCS[endpoint] = doc
        return endpoint

    return mark


# -- schemas of the types ------------------------------------------------------------------------------

#: A float that is not finite is sent as its repr (JSON has no NaN), so a number field may hold one.
NUMBER: dict[str, Any] = {"anyOf": [{"type": "number"}, {"type": "string", "enum": ["nan", "inf", "-inf"]}]}


def schema_of(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of what `api.to_jsonable` makes of a value of type `tp`. Dataclasses become
    components (referenced by name); fields marked json=False are left out, as the API leaves them."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return {}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [schema_of(a, components) for a in args]}
    if tp is type(None):
        return {"type": "null"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"type": "string", "enum": [m.value for m in tp]}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return NUMBER
    if tp is str:
        return {"type": "string"}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _component(tp, components)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_of(args[0], components)}
        items = [schema_of(a, components) for a in args]
        return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if origin in (list, Sequence, typing.Sequence) or tp in (list, tuple):
        return {"type": "array", "items": schema_of(args[0], components) if args else {}}
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1], components) if args else {}}
    raise TypeError(f"no JSON schema for {tp!r}")


def _component(cls: type, components: dict[str, Any]) -> dict[str, Any]:
    name = cls.__name__
    if name not in components:
        components[name] = {}  # a placeholder first: a type may refer to itself
        hints = typing.get_type_hints(cls)
        shown = [f for f in dataclasses.fields(cls) if f.metadata.get("json", True)]
        components[name] = {
            "type": "object",
            "properties": {f.name: schema_of(hints[f.name], components) for f in shown},
            "required": [f.name for f in shown],
        }
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        if doc and not doc.startswith(f"{name}("):
            components[name]["description"] = " ".join(doc.split())
    return {"$ref": f"#/components/schemas/{name}"}


def listing(key: str, tp: type, **extra: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An answer `{key: [tp, ...]}`, each item with `extra` properties besides tp's (e.g. `target`)."""

    def schema(components: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": [key],
            "properties": {key: {"type": "array", "items": with_(tp, components, **extra)}},
        }

    return schema


def with_(tp: type, components: dict[str, Any], **extra: dict[str, Any]) -> dict[str, Any]:
    """`tp`'s schema with more properties, all required (what the API adds to a dataclass)."""
    more = {"type": "object", "required": list(extra), "properties": extra}
    return {"allOf": [schema_of(tp, components), more]}


STRING: dict[str, Any] = {"type": "string"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}


# -- the document ----------------------------------------------------------------------------------------


def document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for path, method, endpoint, action in _endpoints(routes):
        doc = DOCS.get(endpoint)
        if doc is None or not path.startswith("/api/v1/"):
            continue
        params = re.findall(r"{(\w+)}", path)
        paths.setdefault(path, {})[method.lower()] = _operation(doc, params, action, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Callboard API", "version": "1", "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": components},
    }


def _endpoints(routes: Sequence[BaseRoute]) -> list[tuple[str, str, Callable[..., Any], str]]:
    """(path, method, endpoint, literal last segment or "") of every route, HEAD left out."""
    out: list[tuple[str, str, Callable[..., Any], str]] = []
    for route in routes:
        if isinstance(route, Route):
            out += [(route.path, m, route.endpoint, "") for m in sorted(route.methods or ()) if m != "HEAD"]
        elif isinstance(route, SegmentRoute):
            for shape in route.shapes:
                base = route.prefix + "".join(f"/{{{p}}}" for p in shape.params)
                for last in shape.last or ("",):
                    out.append((f"{base}/{last}" if last else base, shape.method, shape.endpoint, last))
    return out


def _operation(doc: Doc, params: list[str], action: str, components: dict[str, Any]) -> dict[str, Any]:
    parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in params]
    parameters += [
        {"name": n, "in": "query", "required": False, "schema": QUERY.get(n, {"type": "string"})}
        for n in doc.query
    ]
    summary = doc.summary.replace("{action}", action)
    if doc.body is not None:
        # A queue's control (`state` required) may carry a bound; one job's may not.
        body_schema = GROUP_BODY if doc.group else QUEUE_BODY if doc.body else CONTROL_BODY
        responses: dict[str, Any] = {
            "200": {"description": "The operation ended: counts done, skipped, changed, per-job outcomes"},
            "202": {"description": "Still running: progress so far; poll the Location"},
            **_errors({**WRITE_ERRORS, **REDIS_ERROR, **doc.errors}),
        }
        return {
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
            "requestBody": {
                "required": doc.body,
                "content": {
                    "application/json": {"schema": body_schema},
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                },
            },
        }
    ok: dict[str, Any] = {"description": doc.ok}
    if doc.response is not None:
        response = doc.response
        schema = schema_of(response, components) if isinstance(response, type) else response(components)
        ok["content"] = {"application/json": {"schema": schema}}
    errors = {**READ_ERRORS, **(REDIS_ERROR if doc.redis else {}), **doc.errors}
    return {"summary": summary, "parameters": parameters, "responses": {"200": ok, **_errors(errors)}}


def _errors(descriptions: Mapping[str, str]) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {
        code: {"description": text, "content": {"application/json": {"schema": schema}}}
        for code, text in sorted(descriptions.items())
    }
