"""The memwarden.trace/1 reader and writer: round trips, damage, versions, bounds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden.exceptions import MemwardenWarning, TraceFormatError
from memwarden.report.trace import (
    FORMAT,
    Site,
    SiteSnapshot,
    Span,
    TraceEnd,
    TraceWriter,
    append_record,
    iter_records,
    read_trace,
)


def _write(path: Path, *, samples: int = 5) -> None:
    with TraceWriter(path, {"command": ["prog", "--x"], "interval_s": 0.1}) as w:
        for i in range(samples):
            w.sample(i * 0.1, 1000 + i, 1)
        w.span(Span("load", 0.05, 0.2, 10, 2000, 5, 6))
        w.sites(SiteSnapshot("peak", 0.3, 100, 120, (Site("a.py", 3, 64, 2, "x = []"),)))
        w.event(0.4, "limit", "over")
        w.end(TraceEnd(0.5, 0, "exited", None, 2000, 1900))


def test_round_trip_keeps_every_record(tmp_path: Path) -> None:
    """What the writer writes, the reader returns field for field."""
    path = tmp_path / "t.jsonl"
    _write(path)
    trace = read_trace(path)
    assert trace.header["format"] == FORMAT
    assert trace.command == ["prog", "--x"]
    assert [s.rss_bytes for s in trace.samples] == [1000, 1001, 1002, 1003, 1004]
    assert trace.spans == [Span("load", 0.05, 0.2, 10, 2000, 5, 6)]
    assert trace.sites[0].sites[0] == Site("a.py", 3, 64, 2, "x = []")
    assert trace.events[0].kind == "limit"
    assert trace.end == TraceEnd(0.5, 0, "exited", None, 2000, 1900)
    assert trace.peak_rss_bytes == 2000
    assert trace.duration_s == 0.5
    assert trace.damaged_line is None
    assert trace.problems == []


def test_every_line_is_one_json_object(tmp_path: Path) -> None:
    """The file is JSON Lines: each line parses alone, header first."""
    path = tmp_path / "t.jsonl"
    _write(path)
    lines = path.read_text().splitlines()
    objs = [json.loads(line) for line in lines]
    assert objs[0]["format"] == "memwarden.trace/1"
    assert all(isinstance(o, dict) for o in objs)
    assert objs[-1]["type"] == "end"


def test_truncated_last_line_is_read_up_to_the_damage(tmp_path: Path) -> None:
    """A crash mid-write leaves a partial last line: the rest is read, with a warning."""
    path = tmp_path / "t.jsonl"
    _write(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])  # cut inside the end record
    with pytest.warns(MemwardenWarning, match="truncated"):
        trace = read_trace(path)
    assert len(trace.samples) == 5
    assert trace.end is None
    assert trace.damaged_line == len(data[: len(data) - 30].splitlines())
    assert trace.problems


def test_corrupt_middle_line_stops_reading_and_names_the_line(tmp_path: Path) -> None:
    """Garbage in the middle: records before it are kept and the warning names line 4."""
    path = tmp_path / "t.jsonl"
    _write(path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = b"{not json\n"
    path.write_bytes(b"".join(lines))
    with pytest.warns(MemwardenWarning, match=r":4:"):
        trace = read_trace(path)
    assert trace.damaged_line == 4
    assert len(trace.samples) == 2


def test_strict_refuses_damage_with_the_line(tmp_path: Path) -> None:
    """strict=True raises TraceFormatError carrying the path and line number."""
    path = tmp_path / "t.jsonl"
    _write(path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"type": "sample", "t_s": "soon", "rss_bytes": 1}\n'
    path.write_bytes(b"".join(lines))
    with pytest.raises(TraceFormatError, match=r"t\.jsonl:3") as info:
        read_trace(path, strict=True)
    assert info.value.line == 3
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"hello\n", "not a JSON record"),
        (b"[1, 2]\n", "expected a JSON object"),
        (b'{"format": "something/1"}\n', "not a memwarden trace"),
        (b'{"format": "memwarden.trace/2"}\n', "unsupported trace version"),
    ],
)
def test_bad_headers_are_refused(tmp_path: Path, content: bytes, match: str) -> None:
    """A file that is not a version-1 trace is refused at line 1, even when not strict."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(content)
    with pytest.raises(TraceFormatError, match=match) as info:
        read_trace(path)
    assert info.value.line == 1


def test_unknown_record_types_are_skipped(tmp_path: Path) -> None:
    """A record type from a later minor version is ignored, not an error."""
    path = tmp_path / "t.jsonl"
    _write(path)
    with path.open("a") as fh:
        fh.write('{"type": "gpu_sample", "t_s": 1.0, "vram_bytes": 5}\n')
    trace = read_trace(path, strict=True)
    assert len(trace.samples) == 5


def test_missing_end_record_is_noted(tmp_path: Path) -> None:
    """A trace without an end record (still running, or memwarden killed) says so."""
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, {"command": ["x"]}) as w:
        w.sample(0.0, 5, 1)
        w.sample(0.2, 7, 1)
    trace = read_trace(path)
    assert trace.end is None
    assert trace.duration_s == 0.2
    assert any("no end record" in p for p in trace.problems)


def test_long_timelines_are_thinned_keeping_the_peak(tmp_path: Path) -> None:
    """Over max_samples the reader merges neighbours, bounded, and the peak survives."""
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, {"command": ["x"]}) as w:
        for i in range(1000):
            w.sample(i * 0.01, 10_000_000 if i == 777 else 1000 + i % 7, 1)
    trace = read_trace(path, max_samples=100)
    assert len(trace.samples) <= 100
    assert trace.stride > 1
    assert max(s.rss_bytes for s in trace.samples) == 10_000_000


def test_writer_refuses_nan(tmp_path: Path) -> None:
    """NaN is not JSON: the writer raises instead of writing an unreadable line."""
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, {"command": ["x"]}) as w, pytest.raises(ValueError):
        w.sample(float("nan"), 1, 1)
    assert read_trace(path).samples == []


def test_two_processes_appending_keep_lines_whole(tmp_path: Path) -> None:
    """Parent and a forked child appending at once never interleave bytes within a line."""
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, {"command": ["x"]})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    pid = os.fork()
    if pid == 0:  # child: many span records
        try:
            for i in range(500):
                append_record(
                    fd, {"type": "span", "name": "c" * 200, "start_s": i, "duration_s": 1}
                )
        finally:
            os._exit(0)
    for i in range(500):
        writer.sample(float(i), i, 1)
    os.waitpid(pid, 0)
    writer.close()
    os.close(fd)
    trace = read_trace(path, strict=True)
    assert len(trace.samples) == 500
    assert len(trace.spans) == 500


def test_iter_records_yields_line_numbers(tmp_path: Path) -> None:
    """iter_records gives each record with its 1-based line number, header first."""
    path = tmp_path / "t.jsonl"
    _write(path, samples=2)
    numbered = list(iter_records(path))
    assert numbered[0][0] == 1
    assert numbered[0][1]["format"] == FORMAT
    assert [n for n, _ in numbered] == list(range(1, len(numbered) + 1))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
            st.integers(min_value=0, max_value=2**48),
            st.integers(min_value=1, max_value=64),
        ),
        max_size=50,
    ),
    st.text(max_size=30),
)
def test_samples_and_names_round_trip(
    tmp_path_factory: pytest.TempPathFactory, samples: list[tuple[float, int, int]], name: str
) -> None:
    """Any samples and any span name (unicode, quotes, newlines) read back unchanged."""
    path = tmp_path_factory.mktemp("rt") / "t.jsonl"
    with TraceWriter(path, {"command": [name]}) as w:
        for t, rss, n in samples:
            w.sample(t, rss, n)
        w.span(Span(name, 0.0, 1.0))
    trace = read_trace(path, strict=True)
    assert [(s.rss_bytes, s.processes) for s in trace.samples] == [(r, n) for _, r, n in samples]
    assert trace.spans[0].name == name
    assert trace.command == [name]
