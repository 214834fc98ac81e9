"""The one level scale: aliases, threshold lines, and CRITICAL meaning the same everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memwarden.config import MemoryConfig
from memwarden.levels import (
    MONITOR_LEVELS,
    Level,
    PressureLevel,
    Thresholds,
    monitor_level,
    pressure_level,
)
from memwarden.monitoring import MemoryMonitor
from memwarden.pressure import Governor


def test_the_monitor_names_are_aliases_of_the_one_scale() -> None:
    """Level is PressureLevel; OK and WARNING are NONE and MODERATE; iteration gives four."""
    assert Level is PressureLevel
    assert Level.OK is PressureLevel.NONE
    assert Level.WARNING is PressureLevel.MODERATE
    assert [lvl.name for lvl in PressureLevel] == ["NONE", "MODERATE", "HIGH", "CRITICAL"]
    assert [lvl.monitor_name for lvl in MONITOR_LEVELS] == ["OK", "WARNING", "CRITICAL"]


def test_lines_in_bytes_and_high_between_pressure_and_critical() -> None:
    """Default lines for 1000 bytes; HIGH defaults to halfway and is clamped, CRITICAL never."""
    lines = Thresholds().lines(1000)
    assert (lines.warning, lines.release, lines.moderate, lines.high, lines.critical) == (
        800,
        750,
        850,
        875,
        900,
    )
    assert lines.margin == 50
    assert Thresholds(high=0.99).lines(1000).high == 900  # clamped to CRITICAL
    low_critical = Thresholds(warning=0.3, critical=0.5).lines(1000)
    assert low_critical.critical == 500  # used as given, even below the pressure line


@pytest.mark.parametrize("usage", [899, 900, 950])
def test_monitor_and_governor_agree_on_critical(usage: int) -> None:
    """The same usage is CRITICAL for the monitor exactly when it is for the governor."""
    cfg = MemoryConfig(max_memory_bytes=1000)
    mon = MemoryMonitor(cfg, probe=lambda: usage)
    gov = Governor(cfg, probe=lambda: usage, builtin_relievers=False)
    mon.sample_now()
    assert (mon.level is Level.CRITICAL) == (gov.level() is PressureLevel.CRITICAL)
    assert (gov.level() is PressureLevel.CRITICAL) == (usage >= cfg.critical_bytes)
    mon.close()


@given(
    st.lists(st.integers(min_value=0, max_value=1200), min_size=1, max_size=50),
)
def test_levels_never_fall_below_the_raw_band(trace: list[int]) -> None:
    """Whatever came before, each level is at least the band the usage falls in."""
    lines = Thresholds().lines(1000)
    gov_level = mon_level = PressureLevel.NONE
    for used in trace:
        gov_level = pressure_level(used, lines, gov_level)
        mon_level = monitor_level(used, lines, mon_level)
        if used >= lines.critical:
            assert gov_level is PressureLevel.CRITICAL
            assert mon_level is PressureLevel.CRITICAL
        assert mon_level in MONITOR_LEVELS
        assert (used >= lines.moderate) <= (gov_level >= PressureLevel.MODERATE)


def test_config_thresholds_carry_every_line() -> None:
    """MemoryConfig.thresholds is the one value both components read."""
    cfg = MemoryConfig(
        max_memory_bytes=1000,
        warning_threshold=0.6,
        critical_threshold=0.95,
        pressure_threshold=0.7,
        release_threshold=0.5,
        hysteresis=0.01,
    )
    assert cfg.thresholds == Thresholds(
        warning=0.6, pressure=0.7, critical=0.95, release=0.5, hysteresis=0.01
    )
    assert Governor(cfg, probe=lambda: 0).thresholds_bytes()["critical"] == 950
