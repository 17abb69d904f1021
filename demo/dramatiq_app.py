"""The demo's Dramatiq app: `dramatiq demo.dramatiq_app` runs it, demo.traffic sends through it.

Every actor only simulates work (short sleeps, random outcomes), but the messages, retries, delays,
dead letters and results are Dramatiq's own, so the dashboard sees exactly what a real app leaves in
Redis. What each actor is for:

    default   resize_image, index_document: fast successes; sync_inventory: flaky, retried
    emails    send_welcome_email, send_campaign_email, send_password_reset: fast successes;
              send_order_confirmation: flaky, retried; deliver_webhook: max_retries=0, so a failure
              is dead-lettered at once, with no traceback
    billing   charge_card: flaky, retried (dead after 3 failed attempts); refund_payment and
              reconcile_ledger: always fail, dead-lettered with tracebacks after 1 and 2 retries
    reports   generate_report (store_results=True), export_csv: slow, 2-8 s; US churn reports always
              time out, so some die (after 1 retry) with their exception in the results backend

Retry backoffs are seconds, not Dramatiq's default 15 s and up, so retries (and the delayed messages
they are made of) show up while someone watches.
"""

from __future__ import annotations

import random
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from callboard.companion.dramatiq import FlowMiddleware
from callboard.demo.config import DRAMATIQ_NAMESPACE, RESULTS_NAMESPACE, redis_url

_url = redis_url()
# RedisBroker and Results have no type hints (the rest of dramatiq does).
broker = RedisBroker(url=_url, namespace=DRAMATIQ_NAMESPACE)  # type: ignore[no-untyped-call]
results = Results(backend=RedisBackend(url=_url, namespace=RESULTS_NAMESPACE))  # type: ignore[no-untyped-call]
broker.add_middleware(results)
# The flow companion (README, Flow): exact counts, run and wait times, here for every queue but
# `reports`, so the demo also shows what Callboard tells without it (dead letters only).
broker.add_middleware(FlowMiddleware(queues=("default", "emails", "billing")))
# Must happen before the actors below are declared: they bind to the global broker.
dramatiq.set_broker(broker)


# Retries within seconds: Dramatiq waits min_backoff * 2^retries * uniform(1, 2) ms, capped near max_backoff.
QUICK_RETRIES: dict[str, Any] = {"min_backoff": 1_000, "max_backoff": 4_000}


class InventoryServiceUnavailable(Exception):
    pass


class SMTPTemporaryError(Exception):
    pass


class WebhookDeliveryError(Exception):
    pass


class PaymentGatewayTimeout(Exception):
    pass


class RefundWindowClosed(Exception):
    pass


class LedgerMismatch(Exception):
    pass


class ReportQueryTimeout(Exception):
    pass


def _work(low: float, high: float) -> None:
    """Pretend to work for a while, in short steps so a shutdown notification interrupts it quickly
    (Dramatiq raises it in the actor's thread, which only happens between Python bytecodes)."""
    deadline = time.monotonic() + random.uniform(low, high)
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))


def _flaky(probability: float, error: Exception) -> None:
    if random.random() < probability:
        raise error


# -- default ------------------------------------------------------------------------------------------


@dramatiq.actor(queue_name="default")
def resize_image(image_id: str, sizes: list[int]) -> None:
    _work(0.05, 0.3)


@dramatiq.actor(queue_name="default")
def index_document(document: dict[str, Any]) -> None:
    _work(0.02, 0.15)


@dramatiq.actor(queue_name="default", max_retries=4, **QUICK_RETRIES)
def sync_inventory(sku: str, warehouse: str, delta: int) -> None:
    _work(0.05, 0.2)
    _flaky(0.3, InventoryServiceUnavailable(f"inventory service 503 for {sku} at {warehouse}"))


# -- emails -------------------------------------------------------------------------------------------


@dramatiq.actor(queue_name="emails")
def send_welcome_email(email: str, name: str) -> None:
    _work(0.05, 0.2)


@dramatiq.actor(queue_name="emails")
def send_campaign_email(email: str, campaign_id: str) -> None:
    _work(0.02, 0.1)


@dramatiq.actor(queue_name="emails")
def send_password_reset(email: str) -> None:
    _work(0.05, 0.15)


@dramatiq.actor(queue_name="emails", max_retries=3, **QUICK_RETRIES)
def send_order_confirmation(order_id: str, email: str, items: list[dict[str, Any]]) -> None:
    _work(0.05, 0.25)
    _flaky(0.25, SMTPTemporaryError(f"421 4.7.0 try again later ({email})"))


@dramatiq.actor(queue_name="emails", max_retries=0)
def deliver_webhook(url: str, event: dict[str, Any]) -> None:
    _work(0.05, 0.3)
    _flaky(0.5, WebhookDeliveryError(f"POST {url} -> 502 Bad Gateway"))


# -- billing ------------------------------------------------------------------------------------------


@dramatiq.actor(queue_name="billing", max_retries=2, **QUICK_RETRIES)
def charge_card(order_id: str, customer_id: str, amount_cents: int, currency: str) -> dict[str, Any]:
    _work(0.1, 0.4)
    _flaky(0.2, PaymentGatewayTimeout(f"gateway timed out charging {order_id}"))
    return {"order_id": order_id, "charge_id": f"ch_{random.getrandbits(48):012x}", "status": "captured"}


@dramatiq.actor(queue_name="billing", max_retries=1, **QUICK_RETRIES)
def refund_payment(order_id: str, amount_cents: int, reason: str) -> None:
    _work(0.05, 0.2)
    raise RefundWindowClosed(f"refund for {order_id} refused: outside the 30-day window")


@dramatiq.actor(queue_name="billing", max_retries=2, **QUICK_RETRIES)
def reconcile_ledger(account_id: str, day: str) -> None:
    _work(0.1, 0.3)
    raise LedgerMismatch(f"ledger {account_id} for {day} is off by {random.randint(1, 9999)} cents")


# -- reports (slow) -----------------------------------------------------------------------------------


@dramatiq.actor(
    queue_name="reports", store_results=True, max_retries=1, notify_shutdown=True, **QUICK_RETRIES
)
def generate_report(report_id: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    _work(2.0, 8.0)
    # A query that always times out, so some reports die and their failures land in the results backend.
    if kind == "churn" and params.get("region") == "us":
        raise ReportQueryTimeout(f"query for {kind} report {report_id} exceeded 30 s")
    rows = random.randint(10, 50_000)
    return {"report_id": report_id, "rows": rows, "url": f"https://files.example.com/reports/{report_id}.pdf"}


@dramatiq.actor(queue_name="reports", notify_shutdown=True)
def export_csv(account_id: str, month: str) -> None:
    _work(2.0, 5.0)
