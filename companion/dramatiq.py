"""Dramatiq's companion: `broker.add_middleware(FlowMiddleware())` in the worker's module.

How an attempt ended is known only at its ack or nack (flow-sources: "after" hooks run in reverse
order, so this middleware's after_process_message runs before Retries decides): an exception then an
ack is a retry, an exception then a nack a final failure, no exception an ack a success. A message
skipped before it ran (an age limit) is counted apart, as "skipped".

Wait is measured from when the message became runnable: `before_enqueue` stamps that moment into the
message's options (`callboard_runnable_at`, ms) for every enqueue this process makes, the workers'
own re-enqueues of delayed messages and retries included; a message from a producer without the
middleware falls back to its eta, then its timestamp.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import dramatiq
import redis

from callboard.collectors.flow import Series
from callboard.companion.recorder import INTERVAL, Recorder, stage

log = logging.getLogger("callboard.companion")
STAMP = "callboard_runnable_at"


class FlowMiddleware(dramatiq.Middleware):
    """Counts every attempt's outcome, run time and wait into Redis, flushed every `interval` s.

    `url`: the Redis to write to; by default the broker's own (a RedisBroker's client), which is
    where Callboard already looks. `queues`: record only these queues (names as declared, e.g.
    "default"); by default every queue the worker consumes."""

    def __init__(
        self, url: str | None = None, interval: float = INTERVAL, queues: Iterable[str] | None = None
    ) -> None:
        self.url = url
        self.queues = frozenset(queues) if queues is not None else None
        self.interval = interval
        self.recorder = Recorder()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._client: redis.Redis | None = None
        self._namespace = "dramatiq"
        self._running: dict[str, tuple[float, float | None, float | None, bool]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self._namespace = getattr(broker, "namespace", "dramatiq")
        client = getattr(broker, "client", None)
        self._client = redis.Redis.from_url(self.url) if self.url else client
        self._stop.clear()
        self._thread = threading.Thread(target=self._flusher, name="callboard-flow", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self.flush()

    # -- one message -----------------------------------------------------------------------------

    def before_enqueue(self, broker: Any, message: Any, delay: int) -> None:
        message.options[STAMP] = int(time.time() * 1000) + int(delay or 0)

    def before_process_message(self, broker: Any, message: Any) -> None:
        if not self._records(message):
            return
        now = time.time()
        runnable = _runnable_at(message)
        with self._lock:
            self._running[_attempt(message)] = (now, None, runnable, False)

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if not self._records(message):
            return
        now = time.time()
        with self._lock:
            started, _, runnable, _ = self._running.get(_attempt(message), (now, None, None, False))
            if exception is None and getattr(message, "failed", False):
                # A middleware failed it without raising: the actor did not run.
                self._running[_attempt(message)] = (started, None, runnable, False)
            else:
                self._running[_attempt(message)] = (started, now - started, runnable, exception is not None)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        with self._lock:
            self._running.pop(_attempt(message), None)
        if not self._records(message):
            return
        self.recorder.record(self._series(message), "skipped", time.time())

    def after_ack(self, broker: Any, message: Any) -> None:
        self._end(message, failed_finally=False)

    def after_nack(self, broker: Any, message: Any) -> None:
        self._end(message, failed_finally=True)

    def _end(self, message: Any, failed_finally: bool) -> None:
        with self._lock:
            state = self._running.pop(_attempt(message), None)
        if state is None:
            return  # acked or nacked without running here (e.g. skipped: counted already)
        started, duration, runnable, raised = state
        if duration is None:  # failed before it ran (a middleware called message.fail())
            outcome, wait = "skipped", None
        else:
            # A nack is final; an ack after an exception means Retries enqueued another attempt.
            outcome = "failed" if failed_finally else ("retried" if raised else "succeeded")
            wait = started - runnable if runnable is not None else None
        self.recorder.record(self._series(message), outcome, time.time(), duration, wait)

    def _series(self, message: Any) -> Series:
        return Series("dramatiq", self._namespace, _queue(message), message.actor_name)

    def _records(self, message: Any) -> bool:
        return self.queues is None or _queue(message) in self.queues

    # -- flushing --------------------------------------------------------------------------------

    def _flusher(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> None:
        """Write what was recorded since the last flush, in one round trip; on failure, count it dropped."""
        batch = self.recorder.take()
        client = self._client
        if client is None or not (batch.jobs or self.recorder.dropped):
            if client is None:
                self.recorder.lost(batch)
            return
        try:
            with client.pipeline(transaction=False) as pipe:
                stage(pipe, batch, self.worker, self.recorder.dropped)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self.recorder.lost(batch)
            log.warning("callboard flow: %d jobs not recorded (%s)", batch.jobs, exc)


def _attempt(message: Any) -> str:
    """What tells one delivery from another: the redis message id, new at every enqueue. Not the
    message_id: a delayed message's copy, put on the queue by a worker at its eta, keeps that id while
    the delay queue's original is acked, and the two would be taken for one attempt."""
    options = message.options or {}
    return str(options.get("redis_message_id") or message.message_id)


def _queue(message: Any) -> str:
    """The queue a message belongs to (a delay queue's messages belong to its queue)."""
    name: str = message.queue_name
    return name[:-3] if name.endswith(".DQ") else name


def _runnable_at(message: Any) -> float | None:
    """When the message became runnable (epoch seconds): the stamp, else its eta, else its timestamp."""
    options = message.options or {}
    for value in (options.get(STAMP), options.get("eta"), getattr(message, "message_timestamp", None)):
        if isinstance(value, int | float) and value > 0:
            return float(value) / 1000.0
    return None
