"""Integration test helpers: real `dramatiq` workers; counts as Callboard and as Redis say them."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import dramatiq_app
from tests.servers import Callboard, Process, child_env, wait_until

STATES = ("ready", "in_flight", "delayed", "dead")
#: (namespace, queue) -> state -> count
Counts = dict[tuple[str, str], dict[str, int]]
Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]

#: Messages a worker fetches per queue (running + prefetched), set explicitly so counts are exact.
PREFETCH = 2
THREADS = 2


def quick_stale_board(redis_url: str, config_dir: Path) -> Callboard:
    """A started Callboard on `redis_url` as target "main", with a Dramatiq heartbeat timeout of 2 s
    (Dramatiq's default is 60 s), so a killed worker turns stale quickly."""
    config = config_dir / "callboard.toml"
    config.write_text(
        f'[[targets]]\nname = "main"\nurl = "{redis_url}"\n[targets.dramatiq]\nheartbeat_timeout = 2\n'
    )
    return Callboard([], extra=["--config", str(config)]).start(poll_interval=0.2)


def start_flow_worker(url: str, name: str) -> Process:
    """A real Dramatiq worker group of tests/integration/flow_app.py (the companion on): one process,
    two threads, its idle consumers polling every 100 ms so delays end promptly."""
    env = child_env(ITEST_REDIS_URL=url)
    env["dramatiq_worker_timeout"] = "100"
    args = [
        sys.executable,
        "-m",
        "dramatiq",
        "tests.integration.flow_app",
        "--processes",
        "1",
        "--threads",
        "2",
    ]
    return Process(args, env, name).start()


def start_worker(url: str, namespace: str, queues: tuple[str, ...], flow: bool = False) -> Process:
    """`python -m dramatiq tests.integration.dramatiq_app --processes 1 --threads 2`, as a user runs it;
    with the flow companion when `flow`."""
    env = child_env(
        ITEST_REDIS_URL=url,
        ITEST_NAMESPACE=namespace,
        ITEST_QUEUES=",".join(queues),
        ITEST_FLOW="1" if flow else "0",
        dramatiq_queue_prefetch=str(PREFETCH),
        # How often an idle consumer polls Redis (ms): small, so delayed retries move promptly.
        dramatiq_worker_timeout="200",
    )
    args = [sys.executable, "-m", "dramatiq", "tests.integration.dramatiq_app"]
    args += ["--processes", "1", "--threads", str(THREADS)]
    return Process(args, env, f"dramatiq-{namespace}").start()


def stop_worker(worker: Process, timeout: float = 20) -> None:
    """SIGTERM to the dramatiq main process only (it stops its children gracefully); kill if it hangs."""
    proc = worker.process
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    worker.stop(signal.SIGKILL, timeout=5)


# -- what Callboard says -----------------------------------------------------------------------------


def post_json(board: Callboard, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """POST a JSON body as a script would; (status, decoded answer), errors included."""
    request = urllib.request.Request(
        board.url + path,
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def finished_operation(board: Callboard, op_id: str) -> dict[str, Any]:
    """The operation's view once it has ended (polled at the Location a 202 names)."""
    state: dict[str, Any] = {}

    def ended() -> bool:
        state.update(api_json(board, f"/api/v1/operations/{op_id}"))
        return bool(state["status"] != "running")

    wait_until(ended, timeout=30, interval=0.1, what=f"operation {op_id} to end")
    return state


def runs(control: redis.Redis, tags: list[str]) -> list[int]:
    """How often tests.integration.dramatiq_app's `flaky` ran for each tag."""
    return [control_int(control, dramatiq_app.runs_key(t)) for t in tags]


def scrape(board: Callboard) -> Samples:
    status, body = board.get("/metrics")
    assert status == 200, (status, body[:500])
    out: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric_counts(samples: Samples, target: str) -> Counts:
    out: Counts = {}
    for (name, labels), value in samples.items():
        label = dict(labels)
        if (
            name != "callboard_queue_messages"
            or label["target"] != target
            or label["framework"] != "dramatiq"
        ):
            continue
        assert set(label) == {"target", "framework", "namespace", "queue", "state"}, label
        out.setdefault((label["namespace"], label["queue"]), {})[label["state"]] = int(value)
    return out


def api_json(board: Callboard, path: str) -> Any:
    status, body = board.get(path)
    assert status == 200, (status, body[:500])
    return json.loads(body)


def wait_for_queue(board: Callboard, framework: str, key: str, timeout: float = 20) -> None:
    """Until /api/v1/queues lists the queue (discovered and collected): pages and controls answer 404
    for a queue Callboard does not know yet."""

    def listed() -> bool:
        queues = api_json(board, "/api/v1/queues")["queues"]
        return any(q["framework"] == framework and q["key"] == key for q in queues)

    wait_until(listed, timeout=timeout, what=f"{framework} queue {key!r} to be discovered")


def api_counts(board: Callboard, target: str) -> Counts:
    data = api_json(board, "/api/v1/queues")
    return {
        (q["namespace"], q["name"]): dict(q["counts"])
        for q in data["queues"]
        if q["target"] == target and q["framework"] == "dramatiq"
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


# -- what Redis says (Dramatiq's own semantics, computed independently of collectors/) ---------------


def redis_truth(client: redis.Redis, keys: list[tuple[str, str]]) -> Counts:
    out: Counts = {}
    for namespace, queue in keys:
        base = f"{namespace}:{queue}"
        with client.pipeline(transaction=False) as pipe:
            pipe.llen(base)
            pipe.hlen(f"{base}.msgs")
            pipe.hlen(f"{base}.DQ.msgs")
            pipe.zcard(f"{base}.XQ")
            ready, stored, delayed, dead = (int(n) for n in pipe.execute())
        out[(namespace, queue)] = {
            "ready": ready,
            "in_flight": stored - ready,
            "delayed": delayed,
            "dead": dead,
        }
    return out


def full(counts: Mapping[tuple[str, str], Mapping[str, int]]) -> Counts:
    """Fill in the states not mentioned with 0 (every state of every queue is exported)."""
    return {key: {s: int(states.get(s, 0)) for s in STATES} for key, states in counts.items()}


def wait_for_counts(
    board: Callboard, client: redis.Redis, target: str, expected: Counts, stage: str, timeout: float = 20
) -> None:
    """Redis reaches `expected` (the workers are where the test put them), then /metrics and the API agree."""
    seen: dict[str, Any] = {}
    keys = sorted(expected)

    def redis_ok() -> bool:
        seen["redis"] = redis_truth(client, keys)
        return bool(seen["redis"] == expected)

    def board_ok() -> bool:
        seen["metrics"] = metric_counts(scrape(board), target)
        seen["api"] = api_counts(board, target)
        return bool(seen["metrics"] == expected and seen["api"] == expected)

    try:
        wait_until(redis_ok, timeout=timeout, what=f"{stage}: Redis to reach the expected counts")
        wait_until(board_ok, timeout=10, what=f"{stage}: /metrics and /api/v1/queues to show them")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nexpected: {expected}\nseen: {seen}") from None


def control_int(client: redis.Redis, key: str) -> int:
    raw = cast(bytes | None, client.get(key))
    return int(raw) if raw is not None else 0


def open_gate(client: redis.Redis, gate: str, n: int) -> None:
    if n:
        client.rpush(dramatiq_app.gate_key(gate), *["go"] * n)


def alive_heartbeats(client: redis.Redis, namespace: str, now_ms: float, timeout_ms: float = 60_000) -> int:
    beats = cast(
        list[tuple[bytes, float]], client.zrange(f"{namespace}:__heartbeats__", 0, -1, withscores=True)
    )
    return sum(1 for _, score in beats if now_ms - score < timeout_ms)
