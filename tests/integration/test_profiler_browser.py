"""The icicle graph of a real heap profile in headless chromium: it renders, in the flame
colours, with no console message (the page has no script and forbids remote loads)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from memwarden.profiler import Profile
from memwarden.report.html import render_html
from memwarden.report.trace import Sample, Trace

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1280, 1800
# The icicle graph's frame colours (report.html._FLAME_COLOURS).
FLAME_RGB = {
    (0xE8, 0x74, 0x3B),
    (0xF2, 0xA5, 0x41),
    (0xD9, 0x53, 0x4F),
    (0xF0, 0xC0, 0x5A),
    (0xE6, 0x7E, 0x22),
    (0xC0, 0x50, 0x4D),
}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make sysdeps`)")
def test_flame_graph_renders_in_chromium(tmp_path: Path) -> None:
    """A profile taken by a real profiled program is drawn; chromium logs nothing."""
    from PIL import Image

    prog = tmp_path / "prog.py"
    prog.write_text(
        textwrap.dedent(
            """
            import json, sys
            import memwarden.profiler as p
            def load():
                return [bytearray(2**20) for _ in range(40)]
            def parse():
                return [str(i) * 4 for i in range(300_000)]
            p.start(interval_bytes=64 * 1024)
            keep = load(), parse()
            with open(sys.argv[1], "w") as fh:
                json.dump(p.peak().to_dict(), fh)
            p.stop()
            """
        )
    )
    out = tmp_path / "profile.json"
    subprocess.run([sys.executable, str(prog), str(out)], check=True, timeout=60)
    import json

    profile = Profile.from_dict(json.loads(out.read_text()))
    trace = Trace(
        header={"command": ["python", "prog.py"], "interval_s": 0.1, "start_time": 0.0},
        samples=[Sample(0.1 * i, (40 + 5 * i) * 2**20) for i in range(30)],
    )
    page = tmp_path / "report.html"
    page.write_text(render_html([trace], profiles=[profile]), encoding="utf-8")
    shot = tmp_path / "shot.png"
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chrome'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            f"--window-size={WIDTH},{HEIGHT}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if ":CONSOLE" in line] == []
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=WIDTH * HEIGHT)
    assert colours is not None
    flame_pixels = sum(n for n, rgb in colours if rgb in FLAME_RGB)
    # The frames above load() and parse() span the page width, several rows deep
    # (a row is ~20 px high): far more than any stray pixels of these colours.
    assert flame_pixels > 3 * 20 * WIDTH * 0.8
