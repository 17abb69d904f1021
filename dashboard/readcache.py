"""Results of on-demand Redis reads (long chart ranges), shared by every viewer for `max_age` seconds.

Ten tabs on one queue's 7-day chart cost one LRANGE per `max_age`, not ten per refresh: a read in
flight is awaited by everyone who asks for the same key meanwhile (one load at a time per key), and its
result is kept. Failures are not kept: the next caller tries again. Bounded: at most `size` keys,
the oldest dropped first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class ReadCache:
    def __init__(self, max_age: float, size: int = 256) -> None:
        self.max_age = max_age
        self.size = size
        self._done: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        kept = self._done.get(key)
        if kept is not None and time.monotonic() - kept[0] < self.max_age:
            return cast(T, kept[1])
        running = self._loading.get(key)
        if running is not None:
            return cast(T, await asyncio.shield(running))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(value)
            self._done[key] = (time.monotonic(), value)
            self._done.move_to_end(key)
            while len(self._done) > self.size:
                self._done.popitem(last=False)
            return value
        finally:
            del self._loading[key]
