"""The latest snapshot per target, plus a bounded ring of depths for charts.

Every page, fragment, API call and Prometheus scrape reads from here, never from Redis, so viewers
and scrapers do not multiply Redis load. Only the poller writes, on the event loop; renders read from
worker threads, which is safe because every update replaces whole immutable values.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from callboard.collectors.model import QueueStats, TargetSnapshot


@dataclass(frozen=True, slots=True)
class TargetState:
    name: str
    #: The target's URL with any password removed.
    url: str
    up: bool = False
    #: The last good snapshot; kept while the target is down so pages can say "as of".
    snapshot: TargetSnapshot | None = None
    error: str | None = None
    errors_total: int = 0
    last_attempt_at: float | None = None
    last_duration: float | None = None
    down_since: float | None = None

    @property
    def ready(self) -> bool:
        return self.up and self.snapshot is not None


class SnapshotStore:
    def __init__(self, targets: Iterable[tuple[str, str]], history_points: int = 900) -> None:
        self._states = {name: TargetState(name, url) for name, url in targets}
        self._history_points = history_points
        #: (target, queue key) -> ring of (time, counts by state). One ring per queue, so a page
        #: about one queue copies that queue's points only, whatever the number of queues.
        self._history: dict[tuple[str, str], deque[tuple[float, Mapping[str, int]]]] = {}
        #: Bumped on every update: lets clients and tests see that a new cycle landed.
        self.version = 0

    def targets(self) -> list[TargetState]:
        return list(self._states.values())

    def get(self, name: str) -> TargetState | None:
        return self._states.get(name)

    def record(self, snapshot: TargetSnapshot) -> None:
        state = self._states[snapshot.target]
        self._states[snapshot.target] = replace(
            state,
            up=True,
            snapshot=snapshot,
            error=None,
            last_attempt_at=snapshot.collected_at,
            last_duration=snapshot.duration,
            down_since=None,
        )
        seen: set[tuple[str, str]] = set()
        for q in snapshot.queues:
            key = (snapshot.target, q.key)
            seen.add(key)
            ring = self._history.get(key)
            if ring is None:
                ring = self._history[key] = deque(maxlen=self._history_points)
            ring.append((snapshot.collected_at, dict(q.counts)))
        # Queues that left the snapshot (past their idle time) take their history with them.
        for key in [k for k in self._history if k[0] == snapshot.target and k not in seen]:
            del self._history[key]
        self.version += 1

    def record_error(self, target: str, error: str, duration: float) -> None:
        state = self._states[target]
        now = time.time()
        self._states[target] = replace(
            state,
            up=False,
            error=error,
            errors_total=state.errors_total + 1,
            last_attempt_at=now,
            last_duration=duration,
            down_since=state.down_since or now,
        )
        self.version += 1

    def queues(self) -> list[tuple[TargetState, QueueStats]]:
        return [(s, q) for s in self._states.values() if s.snapshot for q in s.snapshot.queues]

    def queue(self, target: str, framework: str, key: str) -> tuple[TargetState, QueueStats] | None:
        state = self._states.get(target)
        if state is None or state.snapshot is None:
            return None
        found = next((q for q in state.snapshot.queues if q.key == key and q.framework == framework), None)
        return (state, found) if found else None

    def history(self, target: str, key: str) -> list[tuple[float, Mapping[str, int]]]:
        """(time, counts by state) for one queue, oldest first; bounded by the ring size.

        Pages render in worker threads while the poller appends on the event loop: `list()` of a
        deque copies it in one C call under the GIL, so the copy is consistent and iteration over
        it cannot see a mutation.
        """
        return list(self._history.get((target, key), ()))
