"""Small statistics helpers: percentiles and a summary of a sample, in milliseconds or as given."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """n, median, p95, min, max and mean of `values`, each multiplied by `scale` (1000.0: s -> ms)."""
    if not values:
        return {
            "n": 0,
            "median": math.nan,
            "p95": math.nan,
            "min": math.nan,
            "max": math.nan,
            "mean": math.nan,
        }
    return {
        "n": len(values),
        "median": statistics.median(values) * scale,
        "p95": percentile(values, 95) * scale,
        "min": min(values) * scale,
        "max": max(values) * scale,
        "mean": statistics.fmean(values) * scale,
    }


def ratio(value: float, floor: float) -> float:
    """value / floor, or nan when the floor is unusable."""
    if not floor or math.isnan(floor) or math.isnan(value):
        return math.nan
    return value / floor
