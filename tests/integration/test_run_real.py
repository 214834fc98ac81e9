"""``memwarden run`` on real programs as a user runs it: a subprocess of the real CLI.

Pure Python, a C extension (numpy), a program that forks children, one that
exceeds ``--limit``, signal forwarding, agreement with ``/usr/bin/time -v``, and
HTML escaping of a hostile script name.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from memwarden.report.runner import EXIT_LIMIT
from memwarden.report.trace import read_trace

MiB = 2**20
TIMEOUT_S = 60


def _memwarden(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memwarden", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
        check=False,
    )


def _script(tmp_path: Path, body: str, name: str = "prog.py") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


TOUCH_150MB = """
    import time
    block = bytearray(150 * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(0.4)
"""


def test_pure_python_peak_covers_what_it_allocated(tmp_path: Path) -> None:
    """A program holding ~200 MiB of Python objects shows a peak of at least that."""
    prog = _script(
        tmp_path,
        """
        import time
        keep = [bytes(1024) for _ in range(200 * 1024)]
        time.sleep(0.3)
        """,
    )
    trace = tmp_path / "t.jsonl"
    done = _memwarden("run", "-q", "-o", str(trace), str(prog))
    assert done.returncode == 0, done.stderr
    t = read_trace(trace, strict=True)
    assert 200 * MiB <= t.peak_rss_bytes < 400 * MiB
    assert t.samples[0].rss_bytes < t.peak_rss_bytes


def test_c_extension_allocations_are_seen(tmp_path: Path) -> None:
    """numpy's buffers (allocated in C) count: a 256 MiB array shows in the peak."""
    pytest.importorskip("numpy", reason="numpy is not installed")
    prog = _script(
        tmp_path,
        """
        import time
        import numpy as np
        a = np.ones(32 * 2**20)  # 256 MiB of float64, touched by ones()
        time.sleep(0.3)
        print(float(a.sum()))
        """,
    )
    trace = tmp_path / "t.jsonl"
    done = _memwarden("run", "-q", "--python-heap", "-o", str(trace), str(prog))
    assert done.returncode == 0, done.stderr
    t = read_trace(trace, strict=True)
    assert t.peak_rss_bytes >= 256 * MiB
    # numpy reports its data buffers to tracemalloc: the array is the top site at exit.
    exit_sites = next(s for s in t.sites if s.when == "exit")
    assert exit_sites.sites[0].file == str(prog)
    assert exit_sites.sites[0].size_bytes >= 256 * MiB


def test_forked_children_are_summed_into_the_tree(tmp_path: Path) -> None:
    """Three forked workers holding 60 MiB each: the tree peak includes all of them."""
    prog = _script(
        tmp_path,
        """
        import os, time
        pids = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                block = bytearray(60 * 2**20)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(1.0)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        """,
    )
    trace = tmp_path / "t.jsonl"
    done = _memwarden("run", "-q", "--interval", "0.05", "-o", str(trace), str(prog))
    assert done.returncode == 0, done.stderr
    t = read_trace(trace, strict=True)
    assert max(s.processes for s in t.samples) == 4
    assert t.peak_rss_bytes >= 3 * 60 * MiB


def test_limit_kills_a_program_that_ignores_sigterm(tmp_path: Path) -> None:
    """A hog ignoring SIGTERM is SIGKILLed after the grace period; memwarden exits 3."""
    prog = _script(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        hog = []
        for _ in range(1000):
            hog.append(bytearray(2**20))
            hog[-1][::4096] = b"x" * 256
            time.sleep(0.002)
        time.sleep(60)
        """,
    )
    trace = tmp_path / "t.jsonl"
    done = _memwarden(
        "run",
        "--interval",
        "0.02",
        "--limit",
        "100MiB",
        "--grace",
        "0.5",
        "-o",
        str(trace),
        str(prog),
    )
    assert done.returncode == EXIT_LIMIT
    assert "exceeded --limit 100.0 MiB" in done.stderr
    t = read_trace(trace, strict=True)
    assert t.end is not None
    assert (t.end.reason, t.end.signal) == ("limit", signal.SIGKILL)
    assert [e.message for e in t.events if e.kind == "limit"][-1].startswith("grace period over")


def test_limit_with_python_heap_still_records_sites(tmp_path: Path) -> None:
    """Stopped by SIGTERM over the limit, the bootstrap still writes where memory went."""
    prog = _script(
        tmp_path,
        """
        import time
        hog = []
        for _ in range(2000):
            hog.append(b"y" * 2**20)
            time.sleep(0.002)
        time.sleep(60)
        """,
    )
    trace = tmp_path / "t.jsonl"
    done = _memwarden(
        "run", "-q", "--python-heap", "--limit", "120MiB", "-o", str(trace), str(prog)
    )
    assert done.returncode == EXIT_LIMIT
    t = read_trace(trace, strict=True)
    exit_sites = [s for s in t.sites if s.when == "exit"]
    assert exit_sites
    assert exit_sites[0].sites[0].file == str(prog)


@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGTERM, 42), (signal.SIGINT, 130)])
def test_signals_are_forwarded_to_the_program(tmp_path: Path, sig: int, expected: int) -> None:
    """SIGTERM/SIGINT sent to memwarden reach the program; its exit code comes back."""
    ready = tmp_path / "ready"
    prog = _script(
        tmp_path,
        f"""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))
        open({str(ready)!r}, "w").close()
        time.sleep(30)
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "memwarden", "run", "-q", "-o", str(tmp_path / "t"), str(prog)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists()
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == expected
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def _time_v_max_rss(argv: list[str]) -> int:
    done = subprocess.run(
        ["/usr/bin/time", "-v", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    assert match, done.stderr
    return int(match.group(1)) * 1024


@pytest.mark.skipif(
    not Path("/usr/bin/time").exists(),
    reason="/usr/bin/time is not installed (Debian package 'time'; add it to scripts/sysdeps.sh)",
)
@pytest.mark.parametrize("interval", ["0.1", "0.5"])
def test_peak_agrees_with_time_v(tmp_path: Path, interval: str) -> None:
    """memwarden's peak is within 5% of GNU time's maximum resident set size."""
    prog = _script(tmp_path, TOUCH_150MB)
    reference = _time_v_max_rss([sys.executable, str(prog)])
    trace = tmp_path / "t.jsonl"
    # --no-profile: the reference ran unprofiled; the profiler's own imports and
    # tables (several MiB, see docs/run.md) are not what this compares.
    done = _memwarden(
        "run", "-q", "--no-profile", "--interval", interval, "-o", str(trace), str(prog)
    )
    assert done.returncode == 0, done.stderr
    peak = read_trace(trace, strict=True).peak_rss_bytes
    assert abs(peak - reference) <= 0.05 * reference, (peak, reference)


def test_hostile_script_name_is_escaped_in_the_html(tmp_path: Path) -> None:
    """A script named <script>alert(1)</script>.py never becomes markup in the report."""
    prog = _script(
        tmp_path,
        """
        from memwarden.monitoring import track
        with track("<img src=x onerror=alert(2)>"):
            data = [str(i) for i in range(100000)]
        """,
        name="<script>alert(1)</script>.py",
    )
    trace = tmp_path / "t.jsonl"
    done = _memwarden("run", "-q", "--python-heap", "-o", str(trace), str(prog), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    html = tmp_path / "r.html"
    done = _memwarden("report", str(trace), "--html", str(html))
    assert done.returncode == 0, done.stderr
    page = html.read_text()
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.py" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page


def test_live_line_is_quiet_without_a_terminal(tmp_path: Path) -> None:
    """Piped (not a terminal), memwarden prints no live line: only the one-line summary."""
    done = _memwarden("run", "-o", str(tmp_path / "t"), "--", "sleep", "0.3")
    assert done.returncode == 0
    assert "\r" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""


@pytest.mark.skipif(shutil.which("script") is None, reason="util-linux `script` is not installed")
def test_live_line_on_a_terminal(tmp_path: Path) -> None:
    """Under a pseudo-terminal the live line redraws with the current RSS and a sparkline."""
    cmd = f"{sys.executable} -m memwarden run -o {tmp_path / 't'} -- sleep 0.6"
    done = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"],
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
        env={**os.environ, "TERM": "xterm"},
    )
    assert done.returncode == 0, done.stdout
    assert b"\r\x1b[2Kmemwarden" in done.stdout
    assert "▁".encode() in done.stdout
    assert b"peak" in done.stdout


def test_a_killed_memwarden_leaves_a_readable_trace(tmp_path: Path) -> None:
    """SIGKILL memwarden mid-run: every sample written so far reads back, noted as unfinished."""
    pid_file = tmp_path / "child.pid"
    prog = _script(
        tmp_path,
        f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(30)
        """,
    )
    trace = tmp_path / "t.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memwarden",
            "run",
            "-q",
            "--interval",
            "0.02",
            "-o",
            str(trace),
            str(prog),
        ],
    )
    child = 0
    try:
        deadline = time.monotonic() + 20
        while (
            not pid_file.exists() or trace.stat().st_size < 2000
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pid_file.read_text())
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child:  # memwarden cannot clean up after SIGKILL: the program is still running
            os.kill(child, signal.SIGKILL)
    t = read_trace(trace, strict=True)
    assert t.end is None
    assert len(t.samples) >= 5
    assert any("no end record" in p for p in t.problems)
