"""Flow: how many jobs finish, fail and retry, how long they run and wait. The one home of its keys.

The worker companions (companion/) write these; Callboard reads them. Everything lives in the
workers' own Redis database under Callboard's prefix, in three kinds of hash:

    callboard:flow:m:<minute>   hash  per epoch minute (unix seconds // 60); TTL MINUTE_TTL (26 h)
    callboard:flow:h:<hour>     hash  per epoch hour (unix seconds // 3600); TTL HOUR_TTL (8 days)
    callboard:flow:total        hash  since the first flush, no TTL: what Prometheus counters read
    callboard:flow:dropped      hash  worker id -> jobs a companion could not flush (Redis slow or down)

A field is `<stat>:<series>`: the series is the JSON array [framework, namespace, queue, actor] (so
any name, `:` and newlines included, stays one field), the stat one of

    s  succeeded        f  failed (final)       r  retried (the attempt failed, another follows)
    k  not run (skipped by middleware, e.g. an age limit, then dead-lettered)
    d<i> / w<i>  run / wait time observations in bucket i (BUCKETS[i] is its upper bound, seconds)
    ds / ws      the sum of run / wait times, in microseconds

Only stats that happened are written, so an actor costs fields for the buckets its jobs hit. Every
worker adds with HINCRBY, so any number of processes on any number of hosts add up exactly.
Memory: ~60-90 bytes per field; an actor busy every minute with runs in 2-3 buckets writes ~10
fields per minute key (~0.8 kB), so ~1.1 MB per actor per day of minute keys plus ~20 kB of hour keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "callboard:flow:"
TOTAL_KEY = PREFIX + "total"
DROPPED_KEY = PREFIX + "dropped"
#: Minute keys outlive a day, hour keys a week, by a margin.
MINUTE_TTL = 26 * 3600
HOUR_TTL = 8 * 86400
#: Upper bounds (seconds) of the run- and wait-time buckets, like Prometheus' `le`; the last is +Inf.
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf")
)  # fmt: skip
OUTCOMES = {"s": "succeeded", "f": "failed", "r": "retried", "k": "skipped"}


def minute_key(minute: int) -> str:
    return f"{PREFIX}m:{minute}"


def hour_key(hour: int) -> str:
    return f"{PREFIX}h:{hour}"


@dataclass(frozen=True, slots=True, order=True)
class Series:
    """One actor (Dramatiq) or function (Arq) on one queue: `namespace` and `queue` as QueueStats has
    them (Dramatiq: "dramatiq", "default"; Arq: "arq", "arq:queue"), so metrics labels match."""

    framework: str
    namespace: str
    queue: str
    actor: str

    def encode(self) -> str:
        return json.dumps([self.framework, self.namespace, self.queue, self.actor], ensure_ascii=False)


def field(stat: str, series: Series) -> str:
    return f"{stat}:{series.encode()}"


def bucket(seconds: float) -> int:
    """The index of the first bucket whose upper bound holds `seconds`."""
    return next(i for i, bound in enumerate(BUCKETS) if seconds <= bound)


def parse_field(name: str) -> tuple[str, Series] | None:
    """(stat, series) of a field, or None for one that is not ours (written by hand, or garbled)."""
    stat, sep, encoded = name.partition(":")
    if not sep or not stat:
        return None
    try:
        parts = json.loads(encoded)
    except ValueError:
        return None
    if not (isinstance(parts, list) and len(parts) == 4 and all(isinstance(p, str) for p in parts)):
        return None
    return stat, Series(*parts)


@dataclass(slots=True)
class Tally:
    """What one series did: outcomes, and run and wait times as bucket counts and sums."""

    outcomes: dict[str, int]
    durations: list[int]
    waits: list[int]
    duration_sum: float = 0.0
    wait_sum: float = 0.0

    @classmethod
    def empty(cls) -> Tally:
        return cls({}, [0] * len(BUCKETS), [0] * len(BUCKETS))

    def add(self, stat: str, count: int) -> None:
        if stat in OUTCOMES:
            self.outcomes[OUTCOMES[stat]] = self.outcomes.get(OUTCOMES[stat], 0) + count
        elif stat == "ds":
            self.duration_sum += count / 1e6
        elif stat == "ws":
            self.wait_sum += count / 1e6
        elif stat[:1] in ("d", "w") and stat[1:].isdigit() and int(stat[1:]) < len(BUCKETS):
            (self.durations if stat[0] == "d" else self.waits)[int(stat[1:])] += count

    @property
    def runs(self) -> int:
        return sum(self.durations)


def tallies(fields: Mapping[Any, Any]) -> dict[Series, Tally]:
    """A flow hash (HGETALL) as a tally per series; fields that are not ours are skipped."""
    out: dict[Series, Tally] = {}
    for raw_name, raw_value in fields.items():
        name = raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) else raw_name
        parsed = parse_field(name)
        if parsed is None:
            continue
        try:
            count = int(raw_value)
        except ValueError:
            continue
        stat, series = parsed
        out.setdefault(series, Tally.empty()).add(stat, count)
    return out


def quantile(counts: Iterable[int], q: float) -> float | None:
    """The upper bound of the bucket holding quantile `q` (as Prometheus' histogram_quantile would
    bound it), or None without observations."""
    counts = list(counts)
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return BUCKETS[i]
    return BUCKETS[-1]
