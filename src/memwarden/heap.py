"""The Python heap: tracemalloc sessions with top allocation sites, and gc object counts.

``HeapSession`` holds tracing through :mod:`memwarden.tracing` (started if it
was off and stopped again, its peak folded for any enclosing user), so a block's
exact Python-heap peak and its top sites can be measured without disturbing an
outer session. ``top_sites`` groups a
snapshot diff by ``file:line`` and keeps memwarden's own frames out of it.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memwarden import heapdump

from memwarden import tracing

__all__ = [
    "AllocationSite",
    "HeapSession",
    "dump",
    "gc_type_counts",
    "growing_types",
    "memwarden_filters",
    "top_sites",
]


def memwarden_filters() -> list[tracemalloc.Filter]:
    """Filters that keep memwarden's own and tracemalloc's frames out of a snapshot."""
    return [
        tracemalloc.Filter(False, f"{tracing.PACKAGE_DIR}*"),
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, "<unknown>"),
    ]


@dataclass(frozen=True)
class AllocationSite:
    """Memory allocated at one source line.

    Attributes:
        filename: the source file.
        lineno: the line.
        size_bytes: bytes allocated there (a growth when from a diff).
        count: blocks allocated there (a growth when from a diff).
    """

    filename: str
    lineno: int
    size_bytes: int
    count: int

    @property
    def where(self) -> str:
        """``file:line``."""
        return f"{self.filename}:{self.lineno}"


def top_sites(
    after: tracemalloc.Snapshot,
    before: tracemalloc.Snapshot | None = None,
    *,
    limit: int = 10,
    include_memwarden: bool = False,
) -> list[AllocationSite]:
    """The largest allocation sites in ``after`` (or growth since ``before``), by ``file:line``.

    Sites that shrank are left out of a diff. memwarden's own frames are filtered
    unless ``include_memwarden``.
    """
    if not include_memwarden:
        after = after.filter_traces(memwarden_filters())
        if before is not None:
            before = before.filter_traces(memwarden_filters())
    stats: Iterable[tracemalloc.StatisticDiff | tracemalloc.Statistic]
    if before is None:
        stats = after.statistics("lineno")
        sites = [
            AllocationSite(s.traceback[0].filename, s.traceback[0].lineno, s.size, s.count)
            for s in stats
        ]
    else:
        diffs = after.compare_to(before, "lineno")
        sites = [
            AllocationSite(
                d.traceback[0].filename, d.traceback[0].lineno, d.size_diff, d.count_diff
            )
            for d in diffs
            if d.size_diff > 0
        ]
    sites.sort(key=lambda s: s.size_bytes, reverse=True)
    return sites[:limit]


class HeapSession:
    """Measure the Python heap of a block exactly with tracemalloc.

    Example::

        with HeapSession() as heap:
            work()
        heap.peak_bytes, heap.delta_bytes, heap.top_sites()

    Args:
        frames: traceback depth to record when this session starts tracemalloc.
        snapshots: take start/end snapshots so :meth:`top_sites` can diff them
            (costs a walk of every traced block; off when only the peak is needed).
    """

    def __init__(self, *, frames: int = 1, snapshots: bool = True) -> None:
        self._frames = frames
        self._snapshots = snapshots
        self._user: tracing.TraceUser | None = None
        self.peak_bytes = 0
        self.delta_bytes = 0
        self._before: tracemalloc.Snapshot | None = None
        self._after: tracemalloc.Snapshot | None = None
        self._peak_snapshot: tracemalloc.Snapshot | None = None

    def __enter__(self) -> HeapSession:
        user = tracing.acquire(self._frames, name="HeapSession", reset_peak=not self._snapshots)
        if self._snapshots:
            self._before = tracemalloc.take_snapshot()
            user.reset_peak()  # after the snapshot: its own cost is not the block's
        self._user = user
        return self

    def current_peak_bytes(self) -> int:
        """The peak so far above the starting level (callable inside the block)."""
        return 0 if self._user is None else self._user.peak_bytes()

    def snapshot_now(self) -> None:
        """Keep a snapshot taken now (e.g. at the suspected peak) for :meth:`top_sites`."""
        self._peak_snapshot = tracemalloc.take_snapshot()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        user, self._user = self._user, None
        if user is None:
            return
        self.peak_bytes = user.peak_bytes()
        self.delta_bytes = user.current_bytes()
        if self._snapshots and tracemalloc.is_tracing():
            self._after = tracemalloc.take_snapshot()
        user.release()

    def top_sites(self, limit: int = 10, *, at_peak: bool = False) -> list[AllocationSite]:
        """Sites that grew in the block (``at_peak``: as of :meth:`snapshot_now`)."""
        after = self._peak_snapshot if at_peak and self._peak_snapshot else self._after
        if after is None:
            return []
        return top_sites(after, self._before, limit=limit)


def gc_type_counts(*, generation: int | None = None) -> dict[str, int]:
    """Live gc-tracked objects per type name (``module.Qualname`` for non-builtins)."""
    counts: dict[str, int] = {}
    objs = gc.get_objects() if generation is None else gc.get_objects(generation)
    for obj in objs:
        t = type(obj)
        mod = t.__module__
        name = t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def growing_types(
    before: dict[str, int], after: dict[str, int], *, limit: int = 10
) -> list[tuple[str, int]]:
    """Type names whose live count grew, largest growth first."""
    grown = [(n, after[n] - before.get(n, 0)) for n in after if after[n] > before.get(n, 0)]
    grown.sort(key=lambda x: x[1], reverse=True)
    return grown[:limit]


def dump(path: str | os.PathLike[str], *, collect: bool = True) -> heapdump.DumpStats:
    """Write a V8 ``.heapsnapshot`` of this process's objects to ``path`` (a new file).

    Chrome DevTools (Memory tab, Load) and memlab read it; ``memwarden heap top|why``
    analyse it. See :func:`memwarden.heapdump.dump`.
    """
    from memwarden import heapdump as _heapdump

    return _heapdump.dump(path, collect=collect)
