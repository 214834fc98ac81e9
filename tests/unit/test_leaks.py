"""Unit tests of memwarden.leaks: the verdict, the report, the helpers and their errors."""

from __future__ import annotations

import asyncio
import itertools
import re
import tracemalloc
import weakref

import pytest

from memwarden.exceptions import ConfigurationError
from memwarden.leaks import (
    LeakDetector,
    assert_collected,
    check_leaks,
    check_leaks_async,
    clear_interpreter_caches,
    format_chain,
    referrer_chain,
    suspect_leak,
)

_HOARD: list[object] = []


class Session:
    """A user-level class so growing_types and the referrer chain have a name to show."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.payload = [n] * 10


_COUNTER = itertools.count()


def _leaky() -> None:
    _HOARD.append(Session(next(_COUNTER)))


def _clean() -> None:
    rows = [Session(i) for i in range(20)]
    del rows


@pytest.fixture(autouse=True)
def _empty_hoard() -> object:
    yield
    _HOARD.clear()


def test_check_leaks_reports_a_leak_with_sites_types_and_chain() -> None:
    """A function keeping one object per call is a leak, and the report says where and who."""
    report = check_leaks(_leaky, rounds=5, calls_per_round=300, warmup=1)
    assert report.leaked
    assert report.kind == "python"
    assert 100 < report.growth_per_call_bytes < 2000
    assert report.signals["python"].leaking
    assert any("test_leaks.py" in s.where for s in report.top_sites)
    names = [t.type_name for t in report.growing_types]
    assert f"{__name__}.Session" in names
    chain = format_chain(report.referrer_chain)
    assert "_HOARD[" in chain
    assert "<Session at" in chain
    text = report.summary()
    assert text.startswith("LEAK:")
    assert "test_leaks.py" in text
    assert report.to_dict()["leaked"] is True


def test_check_leaks_clean_function_is_not_a_leak() -> None:
    """Temporaries freed at the end of each call are not a leak."""
    report = check_leaks(_clean, rounds=5, calls_per_round=100, warmup=1)
    assert not report.leaked
    assert report.kind == ""
    assert report.growth_per_call_bytes == 0
    assert report.summary().startswith("no leak")


def test_check_leaks_passes_arguments() -> None:
    """Positional and keyword arguments reach the function on every call."""
    seen: list[tuple[int, int]] = []

    def fn(a: int, *, b: int) -> None:
        if len(seen) < 3:
            seen.append((a, b))

    check_leaks(fn, 1, b=2, rounds=4, calls_per_round=2, warmup=0)
    assert seen == [(1, 2)] * 3


def test_check_leaks_native_leak_from_rss_probe() -> None:
    """RSS rising every round while the Python heap is flat is reported as a native leak."""
    state = [0]

    def fn() -> None:
        state[0] += 1

    def fake_rss() -> int:
        # 8 KiB per call, as a C extension leaking a buffer per call would show
        return (100 << 20) + 8192 * state[0]

    report = check_leaks(fn, rounds=5, calls_per_round=50, warmup=0, rss_probe=fake_rss)
    assert report.leaked
    assert report.kind == "native"
    assert report.signals["rss"].leaking
    assert not report.signals["python"].leaking
    assert report.growth_per_call_bytes == pytest.approx(8192, rel=0.05)
    assert "native memory" in report.summary()


def test_check_leaks_flat_rss_probe_is_not_a_leak() -> None:
    """A constant RSS and a clean function give no leak (the injected probe is honoured)."""
    report = check_leaks(_clean, rounds=4, calls_per_round=20, warmup=0, rss_probe=lambda: 1 << 30)
    assert not report.leaked
    assert report.signals["rss"].total_growth == 0


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"rounds": 2}, "rounds=2"),
        ({"warmup": -1}, "warmup=-1"),
        ({"calls_per_round": 0}, "calls_per_round=0"),
    ],
)
def test_check_leaks_rejects_bad_settings(kwargs: dict[str, int], bad: str) -> None:
    """Invalid rounds, warmup or calls_per_round raise a ConfigurationError naming the value."""
    with pytest.raises(ConfigurationError, match=re.escape(bad)):
        check_leaks(_clean, **kwargs)


def test_check_leaks_restores_tracemalloc_state() -> None:
    """Tracing started by the check is stopped; tracing started by the caller is left on."""
    was = tracemalloc.is_tracing()
    check_leaks(_clean, rounds=4, calls_per_round=2, warmup=0)
    assert tracemalloc.is_tracing() == was
    tracemalloc.start()
    try:
        check_leaks(_clean, rounds=4, calls_per_round=2, warmup=0)
        assert tracemalloc.is_tracing()
    finally:
        if not was:
            tracemalloc.stop()


def test_check_leaks_propagates_exceptions() -> None:
    """An exception from the checked function reaches the caller unchanged."""

    def boom() -> None:
        raise KeyError("x")

    was = tracemalloc.is_tracing()
    with pytest.raises(KeyError):
        check_leaks(boom, rounds=4, calls_per_round=1)
    assert tracemalloc.is_tracing() == was


def test_check_leaks_async_detects_leak_and_clean() -> None:
    """The async variant awaits each call and gives the same verdicts."""

    async def leaky() -> None:
        await asyncio.sleep(0)
        _HOARD.append(Session(1))

    async def clean() -> None:
        await asyncio.sleep(0)

    leak = asyncio.run(check_leaks_async(leaky, rounds=4, calls_per_round=200, warmup=1))
    ok = asyncio.run(check_leaks_async(clean, rounds=4, calls_per_round=50, warmup=1))
    assert leak.leaked
    assert not ok.leaked


def test_check_leaks_async_stops_tracing_when_the_coroutine_raises() -> None:
    """An exception from an awaited call propagates and the check's tracing ends with it."""
    calls = 0

    async def boom() -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyError("boom")

    was = tracemalloc.is_tracing()
    with pytest.raises(KeyError):
        asyncio.run(check_leaks_async(boom, rounds=4, calls_per_round=2, warmup=1))
    assert calls == 5
    assert tracemalloc.is_tracing() == was


def test_sync_and_async_checks_make_the_same_calls() -> None:
    """One implementation: both variants call the code the same number of times per plan."""
    counts = {"sync": 0, "async": 0}

    def f() -> None:
        counts["sync"] += 1

    async def g() -> None:
        counts["async"] += 1

    a = check_leaks(f, rounds=4, calls_per_round=3, warmup=2)
    b = asyncio.run(check_leaks_async(g, rounds=4, calls_per_round=3, warmup=2))
    assert counts["sync"] == counts["async"] == 1 + (2 + 4) * 3
    assert (a.rounds, a.calls_per_round, a.warmup) == (b.rounds, b.calls_per_round, b.warmup)
    assert b.name.endswith("g")


def test_leak_detector_two_snapshots_threshold() -> None:
    """Before/after snapshots flag growth above threshold_bytes and not below it."""
    with LeakDetector(threshold_bytes=512 * 1024) as det:
        det.snapshot("before")
        for _ in range(100):
            _HOARD.append(bytearray(10_000))
        det.snapshot("after")
        report = det.detect_leaks(calls=100)
        assert report.potential_leak
        assert report.growth_per_call_bytes > 9000
        assert det.names == ["before", "after"]
    _HOARD.clear()
    with LeakDetector(threshold_bytes=512 * 1024) as det:
        det.snapshot("before")
        for _ in range(100):
            _clean()
        det.snapshot("after")
        assert not det.detect_leaks(calls=100).potential_leak


def test_leak_detector_many_snapshots_use_the_trend() -> None:
    """With several snapshots, steady growth is a leak even below the two-point threshold."""
    det = LeakDetector(threshold_bytes=1 << 30, max_snapshots=4)
    try:
        for i in range(6):
            for _ in range(200):
                _leaky()
            det.snapshot(f"s{i}")
        assert len(det.names) == 4  # bounded: the oldest after the first are dropped
        assert det.detect_leaks(calls=200).leaked
    finally:
        det.close()


def test_leak_detector_needs_two_snapshots() -> None:
    """detect_leaks() with one snapshot is an error, not a silent 'no leak'."""
    det = LeakDetector()
    try:
        det.snapshot("only")
        with pytest.raises(ConfigurationError, match="two snapshots"):
            det.detect_leaks()
    finally:
        det.close()


def test_assert_collected_passes_for_freed_objects() -> None:
    """A dropped object (weakref or temporary argument) passes, even in a reference cycle."""
    s = Session(1)
    s.self = s  # type: ignore[attr-defined]
    ref = weakref.ref(s)
    del s
    assert_collected(ref)
    assert_collected(Session(2))


def test_assert_collected_fails_with_referrer_chain() -> None:
    """An object kept by a module global fails, and the message names the global."""
    s = Session(3)
    _HOARD.append(s)
    ref = weakref.ref(s)
    del s
    with pytest.raises(AssertionError, match=r"_HOARD\[0\]"):
        assert_collected(ref)


def test_assert_collected_rejects_non_weakrefable() -> None:
    """Objects without weak reference support are a usage error."""
    with pytest.raises(ConfigurationError, match="weak references"):
        assert_collected(42)


def test_referrer_chain_not_found_for_unreachable() -> None:
    """An object only held by a local of this frame has no chain from a module."""
    local = Session(4)
    assert referrer_chain(local) == []


def test_suspect_leak_ramp_sawtooth_flat() -> None:
    """A ramp is suspected; a sawtooth and a noisy flat line are not."""
    ts = [float(i) for i in range(60)]
    ramp = [100e6 + 1e6 * i + (i % 3) * 1e5 for i in range(60)]
    saw = [100e6 + (i % 10) * 5e6 for i in range(60)]
    flat = [100e6 + ((i * 7919) % 13) * 1e5 for i in range(60)]
    assert suspect_leak(ts, ramp).suspected
    s = suspect_leak(ts, saw)
    assert not s.suspected
    assert not suspect_leak(ts, flat).suspected
    assert suspect_leak(ts, ramp).slope_bytes_per_s == pytest.approx(1e6, rel=0.05)
    assert not suspect_leak(ts[:5], ramp[:5]).suspected


def test_suspect_leak_rejects_mismatched_lengths() -> None:
    """Series of different lengths raise a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="samples"):
        suspect_leak([0.0, 1.0], [1.0])


def test_clear_interpreter_caches_empties_re_cache() -> None:
    """The regex cache, one of the caches cleared between rounds, is empty afterwards."""
    re.compile(r"memwarden-\d+-test")
    assert len(re._cache) > 0  # type: ignore[attr-defined]
    clear_interpreter_caches()
    assert len(re._cache) == 0  # type: ignore[attr-defined]


def test_memwardens_own_helpers_do_not_leak() -> None:
    """The detector's own pure helpers pass their own check (memwarden tests itself)."""
    ts = [float(i) for i in range(40)]
    ys = [float(i % 7) * 1e6 for i in range(40)]
    report = check_leaks(suspect_leak, ts, ys, rounds=5, calls_per_round=20, warmup=1)
    assert not report.leaked, report.summary()


def test_closed_detector_is_collectable() -> None:
    """A closed LeakDetector holds no global registration: it is collected once dropped."""
    det = LeakDetector()
    det.snapshot("a")
    det.close()
    ref = weakref.ref(det)
    del det
    assert_collected(ref)
