"""The hostile layer's shared parts: the Hypothesis profile, a Callboard under a memory cap, plain HTTP.

Every server here is ours: a Redis started on a free loopback port and loaded with tests/hostile/
corpus.py, and `python -m callboard serve` on it. The dashboard runs under an address-space cap so that
a decode bomb that escapes its budget fails that process (MemoryError) instead of the machine.

Browser fixtures (a real headless Chromium, Debian's /usr/bin/chromium) come from tests/browser.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings

from tests.browser.conftest import browser, page, playwright_driver  # noqa: F401  (fixtures)
from tests.conftest import PREFERRED, SERVERS
from tests.hostile.corpus import Manifest
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

# CI: the same examples every run (a failure reproduces); locally: new examples, failures remembered
# in .hypothesis/. Bounded so the whole layer stays well under a minute of property tests.
settings.register_profile(
    "hostile",
    max_examples=60,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("hostile")

#: The dashboard's address-space cap: ample for the corpus, far below what a bomb asks for.
BOARD_MEMORY = 2 * 1024**3
_BOOT = (
    "import resource, runpy, sys; cap = int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_AS, (cap, cap)); "
    "runpy.run_module('callboard', run_name='__main__', alter_sys=True)"
)


def new_redis() -> RedisServer:
    return RedisServer(SERVERS[PREFERRED], kind=PREFERRED).start()


@dataclass
class CappedBoard(Callboard):
    """`python -m callboard serve`, as tests.servers.Callboard runs it, under an address-space cap."""

    memory: int = BOARD_MEMORY

    def start(self, poll_interval: float = 0.25) -> CappedBoard:
        args = [sys.executable, "-c", _BOOT, str(self.memory), "serve", "--port", str(self.port)]
        args += ["--poll-interval", str(poll_interval)]
        for spec in self.redis:
            args += ["--redis", spec]
        # Few malloc arenas: each reserves 64 MB of address space, which the cap counts.
        env = child_env(MALLOC_ARENA_MAX="2")
        self.proc = Process(args + self.extra, env, "hostile-serve").start()
        wait_until(lambda: fetch(self.url, "/healthz").status == 200, timeout=20, what="callboard /healthz")
        return self

    def stop(self) -> None:
        # A process stuck in one long C call (a bomb) runs no signal handler: do not wait long for it.
        if self.proc:
            self.proc.stop(timeout=3)


def start_board(redis: RedisServer, target: str = "main", poll_interval: float = 0.25) -> CappedBoard:
    return CappedBoard([f"{target}={redis.url}"]).start(poll_interval=poll_interval)


@dataclass(frozen=True, slots=True)
class Fetched:
    path: str
    status: int
    content_type: str
    body: bytes
    seconds: float
    #: Set when no answer came (timeout, reset, a URL that cannot be sent).
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def html(self) -> bool:
        return self.content_type.startswith("text/html")


def fetch(base: str, path: str, timeout: float = 15.0, method: str = "GET") -> Fetched:
    """One request, the path sent exactly as given (http.client does not re-encode it)."""
    host, _, port = base.removeprefix("http://").partition(":")
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Fetched(
            path,
            response.status,
            headers.get("content-type", ""),
            body,
            time.monotonic() - started,
            headers=headers,
        )
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Fetched(path, 0, "", b"", time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def api_json(base: str, path: str) -> Any:
    got = fetch(base, path, timeout=5)
    if got.status != 200:
        raise AssertionError(f"{path} answered {got.status or got.error}: {got.text[:300]}")
    return json.loads(got.body)


def wait_for_corpus(
    base: str, manifest: Manifest, timeout: float = 30.0, give_up: Callable[[], bool] = lambda: False
) -> str | None:
    """None once /api/v1/queues lists every corpus queue, else what it said instead (after `timeout`,
    or as soon as `give_up()`)."""
    wanted = {(q.framework, q.key) for q in manifest.queues}
    started = time.monotonic()
    last = ["not asked yet"]

    def listed_all() -> bool:
        if give_up():
            return True
        try:
            listed = {(q["framework"], q["key"]) for q in api_json(base, "/api/v1/queues")["queues"]}
        except (AssertionError, ValueError, KeyError, TypeError) as exc:
            last[0] = str(exc)
            return False
        missing = wanted - listed
        last[0] = f"not listed by /api/v1/queues: {sorted(missing)!r}" if missing else ""
        return not missing

    with contextlib.suppress(AssertionError):  # wait_until's timeout: said below, with the reason
        wait_until(listed_all, timeout=timeout, interval=0.5, what="the corpus queues")
    if not last[0]:
        return None
    return f"discovery did not list every corpus queue within {time.monotonic() - started:.0f} s: {last[0]}"


@contextmanager
def address_space_cap(headroom: int = 768 * 1024**2) -> Iterator[None]:
    """Lower this process's soft RLIMIT_AS to what it uses now plus `headroom`, then restore it.

    For property tests that decode arbitrary bytes in-process: a random pickle may ask for a memo
    table of gigabytes, which must end in MemoryError here, not in the machine's swap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    cap = size + headroom if hard == resource.RLIM_INFINITY else min(hard, size + headroom)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
