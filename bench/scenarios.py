"""The seeded databases: one per scenario, so each snapshot measurement sees only its own keys.

Dramatiq scenarios use databases 0-2 (and are what the HTTP part serves); Arq scenarios 3-4.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.arqseed import ArqLayout, ArqQueueSeed
from bench.seed import Layout, QueueSeed
from bench.sizes import Sizes

NAMESPACE = "dramatiq"


@dataclass(frozen=True, slots=True)
class Scenario:
    #: Also the dashboard's target name for this database.
    name: str
    db: int
    label: str
    layout: Layout

    @property
    def floor_key(self) -> str:
        """The list the floor's bare LLEN reads (the first queue's ready list)."""
        return self.layout.key(self.layout.queues[0].queue)


def scenarios(sizes: Sizes) -> tuple[Scenario, ...]:
    small, large = sizes.small_queue, sizes.large_queue
    one_small = QueueSeed("default", ready=small, in_flight=2, delayed=3, dead=5)
    one_large = QueueSeed(
        "default", ready=large, in_flight=2, delayed=max(3, large // 1000), dead=max(5, large // 100)
    )
    many = tuple(
        QueueSeed(f"q{i:04d}", ready=sizes.per_queue, in_flight=1 if i % 10 == 0 else 0, delayed=1, dead=1)
        for i in range(sizes.many_queues)
    )
    return (
        Scenario("small", 0, f"1 queue, {small:,} ready", Layout(NAMESPACE, (one_small,))),
        Scenario("large", 1, f"1 queue, {large:,} ready", Layout(NAMESPACE, (one_large,))),
        Scenario("many", 2, f"{sizes.many_queues:,} queues x {sizes.per_queue}", Layout(NAMESPACE, many)),
    )


#: Jobs and results in the Arq baseline database, measured in the same run as the large one.
ARQ_BASELINE = 10


@dataclass(frozen=True, slots=True)
class ArqScenario:
    #: Also the dashboard's target name for this database.
    name: str
    db: int
    label: str
    layout: ArqLayout

    @property
    def floor_key(self) -> str:
        """The zset the floor's bare ZCARD reads (the default queue)."""
        return self.layout.queues[0].queue


def arq_layout(jobs: int, results: int) -> ArqLayout:
    """`arq:queue` with almost every job and result, and a custom queue `bench:low` with a few."""
    low_ok, low_failed = max(1, results // 100), max(1, results // 1000)
    failed = max(1, results // 10)
    low = ArqQueueSeed("bench:low", ready=2, deferred=1, succeeded=low_ok, failed=low_failed)
    deferred = max(1, jobs // 100)
    in_progress = 3
    ready = jobs - low.jobs - deferred - in_progress
    main = ArqQueueSeed(
        "arq:queue", ready, in_progress, deferred, succeeded=results - low.results - failed, failed=failed
    )
    return ArqLayout((main, low))


def arq_scenarios(sizes: Sizes) -> tuple[ArqScenario, ...]:
    base, jobs, results = ARQ_BASELINE, sizes.arq_jobs, sizes.arq_results
    return (
        ArqScenario("arq-small", 3, f"Arq, {base} jobs + {base} results", arq_layout(base, base)),
        ArqScenario("arq-large", 4, f"Arq, {jobs:,} jobs + {results:,} results", arq_layout(jobs, results)),
    )
