"""`memwarden lint` end to end: exit codes, formats, configuration, cache, concurrent processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import memwarden
from memwarden.cli import main
from memwarden.incremental import DB_NAME
from memwarden.lint.runner import lint_paths

SRC = Path(__file__).resolve().parents[2] / "src"

LEAKY = """\
import functools, json


class Report:
    @functools.lru_cache(maxsize=None)
    def total(self):
        return 1


def clone(x):
    return json.loads(json.dumps(x))
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with a pyproject.toml, one leaky module, one clean module; cwd is its root."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "leaky.py").write_text(LEAKY)
    (pkg / "clean.py").write_text("def f(x):\n    return x\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "memwarden", "lint", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_findings_exit_1_in_text_format(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Findings print as path:line:col: CODE message and the exit status is 1."""
    assert main(["lint", "--no-cache"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines == [
        "pkg/leaky.py:5:6: MW101 `@functools.lru_cache(maxsize=None)` on method `Report.total`"
        " is unbounded and `self` is in its key: every instance it is called on stays alive"
        " as long as the class; use functools.cached_property or a per-instance cache"
        " (if intended: `# memwarden: ignore[MW101] <reason>` on that line)",
        "pkg/leaky.py:11:12: MW301 `json.loads(json.dumps(...))` deep-clones through a full"
        " serialized copy; copy only what changes (dict(x), copy.copy, dataclasses.replace)"
        " (if intended: `# memwarden: ignore[MW301] <reason>` on that line)",
    ]
    assert "2 finding(s) in 2 file(s)" in err


def test_clean_tree_exits_0(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path without findings exits 0 and prints no finding."""
    assert main(["lint", "--no-cache", "-q", "pkg/clean.py"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ""


def test_exit_zero_flag(project: Path) -> None:
    """--exit-zero reports findings but exits 0."""
    assert main(["lint", "--no-cache", "-q", "--exit-zero"]) == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["no/such/dir"], "no such file"),
        (["--select", "MW999"], "MW999"),
        (["--format", "xml"], "xml"),
        (["--jobs", "0"], "0"),
        (["--explain", "MW123"], "MW123"),
    ],
)
def test_usage_errors_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    """A missing path, unknown code, bad format or jobs, unknown rule exit 2 and say why."""
    assert main(["lint", "--no-cache", *args]) == 2
    assert needle in capsys.readouterr().err


def test_bad_pyproject_lint_table_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid [tool.memwarden.lint] is a usage error naming the file and key."""
    (project / "pyproject.toml").write_text('[tool.memwarden.lint]\nignroe = ["MW101"]\n')
    assert main(["lint", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "ignroe" in err
    assert "pyproject.toml" in err


def test_pyproject_select_ignore_exclude_apply(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[tool.memwarden.lint] ignore drops a code and exclude skips files; CLI --select overrides."""
    (project / "pyproject.toml").write_text(
        '[tool.memwarden.lint]\nignore = ["MW301"]\nexclude = ["gen"]\n'
    )
    (project / "gen").mkdir()
    (project / "gen" / "out.py").write_text(LEAKY)
    assert main(["lint", "--no-cache", "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [(f["path"], f["code"]) for f in doc["findings"]] == [("pkg/leaky.py", "MW101")]
    assert main(["lint", "--no-cache", "--format", "json", "--select", "MW3"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []


def test_json_output_to_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json -o FILE writes the findings and summary there, nothing on stdout."""
    target = project / "report.json"
    assert main(["lint", "--no-cache", "--format", "json", "-o", str(target)]) == 1
    assert capsys.readouterr().out == ""
    doc = json.loads(target.read_text())
    assert doc["summary"]["findings"] == 2
    assert doc["summary"]["files"] == 2
    assert doc["version"] == memwarden.__version__
    first = doc["findings"][0]
    assert set(first) >= {"path", "line", "column", "code", "severity", "message"}


def test_explain_and_list_rules(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--explain prints the rule's docstring; --list-rules lists every code."""
    assert main(["lint", "--explain", "mw501"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MW501 unclosed-resource (warning)")
    assert "Bad::" in out
    assert "Good" in out
    assert main(["lint", "--list-rules"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["MW000", "MW101", "MW102", "MW201", "MW301", "MW401", "MW501", "MW601"]


def test_unparsable_file_reported_and_run_goes_on(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A syntax error is MW000 while the other files' findings are still reported."""
    (project / "pkg" / "broken.py").write_text("def broken(:\n    pass\n")
    assert main(["lint", "--no-cache", "--format", "json"]) == 1
    codes = sorted(f["code"] for f in json.loads(capsys.readouterr().out)["findings"])
    assert codes == ["MW000", "MW101", "MW301"]


def test_cache_is_used_by_the_next_process(project: Path) -> None:
    """A second CLI process checks nothing (all from the cache in .memwarden-cache/)."""
    first = run_cli(["--format", "json"], project)
    assert first.returncode == 1, first.stderr
    assert json.loads(first.stdout)["summary"]["checked"] == 2
    assert (project / ".memwarden-cache" / DB_NAME).is_file()
    second = run_cli(["--format", "json"], project)
    doc = json.loads(second.stdout)
    assert doc["summary"]["checked"] == 0
    assert doc["summary"]["cached"] == 2
    assert doc["findings"] == json.loads(first.stdout)["findings"]
    (project / "pkg" / "clean.py").write_text("import json\njson.loads(json.dumps(1))\n")
    third = json.loads(run_cli(["--format", "json"], project).stdout)
    assert third["summary"]["checked"] == 1
    assert third["summary"]["findings"] == 3


def test_no_cache_writes_nothing(project: Path) -> None:
    """--no-cache leaves no cache directory behind."""
    assert main(["lint", "--no-cache", "-q"]) == 1
    assert not (project / ".memwarden-cache").exists()


def test_cache_of_another_version_is_ignored(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results cached by another memwarden version are recomputed, not trusted."""
    cache = project / "cache"
    assert lint_paths([project], cache_dir=cache, jobs=1).checked == 2
    assert lint_paths([project], cache_dir=cache, jobs=1).checked == 0
    monkeypatch.setattr(memwarden, "__version__", "0.0.0-other")
    assert lint_paths([project], cache_dir=cache, jobs=1).checked == 2


@pytest.mark.slow
def test_concurrent_cli_runs_share_the_cache_safely(project: Path) -> None:
    """Three simultaneous lint processes on one cache all succeed alike; the cache stays sound."""
    for i in range(40):
        (project / "pkg" / f"m{i}.py").write_text(LEAKY if i % 3 == 0 else "x = 1\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "memwarden", "lint", "--format", "json", "-j", "2"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    docs = [json.loads(out) for out, _ in outs]
    assert [p.returncode for p in procs] == [1, 1, 1], [err for _, err in outs]
    assert docs[0]["findings"] == docs[1]["findings"] == docs[2]["findings"]
    assert docs[0]["summary"]["findings"] == 2 * 15
    with sqlite3.connect(project / ".memwarden-cache" / DB_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    after = json.loads(run_cli(["--format", "json"], project).stdout)
    assert after["summary"]["checked"] == 0
    assert after["findings"] == docs[0]["findings"]


def test_help_names_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    """`memwarden lint --help` (the command's docstring) lists every rule code and name."""
    from memwarden.lint.rules import RULES

    assert main(["lint", "--help"]) == 0
    out = capsys.readouterr().out
    for code, rule in RULES.items():
        assert f"{code} {rule.name}" in out


def test_baseline_round_trip_shows_only_new_findings(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--write-baseline records today's findings (exit 0); --baseline then shows only new ones."""
    assert main(["lint", "--no-cache", "--write-baseline", "base.json"]) == 0
    capsys.readouterr()
    assert main(["lint", "--no-cache", "--baseline", "base.json"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "2 in the baseline" in err
    with (project / "pkg" / "clean.py").open("a") as fh:
        fh.write("\nimport json\n\ndef again(y):\n    return json.loads(json.dumps(y))\n")
    assert main(["lint", "--no-cache", "--baseline", "base.json"]) == 1
    out, _ = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == ["pkg/clean.py"]


def test_bad_baseline_is_a_usage_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "base.json").write_text("not json")
    assert main(["lint", "--no-cache", "--baseline", "base.json"]) == 2
    assert "--baseline base.json: cannot read it" in capsys.readouterr().err


def test_include_tests_flag(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """tests/ below the linted directory is skipped by default and linted with the flag."""
    (project / "tests").mkdir()
    (project / "tests" / "test_it.py").write_text(LEAKY)
    assert main(["lint", "--no-cache", "-q", "--format", "json"]) == 1
    paths = {f["path"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert paths == {"pkg/leaky.py"}
    assert main(["lint", "--no-cache", "-q", "--format", "json", "--include-tests"]) == 1
    paths = {f["path"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert paths == {"pkg/leaky.py", "tests/test_it.py"}


def test_symlinked_cache_is_a_usage_error_naming_it(
    project: Path, capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A planted .memwarden-cache symlink is refused with a message, not followed."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (project / ".memwarden-cache").symlink_to(elsewhere)
    assert main(["lint", "-q"]) == 2
    err = capsys.readouterr().err
    assert ".memwarden-cache" in err
    assert "symlink" in err
    assert list(elsewhere.iterdir()) == []
