"""Adaptive batch processing: batch sizes learned from measured memory, with backpressure.

:class:`AdaptiveBatchProcessor` pulls items from any iterable (never materialising
it), processes them in batches, and sizes each batch from what the previous batches
cost: the peak memory per item, measured per batch, against the headroom left under
``target_usage`` of the budget. It grows the batch (doubling at first, then
additively) while there is room, cuts it multiplicatively under pressure (the
governor's level) and on ``MemoryError`` (retrying the failed items in smaller
batches down to ``min_batch``), and under high pressure waits for relief before the
next batch.

This is the playbook's "adaptive batch processing" pattern, made to survive a hard
limit: see ``docs/batching.md`` for the measurements behind the defaults.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from memwarden import tracing
from memwarden._registry import DEFAULT, DefaultType, reset_after_fork
from memwarden._units import SizeLike, format_size, parse_size
from memwarden.exceptions import (
    ConfigurationError,
    MemoryBudgetExceededError,
    PressureTimeoutError,
)
from memwarden.levels import PressureLevel
from memwarden.probes import effective_limit, peak_rss, rss
from memwarden.typing import Clock, PressureSource, Probe

__all__ = [
    "DEFAULT_CUT_FACTOR",
    "ESTIMATE_WINDOW",
    "NOISE_BYTES",
    "RELIABLE_BYTES",
    "AdaptiveBatchProcessor",
    "BatchEvent",
    "BatchSizer",
    "BatchStats",
    "process_peak_bytes",
]

log = logging.getLogger("memwarden.batch")

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_CUT_FACTOR = 0.5
"""Multiplicative cut under pressure and on MemoryError; chosen from the measurements in
docs/batching.md (the learned per-item estimate does the fine sizing, so the cut only
has to get out of trouble fast)."""

NOISE_BYTES = 256 * 1024
"""Per-batch memory deltas below this are allocator noise, not a per-item cost."""

RELIABLE_BYTES = 4 * 1024 * 1024
"""A batch that moved memory by this much gives an estimate good enough to jump on."""

ESTIMATE_WINDOW = 8
"""Batches whose per-item cost the estimate keeps (it is the largest of them)."""

_SIZE_HISTORY = 512
"""Batch sizes kept in ``BatchStats.sizes`` (about 56 KB once full; 10 000 was 0.9 MB)."""


@dataclass(frozen=True)
class BatchEvent:
    """One event of a run, passed to the ``on_batch`` hooks.

    Attributes:
        kind: ``"done"`` (a batch finished), ``"retry"`` (a batch raised MemoryError and
            will be retried smaller), ``"cut"`` (pressure cut the size) or ``"wait"``
            (the processor waited for relief).
        index: the number of batches completed so far.
        size: the batch size concerned.
        next_size: the size the next batch will have.
        duration_s: the batch's (or the wait's) duration.
        peak_bytes: memory measured at the end of the batch (peak RSS by default).
        item_bytes: the current per-item estimate, or None before any measurement.
        level: the pressure level seen before the batch.
    """

    kind: Literal["done", "retry", "cut", "wait"]
    index: int
    size: int
    next_size: int
    duration_s: float = 0.0
    peak_bytes: int | None = None
    item_bytes: float | None = None
    level: PressureLevel = PressureLevel.NONE


@dataclass
class BatchStats:
    """Counters of an :class:`AdaptiveBatchProcessor` (cumulative over its runs).

    ``sizes`` is a bounded history of ``(seconds since the run started, batch size)``:
    the last 512 batches (enough to plot how sizes adapted; a processor reused for
    days keeps no more). ``max_batch_seen`` covers every batch, not only that window.
    """

    batches: int = 0
    items: int = 0
    retries: int = 0
    cuts: int = 0
    waits: int = 0
    wait_s: float = 0.0
    wait_timeouts: int = 0
    elapsed_s: float = 0.0
    peak_bytes: int = 0
    item_bytes: float | None = None
    sizes: collections.deque[tuple[float, int]] = field(
        default_factory=lambda: collections.deque(maxlen=_SIZE_HISTORY)
    )
    _max_size: int = field(default=0, repr=False, compare=False)

    @property
    def items_per_s(self) -> float:
        return self.items / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def max_batch_seen(self) -> int:
        return max(self._max_size, max((s for _, s in self.sizes), default=0))

    def summary(self) -> str:
        est = "?" if self.item_bytes is None else format_size(int(self.item_bytes))
        return (
            f"{self.items} items in {self.batches} batches ({self.items_per_s:,.0f} items/s), "
            f"~{est}/item, peak {format_size(self.peak_bytes)}, {self.cuts} cuts, "
            f"{self.retries} MemoryError retries, {self.waits} waits ({self.wait_s:.2f} s)"
        )


# VmHWM is process-wide: one meter's reset would hide the peak of another batch running
# at the same time in another thread, so resets happen only while a single meter is
# active; with several, each reads the peak since the last reset (an overestimate: safe).
_peak_lock = threading.Lock()
_peak_meters = 0
_peak_before_resets = 0


def _new_peak_lock() -> None:
    # Another thread of the parent may have held the lock at fork time.
    global _peak_lock
    _peak_lock = threading.Lock()


reset_after_fork(_new_peak_lock)


def process_peak_bytes() -> int:
    """This process's lifetime peak RSS, including what VmHWM resets by batch meters hid."""
    return max(_peak_before_resets, peak_rss())


class _PeakMeter:
    """Measures the memory peak of one batch.

    ``"peak"``: the kernel's RSS high-water mark (``VmHWM``), reset before each batch by
    writing ``5`` to ``/proc/self/clear_refs``: exact and about 30 µs a batch, but it
    also resets this process's lifetime ``VmHWM``/``ru_maxrss``; :func:`process_peak_bytes`
    gives the lifetime peak with what the resets hid. Falls back to ``"rss"`` where the
    file is not writable.
    ``"rss"``: RSS after the batch (results still alive); misses memory freed inside
    ``process``. ``"heap"``: the tracemalloc peak (Python allocations only; slow).
    An injected ``probe`` is read before and after each batch.
    """

    def __init__(self, mode: str, probe: Probe | None) -> None:
        self.probe = probe
        self.mode = mode if probe is None else "probe"
        self.lifetime_peak_bytes = 0
        self.usage_bytes = 0
        self._fd = -1
        self._trace: tracing.TraceUser | None = None
        self._registered = False
        self._pid = os.getpid()
        if self.mode == "peak":
            try:
                self._fd = os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
            except OSError as exc:
                log.debug("VmHWM reset unavailable (%s); measuring RSS after each batch", exc)
                self.mode = "rss"
            else:
                global _peak_meters
                with _peak_lock:
                    _peak_meters += 1
                    self._registered = True
                self.lifetime_peak_bytes = process_peak_bytes()
        elif self.mode == "heap":
            self._trace = tracing.acquire(1, name="AdaptiveBatchProcessor")

    def start(self) -> int:
        """Begin a batch; return the baseline its peak is compared with.

        ``usage_bytes`` is set to the process's memory use now (what the headroom to
        the target is measured from); in ``heap`` mode it differs from the baseline.
        """
        if self.mode == "probe":
            assert self.probe is not None
            self.usage_bytes = self.probe()
            return self.usage_bytes
        if self.mode == "heap":
            assert self._trace is not None
            self.usage_bytes = rss()
            # The owner folds the peak into enclosing users before the reset.
            self._trace.reset_peak()
            return self._trace.base_bytes
        now = self.usage_bytes = rss()
        if self.mode == "peak":
            global _peak_before_resets
            with _peak_lock:
                if _peak_meters == 1:
                    _peak_before_resets = max(_peak_before_resets, peak_rss())
                    try:
                        if self._pid != os.getpid():
                            # forked: the inherited fd is the parent's /proc/<pid> file
                            os.close(self._fd)
                            self._fd = os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
                            self._pid = os.getpid()
                        os.write(self._fd, b"5")
                    except OSError:
                        self.mode = "rss"
        return now

    def stop(self) -> int:
        if self.mode == "probe":
            assert self.probe is not None
            return self.probe()
        if self.mode == "heap":
            assert self._trace is not None
            return self._trace.peak_abs()
        if self.mode == "peak":
            return peak_rss()
        return rss()

    def close(self) -> None:
        global _peak_meters
        if self._registered:
            with _peak_lock:
                _peak_meters -= 1
            self._registered = False
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self._trace is not None:
            self._trace.release()
            self._trace = None


class BatchSizer:
    """The batch-size policy: how big the next batch may be, from what earlier ones cost.

    One rule for every adaptive batcher in memwarden (:class:`AdaptiveBatchProcessor`
    and ``memwarden.integrations.dask.adaptive_map``); it does no I/O and reads no clock,
    so each caller measures in its own way and feeds the figures in:

    * the per-item cost is the largest of the last few measurements (one heavy batch
      shrinks the next at once; the window lets sizes grow back after it);
    * a batch moving memory by less than :data:`NOISE_BYTES` teaches nothing;
    * growth is a slow start (doubling) until the first batch that moved memory by
      :data:`RELIABLE_BYTES`, which sizes the next batch straight from the headroom;
      after the slow start, growth is additive (``increase`` per batch);
    * every size is capped by what the estimate says fits in the room left, and by the
      ceiling below the smallest batch that failed with ``MemoryError``;
    * ``cut`` is multiplicative (``cut_factor``), for pressure and for failures.

    Args:
        initial: the first batch's size.
        minimum, maximum: bounds on every size.
        increase: items added per batch once past the slow start.
        cut_factor: the multiplicative cut, in (0, 1).
    """

    def __init__(
        self,
        *,
        initial: int,
        minimum: int,
        maximum: int,
        increase: int,
        cut_factor: float = DEFAULT_CUT_FACTOR,
    ) -> None:
        self.size = initial
        self.minimum = minimum
        self.maximum = maximum
        self.increase = increase
        self.cut_factor = cut_factor
        self.slow_start = True
        self.recent: collections.deque[float] = collections.deque(maxlen=ESTIMATE_WINDOW)
        self.hold = False
        """Set by the caller under moderate pressure: keep the size, do not grow."""
        self.reliable = False
        # The smallest batch that raised MemoryError, less one: growth never goes back
        # above it (items can vary, but retrying a failed size is the costliest move).
        self.ceiling: int | None = None

    @property
    def estimate(self) -> float | None:
        """Bytes per item: the largest recent measurement, or None before one."""
        # Conservative on purpose: an underestimate is what gets a process killed
        # under a hard limit.
        return max(self.recent) if self.recent else None

    def cut(self, size: int) -> int:
        """A size below ``size`` (by ``cut_factor``, at least one less); ends the slow start."""
        self.slow_start = False
        return max(self.minimum, min(size - 1, math.floor(size * self.cut_factor)))

    def failed(self, n: int) -> int:
        """A batch of ``n`` raised ``MemoryError``: cut, keep the ceiling, return the new size."""
        self.size = self.cut(n)
        self.ceiling = max(
            self.minimum, n - 1 if self.ceiling is None else min(self.ceiling, n - 1)
        )
        return self.size

    def cap(self, room_bytes: int | None) -> int:
        """The largest batch the estimate says fits in ``room_bytes`` (None: room unknown)."""
        est = self.estimate
        if room_bytes is None or est is None or est <= 0:
            return self.maximum
        return max(self.minimum, min(self.maximum, math.floor(room_bytes / est)))

    def fit(self, room_bytes: int | None) -> int:
        """The current size, cut to what fits in ``room_bytes`` now (without changing it)."""
        return max(self.minimum, min(self.size, self.cap(room_bytes)))

    def observe(self, n: int, used_bytes: int) -> None:
        """Learn from a finished batch of ``n`` items that moved memory by ``used_bytes``."""
        if used_bytes >= NOISE_BYTES:
            self.recent.append(used_bytes / n)
            if used_bytes >= RELIABLE_BYTES:
                self.reliable = True

    def next_size(self, n: int, room_bytes: int | None) -> int:
        """The size after a good batch of ``n`` with ``room_bytes`` left (kept as ``size``)."""
        if self.hold:
            grown = self.size
        elif self.slow_start and self.reliable:
            # One batch that moved memory by a clear margin is enough to size the next
            # one straight from the headroom: the target's margin absorbs the error,
            # and ramping up by doubling cost ~7 % of throughput in the proof workload.
            grown = self.maximum
        elif self.slow_start:
            grown = max(self.size, n) * 2
        else:
            grown = self.size + self.increase
        cap = self.cap(room_bytes)
        if grown > cap and self.estimate is not None:
            self.slow_start = False
        if self.ceiling is not None:
            cap = min(cap, self.ceiling)
        self.size = max(self.minimum, min(grown, cap, self.maximum))
        return self.size


class AdaptiveBatchProcessor(Generic[T, R]):
    """Process an iterable in batches whose size adapts to measured memory and pressure.

    Args:
        process: called with a ``list`` of items; returns an iterable of results (one
            per item, yielded in order by :meth:`run`) or None. An ``async def`` works
            with :meth:`arun`; a plain function used by ``arun`` runs in a thread.
        max_memory: the budget, as bytes or a size string (``"300 MiB"``); default
            the tightest limit on this process (cgroup, rlimit or physical memory).
        target_usage: the fraction of ``max_memory`` batches may fill (default 0.7):
            the margin absorbs items that cost more than the estimate.
        min_batch, max_batch: bounds on the batch size.
        initial_batch: the first batch's size (default ``min(max_batch, max(min_batch, 8))``).
        increase: items added per batch once past the slow start (default
            ``max(1, initial_batch // 2)``).
        cut_factor: multiplicative cut under pressure and on MemoryError (0 < f < 1).
        governor: where pressure is read: :data:`~memwarden.pressure.DEFAULT` (the
            default) for the process-wide ``memwarden.pressure.governor()``, resolved
            on first use; ``None`` for none (batches then adapt to measured memory
            only); or a :class:`~memwarden.pressure.Governor` or any
            :class:`~memwarden.typing.PressureSource`. ``False`` is a deprecated
            spelling of ``None``.
        pressure_timeout_s: the longest wait for relief before a batch.
        on_pressure_timeout: ``"continue"`` (log, continue at ``min_batch``) or ``"raise"``
            (raise :class:`~memwarden.exceptions.PressureTimeoutError`).
        measure: ``"peak"`` (kernel RSS high-water mark per batch, the default),
            ``"rss"`` (RSS after the batch) or ``"heap"`` (tracemalloc peak); see
            :class:`_PeakMeter` for the trade-offs.
        probe: an injected memory probe read before and after each batch (tests).
        clock: monotonic seconds (injectable).
        on_batch: a hook or a sequence of hooks called with a :class:`BatchEvent` after
            every batch, retry, cut and wait; exceptions in hooks are logged, not raised.
        progress: show a rich progress bar of items on stderr.

    Raises:
        ConfigurationError: an argument is out of range; the message names it.
    """

    def __init__(
        self,
        process: Callable[[list[T]], Iterable[R] | Awaitable[Iterable[R] | None] | None],
        *,
        max_memory: SizeLike | None = None,
        target_usage: float = 0.7,
        min_batch: int = 1,
        max_batch: int = 10_000,
        initial_batch: int | None = None,
        increase: int | None = None,
        cut_factor: float = DEFAULT_CUT_FACTOR,
        governor: PressureSource | DefaultType | Literal[False] | None = DEFAULT,
        pressure_timeout_s: float = 60.0,
        on_pressure_timeout: Literal["continue", "raise"] = "continue",
        measure: Literal["peak", "rss", "heap"] = "peak",
        probe: Probe | None = None,
        clock: Clock = time.monotonic,
        on_batch: Callable[[BatchEvent], object]
        | Sequence[Callable[[BatchEvent], object]]
        | None = None,
        progress: bool = False,
    ) -> None:
        if not callable(process):
            raise ConfigurationError(
                f"process={process!r} is not callable", value=process, source="process"
            )
        self.process = process
        self.max_memory_bytes = (
            parse_size(max_memory, source="max_memory")
            if max_memory is not None
            else effective_limit().limit_bytes
        )
        if self.max_memory_bytes <= 0:
            raise ConfigurationError(
                f"max_memory={max_memory!r}: expected a positive size",
                value=max_memory,
                source="max_memory",
            )
        if not 0 < target_usage <= 1:
            raise ConfigurationError(
                f"target_usage={target_usage!r}: expected a fraction in (0, 1]",
                value=target_usage,
                source="target_usage",
            )
        for name, value in (("min_batch", min_batch), ("max_batch", max_batch)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(
                    f"{name}={value!r}: expected an int >= 1", value=value, source=name
                )
        if max_batch < min_batch:
            raise ConfigurationError(
                f"max_batch={max_batch!r} is below min_batch={min_batch!r}",
                value=max_batch,
                source="max_batch",
            )
        if initial_batch is None:
            initial_batch = min(max_batch, max(min_batch, 8))
        if not isinstance(initial_batch, int) or not min_batch <= initial_batch <= max_batch:
            raise ConfigurationError(
                f"initial_batch={initial_batch!r}: expected an int in "
                f"[min_batch={min_batch}, max_batch={max_batch}]",
                value=initial_batch,
                source="initial_batch",
            )
        if increase is None:
            increase = max(1, initial_batch // 2)
        if not isinstance(increase, int) or increase < 1:
            raise ConfigurationError(
                f"increase={increase!r}: expected an int >= 1", value=increase, source="increase"
            )
        if not 0 < cut_factor < 1:
            raise ConfigurationError(
                f"cut_factor={cut_factor!r}: expected a fraction in (0, 1)",
                value=cut_factor,
                source="cut_factor",
            )
        if pressure_timeout_s < 0:
            raise ConfigurationError(
                f"pressure_timeout_s={pressure_timeout_s!r}: expected seconds >= 0",
                value=pressure_timeout_s,
                source="pressure_timeout_s",
            )
        if on_pressure_timeout not in ("continue", "raise"):
            raise ConfigurationError(
                f"on_pressure_timeout={on_pressure_timeout!r}: expected 'continue' or 'raise'",
                value=on_pressure_timeout,
                source="on_pressure_timeout",
            )
        if measure not in ("peak", "rss", "heap"):
            raise ConfigurationError(
                f"measure={measure!r}: expected 'peak', 'rss' or 'heap'",
                value=measure,
                source="measure",
            )
        self.target_usage = target_usage
        self.target_bytes = int(self.max_memory_bytes * target_usage)
        self.min_batch = min_batch
        self.max_batch = max_batch
        self.initial_batch = initial_batch
        self.increase = increase
        self.cut_factor = cut_factor
        if governor is False:
            warnings.warn(
                "AdaptiveBatchProcessor(governor=None) is deprecated: pass governor=None "
                "for no governor (DEFAULT is the process-wide one)",
                DeprecationWarning,
                stacklevel=2,
            )
            governor = None
        elif (
            governor is not None
            and governor is not DEFAULT
            and not callable(getattr(governor, "level", None))
        ):
            raise ConfigurationError(
                f"governor={governor!r}: expected DEFAULT, None or an object with level() "
                "and wait_for_relief()",
                value=governor,
                source="governor",
            )
        self._governor_arg: PressureSource | DefaultType | None = governor
        self._governor: PressureSource | None = None
        self._governor_resolved = False
        self.pressure_timeout_s = pressure_timeout_s
        self.on_pressure_timeout = on_pressure_timeout
        self.measure = measure
        self.probe = probe
        self.clock = clock
        if on_batch is None:
            self._hooks: list[Callable[[BatchEvent], object]] = []
        elif callable(on_batch):
            self._hooks = [on_batch]
        else:
            self._hooks = list(on_batch)
        self.progress = progress
        self.stats = BatchStats()

    # -- collaborators -------------------------------------------------------

    @property
    def governor(self) -> PressureSource | None:
        """The pressure source in use (resolved lazily), or None when disabled."""
        if not self._governor_resolved:
            self._governor_resolved = True
            if self._governor_arg is not DEFAULT:
                self._governor = self._governor_arg
            else:
                try:
                    from memwarden.pressure import governor as _default_governor

                    self._governor = _default_governor()
                except Exception:  # no governor: batches still adapt to measured memory
                    log.warning("no process-wide governor; pressure is not watched", exc_info=True)
                    self._governor = None
        return self._governor

    def _sizer(self) -> BatchSizer:
        return BatchSizer(
            initial=self.initial_batch,
            minimum=self.min_batch,
            maximum=self.max_batch,
            increase=self.increase,
            cut_factor=self.cut_factor,
        )

    def _level(self) -> PressureLevel:
        gov = self.governor
        if gov is None:
            return PressureLevel.NONE
        try:
            return PressureLevel(gov.level())
        except Exception:
            log.warning("governor.level() failed; treating as no pressure", exc_info=True)
            return PressureLevel.NONE

    def _emit(self, event: BatchEvent) -> None:
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                log.exception("on_batch hook %r failed on %s", hook, event.kind)

    def _take(self, pending: collections.deque[T], it: Iterator[T], n: int) -> list[T]:
        batch: list[T] = []
        while pending and len(batch) < n:
            batch.append(pending.popleft())
        if len(batch) < n:
            batch.extend(itertools.islice(it, n - len(batch)))
        return batch

    def _memory_error(
        self,
        ctl: BatchSizer,
        batch: list[T],
        pending: collections.deque[T],
        exc: MemoryError,
        first_size: int,
    ) -> list[T]:
        """Cut after a MemoryError: push the tail back, return the smaller batch to retry."""
        n = len(batch)
        self.stats.retries += 1
        if n <= self.min_batch:
            raise MemoryBudgetExceededError(
                f"a batch of {n} item(s) still raised MemoryError after cutting from "
                f"{first_size} (min_batch={self.min_batch}, cut_factor={self.cut_factor}); "
                f"rss {format_size(rss())}, budget {format_size(self.max_memory_bytes)}",
                peak_bytes=rss(),
                limit_bytes=self.max_memory_bytes,
            ) from exc
        new = ctl.failed(n)
        for item in reversed(batch[new:]):
            pending.appendleft(item)
        log.info("MemoryError in a batch of %d; retrying with %d", n, new)
        self._emit(BatchEvent("retry", self.stats.batches, n, new, item_bytes=ctl.estimate))
        return batch[:new]

    def _before_batch(self, ctl: BatchSizer) -> bool:
        """Apply the pressure level to the size; True when the processor must wait."""
        level = self._level()
        ctl.hold = level >= PressureLevel.MODERATE
        if level >= PressureLevel.HIGH:
            old = ctl.size
            ctl.size = ctl.cut(old)
            self.stats.cuts += 1
            self._emit(BatchEvent("cut", self.stats.batches, old, ctl.size, level=level))
            return True
        return False

    def _after_wait(self, ctl: BatchSizer, waited_s: float, exc: Exception | None) -> None:
        self.stats.waits += 1
        self.stats.wait_s += waited_s
        if exc is not None:
            self.stats.wait_timeouts += 1
            if self.on_pressure_timeout == "raise":
                raise exc
            log.warning("%s; continuing with batches of %d", exc, self.min_batch)
            ctl.size = self.min_batch
        self._emit(BatchEvent("wait", self.stats.batches, ctl.size, ctl.size, waited_s))

    def _after_batch(
        self,
        ctl: BatchSizer,
        n: int,
        base: int,
        peak: int,
        usage: int,
        *,
        duration_s: float,
        t0: float,
    ) -> None:
        ctl.observe(n, peak - base)
        st = self.stats
        st.batches += 1
        st.items += n
        st.peak_bytes = max(st.peak_bytes, peak)
        st.item_bytes = ctl.estimate
        st.sizes.append((self.clock() - t0, n))
        st._max_size = max(st._max_size, n)
        ctl.next_size(n, self.target_bytes - usage)
        self._emit(BatchEvent("done", st.batches, n, ctl.size, duration_s, peak, ctl.estimate))

    def _bar(self, items: object) -> Any:
        if not self.progress:
            return None
        from rich.console import Console  # lazy: rich is heavy
        from rich.progress import Progress

        total = len(items) if hasattr(items, "__len__") else None
        bar = Progress(transient=False, console=Console(stderr=True))
        bar.start()
        bar.add_task("batches", total=total)
        return bar

    # -- sync ----------------------------------------------------------------

    def run(self, items: Iterable[T]) -> Iterator[R]:
        """Process ``items`` in adaptive batches; yield the results in input order.

        The input is pulled lazily, one batch at a time; only the current batch (and,
        after a MemoryError, its not-yet-retried tail) is held.

        Raises:
            MemoryBudgetExceededError: a batch of ``min_batch`` items still raised
                MemoryError (chained to it).
            PressureTimeoutError: pressure outlasted ``pressure_timeout_s`` and
                ``on_pressure_timeout="raise"``.
        """
        import inspect

        if inspect.iscoroutinefunction(self.process):
            raise ConfigurationError(
                f"process={self.process!r} is async; use arun()",
                value=self.process,
                source="process",
            )
        return self._run(items)

    def _run(self, items: Iterable[T]) -> Iterator[R]:
        ctl = self._sizer()
        meter = _PeakMeter(self.measure, self.probe)
        it = iter(items)
        pending: collections.deque[T] = collections.deque()
        t0 = self.clock()
        prior_s = self.stats.elapsed_s  # stats are cumulative over runs
        bar = self._bar(items)
        try:
            while True:
                must_wait = self._before_batch(ctl)
                if must_wait:
                    self._wait_sync(ctl)
                batch = self._take(pending, it, ctl.size)
                if not batch:
                    return
                first_size = len(batch)
                while True:
                    base = meter.start()
                    b0 = self.clock()
                    try:
                        results = self.process(batch)
                        if results is not None and not isinstance(results, list):
                            results = list(results)  # type: ignore[arg-type]
                    except MemoryError as exc:
                        batch = self._memory_error(ctl, batch, pending, exc, first_size)
                        continue
                    break
                peak = meter.stop()
                n = len(batch)
                del batch
                self._after_batch(
                    ctl, n, base, peak, meter.usage_bytes, duration_s=self.clock() - b0, t0=t0
                )
                self.stats.elapsed_s = prior_s + self.clock() - t0
                if bar is not None:
                    bar.advance(bar.task_ids[0], n)
                if results is not None:
                    yield from results
                    del results
        finally:
            self.stats.elapsed_s = prior_s + self.clock() - t0
            meter.close()
            if bar is not None:
                bar.stop()

    def _wait_sync(self, ctl: BatchSizer) -> None:
        gov = self.governor
        if gov is None:
            return
        w0 = self.clock()
        err: Exception | None = None
        try:
            gov.wait_for_relief(self.pressure_timeout_s)
        except PressureTimeoutError as exc:
            err = exc
        except Exception:
            log.warning("governor.wait_for_relief() failed", exc_info=True)
        self._after_wait(ctl, self.clock() - w0, err)

    def run_all(self, items: Iterable[T]) -> list[R]:
        """``list(self.run(items))``: every result, in order."""
        return list(self.run(items))

    # -- async ---------------------------------------------------------------

    def arun(self, items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[R]:
        """The asyncio form of :meth:`run`: an async iterator of results in order.

        ``items`` may be an iterable or an async iterable. An ``async def process`` is
        awaited; a plain one runs in a worker thread. Waiting for relief does not block
        the event loop.
        """
        return self._arun(items)

    async def _arun(self, items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[R]:
        import asyncio
        import inspect

        ctl = self._sizer()
        meter = _PeakMeter(self.measure, self.probe)
        pending: collections.deque[T] = collections.deque()
        is_async = isinstance(items, AsyncIterable)
        ait = aiter(items) if isinstance(items, AsyncIterable) else None
        sit = iter(items) if not isinstance(items, AsyncIterable) else None
        exhausted = False
        t0 = self.clock()
        prior_s = self.stats.elapsed_s  # stats are cumulative over runs
        bar = self._bar(items)

        async def take(n: int) -> list[T]:
            nonlocal exhausted
            if not is_async:
                assert sit is not None
                return self._take(pending, sit, n)
            batch: list[T] = []
            while pending and len(batch) < n:
                batch.append(pending.popleft())
            assert ait is not None
            while len(batch) < n and not exhausted:
                try:
                    batch.append(await anext(ait))
                except StopAsyncIteration:
                    exhausted = True
            return batch

        is_coro = inspect.iscoroutinefunction(self.process)
        try:
            while True:
                must_wait = self._before_batch(ctl)
                if must_wait:
                    await self._wait_async(ctl)
                batch = await take(ctl.size)
                if not batch:
                    return
                first_size = len(batch)
                while True:
                    base = meter.start()
                    b0 = self.clock()
                    try:
                        if is_coro:
                            results = await self.process(batch)  # type: ignore[misc]
                        else:
                            results = await asyncio.to_thread(self.process, batch)
                        if results is not None and not isinstance(results, list):
                            results = list(results)
                    except MemoryError as exc:
                        batch = self._memory_error(ctl, batch, pending, exc, first_size)
                        continue
                    break
                peak = meter.stop()
                n = len(batch)
                del batch
                self._after_batch(
                    ctl, n, base, peak, meter.usage_bytes, duration_s=self.clock() - b0, t0=t0
                )
                self.stats.elapsed_s = prior_s + self.clock() - t0
                if bar is not None:
                    bar.advance(bar.task_ids[0], n)
                if results is not None:
                    for r in results:
                        yield r
                    del results
        finally:
            self.stats.elapsed_s = prior_s + self.clock() - t0
            meter.close()
            if bar is not None:
                bar.stop()

    async def _wait_async(self, ctl: BatchSizer) -> None:
        import asyncio

        gov = self.governor
        if gov is None:
            return
        w0 = self.clock()
        err: Exception | None = None
        try:
            waiter = getattr(gov, "async_wait_for_relief", None)
            if waiter is not None:
                await waiter(self.pressure_timeout_s)
            else:
                await asyncio.to_thread(gov.wait_for_relief, self.pressure_timeout_s)
        except PressureTimeoutError as exc:
            err = exc
        except Exception:
            log.warning("governor wait for relief failed", exc_info=True)
        self._after_wait(ctl, self.clock() - w0, err)
