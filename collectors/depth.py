"""Depth history: each queue's counts by state, kept in the target's own Redis so a restart of
Callboard loses no chart. The one home of its keys.

    callboard:depth:<tier>:<queue id>   list, newest first; an entry is "<epoch seconds> <n> <n> ..."
                                        (the counts in QUEUE_STATES order of the queue's framework)

    tier  step     entries  span   TTL (refreshed by every push)
    m     1 min    60       1 h    span + 1 step
    f     5 min    288      24 h
    h     1 h      168      7 days

The queue id is 12 hex digits of the BLAKE2b of `[framework, queue key]` as JSON, so a key holds no
queue name: names with `:`, `/`, newlines or broken UTF-8 cost nothing here. A queue that goes away
takes its lists with it when their TTLs run out.

Writing costs nothing extra per cycle: when a cycle crosses a tier's step, the recorder queues one
LPUSH + LTRIM + EXPIRE per queue and tier, and the next cycle sends them in its one pipeline. An entry
is ~20 bytes in a listpack, so a queue costs 516 entries, 13 kB in Redis (MEMORY USAGE), whatever its traffic.
Reading is one LRANGE of one list, bounded by the tier's length (a list someone padded is cut).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from callboard.collectors.flow import series_id
from callboard.collectors.model import QUEUE_STATES, Framework, QueueStats

PREFIX = "callboard:depth:"


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    #: Seconds between entries.
    step: int
    #: Entries kept.
    size: int

    @property
    def span(self) -> int:
        return self.step * self.size


#: By chart range: what the queue page's 1 h, 24 h and 7 d charts read.
TIERS: dict[str, Tier] = {"1h": Tier("m", 60, 60), "24h": Tier("f", 300, 288), "7d": Tier("h", 3600, 168)}
#: Seconds a refused write (an ACL without LPUSH, a read-only replica) waits before it is tried again.
RETRY_AFTER = 600.0


def queue_id(framework: Framework, key: str) -> str:
    return series_id(json.dumps([framework.value, key], ensure_ascii=False))


def depth_key(tier: Tier, framework: Framework, key: str) -> str:
    return f"{PREFIX}{tier.name}:{queue_id(framework, key)}"


def encode(at: float, counts: Mapping[str, int], states: Sequence[str]) -> str:
    return " ".join([str(int(at)), *(str(int(counts.get(s, 0))) for s in states)])


def decode(entry: Any, states: Sequence[str]) -> tuple[float, dict[str, int]] | None:
    """One entry, or None for one that is not ours (wrong width, not numbers)."""
    text = entry.decode("ascii", "replace") if isinstance(entry, bytes) else str(entry)
    parts = text.split(" ")
    if len(parts) != len(states) + 1 or not all(p.isdigit() for p in parts):
        return None
    return float(parts[0]), dict(zip(states, (int(p) for p in parts[1:]), strict=True))


class DepthRecorder:
    """Queues the pushes a cycle owes (`observe`) and sends them in the next cycle's pipeline."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        #: Tier -> the step index last written.
        self._written: dict[str, int] = {}
        self._pending: list[tuple[str, str, Tier]] = []
        self._sent = 0
        #: Why the last writes failed (shown as a note), and when to try again.
        self.error: str | None = None
        self._retry_at = 0.0

    def observe(self, at: float, queues: Iterable[QueueStats]) -> None:
        if not self.enabled or time.monotonic() < self._retry_at:
            return
        due = [t for t in TIERS.values() if self._written.get(t.name) != int(at // t.step)]
        if not due:
            return
        for tier in due:
            self._written[tier.name] = int(at // tier.step)
        self._pending = [
            (depth_key(tier, q.framework, q.key), encode(at, q.counts, QUEUE_STATES[q.framework]), tier)
            for q in queues
            for tier in due
        ]

    def stage(self, pipe: Pipeline) -> int:
        """The owed pushes, on this cycle's pipeline; returns how many replies they add."""
        for key, entry, tier in self._pending:
            pipe.lpush(key, entry)
            pipe.ltrim(key, 0, tier.size - 1)
            pipe.expire(key, tier.span + tier.step)
        self._sent, self._pending = len(self._pending) * 3, []
        return self._sent

    def parse(self, replies: list[Any]) -> None:
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            self.error = f"{type(errors[0]).__name__}: {errors[0]}"[:200]
            self._retry_at = time.monotonic() + RETRY_AFTER
            self._written.clear()  # write every tier again once allowed
        elif replies:
            self.error = None

    @property
    def note(self) -> str | None:
        if self.error is None:
            return None
        return (
            f"Depth history is not being kept in Redis ({self.error}); charts longer than this "
            "process's memory will have gaps. Grant LPUSH, LTRIM and EXPIRE on callboard:depth:* "
            "or set depth_history = false."
        )


async def read(redis: Redis, framework: Framework, key: str, span: str) -> list[tuple[float, dict[str, int]]]:
    """One queue's entries for a chart range ("1h", "24h", "7d"), oldest first; one LRANGE."""
    tier = TIERS[span]
    states = QUEUE_STATES[framework]
    raw = await redis.lrange(depth_key(tier, framework, key), 0, tier.size - 1)  # type: ignore[misc]
    points = [p for p in (decode(e, states) for e in raw) if p is not None]
    points.sort(key=lambda p: p[0])
    return points
