"""The Arq app a real worker runs in the browser tests:

    BROWSER_TEST_REDIS_PORT=PORT python -m arq tests.browser.arq_worker_app.WorkerSettings

Arq reads WorkerSettings through `cls.__dict__`, so every setting is set on the class itself; the Redis
port comes from the environment at import time (the test's own Redis, never port 6379).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from arq.connections import RedisSettings

QUEUE = "arq:queue"
PORT = int(os.environ.get("BROWSER_TEST_REDIS_PORT", "0"))
DECLINE_CODE = 51
#: The message `charge_card` fails with; the browser test looks for it in the list and the job page.
DECLINE_MESSAGE = f"declined {DECLINE_CODE}"


class PaymentDeclined(Exception):
    """Its constructor takes other arguments than its `args` (plain pickle cannot rebuild it)."""

    def __init__(self, code: int, card: str) -> None:
        super().__init__(f"declined {code}")
        self.code = code
        self.card = card


async def charge_card(ctx: dict[str, Any], code: int, card: str) -> None:
    raise PaymentDeclined(code, card)


async def parse_amount(ctx: dict[str, Any], raw: str) -> None:
    raise ValueError(f"not an amount: {raw!r}")


#: How long `settle` runs: the Succeeded tab shows it as the run time (finish - start).
SETTLE_SECONDS = 0.2


async def settle(ctx: dict[str, Any], order: int) -> str:
    await asyncio.sleep(SETTLE_SECONDS)
    return f"settled {order}"


class WorkerSettings:
    functions = [charge_card, parse_amount, settle]
    redis_settings = RedisSettings(host="127.0.0.1", port=PORT)
    queue_name = QUEUE
    health_check_interval = 2
    poll_delay = 0.05
    max_tries = 1
