"""One series' flow over hours, read on demand, and the steps where it moved sharply.

The poller keeps the last hour in memory (flowreader.py); a task's page that asks for 24 h or 7 days
reads the hour hashes (flow.py) here: one HMGET per hour of this series' fields only (READ_STATS, 36
fields), all in one pipeline. One round trip of O(hours) commands (168 for 7 days) whatever the number
of other series in those hashes: never an HGETALL. Read-only.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from callboard.collectors.flow import BUCKETS, OUTCOMES, Series, Tally, field, hour_key, quantile

#: Every stat one series may have in a flow hash, in the order HMGET asks for them.
READ_STATS: tuple[str, ...] = (
    *OUTCOMES,
    *(f"d{i}" for i in range(len(BUCKETS))),
    *(f"w{i}" for i in range(len(BUCKETS))),
    "ds",
    "ws",
)


async def read_hours(redis: Redis, series: Series, hours: Sequence[int]) -> dict[int, Tally]:
    """Epoch hour -> what `series` did in it, for the hours of `hours` where it did anything.

    Raises what Redis raises (down, slow, an ACL refusing HMGET): the caller says so."""
    fields = [field(stat, series) for stat in READ_STATS]
    async with redis.pipeline(transaction=False) as pipe:
        for hour in hours:
            pipe.hmget(hour_key(hour), fields)
        replies = await pipe.execute()
    return parse_hours(hours, replies)


def parse_hours(hours: Sequence[int], replies: Sequence[Sequence[Any]]) -> dict[int, Tally]:
    """HMGET replies (one list of READ_STATS values per hour) as tallies; a missing field (None) or a
    value that is not a count adds nothing, and an hour with nothing is left out."""
    out: dict[int, Tally] = {}
    for hour, values in zip(hours, replies, strict=True):
        tally: Tally | None = None
        for stat, raw in zip(READ_STATS, values, strict=True):
            if raw is None:
                continue
            try:
                count = int(raw)
            except ValueError:
                continue
            if tally is None:
                tally = Tally.empty()
            tally.add(stat, count)
        if tally is not None:
            out[hour] = tally
    return out


# -- change marks ----------------------------------------------------------------------------------------
#
# The rule, per step (a minute or an hour) and per kind, against the steps before it:
# - p95 run time: a step with at least MIN_RUNS runs is compared with the median p95 bucket of the last
#   (at most BASELINE) steps before it that had MIN_RUNS runs, of which there must be MIN_BASELINE; it
#   is marked when its p95 bucket is P95_BUCKETS or more buckets away (2 buckets: about 4-5 times
#   slower or faster, e.g. 100 ms -> 500 ms);
# - failure rate (failed / (succeeded + failed)): a step that ended at least MIN_ENDED jobs is compared
#   with the pooled rate of the last (at most BASELINE) steps before it that ended any, of which there
#   must be MIN_BASELINE, having ended MIN_ENDED together; it is marked when the rates differ by
#   FAILURE_POINTS or more (20 points: 2 % -> 22 %).
# A mark starts a new baseline: steps before it are not compared with steps after it, so one change is
# marked once, not again at every step until the old level has left the window.

MIN_RUNS = 10
BASELINE = 6
MIN_BASELINE = 3
P95_BUCKETS = 2
MIN_ENDED = 20
FAILURE_POINTS = 0.20


@dataclass(frozen=True, slots=True)
class Change:
    """A step where the failure rate or the p95 run time moved sharply from the steps before it."""

    #: Index of the step in the steps given.
    step: int
    #: "p95" (seconds: bucket upper bounds) or "failure" (a share, 0 to 1).
    kind: str
    before: float
    after: float
    #: In words: "p95 run time from 0.1 s to 2.5 s", "failure rate from 2 % to 45 %".
    text: str


def changes(steps: Sequence[Tally]) -> list[Change]:
    """Where `steps` (oldest first; an empty tally for a step with no work) moved sharply: see above."""
    return sorted(_p95_changes(steps) + _failure_changes(steps), key=lambda c: (c.step, c.kind))


def _p95_changes(steps: Sequence[Tally]) -> list[Change]:
    out: list[Change] = []
    seen: list[int] = []  # p95 bucket of the steps with enough runs since the last mark
    for i, tally in enumerate(steps):
        if tally.runs < MIN_RUNS:
            continue
        now = _p95_bucket(tally)
        baseline = seen[-BASELINE:]
        if len(baseline) >= MIN_BASELINE:
            before = statistics.median_low(baseline)
            if abs(now - before) >= P95_BUCKETS:
                text = f"p95 run time from {_seconds(BUCKETS[before])} to {_seconds(BUCKETS[now])}"
                out.append(Change(i, "p95", BUCKETS[before], BUCKETS[now], text))
                seen = []
        seen.append(now)
    return out


def _failure_changes(steps: Sequence[Tally]) -> list[Change]:
    out: list[Change] = []
    seen: list[tuple[int, int]] = []  # (failed, ended) of the steps that ended any since the last mark
    for i, tally in enumerate(steps):
        failed, ended = _ended(tally)
        if not ended:
            continue
        baseline = seen[-BASELINE:]
        base_ended = sum(e for _, e in baseline)
        if ended >= MIN_ENDED and len(baseline) >= MIN_BASELINE and base_ended >= MIN_ENDED:
            before, now = sum(f for f, _ in baseline) / base_ended, failed / ended
            if abs(now - before) >= FAILURE_POINTS:
                text = f"failure rate from {before * 100:.0f} % to {now * 100:.0f} %"
                out.append(Change(i, "failure", before, now, text))
                seen = []
        seen.append((failed, ended))
    return out


def _p95_bucket(tally: Tally) -> int:
    bound = quantile(tally.durations, 0.95)
    return BUCKETS.index(bound) if bound is not None else 0


def _ended(tally: Tally) -> tuple[int, int]:
    failed = tally.outcomes.get("failed", 0)
    return failed, failed + tally.outcomes.get("succeeded", 0)


def _seconds(bound: float) -> str:
    return f"over {BUCKETS[-2]:g} s" if bound == float("inf") else f"{bound:g} s"
