"""What a worker did, added up in the process until the next flush (collectors/flow.py: the layout)."""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from callboard.collectors.flow import (
    DROPPED_KEY,
    HOUR_TTL,
    MINUTE_TTL,
    SERIES_KEY,
    TOTAL_KEY,
    Series,
    bucket,
    hour_key,
    minute_key,
)
from callboard.collectors.flow import field as flow_field

#: Seconds between flushes: few enough round trips to be free, soon enough for a live page.
INTERVAL = 2.0
OUTCOME_STATS = {"succeeded": "s", "failed": "f", "retried": "r", "skipped": "k"}


@dataclass(slots=True)
class Batch:
    """Increments since the last flush: (key, field) -> amount, and how many jobs they cover."""

    increments: Counter[tuple[str, str]] = field(default_factory=Counter)
    expiring: dict[str, int] = field(default_factory=dict)
    #: Series id -> its JSON, for the series hash (collectors/flow.py).
    names: dict[str, str] = field(default_factory=dict)
    jobs: int = 0

    def commands(self) -> list[tuple[str, str, int]]:
        return [(key, name, amount) for (key, name), amount in self.increments.items()]


class Recorder:
    """Thread-safe: Dramatiq records from its worker threads, Arq from its event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batch = Batch()
        #: Jobs whose figures could not be flushed, since the start (written with the next flush).
        self.dropped = 0

    def record(
        self,
        series: Series,
        outcome: str,
        at: float,
        duration: float | None = None,
        wait: float | None = None,
    ) -> None:
        """One attempt that ended at `at` (epoch seconds): its outcome, and how long it ran and waited."""
        stats: list[tuple[str, int]] = [(OUTCOME_STATS[outcome], 1)]
        if duration is not None and math.isfinite(duration):
            duration = max(0.0, duration)
            stats += [(f"d{bucket(duration)}", 1), ("ds", round(duration * 1e6))]
        if wait is not None and math.isfinite(wait):
            wait = max(0.0, wait)
            stats += [(f"w{bucket(wait)}", 1), ("ws", round(wait * 1e6))]
        minute, hour = int(at // 60), int(at // 3600)
        keys = ((minute_key(minute), MINUTE_TTL), (hour_key(hour), HOUR_TTL), (TOTAL_KEY, 0))
        with self._lock:
            batch = self._batch
            batch.jobs += 1
            batch.names[series.id] = series.encode()
            for key, ttl in keys:
                if ttl:
                    batch.expiring[key] = ttl
                for stat, amount in stats:
                    batch.increments[(key, flow_field(stat, series))] += amount

    def take(self) -> Batch:
        """The increments so far; recording starts a new batch."""
        with self._lock:
            batch, self._batch = self._batch, Batch()
        return batch

    def lost(self, batch: Batch) -> None:
        """A batch that could not be written: its jobs are counted as dropped."""
        with self._lock:
            self.dropped += batch.jobs


class Pipe(Protocol):
    """The part of a redis-py pipeline (sync or asyncio) a flush uses."""

    def hincrby(self, name: str, key: str, amount: int = 1) -> Any: ...

    def expire(self, name: str, time: int) -> Any: ...

    def hset(
        self, name: str, key: str | None = None, value: str | None = None, mapping: Any = None
    ) -> Any: ...


def stage(pipe: Pipe, batch: Batch, worker: str, dropped: int) -> None:
    """Queue a batch's increments (and this worker's dropped count) on a pipeline: one round trip."""
    if batch.names:
        pipe.hset(SERIES_KEY, mapping=batch.names)  # first: a reader never sees an id it cannot name
    for key, name, amount in batch.commands():
        pipe.hincrby(key, name, amount)
    for key, ttl in batch.expiring.items():
        pipe.expire(key, ttl)
    if dropped:
        pipe.hset(DROPPED_KEY, worker, str(dropped))
