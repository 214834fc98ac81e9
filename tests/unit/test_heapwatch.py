"""Heap snapshots when pressure turns CRITICAL, on SIGUSR2, and from the environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memwarden import heapwatch
from memwarden.config import load_config
from memwarden.exceptions import ConfigurationError
from memwarden.pressure import Governor

ROOT = Path(__file__).resolve().parents[2]


def _governor(usage: list[int]) -> Governor:
    cfg = load_config(environ={"MEMWARDEN_MAX_MEMORY": "1000MiB"}, pyproject=False)
    return Governor(cfg, probe=lambda: usage[0], psi=False, cgroup=False, builtin_relievers=False)


def _wait_idle(dumper: heapwatch.HeapDumper) -> None:
    for t in threading.enumerate():
        if t.name == "memwarden-heapdump":
            t.join(60)
    assert not dumper._busy


def test_critical_pressure_writes_at_most_max_count(tmp_path: Path) -> None:
    """Each rise to CRITICAL dumps one snapshot until max_count; later rises are skipped."""
    usage = [100 << 20]
    gov = _governor(usage)
    dumper = heapwatch.HeapDumper(tmp_path, max_count=1)
    dumper.attach(gov)
    try:
        gov.level()
        assert dumper.written == []
        usage[0] = 990 << 20
        gov.level()
        _wait_idle(dumper)
        assert len(dumper.written) == 1
        (path,) = dumper.written
        assert path.name.startswith(f"memwarden-{os.getpid()}-1")
        assert json.loads(path.read_text())["snapshot"]["node_count"] > 100
        usage[0] = 10 << 20
        gov.level()
        usage[0] = 990 << 20
        gov.level()
        _wait_idle(dumper)
        assert len(dumper.written) == 1
        assert any("already written" in s for s in dumper.skipped)
    finally:
        dumper.detach()


def test_no_dump_without_disk_room(tmp_path: Path) -> None:
    """A disk that would keep less than min_free_bytes free gets no snapshot."""
    dumper = heapwatch.HeapDumper(tmp_path, min_free_bytes=1 << 62)
    assert dumper.room_for_dump() is False
    assert dumper.dump() is None
    assert list(tmp_path.iterdir()) == []
    assert "not enough free disk space" in dumper.skipped[0]


def test_a_planted_name_is_not_followed(tmp_path: Path) -> None:
    """A symlink planted at the next snapshot name is left alone; another name is used."""
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / f"memwarden-{os.getpid()}-1.heapsnapshot").symlink_to(victim)
    dumper = heapwatch.HeapDumper(tmp_path)
    path = dumper.dump()
    assert path is not None
    assert path.name == f"memwarden-{os.getpid()}-1-1.heapsnapshot"
    assert victim.read_text() == "keep"


def test_sigusr2_dumps_on_demand(tmp_path: Path) -> None:
    """With the signal installed, SIGUSR2 writes a snapshot while the program runs on."""
    dumper = heapwatch.HeapDumper(tmp_path, max_count=2)
    old = signal.getsignal(signal.SIGUSR2)
    try:
        dumper.install_signal(signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR2)
        deadline = time.monotonic() + 60
        while not dumper.written and time.monotonic() < deadline:
            time.sleep(0.05)
        _wait_idle(dumper)
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert len(dumper.written) == 1
    assert dumper.written[0].stat().st_size > 1000


def test_environment_values_are_checked(tmp_path: Path) -> None:
    """Bad MEMWARDEN_HEAP_DUMP_* values are errors naming the variable; no directory: off."""
    assert heapwatch.install_from_env({}) is None
    with pytest.raises(ConfigurationError, match="MEMWARDEN_HEAP_DUMP_MAX='lots'"):
        heapwatch.install_from_env(
            {"MEMWARDEN_HEAP_DUMP_DIR": str(tmp_path), "MEMWARDEN_HEAP_DUMP_MAX": "lots"}
        )
    with pytest.raises(ConfigurationError, match="MEMWARDEN_HEAP_DUMP_SIGNAL='SIGNOPE'"):
        heapwatch.install_from_env(
            {"MEMWARDEN_HEAP_DUMP_DIR": str(tmp_path), "MEMWARDEN_HEAP_DUMP_SIGNAL": "SIGNOPE"}
        )
    gov = _governor([0])
    dumper = heapwatch.install_from_env(
        {"MEMWARDEN_HEAP_DUMP_DIR": str(tmp_path / "new"), "MEMWARDEN_HEAP_DUMP_MAX": "3"}, gov=gov
    )
    try:
        assert dumper is not None
        assert dumper.max_count == 3
        assert (tmp_path / "new").is_dir()
    finally:
        assert dumper is not None
        dumper.detach()
        gov.stop()


def test_dump_at_exit_runs_the_program_as_main(tmp_path: Path) -> None:
    """``python -m memwarden.heapwatch --dump-at-exit`` keeps the program's globals as __main__."""
    prog = tmp_path / "prog.py"
    prog.write_text("import sys\nKEEP = ['x' * 50]\nsys.exit(4)\n")
    out = tmp_path / "end.heapsnapshot"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "memwarden.heapwatch", "--dump-at-exit", str(out), str(prog)]
    proc = subprocess.run(cmd, env=env, timeout=120, check=False)
    assert proc.returncode == 4
    from memwarden import heapgraph

    g = heapgraph.load(out)
    labels = [p.label for p in g.paths(g.find("list"), max_paths=0)]
    assert "__main__.KEEP" in labels


def test_pyproject_table_and_environment_precedence(tmp_path: Path) -> None:
    """``[tool.memwarden.heap]`` enables dumps; the environment overrides it; typos are named."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[tool.memwarden.heap]\ndump_dir = "{tmp_path / "d"}"\ndump_max = 2\n')
    gov = _governor([0])
    dumper = heapwatch.install_from_env({}, gov=gov, pyproject=pyproject)
    assert dumper is not None
    assert dumper.max_count == 2
    assert dumper.directory == tmp_path / "d"
    dumper.detach()
    dumper = heapwatch.install_from_env(
        {"MEMWARDEN_HEAP_DUMP_MAX": "5"}, gov=gov, pyproject=pyproject
    )
    assert dumper is not None
    assert dumper.max_count == 5
    dumper.detach()
    gov.stop()
    pyproject.write_text("[tool.memwarden.heap]\ndump_dri = 'x'\n")
    with pytest.raises(ConfigurationError, match="dump_dri"):
        heapwatch.install_from_env({}, pyproject=pyproject)
    assert heapwatch.install_from_env({}, pyproject=False) is None
