"""dashboard/reports.py drain_report: the net rate from the depth history, and what it tells."""

from __future__ import annotations

from collections.abc import Mapping

from callboard.collectors.flow import Series, Tally
from callboard.collectors.flowreader import FlowSnapshot
from callboard.collectors.model import Framework, QueueStats
from callboard.dashboard.reports import drain_report

NOW = 1_800_000_000.0


def stats(ready: int) -> QueueStats:
    return QueueStats(
        Framework.DRAMATIQ, "dramatiq", "default", "dramatiq:default", {"ready": ready, "dead": 9}, 0.0
    )


def history(points: list[tuple[int, int]]) -> list[tuple[float, Mapping[str, int]]]:
    return [(NOW - ago, {"ready": n, "in_flight": 0, "dead": 99}) for ago, n in points]


def test_a_draining_queue_gets_its_rate_and_an_eta_and_one_odd_reading_does_not_tilt_it() -> None:
    points = [(40 - t, 400 - 2 * t) for t in range(0, 41)]  # 2 a second for 40 s: 120 a minute
    points[5] = (points[5][0], 5000)  # a count taken mid-move
    report = drain_report(stats(320), history(points), None, NOW)
    assert report.net_per_minute is not None and round(report.net_per_minute) == -120
    assert report.eta_seconds is not None and round(report.eta_seconds) == 160  # 320 at 2 a second
    assert report.backlog == 320  # dead letters are not backlog
    assert report.completed_per_minute is None and report.source is None  # no flow known


def test_growing_flat_and_too_short_histories() -> None:
    growing = drain_report(stats(50), history([(30, 10), (20, 20), (10, 40), (0, 50)]), None, NOW)
    assert growing.net_per_minute is not None and growing.net_per_minute > 0 and growing.eta_seconds is None
    flat = drain_report(stats(0), history([(30, 0), (0, 0)]), None, NOW)
    assert flat.net_per_minute == 0 and flat.eta_seconds is None
    short = drain_report(stats(50), history([(3, 60), (0, 50)]), None, NOW)  # under 5 s of history
    assert short.net_per_minute is None
    old = drain_report(stats(50), history([(600, 900), (590, 800)]), None, NOW)  # outside the window
    assert old.net_per_minute is None


def test_dead_letters_alone_are_not_completions_but_arq_results_are() -> None:
    """A Dramatiq queue whose only flow is its dead-letter arrivals has no completion rate (failures
    alone would read as a queue completing only what fails); Arq's results count both outcomes."""
    minute = int(NOW // 60) - 1
    dead = Tally.empty()
    dead.add("f", 30)
    dramatiq = FlowSnapshot(
        {}, {}, None, estimated={minute: {Series("dramatiq", "dramatiq", "default", "a"): dead}}
    )
    points = [(30, 100), (0, 40)]
    report = drain_report(stats(40), history(points), dramatiq, NOW)
    assert report.completed_per_minute is None and report.source is None
    assert report.net_per_minute is not None  # the depth still tells the net rate
    done = Tally.empty()
    done.add("s", 20)
    done.add("f", 10)
    arq = FlowSnapshot({}, {}, None, estimated={minute: {Series("arq", "arq", "arq:queue", "f"): done}})
    arq_stats = QueueStats(Framework.ARQ, "arq", "arq:queue", "arq:queue", {"ready": 40}, 0.0)
    report = drain_report(arq_stats, history(points), arq, NOW)
    assert report.completed_per_minute == 30 and report.source == "arq-results"
