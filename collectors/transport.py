"""How calls and results cross between the server and its decoder processes (collectors/decoding.py).

Both ways they are pickles, and both ways they are read by `TransportUnpickler`: the restricted
unpickler's allow-list (collectors/unpickler.py) plus Callboard's own types in TRANSPORT_TYPES and
placeholders; any other class is refused, never imported, never turned into a placeholder. Nothing
here is `pickle.loads`.

Results are pickled without a memo (`Pickler.fast`), into a sink that refuses to grow past
MAX_OUTPUT: a structure that shares references arrives expanded, so what the server walks afterwards
(templates, JSON, copy as code) is a tree of at most MAX_OUTPUT bytes, never an exponential walk. A
value that contains itself cannot be pickled that way (ValueError): see `transportable`.

Placeholders refuse `pickle.dumps` (they are never written back to Redis); here a reducer override
sends them as their recorded parts, which the unpickler rebuilds as placeholders again.
"""

from __future__ import annotations

import importlib
import io
import pickle
import threading
from collections.abc import Iterator
from typing import Any

from callboard.collectors.unpickler import Placeholder, RestrictedUnpickler

#: Largest pickled result a call may return.
MAX_OUTPUT = 8 * 2**20
#: Callboard's own types that results and calls may hold, besides the restricted unpickler's.
TRANSPORT_TYPES = frozenset(
    {
        ("callboard.collectors.model", "Framework"),
        ("callboard.collectors.model", "Undecodable"),
        ("callboard.collectors.model", "JobSummary"),
        ("callboard.collectors.model", "JobDetail"),
        ("callboard.collectors.model", "JobResult"),
        ("callboard.collectors.model", "StoredCall"),
        ("callboard.collectors.model", "JobOutcome"),
        ("callboard.collectors.model", "Outcome"),
        ("callboard.collectors.failures", "Failure"),
        ("callboard.collectors.arq.results", "ResultEntry"),
        ("callboard.collectors.arq.codec", "Stored"),
        ("callboard.collectors.arq.controls", "_Rerun"),
        ("callboard.collectors.search", "Query"),
    }
)


class OutputFull(Exception):
    """A result larger than MAX_OUTPUT."""


def placeholder(
    module: str, name: str, args: Any, kwargs: Any, state: Any, items: Any, dictitems: Any
) -> Any:
    """How a placeholder travels (named by reference; TransportUnpickler rebuilds it, see there)."""
    raise pickle.UnpicklingError("only TransportUnpickler rebuilds placeholders")


def placeholder_type(module: str, name: str) -> Any:
    """How a placeholder class travels (see `placeholder`)."""
    raise pickle.UnpicklingError("only TransportUnpickler rebuilds placeholders")


class TransportUnpickler(RestrictedUnpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in TRANSPORT_TYPES:
            return getattr(importlib.import_module(module), name)
        if module == __name__ and name == "placeholder":
            return self._rebuild
        if module == __name__ and name == "placeholder_type":
            return self._placeholder
        found = super().find_class(module, name)
        if isinstance(found, type) and issubclass(found, Placeholder):
            raise pickle.UnpicklingError(f"transport refuses the class {module}.{name}")
        return found

    def _rebuild(
        self, module: str, name: str, args: Any, kwargs: Any, state: Any, items: Any, dictitems: Any
    ) -> Placeholder:
        obj = self._placeholder(module, name)(*args, **kwargs)
        obj.__setstate__(state)
        obj._items.extend(items)
        obj._dictitems.update(dictitems)
        return obj


def loads(data: bytes) -> Any:
    """Read a transport pickle (a call or a result)."""
    return TransportUnpickler(io.BytesIO(data)).load()


class _Bounded:
    """A sink that refuses to grow past MAX_OUTPUT (the pickler writes it frame by frame, ~64 kB)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: Any) -> int:
        self.size += len(data)
        if self.size > MAX_OUTPUT:
            raise OutputFull
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        return data


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Placeholder):
            fields = ("_args", "_kwargs", "_state", "_items", "_dictitems")
            defaults: tuple[Any, ...] = ((), {}, None, [], {})
            values = tuple(getattr(obj, f, d) for f, d in zip(fields, defaults, strict=True))
            return placeholder, (obj.__module_name__, obj.__class_name__, *values)
        if isinstance(obj, type) and issubclass(obj, Placeholder):
            return placeholder_type, (obj.__module_name__, obj.__class_name__)
        return NotImplemented


class _Dumper:
    """One pickler and sink, reused for every result (a decoder pickles ~100k small results a second)."""

    def __init__(self) -> None:
        self.sink = _Bounded()
        self.pickler = self._pickler()

    def _pickler(self) -> _Pickler:
        pickler = _Pickler(self.sink, protocol=5)
        pickler.fast = True  # no memo: see the module docstring
        return pickler

    def dumps(self, value: Any) -> bytes:
        try:
            self.pickler.dump(value)
        except BaseException:
            self.sink.take()
            self.pickler = self._pickler()  # a fresh one: no state left over from the failed dump
            raise
        return self.sink.take()


_DUMPER = threading.local()


def dumps(value: Any) -> bytes:
    """A transport pickle of `value`, shared references written out in full.

    Raises OutputFull past MAX_OUTPUT, ValueError for a value that contains itself."""
    dumper = getattr(_DUMPER, "dumper", None)
    if dumper is None:
        dumper = _DUMPER.dumper = _Dumper()
    data: bytes = dumper.dumps(value)
    return data


#: Containers nested deeper than this are not sent back from a decoder process as they are (pickling
#: recurses); the page shows them folded by `display` anyway.
MAX_TRANSPORT_DEPTH = 400


def transportable(*values: Any) -> bool:
    """True when no container in `values` contains itself or nests deeper than MAX_TRANSPORT_DEPTH.

    Iterative, O(distinct objects): shared references are visited once."""
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[Any, Iterator[Any]]] = [(values, iter(values))]
    while stack:
        node, children = stack[-1]
        child = next(children, _END)
        if child is _END:
            stack.pop()
            on_path.discard(id(node))
            done.add(id(node))
            continue
        grandchildren = _children(child)
        if grandchildren is None or id(child) in done:
            continue
        if id(child) in on_path or len(stack) > MAX_TRANSPORT_DEPTH:
            return False
        on_path.add(id(child))
        stack.append((child, grandchildren))
    return True


_END = object()


def _children(value: Any) -> Iterator[Any] | None:
    if isinstance(value, dict):
        return iter([*value.keys(), *value.values()])
    if isinstance(value, list | tuple | set | frozenset):
        return iter(value)
    if isinstance(value, Placeholder):
        return iter((value._args, value._kwargs, value._state, value._items, value._dictitems))
    if isinstance(value, BaseException):
        return iter((value.args, getattr(value, "__dict__", None)))
    return None
