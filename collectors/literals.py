"""Decoded job arguments written as Python expressions that evaluate to exactly the same values.

Pure functions, no I/O; used by "copy as code" (snippets.py). Exact types only (a subclass's repr or
constructor could differ): `repr` for None, bools, strings, bytes and ints (hex past Python's
4,300-digit limit), `float("nan")` / `float("inf")` for what JSON calls NaN and Infinity, and stdlib
constructors for datetimes, Decimals, UUIDs and OrderedDicts. Anything else (a placeholder of a user
class, an exception, a list that contains itself) is written `...` and reported as a TODO.
Output is one line: `repr` escapes every line break, so a caller may end the line with a comment.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import math
import uuid
from dataclasses import dataclass
from typing import Any

from callboard.collectors.payloads import safe_repr
from callboard.collectors.unpickler import Placeholder, placeholder_text

#: Containers nested deeper than this are not written out (Python's parser stops at 200 brackets).
MAX_DEPTH = 100
_DATETIMES = (datetime.datetime, datetime.date, datetime.time, datetime.timedelta, datetime.timezone)


@dataclass(frozen=True, slots=True)
class Literal:
    """A value written as Python: the expression, the modules it needs, what it could not rebuild."""

    code: str
    imports: frozenset[str]
    #: One entry per `...` in `code`: what stood there.
    todos: tuple[str, ...]


def literal(value: Any) -> Literal:
    """`value` as a Python expression that evaluates to an equal value (given `imports`)."""
    imports: set[str] = set()
    todos: list[str] = []
    code = _render(value, imports, todos, frozenset(), 0)
    return Literal(code, frozenset(imports), tuple(todos))


def _render(value: Any, imports: set[str], todos: list[str], seen: frozenset[int], depth: int) -> str:
    kind = type(value)  # exact types: a subclass's repr or constructor could differ
    if value is None or kind is bool or kind is str or kind is bytes:
        return repr(value)
    if kind is int:
        return _int(value)
    if kind is float:
        return _float(value)
    if kind is complex:
        return f"complex({_float(value.real)}, {_float(value.imag)})"
    if kind is bytearray:
        return f"bytearray({bytes(value)!r})"
    if kind in _DATETIMES and _plain_tzinfo(value):
        imports.add("datetime")
        return repr(value)  # the stdlib's reprs are constructor calls: datetime.datetime(2024, 1, 2, ...)
    if kind is decimal.Decimal:
        imports.add("decimal")
        return f"decimal.Decimal({str(value)!r})"  # str() is exact: digits, exponent, NaN, -0
    if kind is uuid.UUID:
        imports.add("uuid")
        return f"uuid.UUID({str(value)!r})"
    if kind is range:
        return f"range({_int(value.start)}, {_int(value.stop)}, {_int(value.step)})"
    if kind in (list, tuple, set, frozenset, dict, collections.OrderedDict):
        if id(value) in seen:
            return _todo(f"a {kind.__name__} that contains itself", todos)
        if depth >= MAX_DEPTH:
            return _todo(f"values nested deeper than {MAX_DEPTH} levels", todos)
        return _container(value, imports, todos, seen | {id(value)}, depth + 1)
    return _todo(_describe(value), todos)


def _container(value: Any, imports: set[str], todos: list[str], seen: frozenset[int], depth: int) -> str:
    def r(item: Any) -> str:
        return _render(item, imports, todos, seen, depth)

    kind = type(value)
    if kind is collections.OrderedDict:
        imports.add("collections")
        return "collections.OrderedDict([" + ", ".join(f"({r(k)}, {r(v)})" for k, v in value.items()) + "])"
    if kind is dict:
        return "{" + ", ".join(f"{r(k)}: {r(v)}" for k, v in value.items()) + "}"
    items = [r(v) for v in value]
    if kind is list:
        return "[" + ", ".join(items) + "]"
    if kind is tuple:
        return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    body = "{" + ", ".join(items) + "}"
    if kind is set:
        return body if items else "set()"
    return f"frozenset({body})" if items else "frozenset()"


def _int(value: int) -> str:
    try:
        return repr(value)
    except ValueError:  # over sys.get_int_max_str_digits() decimal digits; hex has no such limit
        return hex(value)


def _float(value: float) -> str:
    if math.isnan(value):
        return 'float("nan")'
    if math.isinf(value):
        return 'float("inf")' if value > 0 else '-float("inf")'
    return repr(value)  # the shortest repr that round-trips exactly


def _plain_tzinfo(value: Any) -> bool:
    """Only stdlib timezones have a repr that rebuilds them (anything else would be a placeholder)."""
    tz = getattr(value, "tzinfo", None)
    return tz is None or type(tz) is datetime.timezone


def _todo(what: str, todos: list[str]) -> str:
    todos.append(what)
    return "..."


def _describe(value: Any) -> str:
    if isinstance(value, Placeholder):
        return placeholder_text(value, limit=120)
    if isinstance(value, type):
        name = getattr(value, "__class_name__", value.__name__)
        return f"the class {getattr(value, '__module_name__', value.__module__)}.{name}"
    return f"a {type(value).__qualname__} ({safe_repr(value)[:100]})"
