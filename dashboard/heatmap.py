"""A task's run-time histogram over time as a grid the page draws with CSS classes (no inline styles:
the CSP forbids them): one column per step, one row per run-time bucket, each cell a shade level.

Pure: from a TaskReport (dashboard/taskreport.py) to labels, levels and titles. O(steps x buckets),
at most 168 x 15 cells (7 days by hour).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from callboard.collectors.flow import BUCKETS
from callboard.dashboard.taskreport import TaskReport, TaskStep
from callboard.dashboard.words import plural

#: Shades of a non-empty cell, 1 (fewest) to LEVELS (most); 0 is an empty cell.
LEVELS = 6


def bound(seconds: float | None) -> str:
    """A histogram quantile as the bucket bound it is: "≤ 0.5 s", "> 300 s"."""
    if seconds is None:
        return "—"
    if seconds == float("inf"):
        return f"> {BUCKETS[-2]:g} s"
    return f"≤ {seconds * 1000:g} ms" if seconds < 1 else f"≤ {seconds:g} s"


def shade(count: int, top: int) -> int:
    """The level of `count` in a grid whose largest count is `top`: logarithmic, so a cell of 3 stays
    visible beside one of 3,000; 0 for nothing."""
    if count <= 0 or top <= 0:
        return 0
    if top == 1:
        return LEVELS
    return 1 + min(LEVELS - 1, int((LEVELS - 1) * math.log(count) / math.log(top) + 1e-9))


@dataclass(frozen=True, slots=True)
class Cell:
    count: int
    level: int
    #: Bucket, time and count in words (the cell's title; the count is also its hidden text).
    title: str
    #: The step's p95 run time falls in this cell's bucket (outlined on the page).
    p95: bool


@dataclass(frozen=True, slots=True)
class Row:
    bucket: int
    label: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True, slots=True)
class Column:
    start: int
    label: str
    #: A change mark (collectors/flowhistory.py) falls on this step.
    marked: bool
    #: The failures row: failed jobs, and its shade among the steps.
    failed: int
    failed_level: int
    failed_title: str
    #: The p95 row: shaded by the p95 bucket, slowest darkest.
    p95_level: int
    p95_title: str


@dataclass(frozen=True, slots=True)
class Heatmap:
    columns: tuple[Column, ...]
    #: Slowest bucket first, as a chart's y axis reads.
    rows: tuple[Row, ...]
    #: The largest count of a cell (the darkest shade).
    top: int
    #: Times to print under the grid: first, middle and last step.
    ticks: tuple[str, ...]


def step_label(start: int, step_seconds: int) -> str:
    moment = dt.datetime.fromtimestamp(start, tz=dt.UTC)
    return moment.strftime("%H:%M") if step_seconds < 3600 else moment.strftime("%d %b %H:00")


def heatmap(report: TaskReport) -> Heatmap:
    steps = report.steps
    top = max((n for s in steps for n in s.durations), default=0)
    top_failed = max((s.outcomes.get("failed", 0) for s in steps), default=0)
    marked = {c.step for c in report.changes}
    labels = [step_label(s.start, report.step_seconds) for s in steps]
    spans = [
        f"{label}–{step_label(s.start + report.step_seconds, report.step_seconds)} UTC"
        for s, label in zip(steps, labels, strict=True)
    ]
    columns = tuple(
        _column(s, label, span, i in marked, top_failed)
        for i, (s, label, span) in enumerate(zip(steps, labels, spans, strict=True))
    )
    rows = tuple(
        Row(
            b,
            bound(BUCKETS[b]),
            tuple(_cell(s, b, span, top) for s, span in zip(steps, spans, strict=True)),
        )
        for b in reversed(range(len(BUCKETS)))
    )
    ticks = tuple(labels[i] for i in sorted({0, len(labels) // 2, len(labels) - 1})) if labels else ()
    return Heatmap(columns, rows, top, ticks)


def _cell(step: TaskStep, b: int, span: str, top: int) -> Cell:
    count = step.durations[b]
    runs = plural(count, "run")
    p95 = step.p95_run_seconds is not None and BUCKETS.index(step.p95_run_seconds) == b
    return Cell(count, shade(count, top), f"{runs} {bound(BUCKETS[b])}, {span}", p95)


def _column(step: TaskStep, label: str, span: str, marked: bool, top_failed: int) -> Column:
    failed = step.outcomes.get("failed", 0)
    ended = failed + step.outcomes.get("succeeded", 0)
    failed_title = f"{failed:,} failed of {ended:,} ended, {span}" if ended else f"nothing ended, {span}"
    p95 = step.p95_run_seconds
    p95_level = 0 if p95 is None else 1 + BUCKETS.index(p95) * (LEVELS - 1) // (len(BUCKETS) - 1)
    p95_title = f"p95 run time {bound(p95)}, {span}" if p95 is not None else f"no runs, {span}"
    return Column(
        step.start, label, marked, failed, shade(failed, top_failed), failed_title, p95_level, p95_title
    )
