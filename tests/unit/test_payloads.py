"""Decoding payloads we do not trust: it never raises, and says what it could not decode."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from callboard.collectors import payloads
from callboard.collectors.dramatiq.codec import runnable_since, summary
from callboard.collectors.model import Undecodable

MESSAGE = {
    "queue_name": "default",
    "actor_name": "send_email",
    "args": [1, "two"],
    "kwargs": {"to": "a@example.com"},
    "options": {"redis_message_id": "r-1", "retries": 2, "traceback": "Traceback...\nValueError: boom\n"},
    "message_id": "m-1",
    "message_timestamp": 1_700_000_000_000,
}


def test_a_dramatiq_message_decodes() -> None:
    raw = json.dumps(MESSAGE, separators=(",", ":")).encode()
    assert payloads.decode_json_object(raw) == MESSAGE


HOSTILE: list[tuple[str, bytes | None, str]] = [
    ("missing", None, "missing payload"),
    ("empty", b"", "not JSON"),
    ("truncated", json.dumps(MESSAGE).encode()[:57], "not JSON"),
    ("not json", b"hello world", "not JSON"),
    ("invalid utf-8", b'{"a": "\xff\xfe"}', "not JSON"),
    ("nul bytes", b"\x00\x00\x00", "not JSON"),
    ("pickle", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.", "pickle"),
    ("json list", b"[1, 2, 3]", "expected an object"),
    ("json string", b'"just a string"', "expected an object"),
    ("json number", b"42", "expected an object"),
    ("json null", b"null", "expected an object"),
    ("json bool", b"true", "expected an object"),
    ("deep list nesting", b"[" * 200_000, "not JSON"),
    ("deep object nesting", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "not JSON"),
    ("huge", b'{"args": ["' + b"x" * 2_000_000 + b'"]}', "larger than"),
]


@pytest.mark.parametrize(
    ("raw", "reason"), [(raw, reason) for _, raw, reason in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_payloads_are_undecodable_not_errors(raw: bytes | None, reason: str) -> None:
    result = payloads.decode_json_object(raw)
    assert isinstance(result, Undecodable)
    assert reason in result.reason
    assert result.size == (len(raw) if raw is not None else 0)
    # The head is short, printable text: safe to show on a page.
    assert len(result.head) <= payloads.HEAD_BYTES * 4 + 1
    assert result.head.isprintable()


@pytest.mark.parametrize("depth", [500, 900])
def test_nesting_that_parses_but_is_too_deep_to_show_is_undecodable(depth: int) -> None:
    """Python's json parses ~1,000 levels, but every consumer (JSON API, pages) recurses per level and
    fails far earlier: a payload nested this deep must come back as Undecodable, not as a dict."""
    raw = b'{"args": ' + b"[" * depth + b"]" * depth + b"}"
    result = payloads.decode_json_object(raw)
    assert isinstance(result, Undecodable)
    assert result.size == len(raw)


def test_ordinary_nesting_is_decoded() -> None:
    raw = b'{"args": [{"a": [{"b": [[1, 2], {"c": {"d": [3]}}]}]}], "kwargs": {"x": {"y": {"z": {}}}}}'
    assert payloads.decode_json_object(raw) == json.loads(raw)


def test_payload_at_the_size_cap_is_decoded_and_above_it_is_not() -> None:
    filler = payloads.MAX_PAYLOAD_BYTES - len(b'{"a":""}')
    at_cap = b'{"a":"' + b"x" * filler + b'"}'
    assert len(at_cap) == payloads.MAX_PAYLOAD_BYTES
    assert payloads.decode_json_object(at_cap) == {"a": "x" * filler}
    above = b'{"a":"' + b"x" * (filler + 1) + b'"}'
    assert isinstance(payloads.decode_json_object(above), Undecodable)


def test_head_of_escapes_and_cuts() -> None:
    assert payloads.head_of(b"abc") == "abc"
    assert payloads.head_of(b"\x00\xff\n") == "\\x00\\xff\\n"
    long = payloads.head_of(b"y" * 1000)
    assert long == "y" * payloads.HEAD_BYTES + "…"


# Payloads that are JSON objects but have hostile values: decoding gives a dict; everything that reads
# fields from it must cope with wrong types and out-of-range numbers.
ODD_OBJECTS: list[tuple[str, bytes]] = [
    (
        "wrong types",
        b'{"actor_name": 5, "args": "x", "kwargs": [1], "options": "o", "message_timestamp": "t"}',
    ),
    ("options wrong types", b'{"options": {"retries": "many", "eta": [], "traceback": 7}}'),
    ("empty object", b"{}"),
    (
        "huge ints",
        b'{"message_timestamp": 1' + b"0" * 400 + b', "options": {"retries": -1' + b"0" * 400 + b"}}",
    ),
    ("infinite numbers", b'{"message_timestamp": 1e999, "options": {"retries": 1e999, "eta": -1e999}}'),
    ("NaN", b'{"message_timestamp": NaN, "args": [NaN, Infinity], "options": {"retries": NaN}}'),
    ("bools as numbers", b'{"message_timestamp": true, "options": {"retries": false}}'),
]


@pytest.mark.parametrize("raw", [raw for _, raw in ODD_OBJECTS], ids=[o[0] for o in ODD_OBJECTS])
def test_odd_objects_never_raise_anywhere_they_are_read(raw: bytes) -> None:
    message = payloads.decode_json_object(raw)
    assert isinstance(message, dict)
    since = runnable_since(message)
    assert since is None or math.isfinite(since)
    row = summary("rid-1", "ready", raw)
    assert row.job_id == "rid-1"
    assert row.retries is None or isinstance(row.retries, int)
    for value in (row.enqueued_at, row.eta, row.failed_at):
        assert value is None or math.isfinite(value)
    assert len(row.call_preview) <= 160
    assert len(payloads.fold(message)) <= 120


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (3.9, 3),
        (True, None),
        (False, None),
        ("3", None),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
        (float("-inf"), None),
        ([3], None),
    ],
)
def test_as_int(value: Any, expected: int | None) -> None:
    assert payloads.as_int(value) == expected


def test_ms_to_seconds() -> None:
    assert payloads.ms_to_seconds(1_700_000_000_000) == 1_700_000_000.0
    assert payloads.ms_to_seconds(0) is None
    assert payloads.ms_to_seconds(-5) is None
    assert payloads.ms_to_seconds("1700000000000") is None
    assert payloads.ms_to_seconds(float("inf")) is None


def test_fold_and_call_preview_are_bounded_one_liners() -> None:
    deep: Any = "leaf"
    for _ in range(50):
        deep = [deep, {"k": deep}] if isinstance(deep, str) else [deep]
    wide = {f"key{i}": "v" * 500 for i in range(1000)}
    for value in (deep, wide, "x\ny" * 1000, list(range(10_000))):
        text = payloads.fold(value)
        assert len(text) <= 120
        assert "\n" not in text or "\\n" in repr(value)
    preview = payloads.call_preview("actor", [wide, deep, "s" * 10_000], {"k": wide})
    assert preview.startswith("actor(")
    assert len(preview) <= 160
    assert payloads.call_preview(None, "not-a-list", 5) == "?()"
    assert payloads.call_preview("a", [1, "x"], {"k": None}) == "a(1, 'x', k=None)"


def test_last_line_of_a_traceback() -> None:
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n\n  \n'
    assert payloads.last_line(tb) == "ValueError: boom"
    assert payloads.last_line("") is None
    assert payloads.last_line(None) is None
    assert payloads.last_line("\n\n") is None
    assert len(payloads.last_line("E" * 10_000) or "") == 300


def test_a_msgpack_map_keyed_by_a_map_is_undecodable() -> None:
    """Found by Hypothesis: {{}: 0} packed is legal msgpack, and Python cannot hash the key."""
    from callboard.collectors.arq import codec as arq_codec

    value = arq_codec.decode(b"\x81\x80\x00", "msgpack")
    assert isinstance(value, Undecodable) and value.reason == "not readable as msgpack: TypeError"
