"""Arq's part of a collection cycle: discovery from SCANned keys, and the snapshot script.

Queues are sorted sets that hold Arq jobs, or that a health check or a stored result names. One
read-only Lua call per cycle counts every queue: O(queues x HEAD_WINDOW + in-progress ids), flat in
the number of queued jobs. `read_plain` reads the same with plain commands when scripts are refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from callboard.collectors import decoding
from callboard.collectors.arq.codec import function_name, int_or_none, no_name
from callboard.collectors.arq.config import ArqConfig
from callboard.collectors.arq.keys import (
    ABORT_KEY,
    DEFAULT_QUEUE,
    HEALTH_FIELDS,
    HEALTH_SUFFIX,
    IN_PROGRESS_PREFIX,
    NAMESPACE,
    OWN_PREFIXES,
    RESULT_PREFIX,
    UNKNOWN_QUEUE,
    health_key,
    in_progress_key,
    job_key,
    result_key,
    retry_key,
)
from callboard.collectors.arq.results import ResultIndex, result_entry_of, unreadable_result
from callboard.collectors.decoding import Lane
from callboard.collectors.keyspace import text
from callboard.collectors.model import (
    CollectedPart,
    Framework,
    Parser,
    QueueStats,
    StuckJob,
    WorkerStats,
)

#: Due jobs looked at per queue per cycle to tell running from waiting (workers take the oldest first).
HEAD_WINDOW = 200


#: Candidate keys TYPE-checked per cycle while looking for queue zsets.
TYPE_BUDGET = 2000


#: Claims (in-progress keys) looked at per stuck check, and how often that check runs (seconds).
STUCK_LIMIT = 100


STUCK_EVERY = 10.0


# Per queue: size, due count, and the head of the due range with which of those are running (their
# in-progress key exists). Known in-progress ids found by SCAN outside the head window are checked too.
# O(queues x HEAD_WINDOW + in-progress ids): flat in the number of queued jobs.
SNAPSHOT_LUA = """
local now, window, nq, nh = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local prefix = ARGV[5]
local out, health = {}, {}
for i = 1, nq do
  local q = KEYS[i]
  local total = redis.call('ZCARD', q)
  local due = redis.call('ZCOUNT', q, '-inf', now)
  local running, oldest, seen = 0, false, {}
  if due > 0 then
    local head = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'WITHSCORES', 'LIMIT', 0, window)
    for j = 1, #head, 2 do
      seen[head[j]] = true
      if redis.call('EXISTS', prefix .. head[j]) == 1 then running = running + 1
      elseif not oldest then oldest = head[j + 1] end
    end
  end
  for j = 6, #ARGV do
    local id = ARGV[j]
    if not seen[id] and redis.call('EXISTS', prefix .. id) == 1 then
      local score = redis.call('ZSCORE', q, id)
      if score and tonumber(score) <= tonumber(now) then running = running + 1 end
    end
  end
  local full = (due > window) and 1 or 0
  out[i] = {total, due, running, oldest, full}
end
for i = 1, nh do
  local k = KEYS[nq + i]
  health[i] = {redis.call('GET', k), redis.call('PTTL', k)}
end
return {out, health}
"""


def liveness(queues: Iterable[QueueStats], workers: Iterable[WorkerStats]) -> dict[str, tuple[int, int]]:
    """(alive, stale) per namespace, for callboard_workers. Arq workers leave no registry, only a
    health-check key per queue: a known queue with one counts as alive, one without as stale."""
    checked = {q for w in workers if w.framework is Framework.ARQ for q in w.queues}
    by_ns: dict[str, list[int]] = {}
    for q in queues:
        if q.framework is Framework.ARQ:
            by_ns.setdefault(q.namespace, [0, 0])[0 if q.name in checked else 1] += 1
    return {ns: (alive, stale) for ns, (alive, stale) in by_ns.items()}


class ArqCollector:
    framework = Framework.ARQ
    scripts = (SNAPSHOT_LUA,)

    def __init__(self, config: ArqConfig | None = None) -> None:
        self.config = config or ArqConfig()
        self._queues: dict[str, float] = dict.fromkeys(self.config.queues, time.time())
        self._candidates: dict[str, None] = {}
        self._typed: dict[str, str] = {}
        self._seen_other: set[str] = set()
        self._in_progress: set[str] = set()
        self._in_progress_pass: set[str] = set()
        #: job id -> (when Callboard first saw its claim, the try counter then): a lower bound of
        #: how long it has been running.
        self._claims: dict[str, tuple[float, str | None]] = {}
        self._stuck: tuple[StuckJob, ...] = ()
        self._stuck_checked = 0.0
        self.results = ResultIndex()

    # -- discovery ---------------------------------------------------------------------------------

    def observe(self, keys: Iterable[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        for key in keys:
            if key.startswith(RESULT_PREFIX):
                job_id = key[len(RESULT_PREFIX) :]
                self.results.seen_in_pass.add(job_id)
                if job_id not in self.results.entries:
                    self.results.pending[job_id] = None
            elif key.startswith(IN_PROGRESS_PREFIX):
                job_id = key[len(IN_PROGRESS_PREFIX) :]
                self._in_progress_pass.add(job_id)
                self._in_progress.add(job_id)
                self._claims.setdefault(job_id, (now, None))
            elif key.endswith(HEALTH_SUFFIX):
                self._queues[key[: -len(HEALTH_SUFFIX)]] = now
            elif key in self._queues:
                self._queues[key] = now
            elif not key.startswith(OWN_PREFIXES) and key != ABORT_KEY:
                self._seen_other.add(key)
                if key not in self._typed:
                    self._candidates[key] = None

    def end_pass(self) -> None:
        self.results.end_pass()
        self._in_progress = set(self._in_progress_pass)
        self._in_progress_pass = set()
        self._claims = {j: c for j, c in self._claims.items() if j in self._in_progress}
        # Keys that are not sorted sets keep their type (a database full of other keys is typed once,
        # not every pass); sorted sets and vanished keys are looked at again next pass, since keys
        # get deleted and recreated. Memory: one entry per non-Arq key still present.
        self._typed = {k: t for k, t in self._typed.items() if t != "zset" and k in self._seen_other}
        self._seen_other = set()

    async def after_scan(self, redis: Redis) -> int:
        """Budgeted follow-up reads of what SCAN found (key types, result payloads); returns round trips."""
        trips = 0
        if self._candidates:
            trips += await self._find_queues(redis)
        if self.results.pending:
            trips += await self._read_results(redis)
        self.results.expire(time.time())
        if time.time() - self._stuck_checked >= STUCK_EVERY:
            trips += await self._check_stuck(redis)
        return trips

    async def _check_stuck(self, redis: Redis) -> int:
        """Claims older than the job timeout: their TTL, try counter, function and queue, one round trip.

        O(old claims x queues), at most STUCK_LIMIT claims, every STUCK_EVERY seconds; a claim whose
        try counter moved since it was first seen is a new run and starts its clock again."""
        now = time.time()
        self._stuck_checked = now
        limit = self.config.job_timeout
        old = sorted((c[0], j) for j, c in self._claims.items() if now - c[0] > limit)[:STUCK_LIMIT]
        if not old:
            self._stuck = ()
            return 0
        queues = self.queue_names()
        async with redis.pipeline(transaction=False) as pipe:
            for _, job_id in old:
                pipe.pttl(in_progress_key(job_id))
                pipe.get(retry_key(job_id))
                pipe.get(job_key(job_id))
                for q in queues:
                    pipe.zscore(q, job_id)
            replies = await pipe.execute()
        stuck: list[StuckJob] = []
        width = 3 + len(queues)
        raws = [replies[i * width + 2] for i in range(len(old))]
        calls = [(raw, self.config.serializer) for raw in raws if raw is not None]
        decoded = iter(await decoding.run(function_name, calls, no_name, lane=Lane.BACKGROUND, partial=True))
        names = [next(decoded, None) if raw is not None else None for raw in raws]
        for i, (seen, job_id) in enumerate(old):
            pttl, tries, raw, *scores = replies[i * width : (i + 1) * width]
            tries = text(tries) if tries is not None else None
            first_try = self._claims[job_id][1]
            if first_try is not None and tries != first_try:
                self._claims[job_id] = (now, tries)  # another run of the same id: a new clock
                continue
            self._claims[job_id] = (seen, tries)
            queue = next((q for q, score in zip(queues, scores, strict=True) if score is not None), None)
            if int(pttl) == -2 or queue is None:  # finished, or a cron claim kept after the run
                continue
            name = names[i]
            stuck.append(
                StuckJob(
                    framework=Framework.ARQ,
                    queue=queue,
                    job_id=job_id,
                    name=name,
                    running_for=now - seen,
                    claim_ttl=int(pttl) / 1000.0 if int(pttl) >= 0 else None,
                    tries=int_or_none(tries),
                )
            )
        self._stuck = tuple(stuck)
        return 1

    async def _find_queues(self, redis: Redis) -> int:
        batch = list(self._candidates)[:TYPE_BUDGET]
        for key in batch:
            del self._candidates[key]
        async with redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.type(key)
            types = await pipe.execute()
        zsets = [k for k, t in zip(batch, types, strict=True) if text(t) == "zset"]
        self._typed.update((k, text(t)) for k, t in zip(batch, types, strict=True))
        if not zsets:
            return 1
        # A zset is an Arq queue when its first member is a job (job or result key exists), or by name.
        async with redis.pipeline(transaction=False) as pipe:
            for key in zsets:
                pipe.zrange(key, 0, 0)
            heads = await pipe.execute()
        async with redis.pipeline(transaction=False) as pipe:
            for head in heads:
                job_id = text(head[0]) if head else ""
                pipe.exists(job_key(job_id), result_key(job_id), in_progress_key(job_id))
            found = await pipe.execute()
        now = time.time()
        for key, hits in zip(zsets, found, strict=True):
            if int(hits) > 0 or key == DEFAULT_QUEUE:
                self._queues[key] = now
        return 3

    async def _read_results(self, redis: Redis) -> int:
        ids = list(self.results.pending)[: self.config.result_budget]
        trips = 0
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            async with redis.pipeline(transaction=False) as pipe:
                pipe.mget([result_key(i) for i in chunk])
                for i in chunk:
                    pipe.pttl(result_key(i))
                raws, *ttls = await pipe.execute()
            trips += 1
            now = time.time()
            present = [(job_id, raw, int(ttl)) for job_id, raw, ttl in zip(chunk, raws, ttls, strict=True)]
            for job_id, raw, _ in present:
                if raw is None:  # expired or deleted since SCAN found it
                    del self.results.pending[job_id]
            present = [p for p in present if p[1] is not None]
            calls = [(raw, self.config.serializer, ttl, now) for _, raw, ttl in present]
            # A prefix when a payload went over the decode budget: the rest stay pending for the next
            # cycle, so a cycle pays for at most one hostile payload (and never twice for the same).
            entries = await decoding.run(
                result_entry_of, calls, unreadable_result, lane=Lane.BACKGROUND, partial=True
            )
            for (job_id, _, _), entry in zip(present, entries, strict=False):
                del self.results.pending[job_id]
                self.results.add(job_id, entry)
                if entry.queue != UNKNOWN_QUEUE:  # an unreadable result names no queue: invent none
                    self._queues.setdefault(entry.queue, now)
            if len(entries) < len(calls):
                break
        return trips

    def queue_names(self) -> list[str]:
        return sorted(self._queues)

    def in_progress_ids(self) -> list[str]:
        return sorted(self._in_progress)

    # -- snapshot ----------------------------------------------------------------------------------

    def stage(self, pipe: Pipeline, sha: Mapping[str, str]) -> tuple[Parser, int]:
        queues = self.queue_names()
        keys = queues + [health_key(q) for q in queues]
        now_ms = int(time.time() * 1000)
        ids = self.in_progress_ids()[:5000]
        args = [str(now_ms), str(HEAD_WINDOW), str(len(queues)), str(len(queues)), IN_PROGRESS_PREFIX, *ids]
        pipe.evalsha(sha[SNAPSHOT_LUA], len(keys), *keys, *args)
        return lambda replies: self._parse(replies[0], queues, now_ms / 1000.0), 1

    async def read_plain(self, redis: Redis) -> tuple[Any, Parser, int]:
        """What SNAPSHOT_LUA returns, read with plain commands, for a user whose ACL refuses scripts.

        Two pipelined round trips: the counters, the head window of each queue, the known claims'
        scores and the health checks; then EXISTS of the claim of every id seen. Same bounds as
        the script (HEAD_WINDOW per queue, 5,000 known claims); the reply has the script's shape."""
        queues = self.queue_names()
        now_ms = int(time.time() * 1000)
        ids = self.in_progress_ids()[:5000]
        async with redis.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.zcard(q)
                pipe.zcount(q, "-inf", now_ms)
                pipe.zrangebyscore(q, "-inf", now_ms, start=0, num=HEAD_WINDOW, withscores=True)
                if ids:
                    pipe.zmscore(q, ids)
            for q in queues:
                pipe.get(health_key(q))
                pipe.pttl(health_key(q))
            replies = await pipe.execute()
        width = 4 if ids else 3
        per_queue = [replies[width * i : width * (i + 1)] for i in range(len(queues))]
        heads = [[(text(m), score) for m, score in row[2]] for row in per_queue]
        wanted = sorted({j for head in heads for j, _ in head} | set(ids))
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in wanted:
                pipe.exists(in_progress_key(job_id))
            claimed = dict(zip(wanted, await pipe.execute(), strict=True)) if wanted else {}
        rows = []
        for row, head in zip(per_queue, heads, strict=True):
            total, due = int(row[0]), int(row[1])
            running, oldest = 0, None
            for job_id, score in head if due else ():
                if claimed[job_id]:
                    running += 1
                elif oldest is None:
                    oldest = score
            seen = {j for j, _ in head}
            scores = row[3] if ids else []
            for job_id, score in zip(ids, scores, strict=True):
                if job_id not in seen and claimed[job_id] and score is not None and score <= now_ms:
                    running += 1
            rows.append([total, due, running, oldest, 1 if due > HEAD_WINDOW else 0])
        base = width * len(queues)
        health = [[replies[base + 2 * i], replies[base + 2 * i + 1]] for i in range(len(queues))]
        return [rows, health], lambda r: self._parse(r[0], queues, now_ms / 1000.0), 2

    def _parse(self, reply: Any, queues: list[str], now: float) -> CollectedPart:
        rows, health = reply
        stats: list[QueueStats] = []
        workers: list[WorkerStats] = []
        complete = self.results.complete
        for name, row, (hc, pttl) in zip(queues, rows, health, strict=True):
            total, due, running, oldest, full = (row + [None] * 5)[:5]
            total, due, running = int(total), int(due), int(running)
            if total:
                self._queues[name] = now
            ready = max(0, due - running)
            age: float | None = 0.0
            if ready:
                age = max(0.0, now - float(oldest) / 1000.0) if oldest else None
            results = {
                "succeeded": self.results.counts[(name, "succeeded")],
                "failed": self.results.counts[(name, "failed")],
            }
            stats.append(
                QueueStats(
                    framework=Framework.ARQ,
                    namespace=NAMESPACE,
                    name=name,
                    key=name,
                    counts={"ready": ready, "deferred": max(0, total - due), "in_progress": running},
                    oldest_ready_age=age,
                    oldest_dead_age=None,
                    results=results,
                    # One key per queue, overwritten by each of its workers: it says "at least one",
                    # never how many, and a worker that died simply lets it expire (no stale state).
                    workers={"alive": 1 if hc is not None else 0},
                )
            )
            if hc is not None:
                workers.append(self._health_worker(name, text(hc), int(pttl), now))
        notes: list[str] = []
        if not complete:
            notes.append(
                f"Arq results index is partial: {len(self.results.pending):,} result keys not read yet, "
                f"{self.results.passes} full scans so far; failed/succeeded counts are still growing."
            )
        self._forget_idle(now)
        return CollectedPart(
            tuple(stats),
            tuple(workers),
            tuple(notes),
            failures=self.results.failures.report(now),
            stuck=self._stuck,
        )

    def _health_worker(self, queue: str, value: str, pttl: int, now: float) -> WorkerStats:
        interval = self.config.health_check_interval
        age = max(0.0, interval + 1.0 - pttl / 1000.0) if pttl >= 0 else None
        details = dict(HEALTH_FIELDS.findall(value))
        details["raw"] = value
        if interval >= 600:
            details["liveness"] = (
                f"coarse: workers refresh this key every {interval:.0f} s (Arq's health_check_interval)"
            )
        return WorkerStats(
            framework=Framework.ARQ,
            namespace=NAMESPACE,
            worker_id=health_key(queue),
            last_seen=now - age if age is not None else now,
            alive=True,
            role="health check",
            in_flight=int_or_none(details.get("j_ongoing")),
            queues=(queue,),
            consumes=(queue,),
            details=details,
        )

    def _forget_idle(self, now: float) -> None:
        for name, seen in list(self._queues.items()):
            if now - seen > self.config.idle_ttl and name not in self.config.queues:
                del self._queues[name]
