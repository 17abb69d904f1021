"""Searching Dramatiq: its payload hashes walked by HSCAN, and exact redis message ids by HGET.

The message_id is inside the payload, so the raw prefilter applies to an id search too; hits are
told ready or in flight (ack sets) and dead (when) in one more round trip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from callboard.collectors import decoding, payloads
from callboard.collectors.decoding import Lane, decoder
from callboard.collectors.dramatiq import codec as dramatiq_codec
from callboard.collectors.keyspace import text
from callboard.collectors.model import JobSummary
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


def dramatiq_texts(value: dict[str, Any], want: str, result: bool) -> Iterable[str]:
    """A Dramatiq message: its message_id, actor, args and kwargs, and the last traceback line."""
    options = value.get("options") if isinstance(value.get("options"), dict) else {}
    assert isinstance(options, dict)
    if want == "id":
        return [t for t in (payloads.as_text(value.get("message_id")),) if t]
    if want == "name":
        return [t for t in (payloads.as_text(value.get("actor_name")),) if t]
    if want == "args":
        return leaves([value.get("args"), value.get("kwargs")])
    return [t for t in (payloads.last_line(payloads.as_text(options.get("traceback"))),) if t]


async def _hash_hits(
    redis: Redis,
    query: Query,
    words: Prefilter,
    srcs: list[Source],
    keys: Sequence[bytes | str],
    raws: list[bytes],
) -> list[Hit]:
    """Dramatiq payloads that match; then, for hits only, in flight or ready and when dead (one trip).
    The message_id is inside the payload, so the raw check applies to an id search too."""
    picked = sorted(id_matches(keys, query) | candidates(raws, words))
    calls = [(query, text(keys[i]), raws[i]) for i in picked]
    matches = await decoding.run(dramatiq_hit, calls, _dramatiq_by_id, lane=Lane.SEARCH)
    found = [(srcs[i], job) for i, job in zip(picked, matches, strict=True) if job is not None]
    if not found:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for src, (_, job) in found:
            for ack in src.acks:
                pipe.sismember(ack, job.job_id)
            if src.dead_times:
                pipe.zscore(src.dead_times, job.job_id)
        replies = iter(await pipe.execute())
    hits = []
    for src, (matched, job) in found:
        held = [bool(next(replies)) for _ in src.acks]
        dead_at = next(replies) if src.dead_times else None
        state = "in_flight" if any(held) else src.state
        failed_at = float(dead_at) / 1000.0 if dead_at else job.failed_at
        job = dataclasses.replace(job, state=state, failed_at=failed_at)
        hits.append(Hit(src.target, src.framework, src.queue, matched, job))
    return hits


@decoder
def dramatiq_hit(query: Query, rid: str, raw: bytes) -> tuple[str, JobSummary] | None:
    """(field matched, summary) when the message matches, else None (run in a decoder process)."""
    matched = match(query, dramatiq_texts, rid, payloads.decode_json_object(raw))
    return (matched, dramatiq_codec.summary(rid, "?", raw)) if matched else None


def _dramatiq_by_id(call: decoding.Call, reason: str) -> tuple[str, JobSummary] | None:
    query, rid, raw = call
    gone = payloads.undecodable(raw, reason)
    matched = match(query, dramatiq_texts, rid, gone)
    return (matched, JobSummary(rid, "?", None, "undecodable payload", undecodable=gone)) if matched else None


class PayloadHash:
    """A payload hash (N:Q.msgs, N:Q.DQ.msgs, N:Q.XQ.msgs): HSCAN COUNT 1000 per step, ~1 ms."""

    def size(self, pipe: Pipeline, source: Source) -> bool:
        pipe.hlen(source.key)
        return True

    async def step(self, redis: Redis, query: Query, words: Prefilter, source: Source, cursor: int) -> Step:
        cursor, found = await redis.hscan(source.key, cursor=cursor, count=COUNT)
        keys, raws = list(found), list(found.values())
        hits = await _hash_hits(redis, query, words, [source] * len(keys), keys, raws)
        return Step(hits, int(cursor), len(keys))

    def stage_lookup(self, pipe: Pipeline, sources: list[Source], job_id: str) -> int:
        for source in sources:
            pipe.hget(source.key, job_id)
        return len(sources)

    async def lookup(self, redis: Redis, job_id: str, sources: list[Source], replies: list[Any]) -> list[Hit]:
        stored = [(s, raw) for s, raw in zip(sources, replies, strict=True) if raw is not None]
        srcs, raws = [s for s, _ in stored], [raw for _, raw in stored]
        return await _hash_hits(
            redis, Query(job_id, "id"), Prefilter((), ()), srcs, [job_id] * len(srcs), raws
        )


PAYLOADS = PayloadHash()
