"""Reading flow (collectors/flow.py) once per collection cycle, inside the cycle's one pipeline.

Each cycle reads the current and the previous minute (late flushes land there) and any minute of
the window not read yet; ended minutes are kept in memory, so after the first cycle a poll costs two
HGETALLs of small hashes. The all-time totals (what Prometheus counters read) grow with the number
of series, so they are read only in the cycle after a minute changed (a worker flushed), and at
least every TOTAL_EVERY seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import Pipeline

from callboard.collectors.flow import TOTAL_KEY, Series, Tally, minute_key, tallies

#: Minutes kept in memory: the last hour (longer ranges read hour keys on demand).
WINDOW = 60
TOTAL_EVERY = 10.0


@dataclass(frozen=True, slots=True)
class FlowSnapshot:
    """What the workers' companions recorded: all-time totals, and the last WINDOW minutes."""

    total: Mapping[Series, Tally]
    #: Epoch minute -> tallies of that minute.
    minutes: Mapping[int, Mapping[Series, Tally]]
    #: When the totals were read (they lag by at most TOTAL_EVERY seconds).
    total_read_at: float | None
    error: str | None = None
    series: tuple[Series, ...] = field(default=())


class FlowReader:
    def __init__(self) -> None:
        self._minutes: dict[int, dict[Series, Tally]] = {}
        self._total: dict[Series, Tally] = {}
        self._total_at: float | None = None
        self._wanted: list[int] = []
        self._with_total = False

    def stage(self, pipe: Pipeline, now: float | None = None) -> int:
        """Queue this cycle's reads on the cycle's pipeline; returns how many replies they add."""
        now = time.time() if now is None else now
        minute = int(now // 60)
        self._wanted = [
            m for m in range(minute - WINDOW + 1, minute + 1) if m >= minute - 1 or m not in self._minutes
        ]
        self._with_total = self._total_at is None or now - self._total_at >= TOTAL_EVERY
        if self._with_total:
            pipe.hgetall(TOTAL_KEY)
        for m in self._wanted:
            pipe.hgetall(minute_key(m))
        return len(self._wanted) + (1 if self._with_total else 0)

    def parse(self, replies: list[Any], now: float | None = None) -> FlowSnapshot:
        """This cycle's replies (an error in one, e.g. an ACL refusing HGETALL, keeps what was read)."""
        now = time.time() if now is None else now
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            return self.snapshot(f"{type(errors[0]).__name__}: {errors[0]}"[:200])
        if self._with_total:
            self._total, self._total_at = tallies(replies.pop(0)), now
        for m, reply in zip(self._wanted, replies, strict=True):
            fresh = tallies(reply)
            if fresh != self._minutes.get(m, {}):
                self._total_at = None  # a worker flushed: read the totals next cycle too
            self._minutes[m] = fresh
        oldest = int(now // 60) - WINDOW + 1
        for m in [m for m in self._minutes if m < oldest]:
            del self._minutes[m]
        return self.snapshot()

    def snapshot(self, error: str | None = None) -> FlowSnapshot:
        names = set(self._total) | {s for tally in self._minutes.values() for s in tally}
        return FlowSnapshot(
            dict(self._total), dict(self._minutes), self._total_at, error, tuple(sorted(names))
        )
