"""The Dramatiq app the bulk bench's real worker runs: it counts every run of every seeded message.

    BENCH_REDIS_URL=redis://127.0.0.1:PORT/5 python -m dramatiq bench.worker_app --processes 1

`bench.seed` writes messages for actor `bench_actor` with args (index, item); each run adds 1 to
field `index` of the hash `bench:runs`, so afterwards HLEN says how many distinct messages ran and
any value above 1 is a message that ran twice.
"""

from __future__ import annotations

import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

RUNS = "bench:runs"
NAMESPACE = "bulk"

_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")
broker = RedisBroker(url=_url, namespace=NAMESPACE)  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)
_client = redis.Redis.from_url(_url)


@dramatiq.actor(queue_name="default", max_retries=0)
def bench_actor(index: int, item: str, priority: int = 0) -> None:
    _client.hincrby(RUNS, str(index), 1)
