"""``memwarden run``'s default sampling profile, followed into real child processes.

A multiprocessing Pool (spawn and fork), a ``subprocess`` Python child, a program
stopped by ``--limit``, and a grandchild interpreter that must not see memwarden's
own site-packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import memwarden
from memwarden import profiler
from memwarden.report.runner import EXIT_LIMIT
from memwarden.report.trace import Trace, read_trace

pytestmark = pytest.mark.skipif(
    not profiler.native_available(),
    reason=f"the native sampling profiler is not built: {profiler.native_error()}",
)

TIMEOUT_S = 90


def _memwarden(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The memwarden under test, whatever the working directory.
    src = str(Path(memwarden.__file__).resolve().parent.parent)
    old = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=src + (os.pathsep + old if old else ""))
    return subprocess.run(
        [sys.executable, "-m", "memwarden", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
        env=env,
        check=False,
    )


def _script(tmp_path: Path, body: str, name: str = "prog.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _lines_by_pid(trace: Trace) -> dict[int, set[int]]:
    """The lines of the profiled script seen in each process's peak profile."""
    out: dict[int, set[int]] = {}
    for (pid, when), rec in trace.profiles.items():
        if when != "peak":
            continue
        prof = rec.profile()
        lines = out.setdefault(pid, set())
        for st in prof.stacks:
            lines.update(f.lineno for f in st.frames if f.filename.endswith("prog.py"))
    return out


POOL = """
    import multiprocessing as mp
    import subprocess
    import sys
    import time

    def work(n):
        data = [bytes(1000) for _ in range(n)]  # line 8: the workers' memory
        time.sleep(0.1)  # both workers get tasks
        return len(data)

    if __name__ == "__main__":
        keep = [bytearray(4096) for _ in range(4000)]  # line 13: the parent's memory
        with mp.get_context(sys.argv[1]).Pool(2) as pool:
            assert sum(pool.map(work, [15000] * 6, chunksize=1)) == 90000
        code = "x = [bytes(1000) for _ in range(20000)]"
        subprocess.run([sys.executable, "-c", code], check=True)
"""


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_pool_workers_and_a_python_child_are_profiled(tmp_path: Path, method: str) -> None:
    """The parent, each Pool worker and a subprocess child write their own profiles."""
    prog = _script(tmp_path, POOL)
    trace_path = tmp_path / "t.jsonl"
    done = _memwarden("run", "-q", "-o", str(trace_path), str(prog), method, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    trace = read_trace(trace_path, strict=True)
    assert trace.header["profile"] is True
    lines = _lines_by_pid(trace)
    pids = {pid for pid, _ in trace.profiles}
    roots = {
        pid
        for (pid, _), rec in trace.profiles.items()
        if rec.ppid not in pids and rec.argv[:1] == (str(prog),)
    }
    assert len(roots) == 1, sorted(trace.profiles)
    root = roots.pop()
    assert 13 in lines.get(root, set()), lines  # the parent's own allocation
    workers = [pid for pid, seen in lines.items() if 8 in seen and pid != root]
    assert workers, lines  # a worker's allocations, in the worker's own profile
    # The workers profiled themselves. Pool.__exit__ terminates them: on a loaded machine
    # a worker that got no task can be stopped before its first record, so at least one.
    pool_pids = {
        pid for (pid, _), rec in trace.profiles.items() if rec.argv[:1] == (str(prog),)
    } - {root}
    assert len(pool_pids) >= 1, sorted(trace.profiles)
    children = [rec for (_, when), rec in trace.profiles.items() if rec.argv[:1] == ("-c",)]
    assert any(rec.profile().total_bytes >= 10 * 2**20 for rec in children), children
    report = _memwarden("report", str(trace_path), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "Where the Python heap was" in report.stdout
    assert "prog.py:8" in report.stdout.replace("\n", "")


def test_a_run_stopped_by_limit_still_says_where_the_memory_was(tmp_path: Path) -> None:
    """SIGTERM from --limit makes the process write its peak profile before it dies."""
    prog = _script(
        tmp_path,
        """
        import time
        hog = []
        for _ in range(2000):
            hog.append(b"y" * 2**20)  # line 5
            time.sleep(0.002)
        time.sleep(60)
        """,
    )
    trace_path = tmp_path / "t.jsonl"
    done = _memwarden(
        "run", "-q", "--limit", "150MiB", "-o", str(trace_path), str(prog), cwd=tmp_path
    )
    assert done.returncode == EXIT_LIMIT, done.stderr
    trace = read_trace(trace_path, strict=True)
    lines = _lines_by_pid(trace)
    assert any(5 in seen for seen in lines.values()), lines
    biggest = max(rec.profile().total_bytes for rec in trace.profiles.values())
    assert biggest >= 100 * 2**20


@pytest.mark.skipif(shutil.which("python3", path="/usr/bin") is None, reason="no /usr/bin/python3")
def test_a_grandchild_interpreter_does_not_see_memwardens_site_packages(tmp_path: Path) -> None:
    """Only the shim's directory is on PYTHONPATH: the system Python cannot import click."""
    prog = _script(
        tmp_path,
        """
        import subprocess
        code = (
            "import importlib.util, sys; "
            "print('click' if importlib.util.find_spec('click') else 'no-click')"
        )
        out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True)
        print(out.stdout.strip(), out.returncode)
        """,
    )
    probe = subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            "import importlib.util; print(bool(importlib.util.find_spec('click')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    if probe.stdout.strip() == "True":
        pytest.skip("click is installed for /usr/bin/python3 itself")
    trace_path = tmp_path / "t.jsonl"
    done = _memwarden("run", "-o", str(trace_path), str(prog), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no-click 0" in done.stdout
