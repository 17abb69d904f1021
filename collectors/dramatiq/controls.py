"""Dramatiq write controls: requeue and delete dead letters, delete pending messages, run delayed
messages now. Recipes and races: docs/dramatiq-redis.md §6 and §7.

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
    orphaned recover  per ack set of a worker whose heartbeat is stale: RPUSH      the worker comes back
                      each rid whose payload still exists back on Q (or Q.DQ),   -> refused, untouched
                      then DEL the ack set: what Dramatiq's maintenance does

Cost: a batch is one read (HMGET of the payloads, for rewrites) and one script; LREM is
O(position), cheap for ids near the head, which is where bulk runs take them from. Rewrites decode
and encode in a budgeted decoder process (`rewritten`, collectors/decoding.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from callboard.collectors import decoding, payloads
from callboard.collectors.decoding import decoder
from callboard.collectors.dramatiq.keys import AckKey, QueueKeys, heartbeats_key
from callboard.collectors.failures import FailureIndex
from callboard.collectors.keyspace import text
from callboard.collectors.model import Bound, JobOutcome, Outcome, Selection, Undecodable

ACTIONS: Mapping[str, tuple[str, ...]] = {
    "dead": ("retry", "delete"),
    "ready": ("delete",),
    "delayed": ("retry", "delete"),
    # Messages held in the ack sets of workers whose heartbeat is stale.
    "orphaned": ("recover",),
}

#: Redis 7's `redis.acl_check_cmd`, run over every command a script will use before it writes
#: anything: Redis checks a script's commands one at a time as they run, so a user allowed some
#: writes and not others would otherwise leave a message half moved. Older servers lack the
#: function; there EVAL itself is the only gate.
ACL_PRELUDE = """
if redis.acl_check_cmd then
  for _, c in ipairs({%s}) do
    if not redis.acl_check_cmd(c[1], KEYS[c[2]], unpack(c, 3)) then
      return redis.error_reply('NOPERM this Redis user may not run ' .. c[1] .. ' on ' .. KEYS[c[2]]
        .. ': nothing was changed')
    end
  end
end
"""


def guarded(commands: list[tuple[Any, ...]], script: str) -> str:
    """`script` preceded by an ACL check of `commands`: (COMMAND, index of its key in KEYS, args...)."""
    rows = ", ".join("{" + ", ".join(repr(part) for part in c) + "}" for c in commands)
    return ACL_PRELUDE % rows + script


# Per id: 1 moved, 0 gone, -1 payload changed since it was read.
REQUEUE_LUA = guarded(
    [("HGET", 2, "f"), ("ZREM", 1, "m"), ("HDEL", 2, "f"), ("HSET", 3, "f", "v"), ("RPUSH", 4, "v")],
    """
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
""",
)

# Per id: 1 deleted, 0 gone.
DELETE_DEAD_LUA = guarded(
    [("ZREM", 1, "m"), ("HDEL", 2, "f")],
    """
local out = {}
for i = 1, #ARGV do
  local removed = redis.call('ZREM', KEYS[1], ARGV[i])
  local dropped = redis.call('HDEL', KEYS[2], ARGV[i])
  out[i] = (removed + dropped > 0) and 1 or 0
end
return out
""",
)

# KEYS list, hash. Per id: 1 deleted, 2 no longer listed but its payload is there (a worker holds
# it: it will run), 0 gone.
DELETE_LISTED_LUA = guarded(
    [("LREM", 1, "1", "v"), ("HDEL", 2, "f"), ("HEXISTS", 2, "f")],
    """
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
""",
)

# KEYS DQ, DQ.msgs, Q.msgs, Q; ARGV as REQUEUE_LUA's (here rid2 = rid). Per id: 1 moved, 2 held by a
# worker, 0 gone, -1 changed.
RUN_NOW_LUA = guarded(
    [("HGET", 2, "f"), ("LREM", 1, "1", "v"), ("HDEL", 2, "f"), ("HSET", 3, "f", "v"), ("RPUSH", 4, "v")],
    """
local out = {}
for i = 1, #ARGV, 4 do
  local rid, raw, rid2, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local current = redis.call('HGET', KEYS[2], rid)
  if not current then
    out[#out + 1] = 0
  elseif current ~= raw then
    out[#out + 1] = -1
  elseif redis.call('LREM', KEYS[1], 1, rid) == 0 then
    out[#out + 1] = 2
  else
    redis.call('HDEL', KEYS[2], rid)
    redis.call('HSET', KEYS[3], rid2, payload)
    redis.call('RPUSH', KEYS[4], rid2)
    out[#out + 1] = 1
  end
end
return out
""",
)

# KEYS heartbeats, ack set, list (Q or Q.DQ), hash (Q.msgs or Q.DQ.msgs); ARGV worker id, the
# newest heartbeat score (ms) that still counts as dead. Dramatiq's own maintenance, for one set:
# returns {-1} when the worker is alive after all, else {1, put back ids, ids whose payload is gone}.
# The heartbeat entry stays: maintenance removes it once no ack set is left, which needs KEYS.
RECOVER_LUA = guarded(
    [("ZSCORE", 1, "m"), ("SMEMBERS", 2), ("HEXISTS", 4, "f"), ("RPUSH", 3, "v"), ("DEL", 2)],
    """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > tonumber(ARGV[2]) then return {-1} end
local moved, gone = {}, {}
for _, rid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('HEXISTS', KEYS[4], rid) == 1 then
    redis.call('RPUSH', KEYS[3], rid)
    moved[#moved + 1] = rid
  else
    gone[#gone + 1] = rid
  end
end
redis.call('DEL', KEYS[2])
return {1, moved, gone}
""",
)

GONE = "already gone (done by someone else, or expired)"
CHANGED_MEANWHILE = "changed while this ran (a worker or another operator); look again"
HELD = "a worker has already fetched it: it will run, and Redis cannot stop it"
HELD_DELAYED = (
    "a worker holds it in memory until its eta: it cannot be cancelled or brought forward from Redis"
)


def actions(state: str) -> tuple[str, ...]:
    return ACTIONS.get(state, ())


async def apply(
    redis: Redis,
    q: QueueKeys,
    state: str,
    action: str,
    ids: Sequence[str],
    now_ms: int | None = None,
    failures: FailureIndex | None = None,
) -> list[JobOutcome]:
    """One action on a batch of ids (callers send at most a few hundred), an outcome per id in order.

    Dead letters that are no longer dead leave `failures` (the collector's failure groups) at once,
    as Arq's controls take failed results out of the results index: a retried group empties on
    screen within one poll. A wrong guess is mended by the collector's background reader."""
    outcomes = await _apply(redis, q, state, action, ids, now_ms)
    if state == "dead" and failures is not None:
        for o in outcomes:
            if o.outcome != Outcome.SKIPPED:
                failures.remove(o.job_id)
    return outcomes


async def _apply(
    redis: Redis, q: QueueKeys, state: str, action: str, ids: Sequence[str], now_ms: int | None
) -> list[JobOutcome]:
    if action not in actions(state):
        raise ValueError(f"{action!r} does not apply to {state} Dramatiq messages")
    ids = list(dict.fromkeys(ids))  # a repeated id acts once
    if not ids:
        return []
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    if state == "dead" and action == "retry":
        keys = [q.dead, q.dead_msgs, q.msgs, q.ready]
        return await _move(redis, REQUEUE_LUA, keys, ids, ("requeue", q.queue, now_ms), HELD)
    if state == "dead":
        codes = await _eval(redis, DELETE_DEAD_LUA, [q.dead, q.dead_msgs], ids)
        return [_outcome(i, c, "deleted") for i, c in zip(ids, codes, strict=True)]
    if state == "ready":
        codes = await _eval(redis, DELETE_LISTED_LUA, [q.ready, q.msgs], ids)
        return [_outcome(i, c, "deleted", held=HELD) for i, c in zip(ids, codes, strict=True)]
    if action == "delete":
        codes = await _eval(redis, DELETE_LISTED_LUA, [q.delay, q.delay_msgs], ids)
        return [_outcome(i, c, "deleted", held=HELD_DELAYED) for i, c in zip(ids, codes, strict=True)]
    keys = [q.delay, q.delay_msgs, q.msgs, q.ready]
    return await _move(redis, RUN_NOW_LUA, keys, ids, ("run now", q.queue, now_ms), HELD_DELAYED)


async def recover(
    redis: Redis, q: QueueKeys, acks: Sequence[AckKey], heartbeat_timeout: float, now_ms: int | None = None
) -> list[JobOutcome]:
    """Put back what workers with a stale heartbeat hold from `q`, one atomic script per ack set.

    O(messages held), which is bounded by the dead workers' prefetch. A worker whose heartbeat is
    fresh again when the script runs keeps its messages (no outcome)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    stale_before = now_ms - int(heartbeat_timeout * 1000)
    outcomes: list[JobOutcome] = []
    for ack in acks:
        if (ack.namespace, ack.queue) != (q.namespace, q.queue):
            continue
        target, payloads_key = (q.delay, q.delay_msgs) if ack.delayed else (q.ready, q.msgs)
        keys = [heartbeats_key(q.namespace), ack.key, target, payloads_key]
        reply = await redis.eval(RECOVER_LUA, len(keys), *keys, ack.worker, str(stale_before))  # type: ignore[misc]
        if int(reply[0]) != 1:
            continue
        where = target + (" (its delay queue)" if ack.delayed else "")
        outcomes += [
            JobOutcome(text(r), Outcome.DONE, f"put back on {where}: worker {ack.worker} stopped")
            for r in reply[1]
        ]
        outcomes += [
            JobOutcome(text(r), Outcome.CHANGED, "already acked: its payload is gone") for r in reply[2]
        ]
    return outcomes


#: How a moved message is rewritten: ("requeue" | "run now", queue name, now in ms).
Rewrite = tuple[str, str, int]


async def _move(
    redis: Redis, script: str, keys: list[str], ids: list[str], rewrite: Rewrite, held: str
) -> list[JobOutcome]:
    """Move messages out of `keys[1]` (the source hash) into the ready queue, rewritten (`rewritten`,
    in a decoder process: a new rid or the same, and the new message), compare-and-set per id."""
    raws: list[bytes | None] = await redis.hmget(keys[1], ids)  # type: ignore[misc]
    argv: list[str | bytes] = []
    moved_to: dict[str, str] = {}
    early = {
        rid: JobOutcome(rid, Outcome.CHANGED, GONE) for rid, raw in zip(ids, raws, strict=True) if raw is None
    }
    present = [(rid, raw) for rid, raw in zip(ids, raws, strict=True) if raw is not None]
    built = await decoding.run(rewritten, [(raw, *rewrite) for _, raw in present], _unreadable)
    for (rid, raw), message in zip(present, built, strict=True):
        if isinstance(message, Undecodable):
            why = f"its payload is not a JSON message ({message.reason}): it cannot be rewritten safely"
            early[rid] = JobOutcome(rid, Outcome.SKIPPED, why, in_place=True)
        else:
            new_rid, payload = message
            moved_to[rid] = new_rid or rid
            argv += [rid, raw, moved_to[rid], payload]
    codes = iter(await _eval(redis, script, keys, argv))
    out = []
    for rid in ids:
        if rid in early:
            out.append(early[rid])
            continue
        code, new_rid = next(codes), moved_to[rid]
        if code != 1:
            out.append(_outcome(rid, code, "", held))
        elif new_rid != rid:
            out.append(JobOutcome(rid, Outcome.DONE, f"requeued as {new_rid}", new_id=new_rid))
        else:
            out.append(JobOutcome(rid, Outcome.DONE, "moved to the ready queue"))
    return out


@decoder
def rewritten(raw: bytes, how: str, queue: str, now_ms: int) -> tuple[str | None, str] | Undecodable:
    """A stored message rewritten for `how` ("requeue" or "run now") and encoded: (new rid or None to
    keep it, the payload); or why it cannot be (run in a decoder process)."""
    message = payloads.decode_json_object(raw)
    if isinstance(message, Undecodable):
        return message
    new_rid, changed = requeued(message, queue, now_ms) if how == "requeue" else run_now(message, queue)
    return new_rid, _encode(changed)


def _unreadable(call: decoding.Call, reason: str) -> Undecodable:
    return payloads.undecodable(call[0], reason)


def requeued(message: dict[str, Any], queue: str, now_ms: int) -> tuple[str, dict[str, Any]]:
    """A dead message sent back to `queue` under a new rid.

    Retries, traceback and eta go (kept, one more failure would dead-letter it again at once); the
    timestamp is now (else an actor with max_age skips it unrun); the new rid is both the hash field
    and options.redis_message_id, as Dramatiq's ack needs.
    """
    options = message.get("options")
    options = dict(options) if isinstance(options, dict) else {}
    for key in ("retries", "traceback", "requeue_timestamp", "eta"):
        options.pop(key, None)
    new_rid = str(uuid.uuid4())
    options["redis_message_id"] = new_rid
    return new_rid, {**message, "queue_name": queue, "message_timestamp": now_ms, "options": options}


def run_now(message: dict[str, Any], queue: str) -> tuple[None, dict[str, Any]]:
    """A delayed message made due: eta dropped, queue_name canonical (not `Q.DQ`), same rid."""
    options = message.get("options")
    options = {k: v for k, v in options.items() if k != "eta"} if isinstance(options, dict) else {}
    return None, {**message, "queue_name": queue, "options": options}


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
    """Ids of one state, read in batches from the head (oldest first), bounded at the start of the run.

    Dead: only letters dead-lettered at or before `before_ms` (the start of the run, or the time the
    operator's page was drawn, if earlier), so a message that fails again after being requeued is not
    requeued twice, and letters that died after the operator looked are left alone. Lists (ready,
    delayed): at most the length at the start. Either way at most `cap` ids (the count the operator
    confirmed), taken from the head: the oldest, which are the ones that were there when they looked.
    """

    redis: Redis
    q: QueueKeys
    state: str
    before_ms: int
    expected: int | None
    cap: int | None = None
    offset: int = 0
    visited: int = 0

    def _key(self) -> str:
        if self.state == "dead":
            return self.q.dead
        return self.q.ready if self.state == "ready" else self.q.delay

    async def next(self, limit: int) -> list[str]:
        # Lists stop at their length at the start; dead letters at the time bound (members that die
        # later score later) and, when the operator gave one, at the count.
        stop = self.cap if self.state == "dead" else self.expected
        if stop is not None:
            limit = min(limit, stop - self.visited)
        if limit <= 0:
            return []
        if self.state == "dead":
            raw = await self.redis.zrangebyscore(
                self._key(), "-inf", self.before_ms, start=self.offset, num=limit
            )
        else:
            raw = await self.redis.lrange(self._key(), self.offset, self.offset + limit - 1)  # type: ignore[misc]
        ids = [text(r) for r in raw]
        self.visited += len(ids)
        return ids

    def stayed(self, count: int) -> None:
        self.offset += count

    async def arrived(self) -> int:
        """What the state holds now beyond the ids stepped past: one ZCARD or LLEN."""
        if self.state == "dead":
            now = await self.redis.zcard(self._key())
        else:
            now = await self.redis.llen(self._key())  # type: ignore[misc]
        return max(0, int(now) - self.offset)


async def select_all(
    redis: Redis, q: QueueKeys, state: str, now_ms: int | None = None, bound: Bound | None = None
) -> Selection:
    """Every message of `state` (dead, ready or delayed) as it is now, or as the operator saw it
    (`bound`: at most its count, and dead letters that died by its time)."""
    if state not in ACTIONS:
        raise ValueError(f"no bulk action applies to {state} Dramatiq messages")
    bound = bound or Bound()
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    before_ms = bound.until(now_ms)
    if state == "dead":
        expected = bound.cap(int(await redis.zcount(q.dead, "-inf", before_ms)))
    else:
        expected = bound.cap(int(await redis.llen(q.ready if state == "ready" else q.delay)))  # type: ignore[misc]
    return _Selection(redis, q, state, before_ms, expected, bound.count)
