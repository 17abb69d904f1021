"""Write controls for Arq 0.28 jobs: re-run, delete, abort. Reached only from the dashboard's POST actions.

Every control is one transaction per job id (a few round trips, O(1) server work), so a 500-id batch
never blocks Redis. Key names come from collectors/arq.py only. Payloads are read with the restricted
decoder (`collectors.arq.decode`), never `pickle.loads`, and decoded and re-encoded in a budgeted
decoder process (`_rebuild`, collectors/decoding.py): a hostile result is skipped after its budget.
A re-run writes back a pickle of builtin data only (exact, big ints included), and refuses args
holding placeholders (docs/arq-redis.md §8: never re-pickle them), or that its serializer cannot
write (JSON or msgpack).
Recipes and races: docs/arq-redis.md §6 (A1 §6.1, A3 §6.2, A2 §6.3) and §7.

    retry, failed/succeeded   A1 (re-run under the same id). WATCH result, job and in-progress keys; the
                              result must exist and the job must be neither queued nor running again;
                              then MULTI: DEL result + retry; ZREM arq:abort id (a leftover entry would
                              make an abort-enabled worker cancel the re-run); PSETEX job 86400000
                              {t: None, f, a, k, et: now}, in the serializer that wrote the result;
                              ZADD <result's q> now id; EXEC. Race: a concurrent `enqueue_job` or second
                              click with the same id changes a watched key -> WatchError -> CHANGED.
                              `new_id=True` instead enqueues a copy under a fresh uuid4 hex id (as arq
                              does) and keeps the result as history; two clicks make two copies.
    delete, ready/deferred    A3. WATCH in-progress key and Q; refuse if running; ZSCORE must be
                              non-nil; MULTI: ZREM Q id; DEL job + retry; ZREM arq:abort id; SET then
                              DEL the in-progress key; EXEC. The SET/DEL is a fence that leaves no key:
                              a worker that already passed its ZSCORE check WATCHes only that key, so
                              its claim fails (WatchError, skipped) instead of failing the job as "job
                              expired". Race: any write to Q (a busy queue) aborts our EXEC; one retry,
                              then CHANGED.
    delete, failed/succeeded  DEL the result key (O(1), no race that matters: the job is finished).
    abort, in_progress        A2. WATCH the in-progress key; it must exist; MULTI: ZADD arq:abort now id.
                              Never moves the queue score: on workers without `allow_abort_jobs` that
                              would run a deferred job at once (docs/arq-redis.md §6.3), and a running job is
                              not affected either way. Offered only when the operator says the workers
                              abort (`ArqConfig.allow_abort_jobs`); Redis cannot tell. Score = now,
                              never future: arq's inverted cleanup drops future entries
                              (docs/arq-redis.md §3).
"""

from __future__ import annotations

import json
import pickle
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from callboard.collectors import decoding, payloads, unpickler
from callboard.collectors.arq.codec import decode_record, serializer_of
from callboard.collectors.arq.config import ArqConfig
from callboard.collectors.arq.keys import ABORT_KEY, in_progress_key, job_key, result_key, retry_key
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.decoding import decoder
from callboard.collectors.keyspace import text
from callboard.collectors.model import Bound, JobOutcome, Outcome, Selection, Undecodable

ACTIONS: Mapping[str, tuple[str, ...]] = {
    "ready": ("delete",),
    "deferred": ("delete",),
    "in_progress": ("abort",),
    "failed": ("retry", "delete"),
    "succeeded": ("retry", "delete"),
}
#: The job key's TTL on a re-run: arq's `expires_extra_ms` for a job due now.
JOB_EXPIRES_MS = 86_400_000
#: What a result of a job that expired before it started names as its function (nothing to re-run).
UNKNOWN_FUNCTION = "<unknown>"


def actions(state: str, config: ArqConfig) -> tuple[str, ...]:
    """ACTIONS[state], minus abort unless the operator says the workers run with allow_abort_jobs."""
    allowed = ACTIONS.get(state, ())
    return allowed if config.allow_abort_jobs else tuple(a for a in allowed if a != "abort")


async def apply(
    redis: Redis,
    collector: ArqCollector,
    queue: str,
    state: str,
    action: str,
    ids: Sequence[str],
    *,
    new_id: bool = False,
) -> list[JobOutcome]:
    """Apply one action to up to ~500 ids (callers batch), one JobOutcome per id in order."""
    if action not in actions(state, collector.config):
        raise ValueError(f"arq: {action!r} is not allowed on {state!r} jobs")
    # One transaction per id, in turn: never a long server-side step.
    return [await _apply_one(redis, collector, queue, state, action, job_id, new_id) for job_id in ids]


async def _apply_one(
    redis: Redis, collector: ArqCollector, queue: str, state: str, action: str, job_id: str, new_id: bool
) -> JobOutcome:
    if action == "retry":
        rerun = _copy if new_id else _rerun
        return await rerun(redis, collector, queue, job_id)
    if action == "abort":
        return await _abort(redis, job_id)
    if state in ("failed", "succeeded"):
        return await _delete_result(redis, collector, job_id)
    return await _delete_queued(redis, queue, job_id)


# -- retry (A1) --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rerun:
    #: The queue the job ran on (the result's `q`), else the page's.
    queue: str
    payload: bytes


async def _rerun(redis: Redis, collector: ArqCollector, queue: str, job_id: str) -> JobOutcome:
    keys = [result_key(job_id), job_key(job_id), in_progress_key(job_id)]
    try:
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.watch(*keys)
            raw, queued, running = await pipe.mget(keys)  # one round trip for all three checks
            if raw is None:
                return _gone(job_id)
            if running is not None:
                return _skip(job_id, "running again: nothing to re-run")
            if queued is not None:
                return _skip(job_id, "queued again: nothing to re-run")
            now_ms = _now_ms()
            built = await _rebuilt(job_id, raw, collector.config.serializer, queue, now_ms)
            if isinstance(built, JobOutcome):
                return built
            _multi(pipe)
            pipe.delete(result_key(job_id), retry_key(job_id))
            pipe.zrem(ABORT_KEY, job_id)
            pipe.psetex(job_key(job_id), JOB_EXPIRES_MS, built.payload)
            pipe.zadd(built.queue, {job_id: now_ms})
            await pipe.execute()
    except WatchError:
        return _changed(job_id, "changed while re-queuing it (a worker or another operator): look again")
    collector.results.remove(job_id)  # counts move now, not at the next discovery pass
    return JobOutcome(job_id, Outcome.DONE, f"re-queued under the same id on {built.queue}")


async def _copy(redis: Redis, collector: ArqCollector, queue: str, job_id: str) -> JobOutcome:
    fresh = uuid.uuid4().hex
    try:
        async with redis.pipeline(transaction=True) as pipe:
            # Like arq's enqueue_job: the new id must have neither a job nor a result.
            await pipe.watch(result_key(job_id), job_key(fresh), result_key(fresh))
            raw, *taken = await pipe.mget([result_key(job_id), job_key(fresh), result_key(fresh)])
            if raw is None:
                return _gone(job_id)
            if any(v is not None for v in taken):
                return _changed(job_id, f"the fresh id {fresh} is taken: try again")
            now_ms = _now_ms()
            built = await _rebuilt(job_id, raw, collector.config.serializer, queue, now_ms)
            if isinstance(built, JobOutcome):
                return built
            _multi(pipe)
            pipe.psetex(job_key(fresh), JOB_EXPIRES_MS, built.payload)
            pipe.zadd(built.queue, {fresh: now_ms})
            await pipe.execute()
    except WatchError:
        return _changed(job_id, "changed while copying it: look again")
    return JobOutcome(job_id, Outcome.DONE, f"re-queued as {fresh} on {built.queue}", new_id=fresh)


async def _rebuilt(job_id: str, raw: bytes, serializer: str, queue: str, now_ms: int) -> _Rerun | JobOutcome:
    """`_rebuild`, in a decoder process (a hostile result costs its decode budget, then is skipped)."""
    [built] = await decoding.run(_rebuild, [(job_id, raw, serializer, queue, now_ms)], _unreadable)
    return built


def _unreadable(call: decoding.Call, reason: str) -> _Rerun | JobOutcome:
    return _skip(call[0], f"the result is not readable ({reason}): re-send it from your app")


@decoder
def _rebuild(job_id: str, raw: bytes, serializer: str, queue: str, now_ms: int) -> _Rerun | JobOutcome:
    """The job payload arq's enqueue_job would write for this result's call, or why we refuse."""
    value = decode_record(raw, serializer)
    if isinstance(value, Undecodable):
        return _skip(job_id, f"the result is not readable ({value.reason}): re-send it from your app")
    function, args, kwargs = value.get("f"), value.get("a"), value.get("k", {})
    if not isinstance(function, str) or function == UNKNOWN_FUNCTION:
        return _skip(job_id, "the result names no function (the job expired before it started)")
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return _skip(job_id, "the result's args are not a list and a dict: re-send it from your app")
    if unpickler.has_placeholders(args) or unpickler.has_placeholders(kwargs):
        names = ", ".join(sorted(_foreign_classes(args) | _foreign_classes(kwargs)))
        return _skip(
            job_id,
            f"args hold objects of classes Callboard does not import ({names}): re-send it from your app",
        )
    kind = serializer_of(raw, serializer)
    data = {"t": None, "f": function, "a": tuple(args), "k": kwargs, "et": now_ms}
    try:
        payload = _encode(data, kind)
    except (TypeError, ValueError, OverflowError, pickle.PicklingError) as exc:
        return _skip(job_id, f"cannot write the args back as {kind}: {type(exc).__name__}: {str(exc)[:120]}")
    stored_queue = value.get("q")
    named = isinstance(stored_queue, str) and stored_queue and payloads.is_key(stored_queue)
    return _Rerun(stored_queue if named and isinstance(stored_queue, str) else queue, payload)


def _encode(data: dict[str, Any], kind: str) -> bytes:
    """Serialize like the workers' serializer: arq's default pickle, or msgpack/json as arq's docs show."""
    if kind == "json":
        return json.dumps(data).encode()
    if kind == "msgpack":
        packed: bytes = msgpack.packb(data, datetime=True)
        return packed
    # Builtin data only (placeholders were refused above): arq's own `pickle.dumps`, default protocol.
    return pickle.dumps(data)


def _foreign_classes(value: Any, depth: int = 0) -> set[str]:
    """`module.Class` of every placeholder in `value`, for the refusal message."""
    if depth > 50:
        return {"(nested too deeply)"}
    if isinstance(value, unpickler.Placeholder):
        return {value.qualified_name}
    if isinstance(value, type) and issubclass(value, unpickler.Placeholder):
        return {f"{value.__module_name__}.{value.__class_name__}"}
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
    else:
        return set()
    return set().union(*(_foreign_classes(v, depth + 1) for v in items))


# -- delete (A3 and results) -------------------------------------------------------------------------


async def _delete_queued(redis: Redis, queue: str, job_id: str) -> JobOutcome:
    for _ in range(2):  # Q is watched: any enqueue or finish on a busy queue aborts EXEC; retry once
        try:
            return await _delete_queued_once(redis, queue, job_id)
        except WatchError:
            continue
    # Still there? Then it stays in place and a bulk run must step past it.
    still = await redis.zscore(queue, job_id) is not None
    return _changed(job_id, "the queue kept changing while deleting it: try again", in_place=still)


async def _delete_queued_once(redis: Redis, queue: str, job_id: str) -> JobOutcome:
    progress = in_progress_key(job_id)
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.watch(progress, queue)
        if await pipe.exists(progress):
            return _skip(job_id, "running: abort it instead")
        if await pipe.zscore(queue, job_id) is None:
            return _changed(job_id, "already gone from the queue")
        _multi(pipe)
        pipe.zrem(queue, job_id)
        pipe.delete(job_key(job_id), retry_key(job_id))
        pipe.zrem(ABORT_KEY, job_id)
        pipe.set(progress, b"x")  # the fence: fails a claim in flight, leaves no key
        pipe.delete(progress)
        await pipe.execute()
    return JobOutcome(job_id, Outcome.DONE, "deleted")


async def _delete_result(redis: Redis, collector: ArqCollector, job_id: str) -> JobOutcome:
    removed = await redis.delete(result_key(job_id))
    collector.results.remove(job_id)  # in-memory, same event loop as the poller: counts move now
    if not removed:
        return _changed(job_id, "already gone (expired, re-run or deleted)")
    return JobOutcome(job_id, Outcome.DONE, "result deleted")


# -- abort (A2) --------------------------------------------------------------------------------------


async def _abort(redis: Redis, job_id: str) -> JobOutcome:
    progress = in_progress_key(job_id)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.watch(progress)
            if not await pipe.exists(progress):
                return _changed(job_id, "no longer running")
            _multi(pipe)
            pipe.zadd(ABORT_KEY, {job_id: _now_ms()})
            await pipe.execute()
    except WatchError:
        return _changed(job_id, "finished or restarted meanwhile: look again")
    return JobOutcome(
        job_id, Outcome.DONE, "abort requested: an abort-enabled worker cancels it within a poll"
    )


# -- outcomes ----------------------------------------------------------------------------------------


def _multi(pipe: Pipeline) -> None:
    """Start the MULTI block after the WATCHed reads (redis-py leaves `multi` untyped)."""
    pipe.multi()  # type: ignore[no-untyped-call]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _skip(job_id: str, why: str) -> JobOutcome:
    return JobOutcome(job_id, Outcome.SKIPPED, why, in_place=True)


def _changed(job_id: str, why: str, in_place: bool = False) -> JobOutcome:
    return JobOutcome(job_id, Outcome.CHANGED, why, in_place=in_place)


def _gone(job_id: str) -> JobOutcome:
    return _changed(job_id, "already gone: the result expired, or was re-run or deleted")


# -- selections --------------------------------------------------------------------------------------


@dataclass(slots=True)
class ScoreRange:
    """Ids of a queue zset between two scores fixed at the start; each `next` is one ZRANGEBYSCORE.

    Not frozen: it is a cursor. Acted-on ids leave the range, so reads start at `offset` = the ids
    that stayed. Race: a skipped (running) id that finishes meanwhile shifts the range by one, so
    one id may be left for the next run; it is never acted on twice. With `cap` (the count the
    operator confirmed) it hands out at most that many ids that are not running (a running job is
    not "ready", so it is stepped past uncounted: one pipelined EXISTS per batch).
    """

    redis: Redis
    queue: str
    low: str
    high: str
    expected: int | None
    cap: int | None = None
    offset: int = 0
    given: int = 0

    async def next(self, limit: int) -> list[str]:
        while True:
            room = limit if self.cap is None else min(limit, self.cap - self.given)
            if room <= 0:
                return []
            # O(log N + offset + limit) server time.
            rows = await self.redis.zrangebyscore(
                self.queue, self.low, self.high, start=self.offset, num=room
            )
            ids = [text(r) for r in rows]
            if self.cap is not None and ids:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for job_id in ids:
                        pipe.exists(in_progress_key(job_id))
                    running = await pipe.execute()
                self.offset += sum(1 for r in running if r)
                ids = [j for j, r in zip(ids, running, strict=True) if not r]
                if not ids and len(rows) == room:
                    continue  # a batch of running jobs only: read past them
            self.given += len(ids)
            return ids

    def stayed(self, count: int) -> None:
        self.offset += count

    async def arrived(self) -> int:
        """Jobs in the range's state now beyond the ids stepped past: one ZCOUNT (due now for ready,
        due later for deferred)."""
        now = _now_ms()
        low, high = ("-inf", str(now)) if self.low == "-inf" else (f"({now}", "+inf")
        return max(0, int(await self.redis.zcount(self.queue, low, high)) - self.offset)


@dataclass(slots=True)
class IdList:
    """Ids listed in memory at the start (in-progress keys, the results index); no Redis reads."""

    ids: list[str]
    expected: int | None
    position: int = 0
    #: How many jobs the state holds now (after the run), when that can be told without Redis.
    count_now: Callable[[], int] | None = None
    kept: int = 0

    async def next(self, limit: int) -> list[str]:
        batch = self.ids[self.position : self.position + limit]
        self.position += len(batch)
        return batch

    def stayed(self, count: int) -> None:
        """A list moves on by position: skipped ids are already behind it; they are counted as kept."""
        self.kept += count

    async def arrived(self) -> int | None:
        return None if self.count_now is None else max(0, self.count_now() - self.kept)


async def select_all(
    redis: Redis, collector: ArqCollector, queue: str, state: str, bound: Bound | None = None
) -> Selection:
    """Every job of the queue in that state, bounded now, for bulk actions; with `bound`, at most
    its count, and (ready: due, failed/succeeded: finished) by its time."""
    bound = bound or Bound()
    start = _now_ms()
    if state == "ready":
        # Due now (or by the operator's look); jobs enqueued later are due later, so they fall outside.
        until = bound.until(start)
        count = await redis.zcount(queue, "-inf", until)
        return ScoreRange(redis, queue, "-inf", str(until), bound.cap(int(count)), bound.count)
    if state == "deferred":
        # (start, highest score now]: jobs deferred later than every current one fall outside.
        # Scores are due times, not arrival times: only the count bounds what the operator saw.
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zcount(queue, f"({start}", "+inf")
            pipe.zrange(queue, -1, -1, withscores=True)
            count, top = await pipe.execute()
        high = repr(float(top[0][1])) if top else str(start)
        return ScoreRange(redis, queue, f"({start}", high, bound.cap(int(count)), bound.count)
    if state == "in_progress":
        ids = collector.in_progress_ids()
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:  # a running job stays in its queue's zset: this tells its queue
                pipe.zscore(queue, job_id)
            scores = await pipe.execute() if ids else []
        mine = [j for j, s in zip(ids, scores, strict=True) if s is not None]
        mine = mine[: bound.cap(len(mine))]
        return IdList(mine, len(mine))
    if state in ("failed", "succeeded"):
        want_ok = state == "succeeded"
        results = collector.results

        def count_now() -> int:  # O(results indexed), in memory, once at the end of a run
            return sum(1 for e in results.entries.values() if e.queue == queue and e.ok == want_ok)

        before = bound.before
        entries = [
            (j, e)
            for j, e in results.entries.items()
            if e.queue == queue
            and e.ok == want_ok
            and (before is None or e.finished_at is None or e.finished_at <= before)
        ]
        entries.sort(key=lambda je: -(je[1].finished_at or 0.0))  # as the page lists them: newest first
        chosen = [j for j, _ in entries][: bound.cap(len(entries))]
        return IdList(chosen, len(chosen), count_now=count_now)
    raise ValueError(f"unknown arq state {state!r}")
