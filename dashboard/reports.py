"""The read service between the collectors and HTTP: typed reports that pages and the API share.

views.py renders them as HTML and api.py as JSON; neither imports the other. Everything here reads
the store (the latest snapshots) or asks a target's backend (collectors/backend.py) on demand, and
turns what a client got wrong (an unknown target, queue or state, a cursor out of range) into an
HTTP error that says what to change, before Redis is asked anything.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from callboard.collectors import backends, depth
from callboard.collectors.backend import Backend
from callboard.collectors.flow import OUTCOMES, Series, Tally, collapse, quantile
from callboard.collectors.flowreader import FlowSnapshot
from callboard.collectors.model import (
    QUEUE_STATES,
    FailureGroup,
    Framework,
    JobDetail,
    JobPage,
    QueueStats,
    StuckJob,
    WorkerStats,
)
from callboard.collectors.snippets import Snippet
from callboard.collectors.target import TargetCollector
from callboard.dashboard import operations
from callboard.dashboard.services import services
from callboard.dashboard.settings import DEFAULT_URL
from callboard.dashboard.store import TargetState
from callboard.dashboard.templating import ago, when
from callboard.dashboard.words import sentence

DEFAULT_LIMIT = 50


#: Jobs per page at most (a page is read and rendered per request).
MAX_LIMIT = 500


#: Highest cursor (an offset): beyond any real queue, well inside Redis' 64-bit indexes.
MAX_OFFSET = 10**12


INTEGER = re.compile(r"[+-]?[0-9]+")


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


@dataclass(frozen=True, slots=True)
class FailuresReport:
    """The failures page and GET /api/v1/failures: groups, retention, orphaned and stuck work."""

    #: `?framework=` ("" for all).
    framework: str
    #: Largest first, then the most recent.
    groups: tuple[GroupRow, ...]
    #: Failures grouped, and those the counters know of that no group covers yet.
    total: int
    missing: int
    expiring_hour: int
    expiring_day: int
    next_expiry: float | None
    orphans: tuple[OrphanRow, ...]
    #: (target, job) of Arq claims held longer than the job timeout.
    stuck: tuple[tuple[str, StuckJob], ...]


def failures_report(request: Request) -> FailuresReport:
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
    next_expiries = [r.group.next_expiry for r in groups if r.group.next_expiry is not None]
    return FailuresReport(
        framework=framework,
        groups=tuple(groups),
        total=sum(r.group.count for r in groups),
        missing=missing,
        expiring_hour=sum(r.group.expiring_hour for r in groups),
        expiring_day=sum(r.group.expiring_day for r in groups),
        next_expiry=min(next_expiries, default=None),
        orphans=tuple(orphans),
        stuck=tuple(stuck),
    )


@dataclass(frozen=True, slots=True)
class JobReport:
    """One job's page and GET /api/v1/jobs/...: what is stored, and the code that re-sends it."""

    detail: JobDetail
    resend: Snippet


async def job_report(
    request: Request, target: str, framework: str, key: str, job_id: str
) -> JobReport | None:
    backend = require_queue(request, target, framework, key)
    detail = await backend.get_job(key, job_id)
    if detail is None:
        return None
    # "Copy as code" is written with the target's URL minus its password.
    settings = services(request).settings.target(target)
    return JobReport(detail, backend.resend(detail, settings.safe_url if settings else DEFAULT_URL))


def target_collector(request: Request, target: str) -> TargetCollector | None:
    collectors = services(request).collectors
    return collectors.get(target)


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """The query parameter `name` as an integer in [low, high]; a 400 that says so otherwise.

    Checked here, before Redis sees it: a cursor of 10**32 is not "Redis is unreachable"."""
    raw = (request.query_params.get(name) or "").strip()
    if not raw:
        return default
    if len(raw) > 20 or not INTEGER.fullmatch(raw):
        raise HTTPException(400, f"`{name}` must be an integer from {low:,} to {high:,}.")
    value = int(raw)
    if not low <= value <= high:
        raise HTTPException(400, f"`{name}` must be an integer from {low:,} to {high:,}; got {value:,}.")
    return value


def _paging(request: Request) -> tuple[int, int]:
    offset = int_param(request, "cursor", 0, 0, MAX_OFFSET)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return offset, limit


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
        state = services(request).store.get(target)
        if state is not None and not state.up:
            # Not "no such queue": Callboard cannot know the queues of a target it cannot read.
            raise HTTPException(503, f"{down_message(state)} Its queues are known once it answers.")
        raise HTTPException(404, operations.unknown_queue_message(target, framework, key))
    return backend


def down_message(state: TargetState, now: float | None = None) -> str:
    """What pages and errors say of a target that is not up: its name, since when, and why."""
    if state.down_since is None:
        return f"Redis target “{state.name}” has not been read yet (connecting)."
    since = f"{when(state.down_since)} ({ago(state.down_since, now)})"
    return f"Redis target “{state.name}” is unreachable, down since {since}: {sentence(state.error)}"


#: Seconds a page load or an API call reuses an identical read already made (or in flight): well
#: under a poll interval, so ten viewers opening one queue at once cost one read, and nobody sees
#: rows older than that.
SHARED_READ = 0.5


async def list_jobs(
    request: Request, target: str, framework: str, key: str, state: str, mode: str = "page"
) -> JobPage:
    """One page of jobs, read per `mode`. "live" (a list's poll): the read every viewer of this page
    shares for up to a poll interval, so open tabs do not multiply Redis reads. "page" (a page load,
    the API): an identical read made or started within SHARED_READ seconds is shared. "fresh" (the
    reload after a control): read now. The polls get the newest read."""
    backend = require_queue(request, target, framework, key)
    if state not in backend.states:
        raise HTTPException(400, f"Unknown state {state!r}; one of {', '.join(backend.states)}.")
    offset, limit = _paging(request)
    return await services(request).job_lists.get(
        (target, framework, key, state, offset, limit),
        lambda: backend.list_jobs(key, state, offset, limit),
        fresh=mode == "fresh",
        within=SHARED_READ if mode == "page" else None,
    )


async def load_job(request: Request, target: str, framework: str, key: str, job_id: str) -> JobDetail | None:
    return await require_queue(request, target, framework, key).get_job(key, job_id)


# -- flow ------------------------------------------------------------------------------------------------

#: `?minutes=` of the flow report: the window of per-minute figures (what the store keeps in memory).
FLOW_WINDOW = 60


@dataclass(frozen=True, slots=True)
class FlowRow:
    """One actor or function on one queue, as the worker companions recorded it."""

    target: str
    framework: str
    namespace: str
    queue: str
    actor: str
    #: The series' id (12 hex digits): its page is /tasks/{target}/{series_id}.
    series_id: str
    #: Since the companion started recording: succeeded, failed (final), retried, skipped.
    total: dict[str, int]
    total_runs: int
    #: The same over the window.
    window: dict[str, int]
    #: Bucket upper bounds holding these quantiles of run and wait time (all time); None: no runs.
    p50_run_seconds: float | None
    p95_run_seconds: float | None
    p99_run_seconds: float | None
    p95_wait_seconds: float | None
    #: (minute start, epoch seconds; succeeded; failed) for each minute of the window with work.
    per_minute: tuple[tuple[int, int, int], ...]
    #: "companion" (exact, every attempt), or a backend's estimate (collectors/flow.py `Estimate`):
    #: "arq-results" (the results Arq keeps: succeeded and failed jobs only, no retries, for as long
    #: as `keep_result`, 1 h by default; wait measured from the enqueue, so it includes any
    #: deferral) or "dramatiq-deadletters" (dead-letter arrivals: final failures only, no times).
    source: str = "companion"
    #: The outcomes the source counts; the others read 0 in `total` and `window` but are unknown.
    counted: tuple[str, ...] = tuple(OUTCOMES.values())


@dataclass(frozen=True, slots=True)
class FlowReport:
    """GET /api/v1/flow: what the worker companions recorded, per actor and queue."""

    minutes: int
    series: tuple[FlowRow, ...]
    #: Targets whose flow could not be read, and why (an ACL refusing HGETALL, say).
    errors: dict[str, str]


def flow_report(request: Request) -> FlowReport:
    minutes = int_param(request, "minutes", FLOW_WINDOW, 1, FLOW_WINDOW)
    rows: list[FlowRow] = []
    errors: dict[str, str] = {}
    for state in services(request).store.targets():
        flow = state.snapshot.flow if state.snapshot else None
        if flow is None:
            continue
        if flow.error:
            errors[state.name] = flow.error
        rows += [_flow_row(state.name, s, flow, minutes) for s in flow.series]
        estimated = sorted({s for tallies in flow.estimated.values() for s in tallies})
        rows += [_estimated_row(state.name, s, flow, minutes) for s in estimated]
    rows.sort(key=lambda r: (-r.total_runs, r.target, r.framework, r.queue, r.actor))
    return FlowReport(minutes, tuple(rows), errors)


def _flow_row(target: str, series: Series, flow: FlowSnapshot, minutes: int) -> FlowRow:
    total = flow.total.get(series) or Tally.empty()
    return _row(target, series, total, flow.minutes, minutes, "companion", tuple(OUTCOMES.values()))


def _estimated_row(target: str, series: Series, flow: FlowSnapshot, minutes: int) -> FlowRow:
    """A series only the broker's records tell about: "total" is what the estimate holds (the
    retained results, the dead letters of the window)."""
    total = Tally.empty()
    for tallies in flow.estimated.values():
        if series in tallies:
            total.merge(tallies[series])
    estimate = backends.KINDS[series.framework].estimate
    return _row(target, series, total, flow.estimated, minutes, estimate.source, estimate.outcomes)


def _row(
    target: str,
    series: Series,
    total: Tally,
    by_minute: Mapping[int, Mapping[Series, Tally]],
    minutes: int,
    source: str,
    counted: tuple[str, ...],
) -> FlowRow:
    newest = max(by_minute, default=0)
    window = Tally.empty()
    per_minute: list[tuple[int, int, int]] = []
    for minute in sorted(m for m in by_minute if m > newest - minutes):
        tally = by_minute[minute].get(series)
        if tally is None:
            continue
        window.merge(tally)
        per_minute.append((minute * 60, tally.outcomes.get("succeeded", 0), tally.outcomes.get("failed", 0)))
    return FlowRow(
        target=target,
        framework=series.framework,
        namespace=series.namespace,
        queue=series.queue,
        actor=series.actor,
        series_id=series.id,
        total={o: total.outcomes.get(o, 0) for o in OUTCOMES.values()},
        total_runs=total.runs,
        window={o: window.outcomes.get(o, 0) for o in OUTCOMES.values()},
        p50_run_seconds=quantile(total.durations, 0.5),
        p95_run_seconds=quantile(total.durations, 0.95),
        p99_run_seconds=quantile(total.durations, 0.99),
        p95_wait_seconds=quantile(total.waits, 0.95),
        per_minute=tuple(per_minute),
        source=source,
        counted=counted,
    )


# -- throughput over a range (the overview) ----------------------------------------------------------

#: The overview's ranges: seconds per point, and points.
FLOW_RANGES: dict[str, tuple[int, int]] = {"1h": (60, 60), "24h": (3600, 24), "7d": (3600, 168)}


@dataclass(frozen=True, slots=True)
class FlowPoint:
    #: The step's start, epoch seconds.
    at: int
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class FlowOverview:
    """Jobs succeeded and failed over a range, summed over every target and task: the overview's chart.

    1 h is by minute; 24 h and 7 d by hour, from the hours the companions wrote (kept a week in
    Redis). Estimates (Arq results, Dramatiq dead letters) exist only for what the brokers still
    hold, so they count in the last hour or so of any range."""

    range: str
    step_seconds: int
    #: Every step of the range, oldest first.
    points: tuple[FlowPoint, ...]
    succeeded: int
    failed: int
    retried: int
    #: failed / (succeeded + failed), over the sources that see both (not dead letters: they see
    #: failures only); None with neither.
    failure_rate: float | None
    #: The upper bound of the run-time bucket holding the 95th percentile (companion runs only).
    p95_run_seconds: float | None
    #: Where the figures come from: "companion", "arq-results", "dramatiq-deadletters".
    sources: tuple[str, ...]
    #: Ended hours of the range not read from Redis yet (a fresh Callboard reads the week back a
    #: few hours per poll): the range is partial while this is above zero.
    hours_missing: int
    #: Targets whose flow could not be read, and why.
    errors: dict[str, str]


def chart_range(request: Request) -> str:
    """`?range=` of every chart (overview, queue depth, task page): one of FLOW_RANGES, 1h by default."""
    span = request.query_params.get("range") or "1h"
    if span not in FLOW_RANGES:
        raise HTTPException(400, f"Unknown range {span!r}; one of {', '.join(FLOW_RANGES)}.")
    return span


# The queue depth's stored tiers answer the same ranges.
assert set(depth.TIERS) == set(FLOW_RANGES)


def flow_overview(states: list[TargetState], span: str, now: float) -> FlowOverview:
    step, count = FLOW_RANGES[span]
    last = int(now // step)
    steps = {i: Tally.empty() for i in range(last - count + 1, last + 1)}
    sources: set[str] = set()
    errors: dict[str, str] = {}
    missing = 0
    #: Failures from sources that see no successes (dead letters): counted, but not in the rate.
    unrated = 0
    for state in states:
        flow = state.snapshot.flow if state.snapshot else None
        if flow is None:
            continue
        if flow.error:
            errors[state.name] = flow.error
        if flow.series:
            sources.add("companion")
        if step > 60:
            oldest = last - count + 1
            missing = max(missing, sum(1 for h in range(oldest, last) if h not in flow.hours))
            for hour, tally in flow.hours.items():
                if hour in steps:
                    steps[hour].merge(tally)
        for minute, tally in flow.minute_sums.items():
            at = minute * 60 // step
            # Hours the reader has whole come from their hash; minutes fill the rest (this hour).
            if at in steps and (step == 60 or at not in flow.hours):
                steps[at].merge(tally)
        for minute, by_series in flow.estimated.items():
            at = minute * 60 // step
            for series, tally in by_series.items():
                estimate = backends.KINDS[series.framework].estimate
                sources.add(estimate.source)
                if at in steps:
                    steps[at].merge(tally)
                    if "succeeded" not in estimate.outcomes:
                        unrated += tally.outcomes.get("failed", 0)
    total = collapse(steps.values())
    succeeded, failed = total.outcomes.get("succeeded", 0), total.outcomes.get("failed", 0)
    rated = failed - unrated
    points = tuple(
        FlowPoint(i * step, t.outcomes.get("succeeded", 0), t.outcomes.get("failed", 0))
        for i, t in sorted(steps.items())
    )
    return FlowOverview(
        range=span,
        step_seconds=step,
        points=points,
        succeeded=succeeded,
        failed=failed,
        retried=total.outcomes.get("retried", 0),
        failure_rate=rated / (succeeded + rated) if succeeded + rated else None,
        p95_run_seconds=quantile(total.durations, 0.95),
        sources=tuple(sorted(sources)),
        hours_missing=missing,
        errors=errors,
    )


# -- time to drain ---------------------------------------------------------------------------------

#: Minutes of history and flow a drain estimate looks at, and the seconds of history it needs.
DRAIN_MINUTES = 10
#: Seconds of depth history the net rate looks at (the recent trend: an old backlog says nothing
#: about now), and the least it needs.
NET_WINDOW = 60.0
MIN_SPAN = 5.0


@dataclass(frozen=True, slots=True)
class DrainReport:
    """How fast a queue's backlog (everything waiting or running) moves, and when it would be empty."""

    backlog: int
    #: Net change of the backlog per minute over the last NET_WINDOW seconds (negative: draining).
    net_per_minute: float | None
    #: Jobs ended per minute (succeeded + failed), and arriving (ended + net change), where flow is
    #: known for the queue (the companion, or Arq's results); None otherwise.
    completed_per_minute: float | None
    arriving_per_minute: float | None
    #: Seconds until empty at the current net rate; None when not draining (or nothing to drain).
    eta_seconds: float | None
    #: Where the completion figures come from ("companion", or an estimate that counts successes:
    #: "arq-results"), or None. Dead letters alone are not completions: a queue with only those has
    #: none.
    source: str | None


def drain_report(
    stats: QueueStats, history: list[tuple[float, Mapping[str, int]]], flow: FlowSnapshot | None, now: float
) -> DrainReport:
    """From the store alone: the depth history gives the net rate; flow, where known, the split."""
    backlog = sum(n for state, n in stats.counts.items() if state != "dead")
    recent = [(t, sum(n for s, n in c.items() if s != "dead")) for t, c in history if t >= now - NET_WINDOW]
    net = None
    if len(recent) >= 2 and recent[-1][0] - recent[0][0] >= MIN_SPAN:
        net = _slope(recent) * 60
    completed, source = _completed_per_minute(stats, flow, now)
    arriving = completed + net if completed is not None and net is not None else None
    eta = backlog / -net * 60 if net is not None and net < 0 and backlog else None
    return DrainReport(backlog, net, completed, arriving, eta, source)


def _slope(points: list[tuple[float, int]]) -> float:
    """The median of pairwise slopes (Theil-Sen) of at most 40 points spread over `points`: one odd
    reading (a count taken mid-move by a worker) cannot tilt it, as it tilts an end-to-end slope."""
    step = max(1, len(points) // 40)
    picked = points[::step]
    slopes = sorted(
        (b[1] - a[1]) / (b[0] - a[0]) for i, a in enumerate(picked) for b in picked[i + 1 :] if b[0] > a[0]
    )
    return slopes[len(slopes) // 2] if slopes else 0.0


def _completed_per_minute(
    stats: QueueStats, flow: FlowSnapshot | None, now: float
) -> tuple[float | None, str | None]:
    """Jobs ended per minute over the last full minutes (at most DRAIN_MINUTES): the current minute is
    still filling, so counting it would read low. None until a full minute with figures has passed."""
    if flow is None:
        return None, None
    current = int(now // 60)
    wanted = (stats.framework.value, stats.namespace, stats.name)
    estimate = backends.KINDS[stats.framework.value].estimate
    sources = [("companion", flow.minutes)]
    if "succeeded" in estimate.outcomes:  # failures alone would read as a queue completing nothing
        sources.append((estimate.source, flow.estimated))
    for source, by_minute in sources:
        ended = [
            (m, t.outcomes.get("succeeded", 0) + t.outcomes.get("failed", 0))
            for m, tallies in by_minute.items()
            if current - DRAIN_MINUTES <= m < current
            for s, t in tallies.items()
            if (s.framework, s.namespace, s.queue) == wanted
        ]
        if ended:
            minutes = current - min(m for m, _ in ended)
            return sum(n for _, n in ended) / minutes, source
    return None, None


# -- depth history ---------------------------------------------------------------------------------

#: Seconds an on-demand read of a long chart range (a queue's stored depth, a task's hours) is
#: shared by every viewer.
LONG_READ_MAX_AGE = 30.0


@dataclass(frozen=True, slots=True)
class DepthHistory:
    """GET /api/v1/queues/{target}/{framework}/{queue}/depth: a queue's counts over a chart range.

    The stored part comes from the target's Redis (collectors/depth.py: by minute for 1 h, by 5
    minutes for 24 h, by hour for 7 days), so it outlives a restart of Callboard; the newest part is
    this process's memory, at poll resolution."""

    range: str
    #: Seconds between stored points.
    step_seconds: int
    states: tuple[str, ...]
    #: (epoch seconds, then the count of each state in `states` order), oldest first.
    points: tuple[tuple[float, ...], ...]
    #: Why the stored part could not be read (target down, an ACL refusing LRANGE); the points
    #: are this process's memory only then.
    error: str | None


async def depth_report(request: Request, target: str, framework: str, key: str) -> DepthHistory:
    require_queue(request, target, framework, key)
    span = chart_range(request)
    svc = services(request)
    fw = Framework(framework)
    states = QUEUE_STATES[fw]
    stored: list[tuple[float, dict[str, int]]] = []
    error = None
    state = svc.store.get(target)
    if state is not None and not state.up and state.error:
        error = f"target {target} is down: {state.error}"
    elif svc.settings.depth_history:
        redis = svc.collectors[target].redis
        try:
            stored = await svc.depth_history.get(
                ("depth", target, framework, key, span), lambda: depth.read(redis, fw, key, span)
            )
        except (RedisError, OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
    now = time.time()
    ring = [p for p in svc.store.history(target, key) if p[0] >= now - depth.TIERS[span].span]
    start = now - depth.TIERS[span].span
    if span == "1h":
        # Memory at poll resolution where it reaches, the stored minutes before it (after a restart).
        first = ring[0][0] if ring else now
        merged = [p for p in stored if start <= p[0] < first] + ring
    else:
        merged = [p for p in stored if p[0] >= start] + ring[-1:]
    points = tuple((t, *(float(c.get(s, 0)) for s in states)) for t, c in merged)
    return DepthHistory(span, depth.TIERS[span].step, states, points, error)
