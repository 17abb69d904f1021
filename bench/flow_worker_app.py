"""The Dramatiq app the flow bench runs: a no-op actor, with the flow companion when BENCH_FLOW=1.

    BENCH_REDIS_URL=redis://127.0.0.1:PORT/6 BENCH_FLOW=1 python -m dramatiq bench.flow_worker_app

`bench.seed` writes its messages (actor `bench_actor`, args (index, item)); the actor does nothing, so
what the bench times is Dramatiq's own per-message work, with and without the companion's.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from callboard.companion.dramatiq import FlowMiddleware

NAMESPACE = "flowbench"

broker = RedisBroker(  # type: ignore[no-untyped-call]
    url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0"), namespace=NAMESPACE
)
if os.environ.get("BENCH_FLOW") == "1":
    broker.add_middleware(FlowMiddleware())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="default", max_retries=0)
def bench_actor(index: int, item: str, priority: int = 0) -> None:
    """Nothing: the bench measures the worker around it."""
