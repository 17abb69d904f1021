"""Dramatiq payloads into Callboard's model: pure functions of the raw bytes.

Each builder marked `@decoder` runs in a budgeted decoder process (collectors/decoding.py): the
async readers hand it the bytes with `decoding.run`, and a payload over the budget comes back as
undecodable instead of holding the event loop.
"""

from __future__ import annotations

import json
from typing import Any

from callboard.collectors import decoding, payloads
from callboard.collectors.decoding import decoder
from callboard.collectors.model import (
    Framework,
    JobDetail,
    JobResult,
    JobSummary,
    Undecodable,
)


@decoder
def runnable_since(message: bytes | dict[str, Any] | Undecodable) -> float | None:
    """When a ready message (raw or decoded) became runnable: its send time, or its last failure when
    it was retried.

    After a retry the worker strips `eta` when it moves the message back to the queue, so the last
    failure time is the best bound Redis keeps (it overstates the wait by the backoff).
    """
    if isinstance(message, bytes):
        message = payloads.decode_json_object(message)
    if isinstance(message, Undecodable):
        return None
    options = message.get("options")
    options = options if isinstance(options, dict) else {}
    times = [
        payloads.ms_to_seconds(message.get("message_timestamp")),
        payloads.ms_to_seconds(options.get("eta")),
        payloads.ms_to_seconds(options.get("requeue_timestamp")),
    ]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def unreadable_detail(call: decoding.Call, reason: str) -> JobDetail:
    queue_key, rid, state, raw, holder = call[:5]
    ids = (("redis message id", rid),) + ((("held by worker", holder),) if holder else ())
    gone = payloads.undecodable(raw, reason)
    return JobDetail(Framework.DRAMATIQ, queue_key, rid, state, None, ids, size=len(raw), undecodable=gone)


@decoder
def detail_of(
    queue_key: str, rid: str, state: str, raw: bytes, holder: str | None, dead_score: float | None
) -> JobDetail:
    """Everything a message says about itself, decoded (run in a decoder process); no stored result."""
    message = payloads.decode_json_object(raw)
    ids: list[tuple[str, str]] = [("redis message id", rid)]
    if holder:
        ids.append(("held by worker", holder))
    if isinstance(message, Undecodable):
        return JobDetail(
            Framework.DRAMATIQ, queue_key, rid, state, None, tuple(ids), size=len(raw), undecodable=message
        )
    options = message.get("options") if isinstance(message.get("options"), dict) else {}
    assert isinstance(options, dict)
    message_id = payloads.as_text(message.get("message_id"))
    actor = payloads.as_text(message.get("actor_name"))
    if message_id:
        ids.insert(0, ("message id", message_id))
    stored_rid = payloads.as_text(options.get("redis_message_id"))
    if stored_rid and stored_rid != rid:
        ids.append(("options.redis_message_id (differs!)", stored_rid))
    stamps = [
        ("enqueued", payloads.ms_to_seconds(message.get("message_timestamp"))),
        ("last failure", payloads.ms_to_seconds(options.get("requeue_timestamp"))),
        ("eta", payloads.ms_to_seconds(options.get("eta"))),
        ("dead-lettered", dead_score / 1000.0 if dead_score else None),
    ]
    notes: list[str] = []
    traceback = payloads.as_text(options.get("traceback"))
    if state == "dead":
        notes.append(
            "Dramatiq keeps the traceback of the attempt before the last: the final attempt's traceback "
            "exists only in the worker's log."
            if traceback
            else "No traceback stored: the message failed on its first attempt (max_retries=0, a `throws` "
            "exception, max_age or an unknown actor); the error is only in the worker's log."
        )
    return JobDetail(
        framework=Framework.DRAMATIQ,
        queue_key=queue_key,
        job_id=rid,
        state=state,
        name=actor,
        ids=tuple(ids),
        args=message.get("args"),
        kwargs=message.get("kwargs"),
        options={k: v for k, v in options.items() if k != "traceback"},
        retries=payloads.as_int(options.get("retries")),
        traceback=traceback,
        timestamps=tuple((label, t) for label, t in stamps if t is not None),
        notes=tuple(notes),
        size=len(raw),
        raw=message,
    )


def unreadable_result(call: decoding.Call, reason: str) -> JobResult:
    key, raw, ttl = call
    return JobResult(key, False, exception_type="undecodable", exception_message=reason, ttl_seconds=ttl)


@decoder
def result_of(key: str, raw: bytes, ttl: float | None) -> JobResult:
    """A stored result (dramatiq's RedisBackend writes JSON), decoded in a decoder process."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return JobResult(
            key=key, ok=False, exception_type="undecodable", exception_message=payloads.head_of(raw)
        )
    if isinstance(value, dict) and value.get("__t") == "dramatiq.results.Result":
        exn = value.get("exn") if isinstance(value.get("exn"), dict) else {}
        assert isinstance(exn, dict)
        return JobResult(
            key=key,
            ok=False,
            exception_type=payloads.as_text(exn.get("type")),
            exception_message=payloads.as_text(exn.get("msg")),
            ttl_seconds=ttl,
        )
    return JobResult(key=key, ok=True, value=value, ttl_seconds=ttl)


def unreadable_summary(call: decoding.Call, reason: str) -> JobSummary:
    rid, state, raw = call[:3]
    dead_at = call[3] if len(call) > 3 else None
    gone = payloads.undecodable(raw or b"", reason)
    return JobSummary(rid, state, None, "undecodable payload", failed_at=dead_at, undecodable=gone)


@decoder
def summary(rid: str, state: str, raw: bytes | None, dead_at: float | None = None) -> JobSummary:
    message = payloads.decode_json_object(raw)
    if isinstance(message, Undecodable):
        return JobSummary(rid, state, None, "undecodable payload", failed_at=dead_at, undecodable=message)
    options = message.get("options") if isinstance(message.get("options"), dict) else {}
    assert isinstance(options, dict)
    actor = payloads.as_text(message.get("actor_name"))
    return JobSummary(
        job_id=rid,
        state=state,
        name=actor,
        call_preview=payloads.call_preview(actor, message.get("args"), message.get("kwargs")),
        enqueued_at=payloads.ms_to_seconds(message.get("message_timestamp")),
        eta=payloads.ms_to_seconds(options.get("eta")),
        failed_at=dead_at or payloads.ms_to_seconds(options.get("requeue_timestamp")),
        retries=payloads.as_int(options.get("retries")),
        error=payloads.last_line(payloads.as_text(options.get("traceback"))),
    )
