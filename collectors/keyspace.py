"""Bounded, incremental SCAN over a target's keyspace, shared by every framework module.

A full SCAN costs about 0.5-1 ms per 1,000 keys of the whole database (MATCH does not make it
cheaper), so it never runs in one go: each collection cycle takes at most `budget` SCAN calls and
resumes from the saved cursor next time. Frameworks classify the keys; this module knows no layout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from callboard.collectors.model import DiscoveryStatus

#: Keys asked for per SCAN call. Larger is fewer round trips but longer server-side steps.
SCAN_COUNT = 1000


@dataclass(frozen=True, slots=True)
class ScanBatch:
    keys: tuple[str, ...]
    #: This batch finished a full pass over the keyspace.
    pass_complete: bool
    round_trips: int


class KeyspaceScanner:
    """Remembers the SCAN cursor between cycles; one per target."""

    def __init__(self, budget: int = 20, count: int = SCAN_COUNT, rescan_interval: float = 15.0) -> None:
        self.budget = budget
        self.count = count
        #: After a full pass, wait up to this long before the next one: 0.25 s per SCAN call the pass
        #: took, so a small database is rescanned at once and a large one at most every 15 s.
        self.rescan_interval = rescan_interval
        self._resume_at = 0.0
        self._calls_in_pass = 0
        self._cursor = 0
        self._scanned_in_pass = 0
        self._passes = 0
        self._last_pass_at: float | None = None
        self._db_size: int | None = None

    async def step(self, redis: Redis) -> ScanBatch:
        """Run up to `budget` SCAN calls; stops early at the end of a pass."""
        keys: list[str] = []
        calls = 0
        complete = False
        if self._cursor == 0 and time.monotonic() < self._resume_at:
            return ScanBatch((), False, 0)
        while calls < self.budget:
            cursor, batch = await redis.scan(cursor=self._cursor, count=self.count)
            calls += 1
            self._calls_in_pass += 1
            self._cursor = int(cursor)
            keys.extend(text(k) for k in batch)
            self._scanned_in_pass += len(batch)
            if self._cursor == 0:
                complete = True
                self._passes += 1
                self._last_pass_at = time.time()
                self._scanned_in_pass = 0
                pause = min(self.rescan_interval, 0.25 * self._calls_in_pass)
                self._resume_at = time.monotonic() + pause
                self._calls_in_pass = 0
                break
        return ScanBatch(tuple(keys), complete, calls)

    def rescan_soon(self) -> None:
        """Start the next pass at the next step (after a write, or when a user asks)."""
        self._resume_at = 0.0

    def note_db_size(self, size: int | None) -> None:
        self._db_size = size

    def status(self) -> DiscoveryStatus:
        return DiscoveryStatus(
            complete=self._passes > 0,
            scanned_in_pass=self._scanned_in_pass,
            passes=self._passes,
            last_pass_at=self._last_pass_at,
            db_size=self._db_size,
        )


def text(value: bytes | str) -> str:
    # surrogateescape keeps non-UTF-8 key names round-trippable: the client encodes them back the same way.
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
