"""The governor: one process-wide memory-pressure signal and the relief run under it.

The :class:`Governor` (also exported as :class:`PressureDetector`) turns memory facts
into a :class:`PressureLevel`: usage against the budget (RSS against
``max_memory_bytes``, and the cgroup's working set against the cgroup limit when the
process is in a limited cgroup, where page cache counts), PSI ``some avg10`` where the
kernel has it, and rising ``memory.events`` counts. Pressure starts at
``pressure_threshold`` and ends only below ``release_threshold`` (no flapping).

Under pressure the governor runs the registered relievers in priority order until the
level drops: caches shrink (:data:`PRIORITY_CACHE`), pools trim (:data:`PRIORITY_POOL`),
then ``gc.collect()`` (:data:`PRIORITY_GC`) and glibc ``malloc_trim(0)``
(:data:`PRIORITY_MALLOC_TRIM`). Each run is recorded with the RSS measured before and
after. Producers wait with :meth:`Governor.wait_for_relief`.

Registering is cheap (no thread, no psutil): :func:`register_reliever` creates the
process-wide governor object lazily, and watching starts only with
:meth:`Governor.start`, which waits on kernel events (PSI triggers, cgroup v1
``memory.pressure_level`` and usage thresholds through ``cgroup.event_control``) and
samples RSS between them.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import gc
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MethodType, TracebackType
from typing import TYPE_CHECKING, Any

from memwarden import _registry
from memwarden._registry import (
    DEFAULT,
    DefaultType,
    Subscribers,
    Subscription,
    reset_after_fork,
)
from memwarden._units import format_size
from memwarden.exceptions import ConfigurationError, PressureTimeoutError
from memwarden.typing import Clock, Probe, Reliever

if TYPE_CHECKING:
    from memwarden.config import MemoryConfig

__all__ = [
    "DEFAULT",
    "PRIORITY_CACHE",
    "PRIORITY_GC",
    "PRIORITY_MALLOC_TRIM",
    "PRIORITY_POOL",
    "Governor",
    "PressureDetector",
    "PressureLevel",
    "PressureSubscription",
    "ReliefRegistration",
    "ReliefRun",
    "ReliefStep",
    "Subscription",
    "governor",
    "malloc_trim",
    "register_reliever",
    "resolve_governor",
]

log = logging.getLogger("memwarden.pressure")

#: Priorities: lower runs first. Caches give back what is cheapest to rebuild.
PRIORITY_CACHE = 10
PRIORITY_POOL = 20
PRIORITY_GC = 80
PRIORITY_MALLOC_TRIM = 90

#: Bounds on the governor's own registries (memwarden's contract: everything bounded).
MAX_RELIEVERS = 10_000
MAX_SUBSCRIBERS = _registry.MAX_SUBSCRIBERS
DEFAULT_HISTORY_SIZE = 100


class PressureLevel(enum.IntEnum):
    """How hard memory is pressed; ordered, so ``level >= PressureLevel.HIGH`` works."""

    NONE = 0
    MODERATE = 1
    HIGH = 2
    CRITICAL = 3


# ---------------------------------------------------------------------------
# registrations


_order = itertools.count()


def _note_dead(dead: deque[int], order: int, _ref: object) -> None:
    """WeakMethod callback: queue a dead registration for removal by its governor.

    It runs wherever the garbage collector runs (any thread, possibly while that
    thread holds the governor's lock), so it takes no lock: ``deque.append`` is
    atomic, and the governor drains the queue at its next registry operation.
    """
    dead.append(order)


class ReliefRegistration:
    """A reliever registered with a governor; :meth:`unregister` removes it (idempotent).

    Bound methods are held through :class:`weakref.WeakMethod`, so registering a cache's
    ``shrink`` never keeps the cache alive; plain functions and other callables are
    held strongly (a lambda would otherwise vanish at once). When a weakly held
    method's object dies, the registration queues itself for removal, and the
    governor drops it at its next register/unregister/relievers call: short-lived
    caches and pools leave no dead registrations piling up in the registry.
    """

    __slots__ = ("__weakref__", "_governor", "_order", "_strong", "_weak", "name", "priority")

    def __init__(self, governor: Governor, fn: Reliever, priority: int, name: str) -> None:
        self._governor: weakref.ref[Governor] = weakref.ref(governor)
        # Who keeps what alive: a bound method's object is kept alive only by its owner;
        # we hold the method weakly. Anything else we hold, or nobody would.
        self._weak: weakref.WeakMethod[Reliever] | None = None
        self._strong: Reliever | None = None
        self._order = next(_order)
        if isinstance(fn, MethodType):
            # The callback holds the governor's dead-queue, not the governor.
            self._weak = weakref.WeakMethod(
                fn, functools.partial(_note_dead, governor._dead_registrations, self._order)
            )
        else:
            self._strong = fn
        self.priority = priority
        self.name = name

    def resolve(self) -> Reliever | None:
        """The reliever, or None once its object was garbage-collected."""
        if self._weak is not None:
            return self._weak()
        return self._strong

    @property
    def alive(self) -> bool:
        """Whether the reliever still exists (a weakly held method's object is alive)."""
        return self.resolve() is not None

    def unregister(self) -> None:
        """Remove this reliever from its governor; calling again does nothing."""
        gov = self._governor()
        if gov is not None:
            gov._remove_registration(self)

    def __repr__(self) -> str:
        state = "alive" if self.alive else "dead"
        return f"<ReliefRegistration {self.name!r} priority={self.priority} {state}>"


PressureSubscription = Subscription
"""The old name of the handle :meth:`Governor.on_pressure` returns."""


# ---------------------------------------------------------------------------
# relief records


@dataclass(frozen=True)
class ReliefStep:
    """One reliever's turn in a relief run.

    Attributes:
        name: the reliever's registered name.
        priority: its priority.
        reported_bytes: what the reliever said it freed (None if it did not say).
        rss_before_bytes: RSS just before it ran.
        rss_after_bytes: RSS just after it ran.
        duration_s: how long it ran.
        error: ``repr`` of the exception it raised, if any (the run went on).
        level_after: the pressure level re-evaluated after it ran.
    """

    name: str
    priority: int
    reported_bytes: int | None
    rss_before_bytes: int
    rss_after_bytes: int
    duration_s: float
    error: str | None
    level_after: PressureLevel

    @property
    def measured_bytes(self) -> int:
        """RSS given back to the OS while this reliever ran (negative if RSS grew)."""
        return self.rss_before_bytes - self.rss_after_bytes


@dataclass(frozen=True)
class ReliefRun:
    """What one relief run did, and what it achieved.

    Attributes:
        started_s: the governor clock when the run began.
        duration_s: how long the whole run took.
        reason: why it ran (``"manual"``, ``"pressure"``, ``"wait"``).
        level_before: the level when it began.
        level_after: the level when it ended.
        rss_before_bytes: RSS when it began.
        rss_after_bytes: RSS when it ended.
        steps: each reliever that ran, in order.
    """

    started_s: float
    duration_s: float
    reason: str
    level_before: PressureLevel
    level_after: PressureLevel
    rss_before_bytes: int
    rss_after_bytes: int
    steps: tuple[ReliefStep, ...] = field(default=())

    @property
    def freed_bytes(self) -> int:
        """RSS given back over the whole run (negative if RSS grew meanwhile)."""
        return self.rss_before_bytes - self.rss_after_bytes

    @property
    def reported_bytes(self) -> int:
        """Sum of what the relievers said they freed."""
        return sum(s.reported_bytes or 0 for s in self.steps)

    @property
    def relieved(self) -> bool:
        """Whether the level dropped during the run."""
        return self.level_after < self.level_before

    def summary(self) -> str:
        """One human-readable line: levels, RSS, and each step."""
        steps = ", ".join(
            f"{s.name}"
            + (f"={format_size(s.reported_bytes)}" if s.reported_bytes else "")
            + (" (raised)" if s.error else "")
            for s in self.steps
        )
        return (
            f"relief ({self.reason}) {self.level_before.name}->{self.level_after.name}, "
            f"RSS {format_size(self.rss_before_bytes)}->{format_size(self.rss_after_bytes)} "
            f"in {self.duration_s * 1000:.1f} ms: {steps or 'nothing registered'}"
        )


# ---------------------------------------------------------------------------
# built-in relievers


def _subscriber_limit_error(message: str) -> ConfigurationError:
    return ConfigurationError(message, source="argument")


def _gc_reliever() -> int | None:
    gc.collect()
    return None


_malloc_trim_fn: Any = None  # None: not looked up yet; False: unavailable


def malloc_trim() -> int | None:
    """Ask glibc to return free heap pages to the OS (``malloc_trim(0)``).

    Returns None (glibc does not say how much it returned). Does nothing where the C
    library is not glibc.
    """
    global _malloc_trim_fn
    if _malloc_trim_fn is None:
        _malloc_trim_fn = False
        try:
            import ctypes  # lazy: only on first relief
            import ctypes.util

            name = ctypes.util.find_library("c") or "libc.so.6"
            libc = ctypes.CDLL(name)
            fn = getattr(libc, "malloc_trim", None)
            if fn is not None:
                fn.argtypes = [ctypes.c_size_t]
                fn.restype = ctypes.c_int
                _malloc_trim_fn = fn
        except (OSError, AttributeError):  # pragma: no cover - non-glibc platforms
            log.debug("malloc_trim unavailable: not glibc")
    if _malloc_trim_fn:
        _malloc_trim_fn(0)
    return None


# ---------------------------------------------------------------------------
# a PSI file reader that never raises (cgroup files are read with probes' readers)


def _read_psi_some_avg10(path: Path) -> float | None:
    """``avg10`` of the ``some`` line of a PSI file, or None."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            for field_ in line.split()[1:]:
                if field_.startswith("avg10="):
                    with contextlib.suppress(ValueError):
                        return float(field_[6:])
    return None


# ---------------------------------------------------------------------------
# the governor


@dataclass
class _Signals:
    """The latest value of each input, kept for ``stats()`` and explanations."""

    usage_bytes: int = 0
    usage_level: PressureLevel = PressureLevel.NONE
    cgroup_bytes: int | None = None
    cgroup_limit_bytes: int | None = None
    cgroup_level: PressureLevel = PressureLevel.NONE
    psi_avg10: float | None = None
    psi_level: PressureLevel = PressureLevel.NONE
    events_level: PressureLevel = PressureLevel.NONE
    kernel_level: PressureLevel = PressureLevel.NONE


class Governor:
    """Detects memory pressure and runs relief; one per process is the norm (:func:`governor`).

    Args:
        config: thresholds and budget; default :func:`memwarden.config.load_config`,
            resolved on first use (not at construction).
        probe: usage in bytes, default :func:`memwarden.probes.rss`.
        clock: monotonic seconds, default :func:`time.monotonic`.
        psi: read PSI ``some avg10`` and use PSI triggers. None (default) means on unless a
            ``probe`` was injected (deterministic tests should not see the host's PSI).
        cgroup: use the cgroup's usage/limit and ``memory.events``, and cgroup v1 event
            notifications; None means on unless a ``probe`` was injected.
        interval_s: seconds between samples while watching (RSS costs about 1 µs).
        psi_thresholds: PSI ``some avg10`` percentages for MODERATE, HIGH, CRITICAL.
        high_threshold: fraction of the budget for HIGH; default halfway from the
            pressure threshold to the budget.
        critical_threshold: fraction for CRITICAL; default 0.97.
        relief_interval_s: while pressure lasts, relief runs again at most this often.
        auto_relieve: run relief when pressure starts while watching; default
            ``config.graceful_degradation``.
        builtin_relievers: register ``gc.collect`` and ``malloc_trim`` (default True).
        history_size: relief runs kept.
        stuck_after_s: pressure lasting this long despite relief is logged as a
            probable leak (then every doubling of the time).
        monitor: a :class:`memwarden.monitor.MemoryMonitor` whose samples feed the level
            while watching (duck-typed: anything with ``on_sample(cb)``).
        sleep: how waiting sleeps (tests inject one driving a fake clock).
        kernel_events: let the watcher wait on kernel notifications (PSI triggers, cgroup
            v1 ``memory.pressure_level`` and usage thresholds) as well as sampling.
        psi_trigger: ``(stall_us, window_us)`` of the PSI trigger: fire when tasks stall
            this long within the window (default 150 ms per 1 s; unprivileged processes
            get a 2 s window).
        psi_trigger_level: the level a fired PSI trigger holds for two seconds.
    """

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        probe: Probe | None = None,
        clock: Clock | None = None,
        psi: bool | None = None,
        cgroup: bool | None = None,
        interval_s: float = 0.1,
        psi_thresholds: tuple[float, float, float] = (10.0, 30.0, 60.0),
        high_threshold: float | None = None,
        critical_threshold: float | None = None,
        relief_interval_s: float = 1.0,
        auto_relieve: bool | None = None,
        builtin_relievers: bool = True,
        history_size: int = DEFAULT_HISTORY_SIZE,
        stuck_after_s: float = 30.0,
        monitor: Any = None,
        sleep: Callable[[float], None] | None = None,
        kernel_events: bool = True,
        psi_trigger: tuple[int, int] = (150_000, 1_000_000),
        psi_trigger_level: PressureLevel = PressureLevel.MODERATE,
    ) -> None:
        if not (isinstance(interval_s, int | float) and 0 < interval_s <= 3600):
            raise ConfigurationError(
                f"interval_s={interval_s!r} (argument): expected seconds in (0, 3600]",
                value=interval_s,
                source="argument",
            )
        if not (isinstance(history_size, int) and 1 <= history_size <= 1_000_000):
            raise ConfigurationError(
                f"history_size={history_size!r} (argument): expected 1..1000000 runs",
                value=history_size,
                source="argument",
            )
        if not (len(psi_thresholds) == 3 and list(psi_thresholds) == sorted(psi_thresholds)):
            raise ConfigurationError(
                f"psi_thresholds={psi_thresholds!r} (argument): expected three rising "
                "percentages like (10, 30, 60)",
                value=psi_thresholds,
                source="argument",
            )
        for name, frac in (
            ("high_threshold", high_threshold),
            ("critical_threshold", critical_threshold),
        ):
            if frac is not None and not (isinstance(frac, int | float) and 0 < frac <= 1.5):
                raise ConfigurationError(
                    f"{name}={frac!r} (argument): expected a fraction of the budget like 0.95",
                    value=frac,
                    source="argument",
                )
        self._config = config
        self._probe_injected = probe is not None
        if probe is None:
            from memwarden.probes import rss

            probe = rss
        self._probe: Probe = probe
        self._clock: Clock = clock or time.monotonic
        self._use_psi = (not self._probe_injected) if psi is None else bool(psi)
        self._use_cgroup = (not self._probe_injected) if cgroup is None else bool(cgroup)
        self.interval_s = float(interval_s)
        self.psi_thresholds = tuple(float(t) for t in psi_thresholds)
        self._high_frac = high_threshold
        self._critical_frac = critical_threshold
        self.relief_interval_s = float(relief_interval_s)
        self._auto_relieve = auto_relieve
        self.stuck_after_s = float(stuck_after_s)
        self._monitor = monitor
        self._sleep = sleep
        self.kernel_events = bool(kernel_events)
        stall_us, window_us = psi_trigger
        if not (0 < stall_us <= window_us and 500_000 <= window_us <= 10_000_000):
            raise ConfigurationError(
                f"psi_trigger={psi_trigger!r} (argument): expected (stall_us, window_us) with "
                "0 < stall_us <= window_us and a window of 0.5-10 s, like (150000, 1000000)",
                value=psi_trigger,
                source="argument",
            )
        self.psi_trigger = (int(stall_us), int(window_us))
        self.psi_trigger_level = PressureLevel(psi_trigger_level)

        self._lock = threading.RLock()
        self._changed = threading.Condition(threading.Lock())
        self._relief_lock = threading.Lock()
        # Registrations by their order number; dead ones (a weakly held method's object
        # was collected) are queued in _dead_registrations by a lock-free weakref
        # callback and removed under the lock by _prune_dead_locked().
        self._registrations: dict[int, ReliefRegistration] = {}
        self._dead_registrations: deque[int] = deque()
        self._subscribers: Subscribers[Callable[[PressureLevel, PressureLevel], None]] = (
            Subscribers("Governor.on_pressure", error=_subscriber_limit_error)
        )
        self._history: deque[ReliefRun] = deque(maxlen=history_size)
        self._level = PressureLevel.NONE
        self._signals = _Signals()
        self._pressure_since_s: float | None = None
        self._last_relief_s: float | None = None
        self._stuck_reported_s = 0.0
        self._counters = {
            "evaluations": 0,
            "transitions": 0,
            "relief_runs": 0,
            "reliever_errors": 0,
            "callback_errors": 0,
            "pressure_episodes": 0,
            "kernel_events": 0,
            "waits": 0,
            "wait_timeouts": 0,
        }
        self._longest_wait_s = 0.0
        self._total_pressure_s = 0.0
        # slow signals (cgroup files, PSI) are re-read at most this often
        self._slow_every_s = 0.25
        self._slow_read_s: float | None = None
        self._cgroup_dir: Path | None = None
        self._cgroup_version = 0
        self._cgroup_resolved = False
        self._cgroup_ancestors: list[Path] = []
        self._cgroup_limit: int | None = None
        self._cgroup_limit_read_s: float | None = None
        self._psi_path: Path | None = None
        self._threshold_cache: dict[int, dict[str, int]] = {}
        self._last_events: tuple[int, int, int] | None = None
        self._events_hold_until_s = 0.0
        self._events_hold_level = PressureLevel.NONE
        self._kernel_hold_until_s = 0.0
        self._kernel_hold_level = PressureLevel.NONE

        self._watcher: _Watcher | None = None
        self._monitor_sub: Any = None
        if builtin_relievers:
            self.register_reliever(_gc_reliever, priority=PRIORITY_GC, name="gc.collect")
            self.register_reliever(malloc_trim, priority=PRIORITY_MALLOC_TRIM, name="malloc_trim")
        reset_after_fork(self._after_fork)

    # -- configuration ---------------------------------------------------

    @property
    def config(self) -> MemoryConfig:
        """The configuration in force (resolved from the environment on first use)."""
        if self._config is None:
            from memwarden.config import load_config

            self._config = load_config()
        return self._config

    @property
    def budget_bytes(self) -> int:
        """The budget usage is measured against (``config.max_memory_bytes``)."""
        return self.config.max_memory_bytes

    def thresholds_bytes(self) -> dict[str, int]:
        """Usage in bytes at which each level starts, and below which pressure ends."""
        return dict(self._thresholds(self.budget_bytes))

    def _fractions(self) -> tuple[float, float, float, float]:
        cfg = self.config
        moderate = cfg.pressure_threshold
        high = self._high_frac if self._high_frac is not None else (moderate + 1.0) / 2
        critical = self._critical_frac if self._critical_frac is not None else max(0.97, high)
        return cfg.release_threshold, moderate, max(high, moderate), max(critical, high, moderate)

    def _thresholds(self, limit_bytes: int) -> dict[str, int]:
        cached = self._threshold_cache.get(limit_bytes)
        if cached is not None:
            return cached
        release, moderate, high, critical = self._fractions()
        out = {
            "release": int(limit_bytes * release),
            "moderate": int(limit_bytes * moderate),
            "high": int(limit_bytes * high),
            "critical": int(limit_bytes * critical),
        }
        if len(self._threshold_cache) >= 8:  # budget and cgroup limit: a handful at most
            self._threshold_cache.clear()
        self._threshold_cache[limit_bytes] = out
        return out

    # -- registration ----------------------------------------------------

    def register_reliever(
        self, fn: Reliever, *, priority: int, name: str | None = None
    ) -> ReliefRegistration:
        """Register ``fn`` to run under pressure; lower ``priority`` runs first.

        Args:
            fn: frees memory; returns the bytes it expects to have freed, or None. A bound
                method is held weakly (its object may be collected; the registration
                then lapses), any other callable strongly.
            priority: e.g. :data:`PRIORITY_CACHE` (10) or :data:`PRIORITY_POOL` (20).
            name: shown in relief records and logs; default the callable's qualified name.

        Returns:
            The registration; call ``unregister()`` to remove it.

        Raises:
            ConfigurationError: ``fn`` is not callable, or the registry is full.
        """
        if not callable(fn):
            raise ConfigurationError(
                f"reliever {fn!r} (argument): expected a callable", value=fn, source="argument"
            )
        if not isinstance(priority, int):
            raise ConfigurationError(
                f"priority={priority!r} (argument): expected an int like 10",
                value=priority,
                source="argument",
            )
        label = name or getattr(fn, "__qualname__", None) or repr(fn)
        reg = ReliefRegistration(self, fn, priority, label)
        with self._lock:
            self._prune_dead_locked()
            if len(self._registrations) >= MAX_RELIEVERS:
                self._registrations = {k: r for k, r in self._registrations.items() if r.alive}
            if len(self._registrations) >= MAX_RELIEVERS:
                raise ConfigurationError(
                    f"cannot register reliever {label!r}: {MAX_RELIEVERS} already registered",
                    value=label,
                    source="argument",
                )
            self._registrations[reg._order] = reg
        return reg

    def _prune_dead_locked(self) -> None:
        """Drop the registrations whose weakly held reliever died (caller holds the lock)."""
        dead, regs = self._dead_registrations, self._registrations
        while dead:
            try:
                order = dead.popleft()
            except IndexError:  # pragma: no cover - emptied concurrently
                break
            regs.pop(order, None)

    def _remove_registration(self, reg: ReliefRegistration) -> None:
        with self._lock:
            self._registrations.pop(reg._order, None)
            self._prune_dead_locked()

    def relievers(self) -> list[ReliefRegistration]:
        """The live registrations in the order relief runs them."""
        with self._lock:
            self._prune_dead_locked()
            self._registrations = {k: r for k, r in self._registrations.items() if r.alive}
            return sorted(self._registrations.values(), key=lambda r: (r.priority, r._order))

    def registration_count(self) -> int:
        """How many registrations the registry holds now (dead ones already dropped).

        Unlike :meth:`relievers`, does not resolve each reliever: cheap, for stats.
        """
        with self._lock:
            self._prune_dead_locked()
            return len(self._registrations)

    def on_pressure(
        self, callback: Callable[[PressureLevel, PressureLevel], None]
    ) -> PressureSubscription:
        """Call ``callback(old_level, new_level)`` on every level change.

        Callbacks run on the thread that noticed the change (the watcher thread while
        watching); exceptions are logged, never raised into the governor.

        Raises:
            ConfigurationError: more than 1000 subscribers.
        """
        return self._subscribers.add(callback)

    # -- the level -------------------------------------------------------

    def level(self) -> PressureLevel:
        """The pressure level now (evaluated on the spot; cheap: about 1 µs of RSS read)."""
        return self._evaluate()

    def is_under_pressure(self) -> bool:
        """Whether the level is MODERATE or worse (pressure ends below the release level)."""
        return self._evaluate() >= PressureLevel.MODERATE

    @property
    def current_level(self) -> PressureLevel:
        """The last evaluated level, without evaluating again."""
        return self._level

    def _usage_level(self, used: int, limit: int, current: PressureLevel) -> PressureLevel:
        t = self._thresholds(limit)
        if used >= t["critical"]:
            raw = PressureLevel.CRITICAL
        elif used >= t["high"]:
            raw = PressureLevel.HIGH
        elif used >= t["moderate"]:
            raw = PressureLevel.MODERATE
        else:
            raw = PressureLevel.NONE
        if raw >= current:
            return raw
        # Falling: leave a level only below its threshold less the hysteresis, and leave
        # pressure altogether only below the release level.
        margin = int(limit * self.config.hysteresis)
        floor = PressureLevel.MODERATE if used >= t["release"] else PressureLevel.NONE
        if current >= PressureLevel.HIGH and used >= t["high"] - margin:
            floor = max(floor, PressureLevel.HIGH)
        if current >= PressureLevel.CRITICAL and used >= t["critical"] - margin:
            floor = max(floor, PressureLevel.CRITICAL)
        return max(raw, min(floor, current))

    def _evaluate(self, usage_bytes: int | None = None) -> PressureLevel:
        now = self._clock()
        used = self._probe() if usage_bytes is None else usage_bytes
        with self._lock:
            sig = self._signals
            old = self._level
            sig.usage_bytes = used
            sig.usage_level = self._usage_level(used, self.budget_bytes, sig.usage_level)
            if self._slow_read_s is None or now - self._slow_read_s >= self._slow_every_s:
                self._slow_read_s = now
                self._read_slow_signals(now, old)
            if now >= self._events_hold_until_s:
                self._events_hold_level = PressureLevel.NONE
            if now >= self._kernel_hold_until_s:
                self._kernel_hold_level = PressureLevel.NONE
            sig.events_level = self._events_hold_level
            sig.kernel_level = self._kernel_hold_level
            new = max(
                sig.usage_level,
                sig.cgroup_level,
                sig.psi_level,
                sig.events_level,
                sig.kernel_level,
            )
            self._counters["evaluations"] += 1
            if new == old:
                return new
            self._level = new
            self._counters["transitions"] += 1
            if old == PressureLevel.NONE:
                self._pressure_since_s = now
                self._stuck_reported_s = 0.0
                self._counters["pressure_episodes"] += 1
            elif new == PressureLevel.NONE and self._pressure_since_s is not None:
                self._total_pressure_s += now - self._pressure_since_s
                self._pressure_since_s = None
            subscribers = self._subscribers.snapshot()
        log.log(
            logging.WARNING if new > old else logging.INFO,
            "memory pressure %s -> %s (%s)",
            old.name,
            new.name,
            self.explain(),
        )
        for callback in subscribers:
            try:
                callback(old, new)
            except Exception:
                self._counters["callback_errors"] += 1
                log.exception("on_pressure callback %r raised; ignored", callback)
        with self._changed:
            self._changed.notify_all()
        return new

    def explain(self) -> str:
        """Which inputs stand at which level, in one line (for logs and errors)."""
        sig = self._signals
        parts = [
            f"usage {format_size(sig.usage_bytes)} of budget {format_size(self.budget_bytes)}"
            f" -> {sig.usage_level.name}"
        ]
        if sig.cgroup_limit_bytes is not None and sig.cgroup_bytes is not None:
            parts.append(
                f"cgroup working set {format_size(sig.cgroup_bytes)} of limit "
                f"{format_size(sig.cgroup_limit_bytes)} -> {sig.cgroup_level.name}"
            )
        if sig.psi_avg10 is not None:
            parts.append(f"PSI some avg10 {sig.psi_avg10:.1f}% -> {sig.psi_level.name}")
        if sig.events_level:
            parts.append(f"memory.events rising -> {sig.events_level.name}")
        if sig.kernel_level:
            parts.append(f"kernel notification -> {sig.kernel_level.name}")
        return "; ".join(parts)

    def _read_slow_signals(self, now: float, current: PressureLevel) -> None:
        """Cgroup usage, memory.events and PSI: re-read at most every 0.25 s."""
        sig = self._signals
        if self._use_cgroup:
            self._read_cgroup(now, current)
        if self._use_psi:
            if self._psi_path is None:
                # Found once: the cgroup's memory.pressure (v2) or the system's file.
                from memwarden.probes import pressure_stall

                found = pressure_stall()
                self._psi_path = Path(found.source) if found is not None else Path()
            avg = _read_psi_some_avg10(self._psi_path) if self._psi_path.name else None
            if avg is None:
                self._use_psi = False
                sig.psi_avg10 = None
                sig.psi_level = PressureLevel.NONE
            else:
                sig.psi_avg10 = avg
                m, h, c = self.psi_thresholds
                sig.psi_level = (
                    PressureLevel.CRITICAL
                    if avg >= c
                    else PressureLevel.HIGH
                    if avg >= h
                    else PressureLevel.MODERATE
                    if avg >= m
                    else PressureLevel.NONE
                )

    def _read_cgroup(self, now: float, current: PressureLevel) -> None:
        """Usage against the limit and memory.events, from the cgroup's files directly.

        The cgroup's directory is found once (parsing mountinfo costs milliseconds, too
        slow for the path from a kernel notification to the callback); the limit, which
        can sit on any ancestor, is re-read every 5 s.
        """
        from memwarden.probes import _read_int, _read_kv

        sig = self._signals
        if not self._cgroup_resolved:
            from memwarden.probes import cgroup_info

            self._cgroup_resolved = True
            info = cgroup_info()
            if info is not None:
                self._cgroup_dir = info.directory
                self._cgroup_version = info.version
                self._cgroup_ancestors = list(info.ancestors())
        d = self._cgroup_dir
        if d is None:
            self._use_cgroup = False
            return
        v1 = self._cgroup_version == 1
        if self._cgroup_limit_read_s is None or now - self._cgroup_limit_read_s >= 5.0:
            self._cgroup_limit_read_s = now
            name = "memory.limit_in_bytes" if v1 else "memory.max"
            limits = [_read_int(a / name) for a in self._cgroup_ancestors]
            self._cgroup_limit = min((x for x in limits if x), default=None)
        limit = self._cgroup_limit
        usage = _read_int(d / ("memory.usage_in_bytes" if v1 else "memory.current"))
        if usage is not None and limit is not None:
            stat = _read_kv(d / "memory.stat")
            inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
            working_set = max(0, usage - inactive)
            sig.cgroup_bytes = working_set
            sig.cgroup_limit_bytes = limit
            sig.cgroup_level = self._usage_level(working_set, limit, sig.cgroup_level)
        else:
            sig.cgroup_level = PressureLevel.NONE
        if v1:
            oom = _read_kv(d / "memory.oom_control")
            counts = (0, _read_int(d / "memory.failcnt") or 0, oom.get("oom_kill", 0))
        else:
            ev = _read_kv(d / "memory.events")
            counts = (ev.get("high", 0), ev.get("max", 0), ev.get("oom", 0) + ev.get("oom_kill", 0))
        if self._last_events is not None:
            prev = self._last_events
            rising = PressureLevel.NONE
            if counts[2] > prev[2]:
                rising = PressureLevel.CRITICAL
            elif counts[1] > prev[1] or counts[0] > prev[0]:
                # Hitting memory.high/max (v1: failcnt) also happens while the kernel
                # reclaims page cache, so on its own it is MODERATE, not more.
                rising = PressureLevel.MODERATE
            if rising > PressureLevel.NONE:
                # A rising count is a moment, not a state: hold it a little while.
                self._events_hold_level = max(rising, self._events_hold_level)
                self._events_hold_until_s = now + max(2.0, 3 * self.interval_s)
        self._last_events = counts

    def note_kernel_event(self, level: PressureLevel, *, hold_s: float = 2.0) -> PressureLevel:
        """Feed a kernel pressure notification (PSI trigger, v1 pressure_level) in.

        The event holds ``level`` as a floor for ``hold_s`` seconds, then the level is
        evaluated at once. Used by the watcher; public so other event sources can feed in.

        Returns:
            The level after the event.
        """
        now = self._clock()
        with self._lock:
            self._counters["kernel_events"] += 1
            if level > PressureLevel.NONE:
                self._kernel_hold_level = max(level, self._kernel_hold_level)
                self._kernel_hold_until_s = max(self._kernel_hold_until_s, now + hold_s)
            self._slow_read_s = None  # re-read slow signals now
        return self._evaluate()

    # -- relief ----------------------------------------------------------

    def relieve(self, *, reason: str = "manual") -> ReliefRun:
        """Run relievers in priority order until the level drops.

        When called without pressure, every reliever runs (an explicit request to free
        memory). A reliever that raises is logged and skipped. The run is recorded in
        :meth:`history`.

        Returns:
            What ran, with RSS measured before and after each step.
        """
        with self._relief_lock:
            return self._relieve_locked(reason)

    def _try_relieve(self, reason: str) -> ReliefRun | None:
        """Relieve unless another thread is already doing so."""
        if not self._relief_lock.acquire(blocking=False):
            return None
        try:
            return self._relieve_locked(reason)
        finally:
            self._relief_lock.release()

    def _relieve_locked(self, reason: str) -> ReliefRun:
        start = self._clock()
        t0 = time.perf_counter()
        level_before = self._evaluate()
        rss_before = self._probe()
        steps: list[ReliefStep] = []
        level = level_before
        for reg in self.relievers():
            fn = reg.resolve()
            if fn is None:
                continue
            before = self._probe()
            s0 = time.perf_counter()
            error: str | None = None
            reported: int | None = None
            try:
                out = fn()
                if isinstance(out, int) and not isinstance(out, bool):
                    reported = out
            except Exception as exc:
                error = repr(exc)
                self._counters["reliever_errors"] += 1
                log.exception("reliever %r raised; skipped", reg.name)
            after = self._probe()
            level = self._evaluate()
            steps.append(
                ReliefStep(
                    reg.name,
                    reg.priority,
                    reported,
                    before,
                    after,
                    time.perf_counter() - s0,
                    error,
                    level,
                )
            )
            if level_before > PressureLevel.NONE and level < level_before:
                break
        run = ReliefRun(
            start,
            time.perf_counter() - t0,
            reason,
            level_before,
            level,
            rss_before,
            self._probe(),
            tuple(steps),
        )
        with self._lock:
            self._history.append(run)
            self._counters["relief_runs"] += 1
            self._last_relief_s = self._clock()
        log.info("%s", run.summary())
        return run

    def history(self) -> list[ReliefRun]:
        """The most recent relief runs, oldest first (bounded by ``history_size``)."""
        with self._lock:
            return list(self._history)

    def _maybe_relieve(self, reason: str) -> ReliefRun | None:
        """Relieve if under pressure and the last run is older than ``relief_interval_s``."""
        if self._level == PressureLevel.NONE:
            return None
        last = self._last_relief_s
        if last is not None and self._clock() - last < self.relief_interval_s:
            return None
        return self._try_relieve(reason)

    def _report_if_stuck(self, waited_s: float | None = None) -> None:
        since = self._pressure_since_s
        if since is None:
            return
        lasted = self._clock() - since
        due = max(self.stuck_after_s, self._stuck_reported_s * 2)
        if lasted < due:
            return
        self._stuck_reported_s = lasted
        runs = self.history()
        freed = sum(r.freed_bytes for r in runs if r.started_s >= since)
        log.warning(
            "memory pressure (%s) has lasted %.1f s despite %d relief runs (net %s freed); "
            "usage %s of budget %s: a leak, or a budget too small for the workload%s",
            self._level.name,
            lasted,
            sum(1 for r in runs if r.started_s >= since),
            format_size(freed),
            format_size(self._signals.usage_bytes),
            format_size(self.budget_bytes),
            "" if waited_s is None else f"; a producer has waited {waited_s:.1f} s",
        )

    # -- waiting ---------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
            return
        with self._changed:
            self._changed.wait(seconds)

    def wait_for_relief(self, timeout: float | None = None, *, poll_s: float = 0.1) -> None:
        """Run relief, then block until pressure ends.

        Returns at once when there is no pressure. While waiting, relief runs again every
        ``relief_interval_s``, and pressure that outlasts ``stuck_after_s`` is logged as a
        probable leak with the time spent waiting.

        Args:
            timeout: seconds to wait at most; None waits until pressure ends.
            poll_s: seconds between re-evaluations.

        Raises:
            PressureTimeoutError: pressure still present after ``timeout`` (carries
                ``waited_s`` and ``level``).
        """
        for pause in self._wait_steps(timeout, poll_s):
            self._pause(pause)

    def _wait_steps(self, timeout: float | None, poll_s: float) -> Iterator[float]:
        """The wait loop shared by the sync and async waits: yields each pause to sleep.

        Returns when pressure ends; raises PressureTimeoutError on timeout.
        """
        start = self._clock()
        if self._evaluate() == PressureLevel.NONE:
            return
        self._counters["waits"] += 1
        self._try_relieve("wait")
        try:
            while True:
                level = self._evaluate()
                waited = self._clock() - start
                if level == PressureLevel.NONE:
                    return
                if timeout is not None and waited >= timeout:
                    self._counters["wait_timeouts"] += 1
                    raise PressureTimeoutError(
                        f"memory pressure {level.name} did not end within {timeout:g} s "
                        f"({self.explain()}; pressure ends below "
                        f"{format_size(self.thresholds_bytes()['release'])})",
                        waited_s=waited,
                        level=level,
                    )
                self._maybe_relieve("wait")
                self._report_if_stuck(waited)
                yield poll_s if timeout is None else max(0.0, min(poll_s, timeout - waited))
        finally:
            self._longest_wait_s = max(self._longest_wait_s, self._clock() - start)

    async def async_wait_for_relief(
        self, timeout: float | None = None, *, poll_s: float = 0.1
    ) -> None:
        """The awaitable form of :meth:`wait_for_relief` (relief runs inline, briefly).

        Raises:
            PressureTimeoutError: pressure still present after ``timeout``.
        """
        import asyncio  # lazy: keeps `import memwarden` cheap

        for pause in self._wait_steps(timeout, poll_s):
            if self._sleep is not None:  # an injected sleep (tests): sleep, then yield
                self._sleep(pause)
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(pause)

    # -- watching --------------------------------------------------------

    @property
    def auto_relieve(self) -> bool:
        """Whether the watcher runs relief by itself when pressure starts."""
        if self._auto_relieve is None:
            return self.config.graceful_degradation
        return self._auto_relieve

    def _tick(self, usage_bytes: int | None = None) -> None:
        """One watcher step: evaluate, relieve if due, report if stuck."""
        level = self._evaluate(usage_bytes)
        if level > PressureLevel.NONE:
            if self.auto_relieve:
                self._maybe_relieve("pressure")
            self._report_if_stuck()

    @property
    def watching(self) -> bool:
        """Whether :meth:`start` is in effect."""
        return self._watcher is not None and self._watcher.alive

    def start(self) -> Governor:
        """Start watching in a daemon thread (idempotent); returns self.

        The thread waits on kernel notifications where available (PSI triggers, cgroup
        v1 ``memory.pressure_level`` and usage thresholds) and samples usage every
        ``interval_s`` between them; with a ``monitor``, its samples are used too.
        """
        with self._lock:
            if self.watching:
                return self
            _ = self.config  # resolve (and validate) before the thread starts
            self._watcher = _Watcher(self)
            self._watcher.start()
            if self._monitor is not None and self._monitor_sub is None:
                try:
                    self._monitor_sub = self._monitor.on_sample(self._on_monitor_sample)
                except Exception:
                    log.exception(
                        "cannot subscribe to monitor %r; sampling on our own", self._monitor
                    )
        return self

    def _on_monitor_sample(self, sample: Any) -> None:
        try:
            rss_bytes = getattr(sample, "rss_bytes", None)
            self._tick(int(rss_bytes) if rss_bytes is not None else None)
        except Exception:
            log.exception("governor failed on a monitor sample; ignored")

    def stop(self) -> None:
        """Stop watching (idempotent); registrations and history stay."""
        with self._lock:
            watcher, self._watcher = self._watcher, None
            sub, self._monitor_sub = self._monitor_sub, None
        if sub is not None:
            for name in ("unsubscribe", "close", "cancel"):
                fn = getattr(sub, name, None)
                if callable(fn):
                    with contextlib.suppress(Exception):
                        fn()
                    break
        if watcher is not None:
            watcher.stop()

    def close(self) -> None:
        """Stop watching and drop every registration and subscriber."""
        self.stop()
        with self._lock:
            self._registrations.clear()
            self._dead_registrations.clear()
            self._subscribers.clear()

    def __enter__(self) -> Governor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def mechanisms(self) -> list[str]:
        """The notification mechanisms the watcher uses (``["sampling"]`` at least)."""
        w = self._watcher
        return w.mechanisms() if w is not None else []

    def stats(self) -> dict[str, Any]:
        """Counters, current signals and thresholds, as plain values for reports."""
        with self._lock:
            sig = self._signals
            since = self._pressure_since_s
            now = self._clock()
            return {
                "level": self._level.name,
                "budget_bytes": self.budget_bytes,
                "thresholds_bytes": self.thresholds_bytes(),
                "usage_bytes": sig.usage_bytes,
                "signals": {
                    "usage": sig.usage_level.name,
                    "cgroup": sig.cgroup_level.name,
                    "cgroup_working_set_bytes": sig.cgroup_bytes,
                    "cgroup_limit_bytes": sig.cgroup_limit_bytes,
                    "psi": sig.psi_level.name,
                    "psi_some_avg10": sig.psi_avg10,
                    "memory_events": sig.events_level.name,
                    "kernel_events": sig.kernel_level.name,
                },
                "relievers": [(r.name, r.priority) for r in self.relievers()],
                "subscribers": len(self._subscribers),
                "watching": self.watching,
                "mechanisms": self.mechanisms(),
                "pressure_for_s": None if since is None else now - since,
                "total_pressure_s": self._total_pressure_s
                + (0.0 if since is None else now - since),
                "longest_wait_s": self._longest_wait_s,
                **self._counters,
            }

    def __repr__(self) -> str:
        return (
            f"<Governor level={self._level.name} relievers={len(self._registrations)} "
            f"watching={self.watching}>"
        )

    def _after_fork(self) -> None:
        # Threads do not survive fork: the child starts unwatched with fresh locks.
        self._lock = threading.RLock()
        self._changed = threading.Condition(threading.Lock())
        self._relief_lock = threading.Lock()
        if self._watcher is not None:
            self._watcher.abandon()
        self._watcher = None
        self._monitor_sub = None


PressureDetector = Governor
"""The playbook's name for the :class:`Governor`."""


# ---------------------------------------------------------------------------
# the watcher thread


class _Watcher:
    """The governor's thread: poll() on kernel event fds with a sampling timeout."""

    def __init__(self, gov: Governor) -> None:
        self._gov = weakref.ref(gov)
        self._interval_s = gov.interval_s
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._sources: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="memwarden-governor", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def mechanisms(self) -> list[str]:
        return [*(s.name for s in self._sources), "sampling"]

    def start(self) -> None:
        gov = self._gov()
        if gov is not None:
            self._sources = _open_sources(gov)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._close()

    def abandon(self) -> None:
        self._stop.set()
        self._close()

    def _close(self) -> None:
        for s in self._sources:
            with contextlib.suppress(Exception):
                s.close()
        self._sources = []
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _run(self) -> None:
        import select

        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        by_fd: dict[int, Any] = {}
        for s in self._sources:
            poller.register(s.fd, s.events)
            by_fd[s.fd] = s
        timeout_ms = max(1, int(self._interval_s * 1000))
        while not self._stop.is_set():
            try:
                ready = poller.poll(timeout_ms)
            except OSError:
                if self._stop.is_set():
                    return
                # Never let the watcher die: log, and carry on by sampling alone.
                log.exception("governor: poll() failed; continuing with sampling only")
                poller = select.poll()
                with contextlib.suppress(OSError, ValueError):
                    poller.register(self._wake_r, select.POLLIN)
                by_fd.clear()
                self._stop.wait(self._interval_s)
                continue
            gov = self._gov()
            if gov is None or self._stop.is_set():
                return
            try:
                for fd, revents in ready:
                    src = by_fd.get(fd)
                    if src is None:
                        continue
                    if revents & (select.POLLERR | select.POLLNVAL | select.POLLHUP):
                        # The cgroup went away or the trigger was torn down: stop polling it.
                        log.debug("governor: %s reported an error; no longer polled", src.name)
                        poller.unregister(fd)
                        del by_fd[fd]
                        continue
                    gov.note_kernel_event(src.consume())
                gov._tick()
            except Exception:
                log.exception("governor watcher step failed; continuing")
            del gov


# ---------------------------------------------------------------------------
# kernel notification sources


class _Source:
    """One kernel notification fd the watcher polls; ``consume`` maps an event to a level."""

    name = "source"

    def __init__(self, fd: int, events: int, level: PressureLevel, owned: tuple[int, ...]) -> None:
        self.fd = fd
        self.events = events
        self.level = level
        self._owned = owned
        self.fired = 0

    def consume(self) -> PressureLevel:
        """Acknowledge one notification; return the level it signals (NONE: re-evaluate)."""
        self.fired += 1
        return self.level

    def close(self) -> None:
        for fd in self._owned:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._owned = ()


class _PsiTrigger(_Source):
    """A PSI trigger: ``poll()`` reports POLLPRI when stall time exceeds the threshold."""

    name = "psi-trigger"


class _EventFd(_Source):
    """A cgroup v1 notification delivered through an eventfd (read to reset its counter)."""

    def __init__(self, name: str, efd: int, level: PressureLevel, owned: tuple[int, ...]) -> None:
        import select

        super().__init__(efd, select.POLLIN, level, owned)
        self.name = name

    def consume(self) -> PressureLevel:
        with contextlib.suppress(OSError):
            os.read(self.fd, 8)
        return super().consume()


def _open_psi_trigger(gov: Governor) -> _Source | None:
    """Write ``some <stall_us> <window_us>`` to the PSI file and keep it open for POLLPRI."""
    import select

    from memwarden.probes import pressure_files

    stall_us, window_us = gov.psi_trigger
    for path in pressure_files():
        # Unprivileged processes may only use windows that are multiples of 2 s.
        windows = [window_us] if window_us % 2_000_000 == 0 else [window_us, 2_000_000]
        for window in windows:
            stall = min(stall_us * window // window_us, window)
            try:
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                break
            try:
                os.write(fd, f"some {stall} {window}".encode() + b"\0")
            except OSError as exc:
                os.close(fd)
                log.debug("PSI trigger some %d %d on %s refused: %s", stall, window, path, exc)
                continue
            log.debug("PSI trigger some %d %d armed on %s", stall, window, path)
            src = _PsiTrigger(fd, select.POLLPRI, gov.psi_trigger_level, (fd,))
            src.name = f"psi-trigger({path})"
            return src
    return None


def _open_v1_sources(gov: Governor) -> list[_Source]:
    """cgroup v1: ``memory.pressure_level`` events and ``memory.usage_in_bytes`` thresholds."""
    from memwarden.probes import cgroup_info, cgroup_usage

    info = cgroup_info()
    if info is None or info.version != 1 or not hasattr(os, "eventfd"):
        return []
    control = info.directory / "cgroup.event_control"
    out: list[_Source] = []

    def arm(name: str, target: str, arg: str, level: PressureLevel) -> None:
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            tfd = os.open(info.directory / target, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(efd)
            raise
        try:
            with open(control, "w") as fh:  # noqa: PTH123 - one write, then closed
                fh.write(f"{efd} {tfd} {arg}")
        except OSError:
            os.close(efd)
            os.close(tfd)
            raise
        out.append(_EventFd(name, efd, level, (efd, tfd)))

    try:
        arm("cgroup-v1-pressure(medium)", "memory.pressure_level", "medium", PressureLevel.MODERATE)
        arm("cgroup-v1-pressure(critical)", "memory.pressure_level", "critical", PressureLevel.HIGH)
    except OSError as exc:
        log.debug("cgroup v1 memory.pressure_level notifications unavailable: %s", exc)
    usage = cgroup_usage()
    if usage is not None and usage.limit_bytes is not None:
        # The kernel signals each crossing (either way) of each threshold at charge time.
        for label, at in gov._thresholds(usage.limit_bytes).items():
            try:
                arm(
                    f"cgroup-v1-threshold({label})",
                    "memory.usage_in_bytes",
                    str(at),
                    PressureLevel.NONE,
                )
            except OSError as exc:
                log.debug("cgroup v1 usage threshold %s unavailable: %s", label, exc)
                break
    return out


def _open_sources(gov: Governor) -> list[_Source]:
    """Open the kernel notification sources the machine allows; sampling always runs too."""
    from memwarden._compat import IS_LINUX

    if not IS_LINUX or not gov.kernel_events:
        return []
    sources: list[_Source] = []
    if gov._use_psi:
        psi = _open_psi_trigger(gov)
        if psi is not None:
            sources.append(psi)
    if gov._use_cgroup:
        sources.extend(_open_v1_sources(gov))
    return sources


# ---------------------------------------------------------------------------
# the process-wide governor

_default: Governor | None = None
_default_lock = threading.Lock()


def governor() -> Governor:
    """The process-wide governor, created on first use (not started: call ``.start()``)."""
    global _default
    gov = _default
    if gov is None:
        with _default_lock:
            if _default is None:
                _default = Governor()
            gov = _default
    return gov


def register_reliever(
    fn: Reliever, *, priority: int, name: str | None = None
) -> ReliefRegistration:
    """Register ``fn`` with the process-wide governor (see :meth:`Governor.register_reliever`).

    Cheap: creates the governor object if needed, starts no thread, imports nothing heavy.
    """
    return governor().register_reliever(fn, priority=priority, name=name)


def try_register_reliever(
    fn: Reliever, *, priority: int, name: str | None = None
) -> ReliefRegistration | None:
    """:func:`register_reliever` for components that must work without relief.

    Caches, pools and engines register themselves on creation; a full registry (or any
    other failure) is logged and returns None instead of stopping the component.
    """
    try:
        return register_reliever(fn, priority=priority, name=name)
    except Exception:
        log.warning("could not register %s with the governor", name or fn, exc_info=True)
        return None


def _reset_default_for_tests() -> None:
    """Stop and forget the process-wide governor (tests only)."""
    global _default
    with _default_lock:
        gov, _default = _default, None
    if gov is not None:
        gov.stop()


def resolve_governor(governor: Governor | DefaultType | None) -> Governor | None:
    """What a component's ``governor=`` argument means.

    Args:
        governor: :data:`DEFAULT` for the process-wide governor (created lazily, not
            started), ``None`` for no governor, or a governor to use.

    Returns:
        The governor to register with, or None.

    Raises:
        TypeError: anything else.
    """
    if governor is DEFAULT:
        return _default_governor()
    if governor is None or isinstance(governor, Governor):
        return governor
    raise TypeError(
        f"governor={governor!r} (argument): expected a Governor, DEFAULT "
        "(the process-wide governor) or None (no governor)"
    )


_default_governor = governor  # resolve_governor's parameter shadows the name


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()


reset_after_fork(_after_fork_in_child)
