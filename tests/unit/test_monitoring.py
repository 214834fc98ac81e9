"""MemoryMonitor: levels with hysteresis, subscriptions, bounded history, stats, lifecycle, fork."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden.config import MemoryConfig
from memwarden.exceptions import DisposedError, MemwardenError
from memwarden.levels import MONITOR_LEVELS, Thresholds, monitor_level
from memwarden.monitoring import (
    MAX_OPERATION_NAMES,
    MAX_SUBSCRIBERS,
    OTHER_OPERATION,
    Level,
    MemoryMonitor,
    OperationStats,
    Sample,
    Subscription,
    _Ring,
)
from tests.support.monitoring import FakeClock, FakeProbe, wait_until

MAX = 1000


def make(
    values: list[int] | None = None, *, value: int = 0, **cfg: object
) -> tuple[MemoryMonitor, FakeProbe, FakeClock]:
    """A monitor on a fake probe and a clock advancing one second per reading."""
    probe = FakeProbe(value, values)
    clock = FakeClock(step=1.0)
    config = MemoryConfig(max_memory_bytes=MAX, **cfg)  # type: ignore[arg-type]
    return MemoryMonitor(config, probe=probe, clock=clock), probe, clock


def levels_for(values: list[int], **cfg: object) -> list[Level]:
    mon, _, _ = make(values, **cfg)
    out = []
    for _ in values:
        mon.sample_now()
        out.append(mon.level)
    return out


def test_levels_rise_at_the_warning_and_critical_lines() -> None:
    """Usage at or over 80% is WARNING and at or over 90% CRITICAL, at once."""
    assert levels_for([100, 799, 800, 899, 900, 1200]) == [
        Level.OK,
        Level.OK,
        Level.WARNING,
        Level.WARNING,
        Level.CRITICAL,
        Level.CRITICAL,
    ]


def test_a_value_hovering_on_a_line_does_not_flap() -> None:
    """Leaving WARNING needs usage to fall the hysteresis margin (5%) below 80%."""
    values = [805, 795, 806, 760, 799, 751, 749, 790, 800]
    assert levels_for(values, hysteresis=0.05) == [
        Level.WARNING,
        Level.WARNING,
        Level.WARNING,
        Level.WARNING,
        Level.WARNING,
        Level.WARNING,
        Level.OK,
        Level.OK,
        Level.WARNING,
    ]


def test_critical_steps_down_one_margin_at_a_time() -> None:
    """From CRITICAL a fall to 860 goes to WARNING; a fall far below goes straight to OK."""
    assert levels_for([950, 860, 950, 100], hysteresis=0.03) == [
        Level.CRITICAL,
        Level.WARNING,
        Level.CRITICAL,
        Level.OK,
    ]
    # 880 is below the critical line (900) but within the margin: stays CRITICAL.
    assert levels_for([950, 880], hysteresis=0.03)[-1] is Level.CRITICAL


def test_zero_hysteresis_follows_the_raw_value() -> None:
    """With hysteresis 0 the level is exactly the band the value is in."""
    assert levels_for([900, 899, 799, 800], hysteresis=0.0) == [
        Level.CRITICAL,
        Level.WARNING,
        Level.OK,
        Level.WARNING,
    ]


@pytest.mark.parametrize("old", MONITOR_LEVELS)
def test_next_level_never_goes_below_the_raw_band(old: Level) -> None:
    """Whatever the previous level, the result is at least the band of the value."""
    lines = Thresholds(warning=0.8, critical=0.9, hysteresis=0.05).lines(1000)
    for usage in range(0, 1200, 7):
        raw = Level.CRITICAL if usage >= 900 else Level.WARNING if usage >= 800 else Level.OK
        new = monitor_level(usage, lines, old)
        assert raw <= new <= max(raw, old)
        assert new in MONITOR_LEVELS


@settings(max_examples=200, deadline=None)
@given(
    hysteresis=st.floats(min_value=0.01, max_value=0.09),
    data=st.data(),
)
def test_values_hovering_around_the_warning_line_change_level_at_most_once(
    hysteresis: float, data: st.DataObject
) -> None:
    """Any sequence that stays within the hysteresis band below the warning line never flaps."""
    margin = hysteresis * MAX
    low, high = int(800 - margin) + 1, 899  # never below the leave line, never critical
    values = data.draw(st.lists(st.integers(low, high), min_size=1, max_size=60))
    mon, _, _ = make(values, hysteresis=hysteresis)
    changes: list[Level] = []
    mon.on_level_change(lambda old, new, s: changes.append(new))
    for _ in values:
        mon.sample_now()
    assert len(changes) <= 1
    assert changes in ([], [Level.WARNING])


def test_level_change_subscribers_get_old_new_and_the_sample() -> None:
    """on_level_change gets (old, new, sample) once per change, not per sample."""
    mon, _, _ = make([100, 850, 860, 950, 100])
    seen: list[tuple[Level, Level, int]] = []
    mon.on_level_change(lambda old, new, s: seen.append((old, new, s.rss_bytes)))
    for _ in range(5):
        mon.sample_now()
    assert seen == [
        (Level.OK, Level.WARNING, 850),
        (Level.WARNING, Level.CRITICAL, 950),
        (Level.CRITICAL, Level.OK, 100),
    ]


def test_sample_subscribers_see_every_sample_until_unsubscribed() -> None:
    """on_sample fires per sample; unsubscribe() stops it and is idempotent."""
    mon, probe, _ = make(value=10)
    got: list[Sample] = []
    sub = mon.on_sample(got.append)
    mon.sample_now()
    probe.value = 20
    mon.sample_now()
    sub.unsubscribe()
    sub.unsubscribe()
    mon.sample_now()
    assert [s.rss_bytes for s in got] == [10, 20]
    assert not sub.active


def test_subscription_as_context_manager_unsubscribes_on_exit() -> None:
    """A subscription used in `with` stops receiving calls after the block."""
    mon, _, _ = make(value=10)
    got: list[Sample] = []
    with mon.on_sample(got.append) as sub:
        assert isinstance(sub, Subscription)
        mon.sample_now()
    mon.sample_now()
    assert len(got) == 1


def test_same_callback_twice_gets_two_independent_subscriptions() -> None:
    """Subscribing one callable twice calls it twice; each handle removes only itself."""
    mon, _, _ = make(value=10)
    got: list[Sample] = []
    a = mon.on_sample(got.append)
    mon.on_sample(got.append)
    mon.sample_now()
    a.unsubscribe()
    mon.sample_now()
    assert len(got) == 3


def test_a_raising_handler_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception in one subscriber is logged and counted; later subscribers still run."""
    mon, _, _ = make([100, 950])

    def boom(*args: object) -> None:
        raise RuntimeError("handler bug")

    got: list[object] = []
    mon.on_sample(boom)
    mon.on_sample(got.append)
    mon.on_level_change(boom)
    mon.on_level_change(lambda *a: got.append(a))
    with caplog.at_level(logging.ERROR, logger="memwarden.monitor"):
        mon.sample_now()
        mon.sample_now()
    assert len(got) == 3  # two samples and one level change
    assert mon.stats().handler_errors == 3
    assert any("handler bug" in (r.exc_text or "") for r in caplog.records)


def test_level_changes_are_logged_at_matching_severity(caplog: pytest.LogCaptureFixture) -> None:
    """Entering WARNING logs a warning, CRITICAL a critical record, recovery an info record."""
    mon, _, _ = make([850, 950, 100])
    with caplog.at_level(logging.INFO, logger="memwarden.monitor"):
        for _ in range(3):
            mon.sample_now()
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "memwarden.monitor"]
    assert [lvl for lvl, _ in records] == [logging.WARNING, logging.CRITICAL, logging.INFO]
    assert "memory CRITICAL (was WARNING)" in records[1][1]
    assert "95%" in records[1][1]


def test_callbacks_must_be_callable_and_subscribers_are_bounded() -> None:
    """A non-callable is a TypeError; past MAX_SUBSCRIBERS subscribing raises a MemwardenError."""
    mon, _, _ = make(value=1)
    with pytest.raises(TypeError):
        mon.on_sample(42)  # type: ignore[arg-type]
    subs = [mon.on_operation(lambda st: None) for _ in range(MAX_SUBSCRIBERS)]
    with pytest.raises(MemwardenError, match="unsubscribe"):
        mon.on_operation(lambda st: None)
    subs[0].unsubscribe()
    mon.on_operation(lambda st: None)


def test_history_is_a_ring_of_the_latest_samples_oldest_first() -> None:
    """history() keeps only history_size samples, in time order, with heap None when untraced."""
    mon, _, _ = make(list(range(1, 11)), history_size=4)
    for _ in range(10):
        mon.sample_now()
    hist = mon.history()
    assert [s.rss_bytes for s in hist] == [7, 8, 9, 10]
    assert [s.time_s for s in hist] == sorted(s.time_s for s in hist)
    assert all(s.python_heap_bytes is None for s in hist)
    assert mon.stats().samples == 10
    assert mon.stats().mean_rss_bytes == pytest.approx(8.5)
    assert mon.stats().peak_rss_bytes == 10


def test_samples_carry_the_traced_heap_while_tracemalloc_runs() -> None:
    """While tracemalloc traces, each sample has the traced heap size."""
    mon, _, _ = make(value=5)
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    try:
        before = mon.sample_now().python_heap_bytes
        blob = [bytes(1000) for _ in range(1000)]
        after = mon.sample_now().python_heap_bytes
        del blob
    finally:
        if not was:
            tracemalloc.stop()
    assert before is not None
    assert after is not None
    assert after - before >= 1_000_000


@pytest.mark.slow
def test_a_million_samples_through_the_ring_do_not_grow_memory() -> None:
    """After the ring is full, 1e6 more samples leave its buffers and the process RSS unchanged."""
    from memwarden.probes import rss

    ring = _Ring(1000)
    for i in range(2000):
        ring.append(float(i), 10**9 + i, -1)
    buffers = [a.buffer_info() for a in (ring._t, ring._rss, ring._heap)]
    gc.collect()
    rss_before = rss()
    for i in range(1_000_000):
        ring.append(float(i), 10**9 + i, i)
    gc.collect()
    rss_after = rss()
    assert len(ring) == 1000
    assert ring.nbytes == 24 * 1000
    assert [a.buffer_info() for a in (ring._t, ring._rss, ring._heap)] == buffers
    # 1e6 samples kept anywhere would be >= 24 MB; allow allocator noise of 2 MiB.
    assert rss_after - rss_before < 2 * 2**20
    assert [s.time_s for s in ring.samples()][-1] == 999_999.0


def test_monitor_memory_is_flat_across_many_samples() -> None:
    """Through the public path, 20k samples on a full ring leave no lasting allocation."""
    mon, probe, _ = make(value=500, history_size=100)
    tracemalloc.start()
    try:
        for _ in range(500):
            mon.sample_now()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            probe.value = 100 + (i % 600)
            mon.sample_now()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 8192


def test_stats_report_time_in_each_level_on_the_monitor_clock() -> None:
    """Time is charged to the level held between samples; time_above_s sums the higher levels."""
    mon, probe, clock = make(value=100)
    clock.step = 0.0
    mon.sample_now()  # t=1000, OK
    clock.advance(10)
    probe.value = 850
    mon.sample_now()  # t=1010: 10 s of OK, now WARNING
    clock.advance(5)
    probe.value = 950
    mon.sample_now()  # t=1015: 5 s of WARNING, now CRITICAL
    clock.advance(2)  # 2 s of CRITICAL so far (tail counted by stats())
    st = mon.stats()
    assert st.time_in_level_s[Level.OK] == pytest.approx(10)
    assert st.time_in_level_s[Level.WARNING] == pytest.approx(5)
    assert st.time_in_level_s[Level.CRITICAL] == pytest.approx(2)
    assert st.time_above_s(Level.WARNING) == pytest.approx(7)
    assert st.level_changes == {Level.OK: 0, Level.WARNING: 1, Level.CRITICAL: 1}
    assert st.current_rss_bytes == 950
    assert st.usage_ratio == pytest.approx(0.95)
    assert (st.warning_bytes, st.critical_bytes, st.max_memory_bytes) == (800, 900, 1000)


def test_peak_rss_since_only_counts_samples_at_or_after_t0() -> None:
    """peak_rss_since(t0) is the max over samples with time_s >= t0, None when there are none."""
    mon, _, _ = make([900, 100, 300, 200])
    times = [mon.sample_now().time_s for _ in range(4)]
    assert mon.peak_rss_since(times[0]) == 900
    assert mon.peak_rss_since(times[1]) == 300
    assert mon.peak_rss_since(times[3]) == 200
    assert mon.peak_rss_since(times[3] + 1) is None


def test_growth_detects_a_steady_climb() -> None:
    """growth() reports an upward Theil–Sen slope for linearly rising samples."""
    mon, _, _ = make([100 + 3 * i for i in range(50)])
    for _ in range(50):
        mon.sample_now()
    tr = mon.growth()
    assert tr.growing
    assert tr.slope == pytest.approx(3.0)


def test_operations_aggregate_per_name_and_are_bounded() -> None:
    """record_operation aggregates per name; names past the bound go to '<other>'."""
    mon, _, _ = make(value=1)
    seen: list[OperationStats] = []
    mon.on_operation(seen.append)

    def op(name: str, delta: int, peak: int) -> OperationStats:
        return OperationStats(name, delta, peak, None, None, 0.5, 0.0)

    mon.record_operation(op("load", 10, 100))
    mon.record_operation(op("load", -4, 300))
    agg = mon.operations()["load"]
    assert (agg.count, agg.max_rss_delta_bytes, agg.max_peak_rss_bytes) == (2, 10, 300)
    assert agg.mean_rss_delta_bytes == pytest.approx(3)
    assert agg.mean_duration_s == pytest.approx(0.5)
    assert agg.max_python_heap_peak_bytes is None
    for i in range(MAX_OPERATION_NAMES + 5):
        mon.record_operation(op(f"n{i}", 1, 1))
    ops = mon.operations()
    assert len(ops) == MAX_OPERATION_NAMES + 1
    assert ops[OTHER_OPERATION].count == 6
    assert len(seen) == 2 + MAX_OPERATION_NAMES + 5


def test_the_sampler_thread_samples_and_stops() -> None:
    """start() runs a daemon thread that samples the real process; stop() ends it."""
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=2**40, monitoring_interval_s=0.005))
    with mon:
        assert mon.running
        assert mon.start() is mon  # idempotent
        assert wait_until(lambda: mon.stats().samples >= 3)
        assert any(t.name == "memwarden-monitor" and t.daemon for t in threading.enumerate())
    assert not mon.running
    n = mon.stats().samples
    st = mon.stats()
    assert st.current_rss_bytes is not None
    assert st.current_rss_bytes > 1_000_000
    assert 0 < st.overhead_ratio < 1
    assert st.wall_time_s > 0
    mon.stop()  # idempotent
    assert mon.stats().samples == n


def test_a_closed_monitor_cannot_restart_or_take_subscribers() -> None:
    """close() is idempotent; start() and on_* afterwards raise DisposedError."""
    mon, _, _ = make(value=1)
    mon.close()
    mon.close()
    with pytest.raises(DisposedError):
        mon.start()
    with pytest.raises(DisposedError):
        mon.on_sample(lambda s: None)


def test_a_failing_probe_does_not_kill_the_sampler(caplog: pytest.LogCaptureFixture) -> None:
    """The thread logs a probe error and keeps sampling."""
    calls = {"n": 0}

    def flaky() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("proc vanished")
        return 123

    mon = MemoryMonitor(
        MemoryConfig(max_memory_bytes=MAX, monitoring_interval_s=0.002), probe=flaky
    )
    with caplog.at_level(logging.ERROR, logger="memwarden.monitor"), mon:
        assert wait_until(lambda: mon.stats().samples >= 2)
    assert mon.stats().handler_errors == 1
    assert mon.stats().current_rss_bytes == 123
    assert any("proc vanished" in (r.exc_text or "") for r in caplog.records)


def test_a_handler_stopping_the_monitor_does_not_deadlock() -> None:
    """A subscriber may call stop() from the sampler thread itself."""
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=2**40, monitoring_interval_s=0.002))
    mon.on_sample(lambda s: mon.stop())
    mon.start()
    assert wait_until(lambda: not mon.running)
    assert mon.stats().samples >= 1
    mon.close()


def test_periodic_gc_runs_when_configured() -> None:
    """With gc_interval_s set the sampler forces gc.collect(); by default it never does."""
    cfg = MemoryConfig(max_memory_bytes=2**40, monitoring_interval_s=0.002, gc_interval_s=0.004)
    with MemoryMonitor(cfg) as mon:
        assert wait_until(lambda: mon.stats().gc_collections_forced >= 2)
    off = MemoryConfig(max_memory_bytes=2**40, monitoring_interval_s=0.002)
    with MemoryMonitor(off) as mon2:
        assert wait_until(lambda: mon2.stats().samples >= 5)
    assert mon2.stats().gc_collections_forced == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.parametrize("restart", [False, True])
def test_a_forked_child_starts_clean_and_restarts_on_request(restart: bool) -> None:
    """After fork the child has empty history, OK level and a sampler only if restart_in_child."""
    cfg = MemoryConfig(max_memory_bytes=2**40, monitoring_interval_s=0.002)
    mon = MemoryMonitor(cfg, restart_in_child=restart).start()
    try:
        assert wait_until(lambda: mon.stats().samples >= 2)
        r, w = os.pipe()
        t_fork = time.monotonic()
        pid = os.fork()
        if pid == 0:  # child: report and leave without running pytest's teardown
            code = 1
            try:
                # Only samples taken in the child (after the fork) may be in its history.
                fresh = int(all(s.time_s >= t_fork for s in mon.history()))
                ok = wait_until(lambda: mon.stats().samples >= 2, timeout_s=5) if restart else True
                msg = f"{fresh} {int(mon.running)} {int(ok)} {mon.level.monitor_name}"
                os.write(w, msg.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r) as fh:
            report = fh.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        fresh, running, ok, level = report.split()
        assert fresh == "1"  # the parent's samples are gone
        assert running == ("1" if restart else "0")
        assert ok == "1"
        assert level == "OK"
        assert mon.running  # the parent is untouched
    finally:
        mon.close()


def test_the_default_monitor_is_created_on_first_use_not_at_import() -> None:
    """Importing memwarden.monitor creates no monitor; monitor() makes one, then returns it."""
    code = (
        "import memwarden.monitoring as m, threading\n"
        "assert m.default_monitor_if_created() is None\n"
        "assert not any(t.name == 'memwarden-monitor' for t in threading.enumerate())\n"
        "a = m.monitor(); b = m.monitor()\n"
        "assert a is b and a.running\n"
        "m.reset_default_monitor()\n"
        "assert m.default_monitor_if_created() is None and not a.running\n"
        "print('ok')\n"
    )
    env = {**os.environ, "MEMWARDEN_MAX_MEMORY": "1 GiB"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_repr_names_state_and_level() -> None:
    """repr shows whether it runs, its level and its budget."""
    mon, _, _ = make([950])
    mon.sample_now()
    text = repr(mon)
    assert "stopped" in text
    assert "CRITICAL" in text
    assert "1000 B" in text or "1000" in text


def test_the_old_module_path_still_imports_with_a_deprecation_warning() -> None:
    """`from memwarden.monitor import X` warns and works; memwarden.monitor stays the function."""
    code = (
        "import warnings, memwarden\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from memwarden.monitor import MemoryMonitor, track\n"
        "    import memwarden.monitor\n"
        "import memwarden.monitoring as new\n"
        "assert MemoryMonitor is new.MemoryMonitor and track is new.track\n"
        "assert [x.category.__name__ for x in w] == ['DeprecationWarning'] * 2, w\n"
        "assert 'memwarden.monitoring' in str(w[0].message)\n"
        "assert callable(memwarden.monitor) and not isinstance(memwarden.monitor, type(new))\n"
        "print('ok')\n"
    )
    env = {**os.environ, "MEMWARDEN_MAX_MEMORY": "1 GiB"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_no_module_swaps_its_class() -> None:
    """The monitor module is a plain module: nothing assigns ``__class__`` to make it callable."""
    import memwarden.monitoring as mod

    assert type(mod) is type(os)
    assert not callable(mod)
