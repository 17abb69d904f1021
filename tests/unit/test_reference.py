"""docs/configuration.md is generated from the settings code and committed; every setting has its `#:`
help; the config examples in README.md and docs/configuration.md load, with documented keys only."""

from __future__ import annotations

import dataclasses
import functools
import re
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callboard.collectors.arq.config import ArqConfig
from callboard.collectors.dramatiq.config import DramatiqConfig, ResultsConfig
from callboard.dashboard import reference
from callboard.dashboard.access import AuthConfig, hash_password, hash_token
from callboard.dashboard.settings import CHOICES, CODE_ONLY, Settings, TargetSettings, load

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "configuration.md"


def test_committed_reference_is_generated_from_the_code() -> None:
    committed = DOCS.read_text() if DOCS.exists() else ""
    assert committed == reference.settings_reference(), (
        f"docs/configuration.md is stale; regenerate it: PYTHONPATH=. {reference.REGENERATE}"
    )


def test_every_settings_class_is_in_the_reference() -> None:
    classes = reference.settings_classes()
    assert classes[0] is Settings
    assert {TargetSettings, AuthConfig, DramatiqConfig, ResultsConfig, ArqConfig} <= set(classes)


@pytest.mark.parametrize("cls", reference.settings_classes(), ids=lambda cls: cls.__name__)
def test_every_field_has_a_help_comment(cls: type) -> None:
    comments = reference.field_comments(cls)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in comments]
    assert missing == [], f"add a `#:` comment right above each field of {cls.__qualname__}: {missing}"


def test_code_only_fields_and_choices_name_real_fields() -> None:
    names = {
        f"{cls.__name__}.{f.name}" for cls in reference.settings_classes() for f in dataclasses.fields(cls)
    }
    assert names >= CODE_ONLY
    assert names >= set(CHOICES)


def test_field_comments_are_the_lines_right_above_each_field() -> None:
    @dataclasses.dataclass
    class Sample:
        #: One line.
        a: int = 1
        #: Two
        #: lines.
        b: int = 2
        # A plain comment is not help.
        c: int = 3

        d: int = 4  #: Not above the field.

    assert reference.field_comments(Sample) == {"a": "One line.", "b": "Two lines."}


@pytest.mark.parametrize(
    ("value", "toml"),
    [
        (3600.0, "3600"),
        (0.5, "0.5"),
        (10_000, "10000"),
        (False, "false"),
        ((), "[]"),
        (("a", "b"), '["a", "b"]'),
    ],
)
def test_defaults_are_rendered_as_toml(value: Any, toml: str) -> None:
    assert reference.toml_value(value) == toml


def test_every_documented_key_at_its_documented_default_loads_the_defaults(tmp_path: Path) -> None:
    """The keys, their tables and their rendered defaults are what `load` reads, and mean the defaults."""
    tables, keys = reference.walk()
    default_target = Settings().targets[0]
    lines = []
    for table in tables:
        if table.path:
            lines.append(f"[[{table.path}]]" if table.array else f"[{table.path}]")
        for key in keys:
            if key.table == table.path:
                value = key.default or (reference.toml_value(getattr(default_target, key.field)))
                if value:
                    lines.append(f"{key.name} = {value}")
    settings = load(config=_write(tmp_path, "\n".join(lines)), environ={})
    # Naming the results table turns on results, with its defaults.
    dramatiq = dataclasses.replace(DramatiqConfig(), results=ResultsConfig())
    assert settings == dataclasses.replace(
        Settings(), targets=(dataclasses.replace(default_target, dramatiq=dramatiq),)
    )


@pytest.mark.parametrize("document", ["README.md", "docs/configuration.md"])
def test_config_examples_load_with_documented_keys_only(tmp_path: Path, document: str) -> None:
    examples = _toml_blocks((REPO / document).read_text())
    assert examples, f"no ```toml example in {document}"
    tables, keys = reference.walk()
    documented = {f"{k.table}.{k.name}".removeprefix(".") for k in keys}
    table_paths = {t.path for t in tables}
    for example in examples:
        text = _real_hashes(example)
        load(config=_write(tmp_path, text), environ={})
        undocumented = set(_key_paths(tomllib.loads(text), "", table_paths)) - documented
        assert undocumented == set(), f"{document}: keys not in the reference: {undocumented}\n{example}"


def _toml_blocks(markdown: str) -> list[str]:
    fences = re.finditer(r"^( *)```toml\n(.*?)^\1```", markdown, re.DOTALL | re.MULTILINE)
    return [textwrap.dedent(match.group(2)) for match in fences]


def _key_paths(data: dict[str, Any], prefix: str, tables: set[str]) -> Iterator[str]:
    for name, value in data.items():
        path = prefix + name
        if path in tables:
            for table in value if isinstance(value, list) else [value]:
                yield from _key_paths(table, path + ".", tables)
        else:
            yield path


@functools.cache
def _hashes() -> tuple[str, str]:
    return hash_password("example password", b"fixed salt"), hash_token("example token")


def _real_hashes(example: str) -> str:
    """Examples elide hashes (`"scrypt$..."`); load needs whole ones."""
    password, token = _hashes()
    example = re.sub(r'"scrypt\$[^"]*\.\.\."', f'"{password}"', example)
    return re.sub(r'"sha256\$[^"]*\.\.\."', f'"{token}"', example)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "callboard.toml"
    path.write_text(text)
    return str(path)
