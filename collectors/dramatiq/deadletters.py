"""Dramatiq's dead letters as failures: the background reader behind the failure groups.

Each queue's .XQ is walked newest first (the letters an operator looks at), then followed by score
for arrivals; removals are found by ZMSCORE when the index holds more than ZCARD. At most
DEAD_BUDGET payloads per cycle; a queue whose dead count is unchanged costs nothing.

Each letter read is also counted once by minute of arrival (its XQ score), queue and actor: the flow
estimate for queues without the companion (`DeadArrivals`; README, Flow).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from redis.asyncio import Redis

from callboard.collectors import decoding, payloads
from callboard.collectors.decoding import Lane, decoder
from callboard.collectors.dramatiq.keys import QueueKeys
from callboard.collectors.failures import UNDECODABLE, Failure, FailureIndex, split_exception
from callboard.collectors.flow import Series, Tally
from callboard.collectors.flowreader import WINDOW
from callboard.collectors.keyspace import text as _text
from callboard.collectors.model import (
    Framework,
    Undecodable,
)

#: Dead-letter payloads read per cycle for the failure groups (~1 MB and ~15 ms of decoding).
DEAD_BUDGET = 500


#: Dead-letter ids checked for removal per cycle (ZMSCORE) when a queue's index holds too many.
VERIFY_BUDGET = 5000


#: A queue whose dead count did not change is still re-walked from its newest this often (an add
#: and a removal in the same cycle leave the count equal).
DEAD_RECHECK = 30.0


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
class DeadArrivals:
    """Dead letters per minute of arrival, queue and actor, over the flow window: Dramatiq's flow
    estimate, failures only (README, Flow).

    A letter is counted when the reader first reads it, by its XQ score (the time of the final
    failure), so a letter already dead when Callboard starts counts in its own minute if that is still
    in the window. A requeued or deleted letter is not taken back: it failed in that minute. Costs
    O(1) per letter read and ~100 bytes per letter of the window (its rid, so that a letter read
    again, after a control took it out of the failure groups by a wrong guess, counts once);
    `since()` is O(minutes x actors), never O(letters)."""

    #: Epoch minute -> (namespace, queue, actor) -> letters that arrived in it.
    counts: dict[int, Counter[tuple[str, str, str]]] = field(default_factory=dict)
    #: Epoch minute -> rids counted in it (a rid's minute never changes: its score is fixed, and a
    #: requeued letter comes back under a new rid).
    seen: dict[int, set[str]] = field(default_factory=dict)
    #: The oldest minute kept (older arrivals are not counted at all).
    oldest: int = 0

    def add(self, rid: str, at: float, namespace: str, queue: str, actor: str) -> bool:
        """Count one dead letter that arrived at `at` (epoch seconds); False when already counted
        or older than the window."""
        minute = int(at // 60)
        if minute < self.oldest:
            return False
        rids = self.seen.setdefault(minute, set())
        if rid in rids:
            return False
        rids.add(rid)
        self.counts.setdefault(minute, Counter())[(namespace, queue, actor)] += 1
        return True

    def prune(self, oldest: int) -> None:
        """Forget minutes before `oldest` (the window moved on)."""
        self.oldest = oldest
        for minute in [m for m in self.counts if m < oldest]:
            del self.counts[minute]
        for minute in [m for m in self.seen if m < oldest]:
            del self.seen[minute]

    def since(self, minute: int) -> dict[int, dict[Series, Tally]]:
        """Failed counts from `minute` on, as flow tallies (no run or wait times: a dead letter
        does not say how long its attempts ran or waited)."""
        out: dict[int, dict[Series, Tally]] = {}
        for m, counter in self.counts.items():
            if m < minute:
                continue
            tallies = out[m] = {}
            for (namespace, queue, actor), n in counter.items():
                tally = tallies[Series(Framework.DRAMATIQ.value, namespace, queue, actor)] = Tally.empty()
                tally.add("f", n)
        return out


class DeadLetters:
    """Dead letters grouped by cause, for the failures page: read in the background, per target.

    Driven by the dead counts of the last snapshot (`counts`, set by the snapshot parser)."""

    def __init__(self, ttl: float) -> None:
        #: The broker's dead_message_ttl: when each dead letter becomes eligible for deletion.
        self.ttl = ttl
        self.failures = FailureIndex(Framework.DRAMATIQ)
        #: Letters per minute of arrival, counted as they are read (the flow estimate).
        self.arrivals = DeadArrivals(oldest=int(time.time() // 60) - WINDOW + 1)
        #: Dead letters per queue key, from the last snapshot.
        self.counts: dict[str, int] = {}
        self._walks: dict[str, _DeadWalk] = {}

    async def step(self, redis: Redis, queues: list[QueueKeys]) -> int:
        """Read dead letters for the failure groups: at most DEAD_BUDGET payloads per cycle, from
        up to 8 queues.

        Driven by the dead counts of the last snapshot: a queue whose count matches what is indexed,
        and whose walk is done, costs nothing. Returns the round trips used (0 to 3)."""
        now = time.time()
        self.arrivals.prune(int(now // 60) - WINDOW + 1)
        known = {q.ready: q for q in queues}
        for name in [n for n in self._walks if n not in known]:
            self._forget_dead(name)
        steps: list[tuple[QueueKeys, _DeadWalk, bool]] = []
        verify: list[tuple[QueueKeys, list[str]]] = []
        for name, q in known.items():
            dead = self.counts.get(name, 0)
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
                behind = self.failures.count(q.ready) < self.counts.get(q.ready, 0)
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
        ttl = self.ttl
        calls = [
            (rid, q.ready, raw, score / 1000.0, ttl)
            for i, (q, fresh) in enumerate(wanted)
            for (rid, score), was, raw, still in zip(fresh, *replies[3 * i : 3 * i + 3], strict=True)
            if was is not None and still is not None
        ]
        # A prefix when a payload went over the decode budget; the walk re-reads what it skipped
        # once it has caught up (see `behind` above).
        by_name = {q.ready: q for q, _ in wanted}
        for failure in await decoding.run(
            dead_failure, calls, _unreadable_dead, lane=Lane.BACKGROUND, partial=True
        ):
            self.failures.add(failure)
            # Counted even when the index is full (it was read); a letter with no actor (its payload
            # is undecodable) cannot be attributed, so it is not counted.
            if failure.name is not None and failure.failed_at is not None:
                q = by_name[failure.queue]
                self.arrivals.add(failure.job_id, failure.failed_at, q.namespace, q.queue, failure.name)
        return 2

    def _forget_dead(self, name: str) -> None:
        self._walks.pop(name, None)
        self.failures.remove_queue(name)


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
