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


#: Arq queues (full key names): Arq's default queue and a custom one for slow report jobs.
ARQ_QUEUE = "arq:queue"
ARQ_REPORTS_QUEUE = "arq:reports"
ARQ_QUEUES = (ARQ_QUEUE, ARQ_REPORTS_QUEUE)
#: Seconds between the Arq workers' health-check writes (Arq's default is an hour).
ARQ_HEALTH_CHECK_INTERVAL = 10
