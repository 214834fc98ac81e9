"""`memwarden watch`: JSON lines, another pid, levels, process exit, the rich view, a real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from rich.console import Console

from memwarden.cli import main
from memwarden.cli.watch import render
from memwarden.config import MemoryConfig
from memwarden.monitoring import MemoryMonitor
from memwarden.report.terminal import SPARK
from tests.support.monitoring import FakeProbe

MiB = 1 << 20


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def hog() -> Iterator[subprocess.Popen[str]]:
    """A child process holding 64 MiB of touched memory until killed."""
    code = "import sys, time; b = b'x' * (64 << 20); print('ready', flush=True); time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def test_json_lines_for_this_process(capsys: pytest.CaptureFixture[str]) -> None:
    """--json --count 3 prints three JSON samples of this process with the budget and level."""
    code = main(["watch", "--json", "--count", "3", "--interval", "0.01", "--max-memory", "64 GiB"])
    assert code == 0
    recs = lines(capsys.readouterr().out)
    assert len(recs) == 3
    assert {r["pid"] for r in recs} == {os.getpid()}
    assert all(r["limit_bytes"] == 64 << 30 for r in recs)
    assert all(r["level"] == "OK" for r in recs)
    assert all(isinstance(r["rss_bytes"], int) and r["rss_bytes"] > MiB for r in recs)
    assert recs[-1]["peak_rss_bytes"] >= max(r["rss_bytes"] for r in recs)  # type: ignore[operator]


def test_another_pid_is_measured_and_levels_follow_the_budget(
    hog: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Watching a child holding 64 MiB against a 40 MiB budget reports its RSS and CRITICAL."""
    code = main(
        [
            *("watch", "--pid", str(hog.pid), "--json", "--count", "2"),
            *("--interval", "0.01", "--max-memory", "40 MiB"),
        ]
    )
    assert code == 0
    recs = lines(capsys.readouterr().out)
    assert [r["pid"] for r in recs] == [hog.pid, hog.pid]
    assert all(r["rss_bytes"] >= 64 * MiB for r in recs)  # type: ignore[operator]
    assert recs[-1]["level"] == "CRITICAL"
    assert recs[-1]["python_heap_bytes"] is None


def test_watch_ends_cleanly_when_the_process_exits(capsys: pytest.CaptureFixture[str]) -> None:
    """A watched process that exits ends the watch with status 0 and a message."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    try:
        code = main(
            ["watch", "--pid", str(proc.pid), "--json", "--interval", "0.05", "--count", "400"]
        )
    finally:
        proc.kill()
        proc.wait(timeout=10)
    captured = capsys.readouterr()
    assert code == 0
    assert f"process {proc.pid} exited" in captured.err
    assert len(lines(captured.out)) < 400


def test_a_missing_pid_is_an_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    """--pid of a process that does not exist exits 1 and names the pid."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    code = main(["watch", "--pid", str(proc.pid), "--count", "1"])
    assert code == 1
    assert f"--pid {proc.pid}: no such process" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--interval", "0"], "--interval"), (["--max-memory", "lots"], "--max-memory")],
)
def test_bad_options_are_usage_errors(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zero interval or an unparsable size exits 2 and names the option."""
    assert main(["watch", "--count", "1", *args]) == 2
    assert needle in capsys.readouterr().err


def test_the_live_view_draws_only_the_most_recent_samples() -> None:
    """With more samples than ``width``, the sparkline has one bar per recent sample."""
    probe = FakeProbe(values=[100 * MiB, 900 * MiB, 100 * MiB, 900 * MiB, 100 * MiB])
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=1000 * MiB), probe=probe)
    for _ in range(5):
        mon.sample_now()
    console = Console(record=True, width=100, color_system=None)
    console.print(render(1234, mon, width=3))
    bars = [c for c in console.export_text() if c in SPARK]
    assert bars == ["▁", "█", "▁"]


def test_the_live_view_shows_figures_level_and_sparkline() -> None:
    """The rich panel names current, peak, limit, the level and draws the history."""
    probe = FakeProbe(values=[100 * MiB, 300 * MiB, 950 * MiB])
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=1000 * MiB), probe=probe)
    for _ in range(3):
        mon.sample_now()
    console = Console(record=True, width=100, color_system=None)
    console.print(render(1234, mon, width=30))
    text = console.export_text()
    assert "pid 1234" in text
    assert "950.0 MiB" in text
    assert "1000.0 MiB" in text or "1,000" in text or "1000" in text
    assert "CRITICAL" in text
    assert "▁" in text
    assert "█" in text


def test_a_real_subprocess_writes_json_lines_when_not_a_terminal() -> None:
    """`python -m memwarden watch` with a pipe for stdout writes JSON lines and exits 0."""
    out = subprocess.run(
        [sys.executable, "-m", "memwarden", "watch", "--count", "2", "--interval", "0.01"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MEMWARDEN_MAX_MEMORY": "2 GiB"},
    )
    assert out.returncode == 0, out.stderr
    recs = lines(out.stdout)
    assert len(recs) == 2
    assert recs[0]["limit_bytes"] == 2 << 30
    assert recs[0]["level"] == "OK"


def test_on_a_terminal_the_live_panel_is_drawn(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When stdout is a terminal (and no --json) watch draws the rich panel, not JSON."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "100")
    code = main(["watch", "--count", "2", "--interval", "0.01", "--max-memory", "64 GiB"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"memwarden watch · pid {os.getpid()}" in out
    assert "64.0 GiB" in out
    assert "OK" in out
    assert not out.lstrip().startswith("{")


@pytest.mark.parametrize("pid", ["-1", "0", "99999999999"])
def test_impossible_pids_are_usage_errors(pid: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--pid -1`, 0 or beyond any pid: a usage error naming --pid, never a traceback."""
    code = main(["watch", "--pid", pid, "--count", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--pid" in err
    assert "Traceback" not in err
