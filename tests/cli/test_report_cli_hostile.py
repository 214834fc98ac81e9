"""`memwarden report` with hostile traces: escape sequences, long paths, loops, bad outputs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from memwarden.cli import main
from memwarden.report.terminal import cut_left, printable
from memwarden.report.trace import Site, SiteSnapshot, Span, TraceEnd, TraceWriter

MiB = 2**20
EVIL = "\x1b[2J\x1b]0;pwned\x07\r\nFAKE LINE\u202e\x9b31m"


def _trace(path: Path, *, label: str = "job", site_file: str = "job.py", evil: str = EVIL) -> Path:
    with TraceWriter(path, {"command": [label], "interval_s": 0.1, "label": label}) as w:
        for i in range(20):
            w.sample(i * 0.1, 50 * MiB + i, 1)
        w.span(Span(f"op{evil}", 0.5, 1.0, MiB, 60 * MiB))
        w.sites(SiteSnapshot("exit", 1.9, MiB, MiB, (Site(site_file, 353, MiB, 3, evil),)))
        w.event(1.0, f"kind{evil}", f"message{evil}")
        w.end(TraceEnd(2.0, 0, "exited", None, 51 * MiB, 0))
    return path


def test_printable_escapes_every_control_character() -> None:
    """C0, DEL, C1 and bidi overrides become visible escapes; ordinary text is unchanged."""
    out = printable(EVIL)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)
    assert "\u202e" not in out
    assert "\\x1b[2J" in out
    assert printable("plain — ü ✓") == "plain — ü ✓"


def test_cut_left_keeps_the_file_and_line() -> None:
    """Long paths lose their start, never their file name and line."""
    text = "/usr/lib/python3.11/json/decoder.py:353"
    cut = cut_left(text, 22)
    assert cut.startswith("…")
    assert cut.endswith("decoder.py:353")
    assert len(cut) == 22
    assert cut_left("short.py:1", 22) == "short.py:1"


def test_terminal_report_has_no_raw_escape_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels, operation names, site code and events from a trace reach the terminal escaped."""
    path = _trace(tmp_path / "t.jsonl", label=f"job{EVIL}")
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "\x9b" not in out
    assert "\u202e" not in out
    assert "\nFAKE LINE" not in out
    assert "\\x1b" in out


def test_long_site_paths_are_cut_from_the_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long allocation-site path keeps its end (`…/json/decoder.py:353`) in a narrow terminal."""
    monkeypatch.setenv("COLUMNS", "80")
    deep = "/very/long/prefix/" * 6 + "lib/python3.11/json/decoder.py"
    path = _trace(tmp_path / "t.jsonl", site_file=deep)
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "json/decoder.py:353" in out
    assert "…" in out


def test_json_report_never_prints_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A header with an overflowing number still gives strict JSON."""
    path = tmp_path / "t.jsonl"
    head = '{"format": "memwarden.trace/1", "command": ["p"], "interval_s": 1e999}'
    sample = '{"type": "sample", "t_s": 0.1, "rss_bytes": 10, "processes": 1}'
    path.write_text(f"{head}\n{sample}\n")
    assert main(["report", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out
    assert "Infinity" not in out
    json.loads(out)


def test_gzip_trace_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A gzip'd trace is read (by its magic), not refused as bad UTF-8."""
    plain = _trace(tmp_path / "t.jsonl")
    packed = tmp_path / "t.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert main(["report", "--json", str(packed)]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 20


def test_symlink_loop_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A symlink loop is reported as a loop, not as a missing file."""
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert main(["report", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "symlink loop" in err
    assert "no such" not in err


def test_html_into_a_missing_directory_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--html` into a missing directory: a message naming it, exit 2, no traceback."""
    path = _trace(tmp_path / "t.jsonl", evil="")
    out = tmp_path / "nope" / "r.html"
    pytest.importorskip("matplotlib")
    assert main(["report", str(path), "--html", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"directory {out.parent} does not exist" in err
    assert "Traceback" not in err


def test_html_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    """`--html` over a symlink replaces the link; the file it pointed to is untouched."""
    pytest.importorskip("matplotlib")
    path = _trace(tmp_path / "t.jsonl", evil="")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "r.html").symlink_to(victim)
    assert main(["report", str(path), "--html", str(tmp_path / "r.html")]) == 0
    assert victim.read_text() == "precious"
    assert "<html" in (tmp_path / "r.html").read_text()


def test_error_messages_escape_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    """Errors quoting hostile names (a size, a trace path, a program) reach stderr escaped."""
    assert main(["run", "--limit", "1\x1b]0;pwned\x07GB", "--", "true"]) == 2
    assert main(["report", "no-such-\x1b[2J\x07.jsonl"]) == 2
    assert main(["run", "-q", "-o", "/nonexistent\x1b[2J/t.jsonl", "--", "true"]) == 2
    assert main(["run", "-q", "-o", "/dev/null", "--", "no-such-\x1b[2J-program"]) == 127
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "\x07" not in err
    assert err.count("\\x1b") >= 3
