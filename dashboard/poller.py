"""One background loop per target: collect, store, sleep; errors mark the target down, never crash.

Redis down, slow or restarted: the cycle fails (or times out), the store records `up = False` with
the reason, and the next cycle tries again with a fresh connection, so recovery needs nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from callboard.collectors.target import TargetCollector
from callboard.dashboard.redispool import POLLER, trim_pools
from callboard.dashboard.store import SnapshotStore

log = logging.getLogger("callboard.poller")


class Poller:
    def __init__(
        self,
        store: SnapshotStore,
        collectors: dict[str, TargetCollector],
        interval: float,
        timeout: float,
        pools: Mapping[str, Sequence[Redis]] | None = None,
    ) -> None:
        self.store = store
        self.collectors = collectors
        self.interval = interval
        #: A whole cycle may take this long before it counts as failed.
        self.timeout = timeout
        #: Clients of each target whose idle connections are closed after every cycle: the poll loop
        #: is the app's one timer, so no second loop exists for this.
        self.pools = pools or {}
        self._wake = {name: asyncio.Event() for name in collectors}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(name), name=f"poll:{name}") for name in self.collectors]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def refresh(self, target: str | None = None) -> None:
        """Collect now instead of at the next tick (after a write, so numbers move within one poll)."""
        for name, event in self._wake.items():
            if target is None or name == target:
                event.set()

    async def collect_once(self, name: str) -> None:
        collector = self.collectors[name]
        started = time.perf_counter()
        try:
            snapshot = await asyncio.wait_for(collector.collect(), timeout=self.timeout)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(name, _describe(exc), started)
        except Exception as exc:  # a bug must not stop the loop; it is logged with its traceback
            log.exception("collection from %s failed", name)
            self._failed(name, f"internal error: {type(exc).__name__}", started)
        else:
            state = self.store.get(name)
            if state is not None and state.down_since is not None:
                down_for = time.time() - state.down_since
                log.info("target %s (%s) is reachable again after %.0f s down", name, state.url, down_for)
            self.store.record(snapshot)

    def _failed(self, name: str, reason: str, started: float) -> None:
        # Logged once per outage: when it begins, whether the target was up or never answered (a typo
        # in its URL fails the very first cycle); the cycles that fail after it are counted only.
        state = self.store.get(name)
        if state is not None and state.down_since is None:
            log.warning("target %s (%s) is unreachable: %s", name, state.url, reason)
        self.store.record_error(name, reason, time.perf_counter() - started)

    async def _loop(self, name: str) -> None:
        POLLER.set(True)  # this task's Redis commands may use the connection kept for the poller
        wake = self._wake[name]
        while True:
            # Cleared before the cycle, not after: a refresh() that arrives while this cycle runs (it
            # may have read before the write that asked for it) starts one more cycle at once.
            wake.clear()
            await self.collect_once(name)
            await trim_pools(self.pools.get(name, ()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=self.interval)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out waiting for Redis"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
