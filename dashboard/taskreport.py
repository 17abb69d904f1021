"""One task's flow over a range: the report its page (/tasks/{target}/{series_id}) and its JSON twin
share.

`1h` is per minute, from the store (the poller keeps the last hour of minutes in memory): no Redis
read. `24h` and `7d` are per hour, read from the hour hashes on demand (collectors/flowhistory.py: one
round trip, this series' fields only), kept `LONG_READ_MAX_AGE` seconds for every viewer. When that read
fails the report says why and shows the last hour instead: never an error page for a Redis outage.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from redis.exceptions import NoPermissionError, RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from callboard.collectors import backends, flowhistory
from callboard.collectors.flow import BUCKETS, OUTCOMES, Series, Tally, collapse, quantile
from callboard.collectors.flowhistory import Change
from callboard.collectors.flowreader import FlowSnapshot
from callboard.dashboard.reports import FLOW_RANGES, chart_range
from callboard.dashboard.services import services

RANGE_WORDS = {"1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days"}
SERIES_ID = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class TaskStep:
    """One minute or hour of the range."""

    #: When the step starts, epoch seconds.
    start: int
    #: succeeded, failed (final), retried, skipped.
    outcomes: dict[str, int]
    runs: int
    #: Run times per bucket: `durations[i]` runs took at most `buckets[i]` seconds (and more than the
    #: bucket before).
    durations: tuple[int, ...]
    #: Bucket upper bounds holding the p95 of run and wait time; None: no runs.
    p95_run_seconds: float | None
    p95_wait_seconds: float | None


@dataclass(frozen=True, slots=True)
class TaskReport:
    """GET /api/v1/tasks/{target}/{series_id}: one actor or function on one queue, over a range."""

    target: str
    series_id: str
    framework: str
    namespace: str
    queue: str
    actor: str
    #: "companion" (exact, every attempt) or "arq-results" (estimated from the results Arq keeps,
    #: 1 h by default: succeeded and failed jobs only, wait counted from the enqueue).
    source: str
    #: The `?range=` asked for (1h, 24h, 7d), and the one shown: 1h when the hours could not be read
    #: (`error`) or do not exist (`note`: an estimated series has no hour history).
    range: str
    shown: str
    step_seconds: int
    #: Upper bounds of the run-time buckets, seconds (the last is "inf").
    buckets: tuple[float, ...]
    #: Every step of the range shown, oldest first, those without work included.
    steps: tuple[TaskStep, ...]
    #: Over the steps shown.
    totals: dict[str, int]
    runs: int
    #: failed / (succeeded + failed); None: nothing ended.
    failure_rate: float | None
    p50_run_seconds: float | None
    p95_run_seconds: float | None
    p99_run_seconds: float | None
    p95_wait_seconds: float | None
    #: Steps (`steps[change.step]`) where the failure rate or p95 run time moved sharply.
    changes: tuple[Change, ...]
    error: str | None
    note: str | None


def find_series(request: Request, target: str, series_id: str) -> tuple[Series, FlowSnapshot, str]:
    """The series `series_id` of `target`'s flow, the flow, and its source; a 404 that says why not."""
    if not SERIES_ID.fullmatch(series_id):
        raise HTTPException(404, f"No task {series_id!r}: a task id is 12 hex digits (the links on /tasks).")
    state = services(request).store.get(target)
    if state is None:
        raise HTTPException(404, f"Unknown target {target!r}.")
    flow = state.snapshot.flow if state.snapshot else None
    if flow is None:
        raise HTTPException(404, f"No flow read from target {target!r} yet: try again after its first poll.")
    for series in flow.series:
        if series.id == series_id:
            return series, flow, "companion"
    for tallies in flow.estimated.values():
        for series in tallies:
            if series.id == series_id:
                return series, flow, backends.KINDS[series.framework].estimate.source
    raise HTTPException(
        404,
        f"No task {series_id!r} in target {target!r}: neither the worker companions nor what the brokers "
        "keep (Arq's results, Dramatiq's dead letters) tell of it (the tasks page lists those that do).",
    )


async def task_report(request: Request, target: str, series_id: str) -> TaskReport:
    span = chart_range(request)
    series, flow, source = find_series(request, target, series_id)
    now = time.time()
    error = note = None
    hours: Mapping[int, Tally] | None = None
    if span != "1h" and source != "companion":
        note = (
            f"Estimated from {backends.ESTIMATES[source].label}, which the broker keeps for a while only: "
            "this task has no hourly history; showing the last hour, from memory."
        )
    elif span != "1h":
        hours, error = await _read_hours(request, target, series, span, now)
    if hours is not None:
        return report_of(target, series, source, span, span, hours, now, error, note)
    minutes = flow.minutes if source == "companion" else flow.estimated
    by_minute = {m: t[series] for m, t in minutes.items() if series in t}
    return report_of(target, series, source, span, "1h", by_minute, now, error, note)


async def _read_hours(
    request: Request, target: str, series: Series, span: str, now: float
) -> tuple[dict[int, Tally] | None, str | None]:
    """The hours of `span` from Redis (through the shared cache), or None and why they could not be."""
    step, count = FLOW_RANGES[span]
    last = int(now // step)
    hours = range(last - count + 1, last + 1)
    redis = services(request).collectors[target].redis
    try:
        found = await services(request).flow_history.get(
            (target, series.id, span, last), lambda: flowhistory.read_hours(redis, series, hours)
        )
    except (RedisError, OSError) as exc:
        why = "its ACL refused HMGET" if isinstance(exc, NoPermissionError) else type(exc).__name__
        return None, (
            f"The history of the {RANGE_WORDS[span]} could not be read from Redis ({why}): "
            "showing the last hour, from memory."
        )
    return found, None


def report_of(
    target: str,
    series: Series,
    source: str,
    span: str,
    shown: str,
    by_step: Mapping[int, Tally],
    now: float,
    error: str | None = None,
    note: str | None = None,
) -> TaskReport:
    """The report of `by_step` (epoch minute or hour -> tally) over the range `shown` that ends at `now`."""
    step_seconds, count = FLOW_RANGES[shown]
    last = int(now // step_seconds)
    tallies = [by_step.get(s) or Tally.empty() for s in range(last - count + 1, last + 1)]
    total = collapse(tallies)
    failed, succeeded = total.outcomes.get("failed", 0), total.outcomes.get("succeeded", 0)
    return TaskReport(
        target=target,
        series_id=series.id,
        framework=series.framework,
        namespace=series.namespace,
        queue=series.queue,
        actor=series.actor,
        source=source,
        range=span,
        shown=shown,
        step_seconds=step_seconds,
        buckets=BUCKETS,
        steps=tuple(_step((last - count + 1 + i) * step_seconds, tally) for i, tally in enumerate(tallies)),
        totals={o: total.outcomes.get(o, 0) for o in OUTCOMES.values()},
        runs=total.runs,
        failure_rate=failed / (failed + succeeded) if failed + succeeded else None,
        p50_run_seconds=quantile(total.durations, 0.5),
        p95_run_seconds=quantile(total.durations, 0.95),
        p99_run_seconds=quantile(total.durations, 0.99),
        p95_wait_seconds=quantile(total.waits, 0.95),
        changes=tuple(flowhistory.changes(tallies)),
        error=error,
        note=note,
    )


def _step(start: int, tally: Tally) -> TaskStep:
    return TaskStep(
        start=start,
        outcomes={o: tally.outcomes.get(o, 0) for o in OUTCOMES.values()},
        runs=tally.runs,
        durations=tuple(tally.durations),
        p95_run_seconds=quantile(tally.durations, 0.95),
        p95_wait_seconds=quantile(tally.waits, 0.95),
    )
