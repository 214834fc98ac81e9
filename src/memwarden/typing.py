"""Protocols shared across layers, so siblings depend on shapes rather than on each other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = [
    "Clock",
    "PressureSource",
    "Probe",
    "Reliever",
    "RssSample",
    "SampleSource",
    "SupportsAcquire",
    "SupportsShrink",
    "SupportsUnsubscribe",
]

Clock = Callable[[], float]
"""A monotonic clock in seconds, such as ``time.monotonic``; injectable for tests."""

Probe = Callable[[], int]
"""Returns the current memory usage in bytes, such as ``memwarden.rss``; injectable for tests."""

Reliever = Callable[[], "int | None"]
"""Frees memory when called; returns the bytes it expects to have freed, or None."""


@runtime_checkable
class SupportsShrink(Protocol):
    """Something that can give memory back, such as a cache or a pool."""

    def shrink(self, fraction: float = 0.5) -> int:
        """Drop about ``fraction`` of what is held; return the bytes released (estimate)."""
        ...


class BufferHandle(Protocol):
    """A pooled buffer on loan: ``view`` is valid until ``release()``."""

    @property
    def view(self) -> memoryview: ...

    def release(self) -> None: ...


@runtime_checkable
class SupportsAcquire(Protocol):
    """A buffer pool, as accepted by streaming helpers."""

    def acquire(self, size: int) -> BufferHandle: ...


class SupportsUnsubscribe(Protocol):
    """A subscription handle, such as :class:`memwarden._registry.Subscription`."""

    def unsubscribe(self) -> None: ...


class RssSample(Protocol):
    """One memory sample: at least the resident set size it measured."""

    @property
    def rss_bytes(self) -> int: ...


class SampleSource(Protocol):
    """What feeds the governor samples: a :class:`memwarden.monitoring.MemoryMonitor`."""

    def on_sample(self, callback: Callable[[RssSample], None], /) -> SupportsUnsubscribe: ...


class PressureSource(Protocol):
    """What a producer needs from a governor to hold back: the level, and a bounded wait.

    ``memwarden.pressure.Governor`` is one. ``level()`` returns a
    ``memwarden.pressure.PressureLevel`` (an ``IntEnum``, so a stand-in may return its
    int values, 0 NONE to 3 CRITICAL); ``wait_for_relief(timeout)`` returns once the
    pressure is over, or raises ``PressureTimeoutError`` after ``timeout`` seconds.
    Accepted by ``memwarden.stream.Pipeline`` and ``memwarden.batch.AdaptiveBatchProcessor``.
    """

    def level(self) -> int: ...

    def wait_for_relief(self, timeout: float | None = None) -> None: ...
