"""The registry of backends: every backend a target runs, looked up by name, never switched on.

A new backend adds a package (collectors/<name>/, the same file names as the others), a member of
`Framework`, and one line here (docs/backends.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.asyncio import Redis

from callboard.collectors.arq.backend import ArqBackend
from callboard.collectors.arq.config import ArqConfig
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.backend import Backend
from callboard.collectors.dramatiq.backend import DramatiqBackend
from callboard.collectors.dramatiq.config import DramatiqConfig
from callboard.collectors.dramatiq.snapshot import DramatiqCollector
from callboard.collectors.flow import Estimate
from callboard.collectors.model import QueueStats

if TYPE_CHECKING:
    from callboard.collectors.target import TargetCollector

#: Each backend's class by name: what pages may know without a target (words, states, traits).
KINDS: dict[str, type[Backend]] = {k.framework.value: k for k in (DramatiqBackend, ArqBackend)}
#: Names as URLs carry them, in display order.
NAMES: tuple[str, ...] = tuple(KINDS)
#: What each backend's flow estimate is made from, by its `source` name (what FlowRow carries).
ESTIMATES: dict[str, Estimate] = {k.estimate.source: k.estimate for k in KINDS.values()}


def failed_count(q: QueueStats) -> int | None:
    """How many jobs of `q` are in its backend's failed state (dead letters, failed results)."""
    state = KINDS[q.framework.value].failed_state
    return q.counts[state] if state in q.counts else (q.results or {}).get(state)


def collector(
    name: str,
    redis: Redis,
    dramatiq: DramatiqConfig,
    arq: ArqConfig,
    scan_budget: int,
    results_redis: Redis | None = None,
    depth_history: bool = True,
) -> TargetCollector:
    """The collector of one target, with a snapshot collector of each backend kind configured."""
    from callboard.collectors.target import TargetCollector  # target.py imports this registry

    return TargetCollector(
        name,
        redis,
        DramatiqCollector(dramatiq),
        ArqCollector(arq),
        scan_budget=scan_budget,
        results_redis=results_redis,
        depth_history=depth_history,
    )


def for_target(
    redis: Redis, dramatiq: DramatiqCollector, arq: ArqCollector, results_redis: Redis | None = None
) -> dict[str, Backend]:
    """One backend of each kind on one Redis target, by name."""
    made: list[Backend] = [DramatiqBackend(redis, dramatiq, results_redis), ArqBackend(redis, arq)]
    return {b.framework.value: b for b in made}
