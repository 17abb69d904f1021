"""The Dramatiq app a real worker runs for the controls browser test:
`python -m dramatiq tests.browser.controls_worker_app`.

`settle_<queue>(order_id)` fails, with no retries (so straight to the dead letters), until the test
sets HEALED; from then on it succeeds and adds the order to SETTLED, which is how the test sees a
requeued dead letter actually run. The broker URL comes from CONTROLS_TEST_REDIS_URL (the test's own
Redis, never port 6379); the test process declares the same actors on its own broker to send.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

QUEUES = ("billing", "refunds")
HEALED = "controls-test:healed"
SETTLED = "controls-test:settled"


class LedgerLocked(Exception):
    pass


def settle(order_id: int) -> None:
    broker = dramatiq.get_broker()
    assert isinstance(broker, RedisBroker)
    if not broker.client.exists(HEALED):
        raise LedgerLocked(f"ledger locked, order {order_id} not settled (callboard controls test)")
    broker.client.sadd(SETTLED, order_id)


def actor_name(queue: str) -> str:
    return f"settle_{queue}"


def declare_actors(broker: RedisBroker) -> dict[str, Any]:
    """One actor per queue, bound to `broker`, named by `actor_name`."""
    return {
        actor_name(queue): dramatiq.actor(
            broker=broker, actor_name=actor_name(queue), queue_name=queue, max_retries=0
        )(settle)
        for queue in QUEUES
    }


if "CONTROLS_TEST_REDIS_URL" in os.environ:  # the worker process: bind the global broker
    broker = RedisBroker(url=os.environ["CONTROLS_TEST_REDIS_URL"])  # type: ignore[no-untyped-call]
    dramatiq.set_broker(broker)
    actors = declare_actors(broker)
