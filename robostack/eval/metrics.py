"""Evaluation statistics: success interval, action smoothness, latency percentiles."""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate (sensible at 0% and 100%, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rms_jerk(actions: np.ndarray) -> float:
    """RMS of the third difference of executed actions: sqrt(mean ||a_t - 3a_{t-1} + 3a_{t-2} - a_{t-3}||^2)."""
    a = np.asarray(actions, np.float64)
    if a.shape[0] < 4:
        return 0.0
    j = a[3:] - 3 * a[2:-1] + 3 * a[1:-2] - a[:-3]
    return float(np.sqrt(np.mean(np.sum(j * j, axis=-1))))


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    if not seconds:
        return (float("nan"), float("nan"))
    arr = np.asarray(seconds) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))
