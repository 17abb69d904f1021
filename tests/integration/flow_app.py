"""Dramatiq and Arq apps with the flow companion, whose jobs have known run times and outcomes.

    ITEST_REDIS_URL=redis://127.0.0.1:PORT/0 python -m dramatiq tests.integration.flow_app
    ITEST_REDIS_PORT=PORT python -m arq tests.integration.flow_app.ArqSettings

Run times sit in the middle of a bucket (collectors/flow.py BUCKETS), so scheduling noise cannot move
an observation into the next one: `quick` sleeps 65 ms (the (50, 100] ms bucket), `slow` 350 ms
((250, 500] ms).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import dramatiq
from arq.connections import RedisSettings
from arq.worker import Retry
from dramatiq.brokers.redis import RedisBroker

from callboard.companion.arq import with_flow
from callboard.companion.dramatiq import FlowMiddleware

NAMESPACE = "flowtest"
QUICK, SLOW = 0.065, 0.35
ARQ_QUEUE = "arq:flow"

broker = RedisBroker(  # type: ignore[no-untyped-call]
    url=os.environ.get("ITEST_REDIS_URL", "redis://127.0.0.1:1/0"), namespace=NAMESPACE
)
broker.add_middleware(FlowMiddleware(interval=0.5))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="work", max_retries=0)
def quick() -> None:
    time.sleep(QUICK)


@dramatiq.actor(queue_name="work", max_retries=0)
def slow() -> None:
    time.sleep(SLOW)


@dramatiq.actor(queue_name="work", max_retries=1, min_backoff=100, max_backoff=100)
def broken() -> None:
    raise ValueError("always")


# -- Arq ---------------------------------------------------------------------------------------------


async def arq_quick(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(QUICK)


async def arq_slow(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(SLOW)


async def arq_retry_once(ctx: dict[str, Any]) -> str:
    if ctx["job_try"] == 1:
        raise Retry(defer=0.1)
    return "second time"


async def arq_boom(ctx: dict[str, Any]) -> None:
    raise ValueError("boom")


class _ArqSettings:
    functions = [arq_quick, arq_slow, arq_retry_once, arq_boom]
    redis_settings = RedisSettings(host="127.0.0.1", port=int(os.environ.get("ITEST_REDIS_PORT", "1")))
    queue_name = ARQ_QUEUE
    poll_delay = 0.05
    max_jobs = 4
    health_check_interval = 2


ArqSettings = with_flow(_ArqSettings, interval=0.5)
