"""The :class:`Governor`: combines the pressure inputs into one level, runs relief, waits.

The governor keeps three things: the registry of relievers (:mod:`._relief`), the level
(the highest of its inputs, :mod:`._inputs`, with subscribers told of every change) and
waiting (producers block in :meth:`Governor.wait_for_relief` until pressure ends). Its
watcher thread (:mod:`._watcher`) and its relief thread start only when needed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from memwarden._registry import (
    DEFAULT,
    DefaultType,
    Subscribers,
    Subscription,
    reset_after_fork,
)
from memwarden._units import format_size
from memwarden.exceptions import ConfigurationError, PressureTimeoutError
from memwarden.levels import PressureLevel, ThresholdLines, Thresholds
from memwarden.pressure._inputs import (
    CgroupInput,
    EventsInput,
    KernelInput,
    PressureInput,
    PsiInput,
    UsageInput,
)
from memwarden.pressure._relief import (
    PRIORITY_GC,
    PRIORITY_MALLOC_TRIM,
    ReliefControl,
    ReliefRegistration,
    ReliefRegistry,
    ReliefRun,
    _gc_reliever,
    malloc_trim,
)
from memwarden.pressure._watcher import Watcher
from memwarden.typing import Clock, Probe, Reliever, SampleSource, SupportsUnsubscribe

if TYPE_CHECKING:
    from memwarden.config import MemoryConfig

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "Governor",
    "GovernorStats",
    "PressureDetector",
    "SignalStats",
    "governor",
    "register_reliever",
    "resolve_governor",
    "try_register_reliever",
]

log = logging.getLogger("memwarden.pressure")

DEFAULT_HISTORY_SIZE = 100
#: A reliever running longer than this is logged as stuck (then every doubling).
DEFAULT_RELIEVER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SignalStats:
    """Each input's level (by name) and its latest figure."""

    usage: str
    cgroup: str
    cgroup_working_set_bytes: int | None
    cgroup_limit_bytes: int | None
    psi: str
    psi_some_avg10: float | None
    memory_events: str
    kernel_events: str


@dataclass(frozen=True)
class GovernorStats:
    """A snapshot of :meth:`Governor.stats`; :meth:`as_dict` gives plain values for JSON."""

    level: str
    budget_bytes: int
    thresholds_bytes: dict[str, int]
    usage_bytes: int
    signals: SignalStats
    relievers: tuple[tuple[str, int], ...]
    subscribers: int
    watching: bool
    mechanisms: tuple[str, ...]
    pressure_for_s: float | None
    total_pressure_s: float
    longest_wait_s: float
    evaluations: int = 0
    transitions: int = 0
    relief_runs: int = 0
    reliever_errors: int = 0
    callback_errors: int = 0
    pressure_episodes: int = 0
    kernel_events: int = 0
    waits: int = 0
    wait_timeouts: int = 0
    stuck_relievers: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-ready values (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["relievers"] = [list(r) for r in self.relievers]
        out["mechanisms"] = list(self.mechanisms)
        return out


_COUNTERS = (
    "evaluations",
    "transitions",
    "relief_runs",
    "reliever_errors",
    "callback_errors",
    "pressure_episodes",
    "kernel_events",
    "waits",
    "wait_timeouts",
    "stuck_relievers",
)


class Governor:
    """Detects memory pressure and runs relief; one per process is the norm (:func:`governor`).

    Args:
        config: thresholds and budget; default :func:`memwarden.config.load_config`,
            resolved on first use (not at construction).
        probe: usage in bytes, default :func:`memwarden.probes.rss`.
        clock: monotonic seconds, default :func:`time.monotonic`.
        psi: read PSI ``some avg10`` and use PSI triggers. None (default) means on unless a
            ``probe`` was injected (deterministic tests should not see the host's PSI).
        cgroup: use the cgroup's working set, limit and ``memory.events``, and cgroup v1
            event notifications; None means on unless a ``probe`` was injected.
        interval_s: seconds between samples while watching (RSS costs about 1 µs).
        psi_thresholds: PSI ``some avg10`` percentages for MODERATE, HIGH, CRITICAL.
        high_threshold: fraction of the budget for HIGH; default halfway from
            ``config.pressure_threshold`` to ``config.critical_threshold``.
        critical_threshold: fraction for CRITICAL; default ``config.critical_threshold``
            (the one meaning of CRITICAL, see :mod:`memwarden.levels`).
        relief_interval_s: within one pressure episode, relief runs again at most this
            often (a new episode relieves at once).
        auto_relieve: run relief when pressure starts while watching; default
            ``config.graceful_degradation``.
        builtin_relievers: register ``gc.collect`` and ``malloc_trim`` (default True).
        history_size: relief runs kept.
        stuck_after_s: pressure lasting this long despite relief is logged as a
            probable leak (then every doubling of the time).
        monitor: a sample source (such as :class:`memwarden.monitoring.MemoryMonitor`) whose
            samples feed the usage input while watching.
        sleep: how waiting sleeps (tests inject one driving a fake clock).
        kernel_events: let the watcher wait on kernel notifications (PSI triggers, cgroup
            v1 ``memory.pressure_level`` and usage thresholds) as well as sampling.
        psi_trigger: ``(stall_us, window_us)`` of the PSI trigger (default 150 ms per 1 s;
            unprivileged processes get a 2 s window).
        psi_trigger_level: the level a fired PSI trigger holds for two seconds.
        reliever_timeout_s: a reliever running longer is logged as stuck.
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
        monitor: SampleSource | None = None,
        sleep: Callable[[float], None] | None = None,
        kernel_events: bool = True,
        psi_trigger: tuple[int, int] = (150_000, 1_000_000),
        psi_trigger_level: PressureLevel = PressureLevel.MODERATE,
        reliever_timeout_s: float = DEFAULT_RELIEVER_TIMEOUT_S,
    ) -> None:
        _check_arguments(
            interval_s, history_size, psi_thresholds, high_threshold, critical_threshold
        )
        _check_psi_trigger(psi_trigger)
        self._config = config
        injected = probe is not None
        if probe is None:
            from memwarden.probes import rss

            probe = rss
        self._probe: Probe = probe
        self._clock: Clock = clock or time.monotonic
        self._use_psi = (not injected) if psi is None else bool(psi)
        self._use_cgroup = (not injected) if cgroup is None else bool(cgroup)
        self.interval_s = float(interval_s)
        self.psi_thresholds = (
            float(psi_thresholds[0]),
            float(psi_thresholds[1]),
            float(psi_thresholds[2]),
        )
        self._overrides = (high_threshold, critical_threshold)
        self.relief_interval_s = float(relief_interval_s)
        self._auto_relieve = auto_relieve
        self.stuck_after_s = float(stuck_after_s)
        self.reliever_timeout_s = float(reliever_timeout_s)
        self._monitor = monitor
        self._sleep = sleep
        self.kernel_events = bool(kernel_events)
        self.psi_trigger = (int(psi_trigger[0]), int(psi_trigger[1]))
        self.psi_trigger_level = PressureLevel(psi_trigger_level)

        self._lock = threading.RLock()
        self._changed = threading.Condition(threading.Lock())
        self._relievers = ReliefRegistry()
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._relief = ReliefControl(
            self._relievers,
            evaluate=self._evaluate,
            probe=probe,
            clock=self._clock,
            history_size=history_size,
            counters=self._counters,
        )
        self._subscribers: Subscribers[Callable[[PressureLevel, PressureLevel], None]] = (
            Subscribers("Governor.on_pressure", error=_subscriber_limit_error)
        )
        self._level = PressureLevel.NONE
        self._lines_cache: dict[int, ThresholdLines] = {}
        self._usage = UsageInput(probe, lambda: self.budget_bytes, self._lines)
        self._kernel = KernelInput()
        self._slow: list[CgroupInput | PsiInput | EventsInput] | None = None  # lazily
        self._all_inputs: list[PressureInput] | None = None
        self._pressure_since_s: float | None = None
        self._stuck_reported_s = 0.0
        self._longest_wait_s = 0.0
        self._total_pressure_s = 0.0
        self._watcher: Watcher | None = None
        self._monitor_sub: SupportsUnsubscribe | None = None
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

    @property
    def thresholds(self) -> Thresholds:
        """The level lines as fractions: the config's, with this governor's overrides."""
        high, critical = self._overrides
        base = self.config.thresholds
        return dataclasses.replace(
            base, high=high, critical=critical if critical is not None else base.critical
        )

    def thresholds_bytes(self) -> dict[str, int]:
        """Usage in bytes at which each level starts, and below which pressure ends."""
        return self._lines(self.budget_bytes).as_dict()

    def _lines(self, limit_bytes: int) -> ThresholdLines:
        lines = self._lines_cache.get(limit_bytes)
        if lines is None:
            if len(self._lines_cache) >= 8:  # budget and cgroup limit: a handful at most
                self._lines_cache.clear()
            lines = self._lines_cache[limit_bytes] = self.thresholds.lines(limit_bytes)
        return lines

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

        Raises:
            ConfigurationError: ``fn`` is not callable, or the registry is full.
        """
        return self._relievers.register(fn, priority=priority, name=name)

    def relievers(self) -> list[ReliefRegistration]:
        """The live registrations in the order relief runs them."""
        return self._relievers.ordered()

    def registration_count(self) -> int:
        """How many registrations the registry holds now (cheap: resolves nothing)."""
        return len(self._relievers)

    def on_pressure(self, callback: Callable[[PressureLevel, PressureLevel], None]) -> Subscription:
        """Call ``callback(old_level, new_level)`` on every level change.

        Callbacks run on the thread that noticed the change; exceptions are logged.

        Raises:
            ConfigurationError: more than :data:`memwarden._registry.MAX_SUBSCRIBERS`.
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

    def _inputs(self) -> list[PressureInput]:
        inputs = self._all_inputs
        if inputs is None:
            self._slow = _open_slow_inputs(self)
            inputs = self._all_inputs = [self._usage, *self._slow, self._kernel]
        return inputs

    def _evaluate(self, usage_bytes: int | None = None) -> PressureLevel:
        now = self._clock()
        if usage_bytes is not None:
            self._usage.feed(usage_bytes)
        with self._lock:
            old = self._level
            new = max(inp.read(now) for inp in self._inputs())
            self._counters["evaluations"] += 1
            if new == old:
                return new
            self._level = new
            self._counters["transitions"] += 1
            if old == PressureLevel.NONE:
                # A new episode: relief is due at once, whenever the last one ended.
                self._pressure_since_s = now
                self._stuck_reported_s = 0.0
                self._relief.last_s = None
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
        parts = (inp.explain() for inp in [self._usage, *(self._slow or ()), self._kernel])
        return "; ".join(p for p in parts if p)

    def note_kernel_event(self, level: PressureLevel, *, hold_s: float = 2.0) -> PressureLevel:
        """Feed a kernel pressure notification (PSI trigger, v1 pressure_level) in.

        The event holds ``level`` as a floor for ``hold_s`` seconds, and the inputs that
        read files read afresh now. Public so other event sources can feed in.

        Returns:
            The level after the event.
        """
        with self._lock:
            self._counters["kernel_events"] += 1
            self._kernel.note(level, self._clock(), hold_s)
            for inp in self._slow or ():
                inp.force()
        return self._evaluate()

    # -- relief ----------------------------------------------------------

    def relieve(self, *, reason: str = "manual") -> ReliefRun:
        """Run relievers in priority order until the level drops, on this thread.

        Without pressure every reliever runs (an explicit request to free memory). A
        reliever that raises is logged and skipped; the run is recorded in :meth:`history`.

        Raises:
            MemwardenError: called from inside a reliever (it would wait for itself).
        """
        return self._relief.relieve(reason)

    def history(self) -> list[ReliefRun]:
        """The most recent relief runs, oldest first (bounded by ``history_size``)."""
        return self._relief.history()

    def _request_relief(self, reason: str) -> threading.Event | None:
        """Hand a relief run to the relief thread if under pressure and due."""
        if self._level == PressureLevel.NONE:
            return None
        return self._relief.request(reason, interval_s=self.relief_interval_s)

    # -- waiting ---------------------------------------------------------

    def wait_for_relief(self, timeout: float | None = None, *, poll_s: float = 0.1) -> None:
        """Have relief run, then block until pressure ends.

        Returns at once when there is no pressure. Relief runs on the governor's relief
        thread (again every ``relief_interval_s``), so ``timeout`` holds whatever the
        relievers do; pressure outlasting ``stuck_after_s`` is logged as a probable leak.

        Args:
            timeout: seconds to wait at most; None waits until pressure ends.
            poll_s: seconds between re-evaluations.

        Raises:
            PressureTimeoutError: pressure still present after ``timeout`` (carries
                ``waited_s`` and ``level``).
            MemwardenError: called from inside a reliever.
        """
        for pause, done in _wait_steps(self, timeout, poll_s):
            if done is not None:
                done.wait(pause)  # the relief run, as long as the deadline allows
            else:
                self._pause(pause)

    def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
            return
        with self._changed:
            self._changed.wait(seconds)

    async def async_wait_for_relief(
        self, timeout: float | None = None, *, poll_s: float = 0.1
    ) -> None:
        """The awaitable form of :meth:`wait_for_relief` (never blocks the event loop).

        Raises:
            PressureTimeoutError: pressure still present after ``timeout``.
        """
        import asyncio  # lazy: keeps `import memwarden` cheap

        for pause, done in _wait_steps(self, timeout, poll_s):
            if done is not None:  # the relief run, polled so the loop keeps running
                deadline = time.monotonic() + pause
                while not done.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                continue
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
        """One watcher step: evaluate, hand relief to the relief thread if due, report."""
        level = self._evaluate(usage_bytes)
        if level > PressureLevel.NONE and self.auto_relieve:
            self._request_relief("pressure")
        _report_if_stuck(self)

    @property
    def watching(self) -> bool:
        """Whether :meth:`start` is in effect."""
        return self._watcher is not None and self._watcher.alive

    def start(self) -> Governor:
        """Start watching in a daemon thread (idempotent); returns self.

        The thread waits on kernel notifications where available and samples usage every
        ``interval_s`` between them; with a ``monitor``, its samples are used too.
        """
        with self._lock:
            if self.watching:
                return self
            _ = self.config  # resolve (and validate) before the thread starts
            self._watcher = Watcher(self)
            self._watcher.start()
            if self._monitor is not None and self._monitor_sub is None:
                try:
                    self._monitor_sub = self._monitor.on_sample(self._on_monitor_sample)
                except Exception:
                    log.exception("cannot subscribe to %r; sampling on our own", self._monitor)
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
            try:
                sub.unsubscribe()
            except Exception:
                log.exception("could not unsubscribe from the monitor")
        if watcher is not None:
            watcher.stop()
        self._relief.stop()

    def close(self) -> None:
        """Stop watching and drop every registration and subscriber."""
        self.stop()
        self._relievers.clear()
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

    def stats(self) -> GovernorStats:
        """Counters, current signals and thresholds (``.as_dict()`` for plain values)."""
        return _stats(self)

    def __repr__(self) -> str:
        return (
            f"<Governor level={self._level.name} relievers={self.registration_count()} "
            f"watching={self.watching}>"
        )

    def _after_fork(self) -> None:
        # Threads do not survive fork: the child starts unwatched with fresh locks.
        self._lock = threading.RLock()
        self._changed = threading.Condition(threading.Lock())
        self._relief.after_fork()
        if self._watcher is not None:
            self._watcher.abandon()
        self._watcher = None
        self._monitor_sub = None


PressureDetector = Governor
"""The playbook's name for the :class:`Governor`."""


def _open_slow_inputs(gov: Governor) -> list[CgroupInput | PsiInput | EventsInput]:
    # Found once: parsing mountinfo costs milliseconds, too slow for every evaluation.
    from memwarden.probes import cgroup, pressure_stall

    slow: list[CgroupInput | PsiInput | EventsInput] = []
    handle = cgroup() if gov._use_cgroup else None
    if handle is not None:
        hold_s = max(2.0, 3 * gov.interval_s)
        slow += [CgroupInput(handle, gov._lines), EventsInput(handle, hold_s)]
    gov._use_cgroup = handle is not None
    found = pressure_stall() if gov._use_psi else None
    if found is not None:
        from pathlib import Path

        slow.append(PsiInput(Path(found.source), gov.psi_thresholds))
    gov._use_psi = found is not None
    return slow


def _wait_steps(
    gov: Governor, timeout: float | None, poll_s: float
) -> Iterator[tuple[float, threading.Event | None]]:
    """The wait loop of the sync and async waits: yields (pause, relief run's event).

    The caller waits for the relief run (at most the pause) or sleeps the pause.
    Returns when pressure ends; raises PressureTimeoutError on timeout.
    """
    gov._relief.refuse_reentry("wait_for_relief()")
    start = gov._clock()
    if gov._evaluate() == PressureLevel.NONE:
        return
    gov._counters["waits"] += 1
    try:
        while True:
            level = gov._evaluate()
            waited = gov._clock() - start
            if level == PressureLevel.NONE:
                return
            if timeout is not None and waited >= timeout:
                gov._counters["wait_timeouts"] += 1
                raise PressureTimeoutError(
                    f"memory pressure {level.name} did not end within {timeout:g} s "
                    f"({gov.explain()}; pressure ends below "
                    f"{format_size(gov.thresholds_bytes()['release'])})",
                    waited_s=waited,
                    level=level,
                )
            done = gov._request_relief("wait")
            _report_if_stuck(gov, waited)
            left = None if timeout is None else max(0.0, timeout - waited)
            if done is not None:
                # Wait for the run as long as the deadline allows (1 s at a time).
                yield min(1.0, 1.0 if left is None else left), done
            else:
                yield min(poll_s, poll_s if left is None else left), None
    finally:
        gov._longest_wait_s = max(gov._longest_wait_s, gov._clock() - start)


def _report_if_stuck(gov: Governor, waited_s: float | None = None) -> None:
    """Log a stuck reliever, and pressure outlasting ``stuck_after_s`` (then every doubling)."""
    gov._relief.report_stuck(gov.reliever_timeout_s)
    since = gov._pressure_since_s
    if since is None:
        return
    lasted = gov._clock() - since
    if lasted < max(gov.stuck_after_s, gov._stuck_reported_s * 2):
        return
    gov._stuck_reported_s = lasted
    runs = [r for r in gov.history() if r.started_s >= since]
    log.warning(
        "memory pressure (%s) has lasted %.1f s despite %d relief runs (net %s freed); "
        "usage %s of budget %s: a leak, or a budget too small for the workload%s",
        gov._level.name,
        lasted,
        len(runs),
        format_size(sum(r.freed_bytes for r in runs)),
        format_size(gov._usage.usage_bytes),
        format_size(gov.budget_bytes),
        "" if waited_s is None else f"; a producer has waited {waited_s:.1f} s",
    )


def _stats(gov: Governor) -> GovernorStats:
    """The body of :meth:`Governor.stats`."""
    with gov._lock:
        slow = {inp.name: inp for inp in gov._slow or ()}
        cg, psi, ev = slow.get("cgroup"), slow.get("psi"), slow.get("memory_events")
        since = gov._pressure_since_s
        now = gov._clock()
        none = PressureLevel.NONE.name
        return GovernorStats(
            level=gov._level.name,
            budget_bytes=gov.budget_bytes,
            thresholds_bytes=gov.thresholds_bytes(),
            usage_bytes=gov._usage.usage_bytes,
            signals=SignalStats(
                usage=gov._usage.level.name,
                cgroup=cg.level.name if cg else none,
                cgroup_working_set_bytes=getattr(cg, "working_set_bytes", None),
                cgroup_limit_bytes=getattr(cg, "limit_bytes", None),
                psi=psi.level.name if psi else none,
                psi_some_avg10=getattr(psi, "avg10", None),
                memory_events=ev.level.name if ev else none,
                kernel_events=gov._kernel.level.name,
            ),
            relievers=tuple((r.name, r.priority) for r in gov.relievers()),
            subscribers=len(gov._subscribers),
            watching=gov.watching,
            mechanisms=tuple(gov.mechanisms()),
            pressure_for_s=None if since is None else now - since,
            total_pressure_s=gov._total_pressure_s + (0.0 if since is None else now - since),
            longest_wait_s=gov._longest_wait_s,
            **gov._counters,
        )


def _subscriber_limit_error(message: str) -> ConfigurationError:
    return ConfigurationError(message, source="argument")


def _check_arguments(
    interval_s: float,
    history_size: int,
    psi_thresholds: tuple[float, float, float],
    high_threshold: float | None,
    critical_threshold: float | None,
) -> None:
    def bad(name: str, value: object, expected: str) -> ConfigurationError:
        return ConfigurationError(
            f"{name}={value!r} (argument): expected {expected}", value=value, source="argument"
        )

    if isinstance(interval_s, bool) or not (
        isinstance(interval_s, int | float) and 0.001 <= interval_s <= 3600
    ):
        raise bad("interval_s", interval_s, "seconds in [0.001, 3600]")
    if isinstance(history_size, bool) or not (
        isinstance(history_size, int) and 1 <= history_size <= 1_000_000
    ):
        raise bad("history_size", history_size, "1..1000000 runs")
    if not (len(psi_thresholds) == 3 and list(psi_thresholds) == sorted(psi_thresholds)):
        raise bad("psi_thresholds", psi_thresholds, "three rising percentages (10, 30, 60)")
    for name, frac in (
        ("high_threshold", high_threshold),
        ("critical_threshold", critical_threshold),
    ):
        if frac is not None and not (isinstance(frac, int | float) and 0 < frac <= 1.5):
            raise bad(name, frac, "a fraction of the budget like 0.95")


def _check_psi_trigger(psi_trigger: tuple[int, int]) -> None:
    stall_us, window_us = psi_trigger
    if not (0 < stall_us <= window_us and 500_000 <= window_us <= 10_000_000):
        raise ConfigurationError(
            f"psi_trigger={psi_trigger!r} (argument): expected (stall_us, window_us) with "
            "0 < stall_us <= window_us and a window of 0.5-10 s, like (150000, 1000000)",
            value=psi_trigger,
            source="argument",
        )


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

    A full registry (or any other failure) is logged and returns None instead of
    stopping the component.
    """
    try:
        return register_reliever(fn, priority=priority, name=name)
    except Exception:
        log.warning("could not register %s with the governor", name or fn, exc_info=True)
        return None


def resolve_governor(governor: Governor | DefaultType | None) -> Governor | None:
    """What a component's ``governor=`` argument means.

    Args:
        governor: :data:`DEFAULT` for the process-wide governor (created lazily, not
            started), ``None`` for no governor, or a governor to use.

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


def _reset_default_for_tests() -> None:
    """Stop and forget the process-wide governor (tests only)."""
    global _default
    with _default_lock:
        gov, _default = _default, None
    if gov is not None:
        gov.stop()


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()


reset_after_fork(_after_fork_in_child)
