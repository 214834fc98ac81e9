"""Robust trend statistics shared by the monitor, the leak detector and reports.

A memory series is noisy (allocator retention, sawtooth buffers, one-off spikes),
so growth is judged with rank statistics that one outlier cannot move: the
Theil–Sen slope (median of pairwise slopes) and the Mann–Kendall trend test.
Pure Python, bounded: series longer than ``max_points`` are thinned evenly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Trend", "mann_kendall", "theil_sen", "trend"]

_MAX_POINTS = 400  # O(n^2) pairwise slopes: 400 points = 80k pairs, a few ms


def _thin(
    xs: Sequence[float], ys: Sequence[float], max_points: int
) -> tuple[list[float], list[float]]:
    n = len(ys)
    if n <= max_points:
        return list(xs), list(ys)
    step = (n - 1) / (max_points - 1)
    idx = [round(i * step) for i in range(max_points)]
    return [xs[i] for i in idx], [ys[i] for i in idx]


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Return ``(slope, intercept)`` by the Theil–Sen estimator (robust to ~29% outliers)."""
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length: {len(xs)} != {len(ys)}")
    n = len(ys)
    if n < 2:
        return 0.0, (float(ys[0]) if n else 0.0)
    slopes = []
    for i in range(n):
        xi, yi = xs[i], ys[i]
        for j in range(i + 1, n):
            dx = xs[j] - xi
            if dx != 0:
                slopes.append((ys[j] - yi) / dx)
    if not slopes:
        return 0.0, float(sorted(ys)[n // 2])
    slopes.sort()
    m = len(slopes)
    slope = slopes[m // 2] if m % 2 else (slopes[m // 2 - 1] + slopes[m // 2]) / 2
    intercepts = sorted(y - slope * x for x, y in zip(xs, ys, strict=True))
    intercept = intercepts[n // 2] if n % 2 else (intercepts[n // 2 - 1] + intercepts[n // 2]) / 2
    return slope, intercept


def mann_kendall(ys: Sequence[float]) -> tuple[float, float]:
    """Return ``(S / pairs, p_value)`` of the Mann–Kendall test for a monotonic upward trend.

    ``S / pairs`` is in [-1, 1] (1: every later value above every earlier one).
    The p-value is one-sided (upward), from the normal approximation with ties.
    """
    n = len(ys)
    if n < 3:
        return 0.0, 1.0
    s = 0
    for i in range(n - 1):
        yi = ys[i]
        for j in range(i + 1, n):
            d = ys[j] - yi
            s += (d > 0) - (d < 0)
    counts: dict[float, int] = {}
    for y in ys:
        counts[y] = counts.get(y, 0) + 1
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in counts.values())) / 18
    if var <= 0:
        return 0.0, 1.0
    z = (s - 1) / math.sqrt(var) if s > 0 else ((s + 1) / math.sqrt(var) if s < 0 else 0.0)
    p_up = 0.5 * math.erfc(z / math.sqrt(2))
    return s / (n * (n - 1) / 2), p_up


@dataclass(frozen=True)
class Trend:
    """The growth of a series.

    Attributes:
        slope: units of y per unit of x (Theil–Sen).
        tau: Mann–Kendall S / pairs, in [-1, 1]; 1 is strictly increasing.
        p_value: one-sided p-value of an upward trend.
        growing: True when the trend is upward with ``p_value < alpha`` and the
            total growth over the span exceeds ``noise_floor``.
        total_growth: ``slope * (x_last - x_first)``.
        points: how many points the estimate used.
    """

    slope: float
    tau: float
    p_value: float
    growing: bool
    total_growth: float
    points: int


def trend(
    ys: Sequence[float],
    xs: Sequence[float] | None = None,
    *,
    noise_floor: float = 0.0,
    alpha: float = 0.01,
    max_points: int = _MAX_POINTS,
) -> Trend:
    """Estimate the upward trend of ``ys`` (against ``xs``, default 0, 1, 2, …).

    Args:
        ys: the series, e.g. RSS samples in bytes.
        xs: the positions, e.g. sample times in seconds; must be as long as ``ys``.
        noise_floor: growth over the whole span at or below this is not growth.
        alpha: significance level of the trend test.
        max_points: longer series are thinned evenly to this many points.
    """
    xs_ = list(range(len(ys))) if xs is None else xs
    if len(xs_) != len(ys):
        raise ValueError(f"xs and ys differ in length: {len(xs_)} != {len(ys)}")
    tx, ty = _thin([float(x) for x in xs_], [float(y) for y in ys], max(3, max_points))
    slope, _ = theil_sen(tx, ty)
    tau, p = mann_kendall(ty)
    span = (tx[-1] - tx[0]) if len(tx) > 1 else 0.0
    total = slope * span
    growing = len(ty) >= 3 and p < alpha and total > noise_floor and slope > 0
    return Trend(slope, tau, p, growing, total, len(ty))
