"""What the demo processes share: where Redis is, and which queues the demo uses.

Kept apart from dramatiq_app.py so the runner can read it without creating a broker.
"""

from __future__ import annotations

import os

REDIS_URL_ENV = "CALLBOARD_DEMO_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

#: Dramatiq broker namespace (Dramatiq's default) and the demo's queues, fast to slow.
DRAMATIQ_NAMESPACE = "dramatiq"
DRAMATIQ_QUEUES = ("default", "emails", "billing", "reports")
#: Results backend namespace (Dramatiq's default), with default (MD5) keys.
RESULTS_NAMESPACE = "dramatiq-results"


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
