"""Budgets and hard limits against real allocations: numpy buffers, RSS, RLIMIT_DATA."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from memwarden.budget import memory_budget
from memwarden.exceptions import MemoryBudgetExceededError

np = pytest.importorskip("numpy")

MiB = 1 << 20


def test_a_150_mib_numpy_array_breaks_a_100_mib_budget_with_its_site() -> None:
    """A real 150 MiB numpy allocation raises under 100 MiB, naming this file and line."""

    def block() -> None:
        with memory_budget("100 MiB"):
            arr = np.ones(150 * MiB // 8)  # SITE
            arr.sum()

    with pytest.raises(MemoryBudgetExceededError) as info:
        block()
    err = info.value
    assert err.peak_bytes >= 150 * MiB
    assert err.limit_bytes == 100 * MiB
    where, size = err.top_sites[0]
    assert where.startswith(__file__)
    with open(__file__) as fh:  # noqa: PTH123
        line = next(n for n, text in enumerate(fh, 1) if "# SITE" in text and "np.ones" in text)
    assert where.endswith(f":{line}")
    assert size >= 150 * MiB


def test_the_same_work_at_50_mib_passes_the_100_mib_budget() -> None:
    """A 50 MiB numpy allocation stays inside the 100 MiB budget, and its peak is measured."""
    with memory_budget("100 MiB") as b:
        arr = np.ones(50 * MiB // 8)
        arr.sum()
    assert not b.exceeded
    assert 50 * MiB <= b.peak_bytes < 60 * MiB


@pytest.mark.no_cover  # measures memory: coverage's tracer allocates and would count
def test_rss_mode_sees_what_tracemalloc_cannot() -> None:
    """RSS mode charges memory tracemalloc never sees (an anonymous mmap) to the block."""
    import gc
    import mmap

    from memwarden.pressure import malloc_trim

    # Nothing left over from earlier tests may be released while the block is measured.
    gc.collect()
    malloc_trim()

    def block() -> None:
        with memory_budget("64 MiB", mode="rss"):
            m = mmap.mmap(-1, 128 * MiB)
            for off in range(0, 128 * MiB, 4096):
                m[off] = 1
            m.close()

    with pytest.raises(MemoryBudgetExceededError) as info:
        block()
    assert info.value.peak_bytes >= 100 * MiB
    # The same block under python mode passes: the mmap is invisible to tracemalloc.
    with memory_budget("64 MiB") as b:
        m = mmap.mmap(-1, 128 * MiB)
        for off in range(0, 128 * MiB, 4096):
            m[off] = 1
        m.close()
    assert not b.exceeded


def test_rlimit_data_turns_an_overrun_into_a_reported_memory_error() -> None:
    """Under set_process_limit a too-large allocation raises MemoryError with a memwarden note."""
    code = textwrap.dedent(
        """
        import resource
        from memwarden.budget import set_process_limit, process_limit
        before = resource.getrlimit(resource.RLIMIT_DATA)
        try:
            with set_process_limit("300 MiB"):
                assert process_limit() == 300 << 20
                data = bytearray(500 << 20)
        except MemoryError as exc:
            print("NOTE:", exc.__notes__[0])
        assert resource.getrlimit(resource.RLIMIT_DATA) == before, "not restored"
        small = bytearray(400 << 20)  # fine again once the limit is gone
        print("RESTORED", len(small))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "NOTE: memwarden: RLIMIT_DATA soft limit 300.0 MiB (set_process_limit)" in out.stdout
    assert f"RESTORED {400 << 20}" in out.stdout
