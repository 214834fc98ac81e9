"""rss() per-call cost against psutil and resource.getrusage, and agreement with psutil."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import psutil

from memwarden.probes import PAGE_SIZE, rss

CALLS = 200_000
ROUNDS = 7


def _per_call_ns(fn: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter_ns() - start) / CALLS


def run() -> str:
    proc = psutil.Process()  # cached, as a careful user would keep it
    candidates: dict[str, Callable[[], object]] = {
        "memwarden.rss()": rss,
        "psutil.Process().memory_info().rss (cached Process)": lambda: proc.memory_info().rss,
        "resource.getrusage(RUSAGE_SELF).ru_maxrss": lambda: (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(ROUNDS):  # interleave so machine noise hits every variant alike
        for name, fn in candidates.items():
            times[name].append(_per_call_ns(fn))
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    ours = best["memwarden.rss()"]
    diffs = [abs(rss() - proc.memory_info().rss) for _ in range(1000)]
    within_page = sum(d <= PAGE_SIZE for d in diffs) / len(diffs)
    psutil_ratio = best["psutil.Process().memory_info().rss (cached Process)"] / ours
    lines = [
        "## rss(): per-call cost",
        "",
        f"{CALLS:,} calls per round, {ROUNDS} interleaved rounds; best and median ns per call.",
        "",
        "| probe | best ns/call | median ns/call | x slower than rss() |",
        "|---|---:|---:|---:|",
    ]
    for name in candidates:
        lines.append(f"| {name} | {best[name]:.0f} | {med[name]:.0f} | {best[name] / ours:.1f} |")
    lines += [
        "",
        f"- **rss() is {psutil_ratio:.1f}x faster than a cached psutil Process** "
        f"(target >= 5x: {'met' if psutil_ratio >= 5 else 'NOT met'}).",
        f"- Agreement: {within_page:.1%} of 1,000 back-to-back pairs within one page "
        f"({PAGE_SIZE} B) of psutil's RSS"
        + ("." if within_page == 1 else "; the rest differ by an allocation between the reads."),
        "- `getrusage` gives only the *peak* (ru_maxrss), not the current RSS.",
        "",
        "Reproduce: `python bench/run.py rss`.",
    ]
    return "\n".join(lines)
