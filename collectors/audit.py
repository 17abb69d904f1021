"""Callboard's own keys in a watched Redis: the audit log of controls. The only module naming them.

    callboard:audit        list  JSON entries, newest first (LPUSH), trimmed to the newest `keep`

The prefix `callboard:` is ours; neither Dramatiq (`<namespace>:...`, default `dramatiq:`) nor Arq
(`arq:...`) writes there, and discovery never mistakes it for a queue. Each entry is written once,
when a control ends, by one MULTI (LPUSH + LTRIM), so the list never grows past `keep`: O(1) to
append, O(n) to read the n newest.

An entry's `moved` lists [old id, new id] of the jobs the control gave a new id (a requeued Dramatiq
message), so the page of a job that is gone can lead to where it went (`find_move`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

AUDIT_KEY = "callboard:audit"
#: Entries larger than this (a selection of thousands of ids) keep the first ids only.
MAX_ENTRY_BYTES = 16_384


async def append(redis: Redis, entry: Mapping[str, Any], keep: int) -> None:
    # ASCII JSON: an id or queue name that is not UTF-8 (a lone surrogate here) is stored as a \u
    # escape and read back exactly; written raw it would fail to encode, or to decode when read.
    body = json.dumps(entry, ensure_ascii=True, default=str)
    if len(body) > MAX_ENTRY_BYTES and isinstance(entry.get("ids"), list):
        ids = entry["ids"]
        body = json.dumps({**entry, "ids": ids[:100], "ids_truncated": len(ids)}, default=str)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(AUDIT_KEY, body)
        pipe.ltrim(AUDIT_KEY, 0, keep - 1)
        await pipe.execute()


async def recent(redis: Redis, limit: int) -> list[dict[str, Any]]:
    raws = await redis.lrange(AUDIT_KEY, 0, limit - 1)  # type: ignore[misc]
    out = []
    for raw in raws:
        try:
            entry = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: arrays nested past the parser's depth
            continue  # not ours to interpret; the list is ours, but be robust to hand edits
        if isinstance(entry, dict):
            out.append(entry)
    return out


@dataclass(frozen=True, slots=True)
class Move:
    """Where a job went: a control gave it a new id, as its audit entry records."""

    new_id: str
    #: When the control ended (Unix seconds), if the entry says.
    at: float | None
    user: str
    action: str


def find_move(entries: Iterable[Mapping[str, Any]], framework: str, queue: str, job_id: str) -> Move | None:
    """The newest move of `job_id` on that queue among `entries` (newest first, as `recent` reads
    them). The list is ours, but anyone who can write to Redis may have edited it: an entry that is
    not shaped as ours is passed over. O(entries x moves kept per entry)."""
    for entry in entries:
        if entry.get("framework") != framework or entry.get("queue") != queue:
            continue
        moved = entry.get("moved")
        for pair in moved if isinstance(moved, list) else ():
            if isinstance(pair, list) and len(pair) == 2 and pair[0] == job_id and isinstance(pair[1], str):
                user, action = str(entry.get("user") or "someone"), str(entry.get("action") or "")
                return Move(pair[1], _time(entry.get("finished_at")), user, action)
    return None


def _time(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
