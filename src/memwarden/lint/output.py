"""Render lint results as text (``path:line:col: CODE message``), JSON, or SARIF 2.1.0."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from memwarden.lint.model import Finding
from memwarden.lint.rules import RULES
from memwarden.lint.runner import LintResult

__all__ = ["FORMATS", "escape_control", "render", "to_json", "to_sarif", "to_text"]

FORMATS = ("text", "json", "sarif")

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
_INFO_URI = "https://github.com/memwarden/memwarden/blob/main/docs/lint.md"


# C0 and C1 control characters and DEL; a file name may hold any of them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def escape_control(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\n``, ``\\x1b``).

    A newline in a file name would otherwise start a forged finding line, and an escape
    sequence would reach the terminal (clear the screen, set the window title).
    """
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def to_text(result: LintResult) -> str:
    """One line per finding: ``path:line:col: CODE message`` (info findings say so).

    Control characters in paths and messages are escaped: one finding is one line.
    """
    lines = []
    for f in result.findings:
        tag = " [info]" if f.severity == "info" else ""
        lines.append(
            f"{escape_control(f.path)}:{f.line}:{f.column}: {f.code}{tag} "
            f"{escape_control(f.message)}"
        )
    return "\n".join(lines) + ("\n" if lines else "")


def summary(result: LintResult) -> dict[str, int]:
    """Counts for the summary line and the JSON ``summary`` object."""
    return {
        "files": len(result.files),
        "findings": len(result.findings),
        "checked": result.checked,
        "cached": result.cached,
        "baselined": result.baselined,
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
    # URIs, not paths: `#`, `%`, `?`, spaces and newlines in a file name are
    # percent-encoded (RFC 3986), so a viewer resolves the file the finding is about.
    p = Path(path)
    if p.is_absolute():
        return {"uri": "file://" + quote(p.as_posix(), safe="/")}
    return {"uri": quote(p.as_posix(), safe="/"), "uriBaseId": "%SRCROOT%"}


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
                "originalUriBaseIds": {
                    "%SRCROOT%": {"uri": "file://" + quote(result.root.as_posix(), safe="/") + "/"}
                },
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
