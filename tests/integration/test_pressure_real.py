"""The governor against the real process and kernel: RSS, PSI, cgroup v1 notifications."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from memwarden.config import MemoryConfig
from memwarden.pressure import (
    PRIORITY_CACHE,
    PRIORITY_POOL,
    Governor,
    PressureLevel,
)
from memwarden.probes import pressure_stall, rss
from tests.support.cgroups import cgroup_unavailable_reason, memory_cgroup

MiB = 1 << 20


class BlobCache:
    """A cache of real, fully written buffers that frees half of them when shrunk."""

    def __init__(self, order: list[str]) -> None:
        self.blobs: list[bytes] = []
        self.order = order

    def fill(self, n: int) -> None:
        for i in range(n):
            self.blobs.append(i.to_bytes(8, "little") * (MiB // 8))

    def shrink(self, fraction: float = 0.5) -> int:
        self.order.append("cache")
        n = len(self.blobs) // 2
        del self.blobs[:n]
        return n * MiB


class BufferPool:
    """A pool of idle buffers that ``trim`` releases."""

    def __init__(self, order: list[str]) -> None:
        self.idle = [bytearray(MiB) for _ in range(4)]
        self.order = order

    def trim(self) -> int:
        self.order.append("pool")
        n = len(self.idle)
        self.idle.clear()
        return n * MiB


def test_relievers_run_in_order_under_real_pressure() -> None:
    """Real RSS growth past 85% of the budget makes the watcher relieve: cache, pool, gc, trim."""
    order: list[str] = []
    cache = BlobCache(order)
    pool = BufferPool(order)
    base = rss()
    gov = Governor(
        MemoryConfig(max_memory_bytes=base + 120 * MiB),
        interval_s=0.01,
        auto_relieve=True,
        psi=False,
        cgroup=False,
    )
    gov.register_reliever(pool.trim, priority=PRIORITY_POOL, name="pool")
    gov.register_reliever(cache.shrink, priority=PRIORITY_CACHE, name="cache")
    relieved = threading.Event()
    levels: list[tuple[PressureLevel, PressureLevel]] = []

    def on_change(old: PressureLevel, new: PressureLevel) -> None:
        levels.append((old, new))
        if new == PressureLevel.NONE:
            relieved.set()

    gov.on_pressure(on_change)
    with gov:
        cache.fill(130)  # past the budget's 85%: pressure
        assert relieved.wait(30), (gov.stats(), gov.history())
    runs = [r for r in gov.history() if r.steps]
    assert runs
    first = runs[0]
    names = [s.name for s in first.steps]
    assert names[0] == "cache"
    assert names == ["cache", "pool", "gc.collect", "malloc_trim"][: len(names)]
    assert order[0] == "cache"
    assert first.level_before >= PressureLevel.MODERATE
    # RSS really went down (the cache's buffers went back to the OS). The first run may
    # overlap the fill's last allocations, so look for a run that lowered RSS.
    assert any(r.rss_after_bytes < r.rss_before_bytes for r in runs), runs
    assert first.steps[0].reported_bytes is not None
    assert levels[0][0] is PressureLevel.NONE
    assert levels[-1][1] is PressureLevel.NONE
    assert gov.level() is PressureLevel.NONE


def test_wait_for_relief_blocks_until_real_memory_is_freed() -> None:
    """A producer waiting for relief resumes once real memory is given back."""
    base = rss()
    held = [b"x" * (64 * MiB)]
    gov = Governor(
        MemoryConfig(max_memory_bytes=base + 70 * MiB),
        psi=False,
        cgroup=False,
        builtin_relievers=False,
    )
    assert gov.is_under_pressure()
    resumed = threading.Event()

    def producer() -> None:
        gov.wait_for_relief(timeout=30, poll_s=0.01)
        resumed.set()

    t = threading.Thread(target=producer)
    t.start()
    try:
        assert not resumed.wait(0.2)
        held.clear()
        assert resumed.wait(30)
    finally:
        held.clear()
        t.join(30)
    assert not gov.is_under_pressure()


@pytest.mark.skipif(pressure_stall() is None, reason="this kernel exposes no PSI")
def test_real_psi_is_read_and_a_trigger_is_armed() -> None:
    """With PSI present the governor reads ``some avg10`` and arms a PSI trigger to poll."""
    gov = Governor(MemoryConfig(max_memory_bytes=1 << 50), interval_s=0.05, auto_relieve=False)
    gov.level()
    assert isinstance(gov.stats().signals.psi_some_avg10, float)
    with gov:
        mechanisms = gov.mechanisms()
    assert mechanisms[-1] == "sampling"
    assert any(m.startswith("psi-trigger(") for m in mechanisms), mechanisms


CHILD = textwrap.dedent(
    """
    import json, threading, time
    from memwarden.config import MemoryConfig
    from memwarden.pressure import Governor, PressureLevel

    # A huge RSS budget and a one-minute sampling interval: only the cgroup (its usage
    # against its limit, signalled by the kernel) can report pressure within the test.
    gov = Governor(MemoryConfig(max_memory_bytes=1 << 50), interval_s=60, auto_relieve=False)
    fired = threading.Event()
    gov.on_pressure(lambda old, new: new > old and fired.set())
    gov.start()
    blobs = []
    for i in range(40):
        blobs.append(i.to_bytes(8, "little") * (4 << 20 >> 3))
        if fired.wait(0.02):
            break
    print(json.dumps({"fired": fired.is_set(), "held_mib": 4 * len(blobs),
                      "mechanisms": gov.mechanisms(), "kernel_events": gov.stats().kernel_events,
                      "signals": gov.stats().as_dict()["signals"]}))
    gov.stop()
    """
)


@pytest.mark.cgroup
@pytest.mark.skipif(
    cgroup_unavailable_reason() is not None, reason=str(cgroup_unavailable_reason())
)
def test_cgroup_usage_notification_wakes_the_governor() -> None:
    """In a 120 MiB cgroup, the kernel's usage notification reports pressure without sampling."""
    with memory_cgroup(120 * MiB, name="memwarden-pressure") as cg:
        if cg.version != 1:
            pytest.skip("cgroup v2 has no usage-threshold notifications (PSI or sampling apply)")
        proc = cg.run([sys.executable, "-c", CHILD], timeout=60, cwd=str(Path.cwd()))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["fired"], result
    assert result["kernel_events"] >= 1
    assert result["signals"]["cgroup"] != "NONE"
    # Pressure came at 85% of the 120 MiB limit, well before the limit itself.
    assert result["held_mib"] < 120
    assert any(m.startswith("cgroup-v1-threshold") for m in result["mechanisms"])
