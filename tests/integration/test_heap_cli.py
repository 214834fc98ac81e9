"""memwarden heap dump|top|why|diff and run --heap-dump-near-limit on real programs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_heap_near_limit import CHILD

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

APP = """
import sys

class Session:
    def __init__(self, user):
        self.user = user
        self.buffer = bytearray(10_000)

HISTORY = {"sessions": []}

def handle(user):
    HISTORY["sessions"].append(Session(user))  # the leak

for i in range(int(sys.argv[1])):
    handle(f"user{i}")
"""


def _memwarden(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run(
        [sys.executable, "-m", "memwarden", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_three_snapshot_leak_hunt(tmp_path: Path) -> None:
    """Dump three snapshots of a leaking program; diff names the leak, why shows its path."""
    (tmp_path / "app.py").write_text(APP)
    for n in (10, 20, 30):
        out = _json(
            _memwarden(
                "heap", "dump", "--json", "-o", f"s{n}.heapsnapshot", "app.py", str(n), cwd=tmp_path
            )
        )
        assert out["exit_code"] == 0
    top = _json(_memwarden("heap", "top", "--json", "s30.heapsnapshot", cwd=tmp_path))
    mods = {m["name"]: m for m in top["modules"]}
    assert mods["__main__"]["retained_bytes"] > 30 * 10_000
    diff = _json(
        _memwarden(
            "heap",
            "diff",
            "--json",
            "s10.heapsnapshot",
            "s20.heapsnapshot",
            "s30.heapsnapshot",
            cwd=tmp_path,
        )
    )
    first = diff["types"][0]
    assert first["name"] == "__main__.Session"
    assert first["count"] == 10
    assert 10 * 10_000 <= first["retained_bytes"] < 10 * 11_000
    assert diff["paths"][0]["path"].startswith("__main__.HISTORY['sessions'][")
    why = _json(
        _memwarden("heap", "why", "--json", "s30.heapsnapshot", "Session", "-n", "3", cwd=tmp_path)
    )
    assert why["matches"] == 30
    assert len(why["paths"]) == 3
    assert all(p["path"].startswith("__main__.HISTORY['sessions'][") for p in why["paths"])
    text = _memwarden("heap", "why", "s30.heapsnapshot", "NoSuchType", cwd=tmp_path)
    assert text.returncode == 1
    assert "no object matches 'NoSuchType'" in text.stderr
    html = tmp_path / "top.html"
    _memwarden("heap", "top", "s30.heapsnapshot", "--html", str(html), cwd=tmp_path)
    assert "__main__.Session" in html.read_text()


def test_dump_refuses_an_existing_file_and_bad_snapshots(tmp_path: Path) -> None:
    """An existing output is a usage error; a file that is not a snapshot is named."""
    (tmp_path / "app.py").write_text("x = 1\n")
    (tmp_path / "taken.heapsnapshot").write_text("keep")
    proc = _memwarden("heap", "dump", "-o", "taken.heapsnapshot", "app.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "exists" in proc.stderr
    assert (tmp_path / "taken.heapsnapshot").read_text() == "keep"
    proc = _memwarden("heap", "top", "taken.heapsnapshot", cwd=tmp_path)
    assert proc.returncode != 0
    assert "taken.heapsnapshot" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_heap_dump_near_limit(tmp_path: Path) -> None:
    """``run --limit --heap-dump-near-limit`` snapshots the program near the limit; it goes on."""
    (tmp_path / "grow.py").write_text(CHILD)
    proc = _memwarden(
        "run",
        "-q",
        "--limit",
        "160MiB",
        "--heap-dump-near-limit",
        "-o",
        "t.trace.jsonl",
        "grow.py",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["critical"] is True
    snaps = list(tmp_path.glob("memwarden-*.heapsnapshot"))
    assert len(snaps) == 1
    proc = _memwarden("run", "-q", "--heap-dump-near-limit", "grow.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "needs --limit" in proc.stderr
