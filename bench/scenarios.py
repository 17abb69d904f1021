"""The seeded databases: one per scenario, so each snapshot measurement sees only its own keys."""

from __future__ import annotations

from dataclasses import dataclass

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
