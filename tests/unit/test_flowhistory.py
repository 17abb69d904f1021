"""collectors/flowhistory.py (change marks, the hour reader's replies) and the task page's heatmap."""

from __future__ import annotations

from callboard.collectors.flow import BUCKETS, OUTCOMES, Series, Tally, bucket
from callboard.collectors.flowhistory import (
    MIN_ENDED,
    MIN_RUNS,
    READ_STATS,
    Change,
    changes,
    parse_hours,
)
from callboard.dashboard.heatmap import LEVELS, heatmap, shade
from callboard.dashboard.taskreport import report_of

SERIES = Series("dramatiq", "dramatiq", "default", "resize")


def step(runs: int = 0, seconds: float = 0.1, failed: int = 0) -> Tally:
    """`runs` attempts of `seconds` each, `failed` of them failed for good, the others succeeded."""
    tally = Tally.empty()
    if runs:
        tally.add("s", runs - failed)
        tally.add("f", failed)
        tally.add(f"d{bucket(seconds)}", runs)
    return tally


def test_a_p95_jump_is_marked_once_at_the_step_it_happened() -> None:
    steps = [step(20, 0.1)] * 5 + [step(20, 2.5)] * 5
    assert changes(steps) == [Change(5, "p95", 0.1, 2.5, "p95 run time from 0.1 s to 2.5 s")]
    # One bucket is noise, not a change; neither is a step with too few runs, however slow.
    assert changes([step(20, 0.1)] * 5 + [step(20, 0.25)] * 5) == []
    assert changes([step(20, 0.1)] * 5 + [step(MIN_RUNS - 1, 60.0)] + [step(20, 0.1)] * 3) == []
    # Too little history before it (3 steps with enough runs are needed), and empty steps do not count.
    assert changes([step(20, 0.1)] * 2 + [step()] * 4 + [step(20, 2.5)]) == []


def test_a_failure_rate_change_needs_enough_ended_jobs_on_both_sides() -> None:
    healthy, broken = step(MIN_ENDED, failed=0), step(MIN_ENDED, failed=MIN_ENDED // 2)
    [change] = changes([healthy] * 4 + [broken] * 3)
    assert (change.step, change.kind, change.before, change.after) == (4, "failure", 0.0, 0.5)
    assert change.text == "failure rate from 0 % to 50 %"
    # A step with fewer ended jobs than MIN_ENDED is not judged, nor is one after too few.
    assert changes([healthy] * 4 + [step(MIN_ENDED - 1, failed=MIN_ENDED - 1)]) == []
    assert changes([step(5)] * 3 + [broken]) == []
    # 19 points is not a change; both kinds at once are two marks on one step.
    assert changes([step(100, failed=1)] * 4 + [step(100, failed=20)]) == []
    both = changes([step(40, 0.1)] * 4 + [step(40, 10.0, failed=20)])
    assert [(c.step, c.kind) for c in both] == [(4, "failure"), (4, "p95")]


def test_hour_replies_become_tallies_and_what_is_not_a_count_is_skipped() -> None:
    assert len(READ_STATS) == len(OUTCOMES) + 2 * len(BUCKETS) + 2  # the 36 fields asked per hour
    row: list[bytes | None] = [None] * len(READ_STATS)
    row[READ_STATS.index("s")] = b"3"
    row[READ_STATS.index("f")] = b"not a number"
    row[READ_STATS.index("d4")] = b"3"
    row[READ_STATS.index("ds")] = b"300000"
    found = parse_hours([10, 11], [row, [None] * len(READ_STATS)])
    assert list(found) == [10]  # an hour with nothing is left out
    assert found[10].outcomes == {"succeeded": 3} and found[10].durations[4] == 3
    assert found[10].duration_sum == 0.3


def test_the_heatmap_puts_each_run_in_its_bucket_and_step_with_marks() -> None:
    now = 1_800_000_030.0  # minute 30,000,000
    by_minute = {30_000_000 - 9 + i: step(20, 0.1) for i in range(5)} | {30_000_000: step(20, 2.5, failed=2)}
    report = report_of("main", SERIES, "companion", "1h", "1h", by_minute, now)
    assert len(report.steps) == 60 and report.steps[-1].start == 30_000_000 * 60
    assert report.totals == {"succeeded": 118, "failed": 2, "retried": 0, "skipped": 0} and report.runs == 120
    assert [(c.step, c.kind) for c in report.changes] == [(59, "p95")]
    grid = heatmap(report)
    assert [r.bucket for r in grid.rows] == list(reversed(range(len(BUCKETS))))  # slowest on top
    filled = {(r.bucket, i): c for r in grid.rows for i, c in enumerate(r.cells) if c.count}
    assert {k: c.count for k, c in filled.items()} == {
        **{(bucket(0.1), i): 20 for i in range(50, 55)},
        (bucket(2.5), 59): 20,
    }
    last = filled[(bucket(2.5), 59)]
    assert last.level == LEVELS and last.p95 and last.title == "20 runs ≤ 2.5 s, 08:00–08:01 UTC"
    assert grid.columns[59].marked and not grid.columns[58].marked
    assert grid.columns[59].failed == 2 and grid.columns[59].failed_title.startswith("2 failed of 20 ended")
    assert grid.ticks == ("07:01", "07:31", "08:00")


def test_shades_are_logarithmic_and_never_zero_for_a_run() -> None:
    assert [shade(n, 1000) for n in (0, 1, 2, 10, 100, 999, 1000)] == [0, 1, 1, 2, 4, 5, 6]
    assert shade(1, 1) == LEVELS and shade(3, 0) == 0
