"""`python -m callboard.demo.traffic`: keep sending a realistic mix of Dramatiq jobs until SIGTERM/SIGINT.

A steady trickle (about 2 messages/s, some of them delayed by `delay=`) plus a burst of 20-50 every
15-35 s, so the dashboard's counts visibly rise and drain. Everything goes through the real Dramatiq
API (`actor.send`, `actor.send_with_options`), exactly as a web app would enqueue.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import dramatiq
from dramatiq.errors import BrokerError
from redis.exceptions import RedisError

from callboard.demo import dramatiq_app as app
from callboard.demo.pacing import REDIS_RETRY_SECONDS, Pacer, weighted

log = logging.getLogger("callboard.demo.traffic")

Job = tuple["dramatiq.Actor[Any, Any]", tuple[Any, ...]]
Maker = Callable[[random.Random], Job]

#: Mean steady rate, messages per second (bursts come on top).
STEADY_RATE = 2.0
#: Share of steady messages sent with a delay, and the delay range in ms.
DELAYED_SHARE = 0.15
DELAY_MS = (5_000, 60_000)
#: Seconds between bursts (the first one comes sooner, so a new viewer sees one).
BURST_EVERY = (15.0, 35.0)
FIRST_BURST = (5.0, 10.0)

FIRST = ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Frances", "Dennis", "Radia")
LAST = ("Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson", "Allen", "Ritchie")
DOMAINS = ("example.com", "example.org", "mail.example.net")
SKUS = ("SKU-1042-BLK", "SKU-2210-RED", "SKU-3307-M", "SKU-4410-XL", "SKU-5521")
WAREHOUSES = ("ams-1", "fra-2", "iad-1")
PARTNER_HOOKS = ("https://hooks.partner-a.example/orders", "https://erp.partner-b.example/webhook")


def _email(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}", f"{first} {last}"


def _order_id(rng: random.Random) -> str:
    return f"ord_{rng.randint(100_000, 999_999)}"


def _account_id(rng: random.Random) -> str:
    return f"acct_{rng.randint(1_000, 9_999)}"


def _resize(rng: random.Random) -> Job:
    return app.resize_image, (f"img_{rng.getrandbits(40):010x}", [64, 256, 1024])


def _index(rng: random.Random) -> Job:
    doc = {"id": rng.randint(1, 10**6), "type": rng.choice(("product", "article")), "lang": "en"}
    return app.index_document, (doc,)


def _inventory(rng: random.Random) -> Job:
    return app.sync_inventory, (rng.choice(SKUS), rng.choice(WAREHOUSES), rng.randint(-5, 20))


def _welcome(rng: random.Random) -> Job:
    return app.send_welcome_email, _email(rng)


def _campaign(rng: random.Random) -> Job:
    return app.send_campaign_email, (_email(rng)[0], "spring-sale-2025")


def _reset(rng: random.Random) -> Job:
    return app.send_password_reset, (_email(rng)[0],)


def _confirmation(rng: random.Random) -> Job:
    items = [{"sku": rng.choice(SKUS), "qty": rng.randint(1, 3)} for _ in range(rng.randint(1, 3))]
    return app.send_order_confirmation, (_order_id(rng), _email(rng)[0], items)


def _webhook(rng: random.Random) -> Job:
    event = {"type": "order.paid", "order_id": _order_id(rng), "at": int(time.time())}
    return app.deliver_webhook, (rng.choice(PARTNER_HOOKS), event)


def _charge(rng: random.Random) -> Job:
    amount = rng.randint(499, 25_000)
    return app.charge_card, (_order_id(rng), f"cus_{rng.randint(10_000, 99_999)}", amount, "EUR")


def _refund(rng: random.Random) -> Job:
    return app.refund_payment, (_order_id(rng), rng.randint(499, 9_999), "customer request")


def _reconcile(rng: random.Random) -> Job:
    return app.reconcile_ledger, (_account_id(rng), f"2025-06-{rng.randint(1, 28):02d}")


def _report(rng: random.Random) -> Job:
    kind = rng.choice(("sales", "churn", "inventory"))
    params = {"from": "2025-06-01", "to": "2025-06-30", "region": rng.choice(("eu", "us"))}
    return app.generate_report, (f"rpt_{rng.getrandbits(32):08x}", kind, params)


def _export(rng: random.Random) -> Job:
    return app.export_csv, (_account_id(rng), "2025-06")


#: (weight, maker) for the steady trickle.
STEADY: tuple[tuple[int, Maker], ...] = (
    (14, _resize),
    (10, _index),
    (8, _inventory),
    (8, _welcome),
    (4, _reset),
    (10, _confirmation),
    (5, _webhook),
    (10, _charge),
    (3, _refund),
    (2, _reconcile),
    (3, _report),
    (2, _export),
)


@dataclass(frozen=True)
class Burst:
    name: str
    makers: tuple[Maker, ...]
    low: int
    high: int


BURSTS = (
    Burst("newsletter blast", (_campaign,), 30, 50),
    Burst("flash sale", (_charge, _confirmation), 20, 40),
    Burst("bulk image import", (_resize, _index), 25, 50),
    # Few but slow: enough to keep every worker thread busy for a while, so other queues back up.
    Burst("month-end reports", (_report, _export), 5, 8),
)


class Generator:
    def __init__(self, stop: threading.Event, rng: random.Random) -> None:
        self.stop = stop
        self.rng = rng
        self.sent = 0
        self.delayed = 0

    def send(self, job: Job, delay_ms: int | None = None) -> None:
        actor, args = job
        if delay_ms is None:
            actor.send(*args)
        else:
            actor.send_with_options(args=args, delay=delay_ms)
            self.delayed += 1
        self.sent += 1

    def steady(self) -> None:
        maker = weighted(self.rng, STEADY)
        delayed = self.rng.random() < DELAYED_SHARE
        self.send(maker(self.rng), self.rng.randint(*DELAY_MS) if delayed else None)

    def burst(self) -> None:
        burst = self.rng.choice(BURSTS)
        size = self.rng.randint(burst.low, burst.high)
        log.info("burst: %s (%d messages)", burst.name, size)
        for _ in range(size):
            if self.stop.is_set():
                return
            self.send(self.rng.choice(burst.makers)(self.rng))

    def run(self) -> None:
        pace = Pacer(self.rng, STEADY_RATE, FIRST_BURST, BURST_EVERY)
        while not self.stop.is_set():
            try:
                if pace.burst_due():
                    self.burst()
                self.steady()
            except (RedisError, BrokerError) as exc:
                log.warning("send failed (%s); retrying in %.0f s", exc, REDIS_RETRY_SECONDS)
                self.stop.wait(REDIS_RETRY_SECONDS)
                continue
            if pace.summary_due():
                log.info("sent %d messages so far (%d delayed)", self.sent, self.delayed)
            self.stop.wait(pace.gap())  # returns at once on stop


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("sending demo traffic until SIGTERM/SIGINT")
    generator = Generator(stop, random.Random())
    generator.run()
    log.info("stopped after %d messages (%d delayed)", generator.sent, generator.delayed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
