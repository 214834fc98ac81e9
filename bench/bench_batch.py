"""Adaptive batching under a real 300 MiB limit: survival, and throughput against fixed sizes.

The child workload (``tests/integration/_batch_workload.py``) holds ~1 MiB per item for
the length of a batch and pays a fixed 50 ms per batch, so bigger batches are faster
until they no longer fit. In a fresh 300 MiB memory cgroup (RLIMIT_DATA where cgroups
are not available): a fixed batch of 500, a sweep of fixed sizes to find the best one
that fits, and the adaptive processor with its defaults, interleaved and repeated.
Then the cut factor: under RLIMIT_DATA (where the limit raises MemoryError instead of
killing) the processor starts at 500 and must cut its way down; 0.5, 0.7 and 0.9
compared.

    python bench/run.py batch
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.cgroups import (  # noqa: E402
    cgroup_unavailable_reason,
    memory_cgroup,
    rlimit_preexec,
)

MiB = 1 << 20
LIMIT_BYTES = 300 * MiB
WORKLOAD = str(ROOT / "tests" / "integration" / "_batch_workload.py")
ITEMS = 1500
OVERHEAD_MS = 50
FIXED = [25, 50, 100, 150, 200, 250, 275]
REPS = int(os.environ.get("MEMWARDEN_BENCH_REPS", "3"))
CUTS = [0.5, 0.7, 0.9]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _argv(*args: str) -> list[str]:
    return [
        sys.executable,
        WORKLOAD,
        *args,
        "--items",
        str(ITEMS),
        "--overhead-ms",
        str(OVERHEAD_MS),
    ]


@contextlib.contextmanager
def _limited() -> Iterator[Any]:
    """A fresh cgroup per run where possible (its peak counter is per run), else None."""
    if cgroup_unavailable_reason() is None:
        with memory_cgroup(LIMIT_BYTES, name="memwarden-bench") as cg:
            yield cg
    else:
        yield None


def _run_limited(args: list[str]) -> dict[str, Any]:
    with _limited() as cg:
        if cg is not None:
            p = cg.run(_argv(*args), timeout=300, env=ENV)
            events = cg.events()
        else:
            p = subprocess.run(
                _argv(*args),
                preexec_fn=rlimit_preexec(LIMIT_BYTES),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                env=ENV,
            )
            events = {}
    out: dict[str, Any] = json.loads(p.stdout) if p.returncode == 0 and p.stdout else {}
    out["rc"] = p.returncode
    out["peak_usage"] = events.get("max_usage_in_bytes")
    out["oom_kill"] = events.get("oom_kill", 0)
    return out


def _run_rlimit(args: list[str]) -> dict[str, Any]:
    p = subprocess.run(
        _argv(*args),
        preexec_fn=rlimit_preexec(LIMIT_BYTES),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=ENV,
    )
    out: dict[str, Any] = json.loads(p.stdout) if p.returncode == 0 and p.stdout else {}
    out["rc"] = p.returncode
    return out


def run() -> str:
    reason = cgroup_unavailable_reason()
    where = (
        "a fresh cgroup v1/v2 memory cgroup per run (`memory.limit_in_bytes` = 300 MiB)"
        if reason is None
        else f"RLIMIT_DATA = 300 MiB (no cgroup here: {reason})"
    )
    dead = _run_limited(["fixed", "500"])

    runs: dict[str, list[dict[str, Any]]] = {}
    variants = [(f"fixed {n}", ["fixed", str(n)]) for n in FIXED] + [
        ("adaptive", ["adaptive"]),
        ("adaptive 0.85", ["adaptive", "--target", "0.85"]),
    ]
    for _ in range(REPS):
        for name, args in variants:  # interleaved: machine noise hits every variant alike
            runs.setdefault(name, []).append(_run_limited(args))

    def fits(name: str) -> bool:
        return all(r["rc"] == 0 for r in runs[name])

    def best(name: str, key: str = "items_per_cost_s") -> float:
        return max(r.get(key, 0.0) for r in runs[name])

    def med(name: str, key: str = "items_per_cost_s") -> float:
        return statistics.median(r.get(key, 0.0) for r in runs[name])

    fitting = [f"fixed {n}" for n in FIXED if fits(f"fixed {n}")]
    best_fixed = max(fitting, key=best) if fitting else None
    adaptive_ok = fits("adaptive") and fits("adaptive 0.85")
    a = runs["adaptive"]
    a_peak = max((r["peak_usage"] or 0) for r in a + runs["adaptive 0.85"])
    ratio85 = best("adaptive 0.85") / best(best_fixed) if best_fixed else 0.0
    ratio85_med = med("adaptive 0.85") / med(best_fixed) if best_fixed else 0.0
    ratio = best("adaptive") / best(best_fixed) if best_fixed else 0.0
    ratio_med = med("adaptive") / med(best_fixed) if best_fixed else 0.0
    best_fixed_wall = max(fitting, key=lambda n: best(n, "items_per_s")) if fitting else None
    ratio_wall = (
        best("adaptive", "items_per_s") / best(best_fixed_wall, "items_per_s")
        if best_fixed_wall
        else 0.0
    )

    cut_runs: dict[float, list[dict[str, Any]]] = {}
    for _ in range(max(1, REPS - 1)):
        for f in CUTS:
            args = ["adaptive", "--initial", "500", "--cut", str(f), "--no-governor"]
            cut_runs.setdefault(f, []).append(_run_rlimit(args))

    lines = [
        "## Adaptive batching under a real limit (`AdaptiveBatchProcessor`)",
        "",
        f"Workload: {ITEMS} items of ~1 MiB held for the length of their batch, plus"
        f" {OVERHEAD_MS} ms fixed cost per batch (a sleep: latency, not CPU); limit: {where}."
        " Throughput is items per second of cost, cost = the child's CPU time (user + system,"
        " which includes page faults and the cgroup's reclaim near the limit) + the batches'"
        " fixed latency: on this shared 2-core machine wall-clock time mostly measures the"
        " other engineers' load (the same run's wall clock varies 2x). Best of"
        f" {REPS} interleaved runs, median in brackets; the wall-clock best is in the last"
        " column. Peak is the cgroup's `max_usage_in_bytes`.",
        "",
        f"Fixed batch of 500: exit code {dead['rc']}"
        + (f", OOM kills {dead['oom_kill']}" if reason is None else "")
        + (" — killed, as expected." if dead["rc"] != 0 else " — SURVIVED (unexpected)."),
        "",
        "| batch size | fits | items/s of cost | peak | items/s wall (best) |",
        "|---|---|---|---|---|",
    ]
    for name, _ in variants:
        rs = runs[name]
        peak = max((r["peak_usage"] or 0) for r in rs)
        fit = "yes" if fits(name) else f"no ({sum(r['rc'] != 0 for r in rs)}/{len(rs)} killed)"
        ips = f"{best(name):.0f} ({med(name):.0f})" if fits(name) else "—"
        wall = f"{best(name, 'items_per_s'):.0f}" if fits(name) else "—"
        label = name
        if name.startswith("adaptive"):
            sizes = sorted({r.get("max_batch", 0) for r in rs})
            target = "0.85" if name.endswith("0.85") else "0.7, the default"
            largest = ", ".join(map(str, sizes))
            label = f"**adaptive** (`target_usage` {target}; largest batch {largest})"
        lines.append(f"| {label} | {fit} | {ips} | {peak / MiB:.0f} MiB | {wall} |")
    lines += [
        "",
        f"Adaptive estimate: {statistics.median(r.get('item_bytes') or 0 for r in a) / MiB:.2f}"
        f" MiB/item; batches {a[0].get('sizes', [])[:8]}…",
        "",
        "Cut factor (RLIMIT_DATA 300 MiB, MemoryError instead of a kill; starting at 500 so the"
        " processor must cut and retry; governor off):",
        "",
        "| cut factor | items/s of cost | MemoryError retries | first batch that fit |",
        "|---|---|---|---|",
    ]
    for f in CUTS:
        rs = cut_runs[f]
        ok = [r for r in rs if r["rc"] == 0]
        ips = max((r["items_per_cost_s"] for r in ok), default=0.0)
        ips_med = statistics.median([r["items_per_cost_s"] for r in ok]) if ok else 0.0
        retries = sorted({r.get("retries") for r in ok})
        first = sorted({(r.get("sizes") or [0])[0] for r in ok})
        lines.append(
            f"| {f} | {ips:.0f} ({ips_med:.0f}) | {', '.join(map(str, retries))} |"
            f" {', '.join(map(str, first))} |"
        )
    t1 = dead["rc"] != 0
    t2 = adaptive_ok and a_peak < LIMIT_BYTES if reason is None else adaptive_ok
    t3 = ratio >= 0.85
    t4 = ratio85 >= 0.85
    lines += [
        "",
        "Targets:",
        f"- a fixed batch of 500 dies: {'met' if t1 else 'MISSED'}",
        f"- the adaptive processor (both targets) completes with peak under the limit"
        f" ({a_peak / MiB:.0f} MiB"
        f" < 300 MiB): {'met' if t2 else 'MISSED'}",
        f"- adaptive >= 0.85x the best fixed size that fits ({best_fixed}):"
        f" {ratio:.2f}x best-of, {ratio_med:.2f}x median — {'met' if t3 else 'MISSED'}"
        f" (wall clock, against {best_fixed_wall}: {ratio_wall:.2f}x)",
        f"- the same with `target_usage=0.85`: {ratio85:.2f}x best-of, {ratio85_med:.2f}x median"
        f" — {'met' if t4 else 'MISSED'}",
        "",
        "Command: `python bench/run.py batch`",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
