"""Flow: how many jobs finish, fail and retry, how long they run and wait. The one home of its keys.

The worker companions (companion/) write these; Callboard reads them. Everything lives in the
workers' own Redis database under Callboard's prefix, in three kinds of hash:

    callboard:flow:m:<minute>   hash  per epoch minute (unix seconds // 60); TTL MINUTE_TTL (26 h)
    callboard:flow:h:<hour>     hash  per epoch hour (unix seconds // 3600); TTL HOUR_TTL (8 days)
    callboard:flow:total        hash  since the first flush, no TTL: what Prometheus counters read
    callboard:flow:series       hash  series id -> the JSON array [framework, namespace, queue, actor]
    callboard:flow:dropped      hash  worker id -> jobs a companion could not flush (Redis slow or down)

A field is `<stat>:<series id>`. The id is 12 hex digits of the series' BLAKE2b, the same in every
worker, so every hash stays small whatever the names (any name, `:`, newlines and all, lives once in
the series hash, which every flush re-sets for its series). The stat is one of

    s  succeeded        f  failed (final)       r  retried (the attempt failed, another follows)
    k  not run (skipped by middleware, e.g. an age limit, then dead-lettered)
    d<i> / w<i>  run / wait time observations in bucket i (BUCKETS[i] is its upper bound, seconds)
    ds / ws      the sum of run / wait times, in microseconds

Only stats that happened are written, so an actor costs fields for the buckets its jobs hit. Every
worker adds with HINCRBY, so any number of processes on any number of hosts add up exactly.
Memory (bench/flow.py measures it): an actor busy every minute writes ~10 fields per minute hash,
about half a kilobyte a minute, so under 1 MB per actor per day, most of it in minute hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

PREFIX = "callboard:flow:"
TOTAL_KEY = PREFIX + "total"
DROPPED_KEY = PREFIX + "dropped"
SERIES_KEY = PREFIX + "series"
#: Minute keys outlive a day, hour keys a week, by a margin.
MINUTE_TTL = 26 * 3600
HOUR_TTL = 8 * 86400
#: Upper bounds (seconds) of the run- and wait-time buckets, like Prometheus' `le`; the last is +Inf.
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf")
)  # fmt: skip
OUTCOMES = {"s": "succeeded", "f": "failed", "r": "retried", "k": "skipped"}
#: Every stat a field may hold -> (kind, bucket index): one dict lookup per field when reading.
STATS: dict[str, tuple[str, int]] = {
    **{stat: ("o", 0) for stat in OUTCOMES},
    **{f"d{i}": ("d", i) for i in range(len(BUCKETS))},
    **{f"w{i}": ("w", i) for i in range(len(BUCKETS))},
    "ds": ("ds", 0),
    "ws": ("ws", 0),
}


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

    @property
    def id(self) -> str:
        return series_id(self.encode())


@lru_cache(maxsize=65_536)
def series_id(encoded: str) -> str:
    return hashlib.blake2b(encoded.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def field(stat: str, series: Series) -> str:
    return f"{stat}:{series.id}"


def bucket(seconds: float) -> int:
    """The index of the first bucket whose upper bound holds `seconds`."""
    return next(i for i, bound in enumerate(BUCKETS) if seconds <= bound)


def parse_series(encoded: str) -> Series | None:
    """A series from its JSON (the series hash), or None for a value that is not ours."""
    try:
        parts = json.loads(encoded)
    except ValueError:
        return None
    if not (isinstance(parts, list) and len(parts) == 4 and all(isinstance(p, str) for p in parts)):
        return None
    return Series(*parts)


def series_names(fields: Mapping[Any, Any]) -> dict[str, Series]:
    """The series hash (HGETALL): id -> series, for ids that match their JSON (others are skipped:
    an id must be the hash of its name, or anyone could relabel a series)."""
    out: dict[str, Series] = {}
    for raw_id, raw_value in fields.items():
        sid = _text(raw_id)
        series = parse_series(_text(raw_value))
        if series is not None and series.id == sid:
            out[sid] = series
    return out


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


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
        kind, index = STATS.get(stat, ("", 0))
        if kind == "d":
            self.durations[index] += count
        elif kind == "w":
            self.waits[index] += count
        elif kind == "o":
            outcome = OUTCOMES[stat]
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + count
        elif kind == "ds":
            self.duration_sum += count / 1e6
        elif kind == "ws":
            self.wait_sum += count / 1e6

    def merge(self, other: Tally) -> None:
        """Add `other`'s figures to these."""
        for outcome, n in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        self.durations[:] = [a + b for a, b in zip(self.durations, other.durations, strict=True)]
        self.waits[:] = [a + b for a, b in zip(self.waits, other.waits, strict=True)]
        self.duration_sum += other.duration_sum
        self.wait_sum += other.wait_sum

    def copy(self) -> Tally:
        return Tally(
            dict(self.outcomes), list(self.durations), list(self.waits), self.duration_sum, self.wait_sum
        )

    @property
    def runs(self) -> int:
        return sum(self.durations)


def tallies(fields: Mapping[Any, Any], names: Mapping[str, Series]) -> tuple[dict[Series, Tally], set[str]]:
    """A flow hash (HGETALL) as a tally per series, and the ids `names` does not know yet (a new
    series: read the series hash, then this hash again). Fields that are not ours are skipped."""
    out: dict[Series, Tally] = {}
    unknown: set[str] = set()
    for raw_name, raw_value in fields.items():
        stat, sep, sid = _text(raw_name).partition(":")
        if not sep or not stat:
            continue
        series = names.get(sid)
        if series is None:
            if len(sid) == 12:
                unknown.add(sid)
            continue
        try:
            count = int(raw_value)
        except ValueError:
            continue
        out.setdefault(series, Tally.empty()).add(stat, count)
    return out, unknown


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
