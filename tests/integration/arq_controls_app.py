"""The Arq app real workers run in the control tests (tests/integration/test_arq_controls.py):

    ITEST_REDIS_PORT=PORT ITEST_ARQ_ABORT=1 python -m arq tests.integration.arq_controls_app.WorkerSettings

Arq reads WorkerSettings through `cls.__dict__`, so every setting is set on the class itself (inherited
attributes would be ignored); the Redis port and whether aborts are on come from the environment at
import time. Every function counts its runs in `itest:runs:<tag>`, so a test can see what really ran.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from arq.connections import RedisSettings

QUEUE = "arq:queue"
PORT = int(os.environ.get("ITEST_REDIS_PORT", "0"))
ALLOW_ABORT = os.environ.get("ITEST_ARQ_ABORT") == "1"
#: How long `flaky` takes once it succeeds: a second click lands while the re-run is still queued or running.
SLOW_SUCCESS = 0.5


def runs_key(tag: str) -> str:
    return f"itest:runs:{tag}"


async def _count(ctx: dict[str, Any], tag: str) -> int:
    runs: int = await ctx["redis"].incr(runs_key(tag))
    return runs


async def flaky(ctx: dict[str, Any], tag: str) -> str:
    """Fails on its first run, succeeds (slowly) on every later one."""
    runs = await _count(ctx, tag)
    if runs == 1:
        raise ValueError(f"first run of {tag}")
    await asyncio.sleep(SLOW_SUCCESS)
    return f"{tag} ok on run {runs}"


async def record(ctx: dict[str, Any], tag: str) -> None:
    await _count(ctx, tag)


async def hang(ctx: dict[str, Any], tag: str) -> None:
    await _count(ctx, tag)
    await asyncio.sleep(60)


class WorkerSettings:
    functions = [flaky, record, hang]
    redis_settings = RedisSettings(host="127.0.0.1", port=PORT)
    queue_name = QUEUE
    health_check_interval = 2
    poll_delay = 0.05
    # One try: a re-run runs only if it starts again at try 1 (`t: None`, no retry counter left).
    max_tries = 1
    allow_abort_jobs = ALLOW_ABORT
