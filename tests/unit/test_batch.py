"""Unit tests for memwarden.batch: sizing from measured memory, pressure, retries, async."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from memwarden.batch import DEFAULT_CUT_FACTOR, AdaptiveBatchProcessor, BatchEvent, BatchSizer
from memwarden.exceptions import (
    ConfigurationError,
    MemoryBudgetExceededError,
    PressureTimeoutError,
)
from memwarden.pressure import PressureLevel, malloc_trim
from memwarden.probes import rss

MiB = 1024 * 1024


class FakeMemory:
    """A probe: reads ``base`` before a batch and ``base + cost x batch`` just after it."""

    def __init__(self, base_bytes: int = 10 * MiB, item_bytes: int = MiB) -> None:
        self.base_bytes = base_bytes
        self.item_bytes = item_bytes
        self._peak: int | None = None

    def batch_ran(self, n: int) -> None:
        self._peak = self.base_bytes + self.item_bytes * n

    def __call__(self) -> int:
        peak, self._peak = self._peak, None
        return self.base_bytes if peak is None else peak


class FakeGovernor:
    """A governor whose level is scripted per call; records waits."""

    def __init__(self, levels: list[int], *, relieve: bool = True) -> None:
        self.levels = list(levels)
        self.waits: list[float | None] = []
        self.relieve = relieve

    def level(self) -> int:
        return self.levels.pop(0) if self.levels else 0

    def wait_for_relief(self, timeout: float | None = None, *, poll_s: float = 0.1) -> None:
        self.waits.append(timeout)
        if not self.relieve:
            raise PressureTimeoutError("still under pressure", waited_s=timeout or 0.0)


def _proc(mem: FakeMemory, **kw: object) -> tuple[AdaptiveBatchProcessor[int, int], list[int]]:
    sizes: list[int] = []

    def process(batch: list[int]) -> list[int]:
        sizes.append(len(batch))
        mem.batch_ran(len(batch))
        return [x * 2 for x in batch]

    kw.setdefault("max_memory", 100 * MiB)
    kw.setdefault("target_usage", 0.5)
    kw.setdefault("governor", None)
    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(process, probe=mem, **kw)  # type: ignore[arg-type]
    return proc, sizes


def test_results_in_order_and_complete() -> None:
    """run() yields one result per item, in input order."""
    proc, _ = _proc(FakeMemory())
    assert list(proc.run(range(1000))) == [x * 2 for x in range(1000)]
    assert proc.stats.items == 1000


def test_input_is_pulled_lazily() -> None:
    """The input iterator is consumed one batch at a time, never materialised."""
    pulled = 0

    def gen() -> Iterator[int]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i

    proc, sizes = _proc(FakeMemory())
    for consumed, _ in enumerate(proc.run(gen()), start=1):
        assert pulled - consumed < max(sizes)
        if consumed == 100:
            break
    assert pulled < 200


def test_batch_size_learned_from_memory_per_item() -> None:
    """With 1 MiB per item, 10 MiB used and a 50 MiB target, batches settle at 40 items."""
    proc, sizes = _proc(FakeMemory(10 * MiB, MiB))
    list(proc.run(range(500)))
    assert sizes[0] == 8
    assert set(sizes[1:-1]) == {40}
    assert proc.stats.item_bytes == pytest.approx(MiB)


def test_batch_size_follows_a_change_in_item_cost() -> None:
    """When items become 4x heavier, the next batch shrinks to fit the target again."""
    mem = FakeMemory(10 * MiB, MiB)
    proc, sizes = _proc(mem)
    it = proc.run(range(2000))
    for _ in range(200):
        next(it)
    mem.item_bytes = 4 * MiB
    list(it)
    assert 40 in sizes
    assert sizes[-2] == 10  # (50 - 10) MiB / 4 MiB


def test_peak_stays_under_target_after_first_batch() -> None:
    """No batch after the first projects above the target (base + size x cost)."""
    mem = FakeMemory(20 * MiB, 3 * MiB)
    proc, sizes = _proc(mem, max_memory="200 MiB", target_usage=0.7)
    list(proc.run(range(3000)))
    target = 0.7 * 200 * MiB
    assert all(20 * MiB + s * 3 * MiB <= target for s in sizes)
    assert max(sizes) == int((target - 20 * MiB) // (3 * MiB))


def test_slow_start_then_additive_increase_without_signal() -> None:
    """Items too small to measure: double up to max_batch (no estimate caps it)."""
    mem = FakeMemory(10 * MiB, 0)
    proc, sizes = _proc(mem, max_batch=100, initial_batch=4)
    list(proc.run(range(1000)))
    assert sizes[:6] == [4, 8, 16, 32, 64, 100]


def test_additive_increase_after_a_cut() -> None:
    """After a pressure cut the size grows by `increase` per batch, not by doubling."""
    gov = FakeGovernor([0, 0, 0, 2])  # HIGH before the 4th batch
    mem = FakeMemory(10 * MiB, 0)
    proc, sizes = _proc(mem, governor=gov, initial_batch=16, increase=3, max_batch=1000)
    list(proc.run(range(500)))
    assert sizes[:3] == [16, 32, 64]
    assert sizes[3] == int(128 * DEFAULT_CUT_FACTOR)
    assert sizes[4] == sizes[3]  # no growth straight after a batch run under pressure
    assert sizes[5] == sizes[4] + 3
    assert sizes[6] == sizes[5] + 3
    assert proc.stats.cuts == 1
    assert gov.waits == [proc.pressure_timeout_s]


def test_moderate_pressure_holds_the_size() -> None:
    """MODERATE pressure stops growth without cutting or waiting."""
    gov = FakeGovernor([1, 1, 1, 1])
    proc, sizes = _proc(FakeMemory(10 * MiB, 0), governor=gov, initial_batch=5)
    list(proc.run(range(40)))
    assert sizes[:5] == [5, 5, 5, 5, 5]  # the level read before a batch governs its growth
    assert sizes[5] == 10
    assert gov.waits == []


def test_high_pressure_cuts_and_waits_every_batch() -> None:
    """Under sustained HIGH pressure the size halves each batch down to min_batch."""
    gov = FakeGovernor([2] * 10)
    proc, sizes = _proc(FakeMemory(10 * MiB, 0), governor=gov, initial_batch=64, min_batch=2)
    list(proc.run(range(100)))
    assert sizes[:6] == [32, 16, 8, 4, 2, 2]
    assert proc.stats.waits == 10


def test_pressure_timeout_continue_drops_to_min_batch() -> None:
    """A wait that times out is logged and the next batch runs at min_batch."""
    gov = FakeGovernor([0, 3], relieve=False)
    proc, sizes = _proc(
        FakeMemory(10 * MiB, 0), governor=gov, pressure_timeout_s=0.5, initial_batch=10
    )
    list(proc.run(range(100)))
    assert sizes[1] == 1
    assert proc.stats.wait_timeouts == 1
    assert gov.waits == [0.5]


def test_pressure_timeout_raise() -> None:
    """With on_pressure_timeout='raise' the timeout propagates."""
    gov = FakeGovernor([3], relieve=False)
    proc, _ = _proc(FakeMemory(), governor=gov, on_pressure_timeout="raise")
    with pytest.raises(PressureTimeoutError):
        list(proc.run(range(10)))


def test_memory_error_cuts_and_retries_without_losing_items() -> None:
    """A MemoryError for batches over 20 items is retried smaller; every result arrives once."""
    sizes: list[int] = []

    def process(batch: list[int]) -> list[int]:
        sizes.append(len(batch))
        if len(batch) > 20:
            raise MemoryError
        return [-x for x in batch]

    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        process, max_memory="1 GiB", initial_batch=100, governor=None, probe=lambda: 0
    )
    out = list(proc.run(range(300)))
    assert out == [-x for x in range(300)]
    assert sizes[:4] == [100, 50, 25, 12]
    # growth never goes back above a size that failed, so retries stay few
    assert all(s <= 24 for s in sizes[4:])
    assert 3 <= proc.stats.retries <= 8


def test_memory_error_at_min_batch_reraises_with_context() -> None:
    """When even min_batch fails, MemoryBudgetExceededError is raised from the MemoryError."""

    def process(batch: list[int]) -> list[int]:
        raise MemoryError("no room")

    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        process, max_memory="1 GiB", initial_batch=8, min_batch=2, governor=None
    )
    with pytest.raises(MemoryBudgetExceededError, match="min_batch=2") as info:
        list(proc.run(range(50)))
    assert isinstance(info.value, MemoryError)
    assert isinstance(info.value.__cause__, MemoryError)
    assert proc.stats.retries == 3  # 8 -> 4 -> 2 -> raise


def test_hooks_receive_events_and_hook_errors_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Every batch emits a 'done' event; a failing hook is logged, not raised."""
    events: list[BatchEvent] = []

    def bad(event: BatchEvent) -> None:
        raise RuntimeError("hook broke")

    gov = FakeGovernor([0, 2])
    proc, sizes = _proc(FakeMemory(), governor=gov, on_batch=[events.append, bad])
    with caplog.at_level(logging.ERROR, logger="memwarden.batch"):
        list(proc.run(range(100)))
    kinds = [e.kind for e in events]
    assert kinds.count("done") == len(sizes)
    assert "cut" in kinds
    assert "wait" in kinds
    done = [e for e in events if e.kind == "done"]
    assert [e.size for e in done] == sizes
    assert done[0].item_bytes == pytest.approx(MiB)
    assert "hook broke" in caplog.text


def test_process_returning_none_runs_for_side_effects() -> None:
    """A process that returns None still sees every item; run() yields nothing."""
    seen: list[int] = []
    proc: AdaptiveBatchProcessor[int, None] = AdaptiveBatchProcessor(
        seen.extend, max_memory="1 GiB", governor=None
    )
    assert list(proc.run(range(77))) == []
    assert seen == list(range(77))


def test_stats_and_summary() -> None:
    """Stats count batches, items and sizes over time; summary() states them."""
    ticks = iter(float(i) for i in range(10_000))
    proc, sizes = _proc(FakeMemory(), clock=lambda: next(ticks))
    list(proc.run(range(100)))
    st = proc.stats
    assert st.batches == len(sizes)
    assert [s for _, s in st.sizes] == sizes
    assert st.items_per_s > 0
    assert "100 items" in st.summary()


def test_size_history_is_small_and_max_batch_seen_covers_every_batch() -> None:
    """``stats.sizes`` keeps the last 512 batches; ``max_batch_seen`` still sees the first."""
    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        lambda batch: batch,
        max_memory="1 GiB",
        max_batch=7,
        initial_batch=7,
        governor=None,
        measure="rss",
    )
    assert proc.stats.sizes.maxlen == 512
    assert list(proc.run(range(7))) == list(range(7))  # one batch of 7
    proc.min_batch = proc.max_batch = proc.initial_batch = 1
    list(proc.run(range(600)))  # 600 one-item batches push it out of the window
    st = proc.stats
    assert st.batches == 601
    assert len(st.sizes) == 512
    assert all(size == 1 for _, size in st.sizes)
    assert st.max_batch_seen == 7


def test_arun_with_async_process_and_async_iterable() -> None:
    """arun awaits an async process over an async iterable, in order."""
    mem = FakeMemory()

    async def process(batch: list[int]) -> list[int]:
        mem.batch_ran(len(batch))
        await asyncio.sleep(0)
        return [x + 1 for x in batch]

    async def items() -> AsyncIterator[int]:
        for i in range(300):
            yield i

    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        process, probe=mem, max_memory=100 * MiB, target_usage=0.5, governor=None
    )

    async def main() -> list[int]:
        return [r async for r in proc.arun(items())]

    assert asyncio.run(main()) == [x + 1 for x in range(300)]
    assert proc.stats.max_batch_seen == 40


def test_arun_with_sync_process_and_pressure() -> None:
    """A plain process runs in a thread under arun; pressure waits do not block the loop."""
    gov = FakeGovernor([0, 2])
    proc, _ = _proc(FakeMemory(), governor=gov)

    async def main() -> list[int]:
        return [r async for r in proc.arun(range(100))]

    assert asyncio.run(main()) == [x * 2 for x in range(100)]
    assert gov.waits == [proc.pressure_timeout_s]
    assert proc.stats.cuts == 1


def test_run_rejects_async_process() -> None:
    """Using run() with an async process is a clear error pointing at arun()."""

    async def process(batch: list[int]) -> list[int]:
        return batch

    proc = AdaptiveBatchProcessor(process, max_memory="1 GiB", governor=None)
    with pytest.raises(ConfigurationError, match="arun"):
        proc.run([1])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_memory": "lots"}, "max_memory"),
        ({"target_usage": 0}, "target_usage"),
        ({"target_usage": 1.5}, "target_usage"),
        ({"min_batch": 0}, "min_batch"),
        ({"max_batch": 2, "min_batch": 5}, "max_batch"),
        ({"initial_batch": 99, "max_batch": 10}, "initial_batch"),
        ({"cut_factor": 1.0}, "cut_factor"),
        ({"increase": 0}, "increase"),
        ({"measure": "vibes"}, "measure"),
        ({"on_pressure_timeout": "shrug"}, "on_pressure_timeout"),
        ({"pressure_timeout_s": -1}, "pressure_timeout_s"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], name: str) -> None:
    """Out-of-range arguments raise ConfigurationError naming the argument."""
    kwargs.setdefault("max_memory", "1 GiB")
    with pytest.raises(ConfigurationError, match=name):
        AdaptiveBatchProcessor(lambda b: b, **kwargs)  # type: ignore[arg-type]


def test_default_budget_is_the_effective_limit() -> None:
    """Without max_memory, the budget is the tightest limit on this process."""
    from memwarden.probes import effective_limit

    proc = AdaptiveBatchProcessor(lambda b: b, governor=None)
    assert proc.max_memory_bytes == effective_limit().limit_bytes
    assert proc.target_bytes == int(proc.max_memory_bytes * 0.7)


def test_default_governor_is_the_process_wide_one() -> None:
    """governor=DEFAULT (the default) resolves lazily to memwarden.pressure.governor()."""
    from memwarden.pressure import DEFAULT, governor

    proc = AdaptiveBatchProcessor(lambda b: b, max_memory="1 GiB")
    assert proc.governor is governor()
    explicit = AdaptiveBatchProcessor(lambda b: b, max_memory="1 GiB", governor=DEFAULT)
    assert explicit.governor is governor()
    assert AdaptiveBatchProcessor(lambda b: b, max_memory="1 GiB", governor=None).governor is None


def test_governor_false_is_a_deprecated_none() -> None:
    """governor=False still means no governor, with a DeprecationWarning naming None."""
    with pytest.warns(DeprecationWarning, match="governor=None"):
        proc = AdaptiveBatchProcessor(lambda b: b, max_memory="1 GiB", governor=False)
    assert proc.governor is None


def test_a_governor_without_level_is_refused() -> None:
    """Anything but DEFAULT, None or a pressure source is a ConfigurationError at once."""
    with pytest.raises(ConfigurationError, match=r"governor=.*DEFAULT, None"):
        AdaptiveBatchProcessor(lambda b: b, max_memory="1 GiB", governor=object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# against the real process


def _allocating(item_bytes: int):  # type: ignore[no-untyped-def]
    ones = b"\x01" * (item_bytes // 4096)

    def process(batch: list[int]) -> list[int]:
        held = []
        for _ in batch:
            buf = bytearray(item_bytes)
            buf[::4096] = ones
            held.append(buf)
        return [len(b) for b in held]

    return process


@pytest.mark.no_cover  # measures memory: coverage's tracer allocates and would count
@pytest.mark.parametrize("measure", ["peak", "heap"])
def test_real_process_learns_about_one_mib_per_item(measure: str) -> None:
    """Measured against this process, 1 MiB items are estimated at about 1 MiB each."""
    # Return free heap pages first: items must fault in fresh pages to show in the peak,
    # not reuse resident ones freed by earlier tests in this process.
    gc.collect()
    malloc_trim()
    budget = rss() + 160 * MiB
    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        _allocating(MiB),
        max_memory=budget,
        target_usage=0.5,
        governor=None,
        measure=measure,  # type: ignore[arg-type]
    )
    assert sum(proc.run(range(200))) == 200 * MiB
    est = proc.stats.item_bytes
    assert est is not None
    assert 0.9 * MiB <= est <= 1.6 * MiB
    # the learned size leaves the target's headroom: (0.5 x budget - rss) / ~1 MiB
    assert proc.stats.max_batch_seen <= 80


@pytest.mark.no_cover  # measures memory: coverage's tracer allocates and would count
def test_real_process_rss_mode_sees_results_held() -> None:
    """measure='rss' reads RSS after the batch, so results kept alive are counted."""
    # Return free heap pages first: new blocks must fault in fresh pages to show in RSS,
    # not reuse resident ones freed by earlier tests.
    gc.collect()
    malloc_trim()
    keep = 512 * 1024
    ones = b"\x01" * (keep // 4096)

    def process(batch: list[int]) -> list[bytearray]:
        out = []
        for _ in batch:
            b = bytearray(keep)
            b[::4096] = ones
            out.append(b)
        return out

    proc: AdaptiveBatchProcessor[int, bytearray] = AdaptiveBatchProcessor(
        process, max_memory=rss() + 100 * MiB, governor=None, measure="rss"
    )
    assert sum(len(b) for b in proc.run(range(100))) == 100 * keep
    assert proc.stats.item_bytes is not None
    assert 0.3 * MiB <= proc.stats.item_bytes <= 1.5 * MiB


def test_with_the_real_governor_pressure_cuts_waits_and_relief_ends_it() -> None:
    """With memwarden's own Governor: usage at 95% cuts the batch, relief runs, work resumes."""
    from memwarden.config import MemoryConfig
    from memwarden.pressure import Governor

    budget = 1000 * MiB
    usage = {"bytes": 100 * MiB}
    relieved: list[int] = []

    def reliever() -> int:
        relieved.append(usage["bytes"])
        usage["bytes"] = 100 * MiB  # a cache gave its memory back
        return 0

    gov = Governor(
        MemoryConfig(max_memory_bytes=budget),
        probe=lambda: usage["bytes"],
        builtin_relievers=False,
    )
    gov.register_reliever(reliever, priority=10, name="test cache")
    sizes: list[int] = []

    def process(batch: list[int]) -> list[int]:
        sizes.append(len(batch))
        if len(sizes) == 3:
            usage["bytes"] = 950 * MiB  # something else filled memory
        return batch

    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        process,
        max_memory=budget,
        governor=gov,
        initial_batch=16,
        probe=lambda: 0,  # item costs are not what this test is about
        pressure_timeout_s=5,
    )
    assert list(proc.run(range(400))) == list(range(400))
    assert proc.stats.cuts == 1
    assert proc.stats.waits == 1
    assert relieved == [950 * MiB]
    assert sizes[:3] == [16, 32, 64]
    assert sizes[3] == int(128 * DEFAULT_CUT_FACTOR)  # the doubled size, cut
    gov.close()


def test_progress_bar_counts_items(capsys: pytest.CaptureFixture[str]) -> None:
    """progress=True draws a rich bar and still yields every result."""
    proc, _ = _proc(FakeMemory(), progress=True)
    assert len(list(proc.run(list(range(120))))) == 120
    captured = capsys.readouterr()
    assert "batches" in captured.err  # the bar goes to stderr


def test_heap_mode_stops_the_tracing_it_started() -> None:
    """measure='heap' starts tracemalloc only if needed and stops it afterwards."""
    import tracemalloc

    assert not tracemalloc.is_tracing()
    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        lambda b: b, max_memory="1 GiB", governor=None, measure="heap"
    )
    assert list(proc.run(range(50))) == list(range(50))
    assert not tracemalloc.is_tracing()


def test_process_peak_survives_the_vmhwm_resets() -> None:
    """process_peak_bytes() still reports a peak reached before batch meters reset VmHWM."""
    from memwarden.batch import process_peak_bytes
    from memwarden.probes import peak_rss

    big = bytearray(96 * MiB)
    big[::4096] = b"\x01" * (len(big) // 4096)
    before = process_peak_bytes()
    del big
    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        lambda b: b, max_memory="4 GiB", governor=None, measure="peak"
    )
    assert list(proc.run(range(100))) == list(range(100))
    assert peak_rss() < before - 64 * MiB  # the kernel's own counter was reset...
    # ...but the lifetime peak is not lost (the kernel syncs RSS counters lazily: ~1 MiB slack)
    assert process_peak_bytes() >= before - MiB


def test_concurrent_peak_meters_do_not_reset_each_other() -> None:
    """Two processors measuring in two threads at once both still see their own peaks."""
    import threading

    estimates: list[float | None] = []
    gate = threading.Barrier(2, timeout=30)

    def worker() -> None:
        def process(batch: list[int]) -> list[int]:
            gate.wait()  # both batches run at the same time
            held = [bytearray(MiB) for _ in batch]
            for b in held:
                b[::4096] = b"\x01" * 256
            gate.wait()
            return [len(h) for h in held]

        proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
            process, max_memory=rss() + 400 * MiB, governor=None, initial_batch=16, max_batch=16
        )
        list(proc.run(range(64)))
        estimates.append(proc.stats.item_bytes)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(estimates) == 2
    # each sees at least its own MiB per item (possibly the other's too: conservative)
    assert all(e is not None and e >= 0.9 * MiB for e in estimates)


def test_forked_child_does_not_reset_the_parents_peak() -> None:
    """A run continued in a forked child resets the child's VmHWM, never the parent's."""
    import os

    from memwarden.probes import peak_rss

    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        lambda b: b, max_memory="4 GiB", governor=None, initial_batch=1, max_batch=1
    )
    gen = proc.run(range(20))
    assert next(gen) == 0  # the meter is open and has reset VmHWM once, in this process
    big = bytearray(64 * MiB)
    big[::4096] = b"\x01" * (len(big) // 4096)
    del big
    high = peak_rss()
    pid = os.fork()
    if pid == 0:  # child: run the remaining batches, each resetting VmHWM
        try:
            code = 0 if sum(gen) == sum(range(1, 20)) else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert peak_rss() >= high - MiB  # the child's resets did not reach this process
    gen.close()


def test_stats_accumulate_over_runs() -> None:
    """A second run adds to items, batches and elapsed time rather than replacing them."""
    ticks = iter(float(i) for i in range(100_000))
    proc, _ = _proc(FakeMemory(), clock=lambda: next(ticks))
    list(proc.run(range(100)))
    first_items, first_elapsed = proc.stats.items, proc.stats.elapsed_s
    list(proc.run(range(50)))
    assert proc.stats.items == first_items + 50
    assert proc.stats.elapsed_s > first_elapsed


def test_cut_events_carry_the_pressure_level_enum() -> None:
    """A pressure cut reports the level read as a PressureLevel member, not a bare number."""
    events: list[BatchEvent] = []
    gov = FakeGovernor([3, 0])
    proc, _ = _proc(FakeMemory(10 * MiB, 0), governor=gov, initial_batch=8, on_batch=events.append)
    list(proc.run(range(20)))
    cuts = [e for e in events if e.kind == "cut"]
    assert [e.level for e in cuts] == [PressureLevel.CRITICAL]
    assert cuts[0].level is PressureLevel.CRITICAL
    assert all(e.level is PressureLevel.NONE for e in events if e.kind == "done")


def test_a_level_outside_the_enum_counts_as_no_pressure(caplog: pytest.LogCaptureFixture) -> None:
    """A governor whose level() is not a PressureLevel value is logged and read as NONE."""
    gov = FakeGovernor([7, 7])
    proc, _ = _proc(FakeMemory(10 * MiB, 0), governor=gov, initial_batch=4)
    with caplog.at_level(logging.WARNING, logger="memwarden.batch"):
        list(proc.run(range(12)))
    assert proc.stats.cuts == 0
    assert gov.waits == []
    assert "governor.level() failed" in caplog.text


def test_sizer_slow_start_doubles_then_jumps_on_a_reliable_estimate() -> None:
    """Small deltas teach nothing (doubling); one clear delta sizes the next batch from the room."""
    sizer = BatchSizer(initial=4, minimum=1, maximum=1000, increase=2)
    sizer.observe(4, 1024)  # allocator noise
    assert sizer.estimate is None
    assert sizer.next_size(4, room_bytes=100 * MiB) == 8
    sizer.observe(8, 8 * MiB)  # 1 MiB per item, reliable
    assert sizer.estimate == MiB
    assert sizer.next_size(8, room_bytes=100 * MiB) == 100
    assert not sizer.slow_start
    assert sizer.next_size(100, room_bytes=200 * MiB) == 102  # additive from here
    assert sizer.fit(10 * MiB) == 10  # what fits now, without forgetting the size
    assert sizer.size == 102


def test_sizer_never_grows_back_to_a_size_that_failed() -> None:
    """After a MemoryError at n, sizes are cut and stay below n whatever the estimate says."""
    sizer = BatchSizer(initial=64, minimum=2, maximum=1000, increase=16)
    assert sizer.failed(64) == 32
    assert sizer.ceiling == 63
    for _ in range(10):
        sizer.next_size(sizer.size, room_bytes=None)
    assert sizer.size == 63


def test_dask_adaptive_map_sizes_with_the_same_rule() -> None:
    """adaptive_map's sizer is a BatchSizer fed worker reports: same sizes for same figures."""
    dask = pytest.importorskip("memwarden.integrations.dask")
    remote = dask._Sizer(initial=4, minimum=1, maximum=1000, target_usage=0.5)
    local = BatchSizer(initial=4, minimum=1, maximum=1000, increase=2)
    limit, base = 400 * MiB, 50 * MiB
    for items, used in ((4, 100_000), (8, 16 * MiB), (40, 80 * MiB)):
        n = remote.next_size()
        assert n == local.size
        worker = dask.WorkerMemoryStats(
            address="w1",
            rss_bytes=base,
            limit_bytes=limit,
            level="OK",
            pressure="NONE",
            reliefs=0,
            leak_suspected=None,
            growth_bytes_per_s=None,
            status="running",
            under_pressure=False,
            governed=True,
        )
        remote.observe(
            dask._BatchReport(
                worker=worker, before_bytes=base, peak_bytes=base + used, items=items, elapsed_s=0.1
            )
        )
        local.observe(items, used)
        local.next_size(items, room_bytes=limit // 2 - base)
        assert remote.policy.size == local.size
    assert remote.per_item_bytes == local.estimate == 2 * MiB
