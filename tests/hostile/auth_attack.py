"""Clients guessing a user's password, for tests/hostile/test_auth_throttle.py.

Run as a child process (`python -m tests.hostile.auth_attack PORT USER CLIENTS SECONDS`), so the
attackers' CPU and GIL do not slow the test's own latency probe. Each client keeps one connection
and sends `GET /` with a new wrong password, pausing PAUSE between answers (20 clients send at most
80 requests a second: a crowd, not a flood). Prints one JSON object: answers by status, and the
Retry-After values seen.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import threading
import time
from collections import Counter

PAUSE = 0.25
_lock = threading.Lock()


def count(statuses: Counter[int], status: int) -> None:
    with _lock:
        statuses[status] += 1


def attack(
    port: int, user: str, seconds: float, index: int, statuses: Counter[int], waits: list[str]
) -> None:
    deadline = time.monotonic() + seconds
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    while time.monotonic() < deadline:
        n += 1
        token = base64.b64encode(f"{user}:wrong-{index}-{n}".encode()).decode()
        try:
            connection.request("GET", "/", headers={"Authorization": f"Basic {token}"})
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            count(statuses, 0)
            continue
        count(statuses, response.status)
        if response.status == 429:
            waits.append(response.getheader("Retry-After") or "")
        time.sleep(PAUSE)
    connection.close()


def main(argv: list[str]) -> int:
    port, user, clients, seconds = int(argv[0]), argv[1], int(argv[2]), float(argv[3])
    statuses: Counter[int] = Counter()
    waits: list[str] = []
    threads = [
        threading.Thread(target=attack, args=(port, user, seconds, i, statuses, waits))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"statuses": {str(k): v for k, v in statuses.items()}, "retry_after": waits}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
