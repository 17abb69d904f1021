"""Failure groups: failed and dead jobs grouped by what broke, kept up to date incrementally.

When a deploy breaks a task, thousands of failures are a handful of causes. A failure's fingerprint
is (framework, actor or function, exception type, exception message with numbers, ids and quoted
values normalised away), so "card 4242 declined for order 'A-17'" and "card 1111 declined for order
'B-9'" are one group. Each framework's collector feeds one FailureIndex per target: Dramatiq from
its dead letters (read in budgeted batches, collectors/dramatiq.py), Arq from its failed results
(collectors/arq.py's results index). Nothing here reads Redis or knows a key.

Cost: adding or removing a failure is O(1). A group keeps counters (per queue, per 10 s bucket of
failure time, per minute of expiry) beside its member ids, so the report built every cycle costs
O(groups x buckets in use), not O(failures) (plus one O(group) walk for a group whose newest or
oldest member left). Memory: ~300 bytes per indexed failure; an index holds
at most `limit` failures and says how many it is missing.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from callboard.collectors.model import Bound, FailureGroup, Framework

#: Failures indexed per framework and target (~30 MB); beyond that the page says what it misses.
LIMIT = 100_000
#: Resolution of failure times kept per group (for first/last seen and the sparkline).
TIME_BUCKET = 10.0
#: Resolution of expiry times (for "expires within the hour").
EXPIRY_BUCKET = 60.0
SPARK_BARS = 30
#: The shortest sparkline window: a burst of failures over a few seconds still shows as a shape.
MIN_SPARK_SPAN = 600.0
#: How long a report is reused when nothing changed (expiry counts move with the clock).
REPORT_MAX_AGE = 30.0
_K = TypeVar("_K")
NO_TRACEBACK = "(no traceback)"
UNDECODABLE = "(undecodable)"

_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b")
#: 0x addresses, and runs of 6+ hex digits mixing digits and letters, also inside words
#: (`rpt_a9ff3f1`): object ids, hashes, short uuids.
_HEX = re.compile(
    r"\b0x[0-9a-fA-F]+\b|(?<![0-9A-Za-z])(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}(?![0-9A-Za-z])"
)
#: A minus sign counts when it starts a word ("id -3"), not inside one ("2026-11-21").
_NUMBER = re.compile(r"(?:(?<![\w.])-)?\d+(?:[.,:]\d+)*")
_SPACE = re.compile(r"\s+")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$", re.DOTALL)


def normalise(message: str) -> str:
    """The message with what varies between occurrences of one failure replaced by markers."""
    # Whitespace first: a quoted value spanning a newline is one value once the newline is a space
    # (the other way round, a second pass would find a quote the first did not: not idempotent).
    text = _SPACE.sub(" ", message[:1000])
    text = _QUOTED.sub("<str>", text)
    text = _UUID.sub("<id>", text)
    text = _HEX.sub("<id>", text)
    text = _NUMBER.sub("<n>", text)
    return text.strip()[:300]


def split_exception(line: str | None) -> tuple[str, str]:
    """`"ValueError: bad 3"` -> ("ValueError", "bad 3"); a traceback's last line or Arq's text."""
    if not line:
        return NO_TRACEBACK, ""
    line = line.strip()
    match = _EXCEPTION_LINE.match(line)
    if match is None or " " in match.group(1):
        return "?", line
    return match.group(1), (match.group(2) or "").strip()


def group_key(framework: Framework, name: str | None, exception: str, pattern: str) -> str:
    material = "\x1f".join((framework.value, name or "", exception, pattern))
    # surrogatepass: any lone surrogate (a JSON "\ud800" in a message) encodes, one-to-one; with
    # surrogateescape a "\ud800" raised and failed the whole collection (issue 11).
    return hashlib.blake2b(material.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class Failure:
    job_id: str
    queue: str
    name: str | None
    exception: str
    message: str
    failed_at: float | None
    #: When Redis (Arq's result TTL) or Dramatiq's maintenance (dead_message_ttl) deletes it.
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class _Member:
    queue: str
    failed_at: float | None
    expires_at: float | None


@dataclass(slots=True)
class _Group:
    name: str | None
    exception: str
    pattern: str
    sample: str
    members: dict[str, _Member] = field(default_factory=dict)
    queues: Counter[str] = field(default_factory=Counter)
    times: Counter[int] = field(default_factory=Counter)
    expiries: Counter[int] = field(default_factory=Counter)
    #: (first failure, last failure, id of the newest); None after a removal that touched them,
    #: recomputed by the next report: O(group) once per report, not per removal (a bulk retry
    #: removes the newest member again and again).
    bounds: tuple[float | None, float | None, str] | None = None

    def add(self, job_id: str, m: _Member) -> None:
        self.members[job_id] = m
        self.queues[m.queue] += 1
        if m.failed_at is not None:
            self.times[int(m.failed_at // TIME_BUCKET)] += 1
        if m.expires_at is not None:
            self.expiries[int(m.expires_at // EXPIRY_BUCKET)] += 1
        if self.bounds is not None or len(self.members) == 1:
            first, last, newest = self.bounds or (None, None, job_id)
            at = m.failed_at
            if at is not None:
                first = at if first is None else min(first, at)
                if last is None or at >= last:
                    last, newest = at, job_id
            self.bounds = (first, last, newest)

    def remove(self, job_id: str) -> None:
        m = self.members.pop(job_id)
        _decrement(self.queues, m.queue)
        if m.failed_at is not None:
            _decrement(self.times, int(m.failed_at // TIME_BUCKET))
        if m.expires_at is not None:
            _decrement(self.expiries, int(m.expires_at // EXPIRY_BUCKET))
        if self.bounds is not None and (job_id == self.bounds[2] or m.failed_at in self.bounds[:2]):
            self.bounds = None

    def current_bounds(self) -> tuple[float | None, float | None, str]:
        if self.bounds is None:
            known = [(m.failed_at, j) for j, m in self.members.items() if m.failed_at is not None]
            if known:
                self.bounds = (min(known)[0], max(known)[0], max(known)[1])
            else:
                self.bounds = (None, None, next(iter(self.members)))
        return self.bounds


def _decrement(counter: Counter[_K], key: _K) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


class FailureIndex:
    """The failures of one framework on one target, grouped; mutated on the event loop only."""

    def __init__(self, framework: Framework, limit: int = LIMIT) -> None:
        self.framework = framework
        self.limit = limit
        self._groups: dict[str, _Group] = {}
        self._where: dict[str, str] = {}
        #: Failures per queue: asked every cycle for every queue with dead letters, so O(1).
        self._per_queue: Counter[str] = Counter()
        #: Failures refused because the index was full.
        self.dropped = 0
        self._version = 0
        self._report: tuple[int, float, tuple[FailureGroup, ...]] = (-1, 0.0, ())

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._where

    @property
    def full(self) -> bool:
        return len(self._where) >= self.limit

    def add(self, failure: Failure) -> bool:
        """Index a failure (replacing what the id had); False when the index is full."""
        self.remove(failure.job_id)
        if self.full:
            self.dropped += 1
            return False
        pattern = normalise(failure.message)
        key = group_key(self.framework, failure.name, failure.exception, pattern)
        group = self._groups.get(key)
        if group is None:
            sample = f"{failure.exception}: {failure.message}" if failure.message else failure.exception
            group = self._groups[key] = _Group(failure.name, failure.exception, pattern, sample[:500])
        group.add(failure.job_id, _Member(failure.queue, failure.failed_at, failure.expires_at))
        self._where[failure.job_id] = key
        self._per_queue[failure.queue] += 1
        self._version += 1
        return True

    def remove(self, job_id: str) -> None:
        key = self._where.pop(job_id, None)
        if key is None:
            return
        group = self._groups[key]
        _decrement(self._per_queue, group.members[job_id].queue)
        group.remove(job_id)
        if not group.members:
            del self._groups[key]
        self._version += 1

    def remove_queue(self, queue: str) -> None:
        """Forget every failure of a queue that is gone (O(failures), rare)."""
        for job_id in self.ids(queue):
            self.remove(job_id)

    def count(self, queue: str) -> int:
        return self._per_queue.get(queue, 0)

    def ids(self, queue: str) -> list[str]:
        """Indexed ids of one queue (O(failures); for reconciling with Redis, in the background)."""
        return [j for j, k in self._where.items() if self._groups[k].members[j].queue == queue]

    def members(self, key: str, bound: Bound | None = None) -> dict[str, list[str]]:
        """queue -> ids of one group, newest first; empty when the group is gone. With `bound` (what
        the operator saw: the group's count and its newest failure time), only failures at or before
        its time (a failure of unknown time is kept: it cannot be told new), at most its count of
        them, newest first. O(group)."""
        group = self._groups.get(key)
        if group is None:
            return {}
        before = bound.before if bound is not None else None
        chosen = sorted(
            (-(m.failed_at or 0.0), job_id, m.queue)
            for job_id, m in group.members.items()
            if before is None or m.failed_at is None or m.failed_at <= before
        )
        if bound is not None:
            chosen = chosen[: bound.cap(len(chosen))]
        by_queue: dict[str, list[str]] = {}
        for _, job_id, queue in chosen:
            by_queue.setdefault(queue, []).append(job_id)
        return by_queue

    def report(self, now: float | None = None) -> tuple[FailureGroup, ...]:
        """Every group, largest first; cached until the index changes or REPORT_MAX_AGE passes."""
        now = time.time() if now is None else now
        version, made_at, groups = self._report
        if version == self._version and now - made_at < REPORT_MAX_AGE:
            return groups
        out = tuple(
            sorted(
                (self._summary(key, g, now) for key, g in self._groups.items()),
                key=lambda g: (-g.count, -(g.last_seen or 0.0), g.key),
            )
        )
        self._report = (self._version, now, out)
        return out

    def _summary(self, key: str, g: _Group, now: float) -> FailureGroup:
        first, last, newest = g.current_bounds()
        span = max(MIN_SPARK_SPAN, now - first) if first is not None else MIN_SPARK_SPAN
        hour, day, next_expiry = _expiring(g.expiries.items(), now)
        return FailureGroup(
            key=key,
            framework=self.framework,
            name=g.name,
            exception=g.exception,
            pattern=g.pattern,
            sample=g.sample,
            count=len(g.members),
            first_seen=first,
            last_seen=last,
            queues=tuple(g.queues.most_common()),
            example=(g.members[newest].queue, newest),
            spark=_bars(g.times.items(), now, span),
            spark_span=span,
            expiring_hour=hour,
            expiring_day=day,
            next_expiry=next_expiry,
        )


def _bars(times: Iterable[tuple[int, int]], now: float, span: float) -> tuple[int, ...]:
    bars = [0] * SPARK_BARS
    start = now - span
    width = span / SPARK_BARS
    for bucket, n in times:
        at = (bucket + 0.5) * TIME_BUCKET
        if at >= start:
            bars[min(SPARK_BARS - 1, int((at - start) // width))] += n
    return tuple(bars)


def _expiring(expiries: Iterable[tuple[int, int]], now: float) -> tuple[int, int, float | None]:
    hour = day = 0
    soonest: float | None = None
    for bucket, n in expiries:
        at = bucket * EXPIRY_BUCKET
        if at <= now + 3600:
            hour += n
        if at <= now + 86400:
            day += n
        soonest = at if soonest is None else min(soonest, at)
    return hour, day, soonest
