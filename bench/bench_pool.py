"""BufferPool vs plain allocation: acquire+write+release against bytearray(n)+write+drop.

Each size runs in a fresh interpreter (so glibc's malloc starts from its defaults), with the
two variants interleaved round by round; times are the thread's CPU time (page faults
included, other engineers' processes excluded), best of the rounds and median. A second
pass at 1 MiB and 16 MiB runs after the process has freed a 30 MiB block, which makes glibc
raise its mmap threshold and serve later large allocations from the heap without page
faults: the honest worst case for the pool.

    python bench/run.py pool
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB
SIZES = [4 * KIB, 64 * KIB, 1 * MIB, 16 * MIB]
ITERATIONS = {4 * KIB: 20_000, 64 * KIB: 4_000, 1 * MIB: 150, 16 * MIB: 8}
ROUNDS = 7
SRC = Path(__file__).resolve().parent.parent / "src"


def _worker(size: int, warm: bool) -> dict[str, object]:
    """Measure one size in this (fresh) process; returns the per-round times in seconds."""
    sys.path.insert(0, str(SRC))
    from memwarden.pool import BufferPool
    from memwarden.probes import rss

    if warm:
        block = bytearray(30 * MIB)  # freeing it raises glibc's dynamic mmap threshold
        del block
    n = ITERATIONS[size]
    payload = bytes(range(256)) * (size // 256)
    clock = time.thread_time
    pools = {
        True: BufferPool(max_bytes=64 * MIB, zero_on_release=True, register=False),
        False: BufferPool(max_bytes=64 * MIB, zero_on_release=False, register=False),
    }

    def alloc() -> float:
        t0 = clock()
        for _ in range(n):
            b = bytearray(size)
            b[:] = payload
            del b
        return clock() - t0

    def pooled(pool: BufferPool) -> float:
        acquire = pool.acquire
        t0 = clock()
        for _ in range(n):
            h = acquire(size)
            h.view[:] = payload
            h.release()
        return clock() - t0

    def pooled_with(pool: BufferPool) -> float:
        acquire = pool.acquire
        t0 = clock()
        for _ in range(n):
            with acquire(size) as view:
                view[:] = payload
        return clock() - t0

    for pool in pools.values():  # warm up: one buffer per pool exists before timing
        pooled(pool)
    times: dict[str, list[float]] = {"alloc": [], "pool_zero": [], "pool_nozero": [], "with": []}
    rss_samples: list[int] = []
    for _ in range(ROUNDS):
        times["alloc"].append(alloc() / n)
        times["pool_zero"].append(pooled(pools[True]) / n)
        rss_samples.append(rss())
        times["pool_nozero"].append(pooled(pools[False]) / n)
        times["with"].append(pooled_with(pools[True]) / n)
    return {
        "size": size,
        "warm": warm,
        "times": times,
        "rss_growth_bytes": max(rss_samples) - min(rss_samples),
        "cycles": n * ROUNDS,
        "pool_misses": pools[True].stats().misses,
    }


def _measure(size: int, warm: bool) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", str(size), "warm" if warm else "cold"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.0f}" if us >= 100 else f"{us:.2f}"


def _fmt_size(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def run() -> str:
    results = [_measure(size, warm=False) for size in SIZES]
    warm_results = [_measure(size, warm=True) for size in (1 * MIB, 16 * MIB)]

    lines = [
        "## Buffer pool",
        "",
        "`BufferPool.acquire(n)` + write n bytes + `release()` against `bytearray(n)` + write +"
        " drop, per operation (thread CPU time, page faults included; best of"
        f" {ROUNDS} interleaved rounds, median in brackets). Speedup = allocation time /"
        " pool time; above 1 the pool is faster.",
        "",
        "| size | zeroing | bytearray (µs) | pool (µs) | speedup best | speedup median"
        " | target | met |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    verdicts: list[bool] = []
    for res in results:
        size = int(res["size"])  # type: ignore[call-overload]
        times: dict[str, list[float]] = res["times"]  # type: ignore[assignment]
        alloc_best, alloc_med = min(times["alloc"]), statistics.median(times["alloc"])
        for key, label in (("pool_zero", "on"), ("pool_nozero", "off")):
            best, med = min(times[key]), statistics.median(times[key])
            speed_best, speed_med = alloc_best / best, alloc_med / med
            if size >= MIB and label == "on":
                target, bar = ">= 10x", 10.0
            elif size == 64 * KIB:
                target, bar = "within 1.2x (>= 0.83x)", 1 / 1.2
            else:
                target, bar = "—", None
            if bar is None:
                met = "—"
            else:
                # The verdict is on best-of (noise only adds time); say so when the median
                # of the same rounds falls short.
                verdicts.append(speed_best >= bar)
                met = "yes" if speed_best >= bar else "**no**"
                if speed_best >= bar > speed_med:
                    met += " (median: no)"
            lines.append(
                f"| {_fmt_size(size)} | {label} | {_us(alloc_best)} ({_us(alloc_med)}) |"
                f" {_us(best)} ({_us(med)}) | {speed_best:.2f}x | {speed_med:.2f}x | {target} |"
                f" {met} |"
            )
    lines += [
        "",
        "The `with pool.acquire(n) as view:` form (zeroing on), per operation, best of rounds:"
        + "; ".join(
            f" {_fmt_size(int(r['size']))}: {_us(min(r['times']['with']))} µs"  # type: ignore[call-overload,index]
            for r in results
        )
        + ".",
        "",
        "**RSS under churn** (pool with zeroing, RSS sampled after each round, growth = max - min"
        " over the timed rounds): "
        + "; ".join(
            f"{_fmt_size(int(r['size']))}: {int(r['rss_growth_bytes']) / MIB:.1f} MiB over"  # type: ignore[call-overload]
            f" {r['cycles']} cycles ({r['pool_misses']} buffer mapped)"
            for r in results
        )
        + ".",
        "",
        "**After glibc raised its mmap threshold** (the process freed a 30 MiB block first, so"
        " large `bytearray`s come from the heap with no page faults — what a long-running"
        " process that once freed a big block sees):",
        "",
        "| size | bytearray (µs) | pool, zeroing on (µs) | speedup best | speedup median |",
        "|---|---:|---:|---:|---:|",
    ]
    for res in warm_results:
        times = res["times"]  # type: ignore[assignment]
        a_best, a_med = min(times["alloc"]), statistics.median(times["alloc"])
        p_best, p_med = min(times["pool_zero"]), statistics.median(times["pool_zero"])
        lines.append(
            f"| {_fmt_size(int(res['size']))} | {_us(a_best)} | {_us(p_best)} |"  # type: ignore[call-overload]
            f" {a_best / p_best:.2f}x | {a_med / p_med:.2f}x |"
        )
    met_all = all(verdicts)
    lines += [
        "",
        f"**Targets** (>= 10x for n >= 1 MiB with zeroing, within 1.2x at 64 KiB, RSS flat):"
        f" {'all met on best-of' if met_all else 'NOT all met — see the rows marked no'} in this"
        " run."
        " Timings are noisy on this shared 2-core machine; ratios are measured in the same"
        " process, interleaved.",
        "",
        "Reproduce: `python bench/run.py pool`",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(int(sys.argv[2]), warm=sys.argv[3] == "warm")))
    else:
        print(run())
