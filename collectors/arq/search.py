"""Searching Arq: queue sorted sets walked by ZSCAN (payloads by MGET of their job keys), the
results index's ids by MGET, and exact job ids by GET and ZSCORE.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from callboard.collectors import decoding, payloads
from callboard.collectors.arq import codec as arq_codec
from callboard.collectors.arq.codec import job_summary, result_summary
from callboard.collectors.arq.keys import in_progress_key, job_key, result_key
from callboard.collectors.decoding import Lane, decoder
from callboard.collectors.keyspace import text
from callboard.collectors.model import JobSummary, Undecodable
from callboard.collectors.search import (
    COUNT,
    Hit,
    Prefilter,
    Query,
    Source,
    Step,
    candidates,
    id_matches,
    leaves,
    match,
)


def arq_texts(value: dict[str, Any], want: str, result: bool) -> Iterable[str]:
    """An Arq job or result: its function, args and kwargs, and a failed result's exception."""
    if want == "name":
        return [t for t in (payloads.as_text(value.get("f")),) if t]
    if want == "args":
        return leaves([value.get("a"), value.get("k")])
    if want == "error" and result and not value.get("s"):
        kind, message, _ = arq_codec.exception_parts(value.get("r"))
        return [f"{kind}: {message}" if message else kind]
    return []


async def _queue_hits(
    redis: Redis, query: Query, words: Prefilter, source: Source, rows: list[tuple[bytes, float]]
) -> list[Hit]:
    """Arq jobs of one ZSCAN reply that match. Their payloads live in other keys: one MGET (unless
    only ids are searched), and EXISTS of the in-progress key for the hits that are due."""
    ids = [text(m) for m, _ in rows]
    due = {i: float(score) / 1000.0 for i, (_, score) in zip(ids, rows, strict=True)}
    if query.field == "id":
        ids = [i for i in ids if query.needle in i.casefold()]
    raws: list[bytes | None] = list(await redis.mget([job_key(i) for i in ids])) if ids else []
    found = await _arq_matches(query, words, source, ids, raws, due)
    if not found:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for _, job in found:
            pipe.exists(in_progress_key(job.job_id))
        running = await pipe.execute()
    now = _now()
    hits = []
    for (matched, job), run in zip(found, running, strict=True):
        state = "in_progress" if run else ("ready" if due[job.job_id] <= now else "deferred")
        hits.append(
            Hit(source.target, source.framework, source.queue, matched, dataclasses.replace(job, state=state))
        )
    return hits


async def _result_hits(
    query: Query, words: Prefilter, source: Source, ids: list[str], raws: list[bytes | None]
) -> list[Hit]:
    found = await _arq_matches(query, words, source, ids, raws, None)
    return [Hit(source.target, source.framework, source.queue, matched, job) for matched, job in found]


async def _arq_matches(
    query: Query,
    words: Prefilter,
    source: Source,
    ids: list[str],
    raws: list[bytes | None],
    due: dict[str, float] | None,
) -> list[tuple[str, JobSummary]]:
    """(field matched, summary) of the Arq payloads that match: queued jobs (with their due times) or,
    without `due`, results. Expired ones (None) are skipped."""
    present = [(job_id, raw) for job_id, raw in zip(ids, raws, strict=True) if raw is not None]
    picked = id_matches([job_id for job_id, _ in present], query)
    if query.field != "id":
        picked |= candidates([raw for _, raw in present], words)
    calls = [
        (query, job_id, raw, source.serializer, None if due is None else due[job_id])
        for job_id, raw in (present[i] for i in sorted(picked))
    ]
    matches = await decoding.run(arq_hit, calls, _arq_by_id, lane=Lane.SEARCH)
    return [m for m in matches if m is not None]


@decoder
def arq_hit(
    query: Query, job_id: str, raw: bytes, serializer: str, due: float | None
) -> tuple[str, JobSummary] | None:
    """(field matched, summary) when an Arq job (with its `due` time) or result (without) matches."""
    result = due is None
    value = arq_codec.decode_record(raw, serializer)
    matched = match(query, arq_texts, job_id, value, result)
    if not matched:
        return None
    if not result:
        return matched, job_summary(job_id, "?", raw, due, serializer)
    state = "unknown" if isinstance(value, Undecodable) else ("succeeded" if value.get("s") else "failed")
    return matched, result_summary(job_id, state, raw, serializer)


def _arq_by_id(call: decoding.Call, reason: str) -> tuple[str, JobSummary] | None:
    query, job_id, raw, _, due = call
    gone = payloads.undecodable(raw, reason)
    matched = match(query, arq_texts, job_id, gone, due is None)
    if not matched:
        return None
    state = "?" if due is not None else "unknown"
    return matched, JobSummary(job_id, state, None, "undecodable payload", eta=due, undecodable=gone)


async def _arq_lookup(job_id: str, queues: list[Source], replies: list[Any]) -> list[Hit]:
    job_raw, result_raw, running, *scores = replies
    in_queue = [(s, score) for s, score in zip(queues, scores, strict=True) if score is not None]
    job_state, due, src = None, None, None
    if job_raw is not None and in_queue:
        src, score = in_queue[0]
        due = float(score) / 1000.0
        job_state = "in_progress" if running else ("ready" if due <= _now() else "deferred")
    call = (job_id, job_raw if src else None, job_state, due, result_raw, queues[0].serializer)
    [(job, result)] = await decoding.run(lookup_arq, [call], _lookup_undecodable, lane=Lane.SEARCH)
    hits = []
    if job is not None and src is not None:
        hits.append(Hit(src.target, src.framework, src.queue, "id", job))
    src_of = {s.queue: s for s in queues}
    if result is not None and result[0] in src_of:
        hits.append(Hit(src_of[result[0]].target, src_of[result[0]].framework, result[0], "id", result[1]))
    return hits


@decoder
def lookup_arq(
    job_id: str,
    job_raw: bytes | None,
    job_state: str | None,
    due: float | None,
    result_raw: bytes | None,
    serializer: str,
) -> tuple[JobSummary | None, tuple[str, JobSummary] | None]:
    """An exact id's queued job (when in a queue) and result (with the queue it names), summarised."""
    job = None
    if job_raw is not None and job_state is not None:
        job = job_summary(job_id, job_state, job_raw, due, serializer)
    result = None
    if result_raw is not None:
        value = arq_codec.decode_record(result_raw, serializer)
        queue = value.get("q") if isinstance(value, dict) else None
        if isinstance(queue, str):
            state = "succeeded" if isinstance(value, dict) and value.get("s") else "failed"
            result = queue, result_summary(job_id, state, result_raw, serializer)
    return job, result


def _lookup_undecodable(call: decoding.Call, reason: str) -> tuple[JobSummary | None, None]:
    job_id, job_raw, job_state, due = call[:4]
    if job_raw is None or job_state is None:
        return None, None
    gone = payloads.undecodable(job_raw, reason)
    return JobSummary(job_id, job_state, None, "undecodable payload", eta=due, undecodable=gone), None


def _now() -> float:
    return time.time()


class QueueSet:
    """An Arq queue's sorted set: ZSCAN COUNT 1000, then MGET of the jobs (skipped for id searches).

    Its exact-id lookup also reads the id's result key, so results need no lookup of their own."""

    def size(self, pipe: Pipeline, source: Source) -> bool:
        pipe.zcard(source.key)
        return True

    async def step(self, redis: Redis, query: Query, words: Prefilter, source: Source, cursor: int) -> Step:
        cursor, rows = await redis.zscan(source.key, cursor=cursor, count=COUNT)
        return Step(await _queue_hits(redis, query, words, source, rows), int(cursor), len(rows))

    def stage_lookup(self, pipe: Pipeline, sources: list[Source], job_id: str) -> int:
        pipe.get(job_key(job_id))
        pipe.get(result_key(job_id))
        pipe.exists(in_progress_key(job_id))
        for source in sources:
            pipe.zscore(source.key, job_id)
        return 3 + len(sources)

    async def lookup(self, redis: Redis, job_id: str, sources: list[Source], replies: list[Any]) -> list[Hit]:
        return await _arq_lookup(job_id, sources, replies)


class ResultIds:
    """The results index's ids of one queue, as they were when the search started: MGET of 1000."""

    def size(self, pipe: Pipeline, source: Source) -> bool:
        return False  # len(source.ids)

    async def step(self, redis: Redis, query: Query, words: Prefilter, source: Source, cursor: int) -> Step:
        ids = list(source.ids[cursor : cursor + COUNT])
        raws = await redis.mget([result_key(i) for i in ids]) if ids else []
        hits = await _result_hits(query, words, source, ids, raws)
        after = cursor + len(ids)
        return Step(hits, after if after < len(source.ids) else 0, len(ids))

    def stage_lookup(self, pipe: Pipeline, sources: list[Source], job_id: str) -> int:
        return 0

    async def lookup(self, redis: Redis, job_id: str, sources: list[Source], replies: list[Any]) -> list[Hit]:
        return []


QUEUE = QueueSet()
RESULTS = ResultIds()
