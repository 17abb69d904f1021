"""`python -m callboard.demo.arq_traffic`: keep enqueueing a mix of Arq jobs until SIGTERM/SIGINT.

A steady trickle (about 1.5 jobs/s, some deferred with `_defer_by=`, reports on `arq:reports`) plus a
burst of 15-40 every 15-35 s. Everything goes through Arq's own `ArqRedis.enqueue_job`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Callable
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from redis.exceptions import RedisError

from callboard.demo.config import ARQ_QUEUE, ARQ_REPORTS_QUEUE, redis_url
from callboard.demo.pacing import REDIS_RETRY_SECONDS, Pacer, weighted

log = logging.getLogger("callboard.demo.arq_traffic")

#: (function name, args, kwargs such as `_queue_name`)
Job = tuple[str, tuple[Any, ...], dict[str, Any]]
Maker = Callable[[random.Random], Job]

STEADY_RATE = 1.5
DEFERRED_SHARE = 0.15
DEFER_SECONDS = (5.0, 45.0)
BURST_EVERY = (15.0, 35.0)
FIRST_BURST = (4.0, 8.0)
BURST_SIZE = (15, 40)


def _thumbnail(rng: random.Random) -> Job:
    return "render_thumbnail", (f"img_{rng.getrandbits(40):010x}", rng.choice((64, 256, 1024))), {}


def _push(rng: random.Random) -> Job:
    return "send_push", (rng.randint(1, 10**6), rng.choice(("Your order shipped", "New message"))), {}


def _report(rng: random.Random) -> Job:
    kind = rng.choice(("sales", "churn", "inventory"))
    # Most reports go to their own queue; a few land on the default one.
    queue = ARQ_REPORTS_QUEUE if rng.random() < 0.8 else ARQ_QUEUE
    return "build_report", (f"rpt_{rng.getrandbits(32):08x}", kind), {"_queue_name": queue}


def _contacts(rng: random.Random) -> Job:
    return "import_contacts", (f"acct_{rng.randint(1_000, 9_999)}", "contacts.csv"), {}


def _calendar(rng: random.Random) -> Job:
    return "sync_calendar", (rng.randint(1, 10**6),), {}


def _invoice(rng: random.Random) -> Job:
    return "generate_invoice_pdf", (f"inv_{rng.randint(10_000, 99_999)}",), {}


def _payment(rng: random.Random) -> Job:
    card = f"**** {rng.randint(1000, 9999)}"
    return "capture_payment", (f"ord_{rng.randint(100_000, 999_999)}", rng.randint(499, 25_000), card), {}


STEADY: tuple[tuple[int, Maker], ...] = (
    (14, _thumbnail),
    (12, _push),
    (3, _report),
    (5, _contacts),
    (5, _calendar),
    (2, _invoice),
    (6, _payment),
)
BURSTS: tuple[tuple[str, tuple[Maker, ...]], ...] = (
    ("push campaign", (_push,)),
    ("photo upload", (_thumbnail,)),
    ("checkout rush", (_payment, _push)),
    ("month-end reports", (_report, _invoice)),
)


class Generator:
    def __init__(self, pool: ArqRedis, stop: asyncio.Event, rng: random.Random) -> None:
        self.pool = pool
        self.stop = stop
        self.rng = rng
        self.sent = 0
        self.deferred = 0

    async def send(self, job: Job, defer_by: float | None = None) -> None:
        function, args, kwargs = job
        if defer_by is not None:
            kwargs = {**kwargs, "_defer_by": defer_by}
            self.deferred += 1
        await self.pool.enqueue_job(function, *args, **kwargs)
        self.sent += 1

    async def steady(self) -> None:
        maker = weighted(self.rng, STEADY)
        deferred = self.rng.random() < DEFERRED_SHARE
        await self.send(maker(self.rng), self.rng.uniform(*DEFER_SECONDS) if deferred else None)

    async def burst(self) -> None:
        name, makers = self.rng.choice(BURSTS)
        size = self.rng.randint(*BURST_SIZE)
        if name == "month-end reports":
            size //= 4
        log.info("burst: %s (%d jobs)", name, size)
        for _ in range(size):
            if self.stop.is_set():
                return
            await self.send(self.rng.choice(makers)(self.rng))

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def run(self) -> None:
        pace = Pacer(self.rng, STEADY_RATE, FIRST_BURST, BURST_EVERY)
        while not self.stop.is_set():
            try:
                if pace.burst_due():
                    await self.burst()
                await self.steady()
            except (RedisError, OSError) as exc:
                log.warning("enqueue failed (%s); retrying in %.0f s", exc, REDIS_RETRY_SECONDS)
                await self.pause(REDIS_RETRY_SECONDS)
                continue
            if pace.summary_due():
                log.info("enqueued %d jobs so far (%d deferred)", self.sent, self.deferred)
            await self.pause(pace.gap())


async def amain() -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pool = await create_pool(RedisSettings.from_dsn(redis_url()))
    try:
        log.info("enqueueing demo Arq jobs until SIGTERM/SIGINT")
        generator = Generator(pool, stop, random.Random())
        await generator.run()
        log.info("stopped after %d jobs (%d deferred)", generator.sent, generator.deferred)
    finally:
        await pool.aclose()
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(amain())


if __name__ == "__main__":
    raise SystemExit(main())
