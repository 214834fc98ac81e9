"""Monitor overhead on a CPU- and allocation-heavy workload, and the cost of one track() call.

Overhead: the same workload runs unmonitored, with a MemoryMonitor sampling at
1 s, 100 ms and 10 ms, and beside a bare Python thread waking every 10 ms (the
floor cost of any sampler thread); the five variants are shuffled in each of
several rounds. The best (least disturbed) run of each variant is compared, in
process CPU time, which includes the sampler thread's work. The
per-sample CPU cost times the sampling rate is reported beside it.
Targets: <= 0.5% at 1 s, <= 2% at 10 ms.

track(): per-call cost of ``with track(...)`` (default and precise) against the
playbook's before/after pattern done with psutil (``memory_info()`` twice).
"""

from __future__ import annotations

import gc
import random
import statistics
import threading
import time
from collections.abc import Callable

from memwarden.config import MemoryConfig
from memwarden.monitoring import MemoryMonitor, track

INTERVALS_S = (1.0, 0.1, 0.01)
TARGETS = {1.0: 0.005, 0.01: 0.02}
ROUNDS = 40
RUN_S = 0.2  # target CPU time of one workload run


def workload(n: int) -> int:
    """CPU (dict building, sorting, string work) and allocation (64 KiB buffers) heavy."""
    total = 0
    for i in range(n):
        d = {j: str(j * i) * 3 for j in range(200)}
        values = sorted(d.values(), reverse=True)
        total += len(values[0])
        blob = bytearray(64 * 1024)
        blob[-1] = 1
        total += len(blob) + len([x for x in values if x.endswith("7")])
    return total


def _calibrate() -> int:
    n = 50
    while True:  # calibrated on CPU time: wall time on a shared machine says little
        t0 = time.process_time()
        workload(n)
        dt = time.process_time() - t0
        if dt > 0.1:
            return max(1, int(n * RUN_S / dt))
        n *= 2


BARE = "bare"  # a Python thread waking every 10 ms and doing nothing: the floor cost


def _bare_thread(interval: float) -> Callable[[], None]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def end() -> None:
        stop.set()
        t.join()

    return end


def _timed(n: int, interval: float | str | None) -> tuple[float, float, float | None]:
    """Run the workload once; return (wall_s, cpu_s, monitor self-measured overhead)."""
    mon = None
    end_bare = None
    if interval == BARE:
        end_bare = _bare_thread(0.01)
    elif isinstance(interval, float):
        cfg = MemoryConfig(max_memory_bytes=64 << 30, monitoring_interval_s=interval)
        mon = MemoryMonitor(cfg).start()
    gc.collect()
    c0, w0 = time.process_time(), time.perf_counter()
    workload(n)
    w1, c1 = time.perf_counter(), time.process_time()
    ratio = None
    if end_bare is not None:
        end_bare()
    if mon is not None:
        mon.stop()
        ratio = mon.stats().overhead_ratio
        mon.close()
    return w1 - w0, c1 - c0, ratio


def _sample_cost_s() -> float:
    """CPU cost of one sample (probe, ring, level logic), best of several tight loops."""
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=64 << 30, history_size=3600))
    best = float("inf")
    for _ in range(5):
        c0 = time.thread_time()
        for _ in range(5000):
            mon.sample_now()
        best = min(best, (time.thread_time() - c0) / 5000)
    mon.close()
    return best


def _label(iv: float) -> str:
    return f"{iv * 1000:g} ms" if iv < 1 else f"{iv:g} s"


def _overhead() -> tuple[list[str], dict[float, float]]:
    n = _calibrate()
    variants: list[float | str | None] = [None, *INTERVALS_S, BARE]
    runs: dict[float | str | None, list[tuple[float, float, float | None]]] = {
        v: [] for v in variants
    }
    rng = random.Random(7)
    _timed(n, None)  # warm-up
    for _ in range(ROUNDS):
        order = variants[:]
        rng.shuffle(order)
        for v in order:
            runs[v].append(_timed(n, v))
    per_sample = _sample_cost_s()
    base_wall = min(w for w, _, _ in runs[None])
    base_cpu = min(c for _, c, _ in runs[None])
    rows = [
        "| sampling interval | CPU time vs unmonitored (best of runs) "
        "| sampler thread CPU / wall (monitor's own figure) "
        "| per-sample cost x rate | target | met |",
        "|---|---|---|---|---|---|",
    ]
    ratios: dict[float, float] = {}
    walls: dict[float, float] = {}
    for iv in INTERVALS_S:
        cpu = min(c for _, c, _ in runs[iv]) / base_cpu
        walls[iv] = min(w for w, _, _ in runs[iv]) / base_wall
        own = statistics.median(s or 0.0 for _, _, s in runs[iv])
        ratios[iv] = cpu
        target = TARGETS.get(iv)
        tgt = f"<= {target:.1%}" if target is not None else "—"
        met = "—" if target is None else ("yes" if cpu - 1 <= target else "**no**")
        label = _label(iv)
        rows.append(
            f"| {label} | {cpu:.4f} ({cpu - 1:+.2%}) "
            f"| {own:.3%} | {per_sample / iv:.3%} | {tgt} | {met} |"
        )
    bare_cpu = min(c for _, c, _ in runs[BARE]) / base_cpu
    rows.append(
        f"| reference: a bare Python thread waking every 10 ms, doing nothing "
        f"| {bare_cpu:.4f} ({bare_cpu - 1:+.2%}) | — | — | — | — |"
    )
    rows.append("")
    rows.append(
        f"Workload: {n} iterations of dict building, sorting and 64 KiB buffers, "
        f"{base_wall:.2f} s unmonitored (best run); {ROUNDS} rounds with the five variants "
        "shuffled in each. The best run of each variant is the one least disturbed by the other "
        "builds sharing this 2-core machine; CPU time includes the sampler thread's own work. "
        f"One sample costs {per_sample * 1e6:.1f} µs of CPU (probe, ring, level logic), so the "
        "last column is the overhead the sampler adds by construction; differences in the first "
        "column smaller than about 1% are this machine's noise. Wall time is not a usable "
        "measure here (other builds take the CPU at random): best-of wall ratios this run were "
        + ", ".join(f"{_label(iv)} {walls[iv]:.3f}" for iv in INTERVALS_S)
        + "."
    )
    return rows, ratios


def _per_call(fn: Callable[[], None], calls: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def _track_cost() -> list[str]:
    import tracemalloc
    from contextlib import nullcontext

    import psutil

    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=64 << 30))
    proc = psutil.Process()

    def empty() -> None:
        with nullcontext():
            pass

    def psutil_pair() -> None:  # the playbook's beforeOperation / afterOperation
        before = proc.memory_info().rss
        after = proc.memory_info().rss
        _ = after - before

    def default() -> None:
        with track("bench", monitor=mon):
            pass

    def precise() -> None:
        with track("bench-precise", precise=True, monitor=mon):
            pass

    base = _per_call(empty, 20000)
    ref = _per_call(psutil_pair, 5000) - base
    t_default = _per_call(default, 20000) - base
    t_precise_off = _per_call(precise, 300) - base
    tracemalloc.start()
    try:
        t_precise_on = _per_call(precise, 5000) - base
    finally:
        tracemalloc.stop()
    mon.close()

    def row(label: str, t: float) -> str:
        return f"| {label} | {t * 1e6:.2f} µs | {t / ref:.2f}x |"

    return [
        "| per call | time | vs psutil before/after |",
        "|---|---|---|",
        row("psutil `memory_info()` before and after (reference)", ref),
        row("`track()` default", t_default),
        row("`track(precise=True)`, tracemalloc already on", t_precise_on),
        row("`track(precise=True)`, tracemalloc off (start + stop per call)", t_precise_off),
    ]


def run() -> str:
    rows, ratios = _overhead()
    cost = _track_cost()
    met = all(ratios[iv] - 1 <= t for iv, t in TARGETS.items())
    verdict = (
        "Both targets met."
        if met
        else "Not every target was met in this run (see the table); the machine is shared, "
        "so differences of about a percent are within its noise; compare the bare-thread "
        "reference row, the floor cost of any Python sampler thread at 10 ms."
    )
    return "\n".join(
        [
            "## Monitor overhead and track() cost",
            "",
            "MemoryMonitor sampling RSS on its daemon thread while a CPU- and allocation-heavy "
            "workload runs, against the same workload unmonitored. "
            "Targets: <= 0.5% at 1 s, <= 2% at 10 ms.",
            "",
            *rows,
            "",
            verdict,
            "",
            "### track() per call",
            "",
            *cost,
            "",
            "`track(precise=True)` with tracemalloc off starts and stops tracing on every call. "
            "With tracemalloc already on, the figure includes tracemalloc tracing every "
            "allocation of the loop itself (track's own objects), which is tracemalloc's cost, "
            "not track's.",
            "",
            "Reproduce: `python bench/run.py monitor`",
        ]
    )


if __name__ == "__main__":
    print(run())
