"""A Dramatiq app for integration tests, run by real `dramatiq` worker processes.

    ITEST_REDIS_URL=redis://127.0.0.1:PORT/0 ITEST_NAMESPACE=dramatiq \\
        python -m dramatiq tests.integration.dramatiq_app --processes 1 --threads 2

The test process imports this module too (without the environment) and calls `build()` to get a
producer broker and the same actors, so it sends real messages with `actor.send()`.

Actors are steered through plain Redis keys the test sets (prefix `itest-control:`, in the same
database, so discovery also has to ignore keys that are not Dramatiq's):

* `hold(gate)` records that it started, then blocks until the test pushes a token onto its gate.
* `retry_later(tag)` always fails, and retries with a backoff of tens of seconds: it sits delayed.
* `doomed(tag)` always fails with one quick retry: it ends up dead-lettered.
* `flaky(tag)` counts its runs per tag and fails (no retries: dead at once) while the test's
  `broken` key exists; it has a short `max_age`, so a requeued message runs only if the requeue
  reset its timestamp.
* `fine(tag)` succeeds.

With `ITEST_FLOW=1` the worker runs the flow companion (`FlowMiddleware`); without it, none.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

CONTROL = "itest-control"
#: The queues each test namespace uses (any namespace not listed gets DEFAULT_QUEUES).
DEFAULT_QUEUES = ("default", "emails")
#: How long a held actor waits for its gate before giving up (so a failed test never hangs a worker).
HOLD_TIMEOUT_SECONDS = 60
#: retry_later's backoff: far beyond the test's duration, so its retries stay delayed.
RETRY_LATER_MIN_BACKOFF_MS = 40_000
#: flaky's max_age: a dead letter older than this is skipped unrun unless its timestamp is reset.
FLAKY_MAX_AGE_MS = 1_500
BROKEN = f"{CONTROL}:broken"

_control: redis.Redis | None = None


def started_key(gate: str) -> str:
    return f"{CONTROL}:started:{gate}"


def gate_key(gate: str) -> str:
    return f"{CONTROL}:gate:{gate}"


def attempts_key(tag: str) -> str:
    return f"{CONTROL}:attempts:{tag}"


def control() -> redis.Redis:
    global _control
    if _control is None:
        _control = redis.Redis.from_url(os.environ["ITEST_REDIS_URL"])
    return _control


def hold(gate: str, n: int = 0) -> str:
    client = control()
    client.incr(started_key(gate))
    if client.blpop([gate_key(gate)], timeout=HOLD_TIMEOUT_SECONDS) is None:
        raise RuntimeError(f"gate {gate!r} was never opened")
    return f"released {n}"


def retry_later(tag: str) -> None:
    attempt = control().incr(attempts_key(tag))
    raise ValueError(f"retry_later {tag} attempt {attempt}")


def doomed(tag: str) -> None:
    attempt = control().incr(attempts_key(tag))
    raise ValueError(f"doomed {tag} attempt {attempt}")


def runs_key(tag: str) -> str:
    return f"{CONTROL}:runs:{tag}"


def flaky(tag: str) -> str:
    client = control()
    client.incr(runs_key(tag))
    if client.exists(BROKEN):
        raise ValueError(f"flaky {tag}: broken")
    return f"ok {tag}"


def fine(tag: str) -> str:
    return f"fine {tag}"


def build(
    url: str, namespace: str, queues: tuple[str, ...] = DEFAULT_QUEUES
) -> tuple[RedisBroker, dict[str, Any]]:
    """A broker for `namespace` and, per queue Q, actors `hold_Q`, `retry_later_Q`, `doomed_Q`,
    `flaky_Q` and `fine_Q`."""
    broker = RedisBroker(url=url, namespace=namespace, maintenance_chance=0)  # type: ignore[no-untyped-call]
    actors: dict[str, Any] = {}
    for queue in queues:
        actors[f"hold_{queue}"] = dramatiq.actor(
            broker=broker, queue_name=queue, actor_name=f"hold_{queue}", max_retries=0
        )(hold)
        actors[f"retry_later_{queue}"] = dramatiq.actor(
            broker=broker,
            queue_name=queue,
            actor_name=f"retry_later_{queue}",
            max_retries=5,
            min_backoff=RETRY_LATER_MIN_BACKOFF_MS,
            max_backoff=2 * RETRY_LATER_MIN_BACKOFF_MS,
        )(retry_later)
        actors[f"doomed_{queue}"] = dramatiq.actor(
            broker=broker,
            queue_name=queue,
            actor_name=f"doomed_{queue}",
            max_retries=1,
            min_backoff=50,
            max_backoff=200,
        )(doomed)
        actors[f"flaky_{queue}"] = dramatiq.actor(
            broker=broker,
            queue_name=queue,
            actor_name=f"flaky_{queue}",
            max_retries=0,
            max_age=FLAKY_MAX_AGE_MS,
        )(flaky)
        actors[f"fine_{queue}"] = dramatiq.actor(
            broker=broker, queue_name=queue, actor_name=f"fine_{queue}", max_retries=0
        )(fine)
    return broker, actors


if "ITEST_REDIS_URL" in os.environ:  # imported by a dramatiq worker process
    _queues = tuple(os.environ.get("ITEST_QUEUES", ",".join(DEFAULT_QUEUES)).split(","))
    broker, actors = build(
        os.environ["ITEST_REDIS_URL"], os.environ.get("ITEST_NAMESPACE", "dramatiq"), _queues
    )
    if os.environ.get("ITEST_FLOW") == "1":
        from callboard.companion.dramatiq import FlowMiddleware

        broker.add_middleware(FlowMiddleware(interval=0.5))
    dramatiq.set_broker(broker)
