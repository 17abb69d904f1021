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

Each backend walks its own sources (collectors/<backend>/search.py, a `Walker` per kind of source),
so key names come from the layout modules only.
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

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from callboard.collectors import payloads, unpickler
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
class Step:
    """What one step over a source found, and where the next one starts."""

    hits: list[Hit]
    #: The SCAN cursor (or an index into `Source.ids`) to go on from; 0 when the source is done.
    cursor: int
    #: Entries looked at by this step.
    scanned: int


class Walker(Protocol):
    """How a backend walks one kind of source: sized, stepped, and asked for an exact id."""

    def size(self, pipe: Pipeline, source: Source) -> bool:
        """Queue the read of how many entries `source` holds; False when it is known already."""
        ...

    async def step(self, redis: Redis, query: Query, words: Prefilter, source: Source, cursor: int) -> Step:
        """One bounded call (a SCAN-family call, or an MGET) and the decoding of its candidates."""
        ...

    def stage_lookup(self, pipe: Pipeline, sources: list[Source], job_id: str) -> int:
        """Queue the reads that find `job_id` exactly in `sources`; returns how many replies."""
        ...

    async def lookup(self, redis: Redis, job_id: str, sources: list[Source], replies: list[Any]) -> list[Hit]:
        """The hits of an exact id, from the replies `stage_lookup` asked for."""
        ...


@dataclass(frozen=True, slots=True)
class Source:
    """One hash, sorted set or list of result ids to walk through."""

    target: str
    framework: Framework
    #: The queue's key, as URLs carry it.
    queue: str
    #: How its backend walks it (collectors/<backend>/search.py).
    walker: Walker
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
        async with self.redis.pipeline(transaction=False) as pipe:
            walked = [i for i, s in enumerate(self.sources) if s.walker.size(pipe, s)]
            sizes = await pipe.execute() if walked else []
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
        """One bounded call over the current source and the decoding of its candidates."""
        source = self.current
        if source is None:
            return []
        step = await source.walker.step(self.redis, self.query, self.filter, source, self.cursor)
        self.scanned += step.scanned
        if step.cursor == 0:
            self.index += 1
        self.cursor = step.cursor
        return self.fresh(step.hits)

    async def lookup(self) -> list[Hit]:
        """Jobs whose id is exactly the query, in one round trip: O(queues in scope)."""
        job_id = self.query.text.strip()
        if any(c.isspace() for c in job_id):
            return []
        groups: dict[int, tuple[Walker, list[Source]]] = {}
        for source in self.sources:
            groups.setdefault(id(source.walker), (source.walker, []))[1].append(source)
        async with self.redis.pipeline(transaction=False) as pipe:
            counts = [walker.stage_lookup(pipe, sources, job_id) for walker, sources in groups.values()]
            replies = await pipe.execute()
        hits: list[Hit] = []
        start = 0
        for (walker, sources), count in zip(groups.values(), counts, strict=True):
            hits += await walker.lookup(self.redis, job_id, sources, replies[start : start + count])
            start += count
        return self.fresh(hits)
