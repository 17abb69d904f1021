"""Wrong passwords do not stall the server: scrypt runs off the event loop, and failed sign-ins are
throttled per client address and per user with 429 + Retry-After, before any scrypt work.

A real `callboard serve` with [auth] users; 20 clients guess alice's password for ATTACK_SECONDS (in a
child process, tests/hostile/auth_attack.py) while this process probes /healthz on fresh connections.
Each 401 to a guess is one scrypt run (~50 ms of CPU); a 429 is none.
"""

from __future__ import annotations

import base64
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.access import hash_password
from tests.conftest import flushed
from tests.servers import REPO, Callboard, RedisServer, child_env

pytestmark = pytest.mark.integration

CLIENTS = 20
ATTACK_SECONDS = 3.0
PROBE_EVERY = 0.02
ALICE, BOB = "correct horse battery staple", "tr0ub4dor&3 but longer"
#: Failed sign-ins allowed at once per address and per user, then one a second (dashboard/access.py).
BURST, REFILL = 10, 1.0


@pytest.fixture
def board(one_redis: RedisServer, tmp_path: Path) -> Iterator[Callboard]:
    config = tmp_path / "callboard.toml"
    config.write_text(
        f'[auth]\nusers = {{ alice = "{hash_password(ALICE)}", bob = "{hash_password(BOB)}" }}\n'
    )
    board = Callboard([f"main={flushed(one_redis)}"], ["--config", str(config)]).start(poll_interval=0.5)
    yield board
    board.stop()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(
    board: Callboard, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], float]:
    """Status, headers and seconds taken, on a fresh connection (as a probe makes one)."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", board.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.getheaders()), time.perf_counter() - start
    finally:
        connection.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_wrong_passwords_neither_stall_the_server_nor_lock_out_a_signed_in_user(board: Callboard) -> None:
    assert get(board, "/api/v1/queues", basic("alice", ALICE))[0] == 200  # alice's browser, signed in
    attack = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.hostile.auth_attack",
            str(board.port),
            "alice",
            str(CLIENTS),
            str(ATTACK_SECONDS),
        ],
        env=child_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    latencies: list[float] = []
    signed_in: list[int] = []
    fresh_sign_in: list[tuple[int, dict[str, str]]] = []
    started = time.monotonic()
    try:
        time.sleep(0.3)  # let the attack get going
        while attack.poll() is None and time.monotonic() - started < ATTACK_SECONDS + 30:
            status, _, seconds = get(board, "/healthz")
            assert status == 200
            latencies.append(seconds)
            if len(latencies) % 10 == 0:
                signed_in.append(get(board, "/api/v1/queues", basic("alice", ALICE))[0])
            if len(latencies) == 50:
                status, headers, _ = get(board, "/api/v1/queues", basic("bob", BOB))
                fresh_sign_in.append((status, headers))
            time.sleep(PROBE_EVERY)
        output, _ = attack.communicate(timeout=60)
    finally:
        if attack.poll() is None:
            attack.kill()
    elapsed = time.monotonic() - started
    result = json.loads(output)
    statuses = {int(k): v for k, v in result["statuses"].items()}
    figures = (
        f"/healthz under {CLIENTS} wrong-password clients for {ATTACK_SECONDS} s: {len(latencies)} probes, "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, p95 {percentile(latencies, 0.95) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms; guesses answered {statuses} (each 401 is one scrypt run)"
    )
    print(figures)

    assert statistics.median(latencies) < 0.05, figures
    assert max(latencies) < 0.5, figures
    # Throttled guesses are refused with when to come back, and no scrypt work.
    assert statuses.get(429, 0) > statuses.get(401, 0), figures
    assert set(statuses) <= {401, 429}, figures
    assert all(wait.isdigit() and 1 <= int(wait) <= BURST / REFILL for wait in result["retry_after"]), figures
    # Both buckets (this address, and alice) hold at most BURST guesses plus REFILL per second.
    assert statuses[401] <= BURST + REFILL * elapsed + 1, figures
    # alice's verified credentials skip the throttle: the attack does not sign her out.
    assert signed_in and set(signed_in) == {200}, signed_in
    # bob's right password from the attacked address, never verified yet: refused unchecked, for a while.
    ((status, headers),) = fresh_sign_in
    assert status == 429, figures
    # Once the window passes, a right password works again.
    status, headers, _ = get(board, "/api/v1/queues", basic("bob", BOB))
    if status == 429:
        time.sleep(int(headers["retry-after"]))
        status = get(board, "/api/v1/queues", basic("bob", BOB))[0]
    assert status == 200


def test_scrypt_runs_off_the_event_loop(board: Callboard) -> None:
    """Without the throttle's help (each guess from its own attempt, under the burst): /healthz answers
    while guesses are being verified, because verification runs in worker threads."""
    results: list[float] = []

    def guess(i: int) -> None:
        get(board, "/", basic("bob", f"wrong-{i}"))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    while any(t.is_alive() for t in threads):
        results.append(get(board, "/healthz")[2])
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert results, "the guesses finished before the first probe"
    assert max(results) < 0.15, [round(r * 1000) for r in results]
