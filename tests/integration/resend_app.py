"""Task code for the "copy as code" test (tests/integration/test_resend.py), run by real workers:

    ITEST_REDIS_URL=redis://127.0.0.1:PORT/0 python -m dramatiq tests.integration.resend_app
    ITEST_REDIS_URL=redis://127.0.0.1:PORT/0 python -m arq tests.integration.resend_app.WorkerSettings

Both `echo`s record every call's arguments in Redis and fail while the test's `broken` key exists, so
the first run leaves a dead letter (Dramatiq) or a failed result (Arq) and a re-sent job succeeds.
Dramatiq records JSON (what its messages hold); Arq records a pickle, which the test reads with
Callboard's restricted unpickler.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import redis
from arq.connections import RedisSettings
from dramatiq.brokers.redis import RedisBroker

URL = os.environ.get("ITEST_REDIS_URL", "")
NAMESPACE = "resend"
QUEUE = "snippets"
ARQ_QUEUE = "resend:arq"
BROKEN = "itest-resend:broken"
DRAMATIQ_CALLS = "itest-resend:calls:dramatiq"
ARQ_CALLS = "itest-resend:calls:arq"

_client: redis.Redis | None = None


def echo(*args: Any, **kwargs: Any) -> None:
    global _client
    _client = _client or redis.Redis.from_url(URL)
    _client.rpush(DRAMATIQ_CALLS, json.dumps([args, kwargs]))
    if _client.exists(BROKEN):
        raise ValueError("broken")


def build(url: str) -> tuple[RedisBroker, dramatiq.Actor[..., None]]:
    """A broker on `url` in the test namespace, and the `echo` actor on it (no retries: dead at once)."""
    broker = RedisBroker(url=url, namespace=NAMESPACE, maintenance_chance=0)  # type: ignore[no-untyped-call]
    actor = dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name="echo", max_retries=0)(echo)
    return broker, actor


async def arq_echo(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    await ctx["redis"].rpush(ARQ_CALLS, pickle.dumps((args, kwargs)))
    if await ctx["redis"].exists(BROKEN):
        raise ValueError("broken")


class WorkerSettings:
    functions = [arq_echo]
    redis_settings = RedisSettings(host="127.0.0.1", port=urlsplit(URL).port or 0)
    queue_name = ARQ_QUEUE
    health_check_interval = 2
    poll_delay = 0.05
    max_tries = 1


if URL:  # imported by a worker process
    dramatiq.set_broker(build(URL)[0])
