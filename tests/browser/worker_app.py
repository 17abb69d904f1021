"""The Dramatiq app a real worker runs in the browser tests: `python -m dramatiq tests.browser.worker_app`.

The broker URL comes from BROWSER_TEST_REDIS_URL (the test's own Redis, never port 6379). The test
process declares the same actors on its own broker with `declare_actors` and sends through them.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

#: Raised by `explode`; the browser test looks for this text in the job page's traceback.
FAILURE_MESSAGE = "payment gateway said no (callboard browser test)"
DEAD_QUEUE = "billing"
DEAD_ACTOR = "charge_card_browser_test"


class GatewayRefused(Exception):
    pass


def explode(order_id: int) -> None:
    raise GatewayRefused(f"{FAILURE_MESSAGE}: order {order_id}")


def declare_actors(broker: RedisBroker) -> dict[str, Any]:
    """The actors, bound to `broker`. One retry with a tiny backoff, so the dead copy has a traceback
    (Dramatiq stores the traceback of the attempt before the last) and dies within a second."""
    return {
        DEAD_ACTOR: dramatiq.actor(
            broker=broker,
            actor_name=DEAD_ACTOR,
            queue_name=DEAD_QUEUE,
            max_retries=1,
            min_backoff=10,
            max_backoff=50,
        )(explode)
    }


if "BROWSER_TEST_REDIS_URL" in os.environ:  # the worker process: bind the global broker
    broker = RedisBroker(url=os.environ["BROWSER_TEST_REDIS_URL"])  # type: ignore[no-untyped-call]
    dramatiq.set_broker(broker)
    actors = declare_actors(broker)
