"""`memwarden leaks MODULE:FUNCTION`: verdict as exit status, text and JSON output, bad targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memwarden.cli import main

MODULE = """
HOARD = []

def leak():
    HOARD.append([0] * 50)

def clean():
    return [0] * 50

NOT_CALLABLE = 3
"""


@pytest.fixture
def target_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module with a leaking and a clean function."""
    (tmp_path / "mw_leak_target.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mw_leak_target", raising=False)
    return "mw_leak_target"


def test_leaking_function_exits_1_with_summary(
    target_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A leaking function exits 1 and the summary names the line and the global holding it."""
    code = main(["leaks", f"{target_module}:leak", "--rounds", "5", "--calls-per-round", "100"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("LEAK: mw_leak_target.leak keeps")
    assert "mw_leak_target.py:5" in out
    assert "mw_leak_target.HOARD[" in out


def test_clean_function_exits_0_with_json(
    target_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clean function exits 0 and --json prints the report with the verdict and signals."""
    code = main(
        ["leaks", f"{target_module}:clean", "--json", "--rounds", "4", "--calls-per-round", "50"]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["leaked"] is False
    assert data["target"] == f"{target_module}:clean"
    assert set(data["signals"]) >= {"python", "rss", "native"}
    assert data["calls_per_round"] == 50


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "expected MODULE:FUNCTION"),
        ("mw_no_such_module_xyz:f", "cannot import 'mw_no_such_module_xyz'"),
        ("mw_leak_target:missing", "has no attribute 'missing'"),
        ("mw_leak_target:NOT_CALLABLE", "int is not callable"),
    ],
)
def test_bad_targets_exit_2(
    target_module: str, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    """Malformed, unimportable, missing and non-callable targets exit 2 with a named error."""
    assert main(["leaks", target]) == 2
    assert message in capsys.readouterr().err


def test_bad_rounds_exit_2(target_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--rounds below 4 is a usage problem reported with the value."""
    assert main(["leaks", f"{target_module}:clean", "--rounds", "2"]) == 2
    assert "rounds=2" in capsys.readouterr().err


def test_subprocess_run_from_current_directory(tmp_path: Path) -> None:
    """The installed command imports a module from the current directory, as python -m does."""
    (tmp_path / "mw_cwd_target.py").write_text(MODULE)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "memwarden",
            "leaks",
            "mw_cwd_target:leak",
            "--rounds",
            "4",
            "--calls-per-round",
            "100",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "LEAK:" in proc.stdout


def test_coroutine_function_is_awaited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An async target is run with check_leaks_async: a leaking coroutine exits 1."""
    (tmp_path / "mw_async_target.py").write_text(
        "HOARD = []\nasync def leak():\n    HOARD.append([0] * 50)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["leaks", "mw_async_target:leak", "--rounds", "5", "--calls-per-round", "100"])
    assert code == 1
    assert "LEAK: mw_async_target.leak" in capsys.readouterr().out
