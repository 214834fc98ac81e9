"""track(): operation stats as context manager, decorator and async, nesting, precise heap peaks."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import pytest

import memwarden.monitoring as monitor_mod
from memwarden.config import MemoryConfig
from memwarden.monitoring import MemoryMonitor, OperationStats, current_operations, track
from tests.support.monitoring import FakeClock, FakeProbe

MiB = 1 << 20


@pytest.fixture
def fake() -> tuple[MemoryMonitor, FakeProbe, FakeClock]:
    """A stopped monitor on a fake probe and a clock advancing 1 s per reading."""
    probe = FakeProbe(100)
    clock = FakeClock(step=1.0)
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=10**6), probe=probe, clock=clock)
    return mon, probe, clock


@pytest.fixture
def real() -> Iterator[MemoryMonitor]:
    """A stopped monitor on the real process's RSS."""
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=2**40))
    yield mon
    mon.close()


@pytest.fixture
def no_tracing() -> Iterator[None]:
    """Run with tracemalloc off, restoring its state afterwards."""
    was = tracemalloc.is_tracing()
    if was:
        tracemalloc.stop()
    yield
    if was and not tracemalloc.is_tracing():
        tracemalloc.start()


def test_delta_and_peak_come_from_the_probe_and_the_samples_in_between(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock], no_tracing: None
) -> None:
    """The RSS delta is end - start; the peak includes monitor samples taken during the block."""
    mon, probe, _ = fake
    probe.value = 400
    mon.sample_now()  # before the block: must not count toward its peak
    probe.value = 100
    with track("load", monitor=mon) as t:
        probe.value = 250
        mon.sample_now()
        probe.value = 150
    st = t.last
    assert st is not None
    assert (st.name, st.rss_delta_bytes, st.peak_rss_bytes) == ("load", 50, 250)
    assert st.python_heap_delta_bytes is None
    assert st.python_heap_peak_bytes is None
    assert st.duration_s >= 0
    assert st.start_time_s > 1_600_000_000  # wall clock, not the monitor's clock
    agg = mon.operations()["load"]
    assert (agg.count, agg.max_peak_rss_bytes, agg.last) == (1, 250, st)


def test_without_samples_the_peak_is_the_larger_end(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock],
) -> None:
    """With no sample in the block the peak is max(start, end); a drop is a negative delta."""
    mon, probe, _ = fake
    probe.value = 300
    with track("free", monitor=mon) as t:
        probe.value = 120
    assert t.last is not None
    assert t.last.peak_rss_bytes == 300
    assert t.last.rss_delta_bytes == -180


def test_real_allocation_shows_in_the_rss_delta(real: MemoryMonitor) -> None:
    """Allocating 32 MiB of touched memory inside the block raises RSS by about that much."""
    with track("alloc", monitor=real) as t:
        blob = b"x" * (32 * MiB)
    assert t.last is not None
    assert t.last.rss_delta_bytes >= 24 * MiB
    assert t.last.peak_rss_bytes >= t.last.rss_delta_bytes
    del blob


def test_decorator_tracks_every_call_and_keeps_the_function(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock],
) -> None:
    """A decorated function returns its value, keeps its name, and each call is one operation."""
    mon, _, _ = fake

    @track("parse", monitor=mon)
    def parse(text: str) -> int:
        """Parse."""
        return len(text)

    assert parse("abc") == 3
    assert parse("abcdef") == 6
    assert parse.__name__ == "parse"
    assert parse.__doc__ == "Parse."
    assert mon.operations()["parse"].count == 2


def test_an_exception_propagates_and_the_block_is_still_recorded(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock],
) -> None:
    """track() never swallows the block's exception but records the operation."""
    mon, _, _ = fake
    with pytest.raises(KeyError), track("boom", monitor=mon):
        raise KeyError("x")
    assert mon.operations()["boom"].count == 1
    assert current_operations() == ()


def test_nesting_records_both_and_the_outer_peak_covers_the_inner(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock],
) -> None:
    """Nested blocks are both recorded; the open names are visible, outermost first."""
    mon, probe, _ = fake
    seen: list[OperationStats] = []
    mon.on_operation(seen.append)
    with track("outer", monitor=mon):
        with track("inner", monitor=mon):
            assert current_operations() == ("outer", "inner")
            probe.value = 900
            mon.sample_now()
            probe.value = 200
        assert current_operations() == ("outer",)
    assert [s.name for s in seen] == ["inner", "outer"]
    assert seen[0].peak_rss_bytes == 900
    assert seen[1].peak_rss_bytes == 900


def test_one_track_object_nests_in_itself(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock],
) -> None:
    """The same track object entered recursively records one operation per entry."""
    mon, _, _ = fake

    @track("fib", monitor=mon)
    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(6) == 8
    assert mon.operations()["fib"].count == 25
    assert current_operations() == ()


def test_one_track_object_shared_by_threads(real: MemoryMonitor) -> None:
    """Threads entering one track object at once each get their own frame."""
    t = track("worker", monitor=real)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with t:
                barrier.wait(timeout=10)
                assert current_operations() == ("worker",)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=10)
    assert not errors
    assert real.operations()["worker"].count == 4


def test_async_functions_and_async_with_are_tracked_per_task(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock],
) -> None:
    """An async def decorated with track is awaited inside the block; tasks keep separate stacks."""
    mon, _, _ = fake
    stacks: dict[str, tuple[str, ...]] = {}

    @track("fetch", monitor=mon)
    async def fetch(key: str) -> str:
        await asyncio.sleep(0)
        async with track(f"inner-{key}", monitor=mon):
            await asyncio.sleep(0)
            stacks[key] = current_operations()
        return key.upper()

    async def main() -> list[str]:
        return list(await asyncio.gather(fetch("a"), fetch("b")))

    assert asyncio.run(main()) == ["A", "B"]
    assert stacks == {"a": ("fetch", "inner-a"), "b": ("fetch", "inner-b")}
    assert mon.operations()["fetch"].count == 2
    assert asyncio.iscoroutinefunction(fetch)


def test_precise_starts_and_stops_tracemalloc_and_finds_a_freed_peak(
    real: MemoryMonitor, no_tracing: None
) -> None:
    """precise=True measures a temporary 8 MiB object freed inside the block; tracing ends after."""
    with track("tmp", precise=True, monitor=real) as t:
        assert tracemalloc.is_tracing()
        tmp = bytearray(8 * MiB)
        del tmp
    assert not tracemalloc.is_tracing()
    st = t.last
    assert st is not None
    assert st.python_heap_peak_bytes is not None
    assert st.python_heap_delta_bytes is not None
    assert st.python_heap_peak_bytes >= 8 * MiB
    assert abs(st.python_heap_delta_bytes) < MiB


def test_precise_leaves_running_tracemalloc_on_and_nested_peaks_reach_the_outer(
    real: MemoryMonitor, no_tracing: None
) -> None:
    """With tracing on, precise blocks use reset_peak; an inner peak still counts outside."""
    tracemalloc.start()
    try:
        with track("outer", precise=True, monitor=real) as outer:
            tmp = bytearray(6 * MiB)
            del tmp
            with track("inner", precise=True, monitor=real) as inner:
                tmp2 = bytearray(2 * MiB)
                del tmp2
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()
    assert inner.last is not None
    assert outer.last is not None
    assert inner.last.python_heap_peak_bytes is not None
    assert outer.last.python_heap_peak_bytes is not None
    # the inner peak is its own 2 MiB, not the outer's earlier 6 MiB
    start_inner = outer.last.python_heap_peak_bytes - 6 * MiB
    assert inner.last.python_heap_peak_bytes < start_inner + 4 * MiB
    assert inner.last.python_heap_peak_bytes >= 2 * MiB
    assert outer.last.python_heap_peak_bytes >= 6 * MiB


def test_untraced_heap_fields_while_tracing_come_from_tracemalloc(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock], no_tracing: None
) -> None:
    """Without precise, a block run while tracemalloc traces still gets a heap delta."""
    mon, _, _ = fake
    tracemalloc.start()
    try:
        with track("keep", monitor=mon) as t:
            kept = bytearray(3 * MiB)
    finally:
        tracemalloc.stop()
    assert t.last is not None
    assert t.last.python_heap_delta_bytes is not None
    assert t.last.python_heap_delta_bytes >= 3 * MiB
    del kept


def test_without_a_monitor_argument_the_default_monitor_records(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """track(name) records on the process-wide default monitor."""
    mon, _, _ = fake
    monkeypatch.setattr(monitor_mod, "_default", mon)
    with track("default-op"):
        pass
    assert "default-op" in mon.operations()


def test_a_name_is_required() -> None:
    """An empty or non-string name is a TypeError naming the value."""
    with pytest.raises(TypeError, match="''"):
        track("")
    with pytest.raises(TypeError, match="42"):
        track(42)  # type: ignore[arg-type]


def test_monitor_and_track_do_not_leak_by_memwardens_own_detector() -> None:
    """check_leaks finds no growth in repeated samples and tracked blocks on a full ring."""
    leaks = pytest.importorskip("memwarden.leaks", reason="leak detector not built yet")
    probe = FakeProbe(100)
    mon = MemoryMonitor(
        MemoryConfig(max_memory_bytes=10**6, history_size=100), probe=probe, clock=FakeClock(step=1)
    )
    t = track("op", monitor=mon)

    def step() -> None:
        probe.value += 1
        mon.sample_now()
        with t:
            pass

    for _ in range(200):  # fill the ring first
        mon.sample_now()
    report = leaks.check_leaks(step)
    assert not report.leaked, report.summary()


def test_generators_are_tracked_from_first_item_to_exhaustion(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock],
) -> None:
    """A decorated generator records one operation covering its whole iteration."""
    mon, probe, _ = fake

    @track("rows", monitor=mon)
    def rows(n: int) -> Iterator[int]:
        for i in range(n):
            probe.value = 100 + 50 * i
            mon.sample_now()
            yield i

    gen = rows(4)
    assert "rows" not in mon.operations()  # nothing runs before the first item
    assert list(gen) == [0, 1, 2, 3]
    agg = mon.operations()["rows"]
    assert agg.count == 1
    assert agg.max_peak_rss_bytes == 250


def test_async_generators_are_tracked_too(
    fake: tuple[MemoryMonitor, FakeProbe, FakeClock],
) -> None:
    """A decorated async generator records one operation when exhausted."""
    mon, _, _ = fake

    @track("stream", monitor=mon)
    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def consume() -> list[int]:
        return [i async for i in stream(3)]

    assert asyncio.run(consume()) == [0, 1, 2]
    assert mon.operations()["stream"].count == 1
