"""Continuous memory monitoring: a cheap sampler thread, levels with hysteresis, ``track()``.

:class:`MemoryMonitor` samples RSS (and the Python heap while ``tracemalloc`` traces)
every ``config.monitoring_interval_s`` on a daemon thread, keeps the samples in a
fixed-size ring (memory stays flat however long it runs), classifies usage as
``OK < WARNING < CRITICAL`` against ``config.max_memory_bytes`` with hysteresis, and
calls subscribers. :func:`track` measures one operation (the playbook's
``beforeOperation``/``afterOperation``) and aggregates the results per name.
:func:`monitor` returns the process-wide default monitor, created on first use.
"""

from __future__ import annotations

import _tracemalloc as tracemalloc  # the C functions only: tracemalloc.py imports pickle, linecache
import contextvars
import dataclasses
import functools
import gc
import inspect
import logging
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar, cast

from memwarden import _registry
from memwarden import tracing as _tracing
from memwarden._registry import Subscribers, Subscription, reset_after_fork
from memwarden._units import format_size
from memwarden.exceptions import DisposedError, MemwardenError
from memwarden.levels import MONITOR_LEVELS, Level, monitor_level
from memwarden.probes import rss

if TYPE_CHECKING:
    from memwarden._stats import Trend
    from memwarden.config import MemoryConfig

__all__ = [
    "MONITOR_LEVELS",
    "Level",
    "MemoryMonitor",
    "MonitorStats",
    "OperationAggregate",
    "OperationStats",
    "Sample",
    "Subscription",
    "monitor",
    "track",
]

log = logging.getLogger("memwarden.monitor")  # the logger keeps its name

#: Subscribers allowed per kind (sample, level change, operation) on one monitor.
MAX_SUBSCRIBERS = _registry.MAX_SUBSCRIBERS
#: Distinct ``track()`` names aggregated per monitor; later names go to :data:`OTHER_OPERATION`.
MAX_OPERATION_NAMES = 1000
#: The aggregate that collects operations once :data:`MAX_OPERATION_NAMES` is reached.
OTHER_OPERATION = "<other>"
# The ring stores "no heap figure" as -1 so it can stay a flat array of int64.
_NO_HEAP = -1


class Sample(NamedTuple):
    """One measurement.

    Attributes:
        time_s: the monitor clock's value (monotonic seconds) when taken.
        rss_bytes: resident set size.
        python_heap_bytes: bytes traced by ``tracemalloc``, None when it is not tracing.
    """

    time_s: float
    rss_bytes: int
    python_heap_bytes: int | None


@dataclasses.dataclass(frozen=True)
class OperationStats:
    """What one ``track()`` block cost.

    Attributes:
        name: the name given to ``track``.
        rss_delta_bytes: RSS at the end minus RSS at the start (negative when memory was freed).
        peak_rss_bytes: the highest RSS seen during the block: start, end and the
            monitor's samples taken in between.
        python_heap_delta_bytes: traced heap at the end minus the start; None when not tracing.
        python_heap_peak_bytes: the highest traced heap during the block (exact with
            ``precise=True``, otherwise from samples); None when not tracing.
        duration_s: wall time of the block.
        start_time_s: ``time.time()`` at the start.
    """

    name: str
    rss_delta_bytes: int
    peak_rss_bytes: int
    python_heap_delta_bytes: int | None
    python_heap_peak_bytes: int | None
    duration_s: float
    start_time_s: float


@dataclasses.dataclass(frozen=True)
class OperationAggregate:
    """All finished ``track()`` blocks of one name.

    Attributes:
        name: the operation name (or ``"<other>"`` for names past the registry's bound).
        count: blocks finished.
        mean_rss_delta_bytes: mean of their ``rss_delta_bytes``.
        max_rss_delta_bytes: the largest ``rss_delta_bytes``.
        max_peak_rss_bytes: the largest ``peak_rss_bytes``.
        max_python_heap_peak_bytes: the largest ``python_heap_peak_bytes`` (None if never traced).
        total_duration_s: summed durations.
        max_duration_s: the longest duration.
        last: the most recent block's stats.
    """

    name: str
    count: int
    mean_rss_delta_bytes: float
    max_rss_delta_bytes: int
    max_peak_rss_bytes: int
    max_python_heap_peak_bytes: int | None
    total_duration_s: float
    max_duration_s: float
    last: OperationStats

    @property
    def mean_duration_s(self) -> float:
        """Mean duration of one block."""
        return self.total_duration_s / self.count if self.count else 0.0


@dataclasses.dataclass(frozen=True)
class MonitorStats:
    """A summary of what a monitor has seen.

    Attributes:
        samples: samples taken since creation (or since fork, in a child).
        history_len: samples currently held in the ring.
        current_rss_bytes: the latest sample's RSS (None before the first sample).
        peak_rss_bytes: the highest RSS ever sampled (not only what the ring still holds).
        mean_rss_bytes: mean RSS over the ring.
        python_heap_bytes: the latest sample's traced heap (None when not tracing).
        level: the current level.
        time_in_level_s: seconds (monitor clock) spent in each level.
        level_changes: how many times each level was entered.
        sampling_time_s: CPU time of the sampler thread (samples, handlers, its waits and
            forced gc); time spent waiting for the GIL is not CPU time and not counted.
        wall_time_s: real time the sampler thread has been running.
        overhead_ratio: ``sampling_time_s / wall_time_s``, the share of one CPU the sampler
            uses (0 when never started).
        gc_collections_forced: ``gc.collect()`` calls made for ``gc_interval_s``.
        gc_time_s: real time those collections took.
        handler_errors: subscriber and probe exceptions caught and logged.
        max_memory_bytes, warning_bytes, critical_bytes: the thresholds in force.
    """

    samples: int
    history_len: int
    current_rss_bytes: int | None
    peak_rss_bytes: int | None
    mean_rss_bytes: float | None
    python_heap_bytes: int | None
    level: Level
    time_in_level_s: Mapping[Level, float]
    level_changes: Mapping[Level, int]
    sampling_time_s: float
    wall_time_s: float
    overhead_ratio: float
    gc_collections_forced: int
    gc_time_s: float
    handler_errors: int
    max_memory_bytes: int
    warning_bytes: int
    critical_bytes: int

    def time_above_s(self, level: Level) -> float:
        """Seconds spent at ``level`` or above it."""
        return sum(s for lvl, s in self.time_in_level_s.items() if lvl >= level)

    @property
    def usage_ratio(self) -> float | None:
        """Current RSS as a fraction of ``max_memory_bytes``."""
        if self.current_rss_bytes is None:
            return None
        return self.current_rss_bytes / self.max_memory_bytes


class _Ring:
    """A fixed-size ring of samples in three flat arrays (24 bytes a sample, allocated once)."""

    __slots__ = ("_heap", "_i", "_n", "_rss", "_size", "_sum_rss", "_t")

    def __init__(self, size: int) -> None:
        self._size = size
        self._t = array("d", bytes(8 * size))
        self._rss = array("q", bytes(8 * size))
        self._heap = array("q", bytes(8 * size))
        self._i = 0  # next slot to write
        self._n = 0
        self._sum_rss = 0  # exact running sum over the held samples, for an O(1) mean

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held by the three arrays."""
        return sum(a.itemsize * len(a) for a in (self._t, self._rss, self._heap))

    def append(self, t: float, rss_bytes: int, heap_bytes: int) -> None:
        i = self._i
        if self._n == self._size:
            self._sum_rss -= self._rss[i]
        else:
            self._n += 1
        self._t[i] = t
        self._rss[i] = rss_bytes
        self._heap[i] = heap_bytes
        self._sum_rss += rss_bytes
        self._i = i + 1 if i + 1 < self._size else 0

    def clear(self) -> None:
        self._i = self._n = self._sum_rss = 0

    def mean_rss(self) -> float | None:
        return self._sum_rss / self._n if self._n else None

    def _indices_newest_first(self) -> Iterator[int]:
        i = self._i
        for _ in range(self._n):
            i = i - 1 if i > 0 else self._size - 1
            yield i

    def samples(self) -> list[Sample]:
        out = [
            Sample(self._t[i], self._rss[i], None if self._heap[i] < 0 else self._heap[i])
            for i in self._indices_newest_first()
        ]
        out.reverse()
        return out

    def peaks_since(self, t0: float) -> tuple[int | None, int | None]:
        """Max RSS and max heap over samples with ``time >= t0`` (newest first, stops early)."""
        best_rss: int | None = None
        best_heap: int | None = None
        t, r, h = self._t, self._rss, self._heap
        for i in self._indices_newest_first():
            if t[i] < t0:
                break
            if best_rss is None or r[i] > best_rss:
                best_rss = r[i]
            if h[i] >= 0 and (best_heap is None or h[i] > best_heap):
                best_heap = h[i]
        return best_rss, best_heap


@dataclasses.dataclass
class _OpAcc:
    count: int = 0
    sum_delta: int = 0
    max_delta: int = 0
    max_peak: int = 0
    max_heap_peak: int | None = None
    total_duration_s: float = 0.0
    max_duration_s: float = 0.0
    last: OperationStats | None = None

    def add(self, st: OperationStats) -> None:
        first = self.count == 0
        self.count += 1
        self.sum_delta += st.rss_delta_bytes
        self.max_delta = st.rss_delta_bytes if first else max(self.max_delta, st.rss_delta_bytes)
        self.max_peak = st.peak_rss_bytes if first else max(self.max_peak, st.peak_rss_bytes)
        if st.python_heap_peak_bytes is not None:
            self.max_heap_peak = max(self.max_heap_peak or 0, st.python_heap_peak_bytes)
        self.total_duration_s += st.duration_s
        self.max_duration_s = max(self.max_duration_s, st.duration_s)
        self.last = st

    def freeze(self, name: str) -> OperationAggregate:
        assert self.last is not None
        return OperationAggregate(
            name=name,
            count=self.count,
            mean_rss_delta_bytes=self.sum_delta / self.count,
            max_rss_delta_bytes=self.max_delta,
            max_peak_rss_bytes=self.max_peak,
            max_python_heap_peak_bytes=self.max_heap_peak,
            total_duration_s=self.total_duration_s,
            max_duration_s=self.max_duration_s,
            last=self.last,
        )


class MemoryMonitor:
    """Samples this process's memory on a daemon thread and reports levels and operations.

    Args:
        config: thresholds, interval, history size and gc interval; default
            :func:`memwarden.config.load_config` (environment, ``pyproject.toml``, profile).
        probe: returns the usage in bytes to sample (default :func:`memwarden.probes.rss`).
        clock: monotonic seconds for sample times (default ``time.monotonic``).
        restart_in_child: after ``os.fork()``, restart the sampler in the child if it
            was running in the parent (the child always starts with empty history).

    The monitor is thread-safe. Subscribers run on the sampling thread (or the
    thread calling :meth:`sample_now`); an exception in one is logged and counted,
    never propagated.
    """

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        probe: Callable[[], int] | None = None,
        clock: Callable[[], float] | None = None,
        restart_in_child: bool = False,
    ) -> None:
        if config is None:
            from memwarden.config import load_config

            config = load_config()
        self._config = config
        # The config is frozen: compute the lines once, not on every sample.
        self._lines = config.thresholds.lines(config.max_memory_bytes)
        self._probe = probe or rss
        self._clock = clock or time.monotonic
        self._restart_in_child = restart_in_child
        self._lock = threading.Lock()
        self._ring = _Ring(config.history_size)
        self._sample_subs: Subscribers[Callable[[Sample], None]] = Subscribers(
            "MemoryMonitor.on_sample", error=MemwardenError
        )
        self._level_subs: Subscribers[Callable[[Level, Level, Sample], None]] = Subscribers(
            "MemoryMonitor.on_level_change", error=MemwardenError
        )
        self._op_subs: Subscribers[Callable[[OperationStats], None]] = Subscribers(
            "MemoryMonitor.on_operation", error=MemwardenError
        )
        self._ops: dict[str, _OpAcc] = {}
        self._thread: threading.Thread | None = None
        # Held while the sampler runs; stop() releases it. A bare lock's timed acquire
        # is one C call per wait (Event.wait builds a Condition waiter every time).
        self._stop_lock = threading.Lock()
        self._closed = False
        self._reset_counters()
        reset_after_fork(self._after_fork_in_child)

    def _reset_counters(self) -> None:
        self._level = Level.OK
        self._last: Sample | None = None
        self._samples = 0
        self._peak_rss: int | None = None
        self._time_in_level = dict.fromkeys(MONITOR_LEVELS, 0.0)
        self._level_changes = dict.fromkeys(MONITOR_LEVELS, 0)
        self._sampler_cpu_s = 0.0  # CPU time of sampler threads that have finished
        self._sampler_live = False  # a sampler thread runs and its CPU clock is readable
        self._wall_time_s = 0.0
        self._run_started_pc: float | None = None
        self._gc_forced = 0
        self._gc_time_s = 0.0
        self._errors = 0
        self._ops_overflow_logged = False

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> MemoryConfig:
        """The configuration in force."""
        return self._config

    @property
    def level(self) -> Level:
        """The current level (OK before the first sample)."""
        return self._level

    @property
    def running(self) -> bool:
        """True while the sampler thread runs."""
        t = self._thread
        return t is not None and t.is_alive()

    @property
    def last_sample(self) -> Sample | None:
        """The most recent sample, or None."""
        return self._last

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MemoryMonitor:
        """Start the sampler thread (no-op when running) and return the monitor.

        Raises:
            DisposedError: the monitor was closed.
        """
        with self._lock:
            if self._closed:
                raise DisposedError("MemoryMonitor.start(): the monitor is closed")
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop_lock = threading.Lock()
            self._stop_lock.acquire()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stop_lock,),
                name="memwarden-monitor",
                daemon=True,
            )
            self._run_started_pc = time.perf_counter()
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the sampler thread and wait for it (no-op when not running)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None and self._stop_lock.locked():
                self._stop_lock.release()
            if self._run_started_pc is not None:
                self._wall_time_s += time.perf_counter() - self._run_started_pc
                self._run_started_pc = None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, 2 * self._config.monitoring_interval_s))

    def close(self) -> None:
        """Stop sampling and drop every subscription; the monitor cannot be restarted."""
        self.stop()
        with self._lock:
            self._closed = True
        for subs in (self._sample_subs, self._level_subs, self._op_subs):
            subs.clear()

    def __enter__(self) -> MemoryMonitor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self.running else "stopped")
        return (
            f"<MemoryMonitor {state} level={self._level.monitor_name} "
            f"max_memory={format_size(self._config.max_memory_bytes)} "
            f"interval={self._config.monitoring_interval_s}s samples={self._samples}>"
        )

    # ------------------------------------------------------------------ sampling

    def _run(self, stop: threading.Lock) -> None:
        interval = self._config.monitoring_interval_s
        gc_interval = self._config.gc_interval_s
        last_gc = time.monotonic()
        next_at = time.monotonic()
        with self._lock:
            self._sampler_live = True
        try:
            self._loop(stop, interval, gc_interval, last_gc, next_at)
        finally:
            # The thread's whole CPU time (samples, waits, handlers, forced gc): read
            # once here, and live by stats() through the thread's CPU clock, so the
            # loop itself pays no clock syscalls for its own accounting.
            with self._lock:
                self._sampler_cpu_s += time.thread_time()
                self._sampler_live = False

    def _loop(
        self,
        stop: threading.Lock,
        interval: float,
        gc_interval: float | None,
        last_gc: float,
        next_at: float,
    ) -> None:
        while True:
            try:
                self.sample_now()
            except Exception as exc:  # a failing probe must never kill the thread
                self._count_error(exc, "sampler", "sample failed")
            if gc_interval is not None and time.monotonic() - last_gc >= gc_interval:
                g0 = time.perf_counter()
                gc.collect()
                self._gc_time_s += time.perf_counter() - g0
                self._gc_forced += 1
                last_gc = time.monotonic()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (suspended, overloaded): skip, do not burst
                next_at = time.monotonic()
                delay = 0.0
            if stop.acquire(timeout=delay):
                return

    def _count_error(self, exc: BaseException, what: str, message: str, *args: object) -> None:
        self._errors += 1
        # Log the first few in full, then one in a hundred, so a broken handler
        # at a 10 ms interval cannot flood the log.
        if self._errors <= 5 or self._errors % 100 == 0:
            log.error(
                "memwarden monitor %s: " + message + " (error #%d)",
                what,
                *args,
                self._errors,
                exc_info=exc,
            )

    def _read_heap(self) -> int | None:
        if tracemalloc.is_tracing():
            return tracemalloc.get_traced_memory()[0]
        return None

    def sample_now(self) -> Sample:
        """Take one sample now: record it, update the level and run the subscribers.

        Returns:
            The sample taken.

        Raises:
            Exception: only what the probe raises (subscriber errors are logged).
        """
        rss_bytes = int(self._probe())
        heap = self._read_heap()
        lines = self._lines
        with self._lock:
            now = self._clock()
            sample = Sample(now, rss_bytes, heap)
            last = self._last
            if last is not None and now > last.time_s:
                self._time_in_level[self._level] += now - last.time_s
            self._ring.append(now, rss_bytes, _NO_HEAP if heap is None else heap)
            self._last = sample
            self._samples += 1
            if self._peak_rss is None or rss_bytes > self._peak_rss:
                self._peak_rss = rss_bytes
            old = self._level
            new = monitor_level(rss_bytes, lines, old)
            if new != old:
                self._level = new
                self._level_changes[new] += 1
            sample_subs = self._sample_subs.snapshot()
            level_subs = self._level_subs.snapshot() if new != old else ()
        for cb in sample_subs:
            try:
                cb(sample)
            except Exception as exc:
                self._count_error(exc, "on_sample", "handler %r raised", cb)
        if new != old:
            self._log_level_change(old, new, sample)
            for level_cb in level_subs:
                try:
                    level_cb(old, new, sample)
                except Exception as exc:
                    self._count_error(exc, "on_level_change", "handler %r raised", level_cb)
        return sample

    def _log_level_change(self, old: Level, new: Level, sample: Sample) -> None:
        cfg = self._config
        ratio = sample.rss_bytes / cfg.max_memory_bytes
        msg = (
            "memory %s (was %s): rss %s is %.0f%% of max_memory %s "
            "(warning at %.0f%%, critical at %.0f%%)"
        )
        args = (
            new.monitor_name,
            old.monitor_name,
            format_size(sample.rss_bytes),
            100 * ratio,
            format_size(cfg.max_memory_bytes),
            100 * cfg.warning_threshold,
            100 * cfg.critical_threshold,
        )
        if new > old:
            log.log(logging.CRITICAL if new is Level.CRITICAL else logging.WARNING, msg, *args)
        else:
            log.info(msg, *args)

    # ------------------------------------------------------------------ subscriptions

    def _subscribe(self, subs: Subscribers[Any], cb: Callable[..., None]) -> Subscription:
        with self._lock:
            if self._closed:
                raise DisposedError(
                    f"MemoryMonitor: cannot subscribe {cb!r}: the monitor is closed"
                )
        return subs.add(cb)

    def on_sample(self, cb: Callable[[Sample], None]) -> Subscription:
        """Call ``cb(sample)`` after every sample."""
        return self._subscribe(self._sample_subs, cb)

    def on_level_change(self, cb: Callable[[Level, Level, Sample], None]) -> Subscription:
        """Call ``cb(old, new, sample)`` whenever the level changes."""
        return self._subscribe(self._level_subs, cb)

    def on_operation(self, cb: Callable[[OperationStats], None]) -> Subscription:
        """Call ``cb(stats)`` when any ``track()`` block recorded on this monitor finishes."""
        return self._subscribe(self._op_subs, cb)

    # ------------------------------------------------------------------ operations

    def record_operation(self, stats: OperationStats) -> None:
        """Add one finished operation to the aggregates and notify ``on_operation`` subscribers."""
        with self._lock:
            acc = self._ops.get(stats.name)
            if acc is None:
                if len(self._ops) >= MAX_OPERATION_NAMES and stats.name != OTHER_OPERATION:
                    if not self._ops_overflow_logged:
                        self._ops_overflow_logged = True
                        log.warning(
                            "track(): more than %d operation names; aggregating %r and later "
                            "names under %r",
                            MAX_OPERATION_NAMES,
                            stats.name,
                            OTHER_OPERATION,
                        )
                    acc = self._ops.get(OTHER_OPERATION)
                    if acc is None:
                        acc = self._ops[OTHER_OPERATION] = _OpAcc()
                else:
                    acc = self._ops[stats.name] = _OpAcc()
            acc.add(stats)
            subs = self._op_subs.snapshot()
        for cb in subs:
            try:
                cb(stats)
            except Exception as exc:
                self._count_error(exc, "on_operation", "handler %r raised", cb)

    def operations(self) -> dict[str, OperationAggregate]:
        """Per-name aggregates of every finished ``track()`` block (a copy)."""
        with self._lock:
            return {name: acc.freeze(name) for name, acc in self._ops.items()}

    def reset_operations(self) -> None:
        """Forget the operation aggregates."""
        with self._lock:
            self._ops.clear()

    # ------------------------------------------------------------------ queries

    def history(self) -> list[Sample]:
        """The samples still held in the ring, oldest first (a copy)."""
        with self._lock:
            return self._ring.samples()

    def peak_rss_since(self, t0_s: float) -> int | None:
        """The highest sampled RSS with ``time_s >= t0_s`` still in history (None if none)."""
        with self._lock:
            return self._ring.peaks_since(t0_s)[0]

    def peaks_since(self, t0_s: float) -> tuple[int | None, int | None]:
        """``(max RSS, max traced heap)`` over samples with ``time_s >= t0_s`` still in history."""
        with self._lock:
            return self._ring.peaks_since(t0_s)

    def stats(self) -> MonitorStats:
        """A summary: current, peak and mean RSS, time per level, overhead, counters."""
        cfg = self._config
        with self._lock:
            time_in = dict(self._time_in_level)
            last = self._last
            if last is not None:
                tail = self._clock() - last.time_s
                if tail > 0:
                    time_in[self._level] += tail
            wall = self._wall_time_s
            if self._run_started_pc is not None:
                wall += time.perf_counter() - self._run_started_pc
            cpu = self._sampler_cpu_s + self._live_sampler_cpu_s()
            return MonitorStats(
                samples=self._samples,
                history_len=len(self._ring),
                current_rss_bytes=None if last is None else last.rss_bytes,
                peak_rss_bytes=self._peak_rss,
                mean_rss_bytes=self._ring.mean_rss(),
                python_heap_bytes=None if last is None else last.python_heap_bytes,
                level=self._level,
                time_in_level_s=time_in,
                level_changes=dict(self._level_changes),
                sampling_time_s=cpu,
                wall_time_s=wall,
                overhead_ratio=cpu / wall if wall > 0 else 0.0,
                gc_collections_forced=self._gc_forced,
                gc_time_s=self._gc_time_s,
                handler_errors=self._errors,
                max_memory_bytes=cfg.max_memory_bytes,
                warning_bytes=cfg.warning_bytes,
                critical_bytes=cfg.critical_bytes,
            )

    def _live_sampler_cpu_s(self) -> float:
        """CPU time of the running sampler thread so far (0 when none); call with the lock held."""
        thread = self._thread
        if not self._sampler_live or thread is None or thread.ident is None:
            return 0.0
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            return time.clock_gettime(clock)
        except (AttributeError, OSError):  # no per-thread CPU clocks here, or it just ended
            return 0.0

    def growth(self, *, noise_floor_bytes: float = 0.0) -> Trend:
        """The RSS trend over the history (Theil–Sen slope in bytes per second, Mann–Kendall)."""
        from memwarden._stats import trend

        samples = self.history()
        return trend(
            [s.rss_bytes for s in samples],
            [s.time_s for s in samples],
            noise_floor=noise_floor_bytes,
        )

    # ------------------------------------------------------------------ fork

    def _after_fork_in_child(self) -> None:
        # The sampler thread does not exist in the child, and any lock another
        # thread held at fork time would stay locked forever: start from scratch.
        was_running = self._thread is not None
        self._lock = threading.Lock()
        self._thread = None
        self._stop_lock = threading.Lock()
        self._ring.clear()
        self._ops = {}
        self._reset_counters()
        if was_running and self._restart_in_child and not self._closed:
            try:
                self.start()
            except Exception:  # pragma: no cover - thread creation failed in the child
                log.exception("memwarden monitor: could not restart the sampler after fork")


def _after_fork_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    _precise_reset_after_fork()


reset_after_fork(_after_fork_child)


# ---------------------------------------------------------------------------
# the process-wide default

_default: MemoryMonitor | None = None
_default_lock = threading.Lock()


def monitor() -> MemoryMonitor:
    """Return the process-wide default monitor, creating and starting it on first use.

    Its configuration comes from :func:`memwarden.config.load_config`; it restarts
    in a forked child. Nothing is created at import time.
    """
    global _default
    m = _default
    if m is not None:
        return m
    with _default_lock:
        if _default is None:
            _default = MemoryMonitor(restart_in_child=True).start()
        return _default


_default_monitor = monitor  # `track(monitor=...)` shadows the name inside track


def default_monitor_if_created() -> MemoryMonitor | None:
    """The default monitor if something has created it, else None (never creates one)."""
    return _default


def reset_default_monitor() -> None:
    """Close and forget the default monitor (tests; the next :func:`monitor` makes a new one)."""
    global _default
    with _default_lock:
        m, _default = _default, None
    if m is not None:
        m.close()


# ---------------------------------------------------------------------------
# track(): the playbook's beforeOperation / afterOperation

P = ParamSpec("P")
R = TypeVar("R")


class _Frame:
    """One open ``track()`` block."""

    __slots__ = ("heap_peak", "heap_start", "mon", "owner", "rss_start", "t0", "wall0")

    def __init__(self, owner: track, mon: MemoryMonitor) -> None:
        self.owner = owner
        self.mon = mon
        self.heap_start = -1
        self.heap_peak = 0
        self.wall0 = 0.0
        self.t0 = 0.0
        self.rss_start = 0


# Open track() blocks of this thread / asyncio task, innermost last. The frame lives
# in the context, not on the track object, so one object can be entered by many
# threads at once and nested in itself.
_active: contextvars.ContextVar[tuple[_Frame, ...]] = contextvars.ContextVar(
    "memwarden_track_frames", default=()
)

# precise=True frames across all threads hold tracing through memwarden.tracing, which
# folds the process-wide peak into every open user before anyone resets it.
_precise_lock = threading.Lock()
_precise_users: dict[int, _tracing.TraceUser] = {}  # id(frame) -> its hold, while open


def _precise_reset_after_fork() -> None:
    global _precise_lock
    _precise_lock = threading.Lock()
    # The tracing owner keeps the forking thread's holds; this map is rebuilt lazily.
    _precise_users.clear()


def _precise_enter(frame: _Frame) -> None:
    user = _tracing.acquire(1, name="track(precise=True)")
    with _precise_lock:
        _precise_users[id(frame)] = user
    frame.heap_start = user.base_bytes
    frame.heap_peak = frame.heap_start


def _precise_exit(frame: _Frame) -> tuple[int, int]:
    """Return ``(heap_now, heap_peak)`` for ``frame`` and stop tracing if we started it."""
    with _precise_lock:
        user = _precise_users.pop(id(frame), None)
    if user is None:  # opened before a fork in another thread
        return frame.heap_start, frame.heap_peak
    result = user.release()
    frame.heap_peak = max(frame.heap_peak, frame.heap_start + result.peak_bytes)
    return frame.heap_start + result.current_bytes, frame.heap_peak


class track:  # lowercase: used like a function, `with track("load"):` / `@track("load")`
    """Measure a block or a function: RSS delta and peak, Python heap delta and peak, duration.

    Use as ``with track("load"): ...``, ``async with track("load"): ...`` or as a
    decorator on a plain or ``async def`` function. Each finished block becomes an
    :class:`OperationStats`, aggregated per name in ``monitor.operations()`` and sent to
    ``monitor.on_operation`` subscribers. Blocks nest (the context is per thread and
    per asyncio task).

    Args:
        name: the operation's name (keep the set of names small: it is a metric label).
        precise: trace the Python heap with ``tracemalloc`` for an exact heap peak
            (started and stopped around the block if it was off, ``reset_peak``
            otherwise); costs tracemalloc's slowdown inside the block.
        monitor: record on this monitor (default: the process-wide :func:`monitor`).
            The RSS peak comes from its samples taken during the block, so it is only
            as fine as its interval; without samples it is ``max(start, end)``.
    """

    __slots__ = ("_monitor", "last", "name", "precise")

    def __init__(
        self, name: str, *, precise: bool = False, monitor: MemoryMonitor | None = None
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"track() needs a non-empty operation name, got {name!r}")
        self.name = name
        self.precise = precise
        self._monitor = monitor
        #: The stats of the most recent block finished through this object.
        self.last: OperationStats | None = None

    # -- the measurement

    def _begin(self) -> _Frame:
        mon = self._monitor if self._monitor is not None else _default_monitor()
        frame = _Frame(self, mon)
        if self.precise:
            _precise_enter(frame)
        elif tracemalloc.is_tracing():
            frame.heap_start = tracemalloc.get_traced_memory()[0]
        frame.wall0 = time.time()
        frame.t0 = mon._clock()
        frame.rss_start = int(mon._probe())
        return frame

    def _end(self, frame: _Frame) -> OperationStats:
        mon = frame.mon
        rss_end = int(mon._probe())
        duration = time.time() - frame.wall0
        sampled_rss, sampled_heap = mon.peaks_since(frame.t0)
        peak = max(frame.rss_start, rss_end, sampled_rss or 0)
        heap_delta: int | None
        heap_peak: int | None
        if self.precise:
            cur, hp = _precise_exit(frame)
            heap_delta = cur - frame.heap_start
            heap_peak = hp
        elif frame.heap_start >= 0 and tracemalloc.is_tracing():
            cur = tracemalloc.get_traced_memory()[0]
            heap_delta = cur - frame.heap_start
            heap_peak = max(frame.heap_start, cur, sampled_heap or 0)
        else:
            heap_delta = heap_peak = None
        stats = OperationStats(
            name=self.name,
            rss_delta_bytes=rss_end - frame.rss_start,
            peak_rss_bytes=peak,
            python_heap_delta_bytes=heap_delta,
            python_heap_peak_bytes=heap_peak,
            duration_s=max(0.0, duration),
            start_time_s=frame.wall0,
        )
        self.last = stats
        mon.record_operation(stats)
        return stats

    # -- context manager (sync and async)

    def __enter__(self) -> track:
        frame = self._begin()
        _active.set((*_active.get(), frame))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = _active.get()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i].owner is self:
                frame = stack[i]
                _active.set(stack[:i] + stack[i + 1 :])
                self._end(frame)
                return
        log.warning("track(%r): __exit__ without a matching __enter__ in this context", self.name)

    async def __aenter__(self) -> track:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``func`` so every call is tracked.

        Plain and ``async def`` functions are tracked per call; generator and async
        generator functions are tracked from the first item to exhaustion (or close).
        The wrapper has ``func``'s exact type: an ``async def`` stays a function
        returning a ``Coroutine`` (so ``asyncio.run(tracked())`` type-checks), a
        generator function stays one returning a ``Generator``.
        """
        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            async def agen_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with self:
                    async for item in func(*args, **kwargs):
                        yield item

            return cast("Callable[P, R]", agen_wrapper)
        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def gen_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with self:
                    return (yield from func(*args, **kwargs))

            return cast("Callable[P, R]", gen_wrapper)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with self:
                    return await func(*args, **kwargs)

            return cast("Callable[P, R]", async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return func(*args, **kwargs)

        return wrapper


def current_operations() -> tuple[str, ...]:
    """Names of the ``track()`` blocks open in this thread or task, outermost first."""
    return tuple(f.owner.name for f in _active.get())
