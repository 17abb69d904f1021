"""Background work started by a request: controls (operations.py) and searches (searches.py).

Both are asyncio tasks that outlive the request that started them, report progress while they run,
and are remembered for a while after they end so their progress URLs keep answering. `Tasks` is that
bookkeeping, once: an identical request while one is running joins it (double clicks, reloads, open
tabs), at most `keep` ended ones are remembered, and `run` captures how one ended, so a failure of
Redis or a bug ends that task, visibly, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, Protocol, TypeVar

from redis.exceptions import NoPermissionError, RedisError


class Tracked(Protocol):
    """What a background task's record has: Operation and Search."""

    id: str
    finished_at: float | None
    error: str | None
    #: The HTTP status a failed one answers with: 403 (ACL refused), 503 (Redis failed), 500 (a bug).
    error_status: int | None
    task: asyncio.Task[None] | None

    @property
    def status(self) -> str: ...

    @property
    def dedupe_key(self) -> Hashable: ...


T = TypeVar("T", bound=Tracked)


class Tasks(Generic[T]):
    """Records of one kind of background task, newest last; the running ones are never dropped."""

    def __init__(self, kind: str, keep: int) -> None:
        self.kind = kind
        self.keep = keep
        self._items: OrderedDict[str, T] = OrderedDict()

    def get(self, item_id: str) -> T | None:
        return self._items.get(item_id)

    def recent(self) -> list[T]:
        """Newest first."""
        return list(reversed(self._items.values()))

    def running(self) -> list[T]:
        return [t for t in self._items.values() if t.status == "running"]

    def joinable(self, key: Hashable) -> T | None:
        """The running task started by an identical request, if any."""
        return next((t for t in self._items.values() if t.status == "running" and t.dedupe_key == key), None)

    def start(self, item: T, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` for `item` as a task; forget the oldest ended records beyond `keep`."""
        item.task = asyncio.create_task(work, name=f"{self.kind}:{item.id}")
        self._items[item.id] = item
        ended = [k for k, t in self._items.items() if t.status != "running"]
        for key in ended[: max(0, len(ended) - self.keep)]:
            del self._items[key]

    async def close(self) -> None:
        """Cancel running tasks (the app is shutting down)."""
        tasks = [t.task for t in self._items.values() if t.task and not t.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run(
    item: Tracked,
    work: Callable[[], Awaitable[None]],
    log: logging.Logger,
    progress: Callable[[], str] = str,
    acl_hint: str = "",
) -> None:
    """Run `work`, recording how it ended on `item`: finished, or failed with a reason and a status.

    `progress()` says how far it got (" after 12 jobs"), for the reason."""
    try:
        await work()
    except NoPermissionError as exc:
        item.error = (
            f"the Redis user may not do this (its ACL refused a command){progress()}: {exc}.{acl_hint}"
        )[:400]
        item.error_status = 403
    except (RedisError, OSError) as exc:
        item.error = f"Redis failed{progress()}: {type(exc).__name__}: {exc}"[:300]
        item.error_status = 503
    except Exception as exc:  # a bug ends this task, visibly, and nothing else
        log.exception("%s failed", item.id)
        item.error = f"internal error{progress()}: {type(exc).__name__}"
        item.error_status = 500
    finally:
        item.finished_at = time.time()
