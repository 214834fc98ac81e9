"""The governor: reaction time to memory pressure, flapping, and the cost of a level check.

Reaction time is measured from the moment usage crosses the pressure threshold to the
``on_pressure`` callback. Memory is allocated in 2 MiB steps; after each step the
usage is read (RSS, or the cgroup's ``memory.usage_in_bytes``) and the first step that
crosses the threshold is the crossing; its *start* is the crossing time, so figures
are upper bounds. Variants, interleaved in shuffled order each round:

* reference: the playbook's detector, a thread polling psutil RSS every 100 ms;
* the governor sampling every 100 ms and every 10 ms (kernel events off);
* the governor woken by the kernel: a cgroup v1 ``memory.usage_in_bytes`` threshold
  notification (eventfd) in a child process inside a real memory cgroup, with sampling
  set to 60 s so that only the kernel event can explain a fast reaction;
* a PSI trigger (``some`` stall per window on ``/proc/pressure/memory``): the time from
  the start of a page-cache-thrashing workload inside a small cgroup to the callback.

Flapping: a deterministic usage trace oscillating around the threshold, counted as
level transitions for the governor (85%/75% with hysteresis) and for a single
threshold with no gap (Dask's pause).

Targets: kernel-event reaction <= 10 ms median (>= 5x faster than 100 ms polling);
at most 2 transitions on the oscillating trace; ``level()`` cheaper than one psutil call.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memwarden.config import MemoryConfig
from memwarden.pressure import Governor, malloc_trim
from memwarden.probes import cgroup_info, rss
from memwarden.report.demo import hard_limit

MiB = 1 << 20
STEP = 2 * MiB
ROUNDS = 15
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# in-process reaction time


class PsutilPoller:
    """The playbook's MemoryPressureDetector: poll RSS with psutil, call back above 85%."""

    def __init__(self, threshold_bytes: int, interval_s: float, cb: Callable[[], None]) -> None:
        import psutil

        self._proc = psutil.Process()
        self._threshold = threshold_bytes
        self._interval_s = interval_s
        self._cb = cb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        fired = False
        while not self._stop.wait(self._interval_s):
            over = self._proc.memory_info().rss > self._threshold
            if over and not fired:
                self._cb()
            fired = over

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _cross_and_wait(threshold_bytes: int, fired: threading.Event, read: Callable[[], int]) -> float:
    """Allocate in steps until ``read()`` crosses; return seconds from that step's start."""
    held: list[bytes] = []
    t_cross = None
    try:
        for _ in range(2000):
            t0 = time.perf_counter()
            held.append(b"\x01" * STEP)
            if read() >= threshold_bytes:
                t_cross = t0
                break
        if t_cross is None:
            raise RuntimeError("never crossed the threshold")
        if not fired.wait(5.0):
            raise RuntimeError("no callback within 5 s")
        return FIRED_AT[0] - t_cross
    finally:
        held.clear()
        malloc_trim()


FIRED_AT = [0.0]


def _fire(ev: threading.Event) -> None:
    if not ev.is_set():
        FIRED_AT[0] = time.perf_counter()
        ev.set()


def _trial(variant: str) -> float:
    malloc_trim()
    base = rss()
    # The threshold (85% of the budget) sits 40 MiB above the starting RSS whatever the
    # process already holds: with `budget = base + 100 MiB` a large base (benches run in
    # one process) put the threshold below the start, so every path "reacted" at once.
    budget = int((base + 40 * MiB) / 0.85)
    threshold = int(budget * 0.85)
    fired = threading.Event()
    if variant == "psutil-poll-100ms":
        poller = PsutilPoller(threshold, 0.1, lambda: _fire(fired))
        poller.start()
        try:
            time.sleep(random.uniform(0, 0.1))  # a random phase, as for the governor
            return _cross_and_wait(threshold, fired, rss)
        finally:
            poller.stop()
    interval = 0.1 if variant == "governor-sampling-100ms" else 0.01
    gov = Governor(
        MemoryConfig(max_memory_bytes=budget),
        interval_s=interval,
        psi=False,
        cgroup=False,
        kernel_events=False,
        auto_relieve=False,
        builtin_relievers=False,
    )
    gov.on_pressure(lambda old, new: new > old and _fire(fired))
    gov.start()
    try:
        # Let the watcher's first sample land at a random phase, like a real crossing.
        time.sleep(random.uniform(0, interval))
        return _cross_and_wait(threshold, fired, rss)
    finally:
        gov.stop()


# ---------------------------------------------------------------------------
# kernel notifications, in a child inside a real memory cgroup

CGROUP_CHILD = textwrap.dedent(
    """
    import json, sys, threading, time
    from memwarden.config import MemoryConfig
    from memwarden.pressure import Governor, malloc_trim
    from memwarden.probes import cgroup_info

    MiB = 1 << 20
    rounds = int(sys.argv[1])
    usage_file = cgroup_info().directory / "memory.usage_in_bytes"
    limit = int((cgroup_info().directory / "memory.limit_in_bytes").read_text())
    threshold = int(limit * 0.85)

    def usage():
        return int(usage_file.read_text())

    fired = threading.Event()
    released = threading.Event()
    at = [0.0]

    def cb(old, new):
        if new > old and not fired.is_set():
            at[0] = time.perf_counter()
            fired.set()
        if new == PressureLevel.NONE:
            released.set()

    # A huge RSS budget and 60 s sampling: only the kernel's cgroup notification
    # (usage_in_bytes thresholds via cgroup.event_control) can report pressure quickly.
    gov = Governor(MemoryConfig(max_memory_bytes=1 << 50), interval_s=60, auto_relieve=False,
                   psi=False, builtin_relievers=False)
    gov.on_pressure(cb)
    gov.start()
    out = {"mechanisms": gov.mechanisms(), "reaction_s": []}
    for r in range(rounds):
        fired.clear(); released.clear()
        held = []
        t_cross = None
        for _ in range(2000):
            t0 = time.perf_counter()
            held.append(bytes([1]) * (2 * MiB))
            if fired.is_set() or usage() >= threshold:
                t_cross = t0
                break
        ok = fired.wait(5.0)
        out["reaction_s"].append(at[0] - t_cross if ok and t_cross is not None else None)
        held.clear(); malloc_trim()
        released.wait(5.0)
    gov.stop()
    print(json.dumps(out))
    """
)


def _example_module() -> Any:
    path = ROOT / "examples" / "survive_limit.py"
    spec = importlib.util.spec_from_file_location("survive_limit", path)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _in_cgroup(limit_bytes: int, argv: list[str], timeout: float) -> tuple[str | None, Any]:
    """Run ``argv`` in a fresh memory cgroup; (reason it could not, None) or (None, proc)."""
    mod = _example_module()
    with hard_limit(limit_bytes) as (cg, _how):
        if cg is None:
            return (
                "no writable memory cgroup (needs root and a cgroup v1/v2 memory controller)",
                None,
            )
        proc = subprocess.run(
            argv,
            preexec_fn=mod._preexec(cg, limit_bytes),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=str(ROOT),
        )
        # The kernel's own peak for the cgroup (v1 max_usage_in_bytes, v2 memory.peak).
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            with contextlib.suppress(OSError, ValueError):
                proc.cgroup_peak_bytes = int((cg / name).read_text())  # type: ignore[attr-defined]
                break
        return None, proc


def _survival() -> list[str]:
    """The survival demo under a 300 MiB cgroup: ungoverned vs governed, same workload."""
    limit = 300 * MiB
    example = str(ROOT / "examples" / "survive_limit.py")
    rows = []
    for mode in ("ungoverned", "governed"):
        t0 = time.perf_counter()
        reason, proc = _in_cgroup(limit, [sys.executable, example, "--child", mode], 300)
        wall = time.perf_counter() - t0
        if reason is not None:
            return [f"- Survival demo not run: {reason}."]
        peak = getattr(proc, "cgroup_peak_bytes", None)
        peak_s = "-" if peak is None else f"{peak / MiB:.0f} MiB"
        if proc.returncode == 0:
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(
                f"| {mode} | finished {out['requests_done']} requests | {peak_s} | "
                f"{out.get('relief_runs', '-')} | {wall:.1f} s |"
            )
        else:
            rows.append(
                f"| {mode} | killed (exit {proc.returncode}) | {peak_s} | - | {wall:.1f} s |"
            )
    return [
        "",
        "Survival demo (`examples/survive_limit.py`): 4,400 requests caching 128 KiB each "
        "(~550 MiB if never dropped) plus a 24 MiB batch every 200, in a 300 MiB cgroup.",
        "",
        "| run | outcome | cgroup peak (kernel) | relief runs | wall |",
        "|---|---|---:|---:|---:|",
        *rows,
    ]


def _cgroup_reaction(rounds: int) -> tuple[list[float] | None, str]:
    info = cgroup_info()
    if info is None or info.version != 1:
        return None, "cgroup v1 usage notifications need a cgroup v1 memory controller"
    reason, proc = _in_cgroup(256 * MiB, [sys.executable, "-c", CGROUP_CHILD, str(rounds)], 120)
    if reason is not None:
        return None, reason
    if proc.returncode != 0:
        return None, f"child failed: {proc.stderr.strip()[-300:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    vals = [v for v in out["reaction_s"] if v is not None]
    return vals, ", ".join(out["mechanisms"])


PSI_CHILD = textwrap.dedent(
    """
    import json, mmap, os, random, sys, threading, time
    from memwarden.config import MemoryConfig
    from memwarden.pressure import Governor

    path = sys.argv[1]
    fired = threading.Event()
    at = [0.0]
    def cb(old, new):
        if new > old and not fired.is_set():
            at[0] = time.perf_counter(); fired.set()
    # Only the PSI trigger can raise the level: no cgroup signal, a huge RSS budget, PSI
    # averages ignored (thresholds at 100%), sampling every 60 s.
    gov = Governor(MemoryConfig(max_memory_bytes=1 << 50), interval_s=60, auto_relieve=False,
                   cgroup=False, psi_thresholds=(100.0, 100.0, 100.0),
                   psi_trigger=(50_000, 1_000_000), builtin_relievers=False)
    gov.on_pressure(cb)
    gov.start()
    mech = gov.mechanisms()
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # faults now charge this cgroup
    m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    rng = random.Random(1)
    t0 = time.perf_counter()
    total = 0
    # Thrash: random page reads over a file larger than the cgroup's limit (refaults).
    while not fired.is_set() and time.perf_counter() - t0 < 15:
        for _ in range(1000):
            total += m[rng.randrange(0, size // 4096) * 4096]
    gov.stop()
    print(json.dumps({"fired": fired.is_set(), "after_s": at[0] - t0 if fired.is_set() else None,
                      "mechanisms": mech}))
    """
)


def _psi_reaction(rounds: int) -> tuple[list[float] | None, str]:
    if not Path("/proc/pressure/memory").exists():
        return None, "this kernel exposes no PSI"
    with tempfile.TemporaryDirectory(prefix="memwarden-psi-", dir=str(ROOT)) as d:
        big = Path(d) / "big.bin"
        with big.open("wb") as fh:
            block = os.urandom(MiB)
            for _ in range(96):
                fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())  # clean pages, so the child's fadvise can drop them
        vals: list[float] = []
        note = ""
        for _ in range(rounds):
            reason, proc = _in_cgroup(64 * MiB, [sys.executable, "-c", PSI_CHILD, str(big)], 60)
            if reason is not None:
                return None, reason
            if proc.returncode != 0:
                return None, f"child failed: {proc.stderr.strip()[-300:]}"
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            note = ", ".join(m for m in out["mechanisms"] if m.startswith("psi"))
            if out["fired"]:
                vals.append(out["after_s"])
        return vals, note


# ---------------------------------------------------------------------------
# flapping and the cost of a check


def _flapping() -> tuple[int, int]:
    rng = random.Random(7)
    budget = 1000
    trace = [int(850 + 60 * math.sin(i / 3) + rng.uniform(-20, 20)) for i in range(400)]
    usage = [0]
    gov = Governor(
        MemoryConfig(max_memory_bytes=budget), probe=lambda: usage[0], builtin_relievers=False
    )
    changes = [0]
    # Count entering and leaving pressure (moves between MODERATE and HIGH are finer grain).
    gov.on_pressure(lambda old, new: changes.__setitem__(0, changes[0] + (old == 0 or new == 0)))
    naive = 0
    paused = False
    for u in trace:
        usage[0] = u
        gov.level()
        now = u >= 850  # Dask's pause: one threshold, no gap
        naive += now != paused
        paused = now
    return changes[0], naive


def _ns_per_call(fn: Callable[[], object], n: int) -> float:
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def run() -> str:
    random.seed(1)
    variants = ["psutil-poll-100ms", "governor-sampling-100ms", "governor-sampling-10ms"]
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(ROUNDS):
        order = variants[:]
        random.shuffle(order)
        for v in order:
            with contextlib.suppress(RuntimeError):
                results[v].append(_trial(v))
    cg_vals, cg_note = _cgroup_reaction(ROUNDS)
    psi_vals, psi_note = _psi_reaction(3)

    def row(name: str, vals: list[float] | None, note: str, ref_median: float | None) -> str:
        if not vals:
            return f"| {name} | - | - | - | - | not measured: {note} |"
        med = statistics.median(vals)
        best = min(vals)
        p90 = sorted(vals)[max(0, math.ceil(0.9 * len(vals)) - 1)]
        ratio = "-" if ref_median is None else f"{ref_median / med:.1f}x"
        return (
            f"| {name} | {len(vals)} | {best * 1000:.2f} | {med * 1000:.2f} | {p90 * 1000:.2f} "
            f"| {ratio} | {note} |"
        )

    ref = statistics.median(results["psutil-poll-100ms"])
    lines = [
        "## Governor: reaction to memory pressure",
        "",
        "Time from crossing the pressure threshold (start of the 2 MiB allocation step that "
        f"crossed it) to the `on_pressure` callback; {ROUNDS} interleaved rounds; ms.",
        "",
        "| path | n | best ms | median ms | p90 ms | x faster than psutil poll (median) | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
        row(
            "reference: psutil RSS polled every 100 ms (playbook)",
            results["psutil-poll-100ms"],
            "",
            ref,
        ),
        row(
            "governor, sampling every 100 ms",
            results["governor-sampling-100ms"],
            "kernel events off",
            ref,
        ),
        row(
            "governor, sampling every 10 ms",
            results["governor-sampling-10ms"],
            "kernel events off",
            ref,
        ),
        row(
            "governor, cgroup v1 usage notification (eventfd)",
            cg_vals,
            f"child in a 256 MiB cgroup, sampling 60 s; {cg_note}" if cg_vals else cg_note,
            ref,
        ),
    ]
    if psi_vals:
        lines.append(
            row(
                "governor, PSI trigger (thrashing starts → callback)",
                psi_vals,
                "child faulting random pages of a 96 MiB file in a 64 MiB cgroup; measured "
                "from the start of the workload, so it includes the time the kernel takes "
                f"to accumulate the trigger's stall (some 100 ms per 2 s window); {psi_note}",
                None,
            )
        )
    else:
        lines.append(row("governor, PSI trigger", None, psi_note or "trigger never fired", None))
    ev_med = statistics.median(cg_vals) if cg_vals else None
    met = ev_med is not None and ev_med <= 0.010 and ref / ev_med >= 5
    gov_flaps, naive_flaps = _flapping()
    gov_for_cost = Governor(
        MemoryConfig(max_memory_bytes=1 << 50), psi=False, cgroup=False, builtin_relievers=False
    )
    import psutil

    proc = psutil.Process()
    level_ns = _ns_per_call(gov_for_cost.level, 20_000)
    psutil_ns = _ns_per_call(lambda: proc.memory_info().rss, 20_000)
    gov_full = Governor(MemoryConfig(max_memory_bytes=1 << 50), builtin_relievers=False)
    full_ns = _ns_per_call(gov_full.level, 20_000)
    lines += [
        "",
        (
            f"- **Kernel-event reaction: median {ev_med * 1000:.2f} ms, "
            f"{ref / ev_med:.0f}x faster than 100 ms psutil polling** "
            f"(target <= 10 ms and >= 5x: {'met' if met else 'missed'})."
            if ev_med is not None
            else "- Kernel-event reaction: not measured here (see the table's note)."
        ),
        "- The kernel-event path is bounded by the GIL: the notification wakes the watcher "
        "at once, but the allocating thread holds the GIL for up to the 5 ms switch interval.",
        "- Sampling reacts in about half its interval on average, as expected; the governor's "
        "RSS read costs ~2 µs, so 10 ms sampling is affordable where no kernel event exists "
        "(RLIMIT-only limits, macOS).",
        f"- Flapping on a trace oscillating ±60 around 85%: governor **{gov_flaps}** "
        f"entries/exits of pressure vs **{naive_flaps}** pause/resume flips for a single "
        "no-gap threshold "
        f"(target <= 2 entries/exits: {'met' if gov_flaps <= 2 else 'missed'}).",
        f"- `level()` costs {level_ns / 1000:.1f} µs (RSS only) and {full_ns / 1000:.1f} µs with "
        f"cgroup and PSI signals (re-read at most every 0.25 s), vs {psutil_ns / 1000:.1f} µs for "
        f"one psutil `memory_info()` ({psutil_ns / level_ns:.1f}x; target: cheaper: "
        f"{'met' if level_ns < psutil_ns else 'missed'}).",
        *_survival(),
        "",
        "Reproduce: `python bench/run.py pressure`.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
