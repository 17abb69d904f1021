"""The one shape every queue backend has: what the dashboard may ask of it, and nothing else.

A backend (Dramatiq on Redis, Arq on Redis) lives in its own package with the same file names
(keys, config, snapshot, browse, codec, controls, resend) and shows itself through one class that
satisfies `Backend`, made per target by the registry (backends.py). The pages, the API, the
controls and search look a backend up by its name from the URL and call these methods: none of
them compares framework names, so a new backend touches no page (docs/backends.md walks through
adding one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from callboard.collectors.failures import FailureIndex
from callboard.collectors.flow import Estimate, Series, Tally
from callboard.collectors.model import (
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


@dataclass(frozen=True, slots=True)
class Words:
    """How a backend's own documentation names things, for pages that speak to its users."""

    #: "Dramatiq", "Arq".
    label: str
    #: What units of work are called: "messages", "jobs".
    jobs: str
    #: And one of them: "message", "job".
    job: str
    #: What runs it: "actor", "function".
    runner: str
    #: The retry action on a failed job: "Requeue" (the same message again), "Re-run".
    retry: str
    #: What the failed state holds: "dead letters", "failed results".
    failed: str
    #: And one of them: "dead letter", "failed result".
    failed_job: str
    #: The heading of a job's options: "Options", "Execution".
    options: str
    #: What a job's `retries` counts, as a label: "retries" (Dramatiq: retries so far), "try" (Arq:
    #: the try this is, 1 on the first run).
    attempts: str
    #: What the page says about states it shows from stored results, if any.
    retained: str = ""
    #: What a queue's count of consuming workers (QueueStats.workers) can and cannot see.
    workers: str = ""


class Backend(Protocol):
    """One backend on one target: reads, controls and search, all keyed by queue key and state."""

    framework: Framework
    #: The tabs of a queue page, in order; every state a page or control may name.
    states: tuple[str, ...]
    #: The states counted in every snapshot (the charted ones), a prefix-free subset of `states`.
    counted: tuple[str, ...]
    #: Where failed jobs land (the failures page links and acts there).
    failed_state: str
    words: Words
    #: Whether a retry may run a job again under a new id, keeping the old one's result.
    offers_new_id: bool
    #: What `estimated_flow` is made from, and what it counts.
    estimate: Estimate

    redis: Redis

    @property
    def failures(self) -> FailureIndex:
        """Failed jobs of this target grouped by cause (kept up to date in the background)."""
        ...

    def knows(self, queue: str) -> bool:
        """Whether `queue` is one of this backend's queues on the target: configured, or discovered
        with its own layout. Pages and controls act on nothing else. O(queues)."""
        ...

    def empty_stats(self, queue: str) -> QueueStats:
        """Zero counts for a known queue no snapshot has listed yet."""
        ...

    async def list_jobs(self, queue: str, state: str, offset: int, limit: int) -> JobPage: ...

    async def get_job(self, queue: str, job_id: str) -> JobDetail | None: ...

    def actions(self, state: str) -> tuple[str, ...]:
        """The controls jobs in `state` allow, in display order ("retry", "delete", "abort", ...)."""
        ...

    async def apply(
        self, queue: str, state: str, action: str, ids: Sequence[str], new_id: bool
    ) -> list[JobOutcome]:
        """Act on `ids`, each by compare-and-set: a job that changed meanwhile is reported, not hit."""
        ...

    async def select_all(self, queue: str, state: str, bound: Bound | None = None) -> Selection:
        """Every job of `state` as batches, bounded when the run starts, and by what the operator saw
        when `bound` is given (at most its count; where the state has a time, jobs that reached it
        by the bound's time)."""
        ...

    async def recover(self, queue: str) -> list[JobOutcome]:
        """Put back what dead workers held (the "orphaned" state's one action), where there is one."""
        ...

    @staticmethod
    def liveness(queues: Iterable[QueueStats], workers: Iterable[WorkerStats]) -> dict[str, tuple[int, int]]:
        """(alive, stale) per namespace of this backend in a snapshot (the callboard_workers gauge)."""
        ...

    def estimated_flow(self, since_minute: int) -> dict[int, dict[Series, Tally]]:
        """Flow estimated from what the broker keeps (Arq's retained results, Dramatiq's dead-letter
        arrivals), by minute from `since_minute` on, for queues whose workers run no companion: kept
        in step as the background readers index what they read, so this costs no Redis call and no
        walk over the jobs. `estimate` says what it counts."""
        ...

    def search_sources(self, target: str, queue: str | None) -> list[Source]:
        """What a search walks: every known queue, or `queue` alone."""
        ...

    def search_notes(self) -> list[str]:
        """What a search started now cannot see yet (an index still being built)."""
        ...

    def resend(self, job: JobDetail, redis_url: str) -> Snippet:
        """Python that re-sends `job` (copy as code); the URL's password is never written."""
        ...
