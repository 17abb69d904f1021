"""The Arq results index: Arq keeps no index of results, so Callboard builds one.

Result keys found by the shared SCAN are read in budgeted MGET batches; counts per queue and outcome
are kept incrementally, expiry by a heap, and failed results feed the failure groups.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from sys import intern
from typing import Any

from sortedcontainers import SortedKeyList  # type: ignore[import-untyped]

from callboard.collectors import decoding, payloads
from callboard.collectors.arq.codec import decode_record, exception_parts
from callboard.collectors.arq.keys import DEFAULT_QUEUE, NAMESPACE, UNKNOWN_QUEUE
from callboard.collectors.decoding import decoder
from callboard.collectors.failures import UNDECODABLE, Failure, FailureIndex, split_exception
from callboard.collectors.flow import Series, Tally, bucket
from callboard.collectors.model import (
    Framework,
    Undecodable,
)


@dataclass(frozen=True, slots=True)
class ResultEntry:
    queue: str
    function: str
    ok: bool
    finished_at: float | None
    expires_at: float | None
    #: One line: the exception for failures.
    error: str | None
    #: The exception's type alone (failures), or UNDECODABLE.
    exception: str | None = None
    #: When the attempt started, and when the job was enqueued (Arq's `st` and `et`).
    started_at: float | None = None
    enqueued_at: float | None = None


@dataclass(slots=True)
class ResultIndex:
    """Result keys found by SCAN, read in budgeted MGET batches; counts kept incrementally."""

    entries: dict[str, ResultEntry] = field(default_factory=dict)
    pending: dict[str, None] = field(default_factory=dict)
    seen_in_pass: set[str] = field(default_factory=set)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    passes: int = 0
    #: Min-heap of (expires_at, job_id), so that `expire()`, which runs every cycle, costs
    #: O(expired x log n) instead of a walk over every entry (~5 ms per cycle at 100k results).
    #: Items of removed or re-added entries stay until popped or compacted by `end_pass()`.
    expiry: list[tuple[float, str]] = field(default_factory=list)
    #: The failed entries, grouped by cause (the failures page); kept in step by add/remove.
    failures: FailureIndex = field(default_factory=lambda: FailureIndex(Framework.ARQ))
    #: Flow estimated from the retained results (docs: README, Flow, "Source 1"): minute of finishing
    #: -> series -> tally, kept in step by add/remove, so a cycle never walks the results.
    flow: dict[int, dict[Series, Tally]] = field(default_factory=dict)
    #: (queue, succeeded) -> its job ids by finish time, kept in step by add/remove: the
    #: succeeded and failed tabs page through this (O(log n + page)) instead of filtering and
    #: sorting every entry per request (300 ms at 200,000 results). ~40 bytes per entry.
    ordered: dict[tuple[str, bool], Any] = field(default_factory=dict)

    def add(self, job_id: str, entry: ResultEntry) -> None:
        self.remove(job_id)
        # Names repeat across results: one string each (~115 bytes per entry saved).
        entry = ResultEntry(
            intern(entry.queue),
            intern(entry.function),
            entry.ok,
            entry.finished_at,
            entry.expires_at,
            entry.error,
            intern(entry.exception) if entry.exception is not None else None,
            entry.started_at,
            entry.enqueued_at,
        )
        self.entries[job_id] = entry
        by = (entry.queue, entry.ok)
        if by not in self.ordered:
            self.ordered[by] = SortedKeyList(key=self._finish)
        self.ordered[by].add(job_id)
        self.counts[(entry.queue, "succeeded" if entry.ok else "failed")] += 1
        self._count_flow(entry, 1)
        if entry.expires_at is not None:
            heapq.heappush(self.expiry, (entry.expires_at, job_id))
        if not entry.ok:
            kind, message = split_exception(entry.error)
            self.failures.add(
                Failure(
                    job_id=job_id,
                    queue=entry.queue,
                    name=None if entry.exception == UNDECODABLE else entry.function,
                    exception=entry.exception or kind,
                    message=message if entry.exception != UNDECODABLE else (entry.error or ""),
                    failed_at=entry.finished_at,
                    expires_at=entry.expires_at,
                )
            )

    def remove(self, job_id: str) -> None:
        old = self.entries.get(job_id)
        if old is not None:
            ordered = self.ordered[(old.queue, old.ok)]
            ordered.remove(job_id)  # its key reads the entry: before the pop
            if not ordered:
                del self.ordered[(old.queue, old.ok)]
            del self.entries[job_id]
            self.counts[(old.queue, "succeeded" if old.ok else "failed")] -= 1
            self._count_flow(old, -1)
            if not old.ok:
                self.failures.remove(job_id)

    def expire(self, now: float) -> None:
        while self.expiry and self.expiry[0][0] <= now:
            at, job_id = heapq.heappop(self.expiry)
            entry = self.entries.get(job_id)
            if entry is not None and entry.expires_at == at:  # else a stale item: removed or re-added
                self.remove(job_id)

    def end_pass(self) -> None:
        # Keys not seen in a whole pass are gone (deleted or re-run); forget them.
        for job_id in [j for j in self.entries if j not in self.seen_in_pass and j not in self.pending]:
            self.remove(job_id)
        self.seen_in_pass = set()
        self.passes += 1
        if len(self.expiry) > 2 * len(self.entries) + 1000:  # O(entries), once per pass like the above
            self.expiry = [(e.expires_at, j) for j, e in self.entries.items() if e.expires_at is not None]
            heapq.heapify(self.expiry)

    def _finish(self, job_id: str) -> float:
        # The entry's own float, not a new one: the ordered index costs no float per entry.
        return self.entries[job_id].finished_at or 0.0

    def page(
        self, queue: str, ok: bool, offset: int, limit: int
    ) -> tuple[int, list[tuple[str, ResultEntry]]]:
        """One page of a queue's succeeded or failed results, newest finish first, and their total."""
        ordered = self.ordered.get((queue, ok))
        if ordered is None:
            return 0, []
        total = len(ordered)  # oldest finish first: the page is counted from the end
        ids: list[str] = list(
            ordered.islice(max(0, total - offset - limit), max(0, total - offset), reverse=True)
        )
        return total, [(j, self.entries[j]) for j in ids]

    def _count_flow(self, entry: ResultEntry, sign: int) -> None:
        """Add (1) or take back (-1) one result's outcome, run time (finish - start) and wait (start -
        enqueue: an upper bound, since a result does not keep when a deferred job became due)."""
        if entry.finished_at is None or entry.queue == UNKNOWN_QUEUE or entry.exception == UNDECODABLE:
            return
        minute = int(entry.finished_at // 60)
        series = Series("arq", NAMESPACE, entry.queue, entry.function)
        tallies = self.flow.setdefault(minute, {})
        tally = tallies.setdefault(series, Tally.empty())
        tally.add("s" if entry.ok else "f", sign)
        if entry.started_at is not None:
            run = max(0.0, entry.finished_at - entry.started_at)
            tally.add(f"d{bucket(run)}", sign)
            tally.add("ds", sign * round(run * 1e6))
            if entry.enqueued_at is not None:
                wait = max(0.0, entry.started_at - entry.enqueued_at)
                tally.add(f"w{bucket(wait)}", sign)
                tally.add("ws", sign * round(wait * 1e6))
        if not any(tally.outcomes.values()):
            del tallies[series]
            if not tallies:
                del self.flow[minute]

    def flow_since(self, minute: int) -> dict[int, dict[Series, Tally]]:
        """A copy of the estimated flow from `minute` on (the snapshot's; the index keeps changing)."""
        return {m: {s: t.copy() for s, t in series.items()} for m, series in self.flow.items() if m >= minute}

    @property
    def complete(self) -> bool:
        return self.passes > 0 and not self.pending


@decoder
def result_entry_of(raw: bytes, serializer: str, pttl: int, now: float) -> ResultEntry:
    """The results index's entry for a stored result (run in a decoder process)."""
    return result_entry(decode_record(raw, serializer), pttl, now)


def unreadable_result(call: decoding.Call, reason: str) -> ResultEntry:
    raw, _, pttl, now = call
    return result_entry(payloads.undecodable(raw, reason), pttl, now)


def result_entry(value: dict[str, Any] | Undecodable, pttl: int, now: float) -> ResultEntry:
    if isinstance(value, Undecodable):
        reason = value.reason
        return ResultEntry(
            UNKNOWN_QUEUE,
            "?",
            False,
            None,
            now + pttl / 1000.0 if pttl >= 0 else None,
            f"undecodable: {reason}",
            UNDECODABLE,
        )
    ok = bool(value.get("s"))
    error = kind = None
    if not ok:
        kind, message, _ = exception_parts(value.get("r"))
        error = f"{kind}: {message}" if message else kind
    queue = value.get("q")
    if not isinstance(queue, str):
        queue = DEFAULT_QUEUE
    elif not payloads.is_key(queue):  # no Redis key has this name: a hand-written result, no queue
        queue = UNKNOWN_QUEUE
    return ResultEntry(
        queue=queue,
        function=payloads.safe_str(value.get("f", "?"))[:300],
        ok=ok,
        finished_at=payloads.ms_to_seconds(value.get("ft")),
        expires_at=now + pttl / 1000.0 if pttl >= 0 else None,
        error=error[:300] if error else None,
        exception=kind,
        started_at=payloads.ms_to_seconds(value.get("st")),
        enqueued_at=payloads.ms_to_seconds(value.get("et")),
    )
