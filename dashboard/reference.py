"""The settings reference, docs/configuration.md, generated from the code that defines the settings.

Each setting is documented once, by the `#:` comment above its dataclass field, and has its default
once, in that dataclass. This module reads the comments with `inspect.getsource` and `ast` (so a class
is found wherever it lives), the config tables from the field types, the environment variables from
`settings.ENV_SETTINGS` and the flags from the `serve` argument parser. Nothing here states a default.
Regenerate with `python -m callboard.dashboard.reference > docs/configuration.md`;
tests/unit/test_reference.py fails when the committed file differs.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from callboard.dashboard import cli
from callboard.dashboard.settings import (
    CHOICES,
    ENV_CONFIG,
    ENV_REDIS,
    ENV_SETTINGS,
    FILE_KEY,
    TRUE_WORDS,
    Settings,
    env_var,
    file_keys,
    hints,
    parse_target,
    table_class,
)

REGENERATE = "python -m callboard.dashboard.reference > docs/configuration.md"

#: The example config file; tests/unit/test_reference.py loads it.
EXAMPLE = """\
poll_interval = 5
allowed_hosts = ["ops.example.com"]

[[targets]]
name = "main"
url = "redis://localhost:6379/0"

[targets.dramatiq]
queues = ["dramatiq:default"]
dead_message_ttl = 86400

[targets.dramatiq.results]
url = "redis://localhost:6379/1"

[[targets]]
name = "jobs"
url = "redis://:password@jobs-host:6379/2"

[targets.arq]
queues = ["arq:queue", "emails"]
serializer = "msgpack"
health_check_interval = 30

[auth]
users = { alice = "scrypt$..." }
tokens = { prometheus = "sha256$..." }
"""


@dataclass(frozen=True, slots=True)
class Key:
    """One config key as the reference lists it."""

    table: str  # dotted path: "" is the top level, then "targets", "targets.dramatiq", ...
    name: str
    owner: type  # the dataclass whose field it sets
    field: str
    type: str
    default: str  # a TOML value; "" when there is none
    env: str
    flag: str
    help: str


@dataclass(frozen=True, slots=True)
class Table:
    """One config table: its path, whether it is an array of tables, and what it is for."""

    path: str
    array: bool
    cls: type
    intro: str
    default: tuple[Any, ...]  # an array's elements when none is given


def settings_reference() -> str:
    """docs/configuration.md."""
    tables, keys = walk()
    parts = [_preamble(), "## Example\n\n```toml\n" + EXAMPLE + "```\n"]
    for table in tables:
        parts.append(_section(table, [k for k in keys if k.table == table.path]))
    return "\n".join(parts)


def walk() -> tuple[list[Table], list[Key]]:
    """Every config table and key, from `Settings` down through the fields that are tables."""
    tables: list[Table] = []
    keys: list[Key] = []
    _walk(Table("", False, Settings, "", ()), tables, keys)
    return tables, keys


def settings_classes() -> list[type]:
    """The settings dataclasses, `Settings` first."""
    return [table.cls for table in walk()[0]]


def field_comments(cls: type) -> dict[str, str]:
    """Each field's `#:` comment (the `#:` lines right above it, joined), by field name."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    (node,) = ast.parse(source).body
    assert isinstance(node, ast.ClassDef), cls
    comments: dict[str, str] = {}
    for statement in node.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        above: list[str] = []
        row = statement.lineno - 2  # the line above, 0-based
        while row >= 0 and lines[row].strip().startswith("#:"):
            above.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        if any(above):
            comments[statement.target.id] = " ".join(line for line in above if line)
    return comments


def toml_value(value: Any) -> str:
    """A default as it would be written in the config file; "" for None (not set)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def serve_flags() -> dict[str, str]:
    """`serve`'s flags by the setting (or `load` argument) they set: `--poll-interval SECONDS`."""
    parser = argparse.ArgumentParser(add_help=False)
    cli.add_serve_arguments(parser)
    flags = {}
    for action in parser._actions:
        flag = " ".join([action.option_strings[-1], *([] if action.nargs == 0 else [_metavar(action)])])
        repeatable = isinstance(action, argparse._AppendAction)
        flags[action.dest] = f"`{flag}`" + (" (repeatable)" if repeatable else "")
    return flags


def _metavar(action: argparse.Action) -> str:
    return action.metavar if isinstance(action.metavar, str) else action.dest.upper()


def _walk(table: Table, tables: list[Table], keys: list[Key]) -> None:
    tables.append(table)
    cls, path = table.cls, table.path
    comments = field_comments(cls)
    own = file_keys(cls)
    flags = serve_flags() if cls is Settings else {}
    for f in dataclasses.fields(cls):
        sub = table_class(hints(cls)[f.name])
        if sub is not None:
            (sub_cls, array), intro = sub, comments.get(f.name, "")
            _walk(
                Table(_join(path, f.name), array, sub_cls, intro, _default(f) if array else ()), tables, keys
            )
            continue
        if f.name not in own and FILE_KEY not in f.metadata:
            continue  # code-only
        where, _, name = _join(path, f.metadata.get(FILE_KEY, f.name)).rpartition(".")
        top = cls is Settings
        keys.append(
            Key(
                table=where,
                name=name,
                owner=cls,
                field=f.name,
                type=_type(cls, f.name),
                default=toml_value(_default(f)),
                env=f"`{env_var(f.name)}`" if top and f.name in ENV_SETTINGS else "",
                flag=flags.get(f.name, "") if top else "",
                help=comments.get(f.name, ""),
            )
        )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


_TYPES: dict[Any, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    str | None: "string",
    tuple[str, ...]: "array of strings",
    Mapping[str, str]: "table of strings",
}


def _type(cls: type, name: str) -> str:
    choices = CHOICES.get(f"{cls.__name__}.{name}")
    if choices:
        return "one of " + ", ".join(f"`{toml_value(c)}`" for c in choices)
    return _TYPES[hints(cls)[name]]


def _preamble() -> str:
    flags = serve_flags()
    words = ", ".join(f"`{w}`" for w in TRUE_WORDS[:-1]) + f" or `{TRUE_WORDS[-1]}`"
    spec = inspect.getdoc(parse_target) or ""
    return f"""\
# Configuration

<!-- Generated by `{REGENERATE}`
     from the settings dataclasses: edit the `#:` comment above a field, not this file. -->

Callboard takes each setting from the first of these that gives it: a flag of `callboard serve`, the
environment, the config file, the default below. That is:

**defaults < config file < environment < flags**

- The config file is {flags["config"]}, else `{ENV_CONFIG}`. Every key is optional except `url`.
- Durations are numbers of seconds.
- A list given at one level replaces the list of the levels below; lists are never merged.
- In the environment, a boolean is true when it is {words} (any case) and false otherwise; a list is
  comma or space separated.
- Targets come from {flags["redis"]}, else `{ENV_REDIS}` (comma or space separated), else the
  config file's `[[targets]]`. Each is {spec.removesuffix(".")}; a target given this way has every
  other key at its default.
"""


def _section(table: Table, keys: list[Key]) -> str:
    header = "Top level" if not table.path else f"`[[{table.path}]]`" if table.array else f"`[{table.path}]`"
    lines = [f"## {header}", ""]
    if table.intro:
        lines += [table.intro, ""]
    if table.default:
        lines += ["Without any, Callboard uses:", "", "```toml", *_elements(table), "```", ""]
    columns = ["key", "type", "default"]
    extra = [c for c in ("env", "flag") if any(getattr(k, c) for k in keys)]
    names = {"env": "environment", "flag": "flag"}
    lines.append("| " + " | ".join([*columns, *(names[c] for c in extra), "meaning"]) + " |")
    lines.append("|" + "---|" * (len(columns) + len(extra) + 1))
    for k in keys:
        cells = [
            f"`{k.name}`",
            k.type,
            f"`{k.default}`" if k.default else "",
            *(getattr(k, c) for c in extra),
            k.help,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _elements(table: Table) -> Iterator[str]:
    for element in table.default:
        yield f"[[{table.path}]]"
        for f in dataclasses.fields(element):
            value = getattr(element, f.name)
            if table_class(hints(table.cls)[f.name]) is None and value != _default(f):
                yield f"{f.name} = {toml_value(value)}"


if __name__ == "__main__":
    sys.stdout.write(settings_reference())
