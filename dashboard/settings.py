"""Settings: flags, then environment (`CALLBOARD_*`), then a TOML config file, then defaults.

Config file shape (every key optional):

    poll_interval = 2.0
    allowed_hosts = ["ops.example.com"]    # Host names served besides loopback (see Settings)
    [[targets]]
    name = "main"
    url = "redis://localhost:6379/0"
    [targets.dramatiq]
    namespaces = ["dramatiq"]              # discovered when not listed
    queues = ["dramatiq:default"]          # always shown, even while empty
    heartbeat_timeout = 60
    dead_message_ttl = 604800              # the broker's, in seconds (7 days): when dead letters go
    [targets.dramatiq.results]             # only when the app stores results
    namespace = "dramatiq-results"
    prefix_keys = false                    # Dramatiq 2.2 use_namespace_prefix_keys
    url = "redis://localhost:6379/1"       # when results live elsewhere
    [targets.arq]
    queues = ["arq:queue"]                 # discovered when not listed
    serializer = "auto"                    # auto (sniffed) | pickle | msgpack | json
    health_check_interval = 3600           # the workers' setting, to turn the key's TTL into an age
    allow_abort_jobs = false               # true only if every worker runs with allow_abort_jobs=True
    job_timeout = 300                      # the workers' job_timeout: older claims show as stuck

    [auth]                                 # when present, everything but /healthz needs credentials
    users = { alice = "scrypt$..." }       # `callboard hash-password`
    tokens = { prometheus = "sha256$..." } # `callboard new-token`; sent as Authorization: Bearer
    metrics_public = false
    trusted_origins = []                   # extra origins allowed to POST (behind a proxy)
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from callboard.collectors.arq.config import SERIALIZERS, ArqConfig
from callboard.collectors.credentials import redact as redact  # pages, logs and metrics use it from here
from callboard.collectors.dramatiq.config import DEAD_MESSAGE_TTL, DramatiqConfig, ResultsConfig
from callboard.dashboard.access import AuthConfig, is_loopback, valid_hash
from callboard.dashboard.hosts import normalise_entry

DEFAULT_URL = "redis://localhost:6379/0"


class SettingsError(ValueError):
    """A setting is wrong; the message says which and why."""


@dataclass(frozen=True, slots=True)
class TargetSettings:
    name: str
    url: str
    dramatiq: DramatiqConfig = field(default_factory=DramatiqConfig)
    arq: ArqConfig = field(default_factory=ArqConfig)
    #: Where Dramatiq results live, when not in the broker's database.
    results_url: str | None = None

    @property
    def safe_url(self) -> str:
        return redact(self.url)


@dataclass(frozen=True, slots=True)
class Settings:
    targets: tuple[TargetSettings, ...] = (TargetSettings("default", DEFAULT_URL),)
    host: str = "127.0.0.1"
    port: int = 8000
    read_only: bool = False
    #: Seconds between collections; every viewer and scraper reads the latest one.
    poll_interval: float = 2.0
    #: How much depth history the store keeps for charts.
    history_seconds: float = 1800.0
    #: SCAN calls per discovery step (1,000 keys each).
    scan_budget: int = 20
    #: Redis connect/read timeout; keep it below Prometheus' scrape timeout.
    redis_timeout: float = 2.0
    auth: AuthConfig = field(default_factory=AuthConfig)
    #: Serve a non-loopback address without auth: an explicit choice (a private network, a proxy
    #: that authenticates); without it `serve` refuses to start.
    allow_unauthenticated: bool = False
    #: Audit entries kept per target in Redis (the dashboard's own list; oldest dropped).
    audit_keep: int = 10_000
    #: Host names (or addresses) served besides the defaults, against DNS rebinding: a request whose
    #: Host is not one of them gets 400 (all but /healthz). Always allowed: `localhost`, `*.localhost`,
    #: 127.0.0.0/8, ::1, and the bind `host` when it is a specific address (not 0.0.0.0 or ::).
    #: Entries: `ops.example.com` or `10.0.0.5` (exact, any case, no port), `*.example.com` (its
    #: subdomains), `*` (any Host: only behind a proxy that checks it). TOML `allowed_hosts = [...]`,
    #: env `CALLBOARD_ALLOWED_HOSTS` (comma or space separated), flag `--allowed-host` (repeatable);
    #: the highest of these that is given replaces the others.
    allowed_hosts: tuple[str, ...] = ()

    def target(self, name: str) -> TargetSettings | None:
        return next((t for t in self.targets if t.name == name), None)


def parse_target(spec: str) -> TargetSettings:
    """`NAME=URL` or `URL` (the name is then host-port-db)."""
    name, sep, url = spec.partition("=")
    if not sep or "://" in name:
        name, url = "", spec
    if not url.startswith(("redis://", "rediss://", "unix://", "valkey://")):
        raise SettingsError(f"--redis {spec!r}: expected [NAME=]redis://host:port/db")
    url = url.replace("valkey://", "redis://", 1)
    if not name:
        parts = urlsplit(url)
        db = parts.path.strip("/") or "0"
        name = f"{parts.hostname or 'localhost'}-{parts.port or 6379}-{db}"
    return TargetSettings(name=name, url=url)


def load(
    redis: Sequence[str] = (),
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
    **flags: Any,
) -> Settings:
    """Merge defaults < config file < environment < flags. Flags set to None are not given."""
    env = os.environ if environ is None else environ
    settings = Settings()
    config = config or env.get("CALLBOARD_CONFIG")
    if config:
        settings = _from_file(Path(config), settings)
    env_values: dict[str, Any] = {
        "host": env.get("CALLBOARD_HOST"),
        "port": env.get("CALLBOARD_PORT"),
        "read_only": env.get("CALLBOARD_READ_ONLY"),
        "poll_interval": env.get("CALLBOARD_POLL_INTERVAL"),
        "allow_unauthenticated": env.get("CALLBOARD_ALLOW_UNAUTHENTICATED"),
        "allowed_hosts": env.get("CALLBOARD_ALLOWED_HOSTS"),
    }
    settings = _apply(settings, env_values)
    specs = list(redis) or env.get("CALLBOARD_REDIS", "").replace(",", " ").split()
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
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        try:
            if key == "port":
                changes[key] = int(value)
            elif key in ("poll_interval", "history_seconds", "redis_timeout"):
                changes[key] = float(value)
            elif key in ("scan_budget", "audit_keep"):
                changes[key] = int(value)
            elif key in ("read_only", "allow_unauthenticated"):
                changes[key] = (
                    value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
                )
            elif key == "host":
                changes[key] = str(value)
            elif key == "allowed_hosts":
                changes[key] = _allowed_hosts(value)
            else:
                raise SettingsError(f"unknown setting {key!r}")
        except ValueError as exc:
            raise SettingsError(f"{key}: {exc}") from None
    if changes.get("poll_interval", 1.0) <= 0:
        raise SettingsError("poll_interval must be positive")
    return replace(settings, **changes)


def _allowed_hosts(value: Any) -> tuple[str, ...]:
    """A list (TOML, flags) or a comma/space separated string (environment) of allowed-host entries."""
    items = value.replace(",", " ").split() if isinstance(value, str) else _strings(value, "allowed_hosts")
    try:
        return tuple(normalise_entry(item) for item in items)
    except ValueError as exc:
        raise SettingsError(f"allowed_hosts: {exc}") from None


def _from_file(path: Path, settings: Settings) -> Settings:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"config {path}: {exc}") from None
    top = {k: v for k, v in data.items() if k not in ("targets", "auth")}
    if "allowed_hosts" in top:  # a list in the file (the environment's comma-separated form is for env)
        top["allowed_hosts"] = list(_strings(top["allowed_hosts"], "allowed_hosts"))
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
        return _target_table(table, path)
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"config {path}: target {table.get('name', table['url'])!r}: {exc}") from None


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
    return AuthConfig(
        users=dict(users),
        tokens=dict(tokens),
        metrics_public=_flag(table.get("metrics_public", False), "auth.metrics_public"),
        trusted_origins=_strings(table.get("trusted_origins", []), "auth.trusted_origins"),
    )


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{what} must be true or false")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{what} must be a list of strings")
    return tuple(value)


def _target_table(table: dict[str, Any], path: Path) -> TargetSettings:
    base = parse_target(f"{table['name']}={table['url']}" if "name" in table else str(table["url"]))
    dq = table.get("dramatiq", {})
    results = dq.get("results")
    dramatiq = DramatiqConfig(
        namespaces=_strings(dq.get("namespaces", []), "dramatiq.namespaces"),
        queues=_strings(dq.get("queues", []), "dramatiq.queues"),
        heartbeat_timeout=float(dq.get("heartbeat_timeout", 60.0)),
        idle_ttl=float(dq.get("idle_ttl", 3600.0)),
        dead_message_ttl=float(dq.get("dead_message_ttl", DEAD_MESSAGE_TTL)),
        results=ResultsConfig(
            namespace=str(results.get("namespace", "dramatiq-results")),
            prefix_keys=bool(results.get("prefix_keys", False)),
        )
        if isinstance(results, dict)
        else None,
    )
    results_url = results.get("url") if isinstance(results, dict) else None
    aq = table.get("arq", {})
    serializer = str(aq.get("serializer", "auto"))
    if serializer not in SERIALIZERS:
        raise SettingsError(f"config {path}: arq serializer must be one of {', '.join(SERIALIZERS)}")
    arq = ArqConfig(
        queues=_strings(aq.get("queues", []), "arq.queues"),
        serializer=serializer,
        health_check_interval=float(aq.get("health_check_interval", 3600.0)),
        allow_abort_jobs=_flag(aq.get("allow_abort_jobs", False), "arq.allow_abort_jobs"),
        job_timeout=float(aq.get("job_timeout", 300.0)),
    )
    return replace(base, dramatiq=dramatiq, arq=arq, results_url=results_url)
