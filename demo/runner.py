"""`callboard demo`: embedded Valkey, real workers, a traffic generator, and the dashboard on top.

Order matters both ways. Starting: Valkey first (and answering PING), then each process of
`process_specs()` in turn, waiting for the ones with a readiness check, then the dashboard, in this
process. Stopping (Ctrl-C, SIGTERM, or any error): the processes first, while Valkey is still up
for them to put their prefetched messages back, then Valkey. Everything started is stopped, in a
`finally`, with SIGTERM and then SIGKILL after a timeout.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import redis
from redis.exceptions import RedisError

import callboard
from callboard.collectors.arq.config import ArqConfig
from callboard.collectors.arq.keys import health_key
from callboard.collectors.dramatiq.config import DramatiqConfig, ResultsConfig
from callboard.collectors.dramatiq.keys import heartbeats_key
from callboard.dashboard.settings import Settings, TargetSettings
from callboard.demo import valkey
from callboard.demo.config import (
    ARQ_HEALTH_CHECK_INTERVAL,
    ARQ_QUEUE,
    ARQ_QUEUES,
    ARQ_REPORTS_QUEUE,
    DRAMATIQ_NAMESPACE,
    DRAMATIQ_QUEUES,
    REDIS_URL_ENV,
    RESULTS_NAMESPACE,
)
from callboard.demo.processes import Child, ProcessSpec, stop_all, wait_until

log = logging.getLogger("callboard.demo")

#: The directory holding the `callboard` package: children run from it, so `callboard.demo.*` imports
#: resolve to this code even from a source checkout that is not installed.
ROOT = callboard.ROOT.parent
#: How often a crashed child is noticed (and logged) while the dashboard runs.
WATCH_INTERVAL = 2.0


class StartupError(RuntimeError):
    pass


def dramatiq_worker_ready(url: str) -> bool:
    # Valkey starts empty and the traffic generator (a producer, which also writes heartbeats) starts
    # after this returns, so the first heartbeat is the worker's consumers fetching.
    try:
        with redis.Redis.from_url(url, socket_timeout=1.0) as client:
            return bool(client.exists(heartbeats_key(DRAMATIQ_NAMESPACE)))
    except RedisError:
        return False


def arq_worker_ready(queue: str) -> Callable[[str], bool]:
    """Ready once the worker of `queue` wrote its health check (Arq writes one as it starts)."""

    def ready(url: str) -> bool:
        try:
            with redis.Redis.from_url(url, socket_timeout=1.0) as client:
                return bool(client.exists(health_key(queue)))
        except RedisError:
            return False

    return ready


def process_specs() -> tuple[ProcessSpec, ...]:
    """Everything the demo runs next to Valkey, started in this order (one line per process)."""
    py = sys.executable
    dramatiq_worker = (
        py,
        "-m",
        "dramatiq",
        "callboard.demo.dramatiq_app",
        "--processes",
        "1",
        "--threads",
        "4",
    )
    arq_worker = (py, "-m", "arq", "callboard.demo.arq_app.WorkerSettings")
    arq_reports = (py, "-m", "arq", "callboard.demo.arq_app.ReportsWorkerSettings")
    return (
        ProcessSpec("dramatiq-worker", dramatiq_worker, ready=dramatiq_worker_ready),
        ProcessSpec("traffic", (py, "-m", "callboard.demo.traffic"), stop_timeout=5.0),
        ProcessSpec("arq-worker", arq_worker, ready=arq_worker_ready(ARQ_QUEUE)),
        ProcessSpec("arq-reports-worker", arq_reports, ready=arq_worker_ready(ARQ_REPORTS_QUEUE)),
        ProcessSpec("arq-traffic", (py, "-m", "callboard.demo.arq_traffic"), stop_timeout=5.0),
    )


def demo_settings(url: str, host: str, port: int) -> Settings:
    dramatiq = DramatiqConfig(
        # Listed so every demo queue shows from the first poll, before traffic creates its keys.
        queues=tuple(f"{DRAMATIQ_NAMESPACE}:{queue}" for queue in DRAMATIQ_QUEUES),
        results=ResultsConfig(namespace=RESULTS_NAMESPACE),
    )
    arq = ArqConfig(queues=ARQ_QUEUES, health_check_interval=ARQ_HEALTH_CHECK_INTERVAL)
    target = TargetSettings("demo", url, dramatiq=dramatiq, arq=arq)
    return Settings(targets=(target,), host=host, port=port, poll_interval=1.0)


def preflight(host: str, port: int) -> str | None:
    """Why the demo cannot start, checked before anything is started; None if it can."""
    for module in ("dramatiq", "arq", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: pip install 'callboard[demo]'"
    try:
        valkey.binary()
    except valkey.ValkeyUnavailable as exc:
        return str(exc)
    return port_problem(host, port)


def port_problem(host: str, port: int) -> str | None:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return f"cannot resolve --host {host!r}: {exc.strerror}"
    with socket.socket(family, kind, proto) as sock:
        # The same option uvicorn binds with, so a port in TIME_WAIT is not reported as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use; choose another with --port"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def child_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env[REDIS_URL_ENV] = url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # so the log files are current while the demo runs
    return env


def start(spec: ProcessSpec, env: dict[str, str], log_dir: Path, url: str, started: list[Child]) -> None:
    """Start `spec` (recorded in `started` at once, so it is stopped even if the wait fails)."""
    child = Child.start(spec, env, ROOT, log_dir)
    started.append(child)
    log.info("started %s (pid %d), log %s", spec.name, child.process.pid, child.log_path)
    ready = spec.ready
    if ready is None:
        return
    if not wait_until(lambda: not child.running() or ready(url), timeout=spec.ready_timeout):
        raise StartupError(
            f"{spec.name} was not ready after {spec.ready_timeout:.0f} s; see {child.log_path}"
        )
    if not child.running():
        raise StartupError(
            f"{spec.name} exited with code {child.process.returncode}; last lines of {child.log_path}:\n"
            + child.log_tail()
        )


def watch(children: list[Child], stopping: threading.Event) -> None:
    """Log a child that dies while the dashboard runs (its numbers would silently freeze otherwise)."""
    reported: set[str] = set()
    while not stopping.wait(WATCH_INTERVAL):
        for child in children:
            if child.name not in reported and not child.running():
                reported.add(child.name)
                log.warning(
                    "%s exited with code %s; see %s", child.name, child.process.returncode, child.log_path
                )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C, so the `finally` below stops everything.
    raise KeyboardInterrupt


def run_demo(host: str = "127.0.0.1", port: int = 8000) -> int:
    problem = preflight(host, port)
    if problem:
        print(f"callboard demo: {problem}", file=sys.stderr)
        return 1
    from callboard.dashboard.server import serve

    log_dir = Path(tempfile.mkdtemp(prefix="callboard-demo-"))
    server: list[Child] = []
    children: list[Child] = []
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        valkey_port = valkey.free_port(exclude={port})
        url = f"redis://127.0.0.1:{valkey_port}/0"
        start(valkey.spec(valkey_port, log_dir), dict(os.environ), log_dir, url, server)
        env = child_env(url)
        for spec in process_specs():
            start(spec, env, log_dir, url, children)
        threading.Thread(target=watch, args=(children, stopping), name="demo-watch", daemon=True).start()
        print(f"Callboard demo: Valkey at {url}, logs in {log_dir}", flush=True)
        print(f"Callboard demo: open http://{host}:{port}/  (Ctrl-C stops everything)", flush=True)
        return serve(demo_settings(url, host, port))
    except KeyboardInterrupt:
        return 0
    except StartupError as exc:
        print(f"callboard demo: {exc}", file=sys.stderr)
        return 1
    finally:
        stopping.set()
        _shutdown(children, server)
        signal.signal(signal.SIGTERM, previous)
        print(f"Callboard demo stopped; logs kept in {log_dir}", flush=True)


def _shutdown(children: list[Child], server: list[Child]) -> None:
    # A second Ctrl-C must not cut the cleanup short and orphan a worker; every wait below is bounded.
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if children:
            log.info("stopping %s ...", ", ".join(child.name for child in children))
        stop_all(children)
        stop_all(server)  # last: the workers need it to put their prefetched messages back
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
