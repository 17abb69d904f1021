"""The Dramatiq app a real worker runs for the failures browser test:
`python -m dramatiq tests.browser.failures_worker_app`.

Three causes of failure, so the failures page has three groups:

- `charge(order_id)` on PAYMENTS raises CardDeclined for a positive order until the test sets HEALED;
  from then on it succeeds and appends the order to the list CHARGED (how the test sees each run of
  a requeued job).
- `charge(order_id)` for a negative order raises ValueError, healed or not: same actor, another group.
- `ship(parcel_id)` on SHIPPING always raises CarrierTimeout.

Every actor retries once after a few milliseconds (max_retries=1), so each dead letter keeps the
traceback of its first attempt. The broker URL comes from FAILURES_TEST_REDIS_URL (the test's own
Redis, never port 6379); the test process declares the same actors on its own broker to send.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

PAYMENTS = "payments"
SHIPPING = "shipping"
HEALED = "failures-test:healed"
CHARGED = "failures-test:charged"
#: Retry once, almost at once: the dead letter then carries the first attempt's traceback.
RETRY: dict[str, Any] = {"max_retries": 1, "min_backoff": 10, "max_backoff": 20}


class CardDeclined(Exception):
    pass


class CarrierTimeout(Exception):
    pass


def charge(order_id: int) -> None:
    broker = dramatiq.get_broker()
    assert isinstance(broker, RedisBroker)
    if order_id < 0:
        raise ValueError(f"invalid order id {order_id}")
    if not broker.client.exists(HEALED):
        raise CardDeclined(f"card declined for order {order_id} (code 51)")
    broker.client.rpush(CHARGED, order_id)


def ship(parcel_id: int) -> None:
    raise CarrierTimeout(f"carrier did not answer in 3000 ms for parcel {parcel_id}")


def declare_actors(broker: RedisBroker) -> dict[str, Any]:
    """The two actors, bound to `broker`, by name."""
    return {
        "charge": dramatiq.actor(broker=broker, actor_name="charge", queue_name=PAYMENTS, **RETRY)(charge),
        "ship": dramatiq.actor(broker=broker, actor_name="ship", queue_name=SHIPPING, **RETRY)(ship),
    }


if "FAILURES_TEST_REDIS_URL" in os.environ:  # the worker process: bind the global broker
    broker = RedisBroker(url=os.environ["FAILURES_TEST_REDIS_URL"])  # type: ignore[no-untyped-call]
    dramatiq.set_broker(broker)
    actors = declare_actors(broker)
