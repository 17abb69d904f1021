"""Counts by state in /metrics and /api/v1/queues equal the truth, with real `dramatiq` workers.

Two namespaces (the default one and a custom one) with two queues each, none of them configured:
`callboard serve` discovers them. The test walks the messages through Dramatiq's lifecycle - queued
with no worker, in flight (actors block until the test opens their gate), retrying (a backoff of tens
of seconds keeps them delayed), dead (retries exhausted) - and at each stage waits for Redis to reach
the expected state, then checks that Callboard says exactly the same.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from tests.integration import dramatiq_app
from tests.integration.support import (
    PREFETCH,
    THREADS,
    Counts,
    Samples,
    alive_heartbeats,
    control_int,
    full,
    metric_counts,
    open_gate,
    scrape,
    start_worker,
    stop_worker,
    value,
    wait_for_counts,
)
from tests.servers import Callboard, Process, free_port, wait_until

pytestmark = pytest.mark.integration

TARGET = "main"
DEFAULT_NS, CUSTOM_NS = "dramatiq", "itest-custom"
QUEUES = {DEFAULT_NS: ("default", "emails"), CUSTOM_NS: ("reports", "exports")}
PROMTOOL = Path("/usr/bin/promtool")
#: Messages per queue whose actor blocks until its namespace's gate opens.
HOLDS = {
    (DEFAULT_NS, "default"): 5,
    (DEFAULT_NS, "emails"): 3,
    (CUSTOM_NS, "reports"): 4,
    (CUSTOM_NS, "exports"): 1,
}
#: Messages sent with a 10-minute delay: they stay delayed for the whole test.
DELAYED = {(DEFAULT_NS, "default"): 2, (CUSTOM_NS, "reports"): 1}
#: Messages whose actor fails and retries after tens of seconds: delayed too, once they failed.
RETRYING = {(DEFAULT_NS, "default"): 3, (CUSTOM_NS, "reports"): 2}
#: Messages whose actor fails twice (max_retries=1): dead.
DOOMED = {(DEFAULT_NS, "emails"): 2, (CUSTOM_NS, "exports"): 3}


def held_in(namespace: str) -> int:
    return sum(n for (ns, _), n in HOLDS.items() if ns == namespace)


@dataclass
class Lifecycle:
    """The state of the lifecycle test: what runs, what was sent, and what Callboard must show."""

    url: str
    control: redis.Redis
    brokers: list[Any] = field(default_factory=list)
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: list[Process] = field(default_factory=list)
    board: Callboard | None = None
    expected: Counts = field(default_factory=dict)

    def send(self, namespace: str, actor: str, *args: Any, delay: int | None = None) -> None:
        if namespace not in self.actors:
            broker, self.actors[namespace] = dramatiq_app.build(self.url, namespace, QUEUES[namespace])
            self.brokers.append(broker)
        self.actors[namespace][actor].send_with_options(args=args, delay=delay)

    def check(self, stage: str) -> Samples:
        assert self.board is not None
        wait_for_counts(self.board, self.control, TARGET, self.expected, stage)
        return scrape(self.board)

    def workers_metric(self, samples: Samples, namespace: str, state: str) -> float | None:
        labels = {"target": TARGET, "framework": "dramatiq", "namespace": namespace, "state": state}
        return value(samples, "callboard_workers", **labels)

    def oldest_age(self, samples: Samples, namespace: str, queue: str) -> float | None:
        labels = {"target": TARGET, "framework": "dramatiq", "namespace": namespace, "queue": queue}
        return value(samples, "callboard_queue_oldest_message_age_seconds", **labels)

    def wait_control(self, key: str, n: int, what: str) -> None:
        wait_until(lambda: control_int(self.control, key) == n, timeout=30, what=what)

    # -- stages --------------------------------------------------------------------------------------

    def queued(self) -> None:
        """No worker runs: everything sent is ready, or delayed in `.DQ`."""
        first_sent = time.time()
        for (ns, queue), n in HOLDS.items():
            for i in range(n):
                self.send(ns, f"hold_{queue}", ns, i)
        for (ns, queue), n in DELAYED.items():
            for i in range(n):
                self.send(ns, f"hold_{queue}", ns, 100 + i, delay=600_000)
        self.expected = full({key: {"ready": n, "delayed": DELAYED.get(key, 0)} for key, n in HOLDS.items()})
        self.board = Callboard(redis=[f"{TARGET}={self.url}"]).start(poll_interval=0.2)
        samples = self.check("queued")
        assert value(samples, "callboard_up", target=TARGET) == 1
        age = self.oldest_age(samples, DEFAULT_NS, "default")
        assert age is not None and 0 <= age <= time.time() - first_sent + 1
        for ns in QUEUES:  # only the producer has a heartbeat so far
            assert self.workers_metric(samples, ns, "alive") == 1
            assert self.workers_metric(samples, ns, "stale") == 0

    def in_flight(self) -> None:
        """Workers fetch PREFETCH per queue; THREADS of those run and block on their gate."""
        self.workers = [start_worker(self.url, ns, queues) for ns, queues in QUEUES.items()]
        for ns in QUEUES:
            self.wait_control(dramatiq_app.started_key(ns), THREADS, f"{THREADS} actors running in {ns}")
        for key, n in HOLDS.items():
            self.expected[key]["in_flight"] = min(PREFETCH, n)
            self.expected[key]["ready"] = n - min(PREFETCH, n)
        # The workers hold the delayed messages in memory now: `.DQ` is empty, yet they are still delayed.
        samples = self.check("in flight")
        assert self.control.llen(f"{DEFAULT_NS}:default.DQ") == 0
        for ns in QUEUES:  # producer + worker process, as the heartbeats say
            alive = alive_heartbeats(self.control, ns, time.time() * 1000)
            assert alive == 2
            assert self.workers_metric(samples, ns, "alive") == alive

    def released(self) -> None:
        for ns in QUEUES:
            open_gate(self.control, ns, held_in(ns))
        for key in HOLDS:
            self.expected[key]["ready"] = self.expected[key]["in_flight"] = 0
        samples = self.check("released")
        for ns in QUEUES:
            assert control_int(self.control, dramatiq_app.started_key(ns)) == held_in(ns)
        assert self.oldest_age(samples, DEFAULT_NS, "default") == 0

    def retrying(self) -> None:
        """Each fails once and waits out a backoff of tens of seconds in the delay queue."""
        for (ns, queue), n in RETRYING.items():
            for _ in range(n):
                self.send(ns, f"retry_later_{queue}", f"{ns}:{queue}")
            self.expected[(ns, queue)]["delayed"] += n
        for (ns, queue), n in RETRYING.items():
            self.wait_control(
                dramatiq_app.attempts_key(f"{ns}:{queue}"), n, f"retry_later runs on {ns}:{queue}"
            )
        self.check("retrying")

    def dead(self) -> None:
        """Retries exhausted (max_retries=1, quick backoff): dead-lettered after two attempts."""
        for (ns, queue), n in DOOMED.items():
            for _ in range(n):
                self.send(ns, f"doomed_{queue}", f"{ns}:{queue}")
            self.expected[(ns, queue)]["dead"] += n
        self.check("dead")
        for (ns, queue), n in DOOMED.items():
            assert control_int(self.control, dramatiq_app.attempts_key(f"{ns}:{queue}")) == 2 * n

    def stopped(self) -> None:
        """A graceful stop hands the delayed messages back to `.DQ`; nothing is counted twice."""
        for worker in self.workers:
            stop_worker(worker)
        self.check("workers stopped")
        delayed = self.expected[(DEFAULT_NS, "default")]["delayed"]
        assert self.control.llen(f"{DEFAULT_NS}:default.DQ") == delayed

    def close(self) -> None:
        for ns in QUEUES:
            open_gate(self.control, ns, held_in(ns))  # never leave an actor blocked
        for worker in self.workers:
            stop_worker(worker)
        if self.board is not None:
            self.board.stop()
        for broker in self.brokers:
            broker.client.close()


def test_counts_through_the_dramatiq_lifecycle(redis_url: str, control: redis.Redis) -> None:
    lifecycle = Lifecycle(redis_url, control)
    try:
        lifecycle.queued()
        lifecycle.in_flight()
        lifecycle.released()
        lifecycle.retrying()
        lifecycle.dead()
        lifecycle.stopped()
    finally:
        lifecycle.close()


def get_with_headers(board: Callboard, path: str, accept: str | None) -> tuple[int, str, str]:
    request = urllib.request.Request(board.url + path, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


def test_metrics_exposition_formats(redis_url: str, control: redis.Redis) -> None:
    """`promtool check metrics` accepts /metrics, with every state present and a target that is down."""
    assert PROMTOOL.exists(), "promtool is required at /usr/bin/promtool (apt-get install prometheus)"
    producer, actors = dramatiq_app.build(redis_url, DEFAULT_NS)
    worker_broker, _ = dramatiq_app.build(redis_url, DEFAULT_NS)
    board = None
    try:
        for i in range(4):
            actors["hold_default"].send("never", i)
        actors["hold_emails"].send_with_options(args=("never",), delay=600_000)
        consumer = worker_broker.consume("default", prefetch=2, timeout=100)
        first, second = next(consumer), next(consumer)
        assert first is not None and second is not None
        consumer.nack(first)  # dead; `second` stays in flight
        expected = full(
            {
                (DEFAULT_NS, "default"): {"ready": 2, "in_flight": 1, "dead": 1},
                (DEFAULT_NS, "emails"): {"delayed": 1},
            }
        )
        down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
        board = Callboard(redis=[f"{TARGET}={redis_url}", f"gone={down}"]).start(poll_interval=0.2)
        wait_for_counts(board, control, TARGET, expected, "seeded")
        gone_board = board
        wait_until(
            lambda: (value(scrape(gone_board), "callboard_collect_errors_total", target="gone") or 0) >= 1,
            timeout=10,
            what="a failed collection from the target that is down",
        )

        status, content_type, body = get_with_headers(board, "/metrics", None)
        assert status == 200
        assert content_type.startswith("text/plain")
        checked = subprocess.run(
            [str(PROMTOOL), "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout + checked.stderr == ""
        samples = scrape(board)
        assert value(samples, "callboard_up", target="gone") == 0
        assert value(samples, "callboard_up", target=TARGET) == 1

        status, content_type, om = get_with_headers(
            board, "/metrics", "application/openmetrics-text; version=1.0.0"
        )
        assert status == 200
        assert content_type.startswith("application/openmetrics-text")
        assert om.endswith("# EOF\n")
        families = {f.name: f for f in parse_openmetrics(om)}  # type: ignore[no-untyped-call]
        assert families["callboard_collect_errors"].type == "counter"
        om_counts: dict[tuple[str, str], dict[str, int]] = {}
        for s in families["callboard_queue_messages"].samples:
            if s.labels["target"] == TARGET:
                om_counts.setdefault((s.labels["namespace"], s.labels["queue"]), {})[s.labels["state"]] = int(
                    s.value
                )
        assert om_counts == expected == metric_counts(samples, TARGET)
    finally:
        if board is not None:
            board.stop()
        producer.client.close()
        worker_broker.client.close()
