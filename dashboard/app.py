"""The Starlette application: routes, the lifespan that owns Redis clients and the poller, errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from callboard.collectors import backends, decoding
from callboard.collectors.target import TargetCollector
from callboard.dashboard import api, assets, controls, reports, search, views
from callboard.dashboard.access import AccessGuard
from callboard.dashboard.headers import SecurityHeaders
from callboard.dashboard.hosts import AllowedHosts
from callboard.dashboard.metrics import make_registry, metrics_endpoint
from callboard.dashboard.operations import Operations
from callboard.dashboard.poller import Poller
from callboard.dashboard.redispool import redis_client as redis_client  # tests and benches build clients here
from callboard.dashboard.rendercache import GZIP_MIN, ReadCache, RenderCache
from callboard.dashboard.routing import SegmentRoute, Shape
from callboard.dashboard.searches import Searches
from callboard.dashboard.services import Services, services
from callboard.dashboard.settings import Settings, TargetSettings
from callboard.dashboard.store import SnapshotStore
from callboard.dashboard.templating import STATIC, make_templates

log = logging.getLogger("callboard")


def _collector(
    target: TargetSettings, settings: Settings, results_redis: Redis | None = None
) -> TargetCollector:
    client = redis_client(target.url, settings.redis_timeout)
    return backends.collector(
        target.name,
        client,
        target.dramatiq,
        target.arq,
        settings.scan_budget,
        results_redis,
        depth_history=settings.depth_history,
    )


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    store = services(request).store
    down = [s for s in store.targets() if not s.ready]
    if down:
        lines = [f"{s.name}: {s.error or 'no collection yet'}" for s in down]
        return PlainTextResponse("not ready\n" + "\n".join(lines) + "\n", status_code=503)
    return PlainTextResponse("ready\n")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # exc.headers carry what the status needs: `Allow` on a 405, `Retry-After` on a 429.
    if _wants_json(request):
        response = api.respond({"error": exc.detail}, exc.status_code)
    else:
        context = {"status": exc.status_code, "message": exc.detail}
        response = views.render(request, "pages/error.html", context, exc.status_code)
    response.headers.update(exc.headers or {})
    return response


async def redis_error(request: Request, exc: Exception) -> Response:
    # Browse pages read Redis on demand: when it is down, say so plainly (no stack trace, no secrets),
    # naming the target and, when the poller knows it is down, since when.
    target = str(request.path_params.get("target") or "")
    state = services(request).store.get(target) if target else None
    if state is not None and not state.up:
        message = reports.down_message(state)
    else:
        where = f"Redis target “{target}”" if target else "Redis"
        message = f"{where} is unreachable or failed: {type(exc).__name__}."
    message += " The page will work again once it is back."
    log.warning("browse request %s failed: %r", request.url.path, exc)
    if _wants_json(request):
        return api.respond({"error": message}, 503)
    return views.render(request, "pages/error.html", {"status": 503, "message": message}, 503)


class _App(Starlette):
    def build_middleware_stack(self) -> ASGIApp:
        # Around Starlette's own outer layers too (its 500 and body-limit answers), so every response
        # carries the security headers: the guards' denials, 404s, 405s, static files, errors.
        return SecurityHeaders(super().build_middleware_stack())


#: Queue, job, fragment, job-API and control URLs: names are path segments read from the raw path.
Q = ("target", "framework", "queue")
J = (*Q, "job_id")
#: A task's page and API: the target, and the flow series id (12 hex digits).
T = ("target", "series_id")


def named_routes() -> list[BaseRoute]:
    return [
        SegmentRoute("/queues", [Shape(Q, "GET", views.queue_page)], "/queues/{target}/{framework}/{queue}"),
        SegmentRoute(
            "/jobs", [Shape(J, "GET", views.job_page)], "/jobs/{target}/{framework}/{queue}/{job_id}"
        ),
        SegmentRoute(
            "/fragments/queues",
            [Shape(Q, "GET", views.queue_fragment)],
            "/fragments/queues/{target}/{framework}/{queue}",
        ),
        SegmentRoute(
            "/fragments/jobs",
            [Shape(Q, "GET", views.jobs_fragment)],
            "/fragments/jobs/{target}/{framework}/{queue}",
        ),
        SegmentRoute("/tasks", [Shape(T, "GET", views.task_page)], "/tasks/{target}/{series_id}"),
        SegmentRoute("/api/v1/tasks", [Shape(T, "GET", api.task)], "/api/v1/tasks/{target}/{series_id}"),
        SegmentRoute(
            "/api/v1/queues",
            [
                Shape(Q, "GET", api.jobs, last=("jobs",)),
                Shape(Q, "GET", api.depth, last=("depth",)),
                Shape(Q, "POST", controls.queue_action, last=controls.ACTIONS),
            ],
            "/api/v1/queues/{target}/{framework}/{queue}/jobs or /depth, or POST .../{queue}/{action}",
        ),
        SegmentRoute(
            "/api/v1/jobs",
            [
                Shape(J, "GET", api.job),
                Shape(J, "POST", controls.job_action, last=controls.JOB_ACTIONS),
            ],
            "/api/v1/jobs/{target}/{framework}/{queue}/{job_id}, or POST .../{job_id}/{action}",
        ),
        SegmentRoute(
            "/api/v1/failures",
            [
                Shape(
                    ("target", "framework", "group"),
                    "POST",
                    controls.group_action,
                    last=controls.GROUP_ACTIONS,
                )
            ],
            "POST /api/v1/failures/{target}/{framework}/{group}/{retry|delete}",
        ),
    ]


def routes() -> list[BaseRoute]:
    """Every route: pages, live fragments, the JSON API, /metrics, probes and static files."""
    return [
        Route("/", views.overview, name="overview"),
        Route("/workers", views.workers, name="workers"),
        Route("/failures", views.failures, name="failures"),
        Route("/tasks", views.tasks, name="tasks"),
        Route("/audit", controls.audit_page, name="audit"),
        Route("/search", search.search_page, name="search"),
        Route("/fragments/overview", views.overview_fragment),
        Route("/fragments/banner", views.banner_fragment),
        Route("/fragments/workers", views.workers_fragment),
        Route("/fragments/failures", views.failures_fragment),
        Route("/fragments/tasks", views.tasks_fragment),
        Route("/fragments/operations/{op_id}", controls.operation_fragment),
        Route("/fragments/searches/{search_id}", search.search_fragment),
        Route("/api/v1/openapi.json", api.openapi),
        Route("/api/v1/queues", api.queues),
        Route("/api/v1/workers", api.workers),
        Route("/api/v1/failures", api.failures),
        Route("/api/v1/flow", api.flow),
        Route("/api/v1/flow/overview", api.flow_overview),
        Route("/api/v1/audit", controls.audit_api),
        Route("/api/v1/operations/{op_id}", controls.operation),
        Route("/api/v1/search", search.search_api),
        Route("/api/v1/searches/{search_id}", search.search_state),
        Route("/api/v1/searches/{search_id}/stop", search.search_stop, methods=["POST"]),
        *named_routes(),
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/static/{path:path}", assets.endpoint(STATIC), methods=["GET"]),
    ]


def create_app(settings: Settings) -> Starlette:
    history_points = max(10, int(settings.history_seconds / settings.poll_interval))
    store = SnapshotStore(((t.name, t.safe_url) for t in settings.targets), history_points)
    results_redis = {
        t.name: redis_client(t.results_url, settings.redis_timeout) for t in settings.targets if t.results_url
    }
    collectors = {t.name: _collector(t, settings, results_redis.get(t.name)) for t in settings.targets}
    pools = {
        name: [c.redis, *([results_redis[name]] if name in results_redis else [])]
        for name, c in collectors.items()
    }
    timeout = max(settings.redis_timeout * 2, 1.0)
    poller = Poller(store, collectors, settings.poll_interval, timeout=timeout, pools=pools)

    searches = Searches(collectors, store=store)

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

    app = _App(
        routes=routes(),
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
            # Pages read per request, fragments and the API (~5x smaller). What the render cache and
            # the static files already gzipped once passes through as it is.
            Middleware(GZipMiddleware, minimum_size=GZIP_MIN, compresslevel=6),
        ],
    )
    app.state.services = Services(
        settings=settings,
        store=store,
        poller=poller,
        collectors=collectors,
        templates=make_templates(),
        render_cache=RenderCache(store, max_age=settings.poll_interval),
        depth_history=ReadCache(max_age=reports.LONG_READ_MAX_AGE),
        flow_history=ReadCache(max_age=reports.LONG_READ_MAX_AGE),
        job_lists=ReadCache(max_age=settings.poll_interval),
        audit_reads=ReadCache(max_age=settings.poll_interval),
        operations=Operations(collectors, poller, settings.audit_keep),
        searches=searches,
        registry=make_registry(store, settings.flow_series_limit),
    )
    return app
