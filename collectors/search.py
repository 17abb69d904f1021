"""Searching a target's stored jobs by id, actor or function, argument text or exception text.

Read-only, and never in one go: a `Scan` walks its sources one bounded call at a time, and the
caller (dashboard/searches.py) decides how many steps to run before yielding to everything else.

    source                           one step                                   what it costs Redis
    Dramatiq N:Q.msgs (ready and     HSCAN COUNT 1000                           ~1 ms, ~300 kB reply
      in flight), N:Q.DQ.msgs,
      N:Q.XQ.msgs
    Arq queue zset Q                 ZSCAN COUNT 1000, then MGET arq:job:<id>   ~1 ms + ~0.5 ms
                                     (skipped when only ids are searched)
    Arq results                      MGET arq:result:<id> of 1000 ids the       ~0.5 ms
                                     results index holds (collectors/arq.py)

Key names come from the layout modules (`dramatiq_keys.QueueKeys`, `arq_keys.job_key`, `arq_keys.result_key`).
Payloads are first checked on their raw bytes (cheap: every ASCII word of the query must occur in
the lower-cased bytes) and only candidates are decoded, Arq's pickles by the restricted unpickler
alone, each candidate in the `search` lane's decoder process (collectors/decoding.py: a hostile payload
costs its decode budget, then it is matched by its id only). Then the field asked for is matched
exactly, case-insensitively (`str.casefold`):

    id     Dramatiq redis message id and message_id; Arq job id
    name   actor (Dramatiq) or function (Arq)
    args   every string, key and number inside args and kwargs (not dates, UUIDs, None or booleans)
    error  last line of the stored traceback (Dramatiq); the stored exception, `Type: message` (Arq)
    any    all of these

Why the raw check cannot miss a match: JSON keeps every ASCII letter, digit and underscore of its
strings, keys and numbers as they are; pickle and msgpack keep strings as UTF-8, but numbers (and
None, True, False) in binary, so for them words made only of digits and "e", and "none", "true",
"false", are not checked. The 19 non-ASCII characters whose case fold is ASCII ("ß" is "ss") are
looked for when the words are missing, and a payload holding one is decoded.

`lookup` finds an exact id at once: Dramatiq redis message ids by HGET in each queue's three hashes,
Arq ids by GET of the job and result keys and ZSCORE in each queue, in one round trip.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from redis.asyncio import Redis

from callboard.collectors import decoding, payloads, unpickler
from callboard.collectors.arq import codec as arq_codec
from callboard.collectors.arq import keys as arq_keys
from callboard.collectors.arq.codec import job_summary, result_summary
from callboard.collectors.decoding import Lane, decoder
from callboard.collectors.dramatiq import codec as dramatiq_codec
from callboard.collectors.keyspace import text
from callboard.collectors.model import Framework, JobSummary, Undecodable

FIELDS = ("any", "id", "name", "args", "error")
#: Entries asked for per HSCAN / ZSCAN call, and result ids per MGET.
COUNT = 1000
#: Query length cap (a query is matched against every candidate's texts).
MAX_QUERY = 200
#: Ids remembered to drop duplicates (HSCAN/ZSCAN may return an entry twice while a hash rehashes);
#: past this, counts may include such a duplicate and say "about".
SEEN_CAP = 200_000
#: Leaves of one payload's args looked at (hostile payloads can be huge); the rest is not matched.
LEAF_LIMIT = 10_000
_WORD = re.compile(rb"[a-z0-9_]+")
#: Words a binary serializer may store as binary rather than text (numbers, None and booleans).
_BINARY_NUMBER = re.compile(rb"[0-9e]+")
_BINARY_WORDS = (b"none", b"true", b"false")
#: Every non-ASCII character whose case fold holds ASCII letters (Unicode 15; a test recomputes it).
FOLDS_INTO_ASCII = (
    "\u00df\u0130\u0149\u017f\u01f0\u1e96\u1e97\u1e98\u1e99\u1e9a"
    "\u1e9e\u212a\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06"
)  # ß İ ŉ ſ ǰ ẖ ẗ ẘ ẙ ẚ ẞ, the Kelvin sign, the ligatures ﬀ to ﬆ
_FOLDS_INTO_ASCII = re.compile(
    b"|".join(re.escape(c.encode()) + b"|" + re.escape(f"\\u{ord(c):04x}".encode()) for c in FOLDS_INTO_ASCII)
)


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    field: str = "any"

    def __post_init__(self) -> None:
        if self.field not in FIELDS:
            raise ValueError(f"search field must be one of {', '.join(FIELDS)}")
        if not self.text.strip() or len(self.text) > MAX_QUERY:
            raise ValueError(f"search text must be 1 to {MAX_QUERY} characters")

    @property
    def needle(self) -> str:
        return self.text.strip().casefold()


@dataclass(frozen=True, slots=True)
class Prefilter:
    """Words every candidate's raw bytes must contain: for JSON payloads, and for binary ones."""

    text_words: tuple[bytes, ...]
    binary_words: tuple[bytes, ...]


def prefilter(query: Query) -> Prefilter:
    # Non-ASCII characters only separate words: JSON escapes them, and case folding differs.
    ascii_only = "".join(c if c.isascii() else " " for c in query.text).lower().encode()
    words = tuple(dict.fromkeys(_WORD.findall(ascii_only)))
    binary = tuple(
        w for w in words if not _BINARY_NUMBER.fullmatch(w) and not any(w in b for b in _BINARY_WORDS)
    )
    return Prefilter(words, binary)


def candidates(raws: Sequence[bytes], words: Prefilter) -> set[int]:
    """Indexes of the payloads that may hold a match: all but those that cannot.

    The batch is joined and searched at once (`bytes.lower` and `bytes.find` run in C), instead of a
    Python loop over payloads: ~0.2 ms for 1,000 payloads of 300 bytes when the words are rare.
    """
    out: set[int] = set()
    text_idx = [i for i, raw in enumerate(raws) if raw[:1] in (b"{", b"[")]
    binary_idx = [i for i, raw in enumerate(raws) if raw[:1] not in (b"{", b"[")]
    for idx, wanted, binary in ((text_idx, words.text_words, False), (binary_idx, words.binary_words, True)):
        if not wanted:
            out.update(idx)
        elif idx:
            out.update(idx[k] for k in _batch_candidates([raws[i] for i in idx], wanted, binary))
    return out


def _batch_candidates(parts: list[bytes], wanted: tuple[bytes, ...], binary: bool) -> set[int]:
    # NUL separates the parts: no word ([a-z0-9_]) can run across two of them.
    blob = b"\x00".join(parts)
    starts = list(accumulate((len(p) + 1 for p in parts[:-1]), initial=0))
    ends = [start + len(p) for start, p in zip(starts, parts, strict=True)]
    lowered = blob.lower()
    first, *rest = sorted(wanted, key=len, reverse=True)
    found: set[int] = set()
    pos = lowered.find(first)
    while pos != -1:
        k = bisect_right(starts, pos) - 1
        if all(lowered.find(w, starts[k], ends[k]) != -1 for w in rest):
            found.add(k)
        pos = lowered.find(first, ends[k])
    # A stored character that case-folds into ASCII letters ("ß" matches "ss") may match without
    # the words being there. JSON from Python escapes it (\u00df): pure ASCII without "\u" has none.
    if binary or not blob.isascii() or b"\\u" in lowered:
        found.update(bisect_right(starts, m.start()) - 1 for m in _FOLDS_INTO_ASCII.finditer(lowered))
    return found


def id_matches(ids: Sequence[bytes | str], query: Query) -> set[int]:
    """Indexes of the ids that contain the query (for fields `id` and `any`), searched at once."""
    if query.field not in ("any", "id"):
        return set()
    needle = query.needle
    raw = [i if isinstance(i, bytes) else i.encode("utf-8", "surrogateescape") for i in ids]
    blob = b"\x00".join(raw)
    if not (needle.isascii() and blob.isascii()) or "\x00" in needle:
        return {k for k, i in enumerate(ids) if needle in text(i).casefold()}
    starts = list(accumulate((len(i) + 1 for i in raw[:-1]), initial=0))
    lowered, wanted = blob.lower(), needle.encode()
    found: set[int] = set()
    pos = lowered.find(wanted)
    while pos != -1:
        k = bisect_right(starts, pos) - 1
        found.add(k)
        pos = lowered.find(wanted, starts[k] + len(raw[k]))
    return found


@dataclass(frozen=True, slots=True)
class Source:
    """One hash, sorted set or list of result ids to walk through."""

    target: str
    framework: Framework
    #: The queue's key, as URLs carry it.
    queue: str
    #: "hash" (Dramatiq payloads), "zset" (an Arq queue), "results" (Arq results from the index).
    kind: str
    #: The hash or sorted set walked ("" for results).
    key: str
    #: State of what it holds; a Dramatiq `.msgs` entry is told ready or in flight per hit.
    state: str
    #: Results: the ids the results index held when the search started.
    ids: tuple[str, ...] = ()
    #: Dramatiq `.msgs`: the known ack sets of the queue (an id in one is in flight).
    acks: tuple[str, ...] = ()
    #: Dramatiq `.XQ.msgs`: the sorted set holding when each was dead-lettered.
    dead_times: str = ""
    serializer: str = "auto"

    @property
    def label(self) -> str:
        return f"{self.target} · {self.queue} · {self.state.replace('_', ' ')}"


@dataclass(frozen=True, slots=True)
class Hit:
    target: str
    framework: Framework
    queue: str
    #: What matched: id, name, args or error.
    matched: str
    job: JobSummary


# -- matching --------------------------------------------------------------------------------------


def leaves(value: Any, limit: int = LEAF_LIMIT) -> Iterator[str]:
    """The strings, keys and numbers inside decoded args, as text. Iterative: payloads can be deep."""
    stack: list[Any] = [value]
    visited = 0
    while stack and visited < limit:
        item = stack.pop()
        visited += 1
        if isinstance(item, str):
            yield item
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int) and not payloads.fits(item):
            yield payloads.int_text(item)  # repr() would raise: over 4,300 digits
        elif isinstance(item, int) or (isinstance(item, float) and math.isfinite(item)):
            yield repr(item)
        elif isinstance(item, bytes | bytearray):
            yield bytes(item[:10_000]).decode("utf-8", "replace")
        elif isinstance(item, dict):
            for k, v in item.items():
                stack += [k, v]
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, unpickler.Placeholder):
            yield item.qualified_name
            stack += [item.args, item.state]
        elif isinstance(item, BaseException):
            yield type(item).__name__
            stack.extend(item.args)


#: The texts of a decoded payload a field of a query looks at: (value, field, is a result) -> texts.
Texts = Callable[[dict[str, Any], str, bool], Iterable[str]]


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


def match(
    query: Query, texts: Texts, job_id: str, value: dict[str, Any] | Undecodable, result: bool = False
) -> str | None:
    """The first field of `query` that matches (id, name, args, error), or None."""
    needle = query.needle
    wanted = ("id", "name", "args", "error") if query.field == "any" else (query.field,)
    for want in wanted:
        if want == "id" and needle in job_id.casefold():
            return want
        if isinstance(value, Undecodable):
            continue
        if any(needle in t.casefold() for t in texts(value, want, result)):
            return want
    return None


# -- the walk --------------------------------------------------------------------------------------


class Scan:
    """One target's part of a search: its sources, where it is in them, and what it found so far.

    Memory: the kept hits are the caller's; here, the ids of hits (at most SEEN_CAP) to drop
    duplicates, and the results index's ids copied into the sources when the search started.
    """

    def __init__(self, redis: Redis, query: Query, plan: list[Source]) -> None:
        self.redis = redis
        self.query = query
        self.sources = plan
        self.filter = prefilter(query)
        self.index = 0
        self.cursor = 0
        self.position = 0
        self.scanned = 0
        self.totals: list[int] = [len(s.ids) for s in plan]
        self.seen: set[tuple[str, str]] = set()
        self.approximate = False

    @property
    def done(self) -> bool:
        return self.index >= len(self.sources)

    @property
    def total(self) -> int:
        return sum(self.totals)

    @property
    def current(self) -> Source | None:
        return None if self.done else self.sources[self.index]

    async def measure(self) -> None:
        """How many entries each source holds now (HLEN / ZCARD), pipelined: one round trip."""
        walked = [i for i, s in enumerate(self.sources) if s.kind != "results"]
        if not walked:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in walked:
                s = self.sources[i]
                pipe.hlen(s.key) if s.kind == "hash" else pipe.zcard(s.key)
            sizes = await pipe.execute()
        for i, size in zip(walked, sizes, strict=True):
            self.totals[i] = int(size)

    def fresh(self, hits: list[Hit]) -> list[Hit]:
        """`hits` without those already found (a rehash can return an entry twice)."""
        out = []
        for hit in hits:
            key = (hit.queue, hit.job.job_id)
            if key in self.seen:
                continue
            if len(self.seen) < SEEN_CAP:
                self.seen.add(key)
            else:
                self.approximate = True
            out.append(hit)
        return out

    async def step(self) -> list[Hit]:
        """One SCAN-family call (or one MGET of indexed results) and the decoding of its candidates."""
        source = self.current
        if source is None:
            return []
        if source.kind == "hash":
            cursor, found = await self.redis.hscan(source.key, cursor=self.cursor, count=COUNT)
            self.scanned += len(found)
            keys, raws = list(found), list(found.values())
            hits = await _hash_hits(self.redis, self.query, self.filter, [source] * len(keys), keys, raws)
            self._advance(int(cursor))
        elif source.kind == "zset":
            cursor, rows = await self.redis.zscan(source.key, cursor=self.cursor, count=COUNT)
            self.scanned += len(rows)
            hits = await _queue_hits(self.redis, self.query, self.filter, source, rows)
            self._advance(int(cursor))
        else:
            ids = list(source.ids[self.position : self.position + COUNT])
            self.position += len(ids)
            self.scanned += len(ids)
            raws = await self.redis.mget([arq_keys.result_key(i) for i in ids]) if ids else []
            hits = await _result_hits(self.query, self.filter, source, ids, raws)
            if self.position >= len(source.ids):
                self._advance(0)
        return self.fresh(hits)

    def _advance(self, cursor: int) -> None:
        if cursor == 0:
            self.index += 1
            self.position = 0
        self.cursor = cursor

    async def lookup(self) -> list[Hit]:
        """Jobs whose id is exactly the query, in one round trip: O(queues in scope)."""
        job_id = self.query.text.strip()
        if any(c.isspace() for c in job_id):
            return []
        hashes = [s for s in self.sources if s.kind == "hash"]
        queues = [s for s in self.sources if s.kind == "zset"]
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in hashes:
                pipe.hget(s.key, job_id)
            if queues:
                pipe.get(arq_keys.job_key(job_id))
                pipe.get(arq_keys.result_key(job_id))
                pipe.exists(arq_keys.in_progress_key(job_id))
                for s in queues:
                    pipe.zscore(s.key, job_id)
            replies = await pipe.execute()
        stored = [(s, raw) for s, raw in zip(hashes, replies, strict=False) if raw is not None]
        hits = await _hash_hits(
            self.redis,
            Query(job_id, "id"),
            Prefilter((), ()),
            [s for s, _ in stored],
            [job_id] * len(stored),
            [raw for _, raw in stored],
        )
        if queues:
            hits += await _arq_lookup(job_id, queues, replies[len(hashes) :])
        return self.fresh(hits)


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
        hits.append(Hit(src.target, Framework.DRAMATIQ, src.queue, matched, job))
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


async def _queue_hits(
    redis: Redis, query: Query, words: Prefilter, source: Source, rows: list[tuple[bytes, float]]
) -> list[Hit]:
    """Arq jobs of one ZSCAN reply that match. Their payloads live in other keys: one MGET (unless
    only ids are searched), and EXISTS of the in-progress key for the hits that are due."""
    ids = [text(m) for m, _ in rows]
    due = {i: float(score) / 1000.0 for i, (_, score) in zip(ids, rows, strict=True)}
    if query.field == "id":
        ids = [i for i in ids if query.needle in i.casefold()]
    raws: list[bytes | None] = list(await redis.mget([arq_keys.job_key(i) for i in ids])) if ids else []
    found = await _arq_matches(query, words, source, ids, raws, due)
    if not found:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for _, job in found:
            pipe.exists(arq_keys.in_progress_key(job.job_id))
        running = await pipe.execute()
    now = _now()
    hits = []
    for (matched, job), run in zip(found, running, strict=True):
        state = "in_progress" if run else ("ready" if due[job.job_id] <= now else "deferred")
        hits.append(
            Hit(source.target, Framework.ARQ, source.queue, matched, dataclasses.replace(job, state=state))
        )
    return hits


async def _result_hits(
    query: Query, words: Prefilter, source: Source, ids: list[str], raws: list[bytes | None]
) -> list[Hit]:
    found = await _arq_matches(query, words, source, ids, raws, None)
    return [Hit(source.target, Framework.ARQ, source.queue, matched, job) for matched, job in found]


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
        hits.append(Hit(src.target, Framework.ARQ, src.queue, "id", job))
    src_of = {s.queue: s for s in queues}
    if result is not None and result[0] in src_of:
        hits.append(Hit(src_of[result[0]].target, Framework.ARQ, result[0], "id", result[1]))
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
