"""Deterministic tests of the governor's policy: levels, hysteresis, relief, waiting."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden.config import MemoryConfig
from memwarden.exceptions import ConfigurationError, PressureTimeoutError
from memwarden.pressure import (
    PRIORITY_CACHE,
    PRIORITY_GC,
    PRIORITY_MALLOC_TRIM,
    PRIORITY_POOL,
    Governor,
    PressureDetector,
    PressureLevel,
    governor,
    malloc_trim,
    register_reliever,
)

BUDGET = 1000


class Usage:
    """A fake probe whose value the test sets."""

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


class FakeClock:
    """A clock that only moves when told to (or when ``sleep`` is called)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.001)


def make(usage: Usage, clock: FakeClock | None = None, **kw: object) -> Governor:
    clock = clock or FakeClock()
    kw.setdefault("builtin_relievers", False)
    return Governor(
        MemoryConfig(max_memory_bytes=BUDGET),
        probe=usage,
        clock=clock,
        sleep=clock.sleep,
        **kw,  # type: ignore[arg-type]
    )


class Cache:
    """A stand-in cache that gives back part of the fake usage when shrunk."""

    def __init__(self, usage: Usage, frees: int, log: list[str], name: str = "cache") -> None:
        self.usage = usage
        self.frees = frees
        self.log = log
        self.name = name

    def shrink(self, fraction: float = 0.5) -> int:
        self.log.append(self.name)
        self.usage.value -= self.frees
        return self.frees


# -- levels ---------------------------------------------------------------


def test_levels_follow_usage_against_the_budget() -> None:
    """Usage at 85%, 87.5% and 90% (config.critical_threshold) gives MODERATE, HIGH, CRITICAL."""
    usage = Usage(100)
    gov = make(usage)
    assert gov.level() is PressureLevel.NONE
    assert not gov.is_under_pressure()
    usage.value = 850
    assert gov.level() is PressureLevel.MODERATE
    assert gov.is_under_pressure()
    usage.value = 880
    assert gov.level() is PressureLevel.HIGH
    usage.value = 900
    assert gov.level() is PressureLevel.CRITICAL
    assert gov.thresholds_bytes() == {
        "release": 750,
        "moderate": 850,
        "high": 875,
        "critical": 900,
    }


def test_pressure_ends_only_below_the_release_level() -> None:
    """Usage oscillating between 80% and 86% does not flap: pressure holds until below 75%."""
    usage = Usage(860)
    gov = make(usage)
    changes: list[tuple[PressureLevel, PressureLevel]] = []
    gov.on_pressure(lambda old, new: changes.append((old, new)))
    assert gov.level() is PressureLevel.MODERATE
    for value in (800, 860, 800, 860, 760, 851):
        usage.value = value
        assert gov.level() is PressureLevel.MODERATE, value
    usage.value = 740
    assert gov.level() is PressureLevel.NONE
    assert changes == [
        (PressureLevel.NONE, PressureLevel.MODERATE),
        (PressureLevel.MODERATE, PressureLevel.NONE),
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=1100), min_size=1, max_size=60))
def test_pressure_enters_at_the_threshold_and_leaves_only_below_release(trace: list[int]) -> None:
    """For any usage trace, pressure starts only at >= 85% and ends only below 75%."""
    usage = Usage(0)
    gov = make(usage)
    previous = PressureLevel.NONE
    for value in trace:
        usage.value = value
        level = gov.level()
        if previous == PressureLevel.NONE and level > PressureLevel.NONE:
            assert value >= 850
        if previous > PressureLevel.NONE and level == PressureLevel.NONE:
            assert value < 750
        if value >= 850:
            assert level >= PressureLevel.MODERATE
        previous = level


def test_higher_levels_fall_with_hysteresis() -> None:
    """HIGH is left only 5% of the budget below its threshold, then MODERATE holds."""
    usage = Usage(880)
    gov = make(usage)
    assert gov.level() is PressureLevel.HIGH
    usage.value = 830  # below 875 but within the 50-byte hysteresis
    assert gov.level() is PressureLevel.HIGH
    usage.value = 820
    assert gov.level() is PressureLevel.MODERATE


def test_custom_level_fractions_are_used() -> None:
    """``high_threshold`` and ``critical_threshold`` move the HIGH and CRITICAL levels."""
    usage = Usage(940)
    gov = make(usage, high_threshold=0.93, critical_threshold=0.95)
    assert gov.level() is PressureLevel.HIGH
    usage.value = 955
    assert gov.level() is PressureLevel.CRITICAL


def test_callbacks_that_raise_are_logged_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A raising on_pressure callback is logged; later callbacks still get the change."""
    usage = Usage(0)
    gov = make(usage)
    seen: list[PressureLevel] = []

    def bad(old: PressureLevel, new: PressureLevel) -> None:
        raise RuntimeError("boom")

    gov.on_pressure(bad)
    gov.on_pressure(lambda old, new: seen.append(new))
    usage.value = 860
    with caplog.at_level(logging.ERROR, logger="memwarden.pressure"):
        assert gov.level() is PressureLevel.MODERATE
    assert seen == [PressureLevel.MODERATE]
    assert "boom" in caplog.text
    assert gov.stats().callback_errors == 1


def test_unsubscribe_stops_callbacks() -> None:
    """After ``unsubscribe()`` the callback no longer hears level changes."""
    usage = Usage(0)
    gov = make(usage)
    seen: list[PressureLevel] = []
    sub = gov.on_pressure(lambda old, new: seen.append(new))
    assert sub.active
    sub.unsubscribe()
    sub.unsubscribe()
    assert not sub.active
    usage.value = 900
    gov.level()
    assert seen == []


def test_kernel_events_hold_a_level_for_a_while() -> None:
    """A kernel notification holds its level for ``hold_s`` seconds, then lapses."""
    usage = Usage(100)
    clock = FakeClock()
    gov = make(usage, clock)
    assert gov.note_kernel_event(PressureLevel.HIGH, hold_s=2.0) is PressureLevel.HIGH
    clock.now = 1.5
    assert gov.level() is PressureLevel.HIGH
    clock.now = 2.5
    assert gov.level() is PressureLevel.NONE
    assert gov.stats().kernel_events == 1


def test_explain_names_the_driving_signal() -> None:
    """``explain()`` reports usage against the budget with the level it gives."""
    usage = Usage(860)
    gov = make(usage)
    gov.level()
    text = gov.explain()
    assert "usage 860 B of budget 1000 B -> MODERATE" in text


# -- relief ---------------------------------------------------------------


def test_relievers_run_in_priority_order_until_the_level_drops() -> None:
    """Relief runs caches before pools, and stops once the level has dropped."""
    usage = Usage(990)
    gov = make(usage)
    order: list[str] = []
    pool = Cache(usage, 100, order, "pool")
    cache = Cache(usage, 200, order, "cache")
    never = Cache(usage, 100, order, "never")
    gov.register_reliever(pool.shrink, priority=PRIORITY_POOL, name="pool")
    gov.register_reliever(never.shrink, priority=PRIORITY_GC, name="never")
    gov.register_reliever(cache.shrink, priority=PRIORITY_CACHE, name="cache")
    assert gov.level() is PressureLevel.CRITICAL
    run = gov.relieve()
    # cache: 990 -> 790 (MODERATE: dropped below CRITICAL) so the run stops there.
    assert order == ["cache"]
    assert run.level_before is PressureLevel.CRITICAL
    assert run.level_after is PressureLevel.MODERATE
    assert run.relieved
    assert [s.name for s in run.steps] == ["cache"]
    assert run.steps[0].reported_bytes == 200
    assert run.steps[0].measured_bytes == 200
    assert run.freed_bytes == 200
    assert gov.history() == [run]


def test_relieve_without_pressure_runs_everything() -> None:
    """An explicit ``relieve()`` with no pressure runs every reliever, in order."""
    usage = Usage(2000)
    gov = make(usage)
    usage.value = 100
    order: list[str] = []
    for name, prio in (("c", 30), ("a", 10), ("b", 20)):
        gov.register_reliever(Cache(usage, 1, order, name).shrink, priority=prio, name=name)
    # The bound methods' objects are only referenced by the registrations: held weakly,
    # they are gone. Register functions instead to see the order.
    gc.collect()
    assert gov.relievers() == []
    for name, prio in (("c", 30), ("a", 10), ("b", 20)):
        gov.register_reliever(lambda n=name: order.append(n), priority=prio, name=name)
    run = gov.relieve()
    assert order == ["a", "b", "c"]
    assert run.level_before is PressureLevel.NONE
    assert len(run.steps) == 3


def test_a_raising_reliever_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    """A reliever that raises is recorded with its error and the next one still runs."""
    usage = Usage(990)
    gov = make(usage)
    order: list[str] = []

    def broken() -> int:
        order.append("broken")
        raise ValueError("cannot shrink")

    cache = Cache(usage, 300, order)
    gov.register_reliever(broken, priority=1, name="broken")
    gov.register_reliever(cache.shrink, priority=PRIORITY_CACHE, name="cache")
    gov.level()
    with caplog.at_level(logging.ERROR, logger="memwarden.pressure"):
        run = gov.relieve()
    assert order == ["broken", "cache"]
    assert "cannot shrink" in str(run.steps[0].error)
    assert run.steps[1].error is None
    assert "cannot shrink" in caplog.text
    assert gov.stats().reliever_errors == 1


def test_bound_methods_are_held_weakly_and_functions_strongly() -> None:
    """A registered cache's ``shrink`` does not keep the cache alive; a function stays."""
    usage = Usage(0)
    gov = make(usage)
    cache = Cache(usage, 1, [])
    reg = gov.register_reliever(cache.shrink, priority=PRIORITY_CACHE, name="cache")
    fn_reg = gov.register_reliever(lambda: None, priority=50, name="fn")
    assert reg.alive
    del cache
    gc.collect()
    assert not reg.alive
    assert fn_reg.alive
    assert [r.name for r in gov.relievers()] == ["fn"]


def test_dead_registrations_drop_themselves_without_relief() -> None:
    """A reliever whose object died leaves the registry at the next registry call, no relieve()."""
    usage = Usage(0)
    gov = make(usage)
    registry = gov._relievers
    baseline = len(registry._registrations)
    for _ in range(2_000):
        cache = Cache(usage, 1, [])
        gov.register_reliever(cache.shrink, priority=PRIORITY_CACHE, name="c")
        del cache  # refcounting frees it at once: its WeakMethod callback queues it
    assert len(registry._registrations) <= baseline + 1  # the last one waits for the next call
    assert gov.registration_count() == baseline
    assert not registry._dead
    assert gov.stats().relief_runs == 0


def test_unregistered_then_dead_registration_is_harmless() -> None:
    """Unregistering, then the object dying, queues a stale entry that prunes to nothing."""
    usage = Usage(0)
    gov = make(usage)
    keep = gov.register_reliever(lambda: None, priority=50, name="keep")
    cache = Cache(usage, 1, [])
    reg = gov.register_reliever(cache.shrink, priority=PRIORITY_CACHE, name="c")
    reg.unregister()
    del cache
    assert gov.registration_count() == 1
    assert gov.relievers() == [keep]


def test_unregister_is_idempotent() -> None:
    """``unregister()`` removes the reliever, and a second call does nothing."""
    gov = make(Usage(0))
    reg = gov.register_reliever(lambda: 1, priority=5, name="x")
    assert [r.name for r in gov.relievers()] == ["x"]
    reg.unregister()
    reg.unregister()
    assert gov.relievers() == []


def test_builtin_relievers_are_gc_then_malloc_trim() -> None:
    """By default the governor runs gc.collect (80) and malloc_trim (90) after user relievers."""
    gov = Governor(MemoryConfig(max_memory_bytes=BUDGET), probe=Usage(0))
    assert [(r.name, r.priority) for r in gov.relievers()] == [
        ("gc.collect", PRIORITY_GC),
        ("malloc_trim", PRIORITY_MALLOC_TRIM),
    ]
    run = gov.relieve()
    assert [s.name for s in run.steps] == ["gc.collect", "malloc_trim"]
    assert all(s.error is None for s in run.steps)


def test_malloc_trim_is_safe_to_call() -> None:
    """``malloc_trim()`` returns None whether or not the C library has it."""
    assert malloc_trim() is None


def test_history_is_bounded() -> None:
    """Only the last ``history_size`` relief runs are kept."""
    gov = make(Usage(0), history_size=3)
    runs = [gov.relieve(reason=f"r{i}") for i in range(5)]
    assert [r.reason for r in gov.history()] == [r.reason for r in runs[-3:]]


def test_registration_rejects_non_callables() -> None:
    """Registering something that is not callable names the value in the error."""
    gov = make(Usage(0))
    with pytest.raises(ConfigurationError, match="expected a callable"):
        gov.register_reliever(42, priority=1, name="x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval_s": 0}, "interval_s=0"),
        ({"history_size": 0}, "history_size=0"),
        ({"psi_thresholds": (30.0, 10.0, 60.0)}, "psi_thresholds"),
        ({"psi_trigger": (2_000_000, 1_000_000)}, "psi_trigger"),
        ({"high_threshold": -1.0}, "high_threshold=-1.0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict[str, object], match: str) -> None:
    """Each invalid constructor argument raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=match):
        make(Usage(0), **kwargs)


# -- waiting --------------------------------------------------------------


def test_wait_for_relief_returns_at_once_without_pressure() -> None:
    """With no pressure, wait_for_relief runs no relief and returns."""
    gov = make(Usage(100))
    gov.wait_for_relief(timeout=0)
    assert gov.history() == []


def test_wait_for_relief_relieves_then_returns() -> None:
    """Under pressure, wait_for_relief runs relief; once usage is below release it returns."""
    usage = Usage(900)
    gov = make(usage)
    order: list[str] = []
    cache = Cache(usage, 200, order)
    gov.register_reliever(cache.shrink, priority=PRIORITY_CACHE, name="cache")
    gov.wait_for_relief(timeout=10)
    assert order == ["cache"]
    assert usage.value == 700
    assert gov.level() is PressureLevel.NONE
    assert gov.history()[0].reason == "wait"


def test_wait_for_relief_times_out_with_the_time_waited() -> None:
    """Pressure that never ends raises PressureTimeoutError carrying waited_s and level."""
    clock = FakeClock()
    gov = make(Usage(860), clock, relief_interval_s=0.5)
    with pytest.raises(PressureTimeoutError) as info:
        gov.wait_for_relief(timeout=2.0, poll_s=0.1)
    assert info.value.waited_s >= 2.0
    assert info.value.level is PressureLevel.MODERATE
    assert "did not end within 2 s" in str(info.value)
    # Relief was retried while waiting, every relief_interval_s.
    assert len(gov.history()) >= 3
    assert gov.stats().wait_timeouts == 1


def test_pressure_that_never_ends_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    """A wait outlasting ``stuck_after_s`` logs a probable leak with the time waited."""
    clock = FakeClock()
    gov = make(Usage(900), clock, stuck_after_s=1.0)
    with (
        caplog.at_level(logging.WARNING, logger="memwarden.pressure"),
        pytest.raises(PressureTimeoutError),
    ):
        gov.wait_for_relief(timeout=3.0, poll_s=0.25)
    assert "has lasted" in caplog.text
    assert "a producer has waited" in caplog.text
    assert gov.stats().longest_wait_s >= 3.0


def test_wait_for_relief_wakes_when_another_thread_relieves() -> None:
    """A waiter returns once usage drops, even when the drop happens in another thread."""
    usage = Usage(900)
    gov = Governor(MemoryConfig(max_memory_bytes=BUDGET), probe=usage, builtin_relievers=False)
    done = threading.Event()

    def waiter() -> None:
        gov.wait_for_relief(timeout=30, poll_s=0.01)
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    try:
        assert not done.wait(0.05)
        usage.value = 100
        assert done.wait(10)
    finally:
        usage.value = 0
        t.join(10)


def test_async_wait_for_relief() -> None:
    """The awaitable wait relieves and returns, and times out like the blocking one."""
    usage = Usage(900)
    clock = FakeClock()
    gov = make(usage, clock)
    cache = Cache(usage, 200, [])
    gov.register_reliever(cache.shrink, priority=PRIORITY_CACHE, name="cache")
    asyncio.run(gov.async_wait_for_relief(timeout=5))
    assert usage.value == 700
    stuck = make(Usage(950), FakeClock())
    with pytest.raises(PressureTimeoutError):
        asyncio.run(stuck.async_wait_for_relief(timeout=1.0, poll_s=0.2))


# -- watching -------------------------------------------------------------


def test_watcher_relieves_on_its_own_and_stops() -> None:
    """While watching, pressure triggers relief without any caller; stop() ends the thread."""
    usage = Usage(100)
    gov = Governor(
        MemoryConfig(max_memory_bytes=BUDGET),
        probe=usage,
        interval_s=0.01,
        auto_relieve=True,
        builtin_relievers=False,
        kernel_events=False,
    )
    relieved = threading.Event()
    cache = Cache(usage, 500, [])

    def shrink() -> int:
        n = cache.shrink()
        relieved.set()
        return n

    gov.register_reliever(shrink, priority=PRIORITY_CACHE, name="cache")
    with gov:
        assert gov.watching
        assert gov.mechanisms() == ["sampling"]
        usage.value = 950
        assert relieved.wait(10)
    assert not gov.watching
    assert usage.value == 450
    assert not any(t.name == "memwarden-governor" and t.is_alive() for t in threading.enumerate())


def test_monitor_samples_feed_the_level() -> None:
    """A monitor's samples (duck-typed ``on_sample``) drive the level while watching."""

    class FakeMonitor:
        def __init__(self) -> None:
            self.callbacks: list[object] = []

        def on_sample(self, cb: object) -> object:
            self.callbacks.append(cb)
            return self

        def unsubscribe(self) -> None:
            self.callbacks.clear()

    class Sample:
        rss_bytes = 880

    mon = FakeMonitor()
    gov = Governor(
        MemoryConfig(max_memory_bytes=BUDGET),
        probe=Usage(0),
        monitor=mon,
        interval_s=60,
        auto_relieve=False,
        kernel_events=False,
    )
    with gov:
        assert len(mon.callbacks) == 1
        mon.callbacks[0](Sample())  # type: ignore[operator]
        assert gov.current_level is PressureLevel.HIGH
    assert mon.callbacks == []


def test_detector_alias_and_default_governor() -> None:
    """PressureDetector is the Governor; governor() returns one process-wide instance."""
    assert PressureDetector is Governor
    assert governor() is governor()
    reg = register_reliever(lambda: None, priority=PRIORITY_CACHE, name="t")
    try:
        assert reg in governor().relievers()
    finally:
        reg.unregister()
    assert reg not in governor().relievers()


def test_registering_is_cheap() -> None:
    """register_reliever imports no psutil, reads no config and starts no thread."""
    code = textwrap.dedent(
        """
        import sys, threading
        from memwarden.pressure import register_reliever, governor
        reg = register_reliever(lambda: None, priority=10, name="x")
        assert governor()._config is None, "config resolved"
        assert threading.active_count() == 1, threading.enumerate()
        bad = [m for m in ("psutil", "ctypes", "numpy", "asyncio.base_events") if m in sys.modules]
        print("heavy:", bad)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "heavy: []" in out.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_starts_unwatched() -> None:
    """After fork the child has no watcher thread and can start its own."""
    gov = Governor(
        MemoryConfig(max_memory_bytes=10**15),
        interval_s=0.05,
        kernel_events=False,
        psi=False,
        cgroup=False,
    ).start()
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                ok = not gov.watching
                gov.start()
                ok = ok and gov.watching
                gov.stop()
                os.write(w, b"1" if ok else b"0")
            finally:
                os._exit(0)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        assert os.read(r, 1) == b"1"
        os.close(r)
        assert status == 0
        assert gov.watching
    finally:
        gov.stop()


def test_try_register_reliever_logs_and_returns_none_when_registration_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Components register through try_register_reliever: a failure is logged, never raised."""
    from memwarden import pressure as pr

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("registry full")

    monkeypatch.setattr(pr.Governor, "register_reliever", refuse)
    with caplog.at_level("WARNING", logger="memwarden.pressure"):
        assert pr.try_register_reliever(lambda: None, priority=10, name="refused") is None
    assert "could not register refused" in caplog.text


def test_resolve_governor_maps_default_none_and_a_governor() -> None:
    """DEFAULT is the process-wide governor, None is none, a governor is itself, else TypeError."""
    from memwarden._registry import DEFAULT
    from memwarden.pressure import governor as process_governor
    from memwarden.pressure import resolve_governor

    own = Governor(builtin_relievers=False)
    assert resolve_governor(DEFAULT) is process_governor()
    assert resolve_governor(None) is None
    assert resolve_governor(own) is own
    with pytest.raises(TypeError, match="DEFAULT"):
        resolve_governor("default")  # type: ignore[arg-type]
