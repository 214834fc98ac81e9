"""``memwarden report``: terminal, JSON and HTML output; damaged and missing traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memwarden.cli import main
from memwarden.report.trace import Site, SiteSnapshot, Span, TraceEnd, TraceWriter

MiB = 2**20


def _trace(path: Path, *, label: str = "job", grow: bool = False, reason: str = "exited") -> Path:
    with TraceWriter(path, {"command": ["job.py"], "interval_s": 0.1, "label": label}) as w:
        for i in range(100):
            w.sample(i * 0.1, (50 + (i if grow else i % 3)) * MiB, 1)
        w.span(Span("load", 0.5, 2.0, 10 * MiB, 60 * MiB))
        w.sites(
            SiteSnapshot(
                "exit", 9.9, 5 * MiB, 6 * MiB, (Site("job.py", 12, 5 * MiB, 9, "x = load()"),)
            )
        )
        w.end(TraceEnd(10.0, 0, reason, None, (150 if grow else 52) * MiB, 0))
    return path


def test_terminal_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The terminal report shows peak, duration, sites and operations."""
    path = _trace(tmp_path / "t.jsonl")
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "peak RSS" in out
    assert "52.0 MiB" in out
    assert "10.00 s" in out
    assert "job.py:12" in out
    assert "load" in out
    assert "no steady growth: below the noise floor (4.0 MiB)" in out


def test_leak_suspicion_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Steady growth after warm-up in a program that did not end by itself is a suspected leak."""
    path = _trace(tmp_path / "t.jsonl", grow=True, reason="interrupted")
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "LEAK SUSPECTED" in out
    assert "did not stop" in out


def test_growth_until_exit_is_not_called_a_leak(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A program that builds its data and exits "grows"; it is not a suspected leak."""
    path = _trace(tmp_path / "t.jsonl", grow=True, reason="exited")
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "LEAK SUSPECTED" not in out
    assert "grows:" in out
    assert "until the program" in out


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the summary as one JSON object."""
    path = _trace(tmp_path / "t.jsonl")
    assert main(["report", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["peak_rss_bytes"] == 52 * MiB
    assert data["operations"][0]["name"] == "load"
    assert data["exit_sites"]["sites"][0]["line"] == 12


def test_html_output_of_two_traces(tmp_path: Path) -> None:
    """--html with two traces writes one self-contained page comparing them."""
    a = _trace(tmp_path / "a.jsonl", label="first")
    b = _trace(tmp_path / "b.jsonl", label="second", grow=True)
    out = tmp_path / "r.html"
    assert main(["report", "--json", str(a), str(b), "--html", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "Comparison" in page
    assert "first" in page
    assert "second" in page


def test_corrupt_trace_is_refused_with_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--strict on a damaged trace exits 1 and names the file and line."""
    path = _trace(tmp_path / "t.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[5] = b"\x00\x01garbage\n"
    path.write_bytes(b"".join(lines))
    assert main(["report", "--strict", str(path)]) == 1
    assert "t.jsonl:6" in capsys.readouterr().err


def test_truncated_trace_is_read_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --strict a truncated trace is reported up to the damage, with a warning."""
    path = _trace(tmp_path / "t.jsonl")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert main(["report", str(path)]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err
    assert "peak RSS" in captured.out


def test_not_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is not a trace is refused at line 1."""
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    assert main(["report", str(path)]) == 1
    assert "notes.txt:1" in capsys.readouterr().err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing trace is a clear error, not a traceback."""
    assert main(["report", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such trace file" in capsys.readouterr().err
