"""Lint this interpreter's own standard library: cold, warm, touch-one; against ruff and pylint.

The tree is a copy of ``sysconfig.get_paths()["stdlib"]`` (``.py`` files, without
``site-packages``) in a temporary directory, so one file can be touched; it is
deleted afterwards. Every figure is the wall time of a whole CLI process
(``python -m memwarden lint``), as a user would see it; CPU time (user+sys of the
process tree) is given too because the machine is shared. Variants are interleaved
and repeated; best-of and median are reported.

    python bench/run.py lint
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PYLINT_SUBSET = 100  # pylint is ~30x slower: it runs on the first N top-level modules only
PYLINT_TIMEOUT_S = 150


def _ignore(directory: str, names: list[str]) -> set[str]:
    skipped = set()
    for name in names:
        path = Path(directory) / name
        not_source = path.is_file() and not name.endswith((".py", ".pyi"))
        if name in ("site-packages", "__pycache__") or not_source:
            skipped.add(name)
    return skipped


def _timed(
    cmd: list[str], timeout_s: float = 300
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run ``cmd``; return (wall s, CPU s of the process tree, completed process)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def _memwarden(paths: list[str], cache: Path | None, out: Path) -> tuple[float, float, dict]:
    cmd = [
        sys.executable,
        "-m",
        "memwarden",
        "lint",
        *paths,
        "--format",
        "json",
        "-o",
        str(out),
        "-q",
    ]
    cmd += ["--no-cache"] if cache is None else ["--cache-dir", str(cache)]
    wall, cpu, proc = _timed(cmd)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"memwarden lint exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall, cpu, json.loads(out.read_text())


def _fmt(values: list[float]) -> str:
    return f"{min(values):.2f} s (median {statistics.median(values):.2f})"


def run() -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    work = Path(tempfile.mkdtemp(prefix="mw-bench-lint-"))
    load_before = os.getloadavg()[0]
    try:
        tree = work / "Lib"
        shutil.copytree(stdlib, tree, ignore=_ignore, symlinks=True)
        n_files = sum(1 for _ in tree.rglob("*.py"))
        cache = work / "cache"
        out = work / "out.json"

        cold, cold_cpu, ruff, ruff_cpu = [], [], [], []
        cold_doc: dict = {}
        for _ in range(2):  # interleaved: memwarden cold, then ruff, twice
            shutil.rmtree(cache, ignore_errors=True)
            wall, cpu, cold_doc = _memwarden([str(tree)], cache, out)
            cold.append(wall)
            cold_cpu.append(cpu)
            wall, cpu, proc = _timed(
                [
                    str(VENV_BIN / "ruff"),
                    "check",
                    "--select",
                    "B019",
                    "--no-cache",
                    "--isolated",
                    "--exit-zero",
                    "-q",
                    str(tree),
                ]
            )
            ruff.append(wall)
            ruff_cpu.append(cpu)
        ruff_b019 = sum(1 for line in proc.stdout.splitlines() if "B019" in line)

        warm, warm_cpu = [], []
        warm_doc: dict = {}
        for _ in range(5):
            wall, cpu, warm_doc = _memwarden([str(tree)], cache, out)
            warm.append(wall)
            warm_cpu.append(cpu)
        assert warm_doc["summary"]["checked"] == 0, warm_doc["summary"]
        assert warm_doc["findings"] == cold_doc["findings"]

        touched, touched_checked = [], []
        victims = [
            tree / "json" / "decoder.py",
            tree / "argparse.py",
            tree / "email" / "message.py",
        ]
        for i, victim in enumerate(victims):
            with victim.open("a", encoding="utf-8") as fh:
                fh.write(f"\n# touched by bench_lint {i}\n")
            wall, _, doc = _memwarden([str(tree)], cache, out)
            touched.append(wall)
            touched_checked.append(doc["summary"]["checked"])

        subset = [str(p) for p in sorted(tree.glob("*.py"))[:PYLINT_SUBSET]]
        mw_subset = [_memwarden(subset, None, out)[0] for _ in range(2)]
        try:
            pylint_wall, _, pyl = _timed(
                [
                    str(VENV_BIN / "pylint"),
                    "--disable=all",
                    "--enable=method-cache-max-size-none",
                    "-j",
                    "2",
                    "--persistent=n",
                    "-sn",
                    *subset,
                ],
                timeout_s=PYLINT_TIMEOUT_S,
            )
            pylint_hits = sum(1 for line in pyl.stdout.splitlines() if "W1518" in line)
            pylint_note = f"{pylint_wall:.2f} s"
        except subprocess.TimeoutExpired:
            pylint_wall, pylint_hits, pylint_note = (
                float("nan"),
                -1,
                f"> {PYLINT_TIMEOUT_S} s (timed out)",
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    findings = cold_doc["findings"]
    internal = [f for f in findings if f["code"] == "MW000" and "internal error" in f["message"]]
    unparsable = [
        f for f in findings if f["code"] == "MW000" and "internal error" not in f["message"]
    ]
    by_code: dict[str, int] = {}
    for f in findings:
        by_code[f["code"]] = by_code.get(f["code"], 0) + 1
    mw101 = by_code.get("MW101", 0)

    best_cold = min(cold)
    warm_ratio = min(warm) / best_cold
    touch_ratio = min(touched) / best_cold
    cold_ok = best_cold < 30
    yes = lambda ok: "**met**" if ok else "**missed**"  # noqa: E731
    lines = [
        "## lint: the standard library, cold / warm / touch-one",
        "",
        f"`memwarden lint` over a copy of this interpreter's `Lib/` ({n_files} `.py` files, "
        f"Python {sys.version.split()[0]}), whole CLI processes, all cores (`os.cpu_count()` = "
        f"{os.cpu_count()}). Load average {load_before:.1f} before, {load_after:.1f} after: the "
        "machine is shared with other builds, so CPU seconds (user+sys of the process tree) are "
        "shown beside wall time.",
        "",
        "| run | wall, best (median) | CPU s (best) | vs cold | target |",
        "|---|---|---|---|---|",
        f"| cold (empty cache) | {_fmt(cold)} | {min(cold_cpu):.1f} | 1 | < 30 s: {yes(cold_ok)} |",
        f"| cold, CPU s / cores (an estimate for an idle machine, not a measurement) | "
        f"{min(cold_cpu) / (os.cpu_count() or 1):.1f} s | – | – | – |",
        f"| warm, nothing changed | {_fmt(warm)} | {min(warm_cpu):.2f} | {warm_ratio:.1%} | "
        f"<= 5%: {yes(warm_ratio <= 0.05)} |",
        f"| one file touched | {_fmt(touched)} | – | {touch_ratio:.1%} | <= 10%: "
        f"{yes(touch_ratio <= 0.10)} |",
        f"| `ruff check --select B019` (same tree) | {_fmt(ruff)} | {min(ruff_cpu):.1f} | "
        f"{min(ruff) / best_cold:.1%} | – |",
        "",
        f"- Cold memwarden vs ruff: ruff is **{best_cold / min(ruff):.1f}x faster** cold (Rust, "
        "one rule); memwarden's warm run is "
        f"{min(ruff) / min(warm):.1f}x {'faster' if min(warm) < min(ruff) else 'slower'} than "
        "ruff's (uncached) run.",
        "- pylint `--disable=all --enable=method-cache-max-size-none -j 2` is slow, so it ran on a "
        f"fixed subset: the first {len(subset)} top-level modules of `Lib/` (sorted by name): "
        f"pylint {pylint_note} vs memwarden (`--no-cache`, all rules) {min(mw_subset):.2f} s: "
        + (
            f"memwarden **{pylint_wall / min(mw_subset):.1f}x faster**."
            if pylint_wall == pylint_wall
            else "pylint did not finish."
        ),
        f"- Touch-one re-checked {touched_checked} file(s) per run (the touched file only).",
        f"- No crash: {len(internal)} internal rule errors on {n_files} files; "
        f"{len(unparsable)} files are not Python 3 (lib2to3 test data, bad-encoding test "
        "files) and are reported as MW000, the run going on.",
        f"- Findings on the stdlib: {len(findings)} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(by_code.items()))}). "
        f"Cache-on-method: memwarden MW101 {mw101}, ruff B019 {ruff_b019}"
        + (f", pylint W1518 {pylint_hits} (subset)" if pylint_hits >= 0 else "")
        + ". ruff's B019 also flags bounded `lru_cache(maxsize=N)` like MW101 does.",
        "",
        "Reproduce: `python bench/run.py lint`.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
