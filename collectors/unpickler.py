"""A restricted unpickler for Arq payloads (and Dramatiq's PickleEncoder): it imports nothing.

`pickle.loads` on data from Redis would run whatever the pickle names (`os.system`, `eval`, ...), and
also fails on real payloads: a user exception whose `__init__` takes other arguments than its `args`
cannot be rebuilt even with the user's code importable (Arq's own `Job.result_info()` raises on it).

Here `find_class` resolves only an allow-list (builtin scalars and containers, every builtin exception,
datetime, Decimal, UUID, OrderedDict, a few asyncio exceptions, and `_codecs.encode` for protocol 0-2
bytes). Every other global becomes an inert *placeholder class*: calling it, `__new__`-ing it or
BUILD-ing it only records args, kwargs and state. Nothing is imported, so no user module code runs.
Placeholders are for display only and refuse to be pickled again.

Cost: about the same as `pickle.loads` (0-25 % slower on 100k real Arq results, docs/arq-redis.md §8).
What it cannot refuse without refusing real payloads is cost: a few bytes can ask for minutes of CPU
or gigabytes (`int(Decimal('1e1000000'))`, a huge memo index). So it runs only inside the budgeted
decoder processes of collectors/decoding.py, where a MemoryError is the budget speaking (re-raised).
"""

from __future__ import annotations

import _compat_pickle
import asyncio
import builtins
import codecs
import collections
import concurrent.futures
import datetime
import decimal
import io
import pickle
import uuid
from typing import Any, ClassVar

from callboard.collectors.model import Undecodable
from callboard.collectors.payloads import MAX_PAYLOAD_BYTES, safe_repr, undecodable

_SAFE_BUILTINS = {
    "dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int", "float",
    "complex", "bool", "range", "slice", "NoneType",
}  # fmt: skip

_ALLOWED: dict[tuple[str, str], Any] = {
    ("datetime", "date"): datetime.date,
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "time"): datetime.time,
    ("datetime", "timedelta"): datetime.timedelta,
    ("datetime", "timezone"): datetime.timezone,
    ("decimal", "Decimal"): decimal.Decimal,
    ("uuid", "UUID"): uuid.UUID,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): codecs.encode,
    # What Arq stores for an aborted or cancelled job (exceptions: rebuilt with args only).
    ("asyncio.exceptions", "CancelledError"): asyncio.CancelledError,
    ("asyncio.exceptions", "InvalidStateError"): asyncio.InvalidStateError,
    ("concurrent.futures._base", "CancelledError"): concurrent.futures.CancelledError,
}

#: Python 2 module names that protocol 0-2 pickles may use.
_PY2_MODULES = {"__builtin__": "builtins", "exceptions": "builtins", "copy_reg": "copyreg"}


class Placeholder:
    """Stands in for an instance of a class we refuse to import. Records what the pickle said."""

    __module_name__: ClassVar[str] = "?"
    __class_name__: ClassVar[str] = "?"
    _args: tuple[Any, ...]
    _kwargs: dict[str, Any]
    _state: Any
    _items: list[Any]
    _dictitems: dict[Any, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = object.__new__(cls)
        object.__setattr__(obj, "_args", args)
        object.__setattr__(obj, "_kwargs", kwargs)
        object.__setattr__(obj, "_state", None)
        object.__setattr__(obj, "_items", [])
        object.__setattr__(obj, "_dictitems", {})
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Called by pickle's INST/OBJ opcodes and by REDUCE; __new__ already recorded everything.
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "_state", state)

    def append(self, value: Any) -> None:
        self._items.append(value)

    def extend(self, values: Any) -> None:
        self._items.extend(values)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._dictitems[key] = value

    def __reduce__(self) -> Any:
        raise pickle.PicklingError("placeholders are for display only and are never pickled again")

    @property
    def qualified_name(self) -> str:
        return f"{self.__module_name__}.{self.__class_name__}"

    @property
    def args(self) -> tuple[Any, ...]:
        return self._args

    @property
    def state(self) -> Any:
        return self._state

    def __repr__(self) -> str:
        return placeholder_text(self)


def placeholder_class(module: str, name: str) -> type[Placeholder]:
    return type(name, (Placeholder,), {"__module_name__": module, "__class_name__": name})


def placeholder_text(p: Placeholder, limit: int = 400) -> str:
    """`module.Class(args) {state}`: how a placeholder is shown."""
    parts = [safe_repr(a) for a in p._args] + [f"{k}={safe_repr(v)}" for k, v in p._kwargs.items()]
    text = f"{p.qualified_name}({', '.join(parts)})"
    if p._state is not None:
        text += f" {safe_repr(p._state)}"
    if p._items:
        text += f" items={safe_repr(p._items)}"
    if p._dictitems:
        text += f" {safe_repr(p._dictitems)}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg._reconstructor, limited to classes this unpickler already allowed or replaced."""
    if isinstance(cls, type) and issubclass(cls, Placeholder):
        return cls(state) if state is not None else cls()
    if base is object or _is_placeholder_of(base, "builtins", "object"):
        # `object` is not on the allow-list (it could build anything), so it arrives as a placeholder.
        return object.__new__(cls)
    if isinstance(base, type) and issubclass(base, Placeholder):
        raise pickle.UnpicklingError(
            f"refused to reconstruct through {base.__module_name__}.{base.__class_name__}"
        )
    obj = base.__new__(cls, state)
    if base.__init__ != object.__init__:
        base.__init__(obj, state)
    return obj


def _is_placeholder_of(value: Any, module: str, name: str) -> bool:
    return (
        isinstance(value, type)
        and issubclass(value, Placeholder)
        and (value.__module_name__, value.__class_name__) == (module, name)
    )


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, fix_imports=False, encoding="utf-8", errors="surrogateescape")
        self._classes: dict[tuple[str, str], type[Placeholder]] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 0-2 pickles written by Python 3 use Python 2 names (xrange, __builtin__, copy_reg).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        module = _PY2_MODULES.get(module, module)
        if module == "builtins":
            value = getattr(builtins, name, None)
            if name in _SAFE_BUILTINS and value is not None:
                return value
            if isinstance(value, type) and issubclass(value, BaseException):
                return value
        elif (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        elif module == "copyreg" and name == "_reconstructor":
            return _safe_reconstructor
        # Anything else (user classes, asyncio's and arq's own exceptions, os.system, eval...) becomes a
        # placeholder: recorded and shown as `module.Class(args)`, never imported or called.
        return self._placeholder(module, name)

    def _placeholder(self, module: str, name: str) -> type[Placeholder]:
        key = (module, name)
        if key not in self._classes:
            self._classes[key] = placeholder_class(module, name)
        return self._classes[key]

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent references are refused")


def loads(raw: bytes) -> Any:
    """Decode a pickle without importing anything. Raises on malformed input; see `decode`."""
    return RestrictedUnpickler(io.BytesIO(raw)).load()


def decode(raw: bytes) -> Any | Undecodable:
    """The decoded value, or why not. Never raises, never runs code."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        return undecodable(raw, f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        return loads(raw)
    except RecursionError:
        return undecodable(raw, "pickle nested too deeply")
    except MemoryError:
        raise  # the decoder process's budget (collectors/decoding.py) says so, not a malformed pickle
    except Exception as exc:  # malformed pickles raise many types; all mean "cannot show it"
        return undecodable(raw, f"not a readable pickle: {type(exc).__name__}: {str(exc)[:120]}")


def has_placeholders(value: Any, _depth: int = 0) -> bool:
    """True when `value` holds something that could not be rebuilt faithfully (refuse to re-encode it)."""
    if _depth > 50:
        return True
    if isinstance(value, Placeholder) or (isinstance(value, type) and issubclass(value, Placeholder)):
        return True
    if isinstance(value, dict):
        return any(
            has_placeholders(k, _depth + 1) or has_placeholders(v, _depth + 1) for k, v in value.items()
        )
    if isinstance(value, list | tuple | set | frozenset):
        return any(has_placeholders(v, _depth + 1) for v in value)
    return False
