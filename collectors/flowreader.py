"""Reading flow (collectors/flow.py) once per collection cycle, inside the cycle's one pipeline.

Each cycle reads the current minute, the previous one during the first SETTLE seconds (late flushes
land there), and any minute of the window not read yet; ended minutes are kept in memory, so after
the first cycle a poll costs one or two HGETALLs of small hashes (series ids, not names). The
all-time totals (what Prometheus counters read) grow with the number of series, so they are read
only in the cycle after a minute changed (a worker flushed), and at least every TOTAL_EVERY seconds.
The series names are read once, and again when a hash names an id not seen yet (a new task).

The overview's 24 h and 7 d ranges need hours: each ended hour's hash is read once, collapsed to one
tally of everything (a few hundred bytes per hour whatever the number of series), and kept for
HOURS hours. A fresh Callboard reads the week back HOUR_BUDGET hashes per cycle, newest first, so no
cycle reads 168 hashes at once; until done the snapshot says how many hours are still missing. The
current hour is the sum of its minutes, which the window always holds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import Pipeline

from callboard.collectors.flow import (
    SERIES_KEY,
    TOTAL_KEY,
    Series,
    Tally,
    collapse,
    hour_key,
    minute_key,
    series_names,
    tallies,
)

#: Minutes kept in memory: the last hour (longer ranges read hour keys on demand).
WINDOW = 60
TOTAL_EVERY = 10.0
#: Seconds into a minute after which the previous minute is final: companions flush every 2 s.
SETTLE = 15.0
#: Ended hours kept (the overview's 7 d range), and hour hashes read per cycle while filling them.
HOURS = 168
HOUR_BUDGET = 4


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
    #: Epoch hour -> everything the companions recorded in that ended hour, summed over series.
    hours: Mapping[int, Tally] = field(default_factory=dict)
    #: Ended hours of the last HOURS not read yet (a fresh Callboard reads them back a few a cycle).
    hours_missing: int = 0
    #: Epoch minute -> `minutes[m]` summed over series (computed once per read of a minute).
    minute_sums: Mapping[int, Tally] = field(default_factory=dict)


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
        self._hours: dict[int, Tally] = {}
        self._minute_sums: dict[int, Tally] = {}
        self._wanted_hours: list[int] = []
        self._hours_missing = HOURS

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
        # Ended hours not read yet, newest first; the one just ended once late flushes have landed.
        hour = minute // 60
        ended = [h for h in range(hour - 1, hour - HOURS - 1, -1) if h not in self._hours]
        if ended and ended[0] == hour - 1 and now - hour * 3600 < SETTLE:
            ended.pop(0)
        self._hours_missing = len(ended)
        self._wanted_hours = ended[:HOUR_BUDGET]
        for h in self._wanted_hours:
            pipe.hgetall(hour_key(h))
        return (
            len(self._wanted) + len(self._wanted_hours) + (1 if self._with_total else 0) + (1 if names else 0)
        )

    def parse(self, replies: list[Any], now: float | None = None) -> FlowSnapshot:
        """This cycle's replies (an error in one, e.g. an ACL refusing HGETALL, keeps what was read)."""
        now = time.time() if now is None else now
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            return self.snapshot(f"{type(errors[0]).__name__}: {errors[0]}"[:200])
        names_fresh = self._with_names
        if self._with_names:
            self._names = series_names(replies.pop(0))
            self._with_names = False
        unknown: set[str] = set()
        if self._with_total:
            self._total, missing = tallies(replies.pop(0), self._names)
            self._total_at = None if missing else now
            unknown |= missing
        hour_replies = replies[len(self._wanted) :]
        for h, reply in zip(self._wanted_hours, hour_replies, strict=True):
            by_series, missing = tallies(reply, self._names)
            if missing and not names_fresh:
                # Read the names, then this hour again; ids still unknown with fresh names are not
                # a companion's (someone else's fields): left out, or the hour would never settle.
                unknown |= missing
                continue
            self._hours[h] = collapse(by_series.values())
            self._hours_missing -= 1
        for m, reply in zip(self._wanted, replies[: len(self._wanted)], strict=True):
            fresh, missing = tallies(reply, self._names)
            if fresh != self._minutes.get(m, {}):
                self._total_at = None  # a worker flushed: read the totals next cycle too
            if missing:
                self._minutes.pop(m, None)  # read it again, with the names
                self._minute_sums.pop(m, None)
                unknown |= missing
            else:
                self._minutes[m] = fresh
                self._minute_sums[m] = collapse(fresh.values())
        if unknown:
            # A series this reader has not seen (a new task): the next cycle reads the names first.
            self._with_names = True
        oldest = int(now // 60) - WINDOW + 1
        for m in [m for m in self._minutes if m < oldest]:
            del self._minutes[m]
            self._minute_sums.pop(m, None)
        oldest_hour = int(now // 3600) - HOURS
        for h in [h for h in self._hours if h < oldest_hour]:
            del self._hours[h]
        return self.snapshot()

    def snapshot(self, error: str | None = None) -> FlowSnapshot:
        names = set(self._total) | {s for tally in self._minutes.values() for s in tally}
        return FlowSnapshot(
            dict(self._total),
            dict(self._minutes),
            self._total_at,
            error,
            tuple(sorted(names)),
            hours=dict(self._hours),
            hours_missing=self._hours_missing,
            minute_sums=dict(self._minute_sums),
        )
