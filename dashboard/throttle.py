"""Token buckets that throttle failed sign-ins, per client address and per user name.

Each key starts with `burst` tokens and regains `per_second`; an attempt that could fail takes a token
first (so a crowd of concurrent guesses cannot all start before the first one fails), and gets it back
when it succeeds. With no token left the attempt is refused at once, with how long until the next one:
no scrypt work is done for it. Memory is bounded: at most `max_keys` buckets, least recently used
dropped first (a dropped bucket starts full again, which only matters to an attacker with more
addresses than that, and the per-user bucket still holds for them). O(1) per call.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class FailureThrottle:
    def __init__(
        self,
        burst: int = 10,
        per_second: float = 1.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = float(burst)
        self.per_second = per_second
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.per_second)
            bucket.at = now
            self._buckets.move_to_end(key)
        return bucket

    def wait(self, key: str) -> int:
        """Whole seconds until `key` may try again; 0 when it may now (nothing is taken)."""
        bucket = self._refilled(key)
        if bucket.tokens >= 1:
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self.per_second))

    def take(self, key: str) -> None:
        """Spend one token of `key` (an attempt that may fail); call after `wait` answered 0."""
        self._refilled(key).tokens -= 1

    def give_back(self, key: str) -> None:
        """The attempt succeeded: it costs nothing."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + 1)
