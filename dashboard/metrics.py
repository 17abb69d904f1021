"""`/metrics`: the latest snapshots as Prometheus text (or OpenMetrics), with no Redis I/O.

Names and labels are the contract of docs/contracts.md §3. A target that is down exports `callboard_up 0`
and its health series only, so Prometheus marks its queue series stale instead of seeing half a
picture; the endpoint itself always answers 200.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from callboard.collectors import backends
from callboard.collectors.flow import BUCKETS
from callboard.collectors.flowreader import FlowSnapshot
from callboard.collectors.model import QUEUE_STATES, QUEUE_WORKER_STATES, TargetSnapshot
from callboard.dashboard import __version__
from callboard.dashboard.rendercache import Rendered, send
from callboard.dashboard.services import services
from callboard.dashboard.store import SnapshotStore

QUEUE_LABELS = ["target", "framework", "namespace", "queue"]


class SnapshotMetrics(Collector):
    def __init__(self, store: SnapshotStore, series_limit: int = 1000) -> None:
        self.store = store
        #: At most this many flow series (actor x queue) per target are exported.
        self.series_limit = series_limit

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "callboard_up", "1 if the last collection from this target succeeded", labels=["target"]
        )
        duration = GaugeMetricFamily(
            "callboard_collect_duration_seconds", "Time the last collection took", labels=["target"]
        )
        errors = CounterMetricFamily("callboard_collect_errors", "Failed collections", labels=["target"])
        last = GaugeMetricFamily(
            "callboard_last_collect_timestamp_seconds",
            "When the last good collection finished",
            labels=["target"],
        )
        messages = GaugeMetricFamily(
            "callboard_queue_messages", "Messages now, by state", labels=[*QUEUE_LABELS, "state"]
        )
        oldest = GaugeMetricFamily(
            "callboard_queue_oldest_message_age_seconds",
            "How long the oldest ready message has waited since it became runnable; 0 when none",
            labels=QUEUE_LABELS,
        )
        workers = GaugeMetricFamily(
            "callboard_workers",
            "Workers by state: Dramatiq heartbeats, Arq queues' health-check keys",
            labels=["target", "framework", "namespace", "state"],
        )
        queue_workers = GaugeMetricFamily(
            "callboard_queue_workers",
            "Workers consuming this queue, by state: Dramatiq broker processes seen fetching from it "
            "(producers never count); Arq 1 while its health-check key exists (at least one worker)",
            labels=[*QUEUE_LABELS, "state"],
        )
        results = GaugeMetricFamily(
            "callboard_job_results",
            "Result records retained now, by status",
            labels=[*QUEUE_LABELS, "status"],
        )
        flow = FlowFamilies.new()
        build = GaugeMetricFamily("callboard_build_info", "Build metadata", labels=["version"])
        build.add_metric([__version__], 1)
        for state in self.store.targets():
            t = state.name
            up.add_metric([t], 1 if state.up else 0)
            if state.last_duration is not None:
                duration.add_metric([t], state.last_duration)
            errors.add_metric([t], state.errors_total)
            snap = state.snapshot
            if snap is not None:
                last.add_metric([t], snap.collected_at)
            if state.up and snap is not None:
                _queue_samples(t, snap, messages, oldest, results, queue_workers)
                _worker_samples(t, snap, workers)
            if snap is not None and snap.flow is not None:
                flow.add(t, snap.flow, self.series_limit)
        yield from (
            up,
            duration,
            errors,
            last,
            build,
            messages,
            oldest,
            workers,
            queue_workers,
            results,
            *flow.families(),
        )


@dataclass(frozen=True, slots=True)
class FlowFamilies:
    """callboard_jobs_total and the run- and wait-time histograms, from the companions' totals."""

    jobs: CounterMetricFamily
    durations: HistogramMetricFamily
    waits: HistogramMetricFamily

    @classmethod
    def new(cls) -> FlowFamilies:
        labels = [*QUEUE_LABELS, "actor"]
        return cls(
            CounterMetricFamily(
                "callboard_jobs", "Attempts ended, by status (worker companion)", labels=[*labels, "status"]
            ),
            HistogramMetricFamily(
                "callboard_job_duration_seconds", "Run time of attempts (worker companion)", labels=labels
            ),
            HistogramMetricFamily(
                "callboard_job_wait_seconds",
                "Wait from runnable to started, delays excluded (worker companion)",
                labels=labels,
            ),
        )

    def add(self, target: str, flow: FlowSnapshot, limit: int) -> None:
        # The busiest `limit` series: cardinality is bounded whatever the workers name.
        ranked = sorted(flow.total.items(), key=lambda item: (-item[1].runs, item[0]))[:limit]
        for series, tally in ranked:
            labels = [
                target,
                series.framework,
                label(series.namespace),
                label(series.queue),
                label(series.actor),
            ]
            for status in STATUSES:
                self.jobs.add_metric([*labels, status], tally.outcomes.get(status, 0))
            self.durations.add_metric(labels, _buckets(tally.durations), tally.duration_sum)
            self.waits.add_metric(labels, _buckets(tally.waits), tally.wait_sum)

    def families(self) -> tuple[Metric, ...]:
        return (self.jobs, self.durations, self.waits)


#: The `status` values of callboard_jobs_total (a skipped attempt never ran: not exported).
STATUSES = ("succeeded", "failed", "retried")


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs, as a Prometheus histogram has them."""
    out, seen = [], 0
    for bound, n in zip(BUCKETS, counts, strict=True):
        seen += n
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(seen)))
    return out


def label(value: str) -> str:
    """A label value the exposition can encode: a key that is not UTF-8 (read with surrogateescape)
    shows its bytes as `\\udcff` escapes instead of failing the whole /metrics answer."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _queue_samples(
    t: str,
    snap: TargetSnapshot,
    messages: GaugeMetricFamily,
    oldest: GaugeMetricFamily,
    results: GaugeMetricFamily,
    queue_workers: GaugeMetricFamily,
) -> None:
    for q in snap.queues:
        labels = [t, q.framework.value, label(q.namespace), label(q.name)]
        for name in QUEUE_STATES[q.framework]:
            messages.add_metric([*labels, name], q.counts.get(name, 0))
        if q.workers is not None:
            # Every state with 0 included, so "no live worker while work waits" fires on idle queues too.
            for name in QUEUE_WORKER_STATES[q.framework]:
                queue_workers.add_metric([*labels, name], q.workers.get(name, 0))
        if q.oldest_ready_age is not None:
            oldest.add_metric(labels, q.oldest_ready_age)
        if q.results is not None:
            for status in ("succeeded", "failed"):
                results.add_metric([*labels, status], q.results.get(status, 0))


def _worker_samples(t: str, snap: TargetSnapshot, workers: GaugeMetricFamily) -> None:
    # Each backend says what alive and stale mean for it (collectors/<backend>/snapshot.py: liveness).
    by_ns = {
        (name, ns): counts
        for name, kind in backends.KINDS.items()
        for ns, counts in kind.liveness(snap.queues, snap.workers).items()
    }
    for (fw, ns), counts in sorted(by_ns.items()):
        for state, n in zip(("alive", "stale"), counts, strict=True):
            workers.add_metric([t, fw, label(ns), state], n)


def make_registry(store: SnapshotStore, series_limit: int = 1000) -> CollectorRegistry:
    # A registry of our own: no process/GC collectors, nothing shared between app instances or tests.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotMetrics(store, series_limit))
    return registry


async def metrics_endpoint(request: Request) -> Response:
    """The exposition of the latest snapshot, encoded once per poll whatever the number of scrapers."""
    registry = services(request).registry
    cache = services(request).render_cache
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    rendered = await cache.get(("metrics", content_type), lambda: Rendered(encoder(registry), content_type))
    return send(request, rendered)
