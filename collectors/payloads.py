"""Decoding stored payloads without trusting them, and folding them into one-line previews.

Payloads come from other people's processes: they may be truncated, not JSON, huge, deeply nested,
or hostile. Decoding never raises; it returns the value or an `Undecodable` with the size and the
first bytes, so a page can show what is there instead of failing. The decoders run in budgeted
decoder processes (collectors/decoding.py). Integers too long to write in decimal are shown as
`<int of N bits>` (`safe_repr`, `safe_str`), never converted: that would raise, or take quadratic time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from callboard.collectors.model import Undecodable

#: Payloads above this are not decoded at all (shown as undecodable with their size).
MAX_PAYLOAD_BYTES = 1_000_000
#: Payloads nested deeper than this are shown as undecodable (rendering them would exhaust the stack).
MAX_DEPTH = 100
#: First bytes shown for an undecodable payload.
HEAD_BYTES = 64
#: Integers with more decimal digits than this are shown as `<int of N bits>`: Python refuses to turn
#: them into text (`sys.get_int_max_str_digits()`, 4,300 by default), because doing so is quadratic.
MAX_INT_DIGITS = 4300
#: The most bits an integer of MAX_INT_DIGITS - 1 decimal digits can have (log2(10) = 3.3219...).
MAX_INT_BITS = int((MAX_INT_DIGITS - 1) * math.log2(10))


def head_of(raw: bytes) -> str:
    """The first bytes of a payload as printable text (non-printables escaped)."""
    return repr(raw[:HEAD_BYTES])[2:-1] + ("…" if len(raw) > HEAD_BYTES else "")


def undecodable(raw: bytes, reason: str) -> Undecodable:
    return Undecodable(reason=reason, size=len(raw), head=head_of(raw))


def unreadable(raw: bytes | None) -> Undecodable | None:
    """Why `raw` is not even looked at (missing, or over the size cap), else None."""
    if raw is None:
        return Undecodable(reason="missing payload", size=0, head="")
    if len(raw) > MAX_PAYLOAD_BYTES:
        return undecodable(raw, f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    return None


def decode_json_object(raw: bytes | None) -> dict[str, Any] | Undecodable:
    """A JSON object from `raw`, or why not. Never raises."""
    refused = unreadable(raw)
    if refused is not None:
        return refused
    assert raw is not None  # unreadable() refuses None
    if raw[:1] == b"\x80":
        return undecodable(raw, "pickle payload (Dramatiq PickleEncoder): not decoded")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return undecodable(raw, f"not JSON: {type(exc).__name__}")
    if not isinstance(value, dict):
        return undecodable(raw, f"JSON {type(value).__name__}, expected an object")
    if depth(value) > MAX_DEPTH:
        return undecodable(raw, f"nested deeper than {MAX_DEPTH} levels")
    return value


def depth(value: Any) -> int:
    """Nesting depth of lists and dicts, measured without recursion (hostile input can be deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


#: Integers beyond this are not plausible counts or millisecond times (year 33658); treated as unknown.
_MAX_PLAUSIBLE = 10**15


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) <= _MAX_PLAUSIBLE else None
    if isinstance(value, float) and math.isfinite(value) and abs(value) <= _MAX_PLAUSIBLE:
        return int(value)
    return None


def ms_to_seconds(value: Any) -> float | None:
    ms = as_int(value)
    return ms / 1000.0 if ms is not None and ms > 0 else None


def as_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def fold(value: Any, limit: int = 120) -> str:
    """A compact one-line repr, cut at `limit` characters."""
    text = _short(value, depth=0)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_preview(name: str | None, args: Any, kwargs: Any, limit: int = 160) -> str:
    """`actor(1, 'x', key=…)`, folded to one line."""
    parts: list[str] = []
    if isinstance(args, Sequence) and not isinstance(args, str | bytes):
        parts.extend(_short(a, 1) for a in args)
    if isinstance(kwargs, Mapping):
        parts.extend(f"{k}={_short(v, 1)}" for k, v in kwargs.items())
    text = f"{name or '?'}({', '.join(parts)})"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any, depth: int) -> str:
    if depth > 3:
        return "…"
    if isinstance(value, Mapping):
        items = list(value.items())
        body = ", ".join(f"{_short(k, depth + 1)}: {_short(v, depth + 1)}" for k, v in items[:8])
        return "{" + body + (", …" if len(items) > 8 else "") + "}"
    if isinstance(value, list | tuple):
        body = ", ".join(_short(v, depth + 1) for v in value[:8])
        more = ", …" if len(value) > 8 else ""
        return ("[" + body + more + "]") if isinstance(value, list) else ("(" + body + more + ")")
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:59] + "…")
    return safe_repr(value)


def int_text(value: int) -> str:
    """`<int of 13,290 bits>`: an integer too long to show in decimal, described in O(1)."""
    sign = "negative " if value < 0 else ""
    return f"<{sign}int of {value.bit_length():,} bits>"


def fits(value: int) -> bool:
    """True when `value` can be written in decimal (at most MAX_INT_DIGITS - 1 digits), in O(1)."""
    return value.bit_length() <= MAX_INT_BITS


def safe_repr(value: Any) -> str:
    """`repr(value)`, or a description when Python refuses it (an int over 4,300 digits inside)."""
    return _shown(value, repr)


def _shown(value: Any, show: Callable[[Any], str]) -> str:
    if type(value) is int and not fits(value):
        return int_text(value)
    try:
        return show(value)
    except (ValueError, RecursionError) as exc:
        return f"<{type(value).__name__} that cannot be shown: {str(exc)[:80]}>"


def is_key(name: str) -> bool:
    """Whether `name` can be a Redis key as the clients encode it (UTF-8, surrogateescape).

    Every name read from Redis can; a name taken from inside a payload (an Arq result's queue) may
    hold a surrogate that cannot (`"\\ud800"`): used as a key, it would fail the whole pipeline."""
    try:
        name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def safe_str(value: Any) -> str:
    """`str(value)`, or a description when Python refuses it (see safe_repr)."""
    return _shown(value, str)


def last_line(text: str | None) -> str | None:
    """The last non-empty line of a traceback: usually `ValueError: message`."""
    if not text:
        return None
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()[:300]
    return None
