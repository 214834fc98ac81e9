"""The README's tour runs as written: its Python blocks, in order, in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def tour_blocks() -> list[str]:
    """The ```python blocks of the README's "A 30-second tour" section, in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## A 30-second tour")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


def test_the_tour_has_python_blocks() -> None:
    """The extraction finds the tour (a renamed heading must not make the test vacuous)."""
    blocks = tour_blocks()
    assert len(blocks) >= 6
    assert "import memwarden" in blocks[0]


@pytest.mark.slow
def test_every_tour_block_runs_as_written(tmp_path: Path) -> None:
    """The tour, pasted block after block into one interpreter, runs without error.

    One substitution: the exporter's fixed port 9464 becomes 0 (any free port), since
    another process on a test machine may hold 9464.
    """
    pytest.importorskip("prometheus_client")
    pytest.importorskip("distributed")
    blocks = tour_blocks()
    script = tmp_path / "tour.py"
    script.write_text(
        "\n".join(f"# --- block {i}\n{b}" for i, b in enumerate(blocks)).replace(
            "expose(9464", "expose(0"
        ),
        encoding="utf-8",
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    got = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert got.returncode == 0, got.stderr[-3000:]
    assert "rss +" in got.stdout  # the delta summary is signed, as the comment shows
    assert "OperationStats(name='load'" in got.stdout
