"""What an operator tells Callboard about a target's Arq: queues, serializer, the workers' settings."""

from __future__ import annotations

from dataclasses import dataclass

#: Result keys read (MGET + PTTL) per cycle.
RESULT_BUDGET = 2000


SERIALIZERS = ("auto", "pickle", "msgpack", "json")


@dataclass(frozen=True, slots=True)
class ArqConfig:
    #: Queue keys (the workers' `queue_name`, Arq's default `arq:queue`) always shown, even while
    #: empty; others are found by discovery.
    queues: tuple[str, ...] = ()
    #: What the workers' `job_serializer` writes; `auto` tells each payload by its first byte.
    serializer: str = "auto"
    #: The workers' health_check_interval, to turn the key's TTL into an age (Arq's default: 3600 s).
    health_check_interval: float = 3600.0
    #: Result keys the results index reads (MGET + PTTL) per collection, bounding its cost per cycle.
    result_budget: int = RESULT_BUDGET
    #: The operator says the workers run with `allow_abort_jobs=True`. Redis cannot tell, and
    #: without it an abort is a no-op for a running job and runs a deferred one at once.
    allow_abort_jobs: bool = False
    #: The workers' job_timeout (Arq's default 300 s): a claim older than this is "stuck". Arq gives
    #: the claim the longest timeout of any function plus 10 s, and a worker whose event loop is
    #: blocked cannot time a job out, so a claim can outlive its job's timeout by far.
    job_timeout: float = 300.0
    #: A discovered queue with no keys left stays listed this long.
    idle_ttl: float = 3600.0
