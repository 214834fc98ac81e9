"""The trace reader reads up to the damage: hostile JSON, huge numbers, gzip, thinning, clocks."""

from __future__ import annotations

import gzip
import json
import math
import warnings
from pathlib import Path

import pytest

from memwarden.exceptions import MemwardenWarning
from memwarden.report.summary import summarize
from memwarden.report.trace import FORMAT, TraceWriter, read_trace

HEADER = json.dumps({"format": FORMAT, "command": ["p"], "interval_s": 0.1})


def _sample(t: float, rss: int) -> str:
    return json.dumps({"type": "sample", "t_s": t, "rss_bytes": rss, "processes": 1})


def _file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read(path: Path) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemwardenWarning)
        return read_trace(path)


@pytest.mark.parametrize(
    "bad",
    [
        "[" * 100_000 + "]" * 100_000,  # deep nesting: RecursionError inside json
        '{"type": "sample", "t_s": NaN, "rss_bytes": 1}',
        '{"type": "sample", "t_s": 1, "rss_bytes": ' + "9" * 400 + "}",
        '{"type": "sample", "t_s": 1, "rss_bytes": ' + "9" * 5000 + "}",
        '{"type": "event", "t_s": 1e400, "kind": "x", "message": "y"}',
    ],
    ids=["deep-nesting", "nan", "400-digits", "5000-digits", "1e400"],
)
def test_hostile_line_is_damage_not_a_crash(tmp_path: Path, bad: str) -> None:
    """Each hostile line stops the reader there; the samples before it are kept."""
    path = _file(tmp_path, HEADER, _sample(0.1, 10), bad, _sample(0.3, 30))
    with pytest.warns(MemwardenWarning, match=":3:"):
        trace = read_trace(path)
    assert trace.damaged_line == 3
    assert [s.rss_bytes for s in trace.samples] == [10]


def test_lone_surrogates_are_replaced(tmp_path: Path) -> None:
    """A lone surrogate (legal in a JSON escape, not in UTF-8) never reaches an encoder."""
    label = json.dumps({"format": FORMAT, "command": ["p\ud800"], "label": "x\udcff"})
    event = '{"type": "event", "t_s": 1, "kind": "k\\ud800", "message": "m\\udfff"}'
    trace = read_trace(_file(tmp_path, label, event))
    for text in (trace.label, trace.command[0], trace.events[0].kind, trace.events[0].message):
        text.encode("utf-8")  # raises on a lone surrogate
        assert "\ufffd" in text


def test_huge_limit_in_the_header_is_ignored_with_a_note(tmp_path: Path) -> None:
    """A 400-digit limit_bytes is not a byte count: no limit, a problem noted, JSON stays small."""
    head = HEADER[:-1] + ', "limit_bytes": ' + "9" * 400 + "}"
    trace = read_trace(_file(tmp_path, head, _sample(0.1, 10)))
    assert trace.limit_bytes is None
    assert any("limit_bytes" in p for p in trace.problems)
    out = json.dumps(summarize(trace).to_dict(), allow_nan=False)
    assert "9" * 100 not in out


def test_infinite_interval_in_the_header_never_reaches_json(tmp_path: Path) -> None:
    """A header number that overflows to infinity gives a summary JSON can carry."""
    head = json.dumps({"format": FORMAT, "command": ["p"]})[:-1] + ', "interval_s": 1e999}'
    trace = read_trace(_file(tmp_path, head, _sample(0.1, 10)))
    data = summarize(trace).to_dict()
    json.dumps(data, allow_nan=False)
    assert math.isfinite(data["interval_s"])


def test_gzip_trace_is_read_by_its_magic(tmp_path: Path) -> None:
    """A gzip-compressed trace (any name) is decompressed, not called bad UTF-8."""
    plain = _file(tmp_path, HEADER, _sample(0.1, 10), _sample(0.2, 20))
    packed = tmp_path / "t.trace"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    trace = read_trace(packed, strict=True)
    assert [s.rss_bytes for s in trace.samples] == [10, 20]


def test_truncated_gzip_trace_is_read_up_to_the_damage(tmp_path: Path) -> None:
    """A gzip stream cut short ends the trace at the damage, with a warning."""
    lines = [HEADER] + [_sample(i * 0.1, i) for i in range(2000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    packed = tmp_path / "t.jsonl.gz"
    packed.write_bytes(data[: len(data) // 2])
    with pytest.warns(MemwardenWarning):
        trace = read_trace(packed)
    assert 0 < len(trace.samples) < 2000
    assert trace.damaged_line is not None


def test_thinned_trace_reports_the_samples_it_read(tmp_path: Path) -> None:
    """30,001 samples read with a bound of 100 are reported as 30,001, not stride x held."""
    body = "\n".join(_sample(round(i * 0.001, 4), 1000 + (i % 7)) for i in range(30_001))
    path = _file(tmp_path, HEADER, body)
    trace = read_trace(path, max_samples=100)
    assert trace.sample_count == 30_001
    assert summarize(trace).samples == 30_001
    assert len(trace.samples) <= 101


def test_thinning_is_even_over_the_timeline(tmp_path: Path) -> None:
    """Held samples are spread evenly in time: the first and last halves hold as many."""
    path = tmp_path / "t.jsonl"
    n = 10_000
    with TraceWriter(path, {"command": ["p"], "interval_s": 0.01}) as w:
        for i in range(n):
            w.sample(i * 0.01, 1000)
    trace = read_trace(path, max_samples=1500)
    mid = n * 0.01 / 2
    first = sum(1 for s in trace.samples if s.t_s < mid)
    second = len(trace.samples) - first
    assert abs(first - second) <= 2, (first, second)


def test_peak_survives_thinning(tmp_path: Path) -> None:
    """One high sample among many is kept whatever the stride."""
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, {"command": ["p"], "interval_s": 0.01}) as w:
        for i in range(20_000):
            w.sample(i * 0.01, 5_000_000 if i == 12_345 else 1000)
    trace = read_trace(path, max_samples=500)
    assert max(s.rss_bytes for s in trace.samples) == 5_000_000


def test_backwards_clock_gives_no_negative_times(tmp_path: Path) -> None:
    """Timestamps that run backwards (or start negative) never give a negative peak time."""
    path = _file(tmp_path, HEADER, _sample(-5.0, 10), _sample(2.0, 20), _sample(1.0, 90))
    trace = read_trace(path)
    summary = summarize(trace)
    assert all(s.t_s >= 0 for s in trace.samples)
    assert [s.t_s for s in trace.samples] == sorted(s.t_s for s in trace.samples)
    assert summary.peak_t_s is not None
    assert summary.peak_t_s >= 0
    assert summary.duration_s >= 0


def test_writer_stops_quietly_on_a_full_disk(tmp_path: Path) -> None:
    """ENOSPC from /dev/full: the writer keeps the error, calls back once, drops the rest."""
    errors: list[OSError] = []
    with TraceWriter("/dev/full", {"command": ["p"]}, on_error=errors.append) as w:
        for i in range(5):
            w.sample(i, 1)
    assert len(errors) == 1
    assert w.error is errors[0]
    assert w.dropped == 6  # the header and five samples


def test_exclusive_writer_refuses_an_existing_name(tmp_path: Path) -> None:
    """A name memwarden chose is created exclusively: an existing file is not truncated."""
    path = tmp_path / "t.jsonl"
    path.write_text("keep")
    with pytest.raises(FileExistsError):
        TraceWriter(path, {"command": ["p"]}, exclusive=True)
    assert path.read_text() == "keep"
