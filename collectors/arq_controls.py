"""Placeholder until the Arq controls land (same API as the real module)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from collectors.arq import ArqCollector, ArqConfig
from collectors.model import JobOutcome, Selection

ACTIONS: Mapping[str, tuple[str, ...]] = {}


def actions(state: str, config: ArqConfig) -> tuple[str, ...]:
    return ()


async def apply(
    redis: Redis,
    collector: ArqCollector,
    queue: str,
    state: str,
    action: str,
    ids: Sequence[str],
    *,
    new_id: bool = False,
) -> list[JobOutcome]:
    raise ValueError("not yet")


async def select_all(redis: Redis, collector: ArqCollector, queue: str, state: str) -> Selection:
    raise ValueError("not yet")
