"""DNS rebinding: Callboard answers only under the hosts it serves, and trusts no Origin for equalling a
spoofed Host.

A page on `rebind.example` whose name is re-pointed at 127.0.0.1 is the same origin as the dashboard to
the browser: its requests say `Sec-Fetch-Site: same-origin` and `Origin: http://rebind.example:PORT`,
and only their `Host: rebind.example:PORT` tells them apart. These tests send exactly that to a real
`callboard serve` over a raw HTTP connection (http.client lets a test set Host), with dead letters
seeded in a real Redis, and check Redis itself for what changed.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from bench.seed import Layout, QueueSeed, seed
from callboard.dashboard.access import AccessGuard, AuthConfig
from callboard.dashboard.hosts import AllowedHosts, split_host
from callboard.dashboard.settings import SettingsError, load
from tests.monitoring.files import PROMETHEUS, load_yaml
from tests.servers import REPO, Callboard, wait_until

pytestmark = pytest.mark.integration

TARGET = "main"
KEY = "dramatiq:default"
QUEUE_API = f"/api/v1/queues/{TARGET}/dramatiq/{quote(KEY, safe='')}"
REBIND = "rebind.example"


def seed_dead(url: str, n: int) -> None:
    async def write() -> None:
        writer = AsyncRedis.from_url(url)
        try:
            await seed(writer, Layout("dramatiq", (QueueSeed("default", ready=0, dead=n),)))
        finally:
            await writer.aclose()

    asyncio.run(write())


def dead_letters(client: redis.Redis) -> tuple[set[bytes], int]:
    ids = set(cast(list[bytes], client.zrange(f"{KEY}.XQ", 0, -1)))
    return ids, int(cast(int, client.hlen(f"{KEY}.XQ.msgs")))


def send(
    board: Callboard,
    method: str,
    path: str,
    host: str | None,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """One request to `board` with exactly this Host header (http.client sends it as given)."""
    connection = http.client.HTTPConnection("127.0.0.1", board.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host)
        data = json.dumps(body).encode() if body is not None else b""
        for name, value in {**(headers or {}), "Content-Length": str(len(data))}.items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Type", "application/json")
        connection.endheaders(data)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def http10_without_host(board: Callboard, path: str) -> int:
    """An HTTP/1.0 request with no Host header at all (http.client always speaks 1.1)."""
    with socket.create_connection(("127.0.0.1", board.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def serving(url: str, *extra: str) -> Callboard:
    board = Callboard([f"{TARGET}={url}"], list(extra)).start(poll_interval=0.2)
    wait_until(
        lambda: "dead" in send(board, "GET", "/api/v1/queues", f"127.0.0.1:{board.port}")[1],
        timeout=15,
        what="the dead letters on the board",
    )
    return board


def test_a_rebound_host_reads_nothing_and_changes_nothing(redis_url: str, control: redis.Redis) -> None:
    """Every request with a foreign Host is 400, before anything else: pages, the API, and controls sent
    the way a rebinding page sends them (same-origin by Sec-Fetch-Site, Origin equal to the Host); the
    dead letters stay in Redis. /healthz still answers whatever the Host (orchestrator probes)."""
    seed_dead(redis_url, 3)
    before = dead_letters(control)
    assert before[1] == 3
    board = serving(redis_url)
    try:
        rebound = f"{REBIND}:{board.port}"
        browser = {"Sec-Fetch-Site": "same-origin", "Origin": f"http://{rebound}", "HX-Request": "true"}
        attempts = [
            send(board, "GET", "/", rebound),
            send(board, "GET", "/api/v1/queues", rebound),
            send(board, "GET", f"/queues/{TARGET}/dramatiq/{quote(KEY, safe='')}?state=dead", rebound),
            send(board, "GET", "/metrics", rebound),
            send(board, "POST", f"{QUEUE_API}/delete", rebound, browser, {"state": "dead"}),
            # Origin alone equal to the spoofed Host (a browser without Sec-Fetch-Site).
            send(
                board,
                "POST",
                f"{QUEUE_API}/delete",
                rebound,
                {"Origin": f"http://{rebound}"},
                {"state": "dead"},
            ),
            # A script-like request with the foreign Host and no browser headers.
            send(board, "POST", f"{QUEUE_API}/delete", rebound, None, {"state": "dead"}),
            # Names that merely start with or contain an allowed one.
            send(board, "GET", "/", f"127.0.0.1.{REBIND}:{board.port}"),
            send(board, "GET", "/", f"localhost.{REBIND}"),
            send(board, "GET", "/", f"127.0.0.1:{board.port}.{REBIND}"),
            send(board, "GET", "/", f"{REBIND}@127.0.0.1:{board.port}"),
        ]
        for status, text in attempts:
            assert status == 400, text
            assert "Host not allowed" in text and "--allowed-host" in text, text
        assert dead_letters(control) == before

        assert send(board, "GET", "/healthz", "10.1.2.3:8000") == (200, "ok\n")
        for host in (
            f"127.0.0.1:{board.port}",
            f"localhost:{board.port}",
            f"[::1]:{board.port}",
            "127.0.0.2",
        ):
            status, text = send(board, "GET", "/", host)
            assert status == 200, (host, text)
            assert 'data-queue="dramatiq:default"' in text
        assert send(board, "GET", "/", f"LocalHost.:{board.port}")[0] == 200
        assert send(board, "GET", "/", f"ops.localhost:{board.port}")[0] == 200
        # No Host at all: no browser sends that; a script on loopback may.
        assert http10_without_host(board, "/api/v1/queues") == 200
    finally:
        board.stop()


def test_allowed_host_admits_that_name_and_its_own_origin_only(redis_url: str, control: redis.Redis) -> None:
    """`--allowed-host ops.example.com` serves that name (any case), not its siblings or parents; a
    same-origin POST under it runs, one whose Origin names another host does not."""
    seed_dead(redis_url, 3)
    board = serving(redis_url, "--allowed-host", "ops.example.com", "--allowed-host", "*.internal.example")
    try:
        port = board.port
        assert send(board, "GET", "/", f"ops.example.com:{port}")[0] == 200
        assert send(board, "GET", "/", "OPS.Example.COM")[0] == 200
        assert send(board, "GET", "/", "board.internal.example")[0] == 200
        for host in ("example.com", "evil.ops.example.com", "internal.example", f"{REBIND}:{port}"):
            assert send(board, "GET", "/", host)[0] == 400, host
        before = dead_letters(control)
        refused = send(
            board,
            "POST",
            f"{QUEUE_API}/delete",
            f"ops.example.com:{port}",
            {"Origin": f"http://{REBIND}:{port}"},
            {"state": "dead"},
        )
        assert refused[0] == 403, refused
        assert "Cross-site request refused" in refused[1]
        assert dead_letters(control) == before
        rid = sorted(before[0])[0].decode()
        done = send(
            board,
            "POST",
            f"{QUEUE_API}/delete",
            f"ops.example.com:{port}",
            {"Origin": f"http://ops.example.com:{port}"},
            {"state": "dead", "ids": [rid]},
        )
        assert done[0] == 200, done
        assert json.loads(done[1])["done"] == 1
        assert dead_letters(control)[1] == 2
    finally:
        board.stop()


# -- the cross-site guard's Origin check, without a server -------------------------------------------


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("not called")


def cross_site(host: str, origin: str, trusted: tuple[str, ...] = (), scheme: str = "http") -> str | None:
    guard = AccessGuard(_app, AuthConfig(trusted_origins=trusted), read_only=False)
    raw = [(b"host", host.encode()), (b"origin", origin.encode())]
    scope: Scope = {"type": "http", "scheme": scheme, "headers": raw, "client": ("203.0.113.7", 5000)}
    return guard._cross_site(scope, Headers(scope=scope), authenticated=False)


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("localhost:8000", "http://LOCALHOST:8000"),
        ("[::1]:8000", "http://[::1]:8000"),
        ("127.0.0.1", "http://127.0.0.1"),
        ("127.0.0.1:80", "http://127.0.0.1"),
    ],
)
def test_cross_site_accepts_its_own_origin(host: str, origin: str) -> None:
    assert cross_site(host, origin) is None


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        # Equal to the Host, but the Host is not one Callboard serves under (rebinding).
        (f"{REBIND}:8000", f"http://{REBIND}:8000"),
        ("127.0.0.1:8000.evil.example", "http://127.0.0.1:8000.evil.example"),
        ("127.0.0.1.evil.example:8000", "http://127.0.0.1.evil.example:8000"),
        # Allowed host, but not this request's scheme, port or host; or not an origin at all.
        ("127.0.0.1:8000", "https://127.0.0.1:8000"),
        ("127.0.0.1:8000", "http://127.0.0.1:8001"),
        ("127.0.0.1:8000", "http://localhost:8000"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000.evil.example"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000/"),
        ("127.0.0.1:8000", "http://x@127.0.0.1:8000"),
        ("127.0.0.1:8000", "null"),
    ],
)
def test_cross_site_refuses_other_origins_and_ones_that_only_equal_the_host(host: str, origin: str) -> None:
    assert cross_site(host, origin) is not None


def test_trusted_origins_are_exact() -> None:
    trusted = ("https://ops.example.com",)
    assert cross_site("127.0.0.1:8000", "https://ops.example.com", trusted) is None
    for near in (
        "https://ops.example.com.evil.example",
        "https://ops.example.com:8443",
        "http://ops.example.com",
    ):
        assert cross_site("127.0.0.1:8000", near, trusted) is not None


# -- settings ---------------------------------------------------------------------------------------


def test_allowed_hosts_from_config_environment_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "callboard.toml"
    config.write_text('allowed_hosts = ["Ops.Example.com", "*.corp.example", "[fe80::1]"]\n')
    assert load(config=str(config), environ={}).allowed_hosts == (
        "ops.example.com",
        "*.corp.example",
        "fe80::1",
    )
    env = {"CALLBOARD_CONFIG": str(config), "CALLBOARD_ALLOWED_HOSTS": "a.example, b.example  *"}
    assert load(environ=env).allowed_hosts == ("a.example", "b.example", "*")
    assert load(environ=env, allowed_hosts=["c.example"]).allowed_hosts == ("c.example",)
    assert load(environ={}).allowed_hosts == ()
    for bad in ("http://ops.example.com", "ops.example.com:8000", "*.", "a/b", "*.10.0.0.1"):
        with pytest.raises(SettingsError, match="allowed_hosts"):
            load(environ={"CALLBOARD_ALLOWED_HOSTS": bad})
    config.write_text('allowed_hosts = "ops.example.com"\n')
    with pytest.raises(SettingsError, match="allowed_hosts must be a list of strings"):
        load(config=str(config), environ={})


def test_compose_serves_the_host_prometheus_scrapes() -> None:
    """In compose, Prometheus scrapes `callboard:8000`: the callboard service's environment must allow
    that Host, or every scrape is a 400 and CallboardDown fires."""
    service = load_yaml(REPO / "compose.yaml")["services"]["callboard"]
    environ = {name: str(value) for name, value in service["environment"].items()}
    command: list[str] = service["command"]
    settings = load(environ=environ, host=command[command.index("--host") + 1], allow_unauthenticated=True)
    hosts = AllowedHosts.for_server(settings.allowed_hosts, settings.host)
    (job,) = load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]
    targets = [t for config in job["static_configs"] for t in config["targets"]]
    assert targets
    for target in targets:
        parsed = split_host(target)
        assert parsed is not None and hosts.allows(parsed[0]), target
