"""Arq's companion: `WorkerSettings = with_flow(WorkerSettings)` after the settings class.

Arq's job hooks are called with `ctx` alone (no function name, no outcome, no run time), so the
companion wraps each function of `functions` instead (cron jobs are left alone). A wrapped call is
timed and classified exactly as Arq's worker classifies it (arq/worker.py, run_job):

    returns                                   succeeded
    raises Retry / RetryJob                   retried, or failed when it was the last try (the next
                                              run would end "max retries exceeded" without running)
    cancelled after its timeout               failed (Arq records the TimeoutError)
    cancelled before it (a shutdown, abort)   retried (Arq runs it again; an abort cannot be told apart)
    raises anything else                      failed: Arq does not retry other exceptions

Wait is `start - ctx["score"]`: the score is when the job became due, so a `_defer_by`/`_defer_until`
delay and retry backoffs are not counted as waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq.worker import Function, Retry, RetryJob, func

from callboard.collectors.flow import Series
from callboard.companion.recorder import INTERVAL, Recorder, stage

log = logging.getLogger("callboard.companion")
#: Arq's defaults, used when neither the function nor the settings say.
DEFAULT_QUEUE, DEFAULT_MAX_TRIES, DEFAULT_TIMEOUT = "arq:queue", 5, 300.0

Hook = Callable[[dict[str, Any]], Awaitable[None]]


class Flow:
    """One worker's recorder and its flusher task (started and stopped by the settings' hooks)."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.recorder = Recorder()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None

    def start(self, redis: Any) -> None:
        self._redis = redis
        self._task = asyncio.get_running_loop().create_task(self._flusher(), name="callboard-flow")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        """What was recorded since the last flush, in one round trip; on failure, counted as dropped."""
        batch = self.recorder.take()
        if self._redis is None or not (batch.jobs or self.recorder.dropped):
            if self._redis is None:
                self.recorder.lost(batch)
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                stage(pipe, batch, self.worker, self.recorder.dropped)
                await pipe.execute()
        except (OSError, Exception) as exc:  # redis errors, timeouts: never the worker's problem
            self.recorder.lost(batch)
            log.warning("callboard flow: %d jobs not recorded (%s)", batch.jobs, exc)


def with_flow(settings: type, interval: float = INTERVAL) -> type:
    """A copy of an Arq WorkerSettings class whose functions record flow (Arq reads the class's own
    `__dict__`, so this is a copy, not a subclass)."""
    attrs = {k: v for k, v in vars(settings).items() if not (k.startswith("__") and k.endswith("__"))}
    flow = Flow(interval)
    queue = attrs.get("queue_name") or DEFAULT_QUEUE
    max_tries = attrs.get("max_tries") or DEFAULT_MAX_TRIES
    timeout = _seconds(attrs.get("job_timeout"), DEFAULT_TIMEOUT)
    functions = [func(f) for f in attrs.get("functions", ())]
    attrs["functions"] = [_wrapped(f, flow, queue, max_tries, timeout) for f in functions]
    startup, shutdown = attrs.get("on_startup"), attrs.get("on_shutdown")

    async def on_startup(ctx: dict[str, Any]) -> None:
        if startup is not None:
            await startup(ctx)
        flow.start(ctx["redis"])

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        try:
            await flow.stop()
        finally:
            if shutdown is not None:
                await shutdown(ctx)

    attrs["on_startup"], attrs["on_shutdown"], attrs["callboard_flow"] = on_startup, on_shutdown, flow
    return type(settings.__name__, (), attrs)


def _wrapped(function: Function, flow: Flow, queue: str, max_tries: int, timeout: float) -> Function:
    series = Series("arq", "arq", queue, function.name)
    tries = function.max_tries or max_tries
    limit = function.timeout_s if function.timeout_s is not None else timeout
    inner = function.coroutine

    async def recorded(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        started = time.time()
        score = ctx.get("score")
        wait = started - score / 1000 if isinstance(score, int | float) and score > 0 else None
        outcome = "failed"
        try:
            result = await inner(ctx, *args, **kwargs)
        except (Retry, RetryJob):
            outcome = "failed" if int(ctx.get("job_try") or 1) >= tries else "retried"
            raise
        except asyncio.CancelledError:
            outcome = "failed" if time.time() - started >= limit else "retried"
            raise
        else:
            outcome = "succeeded"
            return result
        finally:
            ended = time.time()
            flow.recorder.record(series, outcome, ended, ended - started, wait)

    recorded.__qualname__ = getattr(inner, "__qualname__", function.name)
    return dataclasses.replace(function, coroutine=recorded)


def _seconds(value: Any, default: float) -> float:
    if value is None:
        return default
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)
