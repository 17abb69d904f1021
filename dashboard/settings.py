"""Settings: defaults < a TOML config file < the environment (`CALLBOARD_*`) < flags.

Each setting is documented once, by the `#:` comment above its field, and has its default once, in its
dataclass; docs/configuration.md is generated from both (dashboard/reference.py). A config key is read
by its field's type, so a new field is a new key, documented, with nothing else to edit.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from callboard.collectors.arq.config import SERIALIZERS, ArqConfig
from callboard.collectors.credentials import redact as redact  # pages, logs and metrics use it from here
from callboard.collectors.dramatiq.config import DramatiqConfig, ResultsConfig
from callboard.dashboard.access import AuthConfig, is_loopback, valid_hash
from callboard.dashboard.hosts import normalise_entry

DEFAULT_URL = "redis://localhost:6379/0"
#: The environment variables that name the config file and the targets.
ENV_CONFIG = "CALLBOARD_CONFIG"
ENV_REDIS = "CALLBOARD_REDIS"
#: Top-level settings the environment sets, each from `CALLBOARD_<KEY>` (`env_var`).
ENV_SETTINGS = ("host", "port", "read_only", "poll_interval", "allow_unauthenticated", "allowed_hosts")
#: A boolean in the environment is true when it is one of these (any case); anything else is false.
TRUE_WORDS = ("1", "true", "yes")
#: Fields no config key sets (tuning kept in code), as `Class.field`.
CODE_ONLY = frozenset({"ArqConfig.result_budget"})
#: String settings that take one of a few values, as `Class.field`.
CHOICES: dict[str, tuple[str, ...]] = {"ArqConfig.serializer": SERIALIZERS}
#: Field metadata for a field the config file sets outside its own class's table: the dotted path
#: from that table.
FILE_KEY = "file_key"

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is wrong; the message says which and why."""


@dataclass(frozen=True, slots=True)
class TargetSettings:
    #: Shown on pages and in the metrics' `target` label; unique. When not given: the URL's
    #: `host:port/db` (`127.0.0.1:6392/0`), or `socket-path/db` for `unix://`.
    name: str
    #: The Redis database: `redis://`, `rediss://` (TLS), `unix://` or `valkey://` (read as `redis://`).
    #: Required. Its password never appears in pages, logs or metrics.
    url: str
    #: How to read Dramatiq's keys on this target.
    dramatiq: DramatiqConfig = field(default_factory=DramatiqConfig)
    #: How to read Arq's keys on this target.
    arq: ArqConfig = field(default_factory=ArqConfig)
    #: The Redis database of the Dramatiq results, when it is not the target's `url`.
    results_url: str | None = field(default=None, metadata={FILE_KEY: "dramatiq.results.url"})

    @property
    def safe_url(self) -> str:
        return redact(self.url)


@dataclass(frozen=True, slots=True)
class Settings:
    #: The Redis databases to watch, one `[[targets]]` table each; Callboard finds both frameworks'
    #: queues in each.
    targets: tuple[TargetSettings, ...] = (TargetSettings("default", DEFAULT_URL),)
    #: Address to bind. Any but a loopback address needs `[auth]` or `allow_unauthenticated`.
    host: str = "127.0.0.1"
    #: Port to bind.
    port: int = 8000
    #: Hide every control and refuse every POST that would change a job (403).
    read_only: bool = False
    #: Seconds between collections; every viewer and scraper reads the latest one.
    poll_interval: float = 2.0
    #: Seconds of depth history kept in memory for the charts, at poll resolution.
    history_seconds: float = 1800.0
    #: Keep each queue's depth in its target's Redis (by minute for 1 h, by 5 minutes for 24 h, by
    #: hour for 7 days; about 13 kB per queue, under `callboard:depth:`), so the queue page's 1 h,
    #: 24 h and 7 d charts survive a restart of Callboard. Off: the charts show this process's memory.
    depth_history: bool = True
    #: SCAN calls per discovery step, one step per collection (1,000 keys each).
    scan_budget: int = 20
    #: Redis connect/read timeout in seconds; keep it below Prometheus' scrape timeout.
    redis_timeout: float = 2.0
    #: Who may use Callboard. With users or tokens configured, every request but `/healthz` needs HTTP
    #: basic credentials of a user or `Authorization: Bearer <token>`.
    auth: AuthConfig = field(default_factory=AuthConfig)
    #: Serve a non-loopback address without auth: an explicit choice (a private network, a proxy
    #: that authenticates); without it `serve` refuses to start.
    allow_unauthenticated: bool = False
    #: Flow series (an actor or function on a queue) exported per target in /metrics, the busiest
    #: first: Prometheus cardinality stays bounded whatever the workers name.
    flow_series_limit: int = 1000
    #: Audit entries kept per target in Redis (the dashboard's own list; oldest dropped).
    audit_keep: int = 10_000
    #: Host names (or addresses) served besides the defaults, against DNS rebinding: a request whose
    #: Host is not one of them gets 400 (all but /healthz). Always allowed: `localhost`, `*.localhost`,
    #: 127.0.0.0/8, ::1, and the bind `host` when it is a specific address (not 0.0.0.0 or ::).
    #: Entries: `ops.example.com` or `10.0.0.5` (exact, any case, no port), `*.example.com` (its
    #: subdomains), `*` (any Host: only behind a proxy that checks it).
    allowed_hosts: tuple[str, ...] = ()

    def target(self, name: str) -> TargetSettings | None:
        return next((t for t in self.targets if t.name == name), None)


def env_var(key: str) -> str:
    """The environment variable of a top-level setting in ENV_SETTINGS."""
    return f"CALLBOARD_{key.upper()}"


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    """A settings dataclass's field types, resolved."""
    return typing.get_type_hints(cls)


def table_class(hint: Any) -> tuple[type, bool] | None:
    """The dataclass a field of this type is a table of, and whether it is an array of tables;
    None for a plain key."""
    args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint, False
    if len(args) == 1 and dataclasses.is_dataclass(args[0]) and isinstance(args[0], type):
        return args[0], typing.get_origin(hint) is tuple
    return None


def file_keys(cls: type) -> dict[str, Any]:
    """The keys of `cls`'s own config table, with their types: every field but tables, code-only
    fields and those set elsewhere (FILE_KEY)."""
    return {
        f.name: hints(cls)[f.name]
        for f in dataclasses.fields(cls)
        if table_class(hints(cls)[f.name]) is None
        and f"{cls.__name__}.{f.name}" not in CODE_ONLY
        and FILE_KEY not in f.metadata
    }


def parse_target(spec: str) -> TargetSettings:
    """`NAME=URL` or `URL` (the name is then `host:port/db`, e.g. `127.0.0.1:6392/0`)."""
    name, sep, url = spec.partition("=")
    if not sep or "://" in name:
        name, url = "", spec
    if not url.startswith(("redis://", "rediss://", "unix://", "valkey://")):
        raise SettingsError(f"--redis {spec!r}: expected [NAME=]redis://host:port/db")
    url = url.replace("valkey://", "redis://", 1)
    return TargetSettings(name=name or default_name(url), url=url)


def default_name(url: str) -> str:
    """A target's name when none is given: `host:port/db` as people write it (`127.0.0.1:6392/0`,
    `[::1]:6379/0`), or the socket's path and db for `unix://`; never the password. Pages carry it
    in URLs as one path segment (dashboard/urls.py `segment` escapes the `/`)."""
    parts = urlsplit(url)
    query = dict(item.partition("=")[::2] for item in parts.query.split("&") if item)
    if parts.scheme == "unix":
        return f"{parts.path or '/'}/{query.get('db') or '0'}"
    db = parts.path.strip("/") or query.get("db") or "0"
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port or 6379}/{db}"


def load(
    redis: Sequence[str] = (),
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
    **flags: Any,
) -> Settings:
    """Merge defaults < config file < environment < flags. Flags set to None are not given."""
    env = os.environ if environ is None else environ
    settings = Settings()
    config = config or env.get(ENV_CONFIG)
    if config:
        settings = _from_file(Path(config), settings)
    settings = _apply(settings, {key: env.get(env_var(key)) for key in ENV_SETTINGS})
    specs = list(redis) or env.get(ENV_REDIS, "").replace(",", " ").split()
    if specs:
        targets = tuple(parse_target(s) for s in specs)
        settings = replace(settings, targets=targets)
    settings = _apply(settings, flags)
    names = [t.name for t in settings.targets]
    if len(set(names)) != len(names):
        raise SettingsError(f"target names must be unique: {names}")
    if not is_loopback(settings.host) and not settings.auth.enabled and not settings.allow_unauthenticated:
        raise SettingsError(
            f"refusing to serve {settings.host} without authentication: anyone who can reach it could "
            "retry, delete and purge jobs. Configure [auth] users or tokens, use --read-only with "
            "--allow-unauthenticated, or pass --allow-unauthenticated if something in front of "
            "Callboard authenticates"
        )
    return settings


def _apply(settings: Settings, values: Mapping[str, Any]) -> Settings:
    """Top-level settings from the file, the environment or flags; a value of None is not given."""
    keys = file_keys(Settings)
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key not in keys:
            raise SettingsError(f"unknown setting {key!r}")
        try:
            changes[key] = _top_level(key, keys[key], value)
        except SettingsError:
            raise
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{key}: {exc}") from None
    # Zero or less would mean nothing sensible: no polling, no discovery (SCAN never runs), an
    # audit list that is never trimmed (LTRIM 0 -1 keeps all), no history, Redis calls that fail.
    for key in POSITIVE:
        if key in changes and changes[key] <= 0:
            raise SettingsError(f"{key} must be positive; got {changes[key]}")
    return replace(settings, **changes)


#: Top-level settings that must be above zero.
POSITIVE = (
    "poll_interval",
    "scan_budget",
    "audit_keep",
    "history_seconds",
    "redis_timeout",
    "flow_series_limit",
)


def _top_level(key: str, hint: Any, value: Any) -> Any:
    """A top-level value by its field's type; from the environment it is a string (a boolean is true
    for TRUE_WORDS, a list is comma or space separated)."""
    if hint is bool:
        return value if isinstance(value, bool) else str(value).lower() in TRUE_WORDS
    if hint == tuple[str, ...]:
        items = value.replace(",", " ").split() if isinstance(value, str) else _strings(value, key)
        return tuple(normalise_entry(item) for item in items) if key == "allowed_hosts" else tuple(items)
    return hint(value)


def _from_file(path: Path, settings: Settings) -> Settings:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"config {path}: {exc}") from None
    top = {k: v for k, v in data.items() if k not in ("targets", "auth")}
    for key, value in top.items():
        if file_keys(Settings).get(key) == tuple[str, ...]:
            _strings(value, key)  # a list in the file (the comma-separated form is the environment's)
    settings = _apply(settings, top)
    if "auth" in data:
        settings = replace(settings, auth=_auth(data["auth"], path))
    targets = data.get("targets")
    if targets is None:
        return settings
    if not isinstance(targets, list) or not targets:
        raise SettingsError(f"config {path}: `targets` must be a non-empty array of tables")
    return replace(settings, targets=tuple(_target(t, path) for t in targets))


def _target(table: Any, path: Path) -> TargetSettings:
    if not isinstance(table, dict) or "url" not in table:
        raise SettingsError(f"config {path}: every [[targets]] needs a url")
    try:
        return _target_table(table)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"config {path}: target {table.get('name', table['url'])!r}: {exc}") from None


def _target_table(table: dict[str, Any]) -> TargetSettings:
    _known(table, ("name", "url", "dramatiq", "arq"), "[[targets]]")
    base = parse_target(f"{table['name']}={table['url']}" if "name" in table else str(table["url"]))
    dq = table.get("dramatiq", {})
    results = dq.get("results") if isinstance(dq, dict) else None
    results_config = None if results is None else _table(ResultsConfig, results, "dramatiq.results", ("url",))
    dramatiq = _table(DramatiqConfig, dq, "dramatiq", results=results_config)
    results_url = None
    if isinstance(results, dict) and "url" in results:
        results_url = _read(str, results["url"], "dramatiq.results.url", None)
    arq = _table(ArqConfig, table.get("arq", {}), "arq")
    return replace(base, dramatiq=dramatiq, arq=arq, results_url=results_url)


def _known(table: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    unknown = sorted(str(k) for k in table if k not in keys)
    if unknown:
        raise SettingsError(f"{what}: unknown key {unknown[0]!r}; known: {', '.join(sorted(keys))}")


def _auth(table: Any, path: Path) -> AuthConfig:
    if not isinstance(table, dict):
        raise SettingsError(f"config {path}: [auth] must be a table")
    users, tokens = table.get("users", {}), table.get("tokens", {})
    for what, entries, scheme in (("users", users, "scrypt"), ("tokens", tokens, "sha256")):
        if not isinstance(entries, dict) or not all(
            isinstance(v, str) and v.startswith(scheme + "$") and valid_hash(v) for v in entries.values()
        ):
            command = "hash-password" if scheme == "scrypt" else "new-token"
            raise SettingsError(
                f"config {path}: auth.{what} maps names to {scheme}$... hashes (`callboard {command}`); "
                "plain passwords or tokens are not accepted"
            )
    try:
        return _table(AuthConfig, table, "auth", users=dict(users), tokens=dict(tokens))
    except SettingsError as exc:
        raise SettingsError(f"config {path}: {exc}") from None


def _table(cls: type[T], table: Any, what: str, extra: tuple[str, ...] = (), **given: Any) -> T:
    """`cls` from a config table: each key read by its field's type; a key not given keeps its default.
    A key the table does not have (a typo) is an error, not a silent default; `extra` names keys read
    elsewhere."""
    if not isinstance(table, dict):
        raise SettingsError(f"{what} must be a table")
    _known(table, (*file_keys(cls), *given, *extra), what)
    values = {
        key: _read(hint, table[key], f"{what}.{key}", CHOICES.get(f"{cls.__name__}.{key}"))
        for key, hint in file_keys(cls).items()
        if key in table and key not in given
    }
    return cls(**values, **given)


def _read(hint: Any, value: Any, what: str, choices: tuple[str, ...] | None) -> Any:
    """A value of a config table by its field's type."""
    if hint is bool:
        return _flag(value, what)
    if hint == tuple[str, ...]:
        return _strings(value, what)
    if hint in (str, str | None):
        if not isinstance(value, str):
            raise SettingsError(f"{what} must be a string")
        if choices is not None and value not in choices:
            raise SettingsError(f"{what} must be one of {', '.join(choices)}")
        return value
    if hint is int or hint is float:
        if isinstance(value, bool) or not isinstance(value, int if hint is int else int | float):
            raise SettingsError(f"{what} must be {'an integer' if hint is int else 'a number'}")
        return hint(value)
    raise TypeError(f"{what}: no reader for {hint}")


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{what} must be true or false")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{what} must be a list of strings")
    return tuple(value)
