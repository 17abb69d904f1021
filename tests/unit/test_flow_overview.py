"""dashboard/reports.py flow_overview: the overview's throughput over 1 h, 24 h and 7 d.

Hours the reader has whole come from their hour hash, the rest from minutes, so nothing is counted
twice; estimates add in; the range says how many hours it still misses.
"""

from __future__ import annotations

from dataclasses import astuple

from callboard.collectors.flow import Series, Tally, bucket
from callboard.collectors.flowreader import FlowSnapshot
from callboard.collectors.model import DiscoveryStatus, TargetSnapshot
from callboard.dashboard.reports import flow_overview
from callboard.dashboard.store import TargetState

HOUR = 500_000  # an epoch hour
NOW = HOUR * 3600 + 1800.0  # half past it
MINUTE = int(NOW // 60)
QUICK = Series("dramatiq", "dramatiq", "default", "quick")
ARQ = Series("arq", "arq", "arq:queue", "report")


def tally(succeeded: int = 0, failed: int = 0, run: float = 0.03) -> Tally:
    t = Tally.empty()
    t.add("s", succeeded)
    t.add("f", failed)
    t.durations[bucket(run)] += succeeded + failed
    return t


def state(flow: FlowSnapshot, name: str = "main") -> TargetState:
    discovery = DiscoveryStatus(True, 0, 1, NOW)
    snapshot = TargetSnapshot(name, NOW, 0.001, 1, (), (), None, discovery, flow=flow)
    return TargetState(name, "redis://x", up=True, snapshot=snapshot)


def snapshot() -> FlowSnapshot:
    earlier = HOUR * 60 - 10  # ten minutes before this hour: hour HOUR - 1, and within the last 60 min
    return FlowSnapshot(
        total={},
        minutes={MINUTE: {QUICK: tally(3, 1)}, earlier: {QUICK: tally(1)}},
        total_read_at=NOW,
        series=(QUICK,),
        estimated={MINUTE: {ARQ: tally(2, run=3.0)}},
        hours={HOUR - 1: tally(10, 2), HOUR - 5: tally(4)},
        hours_missing=0,
        minute_sums={MINUTE: tally(3, 1), earlier: tally(1)},
    )


def test_one_hour_is_by_minute_from_minutes_and_estimates() -> None:
    f = flow_overview([state(snapshot())], "1h", NOW)
    assert (f.step_seconds, len(f.points)) == (60, 60)
    assert (f.succeeded, f.failed) == (3 + 1 + 2, 1)
    assert astuple(f.points[-1]) == (MINUTE * 60, 5, 1) and astuple(f.points[-41]) == (
        (MINUTE - 40) * 60,
        1,
        0,
    )
    assert f.failure_rate == 1 / 7
    assert f.sources == ("arq-results", "companion")
    assert f.p95_run_seconds == 5.0  # 2 of 7 runs took 3 s: the 95th percentile is in the ≤ 5 s bucket


def test_hours_come_from_their_hash_and_the_current_hour_from_its_minutes() -> None:
    for span, points in (("24h", 24), ("7d", 168)):
        f = flow_overview([state(snapshot())], span, NOW)
        assert (f.step_seconds, len(f.points)) == (3600, points)
        # The minute of the last hour is inside that hour's hash: counted once, from the hash.
        assert (f.succeeded, f.failed) == (10 + 4 + 3 + 2, 2 + 1)
        assert astuple(f.points[-1]) == (HOUR * 3600, 5, 1)
        assert astuple(f.points[-2]) == ((HOUR - 1) * 3600, 10, 2)
        assert astuple(f.points[-6]) == ((HOUR - 5) * 3600, 4, 0)
        assert f.hours_missing == points - 1 - 2  # ended hours of the range minus the two read


def test_targets_add_up_and_an_unreadable_flow_is_named() -> None:
    broken = FlowSnapshot({}, {}, None, "NoPermissionError: HGETALL")
    f = flow_overview([state(snapshot()), state(snapshot(), "second"), state(broken, "third")], "1h", NOW)
    assert (f.succeeded, f.failed) == (12, 2)
    assert f.errors == {"third": "NoPermissionError: HGETALL"}


def test_nothing_recorded_reads_as_nothing_not_as_zero_failures() -> None:
    f = flow_overview([TargetState("main", "redis://x")], "24h", NOW)
    assert (f.succeeded, f.failed, f.failure_rate, f.p95_run_seconds, f.sources) == (0, 0, None, None, ())
    assert all((p.succeeded, p.failed) == (0, 0) for p in f.points)
