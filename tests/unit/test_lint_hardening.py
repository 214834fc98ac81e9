"""Hostile inputs to ``memwarden lint``: odd files, an unsafe or damaged cache, odd names."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from memwarden.exceptions import ConfigurationError
from memwarden.incremental import DB_NAME
from memwarden.lint.output import to_sarif, to_text
from memwarden.lint.runner import (
    CACHE_BUSY_TIMEOUT_S,
    MAX_FILE_BYTES,
    Baseline,
    LintResult,
    check_source,
    lint_paths,
)

LEAKY = "import json\n\ndef f(x):\n    return json.loads(json.dumps(x))\n"


def _codes(result: LintResult) -> list[tuple[str, int, str]]:
    return [(Path(f.path).name, f.line, f.code) for f in result.findings]


def test_fifo_named_py_is_reported_not_read(tmp_path: Path) -> None:
    """A FIFO named ``*.py`` would block a read forever: it is an MW000 finding, not opened."""
    (tmp_path / "ok.py").write_text(LEAKY)
    os.mkfifo(tmp_path / "pipe.py")
    outcome: list[LintResult] = []
    worker = threading.Thread(
        target=lambda: outcome.append(lint_paths([tmp_path], root=tmp_path, jobs=1)),
        daemon=True,
    )
    worker.start()
    worker.join(60)
    assert outcome, "lint blocked on the FIFO"
    result = outcome[0]
    findings = {Path(f.path).name: f for f in result.findings}
    assert findings["pipe.py"].code == "MW000"
    assert "FIFO" in findings["pipe.py"].message
    assert findings["ok.py"].code == "MW301"


def test_symlink_to_a_device_is_not_read(tmp_path: Path) -> None:
    """``x.py -> /dev/zero`` would be read without end (an OOM kill): reported, not read."""
    (tmp_path / "x.py").symlink_to("/dev/zero")
    result = lint_paths([tmp_path], root=tmp_path, jobs=1)
    (finding,) = result.findings
    assert finding.code == "MW000"
    assert "device" in finding.message


def test_oversized_file_gets_a_finding_that_says_so(tmp_path: Path) -> None:
    """A file over the size cap is not read; the finding names its size and the limit."""
    big = tmp_path / "big.py"
    with big.open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    result = lint_paths([big], root=tmp_path, jobs=1)
    (finding,) = result.findings
    assert finding.code == "MW000"
    assert str(MAX_FILE_BYTES + 1) in finding.message
    assert "limit" in finding.message


def test_parser_memory_error_has_a_message() -> None:
    """The parser's MemoryError (deep unary nesting) carries no text; the finding explains."""
    (finding,) = check_source("-" * 200_000 + "1\n")
    assert finding.code == "MW000"
    assert "MemoryError" in finding.message
    assert "nested too deeply" in finding.message


def test_symlinked_cache_directory_is_refused(tmp_path: Path) -> None:
    """A cache directory that is a symlink (a cloned repository can hold one) is refused."""
    (tmp_path / "a.py").write_text(LEAKY)
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / ".memwarden-cache").symlink_to(victim)
    with pytest.raises(ConfigurationError, match="symlink"):
        lint_paths([tmp_path / "a.py"], cache_dir=tmp_path / ".memwarden-cache", root=tmp_path)
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize("name", [".gitignore", DB_NAME])
def test_symlinked_cache_file_is_refused_and_its_target_untouched(
    tmp_path: Path, name: str
) -> None:
    """A ``.gitignore`` or database in the cache that is a symlink is never written through."""
    (tmp_path / "a.py").write_text(LEAKY)
    cache = tmp_path / "cache"
    cache.mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (cache / name).symlink_to(target)
    with pytest.raises(ConfigurationError, match=r"symlink.*--no-cache"):
        lint_paths([tmp_path / "a.py"], cache_dir=cache, root=tmp_path)
    assert target.read_text() == "keep me\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_cache_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(LEAKY)
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chown(cache, 12345, 12345)
    with pytest.raises(ConfigurationError, match="owned by uid 12345"):
        lint_paths([tmp_path / "a.py"], cache_dir=cache, root=tmp_path)


def test_cache_gitignore_is_created(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(LEAKY)
    lint_paths([tmp_path / "a.py"], cache_dir=tmp_path / "cache", root=tmp_path, jobs=1)
    assert (tmp_path / "cache" / ".gitignore").read_text().splitlines()[-1] == "*"


@pytest.mark.parametrize(
    "value",
    [
        b"[[1, 2]]",  # a short row
        b'[["4", 12, "MW301", "m", "warning", 4, 40]]',  # a line that is a string
        b'[[4, 12, "MW301", "m", "loud", 4, 40]]',  # an unknown severity
        b'{"not": "a list"}',
        b"[]",  # an empty result would hide the finding: only trusted while the digest holds
    ],
)
def test_damaged_cache_rows_neither_crash_nor_hide_findings(tmp_path: Path, value: bytes) -> None:
    """Rows with wrong types or lengths are rechecked; the findings are those of a clean run."""
    src = tmp_path / "a.py"
    src.write_text(LEAKY)
    cache = tmp_path / "cache"
    first = lint_paths([src], cache_dir=cache, root=tmp_path, jobs=1)
    assert _codes(first) == [("a.py", 4, "MW301")]
    with sqlite3.connect(cache / DB_NAME) as conn:
        conn.execute("UPDATE results SET value = ?", (value,))
    conn.close()
    second = lint_paths([src], cache_dir=cache, root=tmp_path, jobs=1)
    if value == b"[]":
        # A well-formed empty result is indistinguishable from a clean file; what matters
        # is that a changed file is never served from it.
        src.write_text(LEAKY + "\n")
        second = lint_paths([src], cache_dir=cache, root=tmp_path, jobs=1)
    assert _codes(second) == _codes(first)


def test_page_level_corruption_heals_by_rebuilding(tmp_path: Path) -> None:
    """A database with garbage pages is rebuilt: the run is right and the next one cached."""
    for i in range(30):
        (tmp_path / f"m{i}.py").write_text(LEAKY + f"\nX{i} = {i}\n" + "# pad\n" * 200)
    cache = tmp_path / "cache"
    first = lint_paths([tmp_path], cache_dir=cache, root=tmp_path, jobs=1)
    db = cache / DB_NAME
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    assert len(data) > 3 * 4096
    data[4096 : len(data) - 1] = b"\xa5" * (len(data) - 4097)  # every page after the first
    db.write_bytes(bytes(data))
    second = lint_paths([tmp_path], cache_dir=cache, root=tmp_path, jobs=1)
    assert _codes(second) == _codes(first)
    third = lint_paths([tmp_path], cache_dir=cache, root=tmp_path, jobs=1)
    assert _codes(third) == _codes(first)
    assert third.cached == 30  # rebuilt by the second run


def test_locked_cache_is_waited_for_briefly(tmp_path: Path) -> None:
    """A cache another process holds locked costs a short wait, then the run goes on."""
    src = tmp_path / "a.py"
    src.write_text(LEAKY)
    cache = tmp_path / "cache"
    lint_paths([src], cache_dir=cache, root=tmp_path, jobs=1)
    src.write_text(LEAKY + "\n")
    holder = sqlite3.connect(cache / DB_NAME, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        result = lint_paths([src], cache_dir=cache, root=tmp_path, jobs=1)
    finally:
        holder.close()
    assert _codes(result) == [("a.py", 4, "MW301")]
    assert CACHE_BUSY_TIMEOUT_S <= 5  # not the 30 s default of the engine


def test_newline_in_a_file_name_cannot_forge_a_finding_line(tmp_path: Path) -> None:
    """Control characters in names and messages are escaped: one finding, one line."""
    name = "evil\nfake.py:1:1: MW999 forged\x1b]0;title\x07.py"
    (tmp_path / name).write_text(LEAKY)
    result = lint_paths([tmp_path], root=tmp_path, jobs=1)
    text = to_text(result)
    assert text.count("\n") == 1
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "evil\\nfake.py" in text


def test_sarif_uris_are_percent_encoded(tmp_path: Path) -> None:
    """``#``, ``%``, spaces and newlines in file names are percent-encoded in SARIF URIs."""
    name = "a #1 100%\nb.py"
    (tmp_path / name).write_text(LEAKY)
    result = lint_paths([tmp_path], root=tmp_path, jobs=1)
    log = json.loads(to_sarif(result, "1.0"))
    (res,) = log["runs"][0]["results"]
    uri = res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert not any(c in uri for c in "# \n")
    assert "%25" in uri
    assert unquote(uri) == name
    base = log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert unquote(urlparse(base).path).rstrip("/") == str(tmp_path)


def test_baseline_hides_known_findings_and_survives_moved_lines(tmp_path: Path) -> None:
    """Known findings stay hidden when code above them moves; a new one is reported."""
    src = tmp_path / "a.py"
    src.write_text(LEAKY)
    known = lint_paths([src], root=tmp_path, jobs=1)
    path = tmp_path / "baseline.json"
    Baseline.of(known.findings, tmp_path).write(path)
    baseline = Baseline.load(path)
    src.write_text("# moved\n\n" + LEAKY + "\ndef g(y):\n    return json.loads(json.dumps(y))\n")
    result = lint_paths([src], root=tmp_path, jobs=1, baseline=baseline)
    assert _codes(result) == [("a.py", 9, "MW301")]
    assert result.baselined == 1


def test_bad_baseline_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text('{"findings": 3}')
    with pytest.raises(ConfigurationError, match="not a memwarden baseline"):
        Baseline.load(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        Baseline.load(tmp_path / "missing.json")


def test_tests_and_fixtures_are_skipped_unless_included(tmp_path: Path) -> None:
    """Below a linted directory tests are skipped; --include-tests or naming them lints them."""
    from memwarden.lint.config import LintConfig

    for rel in ("pkg/mod.py", "pkg/tests/t.py", "pkg/test_x.py", "pkg/conftest.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(LEAKY)

    def names(result: LintResult) -> list[str]:
        return sorted(Path(f.path).name for f in result.findings)

    assert names(lint_paths([tmp_path], root=tmp_path, jobs=1)) == ["mod.py"]
    every = lint_paths([tmp_path], config=LintConfig(include_tests=True), root=tmp_path, jobs=1)
    assert names(every) == ["conftest.py", "mod.py", "t.py", "test_x.py"]
    named = lint_paths([tmp_path / "pkg" / "tests"], root=tmp_path, jobs=1)
    assert names(named) == ["t.py"]


def test_every_finding_says_how_to_silence_it() -> None:
    (finding,) = check_source(LEAKY)
    assert "# memwarden: ignore[MW301] <reason>" in finding.message


def test_rules_need_no_isinstance_asserts_and_model_does_not_import_rules() -> None:
    """The typed ModuleIndex.of() makes asserts unnecessary; model/index sit below rules."""
    import memwarden.lint.index as index
    import memwarden.lint.model as model
    import memwarden.lint.rules as rules

    assert "assert isinstance" not in Path(str(rules.__file__)).read_text()
    for module in (model, index):
        assert "memwarden.lint.rules" not in Path(str(module.__file__)).read_text()
