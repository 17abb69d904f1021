"""The restricted unpickler: hostile pickles run nothing, real payloads decode, nothing escapes `decode`.

Every hostile payload below would create a marker file (or worse) under plain `pickle.loads`; the tests
check that the file is absent, that `decode` returns (never raises) and what it shows instead.
`pickle.loads` is only ever called on data a test has just made itself.
"""

from __future__ import annotations

import builtins
import collections
import copyreg
import datetime
import decimal
import io
import os
import pickle
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from callboard.collectors import unpickler
from callboard.collectors.model import Undecodable
from callboard.collectors.payloads import MAX_PAYLOAD_BYTES
from callboard.collectors.unpickler import Placeholder, decode, has_placeholders

PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))


class Reduce:
    """Pickles as `fn(*args)` (or `fn(*args)` then BUILD with `state`): how hostile pickles are made."""

    def __init__(self, fn: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __call__(self, *args: Any) -> Any:  # pickle refuses to save a non-callable reduce target
        raise AssertionError("never called")

    def __reduce__(self) -> Any:
        if self.state is None:
            return (self.fn, self.args)
        return (self.fn, self.args, self.state)


class Holder:
    """A plain user class (pickled by reference, with its __dict__ as state)."""

    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


class CustomError(Exception):
    """Its constructor takes other arguments than its `args`: plain pickle cannot rebuild it."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"custom {code}: {detail}")
        self.code = code
        self.detail = detail


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def shown(value: Any) -> str:
    assert isinstance(value, Placeholder), value
    return repr(value)


def assert_inert(value: Any, marker: Path) -> None:
    assert not marker.exists()
    assert isinstance(value, Undecodable | Placeholder | dict | list | tuple), value


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_os_system_reduce_becomes_a_placeholder(protocol: int, marker: Path) -> None:
    command = f"touch {marker}"
    raw = pickle.dumps(Reduce(os.system, (command,)), protocol=protocol)
    value = decode(raw)
    assert not marker.exists()
    assert shown(value) == f"{os.system.__module__}.system({command!r})"
    assert isinstance(value, Placeholder)
    assert value.qualified_name == "posix.system"
    assert value.args == (command,)


def test_handwritten_protocol0_os_system(marker: Path) -> None:
    raw = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    value = decode(raw)
    assert not marker.exists()
    assert shown(value) == f"os.system('touch {marker}')"


def test_subprocess_popen_reduce(marker: Path) -> None:
    raw = pickle.dumps(Reduce(subprocess.Popen, (["touch", str(marker)],)), protocol=4)
    value = decode(raw)
    assert not marker.exists()
    assert shown(value) == f"subprocess.Popen(['touch', '{marker}'])"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fn", [builtins.eval, builtins.exec], ids=["eval", "exec"])
def test_eval_and_exec_become_placeholders(protocol: int, fn: Any, marker: Path) -> None:
    code = f"open({str(marker)!r}, 'w').write('x')"
    value = decode(pickle.dumps(Reduce(fn, (code,)), protocol=protocol))
    assert not marker.exists()
    assert shown(value) == f"builtins.{fn.__name__}({code!r})"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_import_is_a_placeholder(protocol: int) -> None:
    value = decode(pickle.dumps(Reduce(builtins.__import__, ("os",)), protocol=protocol))
    assert shown(value) == "builtins.__import__('os')"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_getattr_trick_runs_nothing(protocol: int, marker: Path) -> None:
    # getattr(__import__('os'), 'system')('touch marker'): the outer call is on a placeholder instance.
    system = Reduce(getattr, (Reduce(builtins.__import__, ("os",)), "system"))
    raw = pickle.dumps(Reduce(system, (f"touch {marker}",)), protocol=protocol)
    value = decode(raw)
    assert not marker.exists()
    assert isinstance(value, Undecodable)
    assert value.reason.startswith("not a readable pickle: TypeError")
    assert value.size == len(raw)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_getattr_on_builtins_for_eval(protocol: int, marker: Path) -> None:
    # getattr(builtins-ish, 'eval'): the object is an allowed type, so the trick reaches getattr itself.
    evil = Reduce(getattr, (dict, "fromkeys"))
    value = decode(pickle.dumps({"x": evil}, protocol=protocol))
    assert isinstance(value, dict)
    assert shown(value["x"]) == "builtins.getattr(<class 'dict'>, 'fromkeys')"
    assert not marker.exists()


@pytest.mark.parametrize(
    "name", ["eval", "exec", "getattr", "__import__", "open", "type", "object", "compile"]
)
def test_stack_global_names_never_resolve_to_callables(name: str) -> None:
    # Protocol 4 STACK_GLOBAL of builtins.<name>: the class a pickle gets back is a placeholder.
    raw = b"\x80\x04\x8c\x08builtins\x94\x8c" + bytes([len(name)]) + name.encode() + b"\x94\x93\x94."
    value = decode(raw)
    assert isinstance(value, type) and issubclass(value, Placeholder)
    assert value.__name__ == name


def test_dotted_global_name_does_not_walk_attributes() -> None:
    # The default unpickler resolves dotted names with getattr (protocol 4); ours must not.
    name = b"eval.__self__"
    raw = b"\x80\x04\x8c\x08builtins\x94\x8c" + bytes([len(name)]) + name + b"\x94\x93\x94."
    value = decode(raw)
    assert isinstance(value, type) and issubclass(value, Placeholder)
    assert value.__module_name__ == "builtins"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hostile_reduce_nested_in_containers(protocol: int, marker: Path) -> None:
    evil = Reduce(os.system, (f"touch {marker}",))
    payload = {"t": 1, "f": "job", "a": (1, [evil]), "k": {"deep": {"x": (evil,)}}}
    value = decode(pickle.dumps(payload, protocol=protocol))
    assert not marker.exists()
    assert isinstance(value, dict)
    assert value["t"] == 1 and value["f"] == "job"
    assert shown(value["a"][1][0]) == f"posix.system('touch {marker}')"
    assert shown(value["k"]["deep"]["x"][0]) == f"posix.system('touch {marker}')"
    assert has_placeholders(value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hostile_object_as_state_of_a_user_class(protocol: int, marker: Path) -> None:
    evil = Reduce(os.system, (f"touch {marker}",))
    value = decode(pickle.dumps(Holder(inner=evil, n=3), protocol=protocol))
    assert not marker.exists()
    assert isinstance(value, Placeholder)
    assert value.qualified_name == f"{__name__}.Holder"
    assert value.state["n"] == 3
    assert shown(value.state["inner"]) == f"posix.system('touch {marker}')"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hostile_state_applied_by_build(protocol: int, marker: Path) -> None:
    # A reduce with a third item: BUILD calls __setstate__ on whatever the reduce made.
    evil = Reduce(os.system, (f"touch {marker}",), state={"cmd": Reduce(builtins.eval, ("1+1",))})
    value = decode(pickle.dumps(evil, protocol=protocol))
    assert not marker.exists()
    assert isinstance(value, Placeholder)
    assert value.args == (f"touch {marker}",)
    assert shown(value.state["cmd"]) == "builtins.eval('1+1')"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_copyreg_reconstructor_with_hostile_class(protocol: int, marker: Path) -> None:
    # Real copyreg._reconstructor would run subprocess.Popen.__init__(obj, ['touch', marker]).
    argv = ["touch", str(marker)]
    raw = pickle.dumps(
        Reduce(copyreg._reconstructor, (subprocess.Popen, subprocess.Popen, argv)),  # type: ignore[attr-defined]
        protocol=protocol,
    )
    value = decode(raw)
    assert not marker.exists()
    # Protocols 0-2 carry Python 2 module names (`commands.Popen`); they are mapped back as pickle does.
    assert shown(value) == f"subprocess.Popen({argv!r})"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_copyreg_reconstructor_with_allowed_class_and_hostile_base(protocol: int, marker: Path) -> None:
    argv = ["touch", str(marker)]
    raw = pickle.dumps(
        Reduce(copyreg._reconstructor, (dict, subprocess.Popen, argv)),  # type: ignore[attr-defined]
        protocol=protocol,
    )
    value = decode(raw)
    assert not marker.exists()
    assert isinstance(value, Undecodable)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_plain_user_object_via_reconstructor(protocol: int) -> None:
    # Protocols 0-1 pickle plain objects through copyreg._reconstructor, 2+ through NEWOBJ.
    value = decode(pickle.dumps({"obj": Holder(a=1, b="two")}, protocol=protocol))
    assert isinstance(value, dict)
    obj = value["obj"]
    assert isinstance(obj, Placeholder)
    assert obj.qualified_name == f"{__name__}.Holder"
    assert obj.state == {"a": 1, "b": "two"}
    assert repr(obj).endswith("{'a': 1, 'b': 'two'}")
    with pytest.raises(pickle.PicklingError):
        pickle.dumps(obj)


class _PersistentPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return "db-row-1" if isinstance(obj, Holder) else None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_persistent_ids_are_refused(protocol: int) -> None:
    buf = io.BytesIO()
    _PersistentPickler(buf, protocol=protocol).dump({"x": Holder()})
    value = decode(buf.getvalue())
    assert isinstance(value, Undecodable)
    assert "persistent references are refused" in value.reason


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage, not a pickle",
        b"\x80\x05\x95\xff\xff\xff",
        b"\x80\x04K\x01K\x02R.",  # REDUCE on an int
        b"\xff" * 64,
        b"(((((((((.",
    ],
    ids=["empty", "text", "short-frame", "reduce-int", "ff", "marks"],
)
def test_garbage_is_undecodable(raw: bytes) -> None:
    value = decode(raw)
    assert isinstance(value, Undecodable)
    assert value.reason.startswith("not a readable pickle")
    assert value.size == len(raw)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_truncated_pickles_are_undecodable(protocol: int) -> None:
    raw = pickle.dumps(
        {"f": "job", "a": (1, 2, "three"), "k": {"x": datetime.datetime(2024, 1, 2)}}, protocol
    )
    for cut in (1, len(raw) // 2, len(raw) - 1):
        value = decode(raw[:cut])
        assert isinstance(value, Undecodable), (cut, value)
        assert value.size == cut


def test_payload_over_the_cap_is_not_decoded(marker: Path) -> None:
    raw = pickle.dumps([Reduce(os.system, (f"touch {marker}",)), b"x" * MAX_PAYLOAD_BYTES], protocol=5)
    assert len(raw) > MAX_PAYLOAD_BYTES
    value = decode(raw)
    assert isinstance(value, Undecodable)
    assert value.reason == f"payload larger than {MAX_PAYLOAD_BYTES} bytes"
    assert value.size == len(raw)
    assert value.head.startswith("\\x80\\x05")
    assert not marker.exists()


def test_deep_nesting_never_raises() -> None:
    depth = 200_000
    raw = b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b"."
    value = decode(raw)
    assert isinstance(value, list)
    assert has_placeholders(value)  # deeper than it inspects: treated as unfaithful, never re-encoded


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_custom_exception_plain_pickle_fails_ours_reads(protocol: int) -> None:
    raw = pickle.dumps(CustomError(42, "tag c1"), protocol=protocol)
    with pytest.raises(TypeError):
        pickle.loads(raw)  # our own bytes: this is what arq's own Job.result_info() hits
    value = decode(raw)
    assert isinstance(value, Placeholder)
    assert value.qualified_name == f"{__name__}.CustomError"
    assert value.args == ("custom 42: tag c1",)
    assert value.state == {"code": 42, "detail": "tag c1"}
    assert repr(value) == f"{__name__}.CustomError('custom 42: tag c1') {{'code': 42, 'detail': 'tag c1'}}"


ALLOWED_VALUES: list[Any] = [
    datetime.datetime(2024, 1, 2, 3, 4, 5, 678),
    datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2), "X")),
    datetime.date(2024, 2, 29),
    datetime.time(23, 59, 1),
    datetime.timedelta(days=1, seconds=2, microseconds=3),
    decimal.Decimal("3.14159"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    collections.OrderedDict([("b", 1), ("a", 2)]),
    {1, 2, 3},
    frozenset({"x", "y"}),
    b"\x00\xffbytes",
    bytearray(b"ba"),
    complex(1, 2),
    range(1, 10, 2),
    slice(1, 5),
    None,
    True,
    1.5,
    "text ✓",
    2**100,
]


def _allowed_params() -> list[Any]:
    return [
        pytest.param(value, protocol, id=f"{type(value).__name__}-{protocol}")
        for value in ALLOWED_VALUES
        for protocol in PROTOCOLS
    ]


@pytest.mark.parametrize(("value", "protocol"), _allowed_params())
def test_allowed_types_roundtrip(value: Any, protocol: int) -> None:
    decoded = decode(pickle.dumps({"v": value, "nested": [value]}, protocol=protocol))
    assert decoded == {"v": value, "nested": [value]}
    assert type(decoded["v"]) is type(value)
    assert not has_placeholders(decoded)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "exc",
    [
        ValueError("boom"),
        KeyError("k"),
        OSError(2, "no such file"),
        TimeoutError(),
        ExceptionGroup("g", [ValueError(1)]),
    ],
    ids=lambda e: type(e).__name__,
)
def test_builtin_exceptions_roundtrip(protocol: int, exc: BaseException) -> None:
    raw = pickle.dumps(exc, protocol=protocol)
    decoded = decode(raw)
    # Protocols 0-2 store Python 3-only classes under their Python 2 base (TimeoutError as OSError),
    # exactly as plain pickle reads them back (our own bytes: safe to compare with).
    assert type(decoded) is type(pickle.loads(raw))
    assert type(decoded) is type(exc) or protocol < 3
    assert isinstance(decoded, BaseException)
    assert str(decoded) == str(exc)
    assert not has_placeholders(decoded)


def test_exception_attributes_roundtrip() -> None:
    exc = ValueError("bad")
    exc.detail = {"field": "x"}  # type: ignore[attr-defined]
    decoded = decode(pickle.dumps(exc, protocol=5))
    assert isinstance(decoded, ValueError)
    assert decoded.args == ("bad",)
    assert decoded.detail == {"field": "x"}  # type: ignore[attr-defined]


def test_has_placeholders() -> None:
    cls = unpickler.placeholder_class("app", "Thing")
    p = cls(1)
    assert has_placeholders(p)
    assert has_placeholders(cls)
    assert has_placeholders({"k": [1, (2, p)]})
    assert has_placeholders({p: 1})
    assert has_placeholders({(1, p): "v"})
    assert has_placeholders(frozenset({p}))
    assert not has_placeholders({"a": [1, (2, 3)], "b": {1, 2}, "c": datetime.datetime(2024, 1, 1)})
    assert not has_placeholders(None)
    nested: Any = 1
    for _ in range(60):
        nested = [nested]
    assert has_placeholders(nested)  # too deep to tell: treated as unfaithful


def test_placeholder_text_is_capped() -> None:
    p = unpickler.placeholder_class("app", "Big")("x" * 1000)
    text = unpickler.placeholder_text(p)
    assert len(text) == 400
    assert text.startswith("app.Big('xxx") and text.endswith("…")


def test_asyncio_cancellation_that_arq_stores_for_aborted_jobs_is_a_real_exception() -> None:
    import asyncio

    value = unpickler.decode(pickle.dumps({"s": False, "r": asyncio.CancelledError("aborted")}))
    assert isinstance(value, dict) and isinstance(value["r"], asyncio.CancelledError)
    assert value["r"].args == ("aborted",) and not unpickler.has_placeholders(value)
