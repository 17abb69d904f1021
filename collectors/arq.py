"""Arq 0.28's Redis layout: the only module that knows its key names.

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

Job, result, retry and in-progress keys are shared by every queue of the database. Arq keeps no index
of results (failures are just `arq:result:*` keys with s=False that expire), so a background index
is built by the shared SCAN, read in MGET batches with a budget per cycle. Payloads are pickles by
default: they are decoded only by the restricted unpickler, and every decode runs in a budgeted decoder
process (collectors/decoding.py): the builders below are pure functions of the raw bytes that the
async entry points hand to `decoding.run`. See shared/redis-layouts.md §2-3.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from callboard.collectors import decoding, payloads, transport, unpickler
from callboard.collectors.decoding import Lane, decoder
from callboard.collectors.failures import UNDECODABLE, Failure, FailureIndex, split_exception
from callboard.collectors.keyspace import text
from callboard.collectors.model import (
    CollectedPart,
    Framework,
    JobDetail,
    JobPage,
    JobResult,
    JobSummary,
    Parser,
    QueueStats,
    StoredCall,
    StuckJob,
    Undecodable,
    WorkerStats,
    page_of,
)

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
#: Due jobs looked at per queue per cycle to tell running from waiting (workers take the oldest first).
HEAD_WINDOW = 200
#: Result keys read (MGET + PTTL) per cycle.
RESULT_BUDGET = 2000
#: Candidate keys TYPE-checked per cycle while looking for queue zsets.
TYPE_BUDGET = 2000
#: Claims (in-progress keys) looked at per stuck check, and how often that check runs (seconds).
STUCK_LIMIT = 100
STUCK_EVERY = 10.0
SERIALIZERS = ("auto", "pickle", "msgpack", "json")
BROWSE_STATES = ("ready", "deferred", "in_progress", "failed", "succeeded")
_HEALTH = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True, slots=True)
class ArqConfig:
    queues: tuple[str, ...] = ()
    serializer: str = "auto"
    #: The workers' health_check_interval, to turn the key's TTL into an age (Arq's default: 3600 s).
    health_check_interval: float = 3600.0
    result_budget: int = RESULT_BUDGET
    #: The operator says the workers run with `allow_abort_jobs=True`. Redis cannot tell, and
    #: without it an abort is a no-op for a running job and runs a deferred one at once.
    allow_abort_jobs: bool = False
    #: The workers' job_timeout (Arq's default 300 s): a claim older than this is "stuck". Arq gives
    #: the claim the longest timeout of any function plus 10 s, and a worker whose event loop is
    #: blocked cannot time a job out, so a claim can outlive its job's timeout by far.
    job_timeout: float = 300.0


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


_OWN_PREFIXES = (JOB_PREFIX, IN_PROGRESS_PREFIX, RETRY_PREFIX, RESULT_PREFIX)


# -- decoding ----------------------------------------------------------------------------------------


@decoder
def decode(raw: bytes | None, serializer: str = "auto") -> Any | Undecodable:
    """Decode a job or result payload with the configured serializer, or sniff it. Never raises."""
    refused = payloads.unreadable(raw)
    if refused is not None:
        return refused
    assert raw is not None  # unreadable() refuses None
    kind = serializer if serializer != "auto" else _sniff(raw)
    if kind == "pickle":
        return unpickler.decode(raw)
    try:
        if kind == "json":
            return json.loads(raw)
        return msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=3)
    # TypeError: a msgpack map whose key is a map or an array (unhashable), found by Hypothesis.
    except (
        ValueError,
        TypeError,
        RecursionError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        return payloads.undecodable(raw, f"not readable as {kind}: {type(exc).__name__}")


def decode_record(raw: bytes | None, serializer: str = "auto") -> dict[str, Any] | Undecodable:
    """A job or result payload, which Arq always writes as a dict; anything else is undecodable."""
    value = decode(raw, serializer)
    if isinstance(value, Undecodable | dict):
        return value
    return payloads.undecodable(raw or b"", "not a dict")


def _sniff(raw: bytes) -> str:
    # Pickle protocol >= 2 starts with 0x80 then the protocol; arq's dicts in msgpack are fixmaps (0x8_).
    if raw[:1] == b"\x80":
        return "pickle"
    if raw[:1] in (b"{", b"["):
        return "json"
    if raw[:1] and 0x80 <= raw[0] <= 0x8F or raw[:1] in (b"\xde", b"\xdf"):
        return "msgpack"
    return "pickle"


def serializer_of(raw: bytes, serializer: str = "auto") -> str:
    """The serializer that wrote `raw`: the configured one, else sniffed. Writes reuse it (arq_controls)."""
    return serializer if serializer != "auto" else _sniff(raw)


def exception_parts(value: Any) -> tuple[str, str, Any]:
    """(type, message, attributes) of a stored exception: a real builtin one or a placeholder."""
    if isinstance(value, BaseException):
        attrs = {k: v for k, v in vars(value).items()} if hasattr(value, "__dict__") else {}
        args = value.args
        message = payloads.safe_str(args[0]) if len(args) == 1 else (payloads.safe_str(args) if args else "")
        return type(value).__qualname__, message, attrs or None
    if isinstance(value, unpickler.Placeholder):
        args = value.args
        shown = ", ".join(map(payloads.safe_repr, args))
        message = payloads.safe_str(args[0]) if len(args) == 1 else shown
        return value.qualified_name, message, value.state
    return type(value).__name__, payloads.safe_str(value)[:500], None


#: Containers nested deeper than this are shown as "…".
DISPLAY_DEPTH = 20
#: What a one-line preview (payloads.call_preview) can show of args: 4 levels, 8 items and a "…".
_PREVIEW = (DISPLAY_DEPTH - 4, 9)


def display(value: Any, depth: int = 0, width: int | None = None) -> Any:
    """A JSON-able rendering of decoded data: placeholders as `module.Class(args) {state}` text.

    `width` keeps only the first items of each container (previews: a list holding one list many
    times over is then not walked exponentially)."""
    if depth > DISPLAY_DEPTH:
        return "…"
    if isinstance(value, unpickler.Placeholder):
        return {"__class__": value.qualified_name, "repr": unpickler.placeholder_text(value)}
    if isinstance(value, type):
        return f"<class {getattr(value, '__module_name__', value.__module__)}.{value.__name__}>"
    if isinstance(value, BaseException):
        return f"{type(value).__qualname__}{payloads.safe_repr(value.args)}"
    if isinstance(value, dict):
        pairs = value.items() if width is None else itertools.islice(value.items(), width)
        return {payloads.safe_str(k): display(v, depth + 1, width) for k, v in pairs}
    if isinstance(value, list | tuple | set | frozenset):
        items = value if width is None else itertools.islice(value, width)
        return [display(v, depth + 1, width) for v in items]
    if isinstance(value, int) and not isinstance(value, bool) and not payloads.fits(value):
        return payloads.int_text(value)  # str() or json.dumps() of it would raise (or take quadratic time)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, bytes | bytearray):
        return repr(bytes(value[:200]))
    return payloads.safe_str(value) if hasattr(value, "isoformat") else payloads.safe_repr(value)


# -- results index -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultEntry:
    queue: str
    function: str
    ok: bool
    finished_at: float | None
    expires_at: float | None
    #: One line: the exception for failures.
    error: str | None
    #: The exception's type alone (failures), or UNDECODABLE.
    exception: str | None = None


@dataclass(slots=True)
class ResultIndex:
    """Result keys found by SCAN, read in budgeted MGET batches; counts kept incrementally."""

    entries: dict[str, ResultEntry] = field(default_factory=dict)
    pending: dict[str, None] = field(default_factory=dict)
    seen_in_pass: set[str] = field(default_factory=set)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    passes: int = 0
    #: Min-heap of (expires_at, job_id), so that `expire()`, which runs every cycle, costs
    #: O(expired x log n) instead of a walk over every entry (~5 ms per cycle at 100k results).
    #: Items of removed or re-added entries stay until popped or compacted by `end_pass()`.
    expiry: list[tuple[float, str]] = field(default_factory=list)
    #: The failed entries, grouped by cause (the failures page); kept in step by add/remove.
    failures: FailureIndex = field(default_factory=lambda: FailureIndex(Framework.ARQ))

    def add(self, job_id: str, entry: ResultEntry) -> None:
        self.remove(job_id)
        self.entries[job_id] = entry
        self.counts[(entry.queue, "succeeded" if entry.ok else "failed")] += 1
        if entry.expires_at is not None:
            heapq.heappush(self.expiry, (entry.expires_at, job_id))
        if not entry.ok:
            kind, message = split_exception(entry.error)
            self.failures.add(
                Failure(
                    job_id=job_id,
                    queue=entry.queue,
                    name=None if entry.exception == UNDECODABLE else entry.function,
                    exception=entry.exception or kind,
                    message=message if entry.exception != UNDECODABLE else (entry.error or ""),
                    failed_at=entry.finished_at,
                    expires_at=entry.expires_at,
                )
            )

    def remove(self, job_id: str) -> None:
        old = self.entries.pop(job_id, None)
        if old is not None:
            self.counts[(old.queue, "succeeded" if old.ok else "failed")] -= 1
            if not old.ok:
                self.failures.remove(job_id)

    def expire(self, now: float) -> None:
        while self.expiry and self.expiry[0][0] <= now:
            at, job_id = heapq.heappop(self.expiry)
            entry = self.entries.get(job_id)
            if entry is not None and entry.expires_at == at:  # else a stale item: removed or re-added
                self.remove(job_id)

    def end_pass(self) -> None:
        # Keys not seen in a whole pass are gone (deleted or re-run); forget them.
        for job_id in [j for j in self.entries if j not in self.seen_in_pass and j not in self.pending]:
            self.remove(job_id)
        self.seen_in_pass = set()
        self.passes += 1
        if len(self.expiry) > 2 * len(self.entries) + 1000:  # O(entries), once per pass like the above
            self.expiry = [(e.expires_at, j) for j, e in self.entries.items() if e.expires_at is not None]
            heapq.heapify(self.expiry)

    @property
    def complete(self) -> bool:
        return self.passes > 0 and not self.pending


# -- snapshot ----------------------------------------------------------------------------------------

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
            elif not key.startswith(_OWN_PREFIXES) and key != ABORT_KEY:
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
        decoded = iter(await decoding.run(function_name, calls, _no_name, lane=Lane.BACKGROUND, partial=True))
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
                    tries=_int(tries),
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
                result_entry_of, calls, _unreadable_result, lane=Lane.BACKGROUND, partial=True
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

    def stage(self, pipe: Pipeline, sha: Mapping[str, str]) -> Parser:
        queues = self.queue_names()
        keys = queues + [health_key(q) for q in queues]
        now_ms = int(time.time() * 1000)
        ids = self.in_progress_ids()[:5000]
        args = [str(now_ms), str(HEAD_WINDOW), str(len(queues)), str(len(queues)), IN_PROGRESS_PREFIX, *ids]
        pipe.evalsha(sha[SNAPSHOT_LUA], len(keys), *keys, *args)
        return lambda reply: self._parse(reply, queues, now_ms / 1000.0)

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
        return [rows, health], lambda r: self._parse(r, queues, now_ms / 1000.0), 2

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
        details = dict(_HEALTH.findall(value))
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
            in_flight=_int(details.get("j_ongoing")),
            queues=(queue,),
            details=details,
        )

    def _forget_idle(self, now: float, ttl: float = 3600.0) -> None:
        for name, seen in list(self._queues.items()):
            if now - seen > ttl and name not in self.config.queues:
                del self._queues[name]


@decoder
def function_name(raw: bytes | None, serializer: str) -> str | None:
    """The function a job payload names (the stuck check)."""
    job = decode_record(raw, serializer)
    return payloads.as_text(job.get("f")) if isinstance(job, dict) else None


def _no_name(call: decoding.Call, reason: str) -> str | None:
    return None


@decoder
def result_entry_of(raw: bytes, serializer: str, pttl: int, now: float) -> ResultEntry:
    """The results index's entry for a stored result (run in a decoder process)."""
    return result_entry(decode_record(raw, serializer), pttl, now)


def _unreadable_result(call: decoding.Call, reason: str) -> ResultEntry:
    raw, _, pttl, now = call
    return result_entry(payloads.undecodable(raw, reason), pttl, now)


def result_entry(value: dict[str, Any] | Undecodable, pttl: int, now: float) -> ResultEntry:
    if isinstance(value, Undecodable):
        reason = value.reason
        return ResultEntry(
            UNKNOWN_QUEUE,
            "?",
            False,
            None,
            now + pttl / 1000.0 if pttl >= 0 else None,
            f"undecodable: {reason}",
            UNDECODABLE,
        )
    ok = bool(value.get("s"))
    error = kind = None
    if not ok:
        kind, message, _ = exception_parts(value.get("r"))
        error = f"{kind}: {message}" if message else kind
    queue = value.get("q")
    if not isinstance(queue, str):
        queue = DEFAULT_QUEUE
    elif not payloads.is_key(queue):  # no Redis key has this name: a hand-written result, no queue
        queue = UNKNOWN_QUEUE
    return ResultEntry(
        queue=queue,
        function=payloads.safe_str(value.get("f", "?"))[:300],
        ok=ok,
        finished_at=payloads.ms_to_seconds(value.get("ft")),
        expires_at=now + pttl / 1000.0 if pttl >= 0 else None,
        error=error[:300] if error else None,
        exception=kind,
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# -- browse ------------------------------------------------------------------------------------------


async def list_jobs(
    redis: Redis, collector: ArqCollector, queue: str, state: str, offset: int, limit: int
) -> JobPage:
    serializer = collector.config.serializer
    now_ms = int(time.time() * 1000)
    if state in ("ready", "deferred"):
        lo, hi = ("-inf", now_ms) if state == "ready" else (f"({now_ms}", "+inf")
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zcount(queue, lo, hi)
            pipe.zrangebyscore(queue, lo, hi, start=offset, num=limit, withscores=True)
            total, rows = await pipe.execute()
        ids = [text(m) for m, _ in rows]
        raws, running = await _jobs_and_running(redis, ids)
        calls = [
            (i, "in_progress" if run else state, raw, score / 1000.0, serializer)
            for i, raw, run, (_, score) in zip(ids, raws, running, rows, strict=True)
        ]
        items = await decoding.run(job_summary, calls, _unreadable_job)
        order = "due time, oldest first" if state == "ready" else "due time, soonest first"
        note = "Due jobs that a worker is running are marked in progress." if state == "ready" else None
        return page_of(state, items, int(total), offset, limit, order, note)
    if state == "in_progress":
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in collector.in_progress_ids():
                pipe.zscore(queue, job_id)
            scores = await pipe.execute()
        ids = [j for j, s in zip(collector.in_progress_ids(), scores, strict=True) if s is not None]
        page_ids = ids[offset : offset + limit]
        raws, _ = await _jobs_and_running(redis, page_ids)
        calls = [(i, "in_progress", raw, None, serializer) for i, raw in zip(page_ids, raws, strict=True)]
        items = await decoding.run(job_summary, calls, _unreadable_job)
        return page_of(
            state, items, len(ids), offset, limit, "by job id", "From in-progress keys found by discovery."
        )
    if state in ("failed", "succeeded"):
        want_ok = state == "succeeded"
        entries = [
            (j, e) for j, e in collector.results.entries.items() if e.queue == queue and e.ok == want_ok
        ]
        entries.sort(key=lambda je: -(je[1].finished_at or 0.0))
        page = entries[offset : offset + limit]
        raws = await redis.mget([result_key(j) for j, _ in page]) if page else []
        results = [(j, state, raw, serializer) for (j, _), raw in zip(page, raws, strict=True)]
        items = await decoding.run(result_summary, results, _unreadable_result_summary)
        note = (
            None if collector.results.complete else "The results index is still being built: more may appear."
        )
        return page_of(state, items, len(entries), offset, limit, "newest first", note)
    raise ValueError(f"unknown state {state!r}")


async def _jobs_and_running(redis: Redis, ids: list[str]) -> tuple[list[bytes | None], list[bool]]:
    if not ids:
        return [], []
    async with redis.pipeline(transaction=False) as pipe:
        pipe.mget([job_key(i) for i in ids])
        for i in ids:
            pipe.exists(in_progress_key(i))
        raws, *running = await pipe.execute()
    return list(raws), [bool(r) for r in running]


@decoder
def job_summary(job_id: str, state: str, raw: bytes | None, due: float | None, serializer: str) -> JobSummary:
    value = decode_record(raw, serializer)
    if isinstance(value, Undecodable):
        return JobSummary(job_id, state, None, "undecodable payload", eta=due, undecodable=value)
    function = payloads.as_text(value.get("f"))
    return JobSummary(
        job_id=job_id,
        state=state,
        name=function,
        call_preview=payloads.call_preview(
            function, display(value.get("a"), *_PREVIEW), display(value.get("k"), *_PREVIEW)
        ),
        enqueued_at=payloads.ms_to_seconds(value.get("et")),
        eta=due,
        retries=payloads.as_int(value.get("t")),
    )


def _unreadable_job(call: decoding.Call, reason: str) -> JobSummary:
    job_id, state, raw, due = call[:4]
    undecodable = payloads.undecodable(raw or b"", reason)
    return JobSummary(job_id, state, None, "undecodable payload", eta=due, undecodable=undecodable)


@decoder
def result_summary(job_id: str, state: str, raw: bytes | None, serializer: str) -> JobSummary:
    value = decode_record(raw, serializer)
    if isinstance(value, Undecodable):
        return JobSummary(job_id, state, None, "undecodable or expired result", undecodable=value)
    function = payloads.as_text(value.get("f"))
    error = None
    if not value.get("s"):
        kind, message, _ = exception_parts(value.get("r"))
        error = f"{kind}: {message}" if message else kind
    return JobSummary(
        job_id=job_id,
        state=state,
        name=function,
        call_preview=payloads.call_preview(
            function, display(value.get("a"), *_PREVIEW), display(value.get("k"), *_PREVIEW)
        ),
        enqueued_at=payloads.ms_to_seconds(value.get("et")),
        failed_at=payloads.ms_to_seconds(value.get("ft")) if error else None,
        retries=payloads.as_int(value.get("t")),
        error=error,
    )


async def get_job(redis: Redis, collector: ArqCollector, queue: str, job_id: str) -> JobDetail | None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(job_key(job_id))
        pipe.get(result_key(job_id))
        pipe.exists(in_progress_key(job_id))
        pipe.get(retry_key(job_id))
        pipe.zscore(queue, job_id)
        pipe.pttl(result_key(job_id))
        job_raw, result_raw, running, retry, score, result_ttl = await pipe.execute()
    if job_raw is None and result_raw is None:
        return None
    # The payload a page shows: the result when there is one (it holds the call too), else the job.
    raw = result_raw if result_raw is not None else job_raw
    stored = Stored(result_raw is not None, bool(running), retry, score, int(result_ttl))
    call = (queue, job_id, raw, stored, collector.config.serializer, time.time())
    [detail] = await decoding.run(detail_of, [call], _unreadable_detail)
    return detail


@dataclass(frozen=True, slots=True)
class Stored:
    """What else Redis holds about a job id (besides its payload): the input of `detail_of`."""

    has_result: bool
    running: bool
    retry: bytes | None
    score: float | None
    result_ttl: int


def _unreadable_detail(call: decoding.Call, reason: str) -> JobDetail:
    queue, job_id, raw = call[:3]
    ids = (("job id", job_id),)
    gone = payloads.undecodable(raw, reason)
    return JobDetail(Framework.ARQ, queue, job_id, "unknown", None, ids, size=len(raw), undecodable=gone)


@decoder
def detail_of(queue: str, job_id: str, raw: bytes, stored: Stored, serializer: str, now: float) -> JobDetail:
    """Everything stored about one job, decoded (run in a decoder process)."""
    value = decode_record(raw, serializer)
    ids = (("job id", job_id),)
    if isinstance(value, Undecodable):
        return JobDetail(Framework.ARQ, queue, job_id, "unknown", None, ids, size=len(raw), undecodable=value)
    due = float(stored.score) / 1000.0 if stored.score is not None else None
    if stored.has_result:
        state = "succeeded" if value.get("s") else "failed"
    elif stored.running:
        state = "in_progress"
    else:
        state = "ready" if due is not None and due <= now else "deferred"
    enqueued = payloads.ms_to_seconds(value.get("et"))
    started = payloads.ms_to_seconds(value.get("st"))
    finished = payloads.ms_to_seconds(value.get("ft"))
    stamps = [("enqueued", enqueued), ("due", due), ("started", started), ("finished", finished)]
    retry = _int(text(stored.retry)) if stored.retry else None
    options: dict[str, Any] = {"try": display(value.get("t")), "retry counter": retry}
    if started is not None:
        options["queue wait (s)"] = round(started - (due or enqueued or started), 3)
    if started is not None and finished is not None:
        options["run time (s)"] = round(finished - started, 3)
    if value.get("q"):
        options["queue (from result)"] = display(value.get("q"))
    result = None
    notes: list[str] = []
    if stored.has_result:
        key = result_key(job_id)
        ttl = stored.result_ttl / 1000.0 if stored.result_ttl >= 0 else None
        if value.get("s"):
            result = JobResult(key, True, display(value.get("r")), ttl_seconds=ttl)
        else:
            kind, message, attrs = exception_parts(value.get("r"))
            result = JobResult(key, False, display(attrs), kind, message, ttl)
            notes.append(
                "Arq stores the exception (type, arguments, attributes), no traceback: see the worker's log."
            )
    call = stored_call(value, serializer_of(raw, serializer))
    if call is not None and not transport.transportable(call.args, call.kwargs):
        call = None
        notes.append("Copy as code is not offered: the arguments contain themselves or nest too deeply.")
    return JobDetail(
        framework=Framework.ARQ,
        queue_key=queue,
        job_id=job_id,
        state=state,
        name=payloads.as_text(value.get("f")),
        ids=ids,
        args=display(value.get("a")),
        kwargs=display(value.get("k")),
        options={k: v for k, v in options.items() if v is not None},
        retries=payloads.as_int(value.get("t")),
        timestamps=tuple((label, t) for label, t in stamps if t is not None),
        result=result,
        notes=tuple(notes),
        size=len(raw),
        raw=display(value),
        call=call,
    )


def _unreadable_result_summary(call: decoding.Call, reason: str) -> JobSummary:
    job_id, state, raw = call[:3]
    undecodable = payloads.undecodable(raw or b"", reason)
    return JobSummary(job_id, state, None, "undecodable or expired result", undecodable=undecodable)


def stored_call(record: Mapping[str, Any], serializer: str) -> StoredCall | None:
    """The job's args and kwargs as decoded (for "copy as code"); None when they are not a list and a dict."""
    args, kwargs = record.get("a"), record.get("k")
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return None
    return StoredCall(tuple(args), kwargs, serializer)
