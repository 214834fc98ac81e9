"""Run memwarden's benchmarks and write ``docs/benchmarks.md``.

Each ``bench/bench_<name>.py`` defines ``run() -> str`` returning a Markdown
section (figures as ratios against the reference tool measured in the same run).
The section is written to ``docs/bench/<name>.md``; ``docs/benchmarks.md`` is
then assembled from every section on disk, so one benchmark can be re-run alone:

    python bench/run.py            # all
    python bench/run.py rss cache  # only these
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ROOT / "docs" / "bench"
OUT = ROOT / "docs" / "benchmarks.md"


def _machine() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}, Linux {platform.release()}"
    )


def _load(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def assemble() -> None:
    parts = [
        "# Benchmarks\n",
        "Written by `make bench` (`python bench/run.py [NAME…]`); each section says the"
        " command that reproduces it. Figures are ratios against the reference tool run in"
        " the same process or run, on this machine; absolute times are given for context only.\n",
    ]
    for section in sorted(SECTIONS.glob("*.md")):
        parts.append(section.read_text().rstrip() + "\n")
    OUT.write_text("\n".join(parts))


def _run_one(name: str) -> int:
    """Run one bench in this (fresh) interpreter and write its section."""
    path = ROOT / "bench" / f"bench_{name}.py"
    body = _load(path).run()
    stamp = _dt.date.today().isoformat()
    header = f"<!-- `python bench/run.py {name}` on {stamp}; {_machine()} -->\n"
    (SECTIONS / f"{name}.md").write_text(header + body.rstrip() + "\n")
    return 0


def main(argv: list[str]) -> int:
    SECTIONS.mkdir(parents=True, exist_ok=True)
    if argv[:1] == ["--one"]:
        return _run_one(argv[1])
    benches = sorted((ROOT / "bench").glob("bench_*.py"))
    wanted = set(argv)
    failed = []
    for path in benches:
        name = path.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        print(f"== bench {name}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", name])
        if proc.returncode != 0:  # keep going: one broken bench must not hide the others
            print(f"   FAILED (exit {proc.returncode})", flush=True)
            failed.append(name)
            continue
        print(f"   done in {time.perf_counter() - t0:.1f} s", flush=True)
    assemble()
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
