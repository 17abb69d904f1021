"""Reading flow (collectors/flow.py) once per collection cycle, inside the cycle's one pipeline.

Each cycle reads the current minute, the previous one during the first SETTLE seconds (late flushes
land there), and any minute of the window not read yet; ended minutes are kept in memory, so after
the first cycle a poll costs one or two HGETALLs of small hashes (series ids, not names). The
all-time totals (what Prometheus counters read) grow with the number of series, so they are read
only in the cycle after a minute changed (a worker flushed), and at least every TOTAL_EVERY seconds.
The series names are read once, and again when a hash names an id not seen yet (a new task).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import Pipeline

from callboard.collectors.flow import SERIES_KEY, TOTAL_KEY, Series, Tally, minute_key, series_names, tallies

#: Minutes kept in memory: the last hour (longer ranges read hour keys on demand).
WINDOW = 60
TOTAL_EVERY = 10.0
#: Seconds into a minute after which the previous minute is final: companions flush every 2 s.
SETTLE = 15.0


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
    #: Estimated from what the brokers keep (Arq results, Dramatiq dead letters), by minute, for
    #: series the companions do not report (their queue has no companion series at all).
    estimated: Mapping[int, Mapping[Series, Tally]] = field(default_factory=dict)


class FlowReader:
    def __init__(self) -> None:
        self._minutes: dict[int, dict[Series, Tally]] = {}
        self._total: dict[Series, Tally] = {}
        self._total_at: float | None = None
        self._wanted: list[int] = []
        self._with_total = False
        #: Series id -> series, from the series hash; read again when a hash names an id not in it.
        self._names: dict[str, Series] = {}
        self._with_names = True

    def stage(self, pipe: Pipeline, now: float | None = None) -> int:
        """Queue this cycle's reads on the cycle's pipeline; returns how many replies they add."""
        now = time.time() if now is None else now
        minute = int(now // 60)
        # The current minute always; the previous one while late flushes may still land in it (a
        # worker flushes every few seconds); older ones once, unless a new series made them stale.
        settled = now - minute * 60 >= SETTLE
        self._wanted = [
            m
            for m in range(minute - WINDOW + 1, minute + 1)
            if m == minute or (m == minute - 1 and not settled) or m not in self._minutes
        ]
        self._with_total = self._total_at is None or now - self._total_at >= TOTAL_EVERY
        names = self._with_names
        if names:
            pipe.hgetall(SERIES_KEY)
        if self._with_total:
            pipe.hgetall(TOTAL_KEY)
        for m in self._wanted:
            pipe.hgetall(minute_key(m))
        return len(self._wanted) + (1 if self._with_total else 0) + (1 if names else 0)

    def parse(self, replies: list[Any], now: float | None = None) -> FlowSnapshot:
        """This cycle's replies (an error in one, e.g. an ACL refusing HGETALL, keeps what was read)."""
        now = time.time() if now is None else now
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            return self.snapshot(f"{type(errors[0]).__name__}: {errors[0]}"[:200])
        if self._with_names:
            self._names = series_names(replies.pop(0))
            self._with_names = False
        unknown: set[str] = set()
        if self._with_total:
            self._total, missing = tallies(replies.pop(0), self._names)
            self._total_at = None if missing else now
            unknown |= missing
        for m, reply in zip(self._wanted, replies, strict=True):
            fresh, missing = tallies(reply, self._names)
            if fresh != self._minutes.get(m, {}):
                self._total_at = None  # a worker flushed: read the totals next cycle too
            if missing:
                self._minutes.pop(m, None)  # read it again, with the names
                unknown |= missing
            else:
                self._minutes[m] = fresh
        if unknown:
            # A series this reader has not seen (a new task): the next cycle reads the names first.
            self._with_names = True
        oldest = int(now // 60) - WINDOW + 1
        for m in [m for m in self._minutes if m < oldest]:
            del self._minutes[m]
        return self.snapshot()

    def snapshot(self, error: str | None = None) -> FlowSnapshot:
        names = set(self._total) | {s for tally in self._minutes.values() for s in tally}
        return FlowSnapshot(
            dict(self._total), dict(self._minutes), self._total_at, error, tuple(sorted(names))
        )
