"""Dramatiq write controls: requeue and delete dead letters, delete pending messages, run delayed
messages now. Recipes and races: shared/redis-layouts.md §1.6 and §5.

Every change is one Lua call over a batch of ids, with a compare-and-set per id, so a double click,
two operators or a worker acting at the same moment make each message change at most once, and the
loser learns it (`changed`). Key names come from `QueueKeys` (collectors/dramatiq.py); nothing here
builds one. Dramatiq's own dispatch script is never called: it would register the dashboard in
`__heartbeats__` as a worker.

    state    action   what happens in Redis (atomic per id)                     race
    dead     retry    CAS on XQ.msgs[rid]; ZREM XQ, HDEL XQ.msgs, HSET Q.msgs     maintenance may expire it
                      rid2 payload', RPUSH Q rid2 (retries, traceback, eta       first -> changed
                      dropped; message_timestamp = now so max_age actors run it)
    dead     delete   ZREM XQ + HDEL XQ.msgs                                     none
    ready    delete   LREM Q 1 rid, HDEL Q.msgs only if it was still listed      a worker that fetched it
                                                                                 runs it -> skipped
    delayed  retry    ("run now") CAS on DQ.msgs[rid]; LREM DQ, HDEL DQ.msgs,    only ids still in the
                      HSET Q.msgs rid payload' (no eta), RPUSH Q rid             DQ list; held -> skipped
    delayed  delete   LREM DQ 1 rid, HDEL DQ.msgs                                same

Cost: a batch is one read (HMGET of the payloads, for rewrites) and one script; LREM is
O(position), cheap for ids near the head, which is where bulk runs take them from.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from collectors import payloads
from collectors.dramatiq import QueueKeys
from collectors.keyspace import text
from collectors.model import JobOutcome, Outcome, Selection, Undecodable

ACTIONS: Mapping[str, tuple[str, ...]] = {
    "dead": ("retry", "delete"),
    "ready": ("delete",),
    "delayed": ("retry", "delete"),
}

# Per id: 1 moved, 0 gone, -1 payload changed since it was read.
REQUEUE_LUA = """
local out = {}
for i = 1, #ARGV, 4 do
  local rid, raw, rid2, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local current = redis.call('HGET', KEYS[2], rid)
  if not current then
    out[#out + 1] = 0
  elseif current ~= raw then
    out[#out + 1] = -1
  else
    redis.call('ZREM', KEYS[1], rid)
    redis.call('HDEL', KEYS[2], rid)
    redis.call('HSET', KEYS[3], rid2, payload)
    redis.call('RPUSH', KEYS[4], rid2)
    out[#out + 1] = 1
  end
end
return out
"""

# Per id: 1 deleted, 0 gone.
DELETE_DEAD_LUA = """
local out = {}
for i = 1, #ARGV do
  local removed = redis.call('ZREM', KEYS[1], ARGV[i])
  local dropped = redis.call('HDEL', KEYS[2], ARGV[i])
  out[i] = (removed + dropped > 0) and 1 or 0
end
return out
"""

# KEYS list, hash. Per id: 1 deleted, 2 no longer listed but its payload is there (a worker holds
# it: it will run), 0 gone.
DELETE_LISTED_LUA = """
local out = {}
for i = 1, #ARGV do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) > 0 then
    redis.call('HDEL', KEYS[2], ARGV[i])
    out[i] = 1
  elseif redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
    out[i] = 2
  else
    out[i] = 0
  end
end
return out
"""

# KEYS DQ, DQ.msgs, Q.msgs, Q. Per id: 1 moved, 2 held by a worker, 0 gone, -1 changed.
RUN_NOW_LUA = """
local out = {}
for i = 1, #ARGV, 3 do
  local rid, raw, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local current = redis.call('HGET', KEYS[2], rid)
  if not current then
    out[#out + 1] = 0
  elseif current ~= raw then
    out[#out + 1] = -1
  elseif redis.call('LREM', KEYS[1], 1, rid) == 0 then
    out[#out + 1] = 2
  else
    redis.call('HDEL', KEYS[2], rid)
    redis.call('HSET', KEYS[3], rid, payload)
    redis.call('RPUSH', KEYS[4], rid)
    out[#out + 1] = 1
  end
end
return out
"""

GONE = "already gone (done by someone else, or expired)"
CHANGED_MEANWHILE = "changed while this ran (a worker or another operator); look again"
HELD = "a worker has already fetched it: it will run, and Redis cannot stop it"
HELD_DELAYED = (
    "a worker holds it in memory until its eta: it cannot be cancelled or brought forward from Redis"
)


def actions(state: str) -> tuple[str, ...]:
    return ACTIONS.get(state, ())


async def apply(
    redis: Redis, q: QueueKeys, state: str, action: str, ids: Sequence[str], now_ms: int | None = None
) -> list[JobOutcome]:
    """One action on a batch of ids (callers send at most a few hundred), an outcome per id in order."""
    if action not in actions(state):
        raise ValueError(f"{action!r} does not apply to {state} Dramatiq messages")
    ids = list(dict.fromkeys(ids))  # a repeated id acts once
    if not ids:
        return []
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    if state == "dead" and action == "retry":
        return await _requeue_dead(redis, q, ids, now_ms)
    if state == "dead":
        codes = await _eval(redis, DELETE_DEAD_LUA, [q.dead, q.dead_msgs], ids)
        return [_outcome(i, c, "deleted") for i, c in zip(ids, codes, strict=True)]
    if state == "ready":
        codes = await _eval(redis, DELETE_LISTED_LUA, [q.ready, q.msgs], ids)
        return [_outcome(i, c, "deleted", held=HELD) for i, c in zip(ids, codes, strict=True)]
    if action == "delete":
        codes = await _eval(redis, DELETE_LISTED_LUA, [q.delay, q.delay_msgs], ids)
        return [_outcome(i, c, "deleted", held=HELD_DELAYED) for i, c in zip(ids, codes, strict=True)]
    return await _run_now(redis, q, ids)


async def _requeue_dead(redis: Redis, q: QueueKeys, ids: list[str], now_ms: int) -> list[JobOutcome]:
    raws: list[bytes | None] = await redis.hmget(q.dead_msgs, ids)  # type: ignore[misc]
    argv: list[str | bytes] = []
    sent: dict[str, str] = {}
    early: dict[str, JobOutcome] = {}
    for rid, raw in zip(ids, raws, strict=True):
        if raw is None:
            early[rid] = JobOutcome(rid, Outcome.CHANGED, GONE)
            continue
        rewritten = requeued_payload(raw, q.queue, now_ms)
        if isinstance(rewritten, str):
            early[rid] = JobOutcome(rid, Outcome.SKIPPED, rewritten, in_place=True)
            continue
        new_rid, payload = rewritten
        sent[rid] = new_rid
        argv += [rid, raw, new_rid, payload]
    codes = iter(await _eval(redis, REQUEUE_LUA, [q.dead, q.dead_msgs, q.msgs, q.ready], argv))
    out = []
    for rid in ids:
        if rid in early:
            out.append(early[rid])
            continue
        code = next(codes)
        out.append(
            JobOutcome(rid, Outcome.DONE, f"requeued as {sent[rid]}", new_id=sent[rid])
            if code == 1
            else _outcome(rid, code, "")
        )
    return out


def requeued_payload(raw: bytes, queue: str, now_ms: int) -> tuple[str, str] | str:
    """(new rid, payload) for a dead message sent back to `queue`, or why it cannot be.

    Retries, traceback and eta go (kept, one more failure would dead-letter it again at once); the
    timestamp is now (else an actor with max_age skips it unrun); the new rid is both the hash field
    and options.redis_message_id, as Dramatiq's ack needs.
    """
    message = payloads.decode_json_object(raw)
    if isinstance(message, Undecodable):
        return f"its payload is not a JSON message ({message.reason}): it cannot be requeued safely"
    options = message.get("options")
    options = dict(options) if isinstance(options, dict) else {}
    for key in ("retries", "traceback", "requeue_timestamp", "eta"):
        options.pop(key, None)
    new_rid = str(uuid.uuid4())
    options["redis_message_id"] = new_rid
    message = {**message, "queue_name": queue, "message_timestamp": now_ms, "options": options}
    return new_rid, _encode(message)


async def _run_now(redis: Redis, q: QueueKeys, ids: list[str]) -> list[JobOutcome]:
    raws: list[bytes | None] = await redis.hmget(q.delay_msgs, ids)  # type: ignore[misc]
    argv: list[str | bytes] = []
    early: dict[str, JobOutcome] = {}
    for rid, raw in zip(ids, raws, strict=True):
        if raw is None:
            early[rid] = JobOutcome(rid, Outcome.CHANGED, GONE)
            continue
        message = payloads.decode_json_object(raw)
        if isinstance(message, Undecodable):
            reason = f"its payload is not a JSON message ({message.reason}): it cannot be moved safely"
            early[rid] = JobOutcome(rid, Outcome.SKIPPED, reason, in_place=True)
            continue
        options = message.get("options")
        options = {k: v for k, v in options.items() if k != "eta"} if isinstance(options, dict) else {}
        argv += [rid, raw, _encode({**message, "queue_name": q.queue, "options": options})]
    codes = iter(await _eval(redis, RUN_NOW_LUA, [q.delay, q.delay_msgs, q.msgs, q.ready], argv))
    return [
        early[rid] if rid in early else _outcome(rid, next(codes), "moved to the ready queue", HELD_DELAYED)
        for rid in ids
    ]


def _encode(message: dict[str, Any]) -> str:
    # Dramatiq's JSONEncoder: compact separators; NaN passes through as Dramatiq writes it.
    return json.dumps(message, separators=(",", ":"))


def _outcome(rid: str, code: int, done: str, held: str = HELD) -> JobOutcome:
    if code == 1:
        return JobOutcome(rid, Outcome.DONE, done)
    if code == 2:
        return JobOutcome(rid, Outcome.SKIPPED, held)
    if code == -1:
        return JobOutcome(rid, Outcome.CHANGED, CHANGED_MEANWHILE)
    return JobOutcome(rid, Outcome.CHANGED, GONE)


async def _eval(redis: Redis, script: str, keys: list[str], argv: Sequence[str | bytes]) -> list[int]:
    if not argv:
        return []
    # EVAL, not EVALSHA: these run once per batch, so the script cache buys nothing, and EVAL cannot
    # fail with NOSCRIPT after a Redis restart.
    codes = await redis.eval(script, len(keys), *keys, *argv)  # type: ignore[misc,arg-type]
    return [int(c) for c in codes]


# -- bulk selections ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Selection:
    """Ids of one state, read in batches from the head, bounded at the start of the run."""

    redis: Redis
    q: QueueKeys
    state: str
    #: Dead: only letters dead-lettered before the run began (so a message that fails again after
    #: being requeued is not requeued twice). Lists: at most the length at the start.
    before_ms: int
    expected: int | None
    offset: int = 0
    visited: int = 0

    async def next(self, limit: int) -> list[str]:
        if self.expected is not None and self.state != "dead":
            limit = min(limit, self.expected - self.visited)
        if limit <= 0:
            return []
        if self.state == "dead":
            raw = await self.redis.zrangebyscore(
                self.q.dead, "-inf", self.before_ms, start=self.offset, num=limit
            )
        else:
            key = self.q.ready if self.state == "ready" else self.q.delay
            raw = await self.redis.lrange(key, self.offset, self.offset + limit - 1)  # type: ignore[misc]
        ids = [text(r) for r in raw]
        self.visited += len(ids)
        return ids

    def stayed(self, count: int) -> None:
        self.offset += count


async def select_all(redis: Redis, q: QueueKeys, state: str, now_ms: int | None = None) -> Selection:
    if state not in ACTIONS:
        raise ValueError(f"no bulk action applies to {state} Dramatiq messages")
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    if state == "dead":
        expected = int(await redis.zcount(q.dead, "-inf", now_ms))
    else:
        expected = int(await redis.llen(q.ready if state == "ready" else q.delay))  # type: ignore[misc]
    return _Selection(redis, q, state, now_ms, expected)
