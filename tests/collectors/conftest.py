"""Fixtures for collector tests: a flushed server of our own (Redis and Valkey), real Dramatiq brokers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from redis.asyncio import Redis

from callboard.collectors.arq import browse as arq_browse
from callboard.collectors.arq import snapshot as arq_snapshot
from callboard.collectors.dramatiq import deadletters as dramatiq_deadletters
from callboard.collectors.dramatiq import snapshot as dramatiq_snapshot
from callboard.collectors.dramatiq.config import DramatiqConfig
from callboard.collectors.dramatiq.snapshot import DramatiqCollector
from callboard.collectors.target import TargetCollector
from tests.conftest import flushed
from tests.servers import RedisServer

BrokerFactory = Callable[..., Any]
CollectorFactory = Callable[..., TargetCollector]


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server (ours, Redis and Valkey in turn), emptied for this test."""
    return flushed(redis_server)


@pytest.fixture
def sync_redis(control: redis.Redis) -> redis.Redis:
    """tests/conftest.py's `control`, on this folder's server (Redis and Valkey in turn)."""
    return control


@pytest.fixture
def brokers(redis_url: str) -> Iterator[BrokerFactory]:
    """`brokers(namespace="dramatiq")`: a real RedisBroker (one broker id, like one process) on our server."""
    made: list[Any] = []

    def make(namespace: str = "dramatiq", url: str | None = None) -> Any:
        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=url or redis_url, namespace=namespace, maintenance_chance=0
        )
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.client.close()


@pytest.fixture
async def collectors(aredis: Redis) -> CollectorFactory:
    """`collectors(heartbeat_timeout=..., ...)`: a TargetCollector on our server with that DramatiqConfig."""

    def make(scan_budget: int = 20, **config: Any) -> TargetCollector:
        return TargetCollector(
            "test", aredis, DramatiqCollector(DramatiqConfig(**config)), scan_budget=scan_budget
        )

    return make


class FrozenTime:
    """The `time` module as the collector modules see it: `time()` answers `now`, the rest is real."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenTime:
    """A clock the test moves: the Dramatiq and Arq collectors read `clock.now` as the time.

    It starts at a whole second near the real time, so ages computed from scores the test seeds in
    whole milliseconds are exact."""
    frozen = FrozenTime(float(int(time.time())))
    for module in (dramatiq_snapshot, dramatiq_deadletters, arq_snapshot, arq_browse):
        monkeypatch.setattr(module, "time", frozen)
    return frozen


def noop(*args: Any, **kwargs: Any) -> None:
    """The body of test actors: collector tests never run them."""


def make_actor(broker: Any, queue: str = "default", name: str | None = None, **options: Any) -> Any:
    """A real actor on `broker` (named `work_<queue>` unless given: names are unique per broker)."""
    return dramatiq.actor(broker=broker, queue_name=queue, actor_name=name or f"work_{queue}", **options)(
        noop
    )
