"""An Arq app for integration tests, run by real `arq` worker processes.

    ITEST_REDIS_PORT=PORT ITEST_ARQ_QUEUE=arq:queue python -m arq tests.integration.arq_app.WorkerSettings

Optional: ITEST_REDIS_PASSWORD (a server with `requirepass`), ITEST_ARQ_MAX_JOBS (1 makes a worker
busy with one `hold` job while the others wait, unclaimed, in the queue).

Arq reads WorkerSettings through `cls.__dict__`, so every setting is set on the class itself (inherited
attributes would be ignored); the Redis port and queue come from the environment at import time.
"""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings

from callboard.companion.arq import with_flow

QUEUE = os.environ.get("ITEST_ARQ_QUEUE", "arq:queue")
PORT = int(os.environ.get("ITEST_REDIS_PORT", "0"))
PASSWORD = os.environ.get("ITEST_REDIS_PASSWORD") or None
MAX_JOBS = int(os.environ.get("ITEST_ARQ_MAX_JOBS", "10"))
#: How long `hold` waits for its gate before giving up (so a failed test never hangs a worker).
HOLD_TIMEOUT_SECONDS = 60


class CustomError(Exception):
    """Its constructor takes other arguments than its `args` (plain pickle cannot rebuild it)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"custom {code}: {detail}")
        self.code = code
        self.detail = detail


async def succeed(ctx: dict[str, Any], x: int) -> int:
    return x * 2


async def fail_value(ctx: dict[str, Any], tag: str) -> None:
    raise ValueError(f"bad {tag}")


async def fail_custom(ctx: dict[str, Any], code: int, detail: str) -> None:
    raise CustomError(code, detail)


async def hold(ctx: dict[str, Any], gate: str) -> str:
    """Record that it started (`<gate>:started`), then wait until the test pushes onto `gate`."""
    await ctx["redis"].incr(f"{gate}:started")
    if await ctx["redis"].blpop([gate], timeout=HOLD_TIMEOUT_SECONDS) is None:
        raise RuntimeError(f"gate {gate!r} was never opened")
    return f"released {gate}"


class WorkerSettings:
    functions = [succeed, fail_value, fail_custom, hold]
    redis_settings = RedisSettings(host="127.0.0.1", port=PORT, password=PASSWORD)
    max_jobs = MAX_JOBS
    queue_name = QUEUE
    health_check_interval = 2
    poll_delay = 0.05
    max_tries = 1


#: The same worker with the flow companion (callboard.companion.arq).
FlowWorkerSettings = with_flow(WorkerSettings)
