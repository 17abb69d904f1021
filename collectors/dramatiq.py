"""Dramatiq's Redis broker layout (2.x): the only module that knows its key names.

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
(see keyspace.py) and kept visible for a while after they go empty. See shared/redis-layouts.md §1.
Payloads are decoded in budgeted decoder processes (collectors/decoding.py), never on the event loop:
the builders here are pure functions of the raw bytes, which the async entry points hand to
`decoding.run`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from callboard.collectors import decoding, payloads
from callboard.collectors.decoding import Lane, decoder
from callboard.collectors.failures import UNDECODABLE, Failure, FailureIndex, split_exception
from callboard.collectors.keyspace import text as _text
from callboard.collectors.model import (
    CollectedPart,
    Framework,
    JobDetail,
    JobPage,
    JobResult,
    JobSummary,
    Parser,
    QueueStats,
    Undecodable,
    WorkerStats,
    page_of,
)

HEARTBEATS = "__heartbeats__"
ACKS = "__acks__"
DEFAULT_NAMESPACE = "dramatiq"
DEFAULT_RESULTS_NAMESPACE = "dramatiq-results"
#: Dramatiq's own rule for queue names.
QUEUE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]*$")
#: Suffixes of per-queue keys, longest first so `.DQ.msgs` is not read as `.msgs`.
_SUFFIXES = (".DQ.msgs", ".XQ.msgs", ".msgs", ".DQ", ".XQ")
#: Head payloads above this are not read by the snapshot (oldest age is then unknown).
HEAD_CAP_BYTES = 65_536
#: Heartbeat members read per namespace per cycle.
HEARTBEAT_LIMIT = 1000
#: Above this many delayed messages the delayed tab is shown in storage order, not sorted by eta.
SORTABLE_DELAYED = 10_000
#: Dead-letter payloads read per cycle for the failure groups (~1 MB and ~15 ms of decoding).
DEAD_BUDGET = 500
#: Dead-letter ids checked for removal per cycle (ZMSCORE) when a queue's index holds too many.
VERIFY_BUDGET = 5000
#: A queue whose dead count did not change is still re-walked from its newest this often (an add
#: and a removal in the same cycle leave the count equal).
DEAD_RECHECK = 30.0
#: Dramatiq's default dead_message_ttl: maintenance deletes dead letters older than this.
DEAD_MESSAGE_TTL = 7 * 86400.0


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


@dataclass(frozen=True, slots=True)
class ResultsConfig:
    """Where an app's Dramatiq results backend keeps results (when it has one)."""

    namespace: str = DEFAULT_RESULTS_NAMESPACE
    #: Dramatiq 2.2 `use_namespace_prefix_keys=True`: readable keys instead of MD5 hashes.
    prefix_keys: bool = False


def result_key(config: ResultsConfig, queue: str, actor: str, message_id: str) -> str:
    queue = queue[:-3] if queue.endswith(".DQ") else queue
    readable = f"{config.namespace}:{queue}:{actor}:{message_id}"
    return readable if config.prefix_keys else hashlib.md5(readable.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class DramatiqConfig:
    namespaces: tuple[str, ...] = ()
    #: Queue keys (`ns:queue`) always shown, even before discovery finds them.
    queues: tuple[str, ...] = ()
    #: A heartbeat older than this marks the worker stale (Dramatiq's default is 60 s).
    heartbeat_timeout: float = 60.0
    #: A discovered queue with no keys left stays listed this long.
    idle_ttl: float = 3600.0
    results: ResultsConfig | None = None
    #: The broker's dead_message_ttl (seconds): when dead letters become eligible for deletion.
    dead_message_ttl: float = DEAD_MESSAGE_TTL


# One read-only script per cycle: every queue's counters, the head message of each ready list (for the
# oldest age), the oldest dead letter, heartbeats and ack-set sizes. O(queues + workers + ack sets);
# nothing here grows with the number of messages.
SNAPSHOT_LUA = """
local nq, nh, na = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, hb_limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local queues, beats, acks = {}, {}, {}
for i = 0, nq - 1 do
  local b = i * 5
  local ready = redis.call('LLEN', KEYS[b + 1])
  local head = false
  if ready > 0 then
    local rid = redis.call('LINDEX', KEYS[b + 1], 0)
    if rid and redis.call('HSTRLEN', KEYS[b + 2], rid) <= cap then
      head = redis.call('HGET', KEYS[b + 2], rid)
    end
  end
  local dead = redis.call('ZCARD', KEYS[b + 5])
  local oldest_dead = false
  if dead > 0 then oldest_dead = redis.call('ZRANGE', KEYS[b + 5], 0, 0, 'WITHSCORES')[2] end
  queues[i + 1] = {ready, redis.call('HLEN', KEYS[b + 2]), redis.call('LLEN', KEYS[b + 3]),
                   redis.call('HLEN', KEYS[b + 4]), dead, head, oldest_dead}
end
for i = 1, nh do
  local k = KEYS[nq * 5 + i]
  beats[i] = {redis.call('ZCARD', k), redis.call('ZREVRANGE', k, 0, hb_limit - 1, 'WITHSCORES')}
end
for i = 1, na do acks[i] = redis.call('SCARD', KEYS[nq * 5 + nh + i]) end
return {queues, beats, acks}
"""


@dataclass(slots=True)
class _DeadWalk:
    """Where the dead-letter reader of one queue is: newest-first fill, then new arrivals.

    The backward walk starts at the newest dead letter (the ones an operator is looking at) and goes
    down to the oldest; the forward walk picks up arrivals above the highest score read. `*_ties`
    counts the ids read at exactly that score, the LIMIT offset that steps past them next time."""

    top: float | None = None
    top_ties: int = 0
    bottom: float | None = None
    bottom_ties: int = 0
    exhausted: bool = False
    walked_at: float = 0.0
    verify_from: int = 0


@dataclass(slots=True)
class _Seen:
    """Mutable discovery state: what exists, and when it was last seen (epoch seconds)."""

    namespaces: dict[str, float] = field(default_factory=dict)
    queues: dict[str, float] = field(default_factory=dict)
    acks: dict[AckKey, float] = field(default_factory=dict)
    consumers: set[tuple[str, str]] = field(default_factory=set)


class DramatiqCollector:
    """Per-target Dramatiq reader: discovery state plus the snapshot script."""

    framework = Framework.DRAMATIQ
    scripts = (SNAPSHOT_LUA,)

    def __init__(self, config: DramatiqConfig | None = None) -> None:
        self.config = config or DramatiqConfig()
        self._seen = _Seen()
        now = time.time()
        for ns in self.config.namespaces:
            self._seen.namespaces[ns] = now
        self._pending: dict[str, float] = {}
        #: Dead letters grouped by cause (the failures page), read in the background.
        self.failures = FailureIndex(Framework.DRAMATIQ)
        self._walks: dict[str, _DeadWalk] = {}
        self._dead_counts: dict[str, int] = {}

    # -- discovery ---------------------------------------------------------------------------------

    def observe(self, keys: Iterable[str], now: float | None = None) -> None:
        """Classify keys found by SCAN. Queues count only in namespaces with a heartbeat registry."""
        now = time.time() if now is None else now
        for key in keys:
            kind, name, ack = classify(key)
            if kind == "heartbeats" and name:
                self._seen.namespaces[name] = now
            elif kind == "queue" and name:
                self._pending[name] = now
            elif kind == "acks" and ack:
                self._seen.acks[ack] = now
                self._seen.consumers.add((ack.namespace, ack.worker))
        for name, seen in list(self._pending.items()):
            keys_ = queue_keys(name)
            if keys_ and keys_.namespace in self._seen.namespaces:
                self._seen.queues[name] = seen
                del self._pending[name]

    def queue_keys(self) -> list[QueueKeys]:
        names = set(self._seen.queues) | set(self.config.queues)
        found = (queue_keys(n) for n in sorted(names))
        return [k for k in found if k is not None]

    def ack_keys(self, queue: QueueKeys | None = None) -> list[AckKey]:
        acks = sorted(self._seen.acks, key=lambda a: (a.namespace, a.queue, a.worker, a.delayed))
        if queue is None:
            return acks
        return [a for a in acks if a.namespace == queue.namespace and a.queue == queue.queue]

    # -- failure groups ----------------------------------------------------------------------------

    async def after_scan(self, redis: Redis) -> int:
        """Read dead letters for the failure groups: at most DEAD_BUDGET payloads per cycle, from
        up to 8 queues.

        Driven by the dead counts of the last snapshot: a queue whose count matches what is indexed,
        and whose walk is done, costs nothing. Returns the round trips used (0 to 3)."""
        now = time.time()
        known = {q.ready: q for q in self.queue_keys()}
        for name in [n for n in self._walks if n not in known]:
            self._forget_dead(name)
        steps: list[tuple[QueueKeys, _DeadWalk, bool]] = []
        verify: list[tuple[QueueKeys, list[str]]] = []
        for name, q in known.items():
            dead = self._dead_counts.get(name, 0)
            walk = self._walks.get(name)
            if dead == 0:
                if walk is not None:
                    self._forget_dead(name)
                continue
            if walk is None:
                walk = self._walks[name] = _DeadWalk()
            indexed = self.failures.count(name)
            if indexed > dead:
                ids = self.failures.ids(name)
                start = walk.verify_from if walk.verify_from < len(ids) else 0
                verify.append((q, ids[start : start + VERIFY_BUDGET]))
                walk.verify_from = start + VERIFY_BUDGET
            elif len(steps) < 8 and not (walk.exhausted and self.failures.full):
                behind = indexed < dead or now - walk.walked_at > DEAD_RECHECK
                if not walk.exhausted or behind:
                    steps.append((q, walk, not walk.exhausted))
        trips = 0
        if verify:
            trips += await self._verify_dead(redis, verify)
        if steps:
            trips += await self._walk_dead(redis, steps, now)
        return trips

    async def _verify_dead(self, redis: Redis, work: list[tuple[QueueKeys, list[str]]]) -> int:
        async with redis.pipeline(transaction=False) as pipe:
            for q, ids in work:
                pipe.zmscore(q.dead, ids)
            replies = await pipe.execute()
        for (_, ids), scores in zip(work, replies, strict=True):
            for job_id, score in zip(ids, scores, strict=True):
                if score is None:
                    self.failures.remove(job_id)
        return 1

    async def _walk_dead(
        self, redis: Redis, steps: list[tuple[QueueKeys, _DeadWalk, bool]], now: float
    ) -> int:
        size = max(1, DEAD_BUDGET // max(1, len(steps)))
        async with redis.pipeline(transaction=False) as pipe:
            for q, walk, backward in steps:
                if backward:
                    top = "+inf" if walk.bottom is None else repr(walk.bottom)
                    pipe.zrevrangebyscore(q.dead, top, "-inf", walk.bottom_ties, size, withscores=True)
                else:
                    low = "-inf" if walk.top is None else repr(walk.top)
                    pipe.zrangebyscore(q.dead, low, "+inf", walk.top_ties, size, withscores=True)
            batches = await pipe.execute()
        wanted: list[tuple[QueueKeys, list[tuple[str, float]]]] = []
        for (q, walk, backward), rows in zip(steps, batches, strict=True):
            rows = [(_text(m), float(score)) for m, score in rows]
            _advance(walk, rows, backward, size)
            fresh = [(rid, score) for rid, score in rows if rid not in self.failures]
            if not backward and len(rows) < size:
                walk.walked_at = now
                behind = self.failures.count(q.ready) < self._dead_counts.get(q.ready, 0)
                if behind and not fresh and not self.failures.full:
                    # Caught up, yet dead letters are missing (removed from the index by a wrong
                    # guess, or skipped at a tie): walk the queue again; known payloads are not re-read.
                    self._walks[q.ready] = _DeadWalk()
            if fresh:
                wanted.append((q, fresh))
        if not wanted:
            return 1
        # Payloads between two reads of their scores, in one pipeline but no MULTI (a read-only ACL
        # may refuse MULTI): every writer of a dead letter (Dramatiq's nack, our controls, the
        # maintenance) changes its score and payload together in one script, and rids are never
        # reused, so a letter present at both score reads had its payload throughout. One requeued
        # or deleted meanwhile is skipped; one whose payload is really missing shows as undecodable.
        async with redis.pipeline(transaction=False) as pipe:
            for q, fresh in wanted:
                rids = [rid for rid, _ in fresh]
                pipe.zmscore(q.dead, rids)
                pipe.hmget(q.dead_msgs, rids)
                pipe.zmscore(q.dead, rids)
            replies = await pipe.execute()
        ttl = self.config.dead_message_ttl
        calls = [
            (rid, q.ready, raw, score / 1000.0, ttl)
            for i, (q, fresh) in enumerate(wanted)
            for (rid, score), was, raw, still in zip(fresh, *replies[3 * i : 3 * i + 3], strict=True)
            if was is not None and still is not None
        ]
        # A prefix when a payload went over the decode budget; the walk re-reads what it skipped
        # once it has caught up (see `behind` above).
        for failure in await decoding.run(
            dead_failure, calls, _unreadable_dead, lane=Lane.BACKGROUND, partial=True
        ):
            self.failures.add(failure)
        return 2

    def _forget_dead(self, name: str) -> None:
        self._walks.pop(name, None)
        self.failures.remove_queue(name)

    # -- snapshot ----------------------------------------------------------------------------------

    def stage(self, pipe: Pipeline, sha: Mapping[str, str]) -> Parser:
        """Queue the snapshot script on `pipe`; return the parser for its reply (it decodes the head
        messages for the oldest ages in a decoder process: await it)."""
        queues = self.queue_keys()
        namespaces = sorted({q.namespace for q in queues} | set(self._seen.namespaces))
        acks = self.ack_keys()
        keys: list[str] = []
        for q in queues:
            keys += [q.ready, q.msgs, q.delay, q.delay_msgs, q.dead]
        keys += [heartbeats_key(ns) for ns in namespaces]
        keys += [a.key for a in acks]
        args = [str(n) for n in (len(queues), len(namespaces), len(acks), HEAD_CAP_BYTES, HEARTBEAT_LIMIT)]
        pipe.evalsha(sha[SNAPSHOT_LUA], len(keys), *keys, *args)
        return lambda reply: self._parse(reply, queues, namespaces, acks)

    async def read_plain(self, redis: Redis) -> tuple[Any, Parser, int]:
        """What SNAPSHOT_LUA returns, read with plain commands, for a user whose ACL refuses scripts.

        The same reads, pipelined: one round trip for every counter, heartbeat and ack set, then
        (only when queues have a head message) one for the heads' sizes and one for the heads under
        the size cap. The reply has the script's shape, so one parser serves both paths."""
        queues = self.queue_keys()
        namespaces = sorted({q.namespace for q in queues} | set(self._seen.namespaces))
        acks = self.ack_keys()
        async with redis.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.llen(q.ready)
                pipe.hlen(q.msgs)
                pipe.llen(q.delay)
                pipe.hlen(q.delay_msgs)
                pipe.zcard(q.dead)
                pipe.lindex(q.ready, 0)
                pipe.zrange(q.dead, 0, 0, withscores=True)
            for ns in namespaces:
                pipe.zcard(heartbeats_key(ns))
                pipe.zrevrange(heartbeats_key(ns), 0, HEARTBEAT_LIMIT - 1, withscores=True)
            for ack in acks:
                pipe.scard(ack.key)
            replies = await pipe.execute()
        trips = 1
        rows: list[list[Any]] = []
        heads: dict[int, str] = {}
        for i in range(len(queues)):
            ready, stored, delay_list, delayed, dead, rid, oldest = replies[7 * i : 7 * i + 7]
            rows.append([ready, stored, delay_list, delayed, dead, None, oldest[0][1] if oldest else None])
            if int(ready) and rid is not None:
                heads[i] = _text(rid)
        if heads:
            async with redis.pipeline(transaction=False) as pipe:
                for i, rid in heads.items():
                    pipe.hstrlen(queues[i].msgs, rid)
                sizes = await pipe.execute()
            small = [i for i, size in zip(heads, sizes, strict=True) if int(size) <= HEAD_CAP_BYTES]
            trips += 1
            if small:
                async with redis.pipeline(transaction=False) as pipe:
                    for i in small:
                        pipe.hget(queues[i].msgs, heads[i])
                    for i, raw in zip(small, await pipe.execute(), strict=True):
                        rows[i][5] = raw
                trips += 1
        base = 7 * len(queues)
        beats = [
            [replies[base + 2 * n], [v for pair in replies[base + 2 * n + 1] for v in pair]]
            for n in range(len(namespaces))
        ]
        sizes = replies[base + 2 * len(namespaces) :]
        reply = [rows, beats, sizes]
        return reply, lambda r: self._parse(r, queues, namespaces, acks), trips

    async def _parse(
        self, reply: Any, queues: list[QueueKeys], namespaces: list[str], acks: list[AckKey]
    ) -> CollectedPart:
        now = time.time()
        q_rows, beat_rows, ack_sizes = reply
        heads = [(i, row[5]) for i, row in enumerate(q_rows) if int(row[0]) and row[5]]
        found = await decoding.run(runnable_since, [(h,) for _, h in heads], _unknown, lane=Lane.BACKGROUND)
        since: dict[int, float | None] = dict(zip((i for i, _ in heads), found, strict=True))
        beats: dict[tuple[str, str], float] = {}
        for ns, (_, members) in zip(namespaces, beat_rows, strict=True):
            for member, score in zip(members[::2], members[1::2], strict=True):
                beats[(ns, _text(member))] = float(score) / 1000.0
        timeout = self.config.heartbeat_timeout
        held: dict[tuple[str, str], list[tuple[AckKey, int]]] = {}
        orphaned: dict[str, int] = {}
        for ack, size in zip(acks, ack_sizes, strict=True):
            size = int(size)
            if size == 0:  # Redis removed the set: the worker acked everything it held.
                self._seen.acks.pop(ack, None)
                continue
            held.setdefault((ack.namespace, ack.worker), []).append((ack, size))
            last = beats.get((ack.namespace, ack.worker))
            if last is None or now - last >= timeout:
                ready_key = QueueKeys(ack.namespace, ack.queue).ready
                orphaned[ready_key] = orphaned.get(ready_key, 0) + size
        stats = tuple(
            self._queue_stats(q, row, orphaned.get(q.ready, 0), now, since.get(i))
            for i, (q, row) in enumerate(zip(queues, q_rows, strict=True))
        )
        workers = tuple(
            self._worker(ns, w, last, held.get((ns, w), []), now) for (ns, w), last in beats.items()
        )
        self._forget_idle(stats, now)
        self._dead_counts = {q.key: q.counts["dead"] for q in stats}
        missing = sum(self._dead_counts.values()) - len(self.failures)
        return CollectedPart(
            stats, workers, failures=self.failures.report(now), failures_missing=max(0, missing)
        )

    def _queue_stats(
        self, q: QueueKeys, row: list[Any], orphaned: int, now: float, since: float | None
    ) -> QueueStats:
        ready, stored, delay_list, delayed, dead, head, oldest_dead = row
        ready, stored, delayed, dead = int(ready), int(stored), int(delayed), int(dead)
        if ready or stored or delayed or dead or int(delay_list):
            self._seen.queues[q.ready] = now
        oldest: float | None = 0.0
        if ready:
            oldest = max(0.0, now - since) if head and since else None
        return QueueStats(
            framework=Framework.DRAMATIQ,
            namespace=q.namespace,
            name=q.queue,
            key=q.ready,
            counts={
                "ready": ready,
                # Fetched but not acked: running and prefetched, which Redis cannot tell apart.
                "in_flight": max(0, stored - ready),
                # The payload hash, not the .DQ list: workers hold delayed messages in memory.
                "delayed": delayed,
                "dead": dead,
            },
            oldest_ready_age=oldest,
            oldest_dead_age=max(0.0, now - float(oldest_dead) / 1000.0) if oldest_dead else None,
            orphaned=orphaned,
        )

    def _worker(
        self, ns: str, worker: str, last: float, held: list[tuple[AckKey, int]], now: float
    ) -> WorkerStats:
        consumer = bool(held) or (ns, worker) in self._seen.consumers
        return WorkerStats(
            framework=Framework.DRAMATIQ,
            namespace=ns,
            worker_id=worker,
            last_seen=last,
            alive=now - last < self.config.heartbeat_timeout,
            role="consumer" if consumer else "unknown",
            in_flight=sum(size for _, size in held),
            queues=tuple(sorted({a.queue for a, _ in held})),
        )

    def _forget_idle(self, stats: tuple[QueueStats, ...], now: float) -> None:
        ttl = self.config.idle_ttl
        for name, seen in list(self._seen.queues.items()):
            if now - seen > ttl and name not in self.config.queues:
                del self._seen.queues[name]


def _advance(walk: _DeadWalk, rows: list[tuple[str, float]], backward: bool, size: int) -> None:
    """Move a walk past `rows` (descending when backward, else ascending scores)."""
    if backward:
        if walk.top is None and rows:
            walk.top = rows[0][1]
            walk.top_ties = sum(1 for _, s in rows if s == rows[0][1])
        if rows:
            last = rows[-1][1]
            same = sum(1 for _, s in rows if s == last)
            walk.bottom_ties = same + (walk.bottom_ties if walk.bottom == last else 0)
            walk.bottom = last
        walk.exhausted = len(rows) < size
        return
    if rows:
        last = rows[-1][1]
        same = sum(1 for _, s in rows if s == last)
        walk.top_ties = same + (walk.top_ties if walk.top == last else 0)
        walk.top = last


def _unreadable_dead(call: decoding.Call, reason: str) -> Failure:
    rid, queue, _, dead_at, ttl = call
    return Failure(rid, queue, None, UNDECODABLE, reason, dead_at, dead_at + ttl)


@decoder
def dead_failure(rid: str, queue: str, raw: bytes | None, dead_at: float, ttl: float) -> Failure:
    """A dead letter as a failure: its actor and the last line of the stored traceback.

    Dramatiq stores the traceback of the attempt *before* the last one (or none at all when the
    message died on its first attempt), so the cause is that attempt's."""
    message = payloads.decode_json_object(raw)
    if isinstance(message, Undecodable):
        exception, text, name = UNDECODABLE, message.reason, None
    else:
        options = message.get("options") if isinstance(message.get("options"), dict) else {}
        assert isinstance(options, dict)
        exception, text = split_exception(payloads.last_line(payloads.as_text(options.get("traceback"))))
        name = payloads.as_text(message.get("actor_name"))
    return Failure(rid, queue, name, exception, text, dead_at, dead_at + ttl)


@decoder
def runnable_since(message: bytes | dict[str, Any] | Undecodable) -> float | None:
    """When a ready message (raw or decoded) became runnable: its send time, or its last failure when
    it was retried.

    After a retry the worker strips `eta` when it moves the message back to the queue, so the last
    failure time is the best bound Redis keeps (it overstates the wait by the backoff).
    """
    if isinstance(message, bytes):
        message = payloads.decode_json_object(message)
    if isinstance(message, Undecodable):
        return None
    options = message.get("options")
    options = options if isinstance(options, dict) else {}
    times = [
        payloads.ms_to_seconds(message.get("message_timestamp")),
        payloads.ms_to_seconds(options.get("eta")),
        payloads.ms_to_seconds(options.get("requeue_timestamp")),
    ]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _unknown(call: decoding.Call, reason: str) -> None:
    return None


# -- browse ----------------------------------------------------------------------------------------

#: Tabs of a Dramatiq queue page, in order.
BROWSE_STATES = ("ready", "in_flight", "delayed", "dead")


async def list_jobs(
    redis: Redis, q: QueueKeys, state: str, offset: int, limit: int, acks: list[AckKey]
) -> JobPage:
    """One page of a state, read on demand. O(limit) per page, except where noted."""
    if state == "ready":
        total, ids = await _range(redis, "llen", q.ready, "lrange", q.ready, offset, offset + limit - 1)
        raws = await _hmget(redis, q.msgs, ids)
        items = await _summaries([(rid, "ready", raw) for rid, raw in zip(ids, raws, strict=True)])
        return page_of(state, items, total, offset, limit, "FIFO: next to run first")
    if state == "dead":
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zcard(q.dead)
            pipe.zrevrange(q.dead, offset, offset + limit - 1, withscores=True)
            total, rows = await pipe.execute()
        ids = [_text(m) for m, _ in rows]
        raws = await _hmget(redis, q.dead_msgs, ids)
        items = await _summaries(
            [
                (rid, "dead", raw, score / 1000.0)
                for (rid, raw), (_, score) in zip(zip(ids, raws, strict=True), rows, strict=True)
            ]
        )
        return page_of(state, items, int(total), offset, limit, "newest dead letter first")
    if state == "delayed":
        return await _delayedpage_of(redis, q, offset, limit)
    if state == "in_flight":
        return await _in_flightpage_of(redis, q, offset, limit, acks)
    raise ValueError(f"unknown state {state!r}")


async def _delayedpage_of(redis: Redis, q: QueueKeys, offset: int, limit: int) -> JobPage:
    total = int(await redis.hlen(q.delay_msgs))  # type: ignore[misc]  # redis-py's async stubs
    if total <= SORTABLE_DELAYED:
        # O(delayed) with a bounded size: HGETALL of at most 10k payloads (~10 ms), summarised in a
        # decoder process (~0.3 s for 10k), sorted by eta.
        entries = await redis.hgetall(q.delay_msgs)  # type: ignore[misc]
        items = await _summaries([(_text(rid), "delayed", raw) for rid, raw in entries.items()])
        items.sort(key=lambda s: (s.eta is None, s.eta or 0.0, s.job_id))
        return page_of(
            "delayed", items[offset : offset + limit], total, offset, limit, "by eta, soonest first"
        )
    # Too many to sort on a request: walk the hash in storage order, at most offset + limit entries.
    items = []
    cursor = 0
    while len(items) < offset + limit:
        cursor, chunk = await redis.hscan(q.delay_msgs, cursor=cursor, count=max(limit, 100))
        items += await _summaries([(_text(rid), "delayed", raw) for rid, raw in chunk.items()])
        if cursor == 0:
            break
    note = f"More than {SORTABLE_DELAYED:,} delayed messages: shown in storage order, not sorted by eta."
    return page_of("delayed", items[offset : offset + limit], total, offset, limit, "storage order", note)


async def _in_flightpage_of(
    redis: Redis, q: QueueKeys, offset: int, limit: int, acks: list[AckKey]
) -> JobPage:
    # Ack sets hold at most the prefetch of each worker (2 x threads), so reading them whole is cheap.
    held: list[tuple[str, str]] = []
    async with redis.pipeline(transaction=False) as pipe:
        for ack in acks:
            if not ack.delayed:
                pipe.smembers(ack.key)
        replies = await pipe.execute()
    for ack, members in zip([a for a in acks if not a.delayed], replies, strict=True):
        held += sorted((_text(m), ack.worker) for m in members)
    page = held[offset : offset + limit]
    raws = await _hmget(redis, q.msgs, [rid for rid, _ in page])
    items = await _summaries([(rid, "in_flight", raw) for (rid, _), raw in zip(page, raws, strict=True)])
    return page_of(
        "in_flight",
        items,
        len(held),
        offset,
        limit,
        "by worker",
        "Running and prefetched messages, from the ack sets discovery has found; the count above is exact.",
    )


async def get_job(
    redis: Redis,
    q: QueueKeys,
    rid: str,
    acks: list[AckKey],
    results: ResultsConfig | None = None,
    results_redis: Redis | None = None,
) -> JobDetail | None:
    """Everything stored about one message, wherever it is now; None when it is gone."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(q.msgs, rid)
        pipe.hget(q.delay_msgs, rid)
        pipe.hget(q.dead_msgs, rid)
        pipe.zscore(q.dead, rid)
        for ack in acks:
            pipe.sismember(ack.key, rid)
        live, delayed, dead, dead_score, *held = await pipe.execute()
    holder = next((a.worker for a, h in zip(acks, held, strict=True) if h), None)
    if dead is not None:
        state, raw = "dead", dead
    elif delayed is not None:
        state, raw = "delayed", delayed
    elif live is not None:
        state, raw = ("in_flight" if holder else "ready"), live
    else:
        return None
    return await _detail(redis, q, rid, state, raw, holder, dead_score, results, results_redis)


async def _detail(
    redis: Redis,
    q: QueueKeys,
    rid: str,
    state: str,
    raw: bytes,
    holder: str | None,
    dead_score: float | None,
    results: ResultsConfig | None,
    results_redis: Redis | None,
) -> JobDetail:
    [detail] = await decoding.run(
        detail_of, [(q.ready, rid, state, raw, holder, dead_score)], _unreadable_detail
    )
    message_id = next((value for label, value in detail.ids if label == "message id"), None)
    if results is None or detail.undecodable is not None or not message_id or not detail.name:
        return detail
    result = await read_result(results_redis or redis, results, q.queue, detail.name, message_id)
    return dataclasses.replace(detail, result=result)


def _unreadable_detail(call: decoding.Call, reason: str) -> JobDetail:
    queue_key, rid, state, raw, holder = call[:5]
    ids = (("redis message id", rid),) + ((("held by worker", holder),) if holder else ())
    gone = payloads.undecodable(raw, reason)
    return JobDetail(Framework.DRAMATIQ, queue_key, rid, state, None, ids, size=len(raw), undecodable=gone)


@decoder
def detail_of(
    queue_key: str, rid: str, state: str, raw: bytes, holder: str | None, dead_score: float | None
) -> JobDetail:
    """Everything a message says about itself, decoded (run in a decoder process); no stored result."""
    message = payloads.decode_json_object(raw)
    ids: list[tuple[str, str]] = [("redis message id", rid)]
    if holder:
        ids.append(("held by worker", holder))
    if isinstance(message, Undecodable):
        return JobDetail(
            Framework.DRAMATIQ, queue_key, rid, state, None, tuple(ids), size=len(raw), undecodable=message
        )
    options = message.get("options") if isinstance(message.get("options"), dict) else {}
    assert isinstance(options, dict)
    message_id = payloads.as_text(message.get("message_id"))
    actor = payloads.as_text(message.get("actor_name"))
    if message_id:
        ids.insert(0, ("message id", message_id))
    stored_rid = payloads.as_text(options.get("redis_message_id"))
    if stored_rid and stored_rid != rid:
        ids.append(("options.redis_message_id (differs!)", stored_rid))
    stamps = [
        ("enqueued", payloads.ms_to_seconds(message.get("message_timestamp"))),
        ("last failure", payloads.ms_to_seconds(options.get("requeue_timestamp"))),
        ("eta", payloads.ms_to_seconds(options.get("eta"))),
        ("dead-lettered", dead_score / 1000.0 if dead_score else None),
    ]
    notes: list[str] = []
    traceback = payloads.as_text(options.get("traceback"))
    if state == "dead":
        notes.append(
            "Dramatiq keeps the traceback of the attempt before the last: the final attempt's traceback "
            "exists only in the worker's log."
            if traceback
            else "No traceback stored: the message failed on its first attempt (max_retries=0, a `throws` "
            "exception, max_age or an unknown actor); the error is only in the worker's log."
        )
    return JobDetail(
        framework=Framework.DRAMATIQ,
        queue_key=queue_key,
        job_id=rid,
        state=state,
        name=actor,
        ids=tuple(ids),
        args=message.get("args"),
        kwargs=message.get("kwargs"),
        options={k: v for k, v in options.items() if k != "traceback"},
        retries=payloads.as_int(options.get("retries")),
        traceback=traceback,
        timestamps=tuple((label, t) for label, t in stamps if t is not None),
        notes=tuple(notes),
        size=len(raw),
        raw=message,
    )


async def read_result(
    redis: Redis, config: ResultsConfig, queue: str, actor: str, message_id: str
) -> JobResult | None:
    key = result_key(config, queue, actor, message_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lindex(key, 0)
        pipe.pttl(key)
        raw, pttl = await pipe.execute()
    if raw is None:
        return None
    ttl = int(pttl) / 1000.0 if int(pttl) >= 0 else None
    [result] = await decoding.run(result_of, [(key, raw, ttl)], _unreadable_result)
    return result


def _unreadable_result(call: decoding.Call, reason: str) -> JobResult:
    key, raw, ttl = call
    return JobResult(key, False, exception_type="undecodable", exception_message=reason, ttl_seconds=ttl)


@decoder
def result_of(key: str, raw: bytes, ttl: float | None) -> JobResult:
    """A stored result (dramatiq's RedisBackend writes JSON), decoded in a decoder process."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return JobResult(
            key=key, ok=False, exception_type="undecodable", exception_message=payloads.head_of(raw)
        )
    if isinstance(value, dict) and value.get("__t") == "dramatiq.results.Result":
        exn = value.get("exn") if isinstance(value.get("exn"), dict) else {}
        assert isinstance(exn, dict)
        return JobResult(
            key=key,
            ok=False,
            exception_type=payloads.as_text(exn.get("type")),
            exception_message=payloads.as_text(exn.get("msg")),
            ttl_seconds=ttl,
        )
    return JobResult(key=key, ok=True, value=value, ttl_seconds=ttl)


async def _summaries(
    calls: list[tuple[str, str, bytes | None] | tuple[str, str, bytes | None, float]],
) -> list[JobSummary]:
    return await decoding.run(summary, calls, _unreadable_summary)


def _unreadable_summary(call: decoding.Call, reason: str) -> JobSummary:
    rid, state, raw = call[:3]
    dead_at = call[3] if len(call) > 3 else None
    gone = payloads.undecodable(raw or b"", reason)
    return JobSummary(rid, state, None, "undecodable payload", failed_at=dead_at, undecodable=gone)


@decoder
def summary(rid: str, state: str, raw: bytes | None, dead_at: float | None = None) -> JobSummary:
    message = payloads.decode_json_object(raw)
    if isinstance(message, Undecodable):
        return JobSummary(rid, state, None, "undecodable payload", failed_at=dead_at, undecodable=message)
    options = message.get("options") if isinstance(message.get("options"), dict) else {}
    assert isinstance(options, dict)
    actor = payloads.as_text(message.get("actor_name"))
    return JobSummary(
        job_id=rid,
        state=state,
        name=actor,
        call_preview=payloads.call_preview(actor, message.get("args"), message.get("kwargs")),
        enqueued_at=payloads.ms_to_seconds(message.get("message_timestamp")),
        eta=payloads.ms_to_seconds(options.get("eta")),
        failed_at=dead_at or payloads.ms_to_seconds(options.get("requeue_timestamp")),
        retries=payloads.as_int(options.get("retries")),
        error=payloads.last_line(payloads.as_text(options.get("traceback"))),
    )


async def _range(
    redis: Redis, count_cmd: str, count_key: str, range_cmd: str, key: str, start: int, stop: int
) -> tuple[int, list[str]]:
    async with redis.pipeline(transaction=False) as pipe:
        getattr(pipe, count_cmd)(count_key)
        getattr(pipe, range_cmd)(key, start, stop)
        total, ids = await pipe.execute()
    return int(total), [_text(i) for i in ids]


async def _hmget(redis: Redis, key: str, fields: list[str]) -> list[bytes | None]:
    if not fields:
        return []
    values: list[bytes | None] = await redis.hmget(key, fields)  # type: ignore[misc]
    return values
