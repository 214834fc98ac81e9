"""Robust trend statistics: slopes ignore outliers; only steady growth counts as growing."""

from __future__ import annotations

import random

import pytest

from memwarden._stats import mann_kendall, theil_sen, trend


def test_theil_sen_recovers_a_line_despite_outliers() -> None:
    """A 2-per-step line with 20% wild outliers still yields slope 2."""
    rng = random.Random(1)
    ys = [2.0 * i + 5 for i in range(50)]
    for i in rng.sample(range(50), 10):
        ys[i] += rng.choice([-1, 1]) * 1e6
    slope, intercept = theil_sen(list(range(50)), ys)
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(5.0)


def test_mann_kendall_sees_monotonic_growth_only() -> None:
    """Strict growth has tau 1 and a tiny p-value; a flat series has neither."""
    tau, p = mann_kendall([float(i) for i in range(30)])
    assert tau == 1.0
    assert p < 1e-6
    tau0, p0 = mann_kendall([5.0] * 30)
    assert tau0 == 0.0
    assert p0 == 1.0


def test_trend_separates_leak_from_sawtooth_and_plateau() -> None:
    """Steady growth is growing; a sawtooth and a filled-then-flat cache are not."""
    leak = [1000 + 64 * i + (i % 3) for i in range(60)]
    sawtooth = [1000 + 500 * (i % 10) for i in range(60)]
    plateau = [min(1000 + 100 * i, 3000) for i in range(60)]
    assert trend(leak, noise_floor=100).growing
    assert not trend(sawtooth, noise_floor=100).growing
    assert not trend(plateau[20:], noise_floor=100).growing


def test_trend_noise_floor_and_length_checks() -> None:
    """Growth below the noise floor is not growth; mismatched lengths are refused."""
    small = [float(i) for i in range(20)]
    assert not trend(small, noise_floor=100).growing
    assert trend(small, noise_floor=10).growing
    with pytest.raises(ValueError, match="differ in length"):
        trend([1.0, 2.0], [1.0])


def test_trend_thins_long_series() -> None:
    """A 100k-point series is thinned to the bound and keeps its slope."""
    ys = [3.0 * i for i in range(100_000)]
    t = trend(ys, max_points=200)
    assert t.points == 200
    assert t.slope == pytest.approx(3.0, rel=1e-3)
