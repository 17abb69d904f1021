"""Dramatiq's Redis broker layout (2.x): the one home of its key names and their parsers.

    N = broker namespace (default "dramatiq"), Q = queue name, W = broker id (UUID4, one per process,
    producers included), rid = redis message id (new at every enqueue; not the Dramatiq message_id).

    N:Q                    list  rids waiting, FIFO (RPUSH on enqueue, LPOP by a worker's fetch)
    N:Q.msgs               hash  rid -> message JSON, for waiting *and* fetched-not-acked messages
                                 so in flight = HLEN N:Q.msgs - LLEN N:Q (running + prefetched)
    N:Q.DQ                 list  delayed rids no worker has fetched yet (usually empty while workers run)
    N:Q.DQ.msgs            hash  delayed payloads, with options.eta: the real "delayed" count
    N:Q.XQ                 zset  dead-lettered rids, score = ms when dead-lettered (no Redis TTL)
    N:Q.XQ.msgs            hash  dead payloads, as stored at their last enqueue
    N:__acks__.W.Q         set   rids worker W fetched from Q and has not acked (also W.Q.DQ)
    N:__heartbeats__       zset  W -> ms of its last broker call (workers and producers)
    results                list  one element; key md5("<rns>:<Q>:<actor>:<message_id>") by default, or
                                 the readable "<rns>:<Q>:<actor>:<message_id>" (use_namespace_prefix_keys);
                                 rns = results namespace, default "dramatiq-results"

Redis deletes empty keys, so an idle queue has no keys at all: queues are found by a bounded SCAN
(collectors/keyspace.py) and kept visible for a while after they go empty. Lifecycle, encodings and
the write recipes: docs/dramatiq-redis.md.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callboard.collectors.dramatiq.config import ResultsConfig

HEARTBEATS = "__heartbeats__"
ACKS = "__acks__"


DEFAULT_RESULTS_NAMESPACE = "dramatiq-results"


#: Dramatiq's own rule for queue names.
QUEUE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]*$")


#: Suffixes of per-queue keys, longest first so `.DQ.msgs` is not read as `.msgs`.
_SUFFIXES = (".DQ.msgs", ".XQ.msgs", ".msgs", ".DQ", ".XQ")


@dataclass(frozen=True, slots=True)
class QueueKeys:
    namespace: str
    queue: str

    @property
    def ready(self) -> str:
        return f"{self.namespace}:{self.queue}"

    @property
    def msgs(self) -> str:
        return f"{self.ready}.msgs"

    @property
    def delay(self) -> str:
        return f"{self.ready}.DQ"

    @property
    def delay_msgs(self) -> str:
        return f"{self.ready}.DQ.msgs"

    @property
    def dead(self) -> str:
        return f"{self.ready}.XQ"

    @property
    def dead_msgs(self) -> str:
        return f"{self.ready}.XQ.msgs"


def heartbeats_key(namespace: str) -> str:
    return f"{namespace}:{HEARTBEATS}"


def acks_key(namespace: str, worker: str, queue: str) -> str:
    return f"{namespace}:{ACKS}.{worker}.{queue}"


def queue_keys(queue_key: str) -> QueueKeys | None:
    """`dramatiq:default` -> QueueKeys("dramatiq", "default"); None if it cannot be a Dramatiq queue."""
    namespace, sep, queue = queue_key.rpartition(":")
    if not sep or not namespace or not QUEUE_NAME.match(queue) or queue.endswith((".DQ", ".XQ")):
        return None
    return QueueKeys(namespace, queue)


@dataclass(frozen=True, slots=True)
class AckKey:
    namespace: str
    worker: str
    #: Canonical queue (a `.DQ` ack set belongs to its queue).
    queue: str
    delayed: bool

    @property
    def key(self) -> str:
        return acks_key(self.namespace, self.worker, self.queue + (".DQ" if self.delayed else ""))


def classify(key: str) -> tuple[str, str | None, AckKey | None]:
    """What a key found by SCAN is: ("heartbeats", ns) / ("queue", "ns:q") / ("acks", AckKey) / ("", None)."""
    if key.endswith(":" + HEARTBEATS):
        return "heartbeats", key[: -len(HEARTBEATS) - 1], None
    marker = f":{ACKS}."
    if marker in key:
        namespace, _, rest = key.partition(marker)
        worker, dot, queue = rest.partition(".")
        if not dot or not queue:
            return "", None, None
        delayed = queue.endswith(".DQ")
        return "acks", namespace, AckKey(namespace, worker, queue[:-3] if delayed else queue, delayed)
    for suffix in _SUFFIXES:
        if key.endswith(suffix):
            keys = queue_keys(key[: -len(suffix)])
            return ("queue", keys.ready, None) if keys else ("", None, None)
    return "", None, None


def result_key(config: ResultsConfig, queue: str, actor: str, message_id: str) -> str:
    queue = queue[:-3] if queue.endswith(".DQ") else queue
    readable = f"{config.namespace}:{queue}:{actor}:{message_id}"
    return readable if config.prefix_keys else hashlib.md5(readable.encode()).hexdigest()
