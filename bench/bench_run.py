"""``memwarden run`` sampling overhead on the profiled program, against bare, mprof and memray.

The same CPU- and allocation-heavy Python program runs bare, under
``memwarden run`` at 0.1 s and 0.01 s, under ``memwarden run --python-heap``,
under ``mprof run`` (memory_profiler, with children, at 0.1 s and 0.01 s) and
under ``memray run``. The program times its own work (``perf_counter`` around
the workload), so the figure is the slowdown the tool causes *in the child*, not
the tool's start-up; the whole command's wall time is reported beside it. The
variants are interleaved round by round and the median is kept. Peaks are
compared with ``/usr/bin/time -v`` where installed.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROUNDS = 15
HEAVY = {"memwarden run --python-heap", "memwarden run --python-heap --frames 1", "memray run"}
HEAVY_ROUNDS = 1
BIN = Path(sys.executable).parent

PROGRAM = textwrap.dedent(
    """
    import sys, time
    t0 = time.perf_counter()
    c0 = time.process_time()
    keep = []
    total = 0
    for round_ in range(5):
        rows = [{"id": i, "name": f"user{i}", "tags": [i % 7, i % 11]} for i in range(40_000)]
        rows.sort(key=lambda r: (r["tags"][1], -r["id"]))
        total += sum(r["tags"][0] for r in rows)
        keep.append(bytearray(8 * 2**20))
        if len(keep) > 6:
            keep.pop(0)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    with open(sys.argv[1], "w") as fh:
        fh.write(f"{elapsed!r} {cpu!r}")
    """
)


def _variants(work: Path) -> dict[str, list[str]]:
    py = sys.executable
    mw = [py, "-m", "memwarden", "run", "-q"]
    v = {
        "bare": [sys.executable],
        "memwarden run 0.1 s": [*mw, "--interval", "0.1", "-o", str(work / "a.trace"), "--", py],
        "memwarden run 0.01 s": [*mw, "--interval", "0.01", "-o", str(work / "b.trace"), "--", py],
        "memwarden run --python-heap": [
            *mw,
            "--python-heap",
            "-o",
            str(work / "c.trace"),
            "--",
            sys.executable,
        ],
    }
    v["memwarden run --python-heap --frames 1"] = [
        *mw,
        "--python-heap",
        "--frames",
        "1",
        "-o",
        str(work / "d.trace"),
        "--",
        py,
    ]
    mprof = shutil.which("mprof", path=str(BIN)) or shutil.which("mprof")
    if mprof:
        v["mprof run 0.1 s"] = [mprof, "run", "-C", "-T", "0.1", "-o", str(work / "m1.dat")]
        v["mprof run 0.01 s"] = [mprof, "run", "-C", "-T", "0.01", "-o", str(work / "m2.dat")]
    memray = shutil.which("memray", path=str(BIN)) or shutil.which("memray")
    if memray:
        v["memray run"] = [memray, "run", "-f", "-q", "-o", str(work / "r.bin")]
    return v


def _once(argv: list[str], prog: Path, out: Path) -> tuple[float, float, float]:
    """``(child wall s, child CPU s, command wall s)`` of one run."""
    cmd = [*argv, str(prog), str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    wall = time.perf_counter() - t0
    inner, cpu = (float(x) for x in out.read_text().split())
    return inner, cpu, wall


def _time_v(prog: Path, out: Path) -> int | None:
    if not Path("/usr/bin/time").exists():
        return None
    done = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, str(prog), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return int(m.group(1)) * 1024 if m else None


def _mprof_peak(path: Path) -> int | None:
    if not path.exists():
        return None
    peaks = [
        float(line.split()[1]) for line in path.read_text().splitlines() if line.startswith("MEM")
    ]
    return int(max(peaks) * 2**20) if peaks else None


def run() -> str:
    from memwarden.report.trace import read_trace

    with tempfile.TemporaryDirectory(prefix="bench-run-") as d:
        work = Path(d)
        prog = work / "workload.py"
        prog.write_text(PROGRAM)
        out = work / "elapsed.txt"
        variants = _variants(work)
        inner: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[float]] = {k: [] for k in variants}
        wall: dict[str, list[float]] = {k: [] for k in variants}
        _once(variants["bare"], prog, out)  # warm the page cache and .pyc files
        for round_ in range(ROUNDS):
            for name, argv in variants.items():  # interleaved: load drifts hit all alike
                if name in HEAVY and round_ >= HEAVY_ROUNDS:
                    continue  # tracing every allocation is slow; its overhead is not subtle
                i, c, w = _once(argv, prog, out)
                inner[name].append(i)
                cpu[name].append(c)
                wall[name].append(w)
        reference = _time_v(prog, out)
        peaks = {
            "memwarden run 0.1 s": read_trace(work / "a.trace").peak_rss_bytes,
            "memwarden run 0.01 s": read_trace(work / "b.trace").peak_rss_bytes,
            "mprof run 0.1 s": _mprof_peak(work / "m1.dat"),
            "mprof run 0.01 s": _mprof_peak(work / "m2.dat"),
        }

    # The figure is the child's CPU time, best of N: preemption by other jobs on this
    # shared machine inflates wall time but not CPU time, and noise only ever adds.
    base_cpu = min(cpu["bare"])
    base_median = statistics.median(inner["bare"])
    base_wall = min(wall["bare"])
    rows = []
    for name in variants:
        peak = peaks.get(name)
        agree = (
            f"{peak / reference:.3f}"
            if peak is not None and reference
            else ("—" if name != "bare" else "1 (reference)" if reference else "—")
        )
        rows.append(
            f"| {name} | {min(cpu[name]) / base_cpu:.3f}× | {min(cpu[name]):.2f} s "
            f"| {statistics.median(inner[name]) / base_median:.2f}× "
            f"| {min(wall[name]) / base_wall:.2f}× | {agree} |"
        )
    mw01 = min(cpu["memwarden run 0.1 s"]) / base_cpu
    mw001 = min(cpu["memwarden run 0.01 s"]) / base_cpu
    mprof01 = min(cpu["mprof run 0.1 s"]) / base_cpu if "mprof run 0.1 s" in cpu else None
    target_met = mw01 <= 1.02 and mw001 <= 1.05
    vs_mprof = (
        f" mprof at 0.1 s: {(mprof01 - 1) * 100:+.1f}%; both sample from outside the child."
        if mprof01 is not None
        else ""
    )
    return "\n".join(
        [
            "## memwarden run: sampling overhead",
            "",
            f"The same Python workload (dicts, sorting, 8 MiB buffers; {base_cpu:.2f} s of CPU "
            f"bare) measured by itself, {ROUNDS} interleaved rounds ({HEAVY_ROUNDS} for the "
            "allocation tracers). *child CPU* is the program's own CPU time against bare, best "
            "of the rounds: the overhead the tool causes inside the profiled process, which "
            "preemption by other jobs on this shared machine does not inflate. *child wall* is "
            "its own elapsed time (median), *command wall* the whole command's including the "
            "tool's start-up (best). *peak / time -v* compares the tool's peak with "
            "`/usr/bin/time -v`'s maximum resident set size.",
            "",
            "| variant | child CPU vs bare | child CPU | child wall vs bare (median) "
            "| command wall vs bare | peak / time -v |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Target: sampling costs the child at most 2% at 0.1 s and 5% at 0.01 s "
            f"(memwarden samples from another process and never stops the child). Measured "
            f"{(mw01 - 1) * 100:+.1f}% and {(mw001 - 1) * 100:+.1f}% of CPU: "
            f"{'met' if target_met else 'NOT met'}.{vs_mprof} The machine is shared with other "
            "builds (load average 4-9 on 2 cores), so wall-time medians swing by tens of "
            "percent between runs and a negative figure is noise. `--python-heap` "
            "(tracemalloc) and memray trace every allocation inside the child, so "
            "they cost far more — tracemalloc much more than memray on allocation-heavy code; "
            "use them for the where, and plain sampling for the how much.",
            "",
            "Reproduce: `python bench/run.py run`",
        ]
    )


if __name__ == "__main__":
    print(run())
