"""The HTML report's icicle graph of a heap profile: drawn when a run carries a profile,
sized by bytes, and with program strings never reaching the page as markup."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from memwarden.profiler import Frame, Profile, StackSample
from memwarden.report.html import _flame_tree, render_flame_svg, render_html
from memwarden.report.trace import Sample, Trace

MiB = 2**20


def _profile() -> Profile:
    main = Frame("/app/main.py", "<module>", 1)
    handler = Frame("/app/main.py", "handler", 10)
    load = Frame("/app/io.py", "load", 3)
    evil = Frame("/app/x.py", "<script>alert(1)</script>$x$", 4)
    return Profile(
        "peak",
        "native",
        512 * 1024,
        (
            StackSample((load, handler, main), None, 1, 60 * MiB, 120, 1e12),
            StackSample((evil, handler, main), "req", 1, 30 * MiB, 60, 1e12),
            StackSample((main,), None, 1, 10 * MiB, 20, 1e12),
            StackSample((Frame("/app/tiny.py", "tiny", 1), main), None, 1, 1000, 1, 1e6),
        ),
    )


def _trace() -> Trace:
    return Trace(
        header={"command": ["python", "main.py"], "interval_s": 0.1, "start_time": 0.0},
        samples=[Sample(0.1 * i, (50 + i) * MiB) for i in range(20)],
    )


def test_flame_tree_sums_bytes_from_the_outermost_frame() -> None:
    """The tree's root holds the total; children split it by their stacks."""
    root = _flame_tree(_profile())
    assert root.size == 100 * MiB + 1000
    (module,) = root.children.values()
    assert module.size == root.size
    handler = module.children["handler (main.py:10)"]
    assert handler.size == 90 * MiB
    assert set(handler.children) == {
        "load (io.py:3)",
        "<script>alert(1)</script>$x$ (x.py:4)",
    }


def test_flame_svg_is_inline_svg_without_program_text() -> None:
    """The icicle graph is an SVG whose labels are outlines: no program string in the markup."""
    svg = render_flame_svg(_profile())
    assert svg.startswith("<svg")
    assert "<script" not in svg
    assert "alert" not in svg
    assert svg.count("<path") > 20


def test_report_draws_the_flame_graph_only_with_a_profile() -> None:
    """render_html adds the section for a run with a profile (given, or carried by the trace)."""
    without = render_html([_trace()])
    assert 'id="flame"' not in without
    page = render_html([_trace()], profiles=[_profile()])
    assert 'id="flame"' in page
    assert "Live heap at the peak by call stack" in page
    assert "<script" not in page
    carried = _trace()
    carried.profile = _profile().to_dict()  # type: ignore[attr-defined]
    assert 'id="flame"' in render_html([carried])
