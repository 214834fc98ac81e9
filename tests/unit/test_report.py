"""Summaries, the terminal and HTML renderers, and the run engine's command rewriting."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from memwarden.report.html import render_chart_svg, render_html
from memwarden.report.runner import bootstrap_command, is_python_executable
from memwarden.report.summary import growth_of, operations_of, summarize
from memwarden.report.terminal import render_terminal, sparkline
from memwarden.report.trace import (
    Event,
    Sample,
    Site,
    SiteSnapshot,
    Span,
    Trace,
    TraceEnd,
)

MiB = 2**20
EVIL = "<script>alert(1)</script>"


def _trace(rss: list[int], *, dt: float = 0.1, **header: object) -> Trace:
    samples = [Sample(i * dt, v, 1) for i, v in enumerate(rss)]
    end = TraceEnd(len(rss) * dt, 0, "exited", None, max(rss, default=0), 0)
    return Trace(header={"command": ["prog"], "interval_s": dt, **header}, samples=samples, end=end)


def test_summary_peak_time_and_time_weighted_mean() -> None:
    """Peak and its time come from the samples; the mean weighs by time, not by count."""
    trace = _trace([10 * MiB, 10 * MiB, 50 * MiB, 10 * MiB])
    s = summarize(trace)
    assert s.peak_rss_bytes == 50 * MiB
    assert s.peak_t_s == pytest.approx(0.2)
    # trapezoids over 0.3 s: (10+10)/2 + (10+50)/2 + (50+10)/2 = 70 MiB*0.1 s -> 23.3 MiB
    assert s.mean_rss_bytes == pytest.approx(70 / 3 * MiB, rel=1e-6)
    assert s.final_rss_bytes == 10 * MiB
    assert s.exit_code == 0


def test_kernel_max_rss_raises_the_peak_above_samples() -> None:
    """A spike between samples is still the peak when the kernel's ru_maxrss saw it."""
    trace = _trace([10 * MiB] * 5)
    trace.end = TraceEnd(0.5, 0, "exited", None, 10 * MiB, 80 * MiB)
    assert summarize(trace).peak_rss_bytes == 80 * MiB


def test_steady_growth_is_suspected_as_a_leak() -> None:
    """RSS that climbs 1 MiB per sample for 200 samples is flagged."""
    g = growth_of(_trace([100 * MiB + i * MiB for i in range(200)]).samples)
    assert g is not None
    assert g.leak_suspected
    assert g.slope_bytes_per_s == pytest.approx(10 * MiB, rel=0.01)


def test_flat_noisy_memory_is_not_a_leak() -> None:
    """A sawtooth around a level (buffers filling and emptying) is not growth."""
    rss = [200 * MiB + (i % 10) * MiB for i in range(300)]
    g = growth_of(_trace(rss).samples)
    assert g is not None
    assert not g.leak_suspected


def test_warm_up_growth_is_not_judged() -> None:
    """Loading in the first quarter then a plateau is not a leak."""
    rss = [i * 10 * MiB for i in range(50)] + [500 * MiB] * 250
    g = growth_of(_trace(rss).samples)
    assert g is not None
    assert not g.leak_suspected
    assert g.window_s[0] > 5.0


def test_too_short_runs_get_no_growth_verdict() -> None:
    """Fewer than ten samples: no verdict at all rather than a guess."""
    assert growth_of(_trace([1, 2, 3]).samples) is None


def test_operations_aggregate_by_name_most_time_first() -> None:
    """Spans of one name are summed; the table is ordered by total time."""
    spans = [
        Span("parse", 0.0, 0.5, 10, 100),
        Span("load", 0.5, 2.0, 30, 300),
        Span("parse", 2.5, 0.5, 20, 200),
    ]
    rows = operations_of(spans)
    assert [r.name for r in rows] == ["load", "parse"]
    parse = rows[1]
    assert (parse.count, parse.total_s, parse.max_rss_delta_bytes, parse.sum_rss_delta_bytes) == (
        2,
        1.0,
        20,
        30,
    )


def _evil_trace() -> Trace:
    trace = _trace([MiB * (5 + i % 3) for i in range(30)], label=EVIL + ".py", limit_bytes=20 * MiB)
    trace.header["command"] = ["python", EVIL + ".py"]
    trace.spans = [Span(EVIL, 0.1, 0.5, 1, 2)]
    trace.sites = [SiteSnapshot("peak", 1.0, 10, 10, (Site(f"/tmp/{EVIL}.py", 1, 9, 1, EVIL),))]
    trace.events = [Event(1.0, "limit", EVIL)]
    return trace


def test_html_escapes_every_program_string() -> None:
    """No program-supplied string reaches the page as markup: the raw tag never appears."""
    page = render_html([_evil_trace()])
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_html_is_self_contained() -> None:
    """The page loads nothing: no src/href to anywhere, a CSP forbidding it, no script."""
    page = render_html([_evil_trace()])
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "default-src 'none'" in page
    assert "<svg" in page
    assert "<script" not in page


def test_chart_svg_draws_text_as_paths_not_markup() -> None:
    """Labels reach the SVG as glyph outlines, so nothing in them can be markup."""
    svg = render_chart_svg_for(_evil_trace())
    assert svg.startswith("<svg")
    assert "alert" not in svg
    assert "<path" in svg


def render_chart_svg_for(trace: Trace) -> str:
    from memwarden.report.html import ReportRun

    return render_chart_svg([ReportRun(trace, summarize(trace))])


def test_dollar_signs_in_labels_are_not_mathtext() -> None:
    """A label with $...$ renders literally instead of failing as mathtext."""
    trace = _trace([MiB] * 20, label="cost $x^{2$ and $$")
    assert "<svg" in render_html([trace])


def test_comparison_report_lists_each_run() -> None:
    """Two traces give one chart and a comparison table with both labels and a ratio."""
    a = _trace([100 * MiB] * 20, label="naive")
    b = _trace([25 * MiB] * 20, label="lean")
    page = render_html([a, b], extra_columns={"lean": {"result": "equal"}})
    assert "Comparison" in page
    assert "naive" in page
    assert "lean" in page
    assert "0.25×" in page
    assert page.count("<svg") == 1


def test_terminal_report_prints_program_text_literally() -> None:
    """Rich markup in program strings is printed as text, not interpreted."""
    from rich.console import Console

    trace = _trace([MiB * 3] * 20, label="[bold]x[/bold]")
    trace.spans = [Span("[red]op[/red]", 0.1, 0.5, 1, 2)]
    out = io.StringIO()
    render_terminal(summarize(trace), Console(file=out, width=120), spark=[1, 2, 3])
    text = out.getvalue()
    assert "[red]op[/red]" in text
    assert "[bold]x[/bold]" in text
    assert "3.0 MiB" in text


def test_sparkline_spans_lowest_to_highest() -> None:
    """The lowest value is the shortest bar and the highest the tallest; width is bounded."""
    line = sparkline(list(range(100)), width=20)
    assert len(line) == 20
    assert line[0] == "▁"
    assert line[-1] == "█"
    assert sparkline([]) == ""
    assert sparkline([5, 5, 5]) == "▁▁▁"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("python", True),
        ("/usr/bin/python3", True),
        (sys.executable, True),
        ("python3.11", True),
        ("pythonista", False),
        ("bash", False),
    ],
)
def test_is_python_executable(name: str, expected: bool) -> None:
    """Interpreter names are recognised; other programs are not."""
    assert is_python_executable(name) is expected


def test_bootstrap_command_wraps_scripts_and_modules() -> None:
    """Interpreter options stay in front; the script or module runs under the bootstrap."""
    boot = "memwarden.report._bootstrap"
    assert bootstrap_command(["python", "-u", "-X", "dev", "s.py", "a"]) == [
        "python",
        "-u",
        "-X",
        "dev",
        "-m",
        boot,
        "s.py",
        "a",
    ]
    assert bootstrap_command(["python3", "-m", "pkg.mod", "-v"]) == [
        "python3",
        "-m",
        boot,
        "-m",
        "pkg.mod",
        "-v",
    ]


@pytest.mark.parametrize("argv", [["python", "-c", "pass"], ["python"], ["bash", "x.sh"]])
def test_bootstrap_command_refuses_what_it_cannot_wrap(argv: list[str]) -> None:
    """Inline code, a bare REPL or a non-Python program cannot run under the bootstrap."""
    with pytest.raises(ValueError):
        bootstrap_command(argv)


def test_summary_to_dict_is_json_ready(tmp_path: Path) -> None:
    """to_dict() serialises to JSON with the headline figures."""
    import json

    s = summarize(_evil_trace())
    data = json.loads(json.dumps(s.to_dict()))
    assert data["peak_rss_bytes"] == s.peak_rss_bytes
    assert data["operations"][0]["name"] == EVIL
    assert data["limit_bytes"] == 20 * MiB


def test_process_tree_finds_grandchildren_and_forgets_the_dead() -> None:
    """A shell with two background sleeps: all three are found, and gone ones are dropped."""
    import subprocess
    import time

    from memwarden.report.runner import ProcessTree

    proc = subprocess.Popen(["sh", "-c", "sleep 5 & sleep 5 & sleep 1; exit 0"])
    try:
        tree = ProcessTree(proc.pid)
        deadline = time.monotonic() + 5
        while len(tree.pids) < 4 and time.monotonic() < deadline:
            tree.sample()
            time.sleep(0.02)
        assert len(tree.pids) == 4  # sh, sleep 5, sleep 5, sleep 1
        proc.wait(timeout=5)
        total, count, hwm = tree.sample()
        assert count == 2  # the orphaned sleeps are still tracked after the shell exited
        assert len(tree.pids) == 3  # the finished `sleep 1` was forgotten; the root stays
        assert total > 0
        assert hwm > 0
    finally:
        import contextlib
        import os
        import signal

        for pid in tree.pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=5)
