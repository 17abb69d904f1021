"""Dramatiq's part of a collection cycle: discovery from SCANned keys, and the snapshot script.

One read-only Lua call per cycle returns every queue's counters, the head message of each ready
list (for the oldest age), the oldest dead letter, heartbeats and ack-set sizes: O(queues + workers
+ ack sets), nothing grows with the number of messages. `read_plain` reads the same with plain
commands for a user whose ACL refuses scripts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from callboard.collectors import decoding
from callboard.collectors.decoding import Lane
from callboard.collectors.dramatiq.codec import runnable_since
from callboard.collectors.dramatiq.config import DramatiqConfig
from callboard.collectors.dramatiq.deadletters import DeadLetters
from callboard.collectors.dramatiq.keys import AckKey, QueueKeys, classify, heartbeats_key, queue_keys
from callboard.collectors.failures import FailureIndex
from callboard.collectors.keyspace import text as _text
from callboard.collectors.model import (
    QUEUE_WORKER_STATES,
    CollectedPart,
    Framework,
    Parser,
    QueueStats,
    WorkerStats,
)

#: Head payloads above this are not read by the snapshot (oldest age is then unknown).
HEAD_CAP_BYTES = 65_536


#: Heartbeat members read per namespace per cycle.
HEARTBEAT_LIMIT = 1000
#: Queues and ack sets per call of the snapshot script (see `stage`).
QUEUE_CHUNK = 100
ACK_CHUNK = 2000


#: WorkerStats.role of a broker id seen holding an ack set, and of one never seen holding any: Redis
#: cannot tell a producer (a web app that only enqueues) from a consumer that has fetched nothing since
#: Callboard started.
CONSUMER = "consumer"
PRODUCER_OR_IDLE = "producer or idle"


#: QueueStats.workers states: consumers whose heartbeat is fresh, and those whose heartbeat is not.
WORKER_STATES = QUEUE_WORKER_STATES[Framework.DRAMATIQ]


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
class _Seen:
    """Mutable discovery state: what exists, and when it was last seen (epoch seconds)."""

    namespaces: dict[str, float] = field(default_factory=dict)
    queues: dict[str, float] = field(default_factory=dict)
    acks: dict[AckKey, float] = field(default_factory=dict)
    #: (namespace, broker id) -> the queues it has been seen holding an ack set of (SCAN found the key,
    #: or the snapshot counted members in it). Redis keeps no queue list per worker, and an idle consumer
    #: holds no ack set, so this memory is the only way to tell consumers of a queue from producers. A
    #: Dramatiq process never stops consuming a queue (its consumers are made at start and on each queue
    #: declared, never removed), so an entry lasts while its broker id stays among the heartbeats the
    #: snapshot reads, with no expiry by time: bounded by HEARTBEAT_LIMIT per namespace times the queues.
    consumers: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def consumed(self, ack: AckKey) -> None:
        self.consumers.setdefault((ack.namespace, ack.worker), set()).add(ack.queue)


def liveness(queues: Iterable[QueueStats], workers: Iterable[WorkerStats]) -> dict[str, tuple[int, int]]:
    """(alive, stale) workers per namespace, for callboard_workers: a worker is alive while its
    heartbeat is fresh. Every namespace with queues is listed, 0 included, so alerts work when idle."""
    by_ns = {q.namespace: [0, 0] for q in queues if q.framework is Framework.DRAMATIQ}
    for w in workers:
        if w.framework is Framework.DRAMATIQ:
            by_ns.setdefault(w.namespace, [0, 0])[0 if w.alive else 1] += 1
    return {ns: (alive, stale) for ns, (alive, stale) in by_ns.items()}


class DramatiqCollector:
    """Per-target Dramatiq reader: discovery state plus the snapshot script."""

    framework = Framework.DRAMATIQ
    scripts = (SNAPSHOT_LUA,)

    def __init__(self, config: DramatiqConfig | None = None) -> None:
        self.config = config or DramatiqConfig()
        self._seen = _Seen()
        #: (namespace, broker id) of the brokers whose heartbeat was fresh at the last snapshot.
        self._alive: frozenset[tuple[str, str]] = frozenset()
        now = time.time()
        for ns in self.config.namespaces:
            self._seen.namespaces[ns] = now
        self._pending: dict[str, float] = {}
        #: Dead letters grouped by cause (the failures page), read in the background.
        self.dead = DeadLetters(self.config.dead_message_ttl)

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
                self._seen.consumed(ack)
        for name, seen in list(self._pending.items()):
            q = queue_keys(name)
            if q and q.namespace in self._seen.namespaces:
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

    def holder_keys(self, queue: QueueKeys) -> list[AckKey]:
        """Every ack set that may hold a message of `queue` now: those discovery found, and the sets of
        every live broker of its namespace, found or not (a worker that fetches again makes a new set,
        which SCAN may take a whole pass to find: meanwhile a job it holds would look ready). For one
        job's page: one SISMEMBER each, pipelined; at most HEARTBEAT_LIMIT live brokers."""
        found = set(self.ack_keys(queue))
        for ns, worker in self._alive:
            if ns == queue.namespace:
                found.add(AckKey(ns, worker, queue.queue, False))
                found.add(AckKey(ns, worker, queue.queue, True))
        return sorted(found, key=lambda a: (a.worker, a.delayed))

    # -- failure groups ----------------------------------------------------------------------------

    @property
    def failures(self) -> FailureIndex:
        return self.dead.failures

    async def after_scan(self, redis: Redis) -> int:
        """Read dead letters for the failure groups (deadletters.py): a budgeted step per cycle."""
        return await self.dead.step(redis, self.queue_keys())

    # -- snapshot ----------------------------------------------------------------------------------

    def stage(self, pipe: Pipeline, sha: Mapping[str, str]) -> tuple[Parser, int]:
        """Queue the snapshot script on `pipe`; return the parser of its replies (it decodes the head
        messages for the oldest ages in a decoder process: await it) and how many replies it adds.

        Many queues or ack sets are split over several calls of the script in the same pipeline, so
        one round trip still reads them all but no single call holds Redis for long (measured with
        SLOWLOG, 5 messages a queue: 100 queues hold it 1.8 ms, where 1,000 in one call took 19 ms)."""
        queues = self.queue_keys()
        namespaces = sorted({q.namespace for q in queues} | set(self._seen.namespaces))
        acks = self.ack_keys()
        queue_chunks = [queues[i : i + QUEUE_CHUNK] for i in range(0, len(queues), QUEUE_CHUNK)] or [[]]
        ack_chunks = [acks[i : i + ACK_CHUNK] for i in range(0, len(acks), ACK_CHUNK)] or [[]]
        # The first call also reads the heartbeats; later ones only queues, then only ack sets.
        calls = [(queue_chunks[0], namespaces, ack_chunks[0])]
        calls += [(chunk, [], []) for chunk in queue_chunks[1:]]
        calls += [([], [], chunk) for chunk in ack_chunks[1:]]
        for call_queues, call_namespaces, call_acks in calls:
            keys: list[str] = []
            for q in call_queues:
                keys += [q.ready, q.msgs, q.delay, q.delay_msgs, q.dead]
            keys += [heartbeats_key(ns) for ns in call_namespaces]
            keys += [a.key for a in call_acks]
            counts = (len(call_queues), len(call_namespaces), len(call_acks), HEAD_CAP_BYTES, HEARTBEAT_LIMIT)
            pipe.evalsha(sha[SNAPSHOT_LUA], len(keys), *keys, *(str(n) for n in counts))

        def parse(replies: list[Any]) -> Awaitable[CollectedPart]:
            joined: list[list[Any]] = [[], [], []]
            for reply in replies:
                for part, values in zip(joined, reply, strict=True):
                    part += values
            return self._parse(joined, queues, namespaces, acks)

        return parse, len(calls)

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
        return reply, lambda r: self._parse(r[0], queues, namespaces, acks), trips

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
                # Kept while the worker lives: it fetches from this queue again, and SCAN may take a
                # whole pass to find the new set (meanwhile a job it holds would look ready). Costs
                # one SCARD per live worker and queue it consumed.
                last = beats.get((ack.namespace, ack.worker))
                if last is None or now - last >= timeout:
                    self._seen.acks.pop(ack, None)
                continue
            held.setdefault((ack.namespace, ack.worker), []).append((ack, size))
            self._seen.consumed(ack)
            last = beats.get((ack.namespace, ack.worker))
            if last is None or now - last >= timeout:
                ready_key = QueueKeys(ack.namespace, ack.queue).ready
                orphaned[ready_key] = orphaned.get(ready_key, 0) + size
        self._alive = frozenset(w for w, last in beats.items() if now - last < timeout)
        # A broker id gone from the heartbeats read is gone for good (a new process gets a new one).
        self._seen.consumers = {w: qs for w, qs in self._seen.consumers.items() if w in beats}
        consuming = self._consuming(beats, now)
        stats = tuple(
            self._queue_stats(q, row, orphaned.get(q.ready, 0), now, since.get(i), consuming)
            for i, (q, row) in enumerate(zip(queues, q_rows, strict=True))
        )
        workers = tuple(
            self._worker(ns, w, last, held.get((ns, w), []), now) for (ns, w), last in beats.items()
        )
        self._forget_idle(stats, now)
        self.dead.counts = {q.key: q.counts["dead"] for q in stats}
        missing = sum(self.dead.counts.values()) - len(self.failures)
        return CollectedPart(
            stats, workers, failures=self.failures.report(now), failures_missing=max(0, missing)
        )

    def _consuming(self, beats: Mapping[tuple[str, str], float], now: float) -> dict[str, list[int]]:
        """Queue key -> [alive, stale] consumers: the broker ids seen holding its messages, by the
        freshness of their heartbeat (a stale one is dead, or stopped and not yet removed)."""
        out: dict[str, list[int]] = {}
        timeout = self.config.heartbeat_timeout
        for (ns, worker), queues in self._seen.consumers.items():
            fresh = now - beats[(ns, worker)] < timeout
            for queue in queues:
                out.setdefault(QueueKeys(ns, queue).ready, [0, 0])[0 if fresh else 1] += 1
        return out

    def _queue_stats(
        self,
        q: QueueKeys,
        row: list[Any],
        orphaned: int,
        now: float,
        since: float | None,
        consuming: Mapping[str, list[int]],
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
            workers=dict(zip(WORKER_STATES, consuming.get(q.ready, (0, 0)), strict=True)),
        )

    def _worker(
        self, ns: str, worker: str, last: float, held: list[tuple[AckKey, int]], now: float
    ) -> WorkerStats:
        consumes = tuple(sorted(self._seen.consumers.get((ns, worker), ())))
        return WorkerStats(
            framework=Framework.DRAMATIQ,
            namespace=ns,
            worker_id=worker,
            last_seen=last,
            alive=now - last < self.config.heartbeat_timeout,
            role=CONSUMER if consumes else PRODUCER_OR_IDLE,
            in_flight=sum(size for _, size in held),
            queues=tuple(sorted({a.queue for a, _ in held})),
            consumes=consumes,
        )

    def _forget_idle(self, stats: tuple[QueueStats, ...], now: float) -> None:
        ttl = self.config.idle_ttl
        for name, seen in list(self._seen.queues.items()):
            if now - seen > ttl and name not in self.config.queues:
                del self._seen.queues[name]


def _unknown(call: decoding.Call, reason: str) -> None:
    return None
