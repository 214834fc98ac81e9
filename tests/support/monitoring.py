"""Deterministic stand-ins for the monitor's probe and clock, and a bounded wait helper."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class FakeProbe:
    """A probe returning ``value`` (set it between samples), or the next of ``values``."""

    def __init__(self, value: int = 0, values: Iterable[int] | None = None) -> None:
        self.value = value
        self._values = iter(values) if values is not None else None
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self._values is not None:
            self.value = next(self._values, self.value)
        return self.value


class FakeClock:
    """A monotonic clock that only moves when told (``advance``) or by ``step`` per call."""

    def __init__(self, start: float = 1000.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        t = self.now
        self.now += self.step
        return t

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(cond: Callable[[], bool], *, timeout_s: float = 10.0, poll_s: float = 0.005) -> bool:
    """Poll ``cond`` until true or ``timeout_s`` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(poll_s)
    return cond()
