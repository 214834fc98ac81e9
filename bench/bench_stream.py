"""Streaming throughput and memory: ``read_chunks`` against raw loops, ``cat`` and ``dd``.

A 1 GiB file is written to /tmp (deleted afterwards) and read while in the page
cache: ``read_chunks`` at each chunk size against a raw ``readinto`` loop into a plain
``bytearray`` and into a page-aligned ``mmap`` buffer, ``f.read(n)``, ``cat file >
/dev/null`` and ``dd bs=1M of=/dev/null``. The variants are interleaved and repeated;
the best of the repetitions is reported (the machine is shared, so the best is the
least disturbed run). Then a cold-cache sweep (the file's pages dropped with
``posix_fadvise(DONTNEED)`` before each read) and the peak RSS growth of
``read_chunks`` against a naive ``f.read()``, each in a fresh process.

    python bench/run.py stream
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from memwarden.stream import DEFAULT_CHUNK_BYTES  # noqa: E402

GiB = 1 << 30
MiB = 1 << 20
KiB = 1 << 10
SIZES = [16 * KiB, 64 * KiB, 256 * KiB, MiB, 2 * MiB, 4 * MiB]
REPS = int(os.environ.get("MEMWARDEN_BENCH_REPS", "5"))
COLD_REPS = 3


def _label(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"


def _make_file(path: Path) -> None:
    block = os.urandom(4 * MiB)
    with path.open("wb") as f:
        for _ in range(GiB // len(block)):
            f.write(block)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


_READ_CHILD = r"""
import ctypes, json, mmap, sys, time
from memwarden.stream import read_chunks
variant, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
offset = -1
c0 = time.thread_time()
t0 = time.perf_counter()
total = 0
if variant == "read_chunks":
    for chunk in read_chunks(path, n):
        total += len(chunk)
elif variant == "f.read":
    with open(path, "rb") as f:
        while True:
            data = f.read(n)
            if not data:
                break
            total += len(data)
else:
    buf = bytearray(n) if variant == "bytearray" else mmap.mmap(-1, n)
    offset = ctypes.addressof(ctypes.c_char.from_buffer(buf)) % 4096
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(view)
            if not k:
                break
            total += k
dt = time.perf_counter() - t0
dc = time.thread_time() - c0
print(json.dumps({"total": total, "wall": total / dt / 1e9, "cpu": total / dc / 1e9,
                  "offset": offset}))
"""

PY_VARIANTS = ("read_chunks", "bytearray", "mmap", "f.read")


def _child_read(variant: str, path: Path, n: int) -> tuple[float, float, int]:
    """(wall, CPU) GB/s and buffer offset mod 4096 of one read in a fresh process.

    A fresh process is what a user's script is: glibc serves a first large
    ``bytearray`` from a new mapping, 16 bytes into a page, whereas inside a
    long-running bench process the allocation history decides its alignment.
    """
    p = subprocess.run(
        [sys.executable, "-c", _READ_CHILD, variant, str(path), str(n)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    out = json.loads(p.stdout)
    assert out["total"] == GiB, out
    return out["wall"], out["cpu"], out["offset"]


def _spawn_s() -> tuple[float, float]:
    """(wall, CPU) seconds of starting a trivial process, subtracted from cat's times."""
    walls, cpus = [], []
    for _ in range(5):
        c0 = _children_cpu()
        t0 = time.perf_counter()
        subprocess.run(["true"], check=True)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - c0)
    return min(walls), min(cpus)


def _cat(path: Path, spawn: tuple[float, float]) -> tuple[float, float]:
    c0 = _children_cpu()
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as out:  # noqa: PTH123
        subprocess.run(["cat", str(path)], stdout=out, check=True)
    wall = max(1e-6, time.perf_counter() - t0 - spawn[0])
    cpu = max(1e-6, _children_cpu() - c0 - spawn[1])
    return GiB / wall / 1e9, GiB / cpu / 1e9


def _dd(path: Path, bs: str = "1M", spawn: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """dd's own reported rate (excludes process start) and its CPU-time rate."""
    c0 = _children_cpu()
    p = subprocess.run(
        ["dd", f"if={path}", "of=/dev/null", f"bs={bs}"],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = max(1e-6, _children_cpu() - c0 - spawn[1])
    m = re.search(r"copied, ([0-9.e-]+) s", p.stderr)
    assert m is not None, p.stderr
    return GiB / float(m.group(1)) / 1e9, GiB / cpu / 1e9


def _evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


_PEAK_CHILD = r"""
import json, sys
from memwarden.probes import peak_rss, rss
from memwarden.stream import read_chunks
mode, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = rss()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
total = 0
if mode == "chunks":
    for view in read_chunks(path, chunk):
        total += len(view)
else:
    with open(path, "rb") as f:
        total = len(f.read())
print(json.dumps({"total": total, "growth": peak_rss() - start}))
"""


def _peak(mode: str, path: Path, chunk: int) -> int:
    p = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, mode, str(path), str(chunk)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    out = json.loads(p.stdout)
    assert out["total"] == GiB
    return int(out["growth"])


LINES_MB = 128


def _lines_bench(tmpdir: Path) -> tuple[float, float, int]:
    """(iter_lines, open() iteration) MB per CPU-second over a file of log lines."""
    from memwarden.stream import iter_lines

    path = tmpdir / "lines.log"
    line = b"2026-11-23T23:59:59 INFO request handled path=/api/v1/items status=200 ms=12\n"
    count = LINES_MB * 10**6 // len(line)
    try:
        with path.open("wb") as f:
            f.write(line * count)
        size = path.stat().st_size

        def ours() -> int:
            return sum(1 for _ in iter_lines(path))

        def ref() -> int:
            with path.open(encoding="utf-8") as f:
                return sum(1 for _ in f)

        best = {"ours": 0.0, "ref": 0.0}
        for _ in range(REPS):
            for name, fn in (("ours", ours), ("ref", ref)):
                c0 = time.thread_time()
                assert fn() == count
                best[name] = max(best[name], size / (time.thread_time() - c0) / 1e6)
        return best["ours"], best["ref"], count
    finally:
        path.unlink(missing_ok=True)


def run() -> str:
    tmpdir = Path(tempfile.mkdtemp(prefix="memwarden-bench-stream-", dir="/tmp"))
    path = tmpdir / "1gib.bin"
    try:
        _make_file(path)
        return _measure(path)
    finally:
        path.unlink(missing_ok=True)
        tmpdir.rmdir()


def _measure(path: Path) -> str:
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    offsets: dict[str, int] = {}
    variants: list[tuple[str, Callable[[], tuple[float, float]]]] = []
    for n in SIZES:
        for v in PY_VARIANTS:

            def call(v: str = v, n: int = n) -> tuple[float, float]:
                wall, cpu, off = _child_read(v, path, n)
                offsets[f"{v} {_label(n)}"] = off
                return wall, cpu

            variants.append((f"{v} {_label(n)}", call))
    spawn = _spawn_s()
    variants += [("cat", lambda: _cat(path, spawn)), ("dd bs=1M", lambda: _dd(path, spawn=spawn))]
    _dd(path)  # warm the page cache
    for _ in range(REPS):
        for name, fn in variants:  # interleaved: noise hits every variant alike
            wall, cpu = fn()
            walls.setdefault(name, []).append(wall)
            cpus.setdefault(name, []).append(cpu)
    best = {k: max(v) for k, v in walls.items()}
    cbest = {k: max(v) for k, v in cpus.items()}
    cmed = {k: statistics.median(v) for k, v in cpus.items()}

    cold: dict[int, list[float]] = {}
    cold_dd: list[float] = []
    for _ in range(COLD_REPS):
        for n in SIZES:
            _evict(path)
            cold.setdefault(n, []).append(_child_read("read_chunks", path, n)[0])
        _evict(path)
        cold_dd.append(_dd(path)[0])

    lines_ours, lines_ref, n_lines = _lines_bench(path.parent)

    _dd(path)
    default = DEFAULT_CHUNK_BYTES
    growth_chunks = _peak("chunks", path, default)
    growth_naive = _peak("naive", path, 0)

    d_name = f"read_chunks {_label(default)}"
    ba_names = [k for k in cbest if k.startswith("bytearray")]
    best_ba = max(ba_names, key=lambda k: cbest[k])
    best_ba_wall = max(ba_names, key=lambda k: best[k])
    rss_bound = 2 * default + 4 * MiB
    r_dd = cbest[d_name] / cbest["dd bs=1M"]
    r_dd_wall = best[d_name] / best["dd bs=1M"]
    t_dd = r_dd >= 0.9
    t_ba = cbest[d_name] > cbest[best_ba]
    t_rss = growth_chunks <= rss_bound

    lines = [
        "## Streaming (`read_chunks`)",
        "",
        f"A 1 GiB file in the page cache, read {REPS} times per variant, interleaved, each"
        " Python variant in a fresh process (as a user's script would run it). Figures"
        " are GB/s per CPU-second of the reading thread or process (user + system time: the"
        " cost of the copy itself, which other engineers' builds on this shared 2-core machine"
        " disturb far less than wall time), best run with the median in brackets; the last"
        " column is the best wall-clock GB/s. Ratios are against `dd bs=1M of=/dev/null`"
        " measured in the same run (process start subtracted for `dd` and `cat`).",
        "",
        "| chunk | `read_chunks` | raw `readinto` `bytearray` (offset in page)"
        " | raw `readinto` `mmap` | `f.read(n)` | `read_chunks` / dd | `read_chunks` wall |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in SIZES:
        lab = _label(n)
        keys = tuple(f"{v} {lab}" for v in PY_VARIANTS)
        cells = [f"{cbest[k]:.1f} ({cmed[k]:.1f})" for k in keys]
        cells[1] += f" [+{offsets[keys[1]]}]"
        mark = " **(default)**" if n == default else ""
        ratio = cbest[keys[0]] / cbest["dd bs=1M"]
        lines.append(
            f"| {lab}{mark} | " + " | ".join(cells) + f" | {ratio:.2f} | {best[keys[0]]:.1f} |"
        )
    lines += [
        "",
        f"Tools (CPU-time GB/s, median in brackets; wall-clock best after the slash):"
        f" `dd bs=1M` {cbest['dd bs=1M']:.1f} ({cmed['dd bs=1M']:.1f}) / {best['dd bs=1M']:.1f},"
        f" `cat` {cbest['cat']:.1f} ({cmed['cat']:.1f}) / {best['cat']:.1f}.",
        "",
        "Cold cache (the file's pages dropped with `posix_fadvise(POSIX_FADV_DONTNEED)` before"
        f" each read — the per-file form of `echo 1 > /proc/sys/vm/drop_caches`, which would"
        f" also drop the other engineers' caches — wall-clock best of {COLD_REPS}), GB/s: "
        + ", ".join(f"{_label(n)} {max(v):.2f}" for n, v in cold.items())
        + f"; `dd bs=1M` cold {max(cold_dd):.2f}.",
        "",
        f"Lines: `iter_lines` over {LINES_MB} MB of {n_lines:,} log lines (UTF-8, bounded line"
        f" length) {lines_ours:.0f} MB/s against `for line in open(path, encoding='utf-8')`"
        f" {lines_ref:.0f} MB/s ({lines_ours / lines_ref:.2f}x; CPU time, best of {REPS},"
        " interleaved); the built-in iteration has no bound on line length.",
        "",
        f"Peak RSS growth reading the 1 GiB file (fresh process, VmHWM reset): `read_chunks`"
        f" {growth_chunks / MiB:.1f} MiB against naive `f.read()` {growth_naive / MiB:.0f} MiB.",
        "",
        "Targets:",
        f"- default `read_chunks` ({_label(default)}) >= 0.9x `dd bs=1M`: {r_dd:.2f}x CPU-time"
        f" ({r_dd_wall:.2f}x wall) — {'met' if t_dd else 'MISSED'}",
        f"- faster than every plain-`bytearray` `readinto` loop (best: {best_ba},"
        f" {cbest[best_ba]:.1f} GB/s CPU-time; by wall clock {best_ba_wall},"
        f" {best[best_ba_wall]:.1f}): {cbest[d_name]:.1f} GB/s CPU-time, {best[d_name]:.1f} wall"
        f" — {'met' if t_ba else 'MISSED'}",
        f"- peak RSS growth <= 2 x chunk + 4 MiB ({rss_bound / MiB:.0f} MiB):"
        f" {growth_chunks / MiB:.1f} MiB — {'met' if t_rss else 'MISSED'}",
        "",
        "Command: `python bench/run.py stream`",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
