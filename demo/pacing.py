"""When the demo traffic generators send what: shared by the Dramatiq and the Arq generator.

A steady trickle with exponential gaps (irregular, like real traffic), a burst every so often (the
first one soon, so a new viewer sees one), and a summary line every `SUMMARY_EVERY` seconds. The
generators only say how to send; this says when.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

SUMMARY_EVERY = 30.0
#: Pause after Redis refused a send (it may be starting, or restarting in compose).
REDIS_RETRY_SECONDS = 1.0


def weighted(rng: random.Random, choices: Sequence[tuple[int, T]]) -> T:
    """One item of `(weight, item)` pairs, by weight."""
    return rng.choices([item for _, item in choices], weights=[w for w, _ in choices])[0]


class Pacer:
    def __init__(
        self,
        rng: random.Random,
        rate: float,
        first_burst: tuple[float, float],
        burst_every: tuple[float, float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rng = rng
        self.rate = rate
        self.burst_every = burst_every
        self.clock = clock
        now = clock()
        self.next_burst = now + rng.uniform(*first_burst)
        self.next_summary = now + SUMMARY_EVERY

    def burst_due(self) -> bool:
        """True once per burst interval; the next one is scheduled from now."""
        if self.clock() < self.next_burst:
            return False
        self.next_burst = self.clock() + self.rng.uniform(*self.burst_every)
        return True

    def summary_due(self) -> bool:
        if self.clock() < self.next_summary:
            return False
        self.next_summary += SUMMARY_EVERY
        return True

    def gap(self) -> float:
        """Seconds until the next steady send."""
        return self.rng.expovariate(self.rate)
