"""The metric contract between /metrics, the README, grafana/ and prometheus/: every metric a dashboard,
a variable or a rule uses is exported (or recorded by our rules, or made by Prometheus itself), every
exported metric is documented, and matchers use only documented labels."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric

from callboard.dashboard.metrics import make_registry
from callboard.dashboard.store import SnapshotStore
from tests.monitoring.files import (
    DASHBOARDS,
    PROMETHEUS_SERIES,
    RULE_TESTS,
    dashboard_queries,
    load_yaml,
    readme_metrics,
    recorded_names,
    rules,
    variable_queries,
)
from tests.monitoring.promql import label_values, matcher_labels, metric_names

#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def _sample_names(family: Metric) -> set[str]:
    suffixes = {"counter": ["_total"], "info": ["_info"], "histogram": ["_bucket", "_sum", "_count"]}
    return {family.name + suffix for suffix in suffixes.get(family.type, [""])}


def exported() -> set[str]:
    """Every sample name /metrics can produce. The families are emitted even with no data, so an
    empty store (one target, never collected) lists them all without Redis."""
    registry = make_registry(SnapshotStore([("main", "redis://127.0.0.1:1/0")]))
    return {name for family in registry.collect() for name in _sample_names(family)}


def used() -> dict[str, set[str]]:
    """metric name -> where it is used (dashboard panels, annotations and variables; rules)."""
    out: dict[str, set[str]] = {}
    queries = [q for path in DASHBOARDS for q in (*dashboard_queries(path), *variable_queries(path))]
    for query in queries:
        parsed = label_values(query.expr)
        for name in metric_names(parsed[0] if parsed else query.expr):
            out.setdefault(name, set()).add(query.where)
    for rule in rules():
        for name in metric_names(rule["expr"]):
            out.setdefault(name, set()).add(f"{rule['file']} {rule.get('alert') or rule['record']}")
    for name, _labels in unit_test_series():
        out.setdefault(name, set()).add("prometheus/tests input series")
    return out


def unit_test_series() -> list[tuple[str, set[str]]]:
    """(metric name, label names) of every input series of the promtool unit tests."""
    out: list[tuple[str, set[str]]] = []
    for path in RULE_TESTS:
        for test in load_yaml(path)["tests"]:
            for series in test.get("input_series", []):
                out.extend(matcher_labels(series["series"]).items())
    return out


def test_every_metric_used_is_exported_recorded_or_prometheus_own() -> None:
    names = used()
    assert {"callboard_up", "callboard_queue_messages", "callboard_workers"} <= set(names)  # sanity
    known = exported() | recorded_names() | PROMETHEUS_SERIES
    unknown = {name: sorted(where) for name, where in names.items() if name not in known}
    assert unknown == {}


def test_every_recording_rule_reads_exported_metrics() -> None:
    recorded = recorded_names()
    assert recorded and all(":" in name for name in recorded)
    for rule in rules():
        if "record" in rule:
            assert metric_names(rule["expr"]) <= exported(), rule["record"]


def test_every_exported_metric_is_documented_in_the_readme() -> None:
    assert set(readme_metrics()) == exported()


def test_matchers_use_documented_labels() -> None:
    documented = readme_metrics()
    queries = [q.expr for path in DASHBOARDS for q in (*dashboard_queries(path), *variable_queries(path))]
    queries += [rule["expr"] for rule in rules()]
    for expr in queries:
        for name, labels in matcher_labels(expr).items():
            if name in documented:
                assert labels <= documented[name] | TARGET_LABELS, (name, labels, expr)
            elif name in PROMETHEUS_SERIES - {"ALERTS", "ALERTS_FOR_STATE"}:
                assert labels <= TARGET_LABELS, (name, expr)


def test_unit_tests_model_the_real_label_sets() -> None:
    """The promtool tests' input series carry the labels /metrics gives them (and Prometheus adds)."""
    documented = readme_metrics()
    series = unit_test_series()
    assert series
    for name, labels in series:
        expected = documented.get(name, set()) | TARGET_LABELS
        assert labels == expected, (name, labels)
