"""SARIF output validated against the SARIF 2.1.0 JSON schema (vendored, the network is closed).

``tests/data/sarif-schema-2.1.0.json`` is the published SARIF 2.1.0 RTM 5 schema
(``sarif-2.1.0-rtm.5.json``, the version GitHub code scanning validates against),
as shipped in the npm package ``@microsoft/jest-sarif`` 1.0.0-beta.0 (MIT).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from memwarden.lint.output import to_sarif
from memwarden.lint.rules import RULES
from memwarden.lint.runner import lint_paths

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "sarif-schema-2.1.0.json"
FIXTURES = Path(__file__).resolve().parents[1] / "lint_fixtures"


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def sarif(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("proj")
    for fixture in FIXTURES.iterdir():
        shutil.copy(fixture, root / fixture.name.replace(".py.txt", ".py"))
    result = lint_paths([root], root=root, jobs=1)
    assert {f.code for f in result.findings} == set(RULES)  # every rule is exercised
    data: dict[str, Any] = json.loads(to_sarif(result, "9.9.9"))
    return data


def test_sarif_log_is_valid_against_the_2_1_0_schema(validator: Any, sarif: dict[str, Any]) -> None:
    """A log with findings of every rule (and MW000) validates against the SARIF 2.1.0 schema."""
    errors = sorted(validator.iter_errors(sarif), key=lambda e: list(e.path))
    assert errors == [], [e.message for e in errors[:5]]
    assert sarif["version"] == "2.1.0"


def test_schema_validation_can_fail(validator: Any, sarif: dict[str, Any]) -> None:
    """The vendored schema rejects a broken log (bad level, missing message), so the check bites."""
    bad = copy.deepcopy(sarif)
    bad["runs"][0]["results"][0]["level"] = "fatal"
    del bad["runs"][0]["results"][1]["message"]
    messages = [e.message for e in validator.iter_errors(bad)]
    assert len(messages) >= 2


def test_results_point_at_rules_and_locations(sarif: dict[str, Any]) -> None:
    """Each result's ruleIndex names its ruleId; info maps to note; paths are root-relative."""
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].startswith("file:///")
    levels = {}
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
        loc = res["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert not loc["artifactLocation"]["uri"].startswith("/")
        assert loc["region"]["startLine"] >= 1
        assert loc["region"]["startColumn"] >= 1
        levels.setdefault(res["ruleId"], set()).add(res["level"])
    assert levels["MW201"] == {"note"}
    assert levels["MW000"] == {"error"}
    assert levels["MW101"] == {"note", "warning"}  # a bounded cache is info, unbounded a warning


def test_rule_help_is_the_docstring(sarif: dict[str, Any]) -> None:
    """The rule help text in SARIF is the rule class's docstring (one source of truth)."""
    rules = {r["id"]: r for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    for code, rule in RULES.items():
        assert rules[code]["help"]["text"] == rule.explanation()
        assert rules[code]["name"] == rule.name


def test_empty_run_is_valid(validator: Any, tmp_path: Path) -> None:
    """A clean project gives a valid log with an empty results list."""
    (tmp_path / "ok.py").write_text("x = 1\n")
    log = json.loads(to_sarif(lint_paths([tmp_path], root=tmp_path, jobs=1), "1.0"))
    assert log["runs"][0]["results"] == []
    assert list(validator.iter_errors(log)) == []
