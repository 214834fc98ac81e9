"""The governor's inputs: each turns one memory fact into a :class:`PressureLevel`.

Every input is a small object with ``read(now) -> PressureLevel`` and ``explain()``; the
governor's level is the highest of them. Inputs that read files (the cgroup's working
set, PSI, memory events) re-read at most every ``every_s`` seconds and answer from their
last reading in between; :meth:`_Throttled.force` makes the next read fresh (a kernel
notification just arrived).

To add an input: write a class with ``name``, ``level``, ``read(now)`` and ``explain()``
here, create it in ``Governor._inputs_for_now`` and, if it can wake the watcher, add a
notification source in ``_watcher.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from memwarden._units import format_size
from memwarden.levels import PressureLevel, ThresholdLines, pressure_level
from memwarden.probes import Cgroup, read_pressure_stall
from memwarden.typing import Probe

__all__ = [
    "CgroupInput",
    "EventsInput",
    "KernelInput",
    "PressureInput",
    "PsiInput",
    "UsageInput",
]

#: How often inputs that read files re-read them (the RSS input reads on every call).
SLOW_EVERY_S = 0.25


class PressureInput(Protocol):
    """One source of pressure: its level now, and a phrase saying why."""

    name: str
    level: PressureLevel

    def read(self, now: float) -> PressureLevel: ...

    def explain(self) -> str | None: ...


class UsageInput:
    """This process's usage (RSS, or what a monitor sampled) against the budget."""

    name = "usage"

    def __init__(
        self, probe: Probe, budget: Callable[[], int], lines: Callable[[int], ThresholdLines]
    ) -> None:
        self._probe = probe
        self._budget = budget
        self._lines = lines
        self.level = PressureLevel.NONE
        self.usage_bytes = 0
        self._fed: int | None = None

    def feed(self, usage_bytes: int) -> None:
        """Use ``usage_bytes`` (a monitor's sample) for the next read instead of probing."""
        self._fed = usage_bytes

    def read(self, now: float) -> PressureLevel:
        used, self._fed = (self._fed, None) if self._fed is not None else (self._probe(), None)
        self.usage_bytes = used
        self.level = pressure_level(used, self._lines(self._budget()), self.level)
        return self.level

    def explain(self) -> str | None:
        return (
            f"usage {format_size(self.usage_bytes)} of budget {format_size(self._budget())}"
            f" -> {self.level.name}"
        )


class _Throttled:
    """Re-reads at most every ``every_s`` seconds; in between, the last level stands."""

    name = "throttled"

    def __init__(self, every_s: float = SLOW_EVERY_S) -> None:
        self.every_s = every_s
        self.level = PressureLevel.NONE
        self._read_s: float | None = None

    def force(self) -> None:
        """Make the next :meth:`read` read afresh."""
        self._read_s = None

    def read(self, now: float) -> PressureLevel:
        if self._read_s is None or now - self._read_s >= self.every_s:
            self._read_s = now
            self.level = self._sample(now)
        return self._current(now)

    def _current(self, now: float) -> PressureLevel:
        return self.level

    def _sample(self, now: float) -> PressureLevel:  # pragma: no cover - abstract
        raise NotImplementedError


class CgroupInput(_Throttled):
    """The cgroup's working set (usage less inactive file pages) against its limit.

    Inside a limited cgroup the page cache counts against the limit, so this can rise
    while RSS does not.
    """

    name = "cgroup"

    def __init__(self, cgroup: Cgroup, lines: Callable[[int], ThresholdLines]) -> None:
        super().__init__()
        self._cgroup = cgroup
        self._lines = lines
        self.working_set_bytes: int | None = None
        self.limit_bytes: int | None = None

    def _sample(self, now: float) -> PressureLevel:
        usage = self._cgroup.usage()
        if usage is None or usage.limit_bytes is None:
            self.working_set_bytes = self.limit_bytes = None
            return PressureLevel.NONE
        self.working_set_bytes = usage.working_set_bytes
        self.limit_bytes = usage.limit_bytes
        return pressure_level(usage.working_set_bytes, self._lines(usage.limit_bytes), self.level)

    def explain(self) -> str | None:
        if self.working_set_bytes is None or self.limit_bytes is None:
            return None
        return (
            f"cgroup working set {format_size(self.working_set_bytes)} of limit "
            f"{format_size(self.limit_bytes)} -> {self.level.name}"
        )


class PsiInput(_Throttled):
    """PSI ``some avg10``: the share of the last 10 s some task stalled waiting for memory."""

    name = "psi"

    def __init__(self, path: Path, thresholds: tuple[float, float, float]) -> None:
        super().__init__()
        self.path = path
        self.thresholds = thresholds
        self.avg10: float | None = None
        #: False once the file could not be read: the governor stops using PSI.
        self.available = True

    def _sample(self, now: float) -> PressureLevel:
        found = read_pressure_stall(self.path) if self.available else None
        if found is None:
            self.available = False
            self.avg10 = None
            return PressureLevel.NONE
        avg = self.avg10 = found.some.avg10
        moderate, high, critical = self.thresholds
        if avg >= critical:
            return PressureLevel.CRITICAL
        if avg >= high:
            return PressureLevel.HIGH
        if avg >= moderate:
            return PressureLevel.MODERATE
        return PressureLevel.NONE

    def explain(self) -> str | None:
        if self.avg10 is None:
            return None
        return f"PSI some avg10 {self.avg10:.1f}% -> {self.level.name}"


class _Hold:
    """A level that holds until a deadline: events are moments, pressure is a state."""

    def __init__(self) -> None:
        self.level = PressureLevel.NONE
        self.until_s = 0.0

    def raise_to(self, level: PressureLevel, until_s: float) -> None:
        self.level = max(level, self.level)
        self.until_s = max(self.until_s, until_s)

    def at(self, now: float) -> PressureLevel:
        if now >= self.until_s:
            self.level = PressureLevel.NONE
        return self.level


class EventsInput(_Throttled):
    """Rising ``memory.events`` counts (v1: ``failcnt``, ``oom_kill``), held for a while.

    An OOM kill in the cgroup is CRITICAL; hitting ``memory.high``/``max`` (or v1's
    failcnt) also happens while the kernel reclaims page cache, so on its own it is
    MODERATE, not more.
    """

    name = "memory_events"

    def __init__(self, cgroup: Cgroup, hold_s: float) -> None:
        super().__init__()
        self._cgroup = cgroup
        self.hold_s = hold_s
        self._hold = _Hold()
        self._last: tuple[int, int, int] | None = None

    def _sample(self, now: float) -> PressureLevel:
        ev = self._cgroup.events()
        counts = (0, 0, 0) if ev is None else (ev.high, ev.max, ev.oom + ev.oom_kill)
        prev, self._last = self._last, counts
        if prev is not None:
            if counts[2] > prev[2]:
                self._hold.raise_to(PressureLevel.CRITICAL, now + self.hold_s)
            elif counts[1] > prev[1] or counts[0] > prev[0]:
                self._hold.raise_to(PressureLevel.MODERATE, now + self.hold_s)
        return self._hold.at(now)

    def _current(self, now: float) -> PressureLevel:
        self.level = self._hold.at(now)
        return self.level

    def explain(self) -> str | None:
        return f"memory.events rising -> {self.level.name}" if self.level else None


class KernelInput:
    """Kernel notifications (a PSI trigger fired, v1 ``memory.pressure_level``), held."""

    name = "kernel_events"

    def __init__(self) -> None:
        self._hold = _Hold()
        self.level = PressureLevel.NONE

    def note(self, level: PressureLevel, now: float, hold_s: float) -> None:
        """Hold ``level`` as a floor until ``now + hold_s``."""
        if level > PressureLevel.NONE:
            self._hold.raise_to(level, now + hold_s)

    def read(self, now: float) -> PressureLevel:
        self.level = self._hold.at(now)
        return self.level

    def explain(self) -> str | None:
        return f"kernel notification -> {self.level.name}" if self.level else None
