"""Relief: the registry of relievers, what one relief run did, and the built-in relievers.

A :class:`ReliefRegistry` holds the relievers of one governor (weakly for bound methods),
:func:`run_relief` runs them in priority order until the level drops and returns a
:class:`ReliefRun` record. :class:`ReliefWorker` is the governor's relief thread: the
watcher and waiting producers hand relief to it, so a reliever that blocks never holds
up level evaluation or a producer's timeout.
"""

from __future__ import annotations

import functools
import gc
import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MethodType
from typing import Any

from memwarden._registry import reset_after_fork
from memwarden._units import format_size
from memwarden.exceptions import ConfigurationError, MemwardenError
from memwarden.levels import PressureLevel
from memwarden.typing import Clock, Probe, Reliever

__all__ = [
    "MAX_RELIEVERS",
    "PRIORITY_CACHE",
    "PRIORITY_GC",
    "PRIORITY_MALLOC_TRIM",
    "PRIORITY_POOL",
    "ReliefControl",
    "ReliefRegistration",
    "ReliefRegistry",
    "ReliefRun",
    "ReliefStep",
    "ReliefWorker",
    "malloc_trim",
    "run_relief",
]

log = logging.getLogger("memwarden.pressure")

#: Priorities: lower runs first. Caches give back what is cheapest to rebuild.
PRIORITY_CACHE = 10
PRIORITY_POOL = 20
PRIORITY_GC = 80
PRIORITY_MALLOC_TRIM = 90

#: The most relievers one governor holds (memwarden's contract: everything bounded).
MAX_RELIEVERS = 10_000

_order = itertools.count()


def _note_dead(dead: deque[int], order: int, _ref: object) -> None:
    """WeakMethod callback: queue a dead registration for removal by its registry.

    It runs wherever the garbage collector runs (any thread, possibly while that
    thread holds the registry's lock), so it takes no lock: ``deque.append`` is
    atomic, and the registry drains the queue at its next operation.
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

    __slots__ = ("__weakref__", "_order", "_registry", "_strong", "_weak", "name", "priority")

    def __init__(self, registry: ReliefRegistry, fn: Reliever, priority: int, name: str) -> None:
        self._registry: weakref.ref[ReliefRegistry] = weakref.ref(registry)
        # Who keeps what alive: a bound method's object is kept alive only by its owner;
        # we hold the method weakly. Anything else we hold, or nobody would.
        self._weak: weakref.WeakMethod[Reliever] | None = None
        self._strong: Reliever | None = None
        self._order = next(_order)
        if isinstance(fn, MethodType):
            # The callback holds the registry's dead-queue, not the registry.
            self._weak = weakref.WeakMethod(
                fn, functools.partial(_note_dead, registry._dead, self._order)
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
        registry = self._registry()
        if registry is not None:
            registry.remove(self)

    def __repr__(self) -> str:
        state = "alive" if self.alive else "dead"
        return f"<ReliefRegistration {self.name!r} priority={self.priority} {state}>"


class ReliefRegistry:
    """A governor's relievers by registration order, bounded by :data:`MAX_RELIEVERS`.

    Dead registrations (a weakly held method's object was collected) are queued by a
    lock-free weakref callback and dropped at the next registry operation.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registrations: dict[int, ReliefRegistration] = {}
        self._dead: deque[int] = deque()
        reset_after_fork(self._after_fork)

    def register(self, fn: Reliever, *, priority: int, name: str | None) -> ReliefRegistration:
        """See :meth:`Governor.register_reliever`."""
        if not callable(fn):
            raise ConfigurationError(
                f"reliever {fn!r} (argument): expected a callable", value=fn, source="argument"
            )
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigurationError(
                f"priority={priority!r} (argument): expected an int like 10",
                value=priority,
                source="argument",
            )
        label = name or getattr(fn, "__qualname__", None) or repr(fn)
        reg = ReliefRegistration(self, fn, priority, label)
        with self._lock:
            self._prune_locked()
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

    def _prune_locked(self) -> None:
        dead, regs = self._dead, self._registrations
        while dead:
            try:
                order = dead.popleft()
            except IndexError:  # pragma: no cover - emptied concurrently
                break
            regs.pop(order, None)

    def remove(self, reg: ReliefRegistration) -> None:
        """Drop ``reg`` (idempotent)."""
        with self._lock:
            self._registrations.pop(reg._order, None)
            self._prune_locked()

    def ordered(self) -> list[ReliefRegistration]:
        """The live registrations in the order relief runs them."""
        with self._lock:
            self._prune_locked()
            self._registrations = {k: r for k, r in self._registrations.items() if r.alive}
            return sorted(self._registrations.values(), key=lambda r: (r.priority, r._order))

    def __len__(self) -> int:
        with self._lock:
            self._prune_locked()
            return len(self._registrations)

    def clear(self) -> None:
        """Drop every registration."""
        with self._lock:
            self._registrations.clear()
            self._dead.clear()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


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
# one relief run


@dataclass
class RunningStep:
    """The reliever running now, for stuck-relief reports."""

    name: str
    started_s: float
    reported: bool = False


def run_relief(
    relievers: list[ReliefRegistration],
    *,
    reason: str,
    evaluate: Callable[[], PressureLevel],
    probe: Probe,
    clock: Clock,
    on_step: Callable[[RunningStep | None], None],
    on_error: Callable[[], None],
) -> ReliefRun:
    """Run ``relievers`` in order until the level drops; record each step.

    Without pressure every reliever runs (an explicit request to free memory). A
    reliever that raises is logged and skipped.

    Args:
        relievers: in the order to run them.
        reason: recorded in the run (``"manual"``, ``"pressure"``, ``"wait"``).
        evaluate: the level now (called before and after each step).
        probe: usage in bytes.
        clock: the governor's clock.
        on_step: told which reliever starts (then None when it returned).
        on_error: told that a reliever raised (for the error counter).
    """
    start = clock()
    t0 = time.perf_counter()
    level_before = evaluate()
    rss_before = probe()
    steps: list[ReliefStep] = []
    level = level_before
    for reg in relievers:
        fn = reg.resolve()
        if fn is None:
            continue
        before = probe()
        s0 = time.perf_counter()
        error: str | None = None
        reported: int | None = None
        on_step(RunningStep(reg.name, clock()))
        try:
            out = fn()
            if isinstance(out, int) and not isinstance(out, bool):
                reported = out
        except Exception as exc:
            error = repr(exc)
            on_error()
            log.exception("reliever %r raised; skipped", reg.name)
        finally:
            on_step(None)
        after = probe()
        level = evaluate()
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
    return ReliefRun(
        start,
        time.perf_counter() - t0,
        reason,
        level_before,
        level,
        rss_before,
        probe(),
        tuple(steps),
    )


class ReliefWorker:
    """The thread that runs relief for the watcher and for waiting producers.

    Created lazily (registering starts no thread). :meth:`submit` asks for a run and
    returns an event set when a run that began after the request has finished; the
    caller waits on it as long as its own deadline allows, never longer, so a reliever
    that blocks cannot stall a producer's timeout or the watcher's evaluation.
    """

    def __init__(self, run: Callable[[str], object]) -> None:
        self._run = run
        self._cond = threading.Condition(threading.Lock())
        self._pending: tuple[str, threading.Event] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, reason: str) -> threading.Event:
        """Ask for a relief run (merged with one already asked for); return its done event."""
        with self._cond:
            if self._pending is None:
                self._pending = (reason, threading.Event())
            done = self._pending[1]
            self._stopping = False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="memwarden-relief", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return done

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._pending is None:
                    return
                (reason, done), self._pending = self._pending, None
            try:
                self._run(reason)
            except Exception:  # pragma: no cover - run_relief logs reliever errors itself
                log.exception("relief run failed")
            finally:
                done.set()

    def stop(self, timeout_s: float = 1.0) -> None:
        """Let the thread end after the run in progress; wait for it at most ``timeout_s``."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def after_fork(self) -> None:
        """The thread does not exist in a forked child: start over."""
        self._cond = threading.Condition(threading.Lock())
        self._pending = None
        self._thread = None
        self._stopping = False


class ReliefControl:
    """Runs one governor's relief: on the caller's thread or on the relief thread.

    Keeps the relief history, the time of the last run (the rate limit within one
    pressure episode) and the reliever running now. A reliever that calls back into
    relief (``relieve()`` or a wait) is refused with an error instead of deadlocking.

    Args:
        registry: the relievers.
        evaluate: the governor's level now.
        probe: usage in bytes.
        clock: the governor's clock.
        history_size: relief runs kept.
        counters: the governor's counters (``relief_runs``, ``reliever_errors``,
            ``stuck_relievers`` are counted here).
    """

    def __init__(
        self,
        registry: ReliefRegistry,
        *,
        evaluate: Callable[[], PressureLevel],
        probe: Probe,
        clock: Clock,
        history_size: int,
        counters: dict[str, int],
    ) -> None:
        self.registry = registry
        self._evaluate = evaluate
        self._probe = probe
        self._clock = clock
        self._counters = counters
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread running relief now
        self.step: RunningStep | None = None
        self._history: deque[ReliefRun] = deque(maxlen=history_size)
        self.last_s: float | None = None
        self._worker = ReliefWorker(self._background)

    def refuse_reentry(self, what: str) -> None:
        """Raise if called from inside a reliever of this relief (it would wait for itself).

        Raises:
            MemwardenError: this thread is running relief now.
        """
        if self._owner == threading.get_ident():
            step = self.step
            raise MemwardenError(
                f"{what} called from inside reliever {step.name if step else '?'!r}: refused, "
                "it would wait for the relief run it is part of"
            )

    def relieve(self, reason: str) -> ReliefRun:
        """Run relief on this thread (waiting for a run in progress to finish first)."""
        self.refuse_reentry("relieve()")
        with self._lock:
            return self._run_locked(reason)

    def _run_locked(self, reason: str) -> ReliefRun:
        self._owner = threading.get_ident()
        try:
            run = run_relief(
                self.registry.ordered(),
                reason=reason,
                evaluate=self._evaluate,
                probe=self._probe,
                clock=self._clock,
                on_step=self._set_step,
                on_error=self._count_error,
            )
        finally:
            self._owner = None
        self._history.append(run)
        self._counters["relief_runs"] += 1
        self.last_s = self._clock()
        log.info("%s", run.summary())
        return run

    def _set_step(self, step: RunningStep | None) -> None:
        self.step = step

    def _count_error(self) -> None:
        self._counters["reliever_errors"] += 1

    def _background(self, reason: str) -> None:
        if self._lock.acquire(blocking=False):  # a relieve() on another thread may be running
            try:
                self._run_locked(reason)
            finally:
                self._lock.release()

    def request(self, reason: str, *, interval_s: float) -> threading.Event | None:
        """Hand a run to the relief thread unless one ran less than ``interval_s`` ago.

        Returns:
            An event set when the run has finished, or None when rate-limited.
        """
        last = self.last_s
        if last is not None and self._clock() - last < interval_s:
            return None
        return self._worker.submit(reason)

    def history(self) -> list[ReliefRun]:
        """The most recent relief runs, oldest first."""
        return list(self._history)

    def report_stuck(self, timeout_s: float) -> None:
        """Log (once per step) a reliever that has run longer than ``timeout_s``."""
        step = self.step
        if step is None or step.reported:
            return
        ran_s = self._clock() - step.started_s
        if ran_s >= timeout_s:
            step.reported = True
            self._counters["stuck_relievers"] += 1
            log.warning(
                "reliever %r has run for %.1f s and not returned; relief is stuck in it "
                "(levels are still evaluated and waits still time out)",
                step.name,
                ran_s,
            )

    def stop(self) -> None:
        """Let the relief thread end (after the run in progress)."""
        self._worker.stop(timeout_s=0.5)

    def after_fork(self) -> None:
        """Threads and locks do not carry over into a forked child."""
        self._lock = threading.Lock()
        self._owner = None
        self.step = None
        self._worker.after_fork()


# ---------------------------------------------------------------------------
# built-in relievers


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
