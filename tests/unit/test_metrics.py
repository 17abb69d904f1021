"""/metrics rendering from a hand-built SnapshotStore: names, types and labels exactly as
docs/contracts.md §3 gives them."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from callboard.collectors.model import (
    QUEUE_STATES,
    DiscoveryStatus,
    Framework,
    QueueStats,
    ServerInfo,
    TargetSnapshot,
    WorkerStats,
)
from callboard.dashboard import __version__
from callboard.dashboard.metrics import make_registry
from callboard.dashboard.store import SnapshotStore

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]

DISCOVERY = DiscoveryStatus(complete=True, scanned_in_pass=0, passes=1, last_pass_at=1.0)


def queue(
    namespace: str,
    name: str,
    counts: dict[str, int],
    oldest: float | None = 0.0,
    results: dict[str, int] | None = None,
    workers: dict[str, int] | None = None,
) -> QueueStats:
    full = {state: counts.get(state, 0) for state in QUEUE_STATES[Framework.DRAMATIQ]}
    return QueueStats(
        Framework.DRAMATIQ,
        namespace,
        name,
        f"{namespace}:{name}",
        full,
        oldest,
        results=results,
        workers=workers,
    )


def worker(namespace: str, worker_id: str, alive: bool) -> WorkerStats:
    return WorkerStats(Framework.DRAMATIQ, namespace, worker_id, 1000.0, alive, "consumer", 2, ("default",))


def snapshot(
    target: str, queues: tuple[QueueStats, ...], workers: tuple[WorkerStats, ...] = ()
) -> TargetSnapshot:
    return TargetSnapshot(
        target=target,
        collected_at=1_700_000_000.5,
        duration=0.0125,
        round_trips=1,
        queues=queues,
        workers=workers,
        server=ServerInfo("redis 7.0.15", 1_000_000, 100),
        discovery=DISCOVERY,
    )


def build_store() -> SnapshotStore:
    store = SnapshotStore([("main", "redis://h:1/0"), ("down", "redis://h:2/0"), ("never", "redis://h:3/0")])
    store.record(
        snapshot(
            "main",
            (
                queue(
                    "dramatiq",
                    "default",
                    {"ready": 5, "in_flight": 2, "delayed": 1},
                    oldest=12.5,
                    workers={"alive": 2, "stale": 1},
                ),
                # An idle queue: every state is still exported, with 0.
                queue("dramatiq", "emails", {}, oldest=0.0, workers={"alive": 0, "stale": 0}),
                # An Arq queue: `alive` only (its health-check key cannot go stale, it expires).
                QueueStats(
                    Framework.ARQ,
                    "arq",
                    "arq:queue",
                    "arq:queue",
                    dict.fromkeys(QUEUE_STATES[Framework.ARQ], 0),
                    0.0,
                    workers={"alive": 1},
                ),
                # Unknown oldest age (head payload undecodable): not exported rather than a fake 0.
                queue("acme", "reports", {"dead": 3}, oldest=None, results={"succeeded": 4}),
            ),
            (
                worker("dramatiq", "w-alive-1", True),
                worker("dramatiq", "w-alive-2", True),
                worker("dramatiq", "w-stale", False),
                # Workers of a namespace without any queue still count.
                worker("lonely", "w-lonely", False),
                WorkerStats(
                    Framework.ARQ,
                    "arq",
                    "arq:queue:health-check",
                    1000.0,
                    True,
                    "health check",
                    None,
                    ("arq:queue",),
                ),
            ),
        )
    )
    store.record(
        snapshot("down", (queue("dramatiq", "default", {"ready": 9}),), (worker("dramatiq", "w", True),))
    )
    store.record_error("down", "ConnectionError: refused", 0.25)
    store.record_error("down", "ConnectionError: refused", 0.5)
    store.record_error("never", "ConnectionError: refused", 0.1)
    return store


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def L(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


def render(store: SnapshotStore) -> str:
    return generate_latest(make_registry(store)).decode()


def test_family_names_and_types() -> None:
    text = render(build_store())
    families = text_string_to_metric_families(text)
    types = {f.name: f.type for f in families}
    assert types == {
        "callboard_up": "gauge",
        "callboard_collect_duration_seconds": "gauge",
        "callboard_collect_errors": "counter",  # exposed as callboard_collect_errors_total
        "callboard_last_collect_timestamp_seconds": "gauge",
        "callboard_build_info": "gauge",
        "callboard_queue_messages": "gauge",
        "callboard_queue_oldest_message_age_seconds": "gauge",
        "callboard_workers": "gauge",
        "callboard_queue_workers": "gauge",
        "callboard_job_results": "gauge",
        # Flow, from the worker companion: the families exist (empty) before any worker reports.
        "callboard_jobs": "counter",
        "callboard_job_duration_seconds": "histogram",
        "callboard_job_wait_seconds": "histogram",
    }
    assert "callboard_collect_errors_total{" in text
    for family in text_string_to_metric_families(text):
        assert family.documentation, f"{family.name} has no HELP"


def test_target_health_series() -> None:
    s = samples(render(build_store()))
    assert s[("callboard_up", L(target="main"))] == 1
    assert s[("callboard_up", L(target="down"))] == 0
    assert s[("callboard_up", L(target="never"))] == 0
    assert s[("callboard_collect_errors_total", L(target="main"))] == 0
    assert s[("callboard_collect_errors_total", L(target="down"))] == 2
    assert s[("callboard_collect_errors_total", L(target="never"))] == 1
    assert s[("callboard_collect_duration_seconds", L(target="main"))] == 0.0125
    assert s[("callboard_collect_duration_seconds", L(target="down"))] == 0.5  # the failed attempt's
    assert s[("callboard_last_collect_timestamp_seconds", L(target="main"))] == 1_700_000_000.5
    # The last *good* collection of a target that is down now; none for one never collected.
    assert s[("callboard_last_collect_timestamp_seconds", L(target="down"))] == 1_700_000_000.5
    assert ("callboard_last_collect_timestamp_seconds", L(target="never")) not in s
    assert s[("callboard_build_info", L(version=__version__))] == 1


def test_queue_series_have_exact_labels_and_every_state() -> None:
    s = samples(render(build_store()))
    messages = {labels: v for (name, labels), v in s.items() if name == "callboard_queue_messages"}
    expected = {
        ("dramatiq", "default"): {"ready": 5, "in_flight": 2, "delayed": 1, "dead": 0},
        ("dramatiq", "emails"): {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 0},
        ("acme", "reports"): {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 3},
    }
    want = {
        L(target="main", framework="dramatiq", namespace=ns, queue=q, state=state): float(n)
        for (ns, q), counts in expected.items()
        for state, n in counts.items()
    }
    for state in QUEUE_STATES[Framework.ARQ]:
        want[L(target="main", framework="arq", namespace="arq", queue="arq:queue", state=state)] = 0.0
    assert messages == want  # nothing from the target that is down, the queue label is the name not the key

    oldest = {
        labels: v for (name, labels), v in s.items() if name == "callboard_queue_oldest_message_age_seconds"
    }
    assert oldest == {
        L(target="main", framework="dramatiq", namespace="dramatiq", queue="default"): 12.5,
        L(target="main", framework="dramatiq", namespace="dramatiq", queue="emails"): 0.0,
        L(target="main", framework="arq", namespace="arq", queue="arq:queue"): 0.0,
    }

    results = {labels: v for (name, labels), v in s.items() if name == "callboard_job_results"}
    assert results == {
        L(target="main", framework="dramatiq", namespace="acme", queue="reports", status="succeeded"): 4,
        L(target="main", framework="dramatiq", namespace="acme", queue="reports", status="failed"): 0,
    }


def test_queue_workers_every_state_of_each_framework() -> None:
    """Both Dramatiq states with their zeros, Arq's `alive` alone; a queue whose consumers are not
    known (no `workers`) exports none rather than a fake 0."""
    s = samples(render(build_store()))
    queue_workers = {labels: v for (name, labels), v in s.items() if name == "callboard_queue_workers"}
    main = {"target": "main"}
    assert queue_workers == {
        L(**main, framework="dramatiq", namespace="dramatiq", queue="default", state="alive"): 2,
        L(**main, framework="dramatiq", namespace="dramatiq", queue="default", state="stale"): 1,
        L(**main, framework="dramatiq", namespace="dramatiq", queue="emails", state="alive"): 0,
        L(**main, framework="dramatiq", namespace="dramatiq", queue="emails", state="stale"): 0,
        L(**main, framework="arq", namespace="arq", queue="arq:queue", state="alive"): 1,
    }


def test_workers_by_namespace_and_state() -> None:
    s = samples(render(build_store()))
    workers = {labels: v for (name, labels), v in s.items() if name == "callboard_workers"}
    assert workers == {
        L(target="main", framework="dramatiq", namespace="dramatiq", state="alive"): 2,
        L(target="main", framework="dramatiq", namespace="dramatiq", state="stale"): 1,
        # A namespace with queues but no heartbeats exports zeros.
        L(target="main", framework="dramatiq", namespace="acme", state="alive"): 0,
        L(target="main", framework="dramatiq", namespace="acme", state="stale"): 0,
        L(target="main", framework="dramatiq", namespace="lonely", state="alive"): 0,
        L(target="main", framework="dramatiq", namespace="lonely", state="stale"): 1,
        # Arq: the namespace's queues with a health-check key.
        L(target="main", framework="arq", namespace="arq", state="alive"): 1,
        L(target="main", framework="arq", namespace="arq", state="stale"): 0,
    }


def test_a_down_target_exports_only_its_health() -> None:
    s = samples(render(build_store()))
    for name, labels in s:
        if ("target", "down") in labels or ("target", "never") in labels:
            assert name in {
                "callboard_up",
                "callboard_collect_duration_seconds",
                "callboard_collect_errors_total",
                "callboard_last_collect_timestamp_seconds",
            }, name


def test_recovery_brings_queue_series_back() -> None:
    store = build_store()
    store.record(snapshot("down", (queue("dramatiq", "default", {"ready": 1}),)))
    s = samples(render(store))
    assert s[("callboard_up", L(target="down"))] == 1
    assert s[("callboard_collect_errors_total", L(target="down"))] == 2  # a counter never goes back
    assert (
        s[
            (
                "callboard_queue_messages",
                L(target="down", framework="dramatiq", namespace="dramatiq", queue="default", state="ready"),
            )
        ]
        == 1
    )


def test_no_ids_hosts_or_urls_in_labels() -> None:
    text = render(build_store())
    for secret in ("w-alive-1", "w-stale", "redis://", "h:1", "dramatiq:default"):
        assert secret not in text


def test_empty_store_renders_build_info_only() -> None:
    s = samples(render(SnapshotStore([])))
    assert s == {("callboard_build_info", L(version=__version__)): 1}


def test_openmetrics_rendering_parses_and_ends_with_eof() -> None:
    text = generate_openmetrics(make_registry(build_store())).decode()  # type: ignore[no-untyped-call]
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
    assert families["callboard_collect_errors"].type == "counter"
    ready = [
        s.value
        for s in families["callboard_queue_messages"].samples
        if s.labels
        == {
            "target": "main",
            "framework": "dramatiq",
            "namespace": "dramatiq",
            "queue": "default",
            "state": "ready",
        }
    ]
    assert ready == [5]
