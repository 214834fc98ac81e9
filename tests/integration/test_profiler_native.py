"""The native profiler in real processes: fork, a stress run of threads, forks, exceptions,
GIL-free allocations and start/stop cycles, and its pprof file read by ``go tool pprof``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memwarden import profiler

pytestmark = pytest.mark.skipif(
    not profiler.native_available(),
    reason=f"the C extension is not built: {profiler.native_error()}",
)

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "prog.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=tmp_path,
    )


def test_fork_child_keeps_profiling_and_parent_is_unaffected(tmp_path: Path) -> None:
    """After fork the child samples and snapshots; the parent's profile is its own."""
    done = _run(
        """
        import os, sys
        import memwarden.profiler as p

        def parent_site():
            return [bytearray(2**20) for _ in range(40)]

        def child_site():
            return [bytearray(2**20) for _ in range(80)]

        def mib(profile, name):
            return sum(s.size_bytes for s in profile.stacks
                       if any(f.function.startswith(name) for f in s.frames)) / 2**20

        p.start(interval_bytes=64 * 1024)
        keep = parent_site()
        pid = os.fork()
        if pid == 0:
            more = child_site()
            live = p.snapshot()
            ok = 68 < mib(live, "child_site") < 92 and 34 < mib(live, "parent_site") < 46
            p.stop()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        live = p.snapshot()
        assert mib(live, "child_site") == 0, mib(live, "child_site")
        assert 34 < mib(live, "parent_site") < 46
        # The parent's lock survived the fork: it still samples.
        again = [bytearray(2**20) for _ in range(20)]
        assert p.stats()["samples"] > live.stats["samples"]
        p.stop()
        print("child", os.waitstatus_to_exitcode(status))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "child 0"


def test_stress_threads_forks_exceptions_and_cycles(tmp_path: Path) -> None:
    """Threads allocating and raising, GIL-free zlib work, forks and start/stop cycles: no crash."""
    done = _run(
        """
        import os, random, threading, time, zlib
        import memwarden.profiler as p

        stop = threading.Event()
        payload = zlib.compress(os.urandom(256 * 1024))

        def churn(seed):
            rnd = random.Random(seed)
            keep = []
            while not stop.is_set():
                try:
                    with p.tag(f"t{seed % 3}"):
                        keep.append(bytearray(rnd.randrange(1, 300_000)))
                        keep.extend(str(i) for i in range(rnd.randrange(100)))
                        if rnd.random() < 0.2:
                            raise ValueError("x" * rnd.randrange(1000))
                except ValueError:
                    pass
                if len(keep) > 200:
                    del keep[: rnd.randrange(200)]

        def nogil():
            while not stop.is_set():
                zlib.decompress(payload)

        threads = [threading.Thread(target=churn, args=(i,)) for i in range(8)]
        threads += [threading.Thread(target=nogil) for _ in range(2)]
        p.start(interval_bytes=8 * 1024)
        for t in threads:
            t.start()
        children = 0
        for cycle in range(12):
            if cycle % 4 == 1:
                pid = os.fork()
                if pid == 0:
                    junk = [bytearray(50_000) for _ in range(100)]
                    os._exit(0 if p.snapshot().total_bytes > 0 else 4)
                _, status = os.waitpid(pid, 0)
                assert os.waitstatus_to_exitcode(status) == 0, status
                children += 1
            time.sleep(0.05)
            p.snapshot("live").top("stack", 5)
            p.snapshot("allocations")
            p.peak()
            p.stop()
            p.start(interval_bytes=random.choice([1, 512, 8 * 1024, 512 * 1024]))
        # The last cycle samples finely for a moment, so the final stats have samples
        # whatever interval the random choice left running.
        p.stop()
        p.start(interval_bytes=8 * 1024)
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
        stats = p.stats()
        p.stop()
        print("ok", children, int(stats["samples"] > 0))
        """,
        tmp_path,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", "3", "1"]


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed (Debian: golang-go)")
def test_pprof_file_loads_in_go_tool_pprof(tmp_path: Path) -> None:
    """go tool pprof -top reads the gzipped profile.proto and names the allocating function."""
    done = _run(
        """
        import memwarden.profiler as p

        def allocate_reports():
            return [bytearray(2**20) for _ in range(64)]

        p.start(interval_bytes=64 * 1024)
        keep = allocate_reports()
        p.snapshot().write_pprof("heap.pb.gz")
        p.snapshot("allocations").write_pprof("allocs.pb.gz")
        p.stop()
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for name, sample_type in (("heap.pb.gz", "inuse_space"), ("allocs.pb.gz", "alloc_space")):
        top = subprocess.run(
            ["go", "tool", "pprof", "-top", f"-sample_index={sample_type}", name],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "GOCACHE": str(tmp_path)},
        )
        assert top.returncode == 0, top.stderr
        assert f"Type: {sample_type}" in top.stdout
        assert "allocate_reports.<locals>.<listcomp>" in top.stdout
        assert "<module>" in top.stdout
