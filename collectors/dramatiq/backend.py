"""Dramatiq on Redis behind the Backend protocol (collectors/backend.py), one per target.

Queue keys arrive as URLs carry them (`namespace:queue`); `knows()` admits only queues the snapshot
collector has (configured, or discovered in a namespace with a heartbeat registry), so every other
method may parse them without a check of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from redis.asyncio import Redis

from callboard.collectors import snippets
from callboard.collectors.backend import Words
from callboard.collectors.dramatiq import browse, controls, resend, snapshot
from callboard.collectors.dramatiq import search as dramatiq_search
from callboard.collectors.dramatiq.keys import QueueKeys, queue_keys
from callboard.collectors.dramatiq.snapshot import DramatiqCollector
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
    label="Dramatiq",
    jobs="messages",
    job="message",
    runner="actor",
    retry="Requeue",
    failed="dead letters",
    failed_job="dead letter",
    options="Options",
    attempts="retries",
    workers=(
        "processes seen fetching from this queue; producers never count, and one idle since Callboard "
        "started counts once it fetches"
    ),
)

ESTIMATE = Estimate(
    source="dramatiq-deadletters",
    label="dead letters only",
    outcomes=("failed",),
    covers=(
        "counted from the dead letters Callboard reads: final failures that were dead-lettered (retries "
        "exhausted, an exception in throws, an age-limit skip, an unknown actor), by minute of "
        "dead-lettering, including letters already dead when Callboard started if that minute is "
        "within the hour; a letter requeued or deleted after it was read still counts. It cannot see "
        "successes, retried attempts, run or wait times, nor letters deleted before it read them; "
        "Dramatiq's results backend is not used: a result holds no time, and by default its key is a "
        "hash that names no actor"
    ),
)


class DramatiqBackend:
    framework = Framework.DRAMATIQ
    states: tuple[str, ...] = browse.BROWSE_STATES
    counted: tuple[str, ...] = QUEUE_STATES[Framework.DRAMATIQ]
    failed_state = "dead"
    words = WORDS
    offers_new_id = False
    estimate = ESTIMATE

    def __init__(
        self, redis: Redis, collector: DramatiqCollector, results_redis: Redis | None = None
    ) -> None:
        self.redis = redis
        self.collector = collector
        #: Where the app's results backend keeps results, when not in the broker's database.
        self.results_redis = results_redis

    @property
    def failures(self) -> FailureIndex:
        return self.collector.failures

    @staticmethod
    def liveness(queues: Iterable[QueueStats], workers: Iterable[WorkerStats]) -> dict[str, tuple[int, int]]:
        return snapshot.liveness(queues, workers)

    def knows(self, queue: str) -> bool:
        return any(q.ready == queue for q in self.collector.queue_keys())

    def _keys(self, queue: str) -> QueueKeys:
        q = queue_keys(queue)
        if q is None:  # knows() admitted it, so it parses; a caller that skipped knows() is a bug
            raise ValueError(f"{queue!r} is not a Dramatiq queue key (namespace:queue)")
        return q

    def empty_stats(self, queue: str) -> QueueStats:
        q = self._keys(queue)
        return QueueStats(self.framework, q.namespace, q.queue, q.ready, dict.fromkeys(self.counted, 0), None)

    async def list_jobs(self, queue: str, state: str, offset: int, limit: int) -> JobPage:
        q = self._keys(queue)
        return await browse.list_jobs(self.redis, q, state, offset, limit, self.collector.ack_keys(q))

    async def get_job(self, queue: str, job_id: str) -> JobDetail | None:
        q = self._keys(queue)
        acks = self.collector.holder_keys(q)
        results = self.collector.config.results
        return await browse.get_job(self.redis, q, job_id, acks, results, self.results_redis)

    def actions(self, state: str) -> tuple[str, ...]:
        return controls.actions(state)

    async def apply(
        self, queue: str, state: str, action: str, ids: Sequence[str], new_id: bool
    ) -> list[JobOutcome]:
        # The recipes take what they changed out of the failure groups at once.
        q = self._keys(queue)
        return await controls.apply(self.redis, q, state, action, ids, failures=self.failures)

    async def select_all(self, queue: str, state: str, bound: Bound | None = None) -> Selection:
        return await controls.select_all(self.redis, self._keys(queue), state, bound=bound)

    async def recover(self, queue: str) -> list[JobOutcome]:
        q = self._keys(queue)
        timeout = self.collector.config.heartbeat_timeout
        return await controls.recover(self.redis, q, self.collector.ack_keys(q), timeout)

    def estimated_flow(self, since_minute: int) -> dict[int, dict[Series, Tally]]:
        # Dramatiq keeps no record of finished messages; its dead letters tell the final failures.
        return self.collector.dead.arrivals.since(since_minute)

    def search_sources(self, target: str, queue: str | None) -> list[Source]:
        out: list[Source] = []
        fw = self.framework
        for q in self.collector.queue_keys():
            if queue is not None and q.ready != queue:
                continue
            acks = tuple(a.key for a in self.collector.ack_keys(q) if not a.delayed)
            out += [
                Source(target, fw, q.ready, dramatiq_search.PAYLOADS, q.msgs, "ready", acks=acks),
                Source(target, fw, q.ready, dramatiq_search.PAYLOADS, q.delay_msgs, "delayed"),
                Source(target, fw, q.ready, dramatiq_search.PAYLOADS, q.dead_msgs, "dead", dead_times=q.dead),
            ]
        return out

    def search_notes(self) -> list[str]:
        return []

    def resend(self, job: JobDetail, redis_url: str) -> Snippet:
        return snippets.resend_snippet(job, redis_url, resend.write)
