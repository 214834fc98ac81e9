"""``memwarden demo``: both versions run, agree, and the report is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memwarden.cli import main
from memwarden.report._demo_workload import generate_log, run_memwarden, run_naive
from memwarden.report.demo import run_demo


def test_generated_log_is_deterministic(tmp_path: Path) -> None:
    """The same seed gives byte-identical logs; another seed does not."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert generate_log(a, 200_000, seed=3) == generate_log(b, 200_000, seed=3)
    generate_log(c, 200_000, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_both_versions_compute_the_same_report(tmp_path: Path) -> None:
    """The naive and the memwarden analysis agree on every figure."""
    log = tmp_path / "access.log"
    lines = generate_log(log, 500_000, seed=2)
    naive = run_naive(str(log))
    lean = run_memwarden(str(log))
    assert naive == lean
    assert naive["lines"] == lines
    assert sum(naive["levels"].values()) == lines
    assert set(naive["routes"]) == {
        "/items/{id}",
        "/items/{id}/reviews",
        "/users/{id}",
        "/users/{id}/orders/{id}",
        "/search",
        "/cart/{id}",
        "/media/{id}/thumb",
        "/health",
    }


def test_demo_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`memwarden demo` on a small log prints the table, says equal, and writes the HTML."""
    html = tmp_path / "demo.html"
    work = tmp_path / "work"
    assert main(["demo", "--size", "2MB", "--html", str(html), "--workdir", str(work)]) == 0
    out = capsys.readouterr().out
    assert "naive" in out
    assert "memwarden" in out
    assert "results equal" in out
    page = html.read_text()
    assert "naive version" in page
    assert "memwarden version" in page
    naive = json.loads((work / "naive.json").read_text())
    assert naive["lines"] > 10_000
    assert (work / "memwarden.trace.jsonl").exists()
    # Part two: the same service under one hard limit, ungoverned and governed.
    assert "part two: a caching service under" in out
    assert "service, governed" in page
    assert "service, ungoverned" in page
    governed = json.loads((work / "service-governed.json").read_text())
    assert governed["requests_done"] == 4400
    assert governed["relief_runs"] >= 1
    assert not (work / "service-ungoverned.json").exists()  # it did not survive the limit
    from memwarden.report.trace import read_trace

    events = read_trace(work / "service-governed.trace.jsonl").events
    assert any(e.kind == "relief" for e in events)  # relief runs are on the timeline


@pytest.mark.slow
def test_memwarden_version_peaks_lower(tmp_path: Path) -> None:
    """On a 30 MB log the memwarden version's peak RSS is well under the naive one's."""
    demo = run_demo(size_bytes=30 * 10**6, html_path=None, workdir=tmp_path, service=False)
    assert demo.results_equal
    naive = demo.variants["naive"].run.peak_rss_bytes
    lean = demo.variants["memwarden"].run.peak_rss_bytes
    assert lean < naive / 2
    assert demo.variants["memwarden"].components["stream"].startswith("memwarden.stream")
