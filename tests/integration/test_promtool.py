"""deploy/prometheus/alerts.yml: promtool accepts the rules, their unit tests pass, metrics lint."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client", reason="needs the 'prometheus' extra")
pytest.importorskip("yaml", reason="needs PyYAML to read the rule file")

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from memwarden.config import MemoryConfig
from memwarden.integrations.prometheus import METRICS, MemwardenCollector
from memwarden.monitoring import MemoryMonitor, track

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found (Debian package 'prometheus'; `make test` installs it via "
    "scripts/sysdeps.sh when run as root with apt-get)",
)


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> tuple[int, str]:
    assert PROMTOOL is not None
    out = subprocess.run(
        [PROMTOOL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    return out.returncode, out.stdout + out.stderr


@needs_promtool
def test_promtool_check_rules_accepts_the_alert_rules() -> None:
    """`promtool check rules` finds the six rules and no error."""
    rc, out = promtool("check", "rules", str(DEPLOY / "alerts.yml"))
    assert rc == 0, out
    assert "SUCCESS: 6 rules found" in out


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    """`promtool test rules alerts_test.yml` passes: each alert fires when, and only when, due."""
    rc, out = promtool("test", "rules", str(DEPLOY / "alerts_test.yml"))
    assert rc == 0, out
    assert "SUCCESS" in out


@needs_promtool
def test_a_changed_rule_breaks_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: waiting 10 minutes instead of 5 for WARNING is caught."""
    shutil.copy(DEPLOY / "alerts_test.yml", tmp_path / "alerts_test.yml")
    text = (DEPLOY / "alerts.yml").read_text()
    assert "for: 5m" in text
    (tmp_path / "alerts.yml").write_text(text.replace("for: 5m", "for: 10m", 1))
    rc, out = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert rc != 0
    assert "MemwardenMemoryWarning" in out


def test_rules_use_only_metrics_the_collector_emits() -> None:
    """Every memwarden_* name in a rule expression is one the exporter documents and emits."""
    doc = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert {r["labels"]["severity"] for r in rules} == {"warning", "critical"}
    used = {name for r in rules for name in re.findall(r"memwarden_\w+", r["expr"])}
    assert used
    assert used <= set(METRICS), sorted(used - set(METRICS))


@needs_promtool
def test_scraped_metrics_pass_promtool_check_metrics() -> None:
    """The exporter's text passes promtool's naming and convention lint."""
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=2**31))
    mon.sample_now()
    with track("load", monitor=mon):
        pass
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MemwardenCollector(mon))
    text = generate_latest(reg).decode()
    mon.close()
    assert "memwarden_operation_peak_bytes" in text
    rc, out = promtool("check", "metrics", stdin=text)
    assert rc == 0, out
    assert out.strip() == "", out
