"""The lint rules against their fixture files, plus suppression, configuration and discovery."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden.exceptions import ConfigurationError
from memwarden.lint.config import LintConfig, load_lint_config
from memwarden.lint.rules import RULES
from memwarden.lint.runner import check_source, discover, lint_paths

FIXTURES = Path(__file__).resolve().parent.parent / "lint_fixtures"
_EXPECT = re.compile(r"#\s*expect:\s*(MW\d{3}(?:\s*,\s*MW\d{3})*)\s*$")


def expected(path: Path) -> list[tuple[int, str]]:
    """(line, code) pairs marked `# expect: CODE[, CODE]` in a fixture."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _EXPECT.search(line)
        if match:
            pairs.extend((number, code.strip()) for code in match.group(1).split(",") if code)
    return sorted(pairs)


def found(path: Path) -> list[tuple[int, str]]:
    return sorted((f.line, f.code) for f in check_source(path.read_bytes(), str(path)))


FIXTURE_FILES = sorted(FIXTURES.glob("*.py*"))


def test_every_rule_has_a_fixture() -> None:
    """Each rule code has a fixture file named after it, with at least one expected finding."""
    for code in RULES:
        files = [p for p in FIXTURE_FILES if p.name.startswith(code.lower())]
        assert files, f"no fixture for {code}"
        assert any(c == code for p in files for _, c in expected(p)), code


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixture_findings_match_expectations_exactly(fixture: Path) -> None:
    """Every rule reports exactly the lines marked `# expect:` in the fixture, and nothing else."""
    assert found(fixture) == expected(fixture)


def test_rule_docstrings_are_user_explanations() -> None:
    """Every rule class has a code, a name, a summary and a multi-paragraph docstring."""
    for code, rule in RULES.items():
        assert rule.code == code
        assert re.fullmatch(r"MW\d{3}", code)
        assert rule.name
        assert rule.summary
        assert rule.severity in ("error", "warning", "info")
        assert len(rule.explanation().split("\n\n")) >= 2, code


def test_info_severity_for_advice_rules() -> None:
    """MW201 and a bounded cache on a method (MW101) are info; a serialization clone a warning."""
    src = (
        "import functools, json\n"
        "def f(x, p):\n"
        "    p.read_text()\n"
        "    json.loads(json.dumps(x))\n"
        "class C:\n"
        "    @functools.lru_cache(maxsize=64)\n"
        "    def a(self): ...\n"
        "    @functools.cache\n"
        "    def b(self): ...\n"
    )
    severities = {(f.code, f.line): f.severity for f in check_source(src)}
    assert severities == {
        ("MW201", 3): "info",
        ("MW301", 4): "warning",
        ("MW101", 6): "info",
        ("MW101", 8): "warning",
    }


def test_unparsable_source_is_reported_not_raised() -> None:
    """A syntax error, a null byte and a bad encoding cookie each give one MW000 finding."""
    for src in (b"def f(:\n", b"x = 1\x00\n", b"# -*- coding: no-such-codec -*-\nx = 1\n"):
        findings = check_source(src, "bad.py")
        assert [f.code for f in findings] == ["MW000"], src
        assert findings[0].severity == "error"
        assert findings[0].line >= 1
        assert findings[0].column >= 1


def test_columns_count_characters_not_bytes() -> None:
    """A finding after non-ASCII text on the same line has a character-based 1-based column."""
    src = "import json\ns = 'éé'; y = json.loads(json.dumps(s))\n"
    (finding,) = check_source(src)
    assert finding.line == 2
    assert finding.column == src.splitlines()[1].index("json.loads") + 1


def test_select_and_ignore_filter_findings(tmp_path: Path) -> None:
    """select keeps only matching codes (prefixes work), ignore drops them, MW000 stays visible."""
    (tmp_path / "a.py").write_text(
        "import json, logging\ndef f(x):\n    json.loads(json.dumps(x))\n"
        "    logging.getLogger(f'job.{x.id}')\n"
    )
    (tmp_path / "b.py").write_text("def broken(:\n")
    every = lint_paths([tmp_path], root=tmp_path, jobs=1)
    assert sorted(f.code for f in every.findings) == ["MW000", "MW301", "MW601"]
    only6 = lint_paths([tmp_path], config=LintConfig(select=("MW6",)), root=tmp_path, jobs=1)
    assert sorted(f.code for f in only6.findings) == ["MW000", "MW601"]
    no_3 = lint_paths(
        [tmp_path], config=LintConfig(ignore=("MW301", "MW000")), root=tmp_path, jobs=1
    )
    assert [f.code for f in no_3.findings] == ["MW601"]


def test_pyproject_lint_table_is_read(tmp_path: Path) -> None:
    """[tool.memwarden.lint] select/ignore/exclude are read, codes upper-cased, strings accepted."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[tool.memwarden]\nmax_memory = "1 GiB"\n'
        '[tool.memwarden.lint]\nselect = ["mw1", "MW301"]\nignore = "MW102"\n'
        'exclude = ["generated/*", "legacy"]\n'
    )
    cfg = load_lint_config(pyproject)
    assert cfg.select == ("MW1", "MW301")
    assert cfg.ignore == ("MW102",)
    assert cfg.enabled("MW101")
    assert not cfg.enabled("MW102")
    assert not cfg.enabled("MW601")
    assert cfg.enabled("MW000")
    assert cfg.is_excluded("generated/x.py")
    assert cfg.is_excluded("src/legacy/old.py")
    assert not cfg.is_excluded("src/new.py")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('select = ["MW999"]', "MW999"),
        ('ignore = ["E501"]', "E501"),
        ("select = 3", "select=3"),
        ("exclude = [1]", "exclude"),
        ('selct = ["MW101"]', "selct"),
    ],
)
def test_bad_lint_configuration_names_the_value(tmp_path: Path, body: str, needle: str) -> None:
    """An unknown code, a wrong type or an unknown key raises ConfigurationError naming it."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f"[tool.memwarden.lint]\n{body}\n")
    with pytest.raises(ConfigurationError) as info:
        load_lint_config(pyproject)
    assert needle in str(info.value)
    assert str(pyproject) in str(info.value)


def test_discovery_skips_default_and_configured_excludes(tmp_path: Path) -> None:
    """Directory walks skip .venv/__pycache__ and configured globs; non-Python files are ignored."""
    for rel in (
        "pkg/a.py",
        "pkg/b.pyi",
        "pkg/c.txt",
        ".venv/lib/x.py",
        "gen/out.py",
        "pkg/__pycache__/a.py",
    ):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n")
    files = discover([tmp_path], LintConfig(exclude=("gen",)), tmp_path)
    assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == ["pkg/a.py", "pkg/b.pyi"]
    with pytest.raises(ConfigurationError, match="no-such"):
        discover([tmp_path / "no-such"], LintConfig(), tmp_path)


def test_unreadable_file_is_mw000_and_the_run_goes_on(tmp_path: Path) -> None:
    """A file that vanishes or cannot be read is reported as MW000 while other files are checked."""
    good = tmp_path / "good.py"
    good.write_text("import json\njson.loads(json.dumps(1))\n")
    locked = tmp_path / "locked.py"
    locked.write_text("x = 1\n")
    locked.chmod(0)
    try:
        result = lint_paths([good, locked], root=tmp_path, jobs=1)
    finally:
        locked.chmod(0o644)
    codes = {(Path(f.path).name, f.code) for f in result.findings}
    assert ("good.py", "MW301") in codes
    import os

    if os.geteuid() != 0:  # root reads anything: then only the good file's finding is there
        assert ("locked.py", "MW000") in codes


def test_lint_runs_on_its_own_source_without_internal_errors() -> None:
    """Linting the linter and its engine gives no MW000 (no parse failure, no rule crash)."""
    src = Path(__file__).resolve().parents[2] / "src" / "memwarden"
    result = lint_paths([src / "lint", src / "incremental.py"], root=src, jobs=1)
    assert len(result.files) >= 7
    assert [f for f in result.findings if f.code == "MW000"] == []


def test_docs_cover_every_rule_and_the_hook_is_declared() -> None:
    """docs/lint.md has a section per rule; .pre-commit-hooks.yaml declares memwarden-lint."""
    repo = Path(__file__).resolve().parents[2]
    docs = (repo / "docs" / "lint.md").read_text()
    for code, rule in RULES.items():
        assert f"### {code} {rule.name}" in docs, code
    hooks = (repo / ".pre-commit-hooks.yaml").read_text()
    assert "- id: memwarden-lint" in hooks
    assert "entry: memwarden lint" in hooks


_SNIPPETS = [
    "import functools as ft\n",
    "class A:\n    @ft.lru_cache\n    def m(self): pass\n",
    "_c = {}\ndef f(k):\n    _c[k] = 1\n",
    "def g(p):\n    return open(p).read()\n",
    "import json\nx = json.loads(json.dumps(1))\n",
    "for i in range(3):\n    bus.on('x', lambda e: e)\n",
    "import logging\ndef h(n):\n    logging.getLogger(n)\n",
    "x = (\n",
    "\x00",
    "# memwarden: ignore[\n",
    "def f(:\n",
    "    \n",
]


@given(st.lists(st.sampled_from(_SNIPPETS), max_size=8), st.binary(max_size=40))
@settings(max_examples=150, deadline=None)
def test_check_source_never_raises(parts: list[str], noise: bytes) -> None:
    """Any mix of valid, broken and binary source gives findings (maybe MW000), never an error."""
    findings = check_source("".join(parts).encode() + noise, "fuzz.py")
    assert all(f.code in RULES for f in findings)
    assert all(f.line >= 1 and f.column >= 1 for f in findings)
