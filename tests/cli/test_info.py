"""`memwarden info`, `--version` and the CLI's mapping of errors to exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memwarden.cli import main
from memwarden.probes import effective_limit


def test_info_json_reports_limit_rss_and_config(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the effective limit with its source, RSS and each setting's source."""
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["limit"]["limit_bytes"] == effective_limit().limit_bytes
    assert data["limit"]["source"] == effective_limit().source
    assert data["process"]["rss_bytes"] > 0
    assert data["config"]["warning_threshold"]["source"] == "profile production"
    assert set(data) >= {"limit", "process", "cgroup", "psi", "config", "available_bytes"}


def test_info_profile_option(capsys: pytest.CaptureFixture[str]) -> None:
    """--profile resolves the configuration for that profile."""
    assert main(["info", "--json", "--profile", "development"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["profile"]["value"] == "development"
    assert data["config"]["log_level"]["value"] == "DEBUG"


def test_info_table_names_the_source(capsys: pytest.CaptureFixture[str]) -> None:
    """The human view names the limit's source and lists the configuration."""
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "Effective limit" in out
    assert "Configuration" in out
    assert "warning_threshold" in out


def test_bad_environment_is_a_usage_error_with_the_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad MEMWARDEN_* value is a usage error (exit 2) naming the variable and value."""
    monkeypatch.setenv("MEMWARDEN_WARNING_THRESHOLD", "abc")
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert "MEMWARDEN_WARNING_THRESHOLD='abc' (environment)" in err
    assert "Traceback" not in err


def test_unknown_command_and_option_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown subcommands and options exit 2."""
    assert main(["no-such-command"]) == 2
    assert main(["info", "--bogus"]) == 2


def test_console_script_version_and_info(tmp_path: Path) -> None:
    """The installed `memwarden` script prints its version and runs info in a subprocess."""
    exe = Path(sys.executable).parent / "memwarden"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert "memwarden, version 0.1.0" in out.stdout
    out = subprocess.run(
        [str(exe), "info", "--json"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert json.loads(out.stdout)["limit"]["limit_bytes"] > 0
    out = subprocess.run(
        [sys.executable, "-m", "memwarden", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "info" in out.stdout
