"""adaptive_map against client.map with fixed chunking on a real LocalCluster.

Two worker processes with 400 MiB each; every item costs 8 MiB while its batch
runs (the batch is processed as one block, as a frame or array would be). Fixed
chunk sizes are swept; the best size that causes no worker restart is the
oracle adaptive_map is compared against (it has to find its size by itself).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ITEMS = 960
SIZES = (8, 16, 24, 32, 48)
LIMIT = "400MiB"
REPEATS = 3
TIMEOUT_S = 120


def _cluster():  # type: ignore[no-untyped-def]
    """A fresh cluster per run: a run whose workers were killed cannot slow the next one."""
    from distributed import Client, LocalCluster

    from memwarden.integrations.dask import MemwardenWorkerPlugin

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit=LIMIT,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=50,
    )
    client = Client(cluster)
    client.register_plugin(MemwardenWorkerPlugin())
    return cluster, client


def _restarts(client, before: set[int]) -> int:  # type: ignore[no-untyped-def]
    try:
        after = set(client.run(os.getpid).values())
    except Exception:  # the workers are gone or restarting: count them all as lost
        return len(before)
    return len(before - after)


def _fixed(size: int) -> tuple[float, int, bool]:
    from distributed import wait
    from tests.support.dask_workload import heavy_batch

    cluster, client = _cluster()
    try:
        before = set(client.run(os.getpid).values())
        chunks = [list(range(i, min(i + size, ITEMS))) for i in range(0, ITEMS, size)]
        t0 = time.perf_counter()
        futures = client.map(heavy_batch, chunks, pure=False)
        try:
            wait(futures, timeout=TIMEOUT_S)
            results = [x for chunk in client.gather(futures) for x in chunk]
            ok = results == [i * 3 for i in range(ITEMS)]
        except Exception:  # KilledWorker, or the cluster lost its workers
            ok = False
        elapsed = time.perf_counter() - t0
        return elapsed, _restarts(client, before), ok
    finally:
        client.close()
        cluster.close()


def _adaptive() -> tuple[float, int, bool, object]:
    from tests.support.dask_workload import heavy_batch

    from memwarden.integrations.dask import AdaptiveMapStats, adaptive_map

    cluster, client = _cluster()
    try:
        before = set(client.run(os.getpid).values())
        stats = AdaptiveMapStats()
        t0 = time.perf_counter()
        results = list(adaptive_map(client, heavy_batch, range(ITEMS), batched=True, stats=stats))
        elapsed = time.perf_counter() - t0
        ok = results == [i * 3 for i in range(ITEMS)]
        return elapsed, _restarts(client, before), ok, stats
    finally:
        client.close()
        cluster.close()


def run() -> str:
    import dask

    settings = {
        "distributed.scheduler.allowed-failures": 1,
        "distributed.worker.memory.spill": False,
        "distributed.worker.memory.target": False,
    }
    with dask.config.set(settings):
        fixed: dict[int, list[tuple[float, int, bool]]] = {s: [] for s in SIZES}
        adaptive: list[tuple[float, int, bool, object]] = []
        for _ in range(REPEATS):  # interleaved
            for size in SIZES:
                fixed[size].append(_fixed(size))
            adaptive.append(_adaptive())
    fits = {
        s: min(r[0] for r in runs)
        for s, runs in fixed.items()
        if all(r[1] == 0 and r[2] for r in runs)
    }
    best_size = min(fits, key=lambda s: fits[s]) if fits else None
    a_time = min(r[0] for r in adaptive)
    a_restarts = sum(r[1] for r in adaptive)
    a_ok = all(r[2] for r in adaptive)
    stats = adaptive[-1][3]
    lines = [
        "## Dask: adaptive_map vs client.map with fixed chunks",
        "",
        f"LocalCluster, 2 worker processes x 1 thread, memory_limit {LIMIT}; {ITEMS} items of "
        f"8 MiB each while their batch runs; best of {REPEATS} interleaved runs.",
        "",
        "| strategy | time (s) | items/s | worker restarts | results correct |",
        "|---|---:|---:|---:|---|",
    ]
    for size in SIZES:
        runs = fixed[size]
        t = min(r[0] for r in runs)
        restarts = sum(r[1] for r in runs)
        ok = all(r[2] for r in runs)
        lines.append(
            f"| client.map, chunks of {size} | {t:.2f} | {ITEMS / t:.0f} | {restarts} | "
            f"{'yes' if ok else 'NO (failed)'} |"
        )
    lines.append(
        f"| **adaptive_map** | {a_time:.2f} | {ITEMS / a_time:.0f} | {a_restarts} | "
        f"{'yes' if a_ok else 'NO'} |"
    )
    lines.append("")
    if best_size is not None:
        ratio = fits[best_size] / a_time
        lines.append(
            f"- Best fixed chunk size that fits (an oracle): {best_size}; adaptive_map reaches "
            f"**{ratio:.2f}x** its throughput with {a_restarts} worker restarts, finding its size "
            f"by itself."
        )
    lines.append(f"- adaptive_map's run: {stats.summary()}.")  # type: ignore[attr-defined]
    lines += ["", "Reproduce: `python bench/run.py dask`."]
    return "\n".join(lines)
