"""Arq 0.28's Redis layout: the one home of its key names, like Arq's own constants.py.

    Q                      zset    job id -> ms when due (enqueue time, or defer time). A running job
                                   STAYS in the zset until it finishes. The queue name is the full key
                                   (default "arq:queue").
    arq:job:<id>           string  serialized {t: try, f: function, a: args, k: kwargs, et: enqueue ms}
    arq:in-progress:<id>   string  "1" while a worker runs the job (TTL = timeout + 10 s); names no queue
    arq:retry:<id>         string  try counter, INCRed at every start
    arq:result:<id>        string  serialized {t, f, a, k, et, s: success, r: result or exception,
                                   st: start ms, ft: finish ms, q: queue, id}; PX keep_result (1 h default)
    arq:abort              zset    job id -> ms of the abort request
    <Q>:health-check       string  "Nov-21 10:04:54 j_complete=3 j_failed=3 j_retried=4 j_ongoing=2 queued=3",
                                   PX health_check_interval + 1 s (3601 s by default)

Job, result, retry and in-progress keys are shared by every queue of the database. Lifecycle,
encodings and the write recipes: docs/arq-redis.md.
"""

from __future__ import annotations

import re

DEFAULT_QUEUE = "arq:queue"


JOB_PREFIX = "arq:job:"


IN_PROGRESS_PREFIX = "arq:in-progress:"


RETRY_PREFIX = "arq:retry:"


RESULT_PREFIX = "arq:result:"


ABORT_KEY = "arq:abort"


HEALTH_SUFFIX = ":health-check"


#: The queue of a result that cannot be decoded (counted in the index, shown under no queue).
UNKNOWN_QUEUE = "?"


NAMESPACE = "arq"


HEALTH_FIELDS = re.compile(r"(\w+)=(\S+)")


def job_key(job_id: str) -> str:
    return JOB_PREFIX + job_id


def in_progress_key(job_id: str) -> str:
    return IN_PROGRESS_PREFIX + job_id


def retry_key(job_id: str) -> str:
    return RETRY_PREFIX + job_id


def result_key(job_id: str) -> str:
    return RESULT_PREFIX + job_id


def health_key(queue: str) -> str:
    return queue + HEALTH_SUFFIX


OWN_PREFIXES = (JOB_PREFIX, IN_PROGRESS_PREFIX, RETRY_PREFIX, RESULT_PREFIX)
