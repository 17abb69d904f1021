"""Settings: flags > environment (CALLBOARD_*) > TOML config > defaults, target specs, redaction, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from callboard.collectors.dramatiq.config import DramatiqConfig, ResultsConfig
from callboard.dashboard import cli
from callboard.dashboard.access import hash_password, hash_token, verify_password
from callboard.dashboard.settings import (
    DEFAULT_URL,
    Settings,
    SettingsError,
    TargetSettings,
    load,
    parse_target,
    redact,
)


def write_config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "callboard.toml"
    path.write_text(body)
    return str(path)


FULL_CONFIG = """
poll_interval = 5.0
host = "0.0.0.0"
allow_unauthenticated = true
port = 9000
read_only = true
history_seconds = 600
scan_budget = 7
redis_timeout = 1.5

[[targets]]
name = "fromfile"
url = "redis://file-host:6390/3"
[targets.dramatiq]
namespaces = ["dramatiq", "billing"]
queues = ["dramatiq:default", "billing:invoices"]
heartbeat_timeout = 15
idle_ttl = 120
[targets.dramatiq.results]
namespace = "my-results"
prefix_keys = true
url = "redis://results-host:6391/4"

[[targets]]
url = "redis://second-host:6392/5"
"""


# -- defaults and precedence -----------------------------------------------------------------------


def test_defaults_watch_localhost_and_bind_loopback() -> None:
    settings = load(environ={})
    assert settings == Settings()
    assert [t.url for t in settings.targets] == [DEFAULT_URL]
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.read_only is False


def test_config_file_sets_everything(tmp_path: Path) -> None:
    settings = load(config=write_config(tmp_path, FULL_CONFIG), environ={})
    assert (settings.poll_interval, settings.host, settings.port, settings.read_only) == (
        5.0,
        "0.0.0.0",
        9000,
        True,
    )
    assert (settings.history_seconds, settings.scan_budget, settings.redis_timeout) == (600.0, 7, 1.5)
    first, second = settings.targets
    assert first == TargetSettings(
        name="fromfile",
        url="redis://file-host:6390/3",
        dramatiq=DramatiqConfig(
            namespaces=("dramatiq", "billing"),
            queues=("dramatiq:default", "billing:invoices"),
            heartbeat_timeout=15.0,
            idle_ttl=120.0,
            results=ResultsConfig(namespace="my-results", prefix_keys=True),
        ),
        results_url="redis://results-host:6391/4",
    )
    # A target without a name is named host:port/db; without a dramatiq table it discovers.
    assert second.name == "second-host:6392/5"
    assert second.dramatiq == DramatiqConfig()
    assert second.results_url is None


def test_flags_beat_environment_beat_config_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, FULL_CONFIG)
    env = {
        "CALLBOARD_PORT": "9100",
        "CALLBOARD_POLL_INTERVAL": "3",
        "CALLBOARD_READ_ONLY": "false",
        "CALLBOARD_REDIS": "envA=redis://a:1/0, envB=redis://b:2/1",
    }
    settings = load(
        redis=["flag=redis://c:3/2"], config=config, environ=env, poll_interval=1.0, host=None, port=None
    )
    assert settings.poll_interval == 1.0  # flag over env and file
    assert settings.port == 9100  # env over file (flag not given)
    assert settings.read_only is False  # env over file
    assert settings.host == "0.0.0.0"  # only the file sets it
    assert settings.scan_budget == 7  # only the file sets it
    assert [(t.name, t.url) for t in settings.targets] == [("flag", "redis://c:3/2")]

    from_env = load(config=config, environ=env)
    assert [(t.name, t.url) for t in from_env.targets] == [
        ("envA", "redis://a:1/0"),
        ("envB", "redis://b:2/1"),
    ]
    assert from_env.poll_interval == 3.0

    from_file = load(config=config, environ={})
    assert [t.name for t in from_file.targets] == ["fromfile", "second-host:6392/5"]
    assert from_file.read_only is True


def test_read_only_flag_and_env_spellings() -> None:
    assert load(environ={}, read_only=True).read_only is True
    assert load(environ={"CALLBOARD_READ_ONLY": "1"}).read_only is True
    assert load(environ={"CALLBOARD_READ_ONLY": "YES"}).read_only is True
    assert load(environ={"CALLBOARD_READ_ONLY": "no"}).read_only is False
    # A flag that was not given (None) leaves the environment's value alone.
    assert load(environ={"CALLBOARD_READ_ONLY": "true"}, read_only=None).read_only is True


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'port = 9555\n[[targets]]\nname = "x"\nurl = "redis://h:1/0"\n')
    settings = load(environ={"CALLBOARD_CONFIG": config})
    assert settings.port == 9555
    assert [t.name for t in settings.targets] == ["x"]


def test_explicit_config_beats_config_from_environment(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env_config = write_config(tmp_path / "a", "port = 9555\n")
    flag_config = write_config(tmp_path / "b", "port = 9666\n")
    assert load(config=flag_config, environ={"CALLBOARD_CONFIG": env_config}).port == 9666


def test_config_without_targets_keeps_the_default_target(tmp_path: Path) -> None:
    settings = load(config=write_config(tmp_path, "poll_interval = 0.5\n"), environ={})
    assert settings.poll_interval == 0.5
    assert [t.url for t in settings.targets] == [DEFAULT_URL]


# -- target specs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "name", "url"),
    [
        ("main=redis://h:6380/2", "main", "redis://h:6380/2"),
        ("redis://h:6380/3", "h:6380/3", "redis://h:6380/3"),
        ("redis://h", "h:6379/0", "redis://h"),
        ("redis://h:6381", "h:6381/0", "redis://h:6381"),
        ("rediss://tls-host:6390/1", "tls-host:6390/1", "rediss://tls-host:6390/1"),
        ("redis://127.0.0.1:6392/0", "127.0.0.1:6392/0", "redis://127.0.0.1:6392/0"),
        ("redis://[::1]:6380/2", "[::1]:6380/2", "redis://[::1]:6380/2"),
        ("redis://h:1?db=4", "h:1/4", "redis://h:1?db=4"),
        ("unix:///run/redis.sock?db=3", "/run/redis.sock/3", "unix:///run/redis.sock?db=3"),
        ("unix:///run/redis.sock", "/run/redis.sock/0", "unix:///run/redis.sock"),
        ("vk=valkey://h:7000/0", "vk", "redis://h:7000/0"),
        # '=' inside the URL (query, password) must not be read as NAME=.
        ("redis://h:1/0?socket_keepalive=true", "h:1/0", "redis://h:1/0?socket_keepalive=true"),
        ("main=redis://:p=w@h:1/0", "main", "redis://:p=w@h:1/0"),
    ],
)
def test_parse_target(spec: str, name: str, url: str) -> None:
    target = parse_target(spec)
    assert (target.name, target.url) == (name, url)


def test_generated_name_never_contains_the_password() -> None:
    target = parse_target("redis://user:hunter2@cache.internal:6390/4")
    assert target.name == "cache.internal:6390/4"
    assert "hunter2" not in target.safe_url


@pytest.mark.parametrize(
    "spec", ["", "localhost:6379", "main=http://h:1/0", "main=", "=redis", "main=h:6379/0", "memcached://h"]
)
def test_parse_target_rejects_non_redis_specs(spec: str) -> None:
    with pytest.raises(SettingsError, match="expected"):
        parse_target(spec)


# -- redaction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("redis://user:secret@host:6380/0", "redis://user:***@host:6380/0"),
        ("redis://:secret@host/0", "redis://:***@host/0"),
        ("rediss://u:p%40ss%3Aword@host:6390/1", "rediss://u:***@host:6390/1"),
        ("redis://host:6380/0", "redis://host:6380/0"),
        ("redis://user@host:6380/0", "redis://user@host:6380/0"),
    ],
)
def test_redact_removes_passwords(url: str, safe: str) -> None:
    assert redact(url) == safe
    assert TargetSettings("t", url).safe_url == safe


def test_redact_removes_password_given_as_query_parameter() -> None:
    # redis-py reads `?password=` from the query string (redis.connection.parse_url), so it is as secret
    # as the userinfo password and must not reach pages, logs or /api/v1/queues.
    from redis.connection import parse_url

    url = "redis://host:6380/0?password=s3cret-query"
    assert parse_url(url)["password"] == "s3cret-query"  # type: ignore[no-untyped-call]
    assert "s3cret-query" not in redact(url)


def test_redact_keeps_ipv6_hosts_valid() -> None:
    safe = redact("redis://:secret@[::1]:6380/0")
    assert "secret" not in safe
    assert safe == "redis://:***@[::1]:6380/0"


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CALLBOARD_PORT": "eighty"}, "port"),
        ({"CALLBOARD_POLL_INTERVAL": "soon"}, "poll_interval"),
        ({"CALLBOARD_POLL_INTERVAL": "0"}, "poll_interval must be positive"),
        ({"CALLBOARD_POLL_INTERVAL": "-2"}, "poll_interval must be positive"),
        ({"CALLBOARD_REDIS": "http://h:1/0"}, "expected"),
        ({"CALLBOARD_REDIS": "a=redis://h:1/0 a=redis://h:2/0"}, "unique"),
    ],
)
def test_bad_environment_is_a_settings_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(environ=env)


def test_bad_flags_are_settings_errors() -> None:
    with pytest.raises(SettingsError, match="poll_interval must be positive"):
        load(environ={}, poll_interval=0)
    with pytest.raises(SettingsError, match="unique"):
        load(redis=["x=redis://a:1/0", "x=redis://b:1/0"], environ={})
    with pytest.raises(SettingsError, match="unique"):
        # Two unnamed specs for the same host:port/db get the same generated name.
        load(redis=["redis://a:1/0", "redis://:pw@a:1/0"], environ={})


TARGET = "[[targets]]\nurl = 'redis://h:1/0'\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("port = [", "config"),  # not TOML
        ("colour = 'blue'\n", "unknown setting 'colour'"),
        ("port = 'eighty'\n", "port"),
        ("poll_interval = 0\n", "poll_interval must be positive"),
        ("scan_budget = 0\n", "scan_budget must be positive"),
        ("audit_keep = -1\n", "audit_keep must be positive"),
        ("history_seconds = 0\n", "history_seconds must be positive"),
        ("redis_timeout = 0\n", "redis_timeout must be positive"),
        ("targets = []\n", "non-empty array"),
        ("targets = 'redis://h:1/0'\n", "non-empty array"),
        ("[[targets]]\nname = 'x'\n", "needs a url"),
        ("[[targets]]\nurl = 'http://h:1/0'\n", "expected"),
        ("[[targets]]\nurl = 'redis://h:1/0'\n[[targets]]\nurl = 'redis://h:1/0'\n", "unique"),
        # A typo in a table is an error that names the key, not a silent default.
        ("[[targets]]\nurl = 'redis://h:1/0'\nnmae = 'x'\n", "unknown key 'nmae'"),
        (TARGET + "[targets.dramatiq]\nheartbeat_timout = 5\n", "unknown key 'heartbeat_timout'"),
        (TARGET + "[targets.arq]\nserialiser = 'json'\n", "unknown key 'serialiser'"),
        (TARGET + "[targets.dramatiq.results]\nnamespce = 'r'\n", "unknown key 'namespce'"),
        ("[auth]\nmetrics_publik = true\n", "unknown key 'metrics_publik'"),
    ],
)
def test_bad_config_file_is_a_settings_error(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(config=write_config(tmp_path, body), environ={})


def test_missing_config_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config"):
        load(config=str(tmp_path / "nope.toml"), environ={})


@pytest.mark.parametrize(
    "dramatiq_table",
    [
        "heartbeat_timeout = 'soon'",
        "idle_ttl = 'forever'",
        # A string where a list belongs must not be split into one-letter namespaces and queues.
        "namespaces = 'dramatiq'",
        "queues = 'dramatiq:default'",
    ],
)
def test_bad_target_table_is_a_settings_error(tmp_path: Path, dramatiq_table: str) -> None:
    body = f"[[targets]]\nurl = 'redis://h:1/0'\n[targets.dramatiq]\n{dramatiq_table}\n"
    with pytest.raises(SettingsError):
        load(config=write_config(tmp_path, body), environ={})


def test_cli_reports_settings_errors_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--redis", "main=http://nope:1/0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("callboard: ")
    assert "Traceback" not in err


def test_a_public_bind_without_auth_refuses_to_start_unless_told(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="refusing to serve 0.0.0.0 without authentication"):
        load(host="0.0.0.0", environ={})
    assert load(host="0.0.0.0", allow_unauthenticated=True, environ={}).host == "0.0.0.0"
    assert load(environ={"CALLBOARD_HOST": "::", "CALLBOARD_ALLOW_UNAUTHENTICATED": "1"}).host == "::"
    for loopback in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert load(host=loopback, environ={}).host == loopback
    # With auth configured, a public bind is fine.
    hashed = hash_password("correct horse", b"salt")
    body = f"""host = "0.0.0.0"\n[auth]\nusers = {{ alice = "{hashed}" }}\n"""
    settings = load(config=write_config(tmp_path, body), environ={})
    assert settings.auth.enabled and list(settings.auth.users) == ["alice"]


def test_auth_table_takes_hashes_only(tmp_path: Path) -> None:
    token_hash = hash_token("t0k3n")
    body = f"""
[auth]
tokens = {{ prometheus = "{token_hash}" }}
metrics_public = true
trusted_origins = ["https://ops.example.com"]
"""
    auth = load(config=write_config(tmp_path, body), environ={}).auth
    assert auth.tokens == {"prometheus": token_hash} and auth.metrics_public
    assert auth.trusted_origins == ("https://ops.example.com",)
    for bad in ('users = { alice = "hunter2" }', 'tokens = { t = "plaintext" }', 'users = ["alice"]'):
        with pytest.raises(SettingsError, match="hashes"):
            load(config=write_config(tmp_path, f"[auth]\n{bad}\n"), environ={})


def test_password_hashes_verify_and_reject() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("scrypt$") and "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsE", encoded)
    assert not verify_password("correct horse", "scrypt$garbage")
    assert not verify_password("x", hash_token("x"))
    # Two hashes of one password differ (random salt).
    assert hash_password("correct horse") != encoded
