"""Summaries of measured values."""
from __future__ import annotations

import math


def percentile(sorted_values: list[float], p: float) -> float:
    """The p-th percentile by nearest rank (rank = ceil(p/100 · n)), without interpolation: every
    figure reported is a value that was really measured. `sorted_values` must be sorted, non-empty."""
    n = len(sorted_values)
    return sorted_values[min(n - 1, max(0, math.ceil(p / 100 * n) - 1))]
