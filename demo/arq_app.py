"""The demo's Arq app: `python -m arq demo.arq_app.WorkerSettings` (and `.ReportsWorkerSettings`).

Every function only simulates work (short sleeps, random outcomes), but the jobs, retries, deferrals,
results and health checks are Arq's own. What each function is for:

    render_thumbnail, send_push    fast successes
    build_report                   slow, 2-6 s (enqueued mostly on the `arq:reports` queue)
    import_contacts                raises ValueError about one time in four
    sync_calendar                  raises Retry(defer=2) on its first try, succeeds on the next
    generate_invoice_pdf           per-function timeout=1 s but sleeps 2-3 s: fails with TimeoutError
    capture_payment                sometimes raises PaymentDeclined, an exception whose __init__ does
                                   not take its args (so unpickling the stored result naively fails)

Arq reads settings from `cls.__dict__` only, so ReportsWorkerSettings repeats every attribute.
The main worker runs the flow companion (README, Flow) and the reports worker does not, so the demo
shows both a queue with exact flow and one without.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Retry, func

from callboard.companion.arq import with_flow
from callboard.demo.config import ARQ_HEALTH_CHECK_INTERVAL, ARQ_QUEUE, ARQ_REPORTS_QUEUE, redis_url

Ctx = dict[Any, Any]


class PaymentDeclined(Exception):
    def __init__(self, code: str, card: str) -> None:
        super().__init__(f"declined {code}")
        self.code = code
        self.card = card


async def render_thumbnail(ctx: Ctx, image_id: str, size: int) -> dict[str, Any]:
    await asyncio.sleep(random.uniform(0.05, 0.3))
    return {"image_id": image_id, "size": size, "url": f"https://cdn.example.com/{image_id}/{size}.webp"}


async def send_push(ctx: Ctx, user_id: int, message: str) -> bool:
    await asyncio.sleep(random.uniform(0.02, 0.2))
    return True


async def build_report(ctx: Ctx, report_id: str, kind: str) -> dict[str, Any]:
    await asyncio.sleep(random.uniform(2.0, 6.0))
    return {"report_id": report_id, "kind": kind, "rows": random.randint(100, 50_000)}


async def import_contacts(ctx: Ctx, account_id: str, source: str) -> int:
    await asyncio.sleep(random.uniform(0.1, 0.8))
    if random.random() < 0.25:
        raise ValueError(f"malformed CSV row {random.randint(2, 500)} in {source}")
    return random.randint(10, 2_000)


async def sync_calendar(ctx: Ctx, user_id: int) -> str:
    if ctx["job_try"] == 1:
        raise Retry(defer=2)
    await asyncio.sleep(random.uniform(0.1, 0.5))
    return f"synced calendar of user {user_id} on try {ctx['job_try']}"


async def generate_invoice_pdf(ctx: Ctx, invoice_id: str) -> str:
    await asyncio.sleep(random.uniform(2.0, 3.0))  # longer than its 1 s timeout
    return f"/invoices/{invoice_id}.pdf"


async def capture_payment(ctx: Ctx, order_id: str, amount: int, card: str) -> str:
    await asyncio.sleep(random.uniform(0.1, 0.6))
    if random.random() < 0.3:
        raise PaymentDeclined(random.choice(("insufficient_funds", "expired_card", "do_not_honor")), card)
    return f"captured {amount} for {order_id}"


FUNCTIONS = (
    render_thumbnail,
    send_push,
    build_report,
    import_contacts,
    sync_calendar,
    func(generate_invoice_pdf, timeout=1),
    capture_payment,
)


class _WorkerSettings:
    functions = FUNCTIONS
    redis_settings = RedisSettings.from_dsn(redis_url())
    queue_name = ARQ_QUEUE
    health_check_interval = ARQ_HEALTH_CHECK_INTERVAL
    max_tries = 3
    max_jobs = 10


WorkerSettings = with_flow(_WorkerSettings)


class ReportsWorkerSettings:
    functions = FUNCTIONS
    redis_settings = RedisSettings.from_dsn(redis_url())
    queue_name = ARQ_REPORTS_QUEUE
    health_check_interval = ARQ_HEALTH_CHECK_INTERVAL
    max_tries = 3
    max_jobs = 4
