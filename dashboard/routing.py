"""Routes whose names are path segments: queue and job pages, their fragments, the job APIs, controls.

Starlette matches the decoded path, where `%2F` is already `/`: `/jobs/t/arq/q/report%2F2024%2F07`
and `/jobs/t/arq/q/report/2024/07` look the same, and `{name:path}` + `rpartition("/")` picks the
wrong split (issue 11: a control on Arq's `report/2024/07` acted on a job `07`). So each prefix
gets one `SegmentRoute` that takes every path below it and resolves the names from the raw path
(`dashboard.urls.path_segments`): one segment, one name, exactly. A request whose segment count or
literal fits no shape is a 404; one that fits a shape of another method is a 405 with `Allow`.

The endpoint reads the names from `request.path_params` as with any Starlette route
(`target`, `framework`, `queue`, `job_id`, `group`, `action`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette._utils import get_route_path
from starlette.datastructures import URLPath
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, request_response
from starlette.types import Receive, Scope, Send

from callboard.dashboard.urls import path_segments

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Shape:
    """One route below a prefix: its named segments, then optionally a literal last segment."""

    #: Names of the variable segments, in order.
    params: tuple[str, ...]
    method: str
    endpoint: Endpoint
    #: Allowed values of a last segment (an action, or `jobs`); empty: the shape has none. Its
    #: value is `path_params["action"]`.
    last: tuple[str, ...] = ()

    @property
    def length(self) -> int:
        return len(self.params) + (1 if self.last else 0)

    def fits(self, segments: Sequence[str]) -> bool:
        return len(segments) == self.length and (not self.last or segments[-1] in self.last)

    def allows(self, method: str) -> bool:
        return method == self.method or (self.method == "GET" and method == "HEAD")

    def path_params(self, segments: Sequence[str]) -> dict[str, Any]:
        params: dict[str, Any] = dict(zip(self.params, segments, strict=False))
        if self.last:
            params["action"] = segments[-1]
        return params


class SegmentRoute(BaseRoute):
    """Every path below `prefix`, dispatched on its raw segments to one of `shapes`."""

    def __init__(self, prefix: str, shapes: Sequence[Shape], usage: str) -> None:
        assert prefix.startswith("/") and not prefix.endswith("/")
        self.prefix = prefix
        self.shapes = tuple(shapes)
        #: What the URLs look like, for the 404 message.
        self.usage = usage
        self._depth = prefix.count("/")
        self.app = request_response(self._dispatch)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and get_route_path(scope).startswith(self.prefix + "/"):
            return Match.FULL, {"endpoint": self._dispatch}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)  # URLs are built by dashboard.urls

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def _dispatch(self, request: Request) -> Response:
        segments = path_segments(request.scope, self._depth)
        fitting = [s for s in self.shapes if s.fits(segments)]
        if not fitting:
            raise HTTPException(404, f"No such page: expected {self.usage}.")
        method = request.method
        shape = next((s for s in fitting if s.allows(method)), None)
        if shape is None:
            allowed = sorted(
                {m for s in fitting for m in ((s.method, "HEAD") if s.method == "GET" else (s.method,))}
            )
            raise HTTPException(
                405, f"Use {' or '.join(allowed)} here.", headers={"Allow": ", ".join(allowed)}
            )
        request.scope["path_params"] = shape.path_params(segments)
        return await shape.endpoint(request)
