"""The HTML report in a real browser: headless Debian chromium renders the chart, without errors.

Chromium loads the report from a file URL with the network effectively off, logs
console messages to stderr (``--enable-logging=stderr``) and writes a screenshot.
The report has no script and a CSP forbidding every remote load, so any console
line (a script error, a CSP violation from a stray remote resource) is a failure.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "chromium is not installed (`make sysdeps` installs it as root with apt-get)",
        allow_module_level=True,
    )

WIDTH, HEIGHT = 1280, 1400
# Matplotlib's default first colour (#1f77b4), which draws the RSS line.
LINE_RGB = (0x1F, 0x77, 0xB4)


def _chromium(url: str, screenshot: Path, profile: Path) -> str:
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={screenshot}",
            f"--window-size={WIDTH},{HEIGHT}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def _console_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run with --python-heap, track() spans and a limit line, rendered to HTML."""
    work = tmp_path_factory.mktemp("browser")
    prog = work / "grow.py"
    prog.write_text(
        textwrap.dedent(
            """
            import time
            from memwarden.monitoring import track
            keep = []
            for step in range(6):
                with track(f"step {step % 3}"):
                    keep.append(bytearray(12 * 2**20))
                    keep[-1][::4096] = b"x" * (len(keep[-1]) // 4096)
                    time.sleep(0.08)
            """
        )
    )
    trace = work / "t.jsonl"
    base = [sys.executable, "-m", "memwarden"]
    subprocess.run(
        [
            *base,
            "run",
            "-q",
            "--python-heap",
            "--interval",
            "0.02",
            "--limit",
            "1GiB",
            "-o",
            str(trace),
            str(prog),
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )
    html = work / "report.html"
    subprocess.run(
        [*base, "report", str(trace), "--html", str(html)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    return html


def test_console_logging_is_captured(tmp_path: Path) -> None:
    """The harness sees console errors: a page with a failing script logs CONSOLE lines."""
    page = "data:text/html,<script>console.error('boom'); missing_function();</script>"
    log = _chromium(page, tmp_path / "s.png", tmp_path / "profile")
    lines = _console_lines(log)
    assert any("boom" in line for line in lines)
    assert any("missing_function" in line for line in lines)


def test_report_renders_the_chart_without_console_errors(report: Path, tmp_path: Path) -> None:
    """Chromium loads the report, logs nothing to the console, and the chart has drawn pixels."""
    from PIL import Image

    shot = tmp_path / "shot.png"
    log = _chromium(report.as_uri(), shot, tmp_path / "profile")
    assert _console_lines(log) == []
    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    # The chart sits under the "Timeline" heading, in the top part of the page.
    chart = image.crop((0, 60, WIDTH, 760))
    colours = chart.getcolors(maxcolors=WIDTH * HEIGHT)
    assert colours is not None
    total = chart.size[0] * chart.size[1]
    background = max(colours)[0]
    non_blank = total - background
    line = sum(
        count
        for count, rgb in colours
        if all(abs(a - b) <= 40 for a, b in zip(rgb, LINE_RGB, strict=True))
    )
    assert non_blank > 0.02 * total
    assert line > 300  # the RSS line and its peak marker are drawn
