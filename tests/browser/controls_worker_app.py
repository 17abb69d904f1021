"""The Dramatiq app a real worker runs for the controls browser test:
`python -m dramatiq tests.browser.controls_worker_app`.

`settle_<queue>(order_id)` fails, with no retries (so straight to the dead letters), until the test
sets HEALED; from then on it succeeds and adds the order to SETTLED, which is how the test sees a
requeued dead letter actually run. An order in HOLD waits (a blocking BLPOP on `release_key`, at
most HOLD_SECONDS) before it settles, so the test can look at it while it runs. `file_dispute`
always fails, with no retries: the test's stream of dead letters that keep arriving. The broker URL
comes from CONTROLS_TEST_REDIS_URL (the test's own Redis, never port 6379); the test process
declares the same actors on its own broker to send.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

QUEUES = ("billing", "refunds", "invoices")
DISPUTES = "disputes"
HEALED = "controls-test:healed"
SETTLED = "controls-test:settled"
HOLD = "controls-test:hold"
#: The longest an order in HOLD waits for its release (the test releases it long before).
HOLD_SECONDS = 30


class LedgerLocked(Exception):
    pass


class DisputeRejected(Exception):
    pass


def release_key(order_id: int) -> str:
    return f"controls-test:release:{order_id}"


def settle(order_id: int) -> None:
    broker = dramatiq.get_broker()
    assert isinstance(broker, RedisBroker)
    if broker.client.sismember(HOLD, str(order_id)):
        broker.client.blpop([release_key(order_id)], timeout=HOLD_SECONDS)
    if not broker.client.exists(HEALED):
        raise LedgerLocked(f"ledger locked, order {order_id} not settled (callboard controls test)")
    broker.client.sadd(SETTLED, order_id)


def file_dispute(case: int) -> None:
    raise DisputeRejected(f"dispute {case} rejected (callboard controls test)")


def actor_name(queue: str) -> str:
    return f"settle_{queue}"


def declare_actors(broker: RedisBroker) -> dict[str, Any]:
    """One actor per queue, bound to `broker`, named by `actor_name`, and `file_dispute`."""
    actors: dict[str, Any] = {
        actor_name(queue): dramatiq.actor(
            broker=broker, actor_name=actor_name(queue), queue_name=queue, max_retries=0
        )(settle)
        for queue in QUEUES
    }
    actors["file_dispute"] = dramatiq.actor(
        broker=broker, actor_name="file_dispute", queue_name=DISPUTES, max_retries=0
    )(file_dispute)
    return actors


if "CONTROLS_TEST_REDIS_URL" in os.environ:  # the worker process: bind the global broker
    broker = RedisBroker(url=os.environ["CONTROLS_TEST_REDIS_URL"])  # type: ignore[no-untyped-call]
    dramatiq.set_broker(broker)
    actors = declare_actors(broker)
