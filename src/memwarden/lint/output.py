"""Render lint results as text (``path:line:col: CODE message``), JSON, or SARIF 2.1.0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from memwarden.lint.model import Finding
from memwarden.lint.rules import RULES
from memwarden.lint.runner import LintResult

__all__ = ["FORMATS", "render", "to_json", "to_sarif", "to_text"]

FORMATS = ("text", "json", "sarif")

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
_INFO_URI = "https://github.com/memwarden/memwarden/blob/main/docs/lint.md"


def to_text(result: LintResult) -> str:
    """One line per finding: ``path:line:col: CODE message`` (info findings say so)."""
    lines = []
    for f in result.findings:
        tag = " [info]" if f.severity == "info" else ""
        lines.append(f"{f.path}:{f.line}:{f.column}: {f.code}{tag} {f.message}")
    return "\n".join(lines) + ("\n" if lines else "")


def summary(result: LintResult) -> dict[str, int]:
    """Counts for the summary line and the JSON ``summary`` object."""
    return {
        "files": len(result.files),
        "findings": len(result.findings),
        "checked": result.checked,
        "cached": result.cached,
    }


def to_json(result: LintResult, version: str) -> str:
    """A JSON object: ``tool``, ``version``, ``summary`` counts and the ``findings`` list."""
    doc = {
        "tool": "memwarden lint",
        "version": version,
        "summary": summary(result),
        "findings": [f.to_dict() for f in result.findings],
    }
    return json.dumps(doc, indent=2) + "\n"


def _artifact(path: str) -> dict[str, Any]:
    p = Path(path)
    if p.is_absolute():
        return {"uri": p.as_uri()}
    return {"uri": p.as_posix(), "uriBaseId": "%SRCROOT%"}


def _result(f: Finding, index: dict[str, int]) -> dict[str, Any]:
    region: dict[str, Any] = {"startLine": f.line, "startColumn": max(f.column, 1)}
    if f.end_line >= f.line and f.end_column > 0:
        region["endLine"] = f.end_line
        region["endColumn"] = max(f.end_column, 1)
        if f.end_line == f.line and region["endColumn"] < region["startColumn"]:
            del region["endLine"], region["endColumn"]
    return {
        "ruleId": f.code,
        "ruleIndex": index[f.code],
        "level": _SARIF_LEVEL.get(f.severity, "warning"),
        "message": {"text": f.message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": _artifact(f.path),
                    "region": region,
                }
            }
        ],
    }


def to_sarif(result: LintResult, version: str) -> str:
    """A SARIF 2.1.0 log with one run; every rule is described, its docstring as help."""
    codes = list(RULES)
    index = {code: i for i, code in enumerate(codes)}
    rules = []
    for code in codes:
        rule = RULES[code]
        text = rule.explanation()
        rules.append(
            {
                "id": code,
                "name": rule.name,
                "shortDescription": {"text": rule.summary},
                "fullDescription": {"text": text.split("\n\n")[0].replace("\n", " ")},
                "help": {"text": text, "markdown": text},
                "helpUri": f"{_INFO_URI}#{code.lower()}-{rule.name}",
                "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
                "properties": {"tags": ["memory"]},
            }
        )
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "memwarden",
                        "version": version,
                        "semanticVersion": version,
                        "informationUri": _INFO_URI,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": result.root.as_uri() + "/"}},
                "columnKind": "unicodeCodePoints",
                "results": [_result(f, index) for f in result.findings],
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


def render(result: LintResult, fmt: str, version: str) -> str:
    """Render ``result`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return to_json(result, version)
    if fmt == "sarif":
        return to_sarif(result, version)
    return to_text(result)
