"""`memwarden info` names the heap profiler backend, including the fallback when the
extension cannot be loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from memwarden import profiler
from memwarden.cli import main


def test_info_reports_the_profiler_backend(capsys: pytest.CaptureFixture[str]) -> None:
    """--json carries the backend in use; the table has a Profiler line."""
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["profiler"]["backend"] == profiler.backend()
    assert data["profiler"]["native_available"] is profiler.native_available()
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    expected = "native sampler" if profiler.native_available() else "tracemalloc fallback"
    assert f"Profiler {expected}" in out


def test_without_the_extension_memwarden_falls_back_to_tracemalloc() -> None:
    """With the extension unloadable, the profiler still works on tracemalloc and info says so."""
    code = (
        "import sys, json\n"
        "sys.modules['memwarden._sampler'] = None\n"  # makes the import fail
        "import memwarden.profiler as p\n"
        "p.start()\n"
        "keep = [bytearray(2**20) for _ in range(8)]\n"
        "live = p.snapshot()\n"
        "p.stop()\n"
        "from memwarden.cli.info import gather\n"
        "print(json.dumps([p.backend(), live.backend, live.total_bytes > 8 * 2**20,"
        " gather()['profiler']['native_error'] is not None]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["tracemalloc", "tracemalloc", True, True]
