"""``memwarden run`` through ``main([...])``: forms, exit codes, limit, heap tracing, errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from memwarden.cli import main
from memwarden.report.runner import EXIT_LIMIT
from memwarden.report.trace import read_trace


def _script(tmp_path: Path, body: str, name: str = "prog.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_script_form_writes_a_complete_trace(tmp_path: Path) -> None:
    """`run script.py ARGS` runs it with this Python, passes ARGS, and records samples."""
    out = tmp_path / "out.txt"
    prog = _script(
        tmp_path,
        """
        import sys, time
        data = bytearray(30 * 2**20)
        for i in range(0, len(data), 4096):
            data[i] = 1
        time.sleep(0.3)
        open(sys.argv[1], "w").write("ran " + sys.argv[2])
        """,
    )
    trace_path = tmp_path / "t.jsonl"
    code = main(
        ["run", "-q", "--interval", "0.02", "-o", str(trace_path), str(prog), str(out), "x"]
    )
    assert code == 0
    assert out.read_text() == "ran x"
    trace = read_trace(trace_path, strict=True)
    assert trace.end is not None
    assert trace.end.reason == "exited"
    assert len(trace.samples) >= 3
    assert trace.peak_rss_bytes >= 30 * 2**20
    assert trace.command == [str(prog), str(out), "x"]


def test_exit_code_is_propagated(tmp_path: Path) -> None:
    """The program's own exit code becomes memwarden's."""
    prog = _script(tmp_path, "import sys; sys.exit(7)")
    assert main(["run", "-q", "-o", str(tmp_path / "t.jsonl"), str(prog)]) == 7


def test_command_form_after_double_dash(tmp_path: Path) -> None:
    """`run -- COMMAND ARGS` runs any program; a signal death gives 128+N."""
    trace = tmp_path / "t.jsonl"
    code = main(["run", "-q", "-o", str(trace), "--", "sh", "-c", "kill -TERM $$"])
    assert code == 128 + 15
    end = read_trace(trace).end
    assert end is not None
    assert (end.reason, end.signal) == ("signaled", 15)


def test_module_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run -m module` runs a module with this Python."""
    _script(tmp_path, "import sys; sys.exit(5)", name="mw_mod_under_test.py")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "-q", "-o", "t.jsonl", "-m", "mw_mod_under_test"]) == 5


def test_limit_stops_the_program_with_a_distinct_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over --limit the tree gets SIGTERM, memwarden exits 3 and says why."""
    prog = _script(
        tmp_path,
        """
        import time
        hog = []
        for _ in range(400):
            hog.append(b"x" * 2**20)
            time.sleep(0.005)
        time.sleep(30)
        """,
    )
    trace_path = tmp_path / "t.jsonl"
    code = main(
        [
            "run",
            "--interval",
            "0.02",
            "--limit",
            "60MiB",
            "--grace",
            "2",
            "-o",
            str(trace_path),
            str(prog),
        ]
    )
    assert code == EXIT_LIMIT
    err = capsys.readouterr().err
    assert "exceeded --limit" in err
    trace = read_trace(trace_path)
    assert trace.end is not None
    assert trace.end.reason == "limit"
    assert trace.end.signal == 15
    assert any(e.kind == "limit" for e in trace.events)
    assert trace.limit_bytes == 60 * 2**20


def test_python_heap_records_sites_and_spans(tmp_path: Path) -> None:
    """--python-heap gives top sites (near the peak and at exit) and track() spans."""
    prog = _script(
        tmp_path,
        """
        import time
        from memwarden.monitoring import track
        keep = []
        with track("build"):
            for i in range(40):
                keep.append([str(j) for j in range(5000)])
                time.sleep(0.01)
        """,
    )
    trace_path = tmp_path / "t.jsonl"
    assert main(["run", "-q", "--python-heap", "-o", str(trace_path), str(prog)]) == 0
    trace = read_trace(trace_path, strict=True)
    whens = {s.when for s in trace.sites}
    assert "exit" in whens
    exit_snap = next(s for s in trace.sites if s.when == "exit")
    top = exit_snap.sites[0]
    assert top.file == str(prog)
    assert "str(j)" in top.code
    assert [s.name for s in trace.spans] == ["build"]
    assert trace.spans[0].duration_s > 0
    assert 0 < trace.spans[0].start_s < trace.duration_s


def test_spans_only_skips_tracemalloc(tmp_path: Path) -> None:
    """--spans records track() spans but no allocation sites."""
    prog = _script(
        tmp_path,
        """
        from memwarden.monitoring import track
        with track("step"):
            x = [0] * 1000
        """,
    )
    trace_path = tmp_path / "t.jsonl"
    assert main(["run", "-q", "--spans", "-o", str(trace_path), str(prog)]) == 0
    trace = read_trace(trace_path)
    assert [s.name for s in trace.spans] == ["step"]
    assert trace.sites == []


def test_missing_command_exits_127(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A command that does not exist fails like a shell would, and leaves no trace file."""
    trace = tmp_path / "t.jsonl"
    assert main(["run", "-q", "-o", str(trace), "--", "no-such-program-mw"]) == 127
    assert "not found" in capsys.readouterr().err
    assert not trace.exists()


def test_bad_limit_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--limit must be a size; the message names the value."""
    assert main(["run", "--limit", "lots", "--", "true"]) == 2
    assert "lots" in capsys.readouterr().err


def test_python_heap_on_a_non_python_command_is_refused(tmp_path: Path) -> None:
    """--python-heap needs a Python script or module; anything else is a usage error."""
    assert main(["run", "--python-heap", "-o", str(tmp_path / "t"), "--", "true"]) == 2


def test_python_heap_wraps_an_explicit_interpreter(tmp_path: Path) -> None:
    """`-- python script.py` with --python-heap runs under the bootstrap too."""
    prog = _script(tmp_path, "x = [bytes(1000) for _ in range(3000)]")
    trace_path = tmp_path / "t.jsonl"
    code = main(
        ["run", "-q", "--python-heap", "-o", str(trace_path), "--", sys.executable, str(prog)]
    )
    assert code == 0
    assert any(s.when == "exit" for s in read_trace(trace_path).sites)


def test_summary_line_names_the_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without -q a one-line summary on stderr says the peak and where the trace is."""
    trace = tmp_path / "t.jsonl"
    assert main(["run", "-o", str(trace), "--", "true"]) == 0
    err = capsys.readouterr().err
    assert "peak" in err
    assert str(trace) in err
