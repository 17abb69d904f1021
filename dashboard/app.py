"""The Starlette application: routes, the lifespan that owns Redis clients and the poller, errors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError, ResponseError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from collectors import decoding
from collectors.arq import ArqCollector
from collectors.dramatiq import DramatiqCollector
from collectors.target import TargetCollector
from dashboard import actions, api, finder, views
from dashboard.access import AccessGuard
from dashboard.headers import SecurityHeaders
from dashboard.hosts import AllowedHosts
from dashboard.metrics import make_registry, metrics_endpoint
from dashboard.operations import Operations
from dashboard.poller import Poller
from dashboard.rendercache import RenderCache
from dashboard.searches import Searches
from dashboard.settings import Settings, TargetSettings
from dashboard.store import SnapshotStore
from dashboard.templating import asset_dir, make_templates

log = logging.getLogger("callboard")


def redis_client(url: str, timeout: float) -> Redis:
    client: Redis = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # Key names are not always UTF-8; surrogateescape keeps them round-trippable.
        encoding_errors="surrogateescape",
        health_check_interval=30,
        client_name="callboard",
        redis_connect_func=name_connection,
    )
    return client


async def name_connection(connection: Connection) -> None:
    """redis-py's handshake, with the client name set only where the ACL allows it.

    The name ("callboard" in CLIENT LIST) is a courtesy: a read-only user without
    +client|setname would otherwise fail every connection, and the target would look down."""
    name, connection.client_name = connection.client_name, None
    try:
        await connection.on_connect()
    finally:
        connection.client_name = name
    if name:
        await connection.send_command("CLIENT", "SETNAME", name)
        with contextlib.suppress(ResponseError):
            await connection.read_response()


def _collector(target: TargetSettings, settings: Settings) -> TargetCollector:
    return TargetCollector(
        target.name,
        redis_client(target.url, settings.redis_timeout),
        DramatiqCollector(target.dramatiq),
        ArqCollector(target.arq),
        scan_budget=settings.scan_budget,
    )


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    store: SnapshotStore = request.app.state.store
    down = [s for s in store.targets() if not s.ready]
    if down:
        lines = [f"{s.name}: {s.error or 'no collection yet'}" for s in down]
        return PlainTextResponse("not ready\n" + "\n".join(lines) + "\n", status_code=503)
    return PlainTextResponse("ready\n")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _wants_json(request):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return views.render(
        request, "pages/error.html", {"status": exc.status_code, "message": exc.detail}, exc.status_code
    )


async def redis_error(request: Request, exc: Exception) -> Response:
    # Browse pages read Redis on demand: when it is down, say so plainly (no stack trace, no secrets).
    message = (
        f"Redis is unreachable or failed: {type(exc).__name__}. The page will work again once it is back."
    )
    log.warning("browse request %s failed: %r", request.url.path, exc)
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=503)
    return views.render(request, "pages/error.html", {"status": 503, "message": message}, 503)


class _App(Starlette):
    def build_middleware_stack(self) -> ASGIApp:
        # Around Starlette's own outer layers too (its 500 and body-limit answers), so every response
        # carries the security headers: the guards' denials, 404s, 405s, static files, errors.
        return SecurityHeaders(super().build_middleware_stack())


def create_app(settings: Settings) -> Starlette:
    collectors = {t.name: _collector(t, settings) for t in settings.targets}
    history_points = max(10, int(settings.history_seconds / settings.poll_interval))
    store = SnapshotStore(((t.name, t.safe_url) for t in settings.targets), history_points)
    poller = Poller(store, collectors, settings.poll_interval, timeout=max(settings.redis_timeout * 2, 1.0))
    results_redis = {
        t.name: redis_client(t.results_url, settings.redis_timeout) for t in settings.targets if t.results_url
    }

    searches = Searches(collectors)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        decoding.start()
        poller.start()
        try:
            yield
        finally:
            await searches.close()
            await poller.stop()
            decoding.close()
            for c in collectors.values():
                await c.redis.aclose()
            for r in results_redis.values():
                await r.aclose()

    q = "{target}/{framework}/{queue:path}"
    routes = [
        Route("/", views.overview, name="overview"),
        Route("/workers", views.workers, name="workers"),
        Route("/failures", views.failures, name="failures"),
        Route("/queues/" + q, views.queue_page, name="queue"),
        Route("/jobs/{target}/{framework}/{rest:path}", views.job_page, name="job"),
        Route("/audit", actions.audit_page, name="audit"),
        Route("/search", finder.search_page, name="search"),
        Route("/fragments/overview", views.overview_fragment),
        Route("/fragments/banner", views.banner_fragment),
        Route("/fragments/workers", views.workers_fragment),
        Route("/fragments/failures", views.failures_fragment),
        Route("/fragments/queues/" + q, views.queue_fragment),
        Route("/fragments/jobs/" + q, views.jobs_fragment),
        Route("/fragments/operations/{op_id}", actions.operation_fragment),
        Route("/fragments/searches/{search_id}", finder.search_fragment),
        Route("/api/v1/openapi.json", api.openapi),
        Route("/api/v1/queues", api.queues),
        Route("/api/v1/queues/{target}/{framework}/{queue:path}/jobs", api.jobs),
        Route("/api/v1/jobs/{target}/{framework}/{rest:path}", api.job),
        Route("/api/v1/workers", api.workers),
        Route("/api/v1/failures", api.failures),
        Route("/api/v1/audit", actions.audit_api),
        Route("/api/v1/operations/{op_id}", actions.operation),
        Route("/api/v1/search", finder.search_api),
        Route("/api/v1/searches/{search_id}", finder.search_state),
        Route("/api/v1/searches/{search_id}/stop", finder.search_stop, methods=["POST"]),
        Route("/api/v1/queues/{target}/{framework}/{rest:path}", actions.queue_action, methods=["POST"]),
        Route("/api/v1/jobs/{target}/{framework}/{rest:path}", actions.job_action, methods=["POST"]),
        Route(
            "/api/v1/failures/{target}/{framework}/{group}/{action}", actions.group_action, methods=["POST"]
        ),
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Mount("/static", StaticFiles(directory=str(asset_dir("static"))), name="static"),
    ]
    app = _App(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, RedisError: redis_error, OSError: redis_error},
        middleware=[
            # Outermost of ours (SecurityHeaders wraps everything, see _App): nothing, not even a 404,
            # is answered before the Host and access are checked.
            Middleware(
                AccessGuard,
                auth=settings.auth,
                read_only=settings.read_only,
                hosts=AllowedHosts.for_server(settings.allowed_hosts, settings.host),
            ),
        ],
    )
    app.state.settings = settings
    app.state.store = store
    app.state.poller = poller
    app.state.collectors = collectors
    app.state.results_redis = results_redis
    app.state.templates = make_templates()
    app.state.render_cache = RenderCache(store, max_age=settings.poll_interval)
    app.state.operations = Operations(collectors, poller, settings.audit_keep)
    app.state.searches = searches
    app.state.registry = make_registry(store)
    return app
