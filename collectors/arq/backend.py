"""Arq on Redis behind the Backend protocol (collectors/backend.py), one per target.

An Arq queue key is the sorted set's full name (default "arq:queue"); `knows()` admits only the
queues the snapshot collector has (configured, or discovered holding Arq jobs, or named by a health
check or a stored result).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from redis.asyncio import Redis

from callboard.collectors import snippets
from callboard.collectors.arq import browse, controls, resend, snapshot
from callboard.collectors.arq import search as arq_search
from callboard.collectors.arq.keys import NAMESPACE
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.backend import Words
from callboard.collectors.failures import FailureIndex
from callboard.collectors.flow import Estimate, Series, Tally
from callboard.collectors.model import (
    QUEUE_STATES,
    Bound,
    Framework,
    JobDetail,
    JobOutcome,
    JobPage,
    QueueStats,
    Selection,
    WorkerStats,
)
from callboard.collectors.search import Source
from callboard.collectors.snippets import Snippet

WORDS = Words(
    label="Arq",
    jobs="jobs",
    job="job",
    runner="function",
    retry="Re-run",
    failed="failed results",
    failed_job="failed result",
    options="Execution",
    attempts="try",
    retained="failed and succeeded: retained results (Arq keeps them 1 h by default)",
    workers=(
        "1 means at least one: Arq keeps one health-check key per queue, overwritten by each of its "
        "workers every health_check_interval"
    ),
)

ESTIMATE = Estimate(
    source="arq-results",
    label="Arq results",
    outcomes=("succeeded", "failed"),
    covers=(
        "estimated from the results Arq keeps (keep_result, 1 h by default): succeeded and failed jobs "
        "by minute of finishing, while their results are retained; no retries; wait counted from the "
        "enqueue, so it includes any deferral"
    ),
)


class ArqBackend:
    framework = Framework.ARQ
    states: tuple[str, ...] = browse.BROWSE_STATES
    counted: tuple[str, ...] = QUEUE_STATES[Framework.ARQ]
    failed_state = "failed"
    words = WORDS
    offers_new_id = True
    estimate = ESTIMATE

    def __init__(self, redis: Redis, collector: ArqCollector) -> None:
        self.redis = redis
        self.collector = collector

    @property
    def failures(self) -> FailureIndex:
        return self.collector.results.failures

    @staticmethod
    def liveness(queues: Iterable[QueueStats], workers: Iterable[WorkerStats]) -> dict[str, tuple[int, int]]:
        return snapshot.liveness(queues, workers)

    def knows(self, queue: str) -> bool:
        return queue in self.collector.queue_names()

    def empty_stats(self, queue: str) -> QueueStats:
        return QueueStats(self.framework, NAMESPACE, queue, queue, dict.fromkeys(self.counted, 0), None)

    async def list_jobs(self, queue: str, state: str, offset: int, limit: int) -> JobPage:
        return await browse.list_jobs(self.redis, self.collector, queue, state, offset, limit)

    async def get_job(self, queue: str, job_id: str) -> JobDetail | None:
        return await browse.get_job(self.redis, self.collector, queue, job_id)

    def actions(self, state: str) -> tuple[str, ...]:
        return controls.actions(state, self.collector.config)

    async def apply(
        self, queue: str, state: str, action: str, ids: Sequence[str], new_id: bool
    ) -> list[JobOutcome]:
        return await controls.apply(
            self.redis, self.collector, queue, state, action, list(ids), new_id=new_id
        )

    async def select_all(self, queue: str, state: str, bound: Bound | None = None) -> Selection:
        return await controls.select_all(self.redis, self.collector, queue, state, bound)

    async def recover(self, queue: str) -> list[JobOutcome]:
        # No state of Arq's offers "recover" (actions() never lists it): a stuck claim expires itself.
        raise ValueError("Arq has nothing to recover: a dead worker's claim expires with its TTL")

    def estimated_flow(self, since_minute: int) -> dict[int, dict[Series, Tally]]:
        return self.collector.results.flow_since(since_minute)

    def search_sources(self, target: str, queue: str | None) -> list[Source]:
        serializer = self.collector.config.serializer
        by_queue: dict[str, list[str]] = {}
        for job_id, entry in self.collector.results.entries.items():
            by_queue.setdefault(entry.queue, []).append(job_id)
        out: list[Source] = []
        fw = self.framework
        for key in self.collector.queue_names():
            if queue is not None and key != queue:
                continue
            ids = tuple(by_queue.get(key, ()))
            out.append(Source(target, fw, key, arq_search.QUEUE, key, "queued", serializer=serializer))
            out.append(
                Source(target, fw, key, arq_search.RESULTS, "", "results", ids=ids, serializer=serializer)
            )
        return out

    def search_notes(self) -> list[str]:
        results = self.collector.results
        if results.complete:
            return []
        pending = len(results.pending)
        return [f"the Arq results index is still being built; results not searched yet: {pending:,}."]

    def resend(self, job: JobDetail, redis_url: str) -> Snippet:
        return snippets.resend_snippet(job, redis_url, resend.write)
