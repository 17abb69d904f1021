"""End to end: a real Prometheus scrapes a real `callboard serve` that watches real Dramatiq and Arq workers
on a Redis of our own. Every dashboard query and variable returns data, every rule evaluates with health
ok, /metrics passes `promtool check metrics` and matches the README, the queue no worker consumes has
CallboardNoLiveQueueWorkers and no other queue does; stopping Redis fires an alert.

Prometheus runs prometheus/prometheus.yml and prometheus/rules/ as committed, with three changes a test
needs: 1 s intervals, the target is our Callboard, and the alerts' `for:` is dropped (the promtool unit
tests prove the durations; here an alert must fire within seconds).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from arq import create_pool
from arq.connections import RedisSettings
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import dramatiq_app
from tests.integration.support import start_worker
from tests.monitoring.files import (
    DASHBOARDS,
    PROMETHEUS,
    Query,
    dashboard_queries,
    load_yaml,
    readme_metrics,
    recorded_names,
    rules,
    tool,
    variable_queries,
)
from tests.monitoring.prometheus_server import PrometheusError, PrometheusServer
from tests.monitoring.promql import label_values, substitute
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.integration

TARGET = "e2e"
JOB = "callboard"
#: Zero-time of a rule Prometheus has not evaluated yet.
NEVER = "0001-01-01T00:00:00Z"


def write_config(folder: Path, callboard_port: int) -> Path:
    """prometheus/prometheus.yml for a test: fast intervals, our Callboard, the rules with no `for:`."""
    config: dict[str, Any] = load_yaml(PROMETHEUS / "prometheus.yml")
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{callboard_port}"]}]
    rules_dir = folder / "rules"
    rules_dir.mkdir()
    for pattern in config["rule_files"]:
        for path in sorted(PROMETHEUS.glob(pattern)):
            content = load_yaml(path)
            for group in content["groups"]:
                for rule in group["rules"]:
                    rule.pop("for", None)
            (rules_dir / path.name).write_text(yaml.safe_dump(content, sort_keys=False))
    config["rule_files"] = [str(rules_dir / "*.yml")]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run([tool("promtool"), "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def seed_dramatiq(url: str) -> None:
    """A dead letter and a delayed retry for the worker (queue `default`), and ready messages on `emails`,
    which no worker listens to (so its oldest message ages)."""
    broker, actors = dramatiq_app.build(url, "dramatiq")
    try:
        actors["doomed_default"].send("e2e")
        actors["retry_later_default"].send("e2e")
        actors["hold_emails"].send("never", 1)
        actors["hold_emails"].send("never", 2)
    finally:
        broker.client.close()


async def seed_arq(port: int) -> None:
    """Two successes and a failure for the worker to finish, and a job deferred beyond the test."""
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    try:
        await pool.enqueue_job("succeed", 1)
        await pool.enqueue_job("succeed", 2)
        await pool.enqueue_job("fail_value", "e2e")
        await pool.enqueue_job("succeed", 3, _defer_by=600)
    finally:
        await pool.aclose()


def start_arq_worker(port: int) -> Process:
    env = child_env(ITEST_REDIS_PORT=str(port), ITEST_ARQ_QUEUE="arq:queue")
    # With the flow companion, so the flow families have samples too.
    args = [sys.executable, "-m", "arq", "tests.integration.arq_app.FlowWorkerSettings"]
    return Process(args, env, "arq-e2e").start()


def check_queries(prom: PrometheusServer, queries: list[Query]) -> tuple[list[str], list[str]]:
    """(errors, empty): queries (as Grafana expands them) Prometheus rejects, and those with no data."""
    errors: list[str] = []
    empty: list[str] = []
    for query in queries:
        parsed = label_values(query.expr)
        try:
            if parsed:
                found: list[Any] = prom.label_values(parsed[1], substitute(parsed[0]))
            else:
                found = prom.query(substitute(query.expr))
        except PrometheusError as exc:
            errors.append(f"{query.where}: {exc}")
            continue
        if query.must_have_data and not found:
            empty.append(f"{query.where}: {query.expr}")
    return errors, empty


def rule_health(prom: PrometheusServer) -> dict[str, str]:
    """name -> health of every rule; "unevaluated" until Prometheus has evaluated it once."""
    out: dict[str, str] = {}
    for group in prom.api("rules")["groups"]:
        for rule in group["rules"]:
            evaluated = rule.get("lastEvaluation", NEVER) != NEVER
            out[rule["name"]] = rule["health"] if evaluated else "unevaluated"
            if rule.get("lastError"):
                out[rule["name"]] += f": {rule['lastError']}"
    return out


def active_alerts(prom: PrometheusServer) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for alert in prom.api("alerts")["alerts"]:
        out.setdefault(alert["labels"]["alertname"], []).append(alert)
    return out


def unconsumed(prom: PrometheusServer) -> set[tuple[str, str]]:
    """(framework, queue) of every CallboardNoLiveQueueWorkers alert active now."""
    alerts = active_alerts(prom).get("CallboardNoLiveQueueWorkers", [])
    return {(a["labels"]["framework"], a["labels"]["queue"]) for a in alerts}


def metrics_match_readme(body: str) -> None:
    """Every family of a populated /metrics has samples, with exactly the README's labels."""
    documented = readme_metrics()
    seen: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            seen.setdefault(sample.name, set()).update(sample.labels)
    assert seen == documented


def wait_for_data(prom: PrometheusServer, queries: list[Query], workers: list[Process]) -> None:
    errors: list[str] = []
    empty: list[str] = []

    def settled() -> bool:
        errors[:], empty[:] = check_queries(prom, queries)
        return bool(errors) or not empty  # a query Prometheus rejects will not get better

    try:
        wait_until(settled, timeout=40, interval=0.5, what="every query to return data")
    finally:
        logs = "\n".join(w.log()[-1500:] for w in workers)
        assert not errors and not empty, f"errors: {errors}\nno data: {empty}\n{logs}"


def wait_for_rules(prom: PrometheusServer) -> None:
    """Every rule evaluated with health ok, and every recording rule recorded something."""
    expected = {rule.get("alert") or rule["record"] for rule in rules()}
    health: dict[str, str] = {}

    def all_ok() -> bool:
        health.update(rule_health(prom))
        return set(health) == expected and set(health.values()) == {"ok"}

    try:
        wait_until(all_ok, timeout=10, what="every rule to be evaluated")
    finally:
        assert set(health) == expected and set(health.values()) == {"ok"}, health
    wait_until(lambda: all(prom.query(name) for name in recorded_names()), timeout=10, what="recording rules")


def check_metrics(board: Callboard) -> None:
    # The companion flushes every 2 s and Callboard reads the totals the cycle after: wait for them.
    wait_until(lambda: "callboard_jobs_total{" in board.get("/metrics")[1], timeout=15, what="flow samples")
    status, body = board.get("/metrics")
    assert status == 200
    metrics_match_readme(body)
    check = subprocess.run([tool("promtool"), "check", "metrics"], input=body, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_prometheus_over_live_callboard(tmp_path: Path, own_server: RedisServer) -> None:
    started = time.monotonic()
    board = Callboard([f"{TARGET}={own_server.url}"])
    prom = PrometheusServer(write_config(tmp_path, board.port), tmp_path / "data")
    workers: list[Process] = []
    queries = [q for path in DASHBOARDS for q in (*dashboard_queries(path), *variable_queries(path))]
    try:
        # First: Prometheus scrapes about 5 s after it starts; the rest of the setup overlaps that.
        prom.start()
        seed_dramatiq(own_server.url)
        asyncio.run(seed_arq(own_server.port))
        workers.append(start_worker(own_server.url, "dramatiq", ("default",)))
        workers.append(start_arq_worker(own_server.port))
        board.start(poll_interval=0.25)

        wait_for_data(prom, queries, workers)
        check_metrics(board)
        wait_for_rules(prom)
        quiet = {"CallboardDown", "CallboardTargetUnreachable", "CallboardNoLiveWorkers"}
        assert quiet.isdisjoint(active_alerts(prom)), active_alerts(prom)
        # `emails` has ready messages and no consumer, though its namespace has a live worker (of `default`).
        wait_until(
            lambda: unconsumed(prom) == {("dramatiq", "emails")},
            timeout=10,
            what=f"CallboardNoLiveQueueWorkers on emails alone: {active_alerts(prom)}",
        )
        healthy_at = time.monotonic()

        own_server.stop()

        def unreachable_fires() -> bool:
            alerts = active_alerts(prom).get("CallboardTargetUnreachable", [])
            return any(a["state"] == "firing" and a["labels"]["target"] == TARGET for a in alerts)

        wait_until(unreachable_fires, timeout=20, interval=0.25, what="CallboardTargetUnreachable firing")
        # The dashboards' alert annotation shows it.
        annotations = [q for q in queries if not q.must_have_data]
        assert annotations and all(prom.query(substitute(q.expr)) for q in annotations)
        print(
            f"\n{len(queries) - len(annotations)} dashboard queries and variables with data, "
            f"{len(annotations)} alert annotations, {len(rules())} rules ok "
            f"{healthy_at - started:.1f} s after start; the alert fired "
            f"{time.monotonic() - healthy_at:.1f} s after Redis stopped"
        )
    except PrometheusError as exc:
        raise AssertionError(f"{exc}\nprometheus log: {prom.log()}") from None
    finally:
        for worker in workers:
            worker.stop()
        board.stop()
        prom.stop()
