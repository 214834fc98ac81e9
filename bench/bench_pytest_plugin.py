"""pytest plugin: run time of the same test files under plain pytest, memwarden's markers and
pytest-memray's markers (the reference), plus the "1 B" limit_leaks check on do-nothing tests."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

N_TESTS = 60

HEADER = """
import pytest

KEEP = []
"""

TEMPLATE = """
@pytest.mark.limit_memory("64 MB")
def test_alloc_{i}():
    rows = [{{"i": j, "s": str(j)}} for j in range(5_000)]
    blob = bytearray(200_000)
    assert len(rows) == 5_000 and len(blob) == 200_000

@pytest.mark.limit_leaks("1 MB")
def test_keep_{i}():
    KEEP.append(bytearray(10_000))
"""

TRIVIAL = """
import pytest

@pytest.mark.limit_leaks("1 B")
def test_empty():
    pass

@pytest.mark.limit_leaks("1 B")
def test_prints():
    print("hello " * 100)
"""

QUIET = [
    "-p",
    "no:cacheprovider",
    "-p",
    "no:hypothesispytest",
    "-p",
    "no:benchmark",
    "-p",
    "no:cov",
]
VARIANTS = {
    "plain pytest": ["-p", "no:memwarden", "-p", "no:memray"],
    "memwarden markers": ["-p", "no:memray"],
    "pytest-memray markers": ["-p", "no:memwarden"],
    "memwarden --memwarden (all tests)": ["-p", "no:memray", "--memwarden"],
}


def _run(path: Path, extra: list[str]) -> tuple[float, int, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *QUIET, *extra, str(path)],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return time.perf_counter() - t0, proc.returncode, proc.stdout


def _verdict(code: int) -> str:
    return "passes both" if code == 0 else f"fails (exit {code})"


def run() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pytest.ini").write_text("[pytest]\n")  # no project config leaks in
        suite = root / "test_suite.py"
        suite.write_text(
            HEADER + "".join(textwrap.dedent(TEMPLATE).format(i=i) for i in range(N_TESTS // 2))
        )
        trivial = root / "test_trivial.py"
        trivial.write_text(textwrap.dedent(TRIVIAL))
        times: dict[str, list[float]] = {k: [] for k in VARIANTS}
        codes: dict[str, set[int]] = {k: set() for k in VARIANTS}
        for _ in range(3):  # interleave the variants, repeat
            for name, extra in VARIANTS.items():
                dt, code, _ = _run(suite, extra)
                times[name].append(dt)
                codes[name].add(code)
        _, mw_code, _ = _run(trivial, VARIANTS["memwarden markers"])
        _, mr_code, mr_out = _run(trivial, VARIANTS["pytest-memray markers"])

    base = min(times["plain pytest"])
    memray_best = min(times["pytest-memray markers"])
    rows = []
    for name, ts in times.items():
        best = min(ts)
        outcome = "pass" if codes[name] == {0} else f"exit {sorted(codes[name])}"
        rows.append(
            f"| {name} | {best:.2f} s | {statistics.median(ts):.2f} s | {best / base:.2f}x | "
            f"{best / memray_best:.2f}x | {outcome} |"
        )
    mw_best = min(times["memwarden markers"])
    met = mw_best <= memray_best
    return "\n".join(
        [
            "## pytest plugin (markers vs pytest-memray)",
            "",
            f'The same file of {N_TESTS} tests ({N_TESTS // 2} with `limit_memory("64 MB")` '
            f'allocating ~1 MB of temporaries, {N_TESTS // 2} with `limit_leaks("1 MB")` keeping '
            "10 KB), run in a fresh `python -m pytest` each time; 3 interleaved repeats, best "
            "and median wall time including interpreter start-up:",
            "",
            "| variant | best | median | vs plain pytest | vs pytest-memray | outcome |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Target: memwarden's markers cost no more than pytest-memray's on the same tests: "
            f"**{'met' if met else 'missed'}** ({mw_best / memray_best:.2f}x pytest-memray).",
            "",
            '`limit_leaks("1 B")` on a test that does nothing and on one that only prints: '
            f"memwarden {_verdict(mw_code)}; pytest-memray {_verdict(mr_code)} "
            f"({mr_out.strip().splitlines()[-1] if mr_out.strip() else ''}).",
            "",
            "Run: `python bench/run.py pytest_plugin`",
        ]
    )


if __name__ == "__main__":
    print(run())
