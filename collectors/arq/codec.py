"""Arq payloads into Callboard's model: pure functions of the raw bytes.

Payloads are pickles by default: they are decoded only by the restricted unpickler (collectors/
unpickler.py), never `pickle.loads`, and each builder marked `@decoder` runs in a budgeted decoder
process (collectors/decoding.py), so a hostile payload costs one budget, not the event loop.
Why: docs/arq-redis.md §8.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from callboard.collectors import decoding, payloads, transport, unpickler
from callboard.collectors.arq.keys import result_key
from callboard.collectors.decoding import decoder
from callboard.collectors.keyspace import text
from callboard.collectors.model import (
    Framework,
    JobDetail,
    JobResult,
    JobSummary,
    StoredCall,
    Undecodable,
)


@decoder
def decode(raw: bytes | None, serializer: str = "auto") -> Any | Undecodable:
    """Decode a job or result payload with the configured serializer, or sniff it. Never raises."""
    refused = payloads.unreadable(raw)
    if refused is not None:
        return refused
    assert raw is not None  # unreadable() refuses None
    kind = serializer if serializer != "auto" else _sniff(raw)
    if kind == "pickle":
        return unpickler.decode(raw)
    try:
        if kind == "json":
            return json.loads(raw)
        return msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=3)
    # TypeError: a msgpack map whose key is a map or an array (unhashable), found by Hypothesis.
    except (
        ValueError,
        TypeError,
        RecursionError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        return payloads.undecodable(raw, f"not readable as {kind}: {type(exc).__name__}")


def decode_record(raw: bytes | None, serializer: str = "auto") -> dict[str, Any] | Undecodable:
    """A job or result payload, which Arq always writes as a dict; anything else is undecodable."""
    value = decode(raw, serializer)
    if isinstance(value, Undecodable | dict):
        return value
    return payloads.undecodable(raw or b"", "not a dict")


def _sniff(raw: bytes) -> str:
    # Pickle protocol >= 2 starts with 0x80 then the protocol; arq's dicts in msgpack are fixmaps (0x8_).
    if raw[:1] == b"\x80":
        return "pickle"
    if raw[:1] in (b"{", b"["):
        return "json"
    if raw[:1] and 0x80 <= raw[0] <= 0x8F or raw[:1] in (b"\xde", b"\xdf"):
        return "msgpack"
    return "pickle"


def serializer_of(raw: bytes, serializer: str = "auto") -> str:
    """The serializer that wrote `raw`: the configured one, else sniffed. Writes reuse it (arq_controls)."""
    return serializer if serializer != "auto" else _sniff(raw)


def exception_parts(value: Any) -> tuple[str, str, Any]:
    """(type, message, attributes) of a stored exception: a real builtin one or a placeholder."""
    if isinstance(value, BaseException):
        attrs = {k: v for k, v in vars(value).items()} if hasattr(value, "__dict__") else {}
        args = value.args
        message = payloads.safe_str(args[0]) if len(args) == 1 else (payloads.safe_str(args) if args else "")
        return type(value).__qualname__, message, attrs or None
    if isinstance(value, unpickler.Placeholder):
        args = value.args
        shown = ", ".join(map(payloads.safe_repr, args))
        message = payloads.safe_str(args[0]) if len(args) == 1 else shown
        return value.qualified_name, message, value.state
    return type(value).__name__, payloads.safe_str(value)[:500], None


#: Containers nested deeper than this are shown as "…".
DISPLAY_DEPTH = 20


#: What a one-line preview (payloads.call_preview) can show of args: 4 levels, 8 items and a "…".
_PREVIEW = (DISPLAY_DEPTH - 4, 9)


def display(value: Any, depth: int = 0, width: int | None = None) -> Any:
    """A JSON-able rendering of decoded data: placeholders as `module.Class(args) {state}` text.

    `width` keeps only the first items of each container (previews: a list holding one list many
    times over is then not walked exponentially)."""
    if depth > DISPLAY_DEPTH:
        return "…"
    if isinstance(value, unpickler.Placeholder):
        return {"__class__": value.qualified_name, "repr": unpickler.placeholder_text(value)}
    if isinstance(value, type):
        return f"<class {getattr(value, '__module_name__', value.__module__)}.{value.__name__}>"
    if isinstance(value, BaseException):
        return f"{type(value).__qualname__}{payloads.safe_repr(value.args)}"
    if isinstance(value, dict):
        pairs = value.items() if width is None else itertools.islice(value.items(), width)
        return {payloads.safe_str(k): display(v, depth + 1, width) for k, v in pairs}
    if isinstance(value, list | tuple | set | frozenset):
        items = value if width is None else itertools.islice(value, width)
        return [display(v, depth + 1, width) for v in items]
    if isinstance(value, int) and not isinstance(value, bool) and not payloads.fits(value):
        return payloads.int_text(value)  # str() or json.dumps() of it would raise (or take quadratic time)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, bytes | bytearray):
        return repr(bytes(value[:200]))
    return payloads.safe_str(value) if hasattr(value, "isoformat") else payloads.safe_repr(value)


@decoder
def function_name(raw: bytes | None, serializer: str) -> str | None:
    """The function a job payload names (the stuck check)."""
    job = decode_record(raw, serializer)
    return payloads.as_text(job.get("f")) if isinstance(job, dict) else None


def no_name(call: decoding.Call, reason: str) -> str | None:
    return None


def int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@decoder
def job_summary(job_id: str, state: str, raw: bytes | None, due: float | None, serializer: str) -> JobSummary:
    value = decode_record(raw, serializer)
    if isinstance(value, Undecodable):
        return JobSummary(job_id, state, None, "undecodable payload", eta=due, undecodable=value)
    function = payloads.as_text(value.get("f"))
    return JobSummary(
        job_id=job_id,
        state=state,
        name=function,
        call_preview=payloads.call_preview(
            function, display(value.get("a"), *_PREVIEW), display(value.get("k"), *_PREVIEW)
        ),
        enqueued_at=payloads.ms_to_seconds(value.get("et")),
        eta=due,
        retries=payloads.as_int(value.get("t")),
    )


def unreadable_job(call: decoding.Call, reason: str) -> JobSummary:
    job_id, state, raw, due = call[:4]
    undecodable = payloads.undecodable(raw or b"", reason)
    return JobSummary(job_id, state, None, "undecodable payload", eta=due, undecodable=undecodable)


@decoder
def result_summary(job_id: str, state: str, raw: bytes | None, serializer: str) -> JobSummary:
    value = decode_record(raw, serializer)
    if isinstance(value, Undecodable):
        return JobSummary(job_id, state, None, "undecodable or expired result", undecodable=value)
    function = payloads.as_text(value.get("f"))
    error = None
    if not value.get("s"):
        kind, message, _ = exception_parts(value.get("r"))
        error = f"{kind}: {message}" if message else kind
    return JobSummary(
        job_id=job_id,
        state=state,
        name=function,
        call_preview=payloads.call_preview(
            function, display(value.get("a"), *_PREVIEW), display(value.get("k"), *_PREVIEW)
        ),
        enqueued_at=payloads.ms_to_seconds(value.get("et")),
        failed_at=payloads.ms_to_seconds(value.get("ft")) if error else None,
        retries=payloads.as_int(value.get("t")),
        error=error,
        started_at=payloads.ms_to_seconds(value.get("st")),
        finished_at=payloads.ms_to_seconds(value.get("ft")),
    )


@dataclass(frozen=True, slots=True)
class Stored:
    """What else Redis holds about a job id (besides its payload): the input of `detail_of`."""

    has_result: bool
    running: bool
    retry: bytes | None
    score: float | None
    result_ttl: int


def unreadable_detail(call: decoding.Call, reason: str) -> JobDetail:
    queue, job_id, raw = call[:3]
    ids = (("job id", job_id),)
    gone = payloads.undecodable(raw, reason)
    return JobDetail(Framework.ARQ, queue, job_id, "unknown", None, ids, size=len(raw), undecodable=gone)


@decoder
def detail_of(queue: str, job_id: str, raw: bytes, stored: Stored, serializer: str, now: float) -> JobDetail:
    """Everything stored about one job, decoded (run in a decoder process)."""
    value = decode_record(raw, serializer)
    ids = (("job id", job_id),)
    if isinstance(value, Undecodable):
        return JobDetail(Framework.ARQ, queue, job_id, "unknown", None, ids, size=len(raw), undecodable=value)
    due = float(stored.score) / 1000.0 if stored.score is not None else None
    if stored.has_result:
        state = "succeeded" if value.get("s") else "failed"
    elif stored.running:
        state = "in_progress"
    else:
        state = "ready" if due is not None and due <= now else "deferred"
    enqueued = payloads.ms_to_seconds(value.get("et"))
    started = payloads.ms_to_seconds(value.get("st"))
    finished = payloads.ms_to_seconds(value.get("ft"))
    stamps = [("enqueued", enqueued), ("due", due), ("started", started), ("finished", finished)]
    retry = int_or_none(text(stored.retry)) if stored.retry else None
    options: dict[str, Any] = {"try": display(value.get("t")), "retry counter": retry}
    if started is not None:
        options["queue wait (s)"] = round(started - (due or enqueued or started), 3)
    if started is not None and finished is not None:
        options["run time (s)"] = round(finished - started, 3)
    if value.get("q"):
        options["queue (from result)"] = display(value.get("q"))
    result = None
    notes: list[str] = []
    if stored.has_result:
        key = result_key(job_id)
        ttl = stored.result_ttl / 1000.0 if stored.result_ttl >= 0 else None
        if value.get("s"):
            result = JobResult(key, True, display(value.get("r")), ttl_seconds=ttl)
        else:
            kind, message, attrs = exception_parts(value.get("r"))
            result = JobResult(key, False, display(attrs), kind, message, ttl)
            notes.append(
                "Arq stores the exception (type, arguments, attributes), no traceback: see the worker's log."
            )
    call = stored_call(value, serializer_of(raw, serializer))
    if call is not None and not transport.transportable(call.args, call.kwargs):
        call = None
        notes.append("Copy as code is not offered: the arguments contain themselves or nest too deeply.")
    return JobDetail(
        framework=Framework.ARQ,
        queue_key=queue,
        job_id=job_id,
        state=state,
        name=payloads.as_text(value.get("f")),
        ids=ids,
        args=display(value.get("a")),
        kwargs=display(value.get("k")),
        options={k: v for k, v in options.items() if v is not None},
        retries=payloads.as_int(value.get("t")),
        timestamps=tuple((label, t) for label, t in stamps if t is not None),
        result=result,
        notes=tuple(notes),
        size=len(raw),
        raw=display(value),
        call=call,
    )


def unreadable_result_summary(call: decoding.Call, reason: str) -> JobSummary:
    job_id, state, raw = call[:3]
    undecodable = payloads.undecodable(raw or b"", reason)
    return JobSummary(job_id, state, None, "undecodable or expired result", undecodable=undecodable)


def stored_call(record: Mapping[str, Any], serializer: str) -> StoredCall | None:
    """The job's args and kwargs as decoded (for "copy as code"); None when they are not a list and a dict."""
    args, kwargs = record.get("a"), record.get("k")
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return None
    return StoredCall(tuple(args), kwargs, serializer)
