"""The one memory-level scale, and the thresholds that place a usage on it.

Every component reports memory on the same ordered scale, :class:`PressureLevel`:
``NONE < MODERATE < HIGH < CRITICAL`` (``OK`` and ``WARNING`` are the monitor's names for
the first two rungs). :class:`Thresholds` holds the fractions of a limit at which each
rung starts, built once from the configuration (``MemoryConfig.thresholds``), and is what
the monitor and the governor both use.

**CRITICAL** has one meaning everywhere: usage at or above ``critical_threshold`` of the
limit (the budget, or the cgroup limit for the cgroup's working set), 90% by default.
The first rung is where each component starts to act: the monitor says WARNING at
``warning_threshold`` (a notice, 80%), the governor says MODERATE at
``pressure_threshold`` (relief starts, 85%); HIGH (the governor's, halfway from the
pressure threshold to the critical one) is where waiting producers should pause.
Levels rise at once and fall only ``hysteresis`` below their line; pressure ends only
below ``release_threshold``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "MONITOR_LEVELS",
    "Level",
    "PressureLevel",
    "ThresholdLines",
    "Thresholds",
    "monitor_level",
    "pressure_level",
]


class PressureLevel(enum.IntEnum):
    """How hard memory is pressed; ordered, so ``level >= PressureLevel.HIGH`` works.

    ``OK`` is another name for ``NONE`` and ``WARNING`` for ``MODERATE`` (the monitor's
    names); iteration and ``.name`` give the canonical four.
    """

    NONE = 0
    MODERATE = 1
    HIGH = 2
    CRITICAL = 3
    OK = 0
    WARNING = 1

    @property
    def monitor_name(self) -> str:
        """The name the monitor (and its exporters) use: ``OK``, ``WARNING``, ``CRITICAL``."""
        return _MONITOR_NAMES[self]


_MONITOR_NAMES = {
    PressureLevel.NONE: "OK",
    PressureLevel.MODERATE: "WARNING",
    PressureLevel.HIGH: "HIGH",
    PressureLevel.CRITICAL: "CRITICAL",
}

#: The rungs the monitor reports (it has no HIGH), in order.
MONITOR_LEVELS = (PressureLevel.OK, PressureLevel.WARNING, PressureLevel.CRITICAL)

Level = PressureLevel
"""The monitor's name for the scale (``Level.OK``, ``Level.WARNING``, ``Level.CRITICAL``)."""


class ThresholdLines(NamedTuple):
    """:class:`Thresholds` in bytes for one limit (computed once per limit, not per sample)."""

    warning: int
    release: int
    moderate: int
    high: int
    critical: int
    margin: int

    def as_dict(self) -> dict[str, int]:
        """The governor's lines by name: ``release``, ``moderate``, ``high``, ``critical``."""
        return {
            "release": self.release,
            "moderate": self.moderate,
            "high": self.high,
            "critical": self.critical,
        }


@dataclass(frozen=True)
class Thresholds:
    """Fractions of a limit at which each level starts (a value object; validated by config).

    Attributes:
        warning: the monitor's WARNING line (a notice).
        pressure: the governor's MODERATE line (relief starts).
        critical: the CRITICAL line, for the monitor and the governor alike.
        release: pressure ends only below this.
        hysteresis: a level is left only this fraction below its line.
        high: the governor's HIGH line; None means halfway from ``pressure`` to ``critical``.
    """

    warning: float = 0.8
    pressure: float = 0.85
    critical: float = 0.9
    release: float = 0.75
    hysteresis: float = 0.05
    high: float | None = None

    def lines(self, limit_bytes: int) -> ThresholdLines:
        """Each line in bytes for ``limit_bytes``.

        ``critical`` is used as given, even below ``pressure`` (then the governor goes
        straight to CRITICAL); ``high`` is kept between ``pressure`` and ``critical``.
        """
        moderate, critical = self.pressure, self.critical
        high = self.high if self.high is not None else (moderate + critical) / 2
        # HIGH sits between MODERATE and CRITICAL; CRITICAL is never moved (one meaning).
        high = min(max(high, moderate), max(critical, moderate))
        return ThresholdLines(
            warning=int(limit_bytes * self.warning),
            release=int(limit_bytes * self.release),
            moderate=int(limit_bytes * moderate),
            high=int(limit_bytes * high),
            critical=int(limit_bytes * critical),
            margin=int(limit_bytes * self.hysteresis),
        )


def pressure_level(used: int, lines: ThresholdLines, current: PressureLevel) -> PressureLevel:
    """The governor's level for ``used`` bytes: rise at once, fall with hysteresis.

    Falling, a level is left only ``margin`` below its line, and pressure ends altogether
    only below the release line (no flapping between 80% and 86%).
    """
    if used >= lines.critical:
        raw = PressureLevel.CRITICAL
    elif used >= lines.high:
        raw = PressureLevel.HIGH
    elif used >= lines.moderate:
        raw = PressureLevel.MODERATE
    else:
        raw = PressureLevel.NONE
    if raw >= current:
        return raw
    floor = PressureLevel.MODERATE if used >= lines.release else PressureLevel.NONE
    if current >= PressureLevel.HIGH and used >= lines.high - lines.margin:
        floor = max(floor, PressureLevel.HIGH)
    if current >= PressureLevel.CRITICAL and used >= lines.critical - lines.margin:
        floor = max(floor, PressureLevel.CRITICAL)
    return max(raw, min(floor, current))


def monitor_level(used: int, lines: ThresholdLines, current: PressureLevel) -> PressureLevel:
    """The monitor's level for ``used`` bytes: OK, WARNING or CRITICAL, with hysteresis."""
    if used >= lines.critical:
        raw = PressureLevel.CRITICAL
    elif used >= lines.warning:
        raw = PressureLevel.WARNING
    else:
        raw = PressureLevel.OK
    if raw >= current:
        return raw
    level = current
    while level > raw:
        line = lines.critical if level >= PressureLevel.HIGH else lines.warning
        if used >= line - lines.margin:
            break
        level = PressureLevel.WARNING if level >= PressureLevel.HIGH else PressureLevel.OK
    return max(level, raw)
