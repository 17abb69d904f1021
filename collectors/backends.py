"""The registry of backends: every backend a target runs, looked up by name, never switched on.

A new backend adds a package (collectors/<name>/, the same file names as the others), a member of
`Framework`, and one line here (docs/backends.md).
"""

from __future__ import annotations

from redis.asyncio import Redis

from callboard.collectors.arq.backend import ArqBackend
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.backend import Backend
from callboard.collectors.dramatiq.backend import DramatiqBackend
from callboard.collectors.dramatiq.snapshot import DramatiqCollector
from callboard.collectors.model import Framework

#: Names as URLs carry them, in display order.
NAMES: tuple[str, ...] = tuple(f.value for f in Framework)


def for_target(
    redis: Redis, dramatiq: DramatiqCollector, arq: ArqCollector, results_redis: Redis | None = None
) -> dict[str, Backend]:
    """One backend of each kind on one Redis target, by name."""
    made: list[Backend] = [DramatiqBackend(redis, dramatiq, results_redis), ArqBackend(redis, arq)]
    return {b.framework.value: b for b in made}
