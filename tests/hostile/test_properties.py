"""Properties, tested with Hypothesis, of what reads hostile input: decoders, fingerprints, URLs.

- Decoders never raise and never run code, whatever the bytes (arbitrary bytes, and bytes built from
  pickle opcodes naming os.system, eval, subprocess...); allowed values round-trip exactly through the
  restricted unpickler, with every protocol. Decoding runs under an address-space cap: a random
  pickle may ask for a memo table of gigabytes, which must end as "undecodable", not in swap.
- Fingerprints: `normalise` never raises (lone surrogates included), is idempotent, and messages that
  differ only in numbers, UUIDs, hex ids and quoted values fall in one group.
- URLs (dashboard/urls.py): every name, whatever it holds, is exactly one path segment that reads back
  as itself, through the raw-path resolver and, on a real server, through the router to exactly that
  queue and job.
- The decode budget (collectors/decoding.py): in order, and past the budget a fallback, not a stall.

dashboard/urls.py and collectors/decoding.py land with the urls and decode branches of issue 11; the
tests that use them import them by name (and fail until then).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import html
import importlib
import itertools
import json
import pickle
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from callboard.collectors import payloads, unpickler
from callboard.collectors.arq import codec as arq_codec
from callboard.collectors.arq import config as arq_config
from callboard.collectors.failures import group_key, normalise
from callboard.collectors.model import Framework, Undecodable
from tests.hostile.conftest import (
    CappedBoard,
    address_space_cap,
    fetch,
    new_redis,
    start_board,
)
from tests.hostile.corpus import TARGET, bombs, now_ms, raw
from tests.hostile.http_support import whatwg_path
from tests.servers import RedisServer, wait_until

#: Where a payload that ran code would leave a file (it must stay empty).
MARKER_DIR = Path(tempfile.mkdtemp(prefix="callboard-hostile-pwned-"))
PROTOCOLS = st.integers(0, pickle.HIGHEST_PROTOCOL)
#: Examples for the properties that cost microseconds each (the profile's default suits decoders).
CHEAP_EXAMPLES = 200

# -- strategies ---------------------------------------------------------------------------------------

#: Characters that change a URL or a path when left as they are.
URL_SPECIAL = [
    "/",
    ".",
    "..",
    "%",
    "%2F",
    "%2e",
    "?",
    "#",
    "\n",
    "\r",
    "\t",
    " ",
    "~",
    "&",
    "+",
    ":",
    "@",
    "\\",
]
#: Lone surrogates: from bytes that are not UTF-8 (U+DC80-U+DCFF, surrogateescape) and from JSON
#: "\ud800" escapes (any). Sampled, since st.characters() almost never draws them.
SURROGATES = ["\udc80", "\udcff", "\ud800", "\udbff", "\udfff"]
any_char = st.one_of(st.characters(), st.sampled_from(SURROGATES), st.sampled_from("/.%?#~\n \x00"))


def texts(alphabet: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[str]:
    """Strings of `alphabet`, surrogates kept (st.text() drops them)."""
    return st.lists(alphabet, max_size=max_size).map("".join)


#: Any text at all, with what breaks URLs and encoders made likely.
any_text = st.one_of(
    texts(any_char, 12),
    st.lists(st.one_of(st.sampled_from(URL_SPECIAL), texts(any_char, 3)), max_size=6).map("".join),
)


def canonical(name: str) -> str:
    """`name` as Callboard reads it back from Redis (bytes decoded with surrogateescape)."""
    return raw(name).decode("utf-8", "surrogateescape")


#: Names a Redis key can have, as Callboard reads them: any bytes, UTF-8 or not.
redis_name = st.lists(
    st.one_of(
        st.sampled_from(URL_SPECIAL),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=3),
        st.binary(max_size=3).map(lambda b: b.decode("utf-8", "surrogateescape")),
    ),
    max_size=5,
).map(lambda parts: canonical("".join(parts)))

_marker = str(MARKER_DIR / "pwned")
#: Pieces of pickles that would run code under pickle.loads, and opcodes that build, call and refer.
PICKLE_PIECES = [
    b"cos\nsystem\n",
    b"cposix\nsystem\n",
    b"cbuiltins\neval\n",
    b"cbuiltins\nexec\n",
    b"cbuiltins\ngetattr\n",
    b"cbuiltins\n__import__\n",
    b"c__builtin__\neval\n",
    b"csubprocess\nPopen\n",
    b"ccopyreg\n_reconstructor\n",
    b"cbuiltins\nobject\n",
    b"cbuiltins\nlist\n",
    b"cbuiltins\nint\n",
    b"cdecimal\nDecimal\n",
    b"cdatetime\ndatetime\n",
    b"\x8c\x02os\x94\x8c\x06system\x94\x93",
    b"\x8c\x08builtins\x8c\x04eval\x93",
    b"ios\nsystem\n",
    f"S'touch {_marker}'\n".encode(),
    f"V__import__('os').system('touch {_marker}')\n".encode(),
    b"X\x05\x00\x00\x001e300",
    b"(", b"t", b")", b"R", b"b", b"o", b"\x81", b"\x92", b"\x85", b"\x86", b"\x87",
    b"]", b"}", b"N", b"\x88", b"\x89", b"K\x07", b"J\xff\xff\xff\x7f", b"M\xff\xff", b"\x8a\x01\xff",
    b"a", b"e", b"s", b"u", b"0", b"1", b"2", b"h\x00", b"q\x00", b"\x94", b"r\x00\x00\x00\x04",
    b"P1\n", b"Q", b"\x95\x10\x00\x00\x00\x00\x00\x00\x00",
]  # fmt: skip
pickle_like = st.tuples(
    PROTOCOLS, st.lists(st.one_of(st.sampled_from(PICKLE_PIECES), st.binary(max_size=6)), max_size=24)
).map(lambda t: b"\x80" + bytes([t[0]]) + b"".join(t[1]) + b".")
hostile_bytes = st.one_of(st.binary(max_size=200), pickle_like, pickle_like.map(lambda b: b[2:]))

fixed_offsets = st.builds(
    datetime.timezone,
    st.timedeltas(min_value=datetime.timedelta(hours=-23), max_value=datetime.timedelta(hours=23)),
)
hashable = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    texts(any_char, 8),
    st.binary(max_size=8),
    st.floats(allow_nan=False),
    st.uuids(),
    st.dates(),
    st.decimals(allow_nan=False),
)
scalar = st.one_of(
    hashable,
    st.integers(min_value=-(2**300), max_value=2**300),
    st.builds(bytearray, st.binary(max_size=8)),
    st.complex_numbers(allow_nan=False),
    st.datetimes(timezones=st.one_of(st.none(), st.just(datetime.UTC), fixed_offsets)),
    st.times(),
    st.timedeltas(),
    st.builds(range, st.integers(-50, 50), st.integers(-50, 50), st.integers(1, 9)),
    st.builds(slice, hashable, hashable, hashable),
)
#: What the restricted unpickler rebuilds faithfully: builtin scalars and containers, datetime,
#: Decimal, UUID, OrderedDict.
allowed_values = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(hashable, inner, max_size=4),
        st.dictionaries(hashable, inner, max_size=4).map(collections.OrderedDict),
        st.frozensets(hashable, max_size=4),
        st.sets(hashable, max_size=4),
    ),
    max_leaves=16,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 is not True, a dict is not an OrderedDict)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return same(list(a), list(b)) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, slice):
        return same((a.start, a.stop, a.step), (b.start, b.stop, b.step))
    return bool(a == b)


def canon(value: Any, depth: int = 0) -> Any:
    """A comparable form of a decoded value, the same in every process (set order follows hashes,
    and hash(None) differs between processes)."""
    if depth > 60:
        return "…"
    if isinstance(value, set | frozenset):
        return type(value).__name__, sorted(repr(canon(v, depth + 1)) for v in value)
    if isinstance(value, dict):
        return type(value).__name__, [(canon(k, depth + 1), canon(v, depth + 1)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return type(value).__name__, [canon(v, depth + 1) for v in value]
    return repr(value)


class OverBudget:
    """What an in-process decode ended with when it asked for more memory than the cap: the decoder
    processes of collectors/decoding.py turn that MemoryError into "exceeds decode budget (memory)"."""


def decoded(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except MemoryError:
        return OverBudget()


def assert_inert(value: Any) -> None:
    assert not any(MARKER_DIR.iterdir()), f"a payload ran code: {list(MARKER_DIR.iterdir())}"
    arq_codec.display(value)  # what pages show of it: never raises either


# -- (a) decoders ---------------------------------------------------------------------------------------


@given(hostile_bytes)
def test_the_unpickler_never_raises_and_never_runs_code(data: bytes) -> None:
    with address_space_cap():
        assert_inert(decoded(unpickler.decode, data))


@given(hostile_bytes, st.sampled_from(arq_config.SERIALIZERS))
def test_arq_decoders_never_raise_and_never_run_code(data: bytes, serializer: str) -> None:
    with address_space_cap():
        assert_inert(decoded(arq_codec.decode, data, serializer))
        record = decoded(arq_codec.decode_record, data, serializer)
        assert isinstance(record, dict | Undecodable | OverBudget)
        assert_inert(record)


@given(
    st.one_of(hostile_bytes, st.none(), texts(any_char, 20).map(lambda t: t.encode("utf-8", "surrogatepass")))
)
def test_json_messages_decode_to_an_object_or_say_why_not(data: bytes | None) -> None:
    value = payloads.decode_json_object(data)
    assert isinstance(value, dict | Undecodable)
    if isinstance(value, Undecodable):
        assert value.reason and value.size == len(data or b"")


@given(
    st.recursive(
        st.none() | st.integers() | texts(any_char, 8),
        lambda x: st.lists(x) | st.dictionaries(texts(any_char, 4), x),
    )
)
def test_json_objects_that_fit_decode_as_written(value: Any) -> None:
    data = json.dumps({"v": value}).encode()  # escapes surrogates; json.loads reads them back (paired)
    decoded = payloads.decode_json_object(data)
    assert decoded == json.loads(data) or (isinstance(decoded, Undecodable) and "nested" in decoded.reason)


@given(allowed_values, PROTOCOLS)
def test_allowed_values_round_trip_exactly(value: Any, protocol: int) -> None:
    data = pickle.dumps({"v": value, "again": [value]}, protocol=protocol)  # our own value
    decoded = unpickler.decode(data)
    assert same(decoded, {"v": value, "again": [value]}), (value, decoded)
    assert not unpickler.has_placeholders(decoded)


# -- (b) fingerprints -----------------------------------------------------------------------------------

_word = st.text(st.sampled_from("ghijklmnopqrstuvwxyz_"), min_size=1, max_size=8)
_hex_id = st.tuples(
    st.text(st.sampled_from("0123456789"), min_size=1, max_size=6),
    st.text(st.sampled_from("abcdef"), min_size=1, max_size=6),
    st.text(st.sampled_from("0123456789abcdef"), min_size=4, max_size=10),
).map(lambda t: t[0] + t[1] + t[2])
#: Each kind of value that varies between occurrences of one failure.
_variable = {
    "number": st.one_of(st.integers().map(str), st.floats(0, 1e9, allow_nan=False).map(lambda f: f"{f:.3f}")),
    "uuid": st.uuids().map(str),
    "hex": st.one_of(_hex_id, st.integers(0, 2**64).map(hex)),
    "quoted": st.one_of(
        st.text(st.characters(exclude_characters="'\n"), max_size=12).map(lambda t: f"'{t}'"),
        st.text(st.characters(exclude_characters='"\n'), max_size=12).map(lambda t: f'"{t}"'),
    ),
}


@st.composite
def message_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """Two messages alike but for their variable parts (each a number, UUID, hex id or quoted value)."""
    first: list[str] = []
    second: list[str] = []
    for _ in range(draw(st.integers(1, 6))):
        text = draw(st.lists(_word, min_size=1, max_size=3).map(" ".join))
        kind = draw(st.sampled_from(sorted(_variable)))
        a, b = draw(_variable[kind]), draw(_variable[kind])
        first += [text, a]
        second += [text, b]
    return " ".join(first) + " end", " ".join(second) + " end"


@settings(max_examples=CHEAP_EXAMPLES)
@given(any_text, any_text, any_text, st.sampled_from(list(Framework)))
def test_fingerprints_never_raise_on_any_text(message: str, name: str, exception: str, fw: Framework) -> None:
    pattern = normalise(message)
    key = group_key(fw, name, exception, pattern)
    assert re.fullmatch(r"[0-9a-f]{12}", key)


#: Messages made of what normalise() rewrites: quotes, numbers, hex, spaces, newlines; some long.
fingerprint_text = st.one_of(
    any_text,
    texts(st.sampled_from(["'", "\n", " ", "a"]), 12),
    texts(
        st.sampled_from(["'", '"', "\n", " ", "\t", "a", "x", "1", "0x", "ab12cd", "-", ".", ",", ":"]), 30
    ),
    st.tuples(st.text(st.sampled_from("ab "), min_size=295, max_size=305), any_text).map("".join),
)


@settings(max_examples=400)  # the non-idempotent inputs are a few in a hundred
@given(fingerprint_text)
def test_normalise_is_idempotent(message: str) -> None:
    once = normalise(message)
    assert normalise(once) == once


@settings(max_examples=CHEAP_EXAMPLES)
@given(message_pairs(), st.sampled_from(list(Framework)))
def test_messages_differing_in_numbers_ids_and_quoted_values_share_a_group(
    pair: tuple[str, str], framework: Framework
) -> None:
    first, second = pair
    assert normalise(first) == normalise(second), pair
    assert group_key(framework, "task", "ValueError", normalise(first)) == group_key(
        framework, "task", "ValueError", normalise(second)
    )


# -- (c) URLs ---------------------------------------------------------------------------------------------


def _urls() -> Any:
    # The URL builder of issue 11 item 2 (by name: it lands with that branch).
    return importlib.import_module("callboard.dashboard.urls")


#: Names as Callboard holds them: read from Redis (any bytes, decoded with surrogateescape) or from the
#: config. A str with a surrogate surrogateescape cannot encode (`\ud800`) names no key and reaches no
#: URL: the results index files a result naming such a queue under no queue. Its canonical form does.
url_name = any_text.map(lambda t: urls_key_bytes(t).decode("utf-8", "surrogateescape"))


def urls_key_bytes(name: str) -> bytes:
    """The bytes a name stands for (dashboard.urls.key_bytes: surrogatepass where escape fails)."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


@settings(max_examples=CHEAP_EXAMPLES)
@given(url_name)
def test_a_name_is_one_segment_that_reads_back_as_itself(name: str) -> None:
    urls = _urls()
    seg = urls.segment(name)
    assert re.fullmatch(r"[A-Za-z0-9\-._~:@%]+", seg), seg  # ASCII, never empty, nothing ending a segment
    assert seg.lower().replace("%2e", ".") not in (".", ".."), seg  # no dot segment a browser removes
    assert urls.unsegment(seg) == name


@settings(max_examples=CHEAP_EXAMPLES)
@given(url_name, st.sampled_from(["dramatiq", "arq"]), url_name, url_name)
def test_every_url_the_ui_builds_resolves_to_exactly_its_names(
    target: str, framework: str, queue: str, job_id: str
) -> None:
    urls = _urls()
    built = [
        (urls.queue_url(target, framework, queue, "dead"), 1, [target, framework, queue]),
        (urls.job_url(target, framework, queue, job_id), 1, [target, framework, queue, job_id]),
        (urls.api_job_url(target, framework, queue, job_id), 3, [target, framework, queue, job_id]),
        (urls.queue_action_url(target, framework, queue, "delete"), 3, [target, framework, queue, "delete"]),
        (
            urls.job_action_url(target, framework, queue, job_id, "retry"),
            3,
            [target, framework, queue, job_id, "retry"],
        ),
    ]
    for url, skip, names in built:
        path, _, query = url.partition("?")
        assert whatwg_path(path) == path, url
        # As uvicorn builds the scope: `path` decoded, `raw_path` the bytes as sent.
        scope = {
            "type": "http",
            "path": unquote(path, errors="surrogateescape"),
            "raw_path": path.encode("ascii"),
        }
        assert urls.path_segments(scope, skip) == names, url
        assert not query or query == "state=dead"


@pytest.fixture(scope="module")
def router_board() -> Iterator[tuple[CappedBoard, RedisServer]]:
    server = new_redis()
    board = start_board(server, TARGET)
    yield board, server
    board.stop()
    server.stop()


_ARQ_OWN = ("arq:job:", "arq:in-progress:", "arq:retry:", "arq:result:", "arq:abort")


def _arq_queue_name(name: str) -> bool:
    """Arq discovery's rule: any sorted set but its own keys and health checks."""
    return not name.startswith(_ARQ_OWN) and not name.endswith(":health-check")


def test_urls_route_back_to_exactly_their_queue_and_job(
    router_board: tuple[CappedBoard, RedisServer],
) -> None:
    """On a real `callboard serve`: the page, the job page and the API job of any queue and job id go
    to exactly that queue and job (each job names a function no other job names)."""
    urls = _urls()
    board, server = router_board
    client = redis.Redis.from_url(server.url)
    tokens = itertools.count()

    @settings(
        max_examples=6, phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck)
    )
    @given(
        st.lists(
            st.tuples(redis_name.filter(_arq_queue_name), redis_name),
            min_size=1,
            max_size=6,
            unique_by=(lambda p: p[0], lambda p: p[1]),
        )
    )
    def check(pairs: list[tuple[str, str]]) -> None:
        written = {}
        for queue, job_id in pairs:
            token = f"probe_{next(tokens)}"
            written[(queue, job_id)] = token
            client.zadd(raw(queue), {raw(job_id): now_ms() - 1_000})
            client.set(
                b"arq:job:" + raw(job_id), pickle.dumps({"t": 1, "f": token, "a": (), "k": {}, "et": 1})
            )

        def discovered() -> bool:
            listed = fetch(board.url, "/api/v1/queues")
            known = {q["key"] for q in json.loads(listed.body)["queues"]} if listed.status == 200 else set()
            return {q for q, _ in pairs} <= known

        wait_until(discovered, timeout=20, interval=0.2, what=f"discovery of {[q for q, _ in pairs]!r}")
        for (queue, job_id), token in written.items():
            page = fetch(board.url, urls.queue_url(TARGET, "arq", queue, "ready"))
            assert page.status == 200 and token in html.unescape(page.text), (queue, page.status)
            page = fetch(board.url, urls.job_url(TARGET, "arq", queue, job_id))
            assert page.status == 200 and token in html.unescape(page.text), (queue, job_id, page.status)
            api = fetch(board.url, urls.api_job_url(TARGET, "arq", queue, job_id))
            assert api.status == 200, (queue, job_id, api.status, api.text[:200])
            data = json.loads(api.body)
            assert (data["queue_key"], data["job_id"], data["name"]) == (queue, job_id, token)

    try:
        check()
    finally:
        client.close()


# -- (d) the decode budget ---------------------------------------------------------------------------------


def _decoding() -> Any:
    # The decode budget of issue 11 item 1 (by name: it lands with that branch).
    return importlib.import_module("callboard.collectors.decoding")


def _fallback(call: tuple[Any, ...], reason: str) -> tuple[str, str]:
    return ("fallback", reason)


#: (payload, a plain pickle of allowed values?)
payloads_to_decode = st.lists(
    st.one_of(
        hostile_bytes.map(lambda b: (b, False)),
        allowed_values.map(lambda v: (pickle.dumps(v, protocol=4), True)),
    ),
    max_size=12,
)


@settings(max_examples=5)
@given(payloads_to_decode)
def test_budgeted_decoding_answers_in_order_like_decoding_in_process(items: list[tuple[bytes, bool]]) -> None:
    """Each answer is the payload's own, in order: what decoding in process gives, or for a hostile
    payload a fallback that says why (over budget, skipped, refused); a plain payload is never one."""
    decoding = _decoding()
    with address_space_cap():
        direct = [decoded(arq_codec.decode, d, "pickle") for d, _ in items]
    got = asyncio.run(decoding.run(arq_codec.decode, [(d, "pickle") for d, _ in items], _fallback))
    assert len(got) == len(items)
    for (data, plain), want, value in zip(items, direct, got, strict=True):
        if isinstance(value, tuple) and value[:1] == ("fallback",):
            assert not plain and value[1], (data, value)
        else:
            assert not isinstance(want, OverBudget) and canon(value) == canon(want), data
    assert not any(MARKER_DIR.iterdir())


@pytest.mark.parametrize("kind", ["decimal", "memo", "range"])
def test_a_decode_bomb_costs_its_budget_and_spares_its_neighbours(kind: str) -> None:
    decoding = _decoding()
    plain = pickle.dumps({"t": 1, "f": "fine", "a": (1, "two"), "k": {}, "et": 1}, protocol=4)
    calls = [(plain, "pickle"), (bombs()[kind], "pickle"), (plain, "pickle")]
    started = time.monotonic()
    got = asyncio.run(decoding.run(arq_codec.decode, calls, _fallback))
    seconds = time.monotonic() - started
    assert got[0] == got[2] == {"t": 1, "f": "fine", "a": (1, "two"), "k": {}, "et": 1}
    assert got[1][0] == "fallback" and got[1][1].startswith("exceeds decode budget"), got[1]
    # A bound on liveness, not a speed measurement: a bomb costs ~40 s of CPU or gigabytes unbudgeted.
    assert seconds < 30, seconds
