"""Child processes of `callboard demo`: each in its own process group, output to a log file.

Own process groups keep the terminal's Ctrl-C away from the children, so the runner decides the
order they stop in (workers before the Redis they need for a clean shutdown). Stopping sends SIGTERM
to the group leader only: `dramatiq` forwards it to its worker processes itself, and a worker process
that gets a second SIGTERM exits at once without putting its prefetched messages back. Whatever is
still in the group after the timeout gets SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true (True) or `timeout` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    name: str
    args: tuple[str, ...]
    #: Seconds from SIGTERM to SIGKILL. Dramatiq lets running actors finish, so it needs the longest.
    stop_timeout: float = 10.0
    #: Started processes are waited for until this is true (given the Redis URL), before the next starts.
    ready: Callable[[str], bool] | None = None
    ready_timeout: float = 30.0


class Child:
    """One started ProcessSpec."""

    def __init__(self, spec: ProcessSpec, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.spec = spec
        self.process = process
        self.log_path = log_path
        self._terminated_at: float | None = None

    @classmethod
    def start(cls, spec: ProcessSpec, env: Mapping[str, str], cwd: Path, log_dir: Path) -> Child:
        log_path = log_dir / f"{spec.name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                spec.args,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(spec, process, log_path)

    @property
    def name(self) -> str:
        return self.spec.name

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self) -> None:
        if self._terminated_at is None:
            self._terminated_at = time.monotonic()
            if self.running():
                self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        """After terminate(): wait for the leader up to the stop timeout, then SIGKILL what is left."""
        self.terminate()
        assert self._terminated_at is not None
        left = self._terminated_at + self.spec.stop_timeout - time.monotonic()
        try:
            self.process.wait(timeout=max(left, 0.0))
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.process.wait()
            return
        # The leader is gone; its children (Dramatiq's worker processes) normally went before it.
        if not wait_until(lambda: not self._group_alive(), timeout=max(left, 1.0)):
            self._kill_group()

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a member we cannot signal still means the group exists
            return True
        return True

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def stop_all(children: Sequence[Child]) -> None:
    """SIGTERM every child at once (newest first), then wait for each: the timeouts run in parallel."""
    for child in reversed(children):
        child.terminate()
    for child in reversed(children):
        child.wait_stopped()
