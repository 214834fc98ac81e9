"""Point-in-time memory snapshots of this process and the deltas between them.

``snapshot()`` gathers, in one call, what the playbook's ``process.memoryUsage()``
gives a Node program and more: RSS, VMS, peak RSS, the Python heap (when
tracemalloc traces), allocator blocks, gc counts and threads. ``detail=True``
adds USS/PSS (``/proc/self/smaps_rollup``) and live object counts per type.
Snapshots and deltas are frozen and JSON-serialisable (``to_dict``/``from_dict``).
"""

from __future__ import annotations

import _tracemalloc as tracemalloc  # the C functions only: tracemalloc.py imports pickle, linecache
import gc
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from memwarden._units import format_size
from memwarden.exceptions import ConfigurationError
from memwarden.probes import peak_rss, rss, vms

__all__ = ["MemoryDelta", "MemorySnapshot", "snapshot"]


@dataclass(frozen=True)
class MemorySnapshot:
    """Memory facts about this process at one moment.

    Attributes:
        wall_time_s: ``time.time()`` when taken.
        monotonic_s: ``time.monotonic()`` when taken (use for durations).
        rss_bytes: resident set size.
        vms_bytes: virtual memory size.
        peak_rss_bytes: the process's peak RSS so far (VmHWM).
        python_heap_bytes: bytes traced by tracemalloc, or None when not tracing.
        python_heap_peak_bytes: tracemalloc's peak, or None when not tracing.
        allocated_blocks: ``sys.getallocatedblocks()``.
        gc_counts: objects tracked per gc generation (``gc.get_count()``).
        thread_count: live Python threads.
        uss_bytes: unique set size (detail only).
        pss_bytes: proportional set size (detail only).
        object_counts: live gc-tracked objects per type name (detail only).
        label: an optional name for the snapshot.
    """

    wall_time_s: float
    monotonic_s: float
    rss_bytes: int
    vms_bytes: int
    peak_rss_bytes: int
    python_heap_bytes: int | None
    python_heap_peak_bytes: int | None
    allocated_blocks: int
    gc_counts: tuple[int, int, int]
    thread_count: int
    uss_bytes: int | None = None
    pss_bytes: int | None = None
    object_counts: dict[str, int] | None = None
    label: str | None = None

    def __sub__(self, other: MemorySnapshot) -> MemoryDelta:
        if not isinstance(other, MemorySnapshot):
            return NotImplemented
        return MemoryDelta.between(other, self)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as JSON-ready values."""
        out = asdict(self)
        out["gc_counts"] = list(self.gc_counts)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemorySnapshot:
        """Rebuild a snapshot from :meth:`to_dict` output.

        Raises:
            ConfigurationError: a field is missing or of the wrong type.
        """
        return _from_dict(cls, data)

    def summary(self) -> str:
        """One line a person can read."""
        heap = (
            f", python heap {format_size(self.python_heap_bytes)}"
            if self.python_heap_bytes is not None
            else ""
        )
        return (
            f"rss {format_size(self.rss_bytes)} (peak {format_size(self.peak_rss_bytes)})"
            f"{heap}, {self.allocated_blocks} blocks, {self.thread_count} threads"
        )


@dataclass(frozen=True)
class MemoryDelta:
    """The difference ``after - before`` of two snapshots (the playbook's ``MemoryDelta``).

    Fields that either snapshot lacks are None.
    """

    duration_s: float
    rss_bytes: int
    vms_bytes: int
    peak_rss_bytes: int
    python_heap_bytes: int | None
    allocated_blocks: int
    uss_bytes: int | None = None
    object_counts: dict[str, int] | None = None
    before_label: str | None = None
    after_label: str | None = None

    @classmethod
    def between(cls, before: MemorySnapshot, after: MemorySnapshot) -> MemoryDelta:
        """``after - before``."""

        def diff(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None else b - a

        objects: dict[str, int] | None = None
        if before.object_counts is not None and after.object_counts is not None:
            names = set(before.object_counts) | set(after.object_counts)
            objects = {
                n: d
                for n in sorted(names)
                if (d := after.object_counts.get(n, 0) - before.object_counts.get(n, 0))
            }
        return cls(
            duration_s=after.monotonic_s - before.monotonic_s,
            rss_bytes=after.rss_bytes - before.rss_bytes,
            vms_bytes=after.vms_bytes - before.vms_bytes,
            peak_rss_bytes=after.peak_rss_bytes - before.peak_rss_bytes,
            python_heap_bytes=diff(before.python_heap_bytes, after.python_heap_bytes),
            allocated_blocks=after.allocated_blocks - before.allocated_blocks,
            uss_bytes=diff(before.uss_bytes, after.uss_bytes),
            object_counts=objects,
            before_label=before.label,
            after_label=after.label,
        )

    @property
    def heap_used_bytes(self) -> int | None:
        """The playbook's ``heapUsed`` delta: the Python heap change when traced."""
        return self.python_heap_bytes

    def to_dict(self) -> dict[str, Any]:
        """The delta as JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryDelta:
        """Rebuild a delta from :meth:`to_dict` output."""
        return _from_dict(cls, data)

    def summary(self) -> str:
        """One line a person can read."""
        heap = (
            f", python heap {_signed_size(self.python_heap_bytes)}"
            if self.python_heap_bytes is not None
            else ""
        )
        return (
            f"rss {_signed_size(self.rss_bytes)}{heap}, "
            f"{self.allocated_blocks:+d} blocks in {self.duration_s:.3f} s"
        )


def _signed_size(n: int) -> str:
    # A delta reads as one: "+212.0 MiB" grew, "-3.1 MiB" shrank.
    return format_size(n) if n < 0 else "+" + format_size(n)


_T = TypeVar("_T", MemorySnapshot, MemoryDelta)


def _from_dict(cls: type[_T], data: dict[str, Any]) -> _T:
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{cls.__name__}.from_dict: expected a dict, got {type(data).__name__}"
        )
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigurationError(
            f"{cls.__name__}.from_dict: unknown fields {sorted(unknown)}", value=sorted(unknown)
        )
    kwargs = dict(data)
    if "gc_counts" in kwargs:
        counts = kwargs["gc_counts"]
        if not (isinstance(counts, list | tuple) and len(counts) == 3):
            raise ConfigurationError(
                f"{cls.__name__}.from_dict: gc_counts={counts!r}: expected three integers",
                value=counts,
            )
        kwargs["gc_counts"] = tuple(int(c) for c in counts)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigurationError(f"{cls.__name__}.from_dict: {exc}") from exc


def _smaps_rollup() -> tuple[int | None, int | None]:
    """USS (private clean + dirty) and PSS in bytes from smaps_rollup; None where absent."""
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        try:
            import psutil

            full = psutil.Process().memory_full_info()
            return int(full.uss), int(getattr(full, "pss", 0)) or None
        except Exception:  # detail is best effort on other platforms
            return None, None
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            values[parts[0][:-1]] = int(parts[1]) * 1024
    uss = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return uss, values.get("Pss")


def snapshot(*, detail: bool = False, label: str | None = None) -> MemorySnapshot:
    """Take a :class:`MemorySnapshot` of this process.

    Args:
        detail: also read USS/PSS and count live objects per type (slower:
            walks every gc-tracked object).
        label: a name to carry with the snapshot.
    """
    tracing = tracemalloc.is_tracing()
    heap, heap_peak = tracemalloc.get_traced_memory() if tracing else (None, None)
    uss = pss = None
    objects = None
    if detail:
        from memwarden.heap import gc_type_counts  # lazy: heap imports tracemalloc.py

        uss, pss = _smaps_rollup()
        objects = gc_type_counts()
    counts = gc.get_count()
    return MemorySnapshot(
        wall_time_s=time.time(),
        monotonic_s=time.monotonic(),
        rss_bytes=rss(),
        vms_bytes=vms(),
        peak_rss_bytes=peak_rss(),
        python_heap_bytes=heap,
        python_heap_peak_bytes=heap_peak,
        allocated_blocks=sys.getallocatedblocks(),
        gc_counts=(counts[0], counts[1], counts[2]),
        thread_count=threading.active_count(),
        uss_bytes=uss,
        pss_bytes=pss,
        object_counts=objects,
        label=label,
    )
