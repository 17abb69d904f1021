"""FailureThrottle: a burst, then one attempt per refill period, bounded memory (a hand-turned clock)."""

from __future__ import annotations

from callboard.dashboard.throttle import FailureThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_a_second_with_the_wait_in_whole_seconds() -> None:
    clock = Clock()
    throttle = FailureThrottle(burst=3, per_second=0.5, clock=clock)
    for _ in range(3):
        assert throttle.wait("a") == 0
        throttle.take("a")
    assert throttle.wait("a") == 2  # 0.5 tokens a second: 2 s to the next
    assert throttle.wait("b") == 0  # other keys are apart
    clock.now += 1.0
    assert throttle.wait("a") == 1
    clock.now += 1.0
    assert throttle.wait("a") == 0
    throttle.take("a")
    assert throttle.wait("a") == 2
    clock.now += 3600
    for _ in range(3):  # refilled to the burst, never beyond
        assert throttle.wait("a") == 0
        throttle.take("a")
    assert throttle.wait("a") == 2


def test_success_gives_the_token_back() -> None:
    throttle = FailureThrottle(burst=1, per_second=1.0, clock=Clock())
    throttle.take("a")
    assert throttle.wait("a") == 1
    throttle.give_back("a")
    assert throttle.wait("a") == 0


def test_memory_is_bounded_least_recently_used_first() -> None:
    throttle = FailureThrottle(burst=1, per_second=1.0, max_keys=100, clock=Clock())
    for i in range(10_000):
        throttle.take(f"client-{i}")
    assert len(throttle._buckets) == 100
    assert throttle.wait("client-9999") == 1
    assert throttle.wait("client-0") == 0  # dropped, so starts full again
