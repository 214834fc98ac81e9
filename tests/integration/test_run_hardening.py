"""`memwarden run` under hostile conditions: a full disk, planted names, escaping daemons."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memwarden.cli import main
from memwarden.exceptions import MemwardenWarning
from memwarden.report.runner import EXIT_LIMIT, run_program
from memwarden.report.trace import read_trace

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def _script(tmp_path: Path, body: str, name: str = "prog.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return False


@contextlib.contextmanager
def _tiny_tmpfs(where: Path, size: str = "64k") -> Iterator[Path]:
    where.mkdir()
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {got.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_dev_full_warns_once_and_passes_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o /dev/full`: one warning, no traceback, the program still runs and its code is kept."""
    marker = tmp_path / "ran"
    code = main(
        [
            "run",
            "--interval",
            "0.01",
            "-o",
            "/dev/full",
            "--",
            "sh",
            "-c",
            f"sleep 0.2; touch {marker}; exit 7",
        ]
    )
    err = capsys.readouterr().err
    assert code == 7
    assert marker.exists()
    assert err.count("no space left on device") == 1, err
    assert "Traceback" not in err
    assert "incomplete" in err


@needs_root
def test_full_disk_keeps_enforcing_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trace disk fills mid-run; memwarden keeps supervising, stops the program at --limit."""
    with _tiny_tmpfs(tmp_path / "mnt") as mnt:
        (mnt / "filler").write_bytes(b"x" * 48 * 1024)
        pidfile = tmp_path / "pid"
        prog = _script(
            tmp_path,
            f"""
            import os, time
            open({str(pidfile)!r}, "w").write(str(os.getpid()))
            time.sleep(0.6)             # the samples fill the disk meanwhile
            data = bytearray(150 * 2**20)
            for i in range(0, len(data), 4096):
                data[i] = 1
            time.sleep(30)
            """,
        )
        started = time.monotonic()
        code = main(
            [
                "run",
                "--interval",
                "0.002",
                "--limit",
                "80MiB",
                "--grace",
                "1",
                "-o",
                str(mnt / "t.jsonl"),
                str(prog),
            ]
        )
        elapsed = time.monotonic() - started
        err = capsys.readouterr().err
        assert code == EXIT_LIMIT, err
        assert elapsed < 20
        assert not _alive(int(pidfile.read_text()))
        assert err.count("no space left on device") == 1, err
        assert "exceeded --limit" in err
        with pytest.warns(MemwardenWarning, match="truncated record"):
            trace = read_trace(mnt / "t.jsonl")  # readable up to the damage
        assert trace.samples


def test_an_error_inside_memwarden_does_not_orphan_the_child(tmp_path: Path) -> None:
    """If the supervision loop raises, the child is killed and reaped, not left running."""
    pids: list[int] = []

    def boom(t_s: float, rss: int, peak: int) -> None:
        raise RuntimeError("sampler bug")

    with pytest.raises(RuntimeError, match="sampler bug"):
        run_program(
            ["sleep", "30"],
            trace_path=tmp_path / "t.jsonl",
            interval_s=0.01,
            on_sample=boom,
            on_start=pids.append,
            foreground=False,
        )
    assert pids
    assert not _alive(pids[0])


def test_default_trace_name_never_follows_a_planted_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A symlink planted at the default trace name is refused; its target is untouched."""
    monkeypatch.chdir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    # The default name is memwarden-<name>.<pid>.trace.jsonl: plant it for this pid.
    (tmp_path / f"memwarden-true.{os.getpid()}.trace.jsonl").symlink_to(victim)
    code = main(["run", "-q", "--", "true"])
    err = capsys.readouterr().err
    assert code == 2
    assert "already exists" in err
    assert "-o" in err
    assert victim.read_text() == "precious"


def test_missing_output_directory_blames_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing -o directory is an output error (exit 2), not "cannot run 'true'" (127)."""
    out = tmp_path / "missing" / "t.jsonl"
    code = main(["run", "-q", "-o", str(out), "--", "true"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot write {out}: directory {out.parent} does not exist" in err
    assert "cannot run" not in err


@needs_root
def test_read_only_output_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only file system is reported against the trace path, not the program."""
    ro = tmp_path / "ro"
    ro.mkdir()
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(ro)],
        capture_output=True,
        check=False,
    )
    if got.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs")
    try:
        code = main(["run", "-q", "-o", str(ro / "t.jsonl"), "--", "true"])
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    err = capsys.readouterr().err
    assert code == 2
    assert "read-only file system" in err
    assert "'true'" not in err


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_missing_program_with_a_device_output_keeps_the_device(tmp_path: Path) -> None:
    """The trace of a program that cannot start is removed, but never a device the user named."""
    # A private null device: a regression would unlink this node, not the system's /dev/null.
    device = tmp_path / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    code = main(["run", "-q", "-o", str(device), "--", str(tmp_path / "no-such-program")])
    assert code == 127
    assert device.is_char_device()


def test_double_forked_daemon_is_counted_and_stopped(tmp_path: Path) -> None:
    """A grandchild that double-forks away is re-parented to memwarden, counted and stopped."""
    pidfile = tmp_path / "daemon.pid"
    prog = _script(
        tmp_path,
        f"""
        import os, sys, time
        first = os.fork()
        if first == 0:
            if os.fork() == 0:          # the daemon: its parent exits at once
                os.setsid()
                with open({str(pidfile)!r} + ".tmp", "w") as fh:
                    fh.write(str(os.getpid()))
                os.rename({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
                data = bytearray(120 * 2**20)
                for i in range(0, len(data), 4096):
                    data[i] = 1
                time.sleep(30)
                os._exit(0)
            os._exit(0)
        os.waitpid(first, 0)
        deadline = time.monotonic() + 10
        while not os.path.exists({str(pidfile)!r}) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(30)
        """,
    )
    trace_path = tmp_path / "t.jsonl"
    code = main(
        [
            "run",
            "-q",
            "--interval",
            "0.02",
            "--limit",
            "80MiB",
            "--grace",
            "1",
            "-o",
            str(trace_path),
            str(prog),
        ]
    )
    assert code == EXIT_LIMIT
    daemon = int(pidfile.read_text())
    assert not _alive(daemon)
    trace = read_trace(trace_path)
    assert trace.peak_rss_bytes > 80 * 2**20
    assert max(s.processes for s in trace.samples) >= 2
