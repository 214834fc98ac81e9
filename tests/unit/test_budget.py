"""Tests of memory budgets (tracemalloc and RSS modes) and process-limit bookkeeping."""

from __future__ import annotations

import asyncio
import gc
import resource
import tracemalloc
import warnings
from pathlib import Path

import pytest

from memwarden.budget import MemoryBudget, memory_budget, process_limit, set_process_limit
from memwarden.exceptions import (
    ConfigurationError,
    MemoryBudgetExceededError,
    MemoryPressureWarning,
)
from memwarden.pressure import malloc_trim

MiB = 1 << 20


def test_python_budget_passes_under_the_limit() -> None:
    """A block that allocates less than its budget passes and reports its peak."""
    with memory_budget("8 MiB") as b:
        data = bytearray(2 * MiB)
        del data
    assert not b.exceeded
    # less the bookkeeping bytes (more under coverage) freed after the start level was read
    assert 2 * MiB - 4096 <= b.peak_bytes < 3 * MiB
    assert not tracemalloc.is_tracing()


def test_python_budget_raises_with_peak_limit_and_sites() -> None:
    """Going over budget raises a MemoryError subclass naming peak, limit and this line."""
    with pytest.raises(MemoryBudgetExceededError) as info, memory_budget("4 MiB"):
        kept = bytearray(6 * MiB)  # the site the error must name
    err = info.value
    assert isinstance(err, MemoryError)
    assert err.limit_bytes == 4 * MiB
    assert err.peak_bytes >= 6 * MiB
    assert err.top_sites
    where, size = err.top_sites[0]
    assert where.endswith("test_budget.py:" + str(_line_of("kept = bytearray(6 * MiB)")))
    assert size >= 6 * MiB
    assert "over the limit of 4 MiB" in str(err)  # as written
    del kept


def _line_of(snippet: str) -> int:
    with open(__file__) as fh:  # noqa: PTH123
        for n, line in enumerate(fh, 1):
            if snippet in line and "_line_of" not in line:
                return n
    raise AssertionError(snippet)


def test_peak_counts_memory_freed_before_the_end() -> None:
    """A transient allocation counts toward the peak even though it is gone at exit."""

    def block() -> None:
        with memory_budget("3 MiB"):
            tmp = bytearray(5 * MiB)
            del tmp

    with pytest.raises(MemoryBudgetExceededError) as info:
        block()
    assert info.value.peak_bytes >= 5 * MiB - 4096  # less bookkeeping freed after the start
    assert "freed before the block ended" in str(info.value)


def test_warn_mode_warns_instead_of_raising() -> None:
    """``on_exceed='warn'`` emits MemoryPressureWarning and the block's result stands."""
    with (
        pytest.warns(MemoryPressureWarning, match="over the limit of 1 MiB"),
        memory_budget("1 MiB", on_exceed="warn") as b,
    ):
        data = bytearray(2 * MiB)
    assert b.exceeded
    assert len(data) == 2 * MiB


def test_check_fails_early_inside_a_loop() -> None:
    """``check()`` raises during the loop, as soon as the peak passes the limit."""
    held: list[bytearray] = []

    def loop() -> None:
        with memory_budget("5 MiB") as b:
            for _ in range(100):
                held.append(bytearray(MiB))
                b.check()

    with pytest.raises(MemoryBudgetExceededError) as info:
        loop()
    assert 5 <= len(held) <= 7
    assert info.value.top_sites
    assert info.value.top_sites[0][1] >= 5 * MiB


@pytest.mark.no_cover  # measures memory: coverage's tracer allocates and would count
def test_nested_budgets_keep_the_outer_peak() -> None:
    """An inner budget's reset of the tracemalloc peak does not hide it from the outer."""
    with memory_budget("100 MiB") as outer:
        with memory_budget("50 MiB") as inner:
            tmp = bytearray(8 * MiB)
            del tmp
        small = bytearray(MiB)
    # A page of slack: objects freed inside the block (by gc, or a tracer) lower the net peak.
    assert inner.peak_bytes >= 8 * MiB - 4096
    assert outer.peak_bytes >= 8 * MiB - 4096
    del small
    assert not tracemalloc.is_tracing()


def test_an_outer_tracemalloc_session_is_left_running() -> None:
    """A budget inside a user's tracemalloc session measures its block and leaves tracing on."""
    tracemalloc.start()
    try:
        before = bytearray(4 * MiB)
        with warnings.catch_warnings(), memory_budget("2 MiB", on_exceed="warn") as b:
            warnings.simplefilter("ignore")
            inside = bytearray(3 * MiB)
        assert tracemalloc.is_tracing()
        assert 3 * MiB <= b.peak_bytes < 4 * MiB
        # The pre-existing 4 MiB is not charged to the block's sites.
        assert b.top_sites
        assert b.top_sites[0][1] < 4 * MiB
        del before, inside
    finally:
        tracemalloc.stop()


class _SnapshotCounter:
    """Counts ``tracemalloc.take_snapshot`` calls (monkeypatched in), delegating to the real one."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = tracemalloc.take_snapshot

    def __call__(self) -> tracemalloc.Snapshot:
        self.calls += 1
        return self.real()


def test_entering_a_block_under_running_tracing_takes_no_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With tracing already on, blocks within budget take no snapshot; one over takes one."""
    counter = _SnapshotCounter()
    monkeypatch.setattr(tracemalloc, "take_snapshot", counter)
    tracemalloc.start()
    try:
        for _ in range(20):
            with memory_budget("8 MiB") as ok:
                tmp = bytearray(MiB)
                del tmp
        assert not ok.exceeded
        assert counter.calls == 0
        with pytest.raises(MemoryBudgetExceededError) as info, memory_budget("1 MiB"):
            kept = bytearray(3 * MiB)
        assert counter.calls == 1  # only over budget: the one at the end, to name sites
        assert info.value.top_sites
        assert info.value.top_sites[0][1] >= 3 * MiB
        del kept
    finally:
        tracemalloc.stop()


def _allocate_before_and_in(
    size_before: int, size_in: int
) -> tuple[list[bytearray], list[tuple[str, int]]]:
    """Allocate ``size_before`` outside and ``size_in`` inside a warn-only budget."""
    before = bytearray(size_before)
    with warnings.catch_warnings(), memory_budget("1 MiB", on_exceed="warn") as b:
        warnings.simplefilter("ignore")
        inside = bytearray(size_in)
    assert b.exceeded
    return [before, inside], b.top_sites


def test_sites_under_running_tracing_skip_memory_from_before_the_block() -> None:
    """With tracing already on, the block's sites name its own lines, not earlier ones."""
    tracemalloc.start(4)
    try:
        kept, sites = _allocate_before_and_in(6 * MiB, 2 * MiB)
        assert sites
        where, size = sites[0]
        assert 2 * MiB <= size < 3 * MiB
        assert where.endswith(f":{_line_of('inside = bytearray(size_in)')}")
        del kept
    finally:
        tracemalloc.stop()


def test_decorated_function_sites_under_running_tracing() -> None:
    """A decorated function's sites are its own lines when tracing was already on."""
    earlier = bytearray(5 * MiB)

    @memory_budget("1 MiB", on_exceed="warn")
    def build() -> bytearray:
        return bytearray(2 * MiB)

    tracemalloc.start()
    try:
        again = bytearray(5 * MiB)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            made = build()
        assert caught
        message = str(caught[0].message)
        assert f":{_line_of('return bytearray(2 * MiB)')}:" in message
        assert f":{_line_of('again = bytearray(5 * MiB)')}:" not in message
        del made, again
    finally:
        tracemalloc.stop()
    del earlier


def _line_of(text: str) -> int:
    """The line number of the first line of this file containing ``text``."""
    for n, line in enumerate(Path(__file__).read_text(encoding="utf-8").splitlines(), 1):
        if text in line and "_line_of(" not in line:
            return n
    raise AssertionError(text)


def test_the_block_error_is_not_hidden() -> None:
    """An exception from the block propagates, with the budget's finding as a note."""

    def block() -> None:
        with memory_budget("1 MiB"):
            tmp = bytearray(2 * MiB)
            raise KeyError(len(tmp))

    with pytest.raises(KeyError) as info:
        block()
    assert any("over the limit" in n for n in info.value.__notes__)


def test_decorator_budgets_every_call() -> None:
    """As a decorator each call gets its own budget named after the function."""

    @memory_budget("3 MiB")
    def work(n: int) -> int:
        return len(bytearray(n * MiB))

    assert work(1) == MiB
    with pytest.raises(MemoryBudgetExceededError, match=r"in .*work"):
        work(4)
    assert work(2) == 2 * MiB


def test_decorator_on_coroutines() -> None:
    """A coroutine function is budgeted across its awaits."""

    @memory_budget("2 MiB")
    async def work() -> int:
        data = bytearray(3 * MiB)
        await asyncio.sleep(0)
        return len(data)

    with pytest.raises(MemoryBudgetExceededError):
        asyncio.run(work())


def test_a_budget_object_is_not_reentrant() -> None:
    """Entering an active budget object again is refused."""
    b = memory_budget("1 MiB")
    with b, pytest.raises(RuntimeError, match="already active"), b:
        pass


def test_rss_mode_measures_growth_above_the_start() -> None:
    """RSS mode charges the block with RSS growth, caught even between samples."""
    # Return free heap pages first, so nothing left over from earlier tests is released
    # (by gc or a relief run) while the block is measured and hides part of its growth.
    gc.collect()
    malloc_trim()

    def block() -> None:
        with memory_budget("20 MiB", mode="rss"):
            data = bytearray(64 * MiB)
            data[::4096] = b"x" * len(data[::4096])

    with pytest.raises(MemoryBudgetExceededError) as info:
        block()
    assert info.value.peak_bytes >= 60 * MiB
    assert "RSS peaked" in str(info.value)


def test_rss_mode_passes_small_blocks() -> None:
    """A block that barely allocates stays within an RSS budget."""
    with memory_budget("50 MiB", mode="rss") as b:
        sum(range(1000))
    assert not b.exceeded
    assert b.peak_bytes < 50 * MiB


def test_rss_mode_uses_a_running_monitor() -> None:
    """With a running monitor, RSS mode subscribes to its samples instead of a thread."""

    class FakeMonitor:
        running = True

        def __init__(self) -> None:
            self.subs: list[object] = []

        def on_sample(self, cb: object) -> FakeMonitor:
            self.subs.append(cb)
            return self

        def unsubscribe(self) -> None:
            self.subs.clear()

    class Sample:
        rss_bytes = 1 << 40  # a sample far above anything real

    mon = FakeMonitor()
    subscribed: list[int] = []

    def block() -> None:
        with memory_budget("1 GiB", mode="rss", monitor=mon):
            subscribed.append(len(mon.subs))
            mon.subs[0](Sample())  # type: ignore[operator]

    with pytest.raises(MemoryBudgetExceededError):
        block()
    assert subscribed == [1]
    assert mon.subs == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"limit": "lots"}, "lots"),
        ({"limit": 0}, "positive"),
        ({"limit": "1 MiB", "mode": "heap"}, "mode='heap'"),
        ({"limit": "1 MiB", "on_exceed": "ignore"}, "on_exceed='ignore'"),
        ({"limit": "1 MiB", "absolute": True}, "absolute=True"),
        ({"limit": "1 MiB", "mode": "rss", "interval_s": 0}, "interval_s=0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict[str, object], match: str) -> None:
    """Each bad argument raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=match):
        memory_budget(**kwargs)  # type: ignore[arg-type]


def test_repr_shows_the_outcome() -> None:
    """The repr names the limit, the mode and whether it was exceeded."""
    with memory_budget("1 MiB", name="step") as b:
        pass
    assert isinstance(b, MemoryBudget)
    assert repr(b).startswith("<MemoryBudget 'step' limit=1 MiB mode=python")


def test_process_limit_reads_and_restores() -> None:
    """set_process_limit sets the soft RLIMIT_DATA and the context manager restores it."""
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with set_process_limit("64 GiB") as lim:
        assert process_limit() == 64 << 30
        assert lim.previous == (None if before[0] == resource.RLIM_INFINITY else before[0])
        assert lim.resource_name == "RLIMIT_DATA"
    assert resource.getrlimit(resource.RLIMIT_DATA) == before


def test_process_limit_refuses_a_limit_below_current_use() -> None:
    """A limit below what the process already uses is refused, naming the usage."""
    with pytest.raises(ConfigurationError, match="already uses"):
        set_process_limit("1 MiB")
    with pytest.raises(ConfigurationError, match="kind='heap'"):
        process_limit("heap")  # type: ignore[arg-type]


def test_errors_name_the_limit_as_written() -> None:
    """A decimal limit is quoted as the user wrote it, not converted to binary units."""
    budget = memory_budget("1 MB")
    with pytest.raises(MemoryBudgetExceededError) as info, budget:
        bytearray(2 * MiB)
    assert "over the limit of 1 MB" in str(info.value)
    assert "MiB (python" not in str(info.value).split("limit of")[1]
