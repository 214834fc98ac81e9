"""The IPython magics, in a real InteractiveShell and in a real Jupyter kernel."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("IPython", reason="IPython not installed")

MiB = 2**20
ALLOC = "blob = bytearray(60 * 2**20)\nblob[::4096] = b'1' * (len(blob) // 4096)\n"


@pytest.fixture(scope="module")
def ip() -> Any:
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_line_magic("load_ext", "memwarden")
    return shell


def _fresh_heap() -> None:
    # A worker that ran other tests keeps freed heap pages resident; a new block would
    # reuse them without moving RSS. Give them back first, so the cell's pages are new.
    from memwarden.pressure import malloc_trim

    malloc_trim()


def test_cell_magic_reports_the_cells_peak_and_what_it_left(ip: Any) -> None:
    """A cell that keeps 60 MiB: peak and change both at least that; its line is on top."""
    _fresh_heap()
    res = ip.run_cell_magic("memwarden", "", ALLOC)
    assert res.peak_increment_bytes >= 55 * MiB
    assert res.change_bytes >= 55 * MiB
    assert "peak +" in res.summary()
    assert "<table>" in res._repr_html_() or not res.top_lines
    from memwarden import profiler

    if profiler.native_available():
        assert res.top_lines, res
        assert res.top_lines[0][1] >= 40 * MiB  # sampled estimate of the 60 MiB line
    ip.user_ns.pop("blob", None)


def test_a_temporary_shows_in_the_peak_not_in_the_change(ip: Any) -> None:
    """Memory freed before the cell ends counts in the peak only."""
    _fresh_heap()
    res = ip.run_line_magic(
        "memwarden",
        # glibc may keep a freed block resident (its mmap threshold grows after big
        # frees): the cell gives it back, as a user measuring a temporary would.
        "tmp = bytearray(80 * 2**20); tmp[::4096] = b'1' * (len(tmp) // 4096); del tmp; "
        "__import__('memwarden.pressure').pressure.malloc_trim()",
    )
    assert res.peak_increment_bytes >= 70 * MiB
    assert res.change_bytes < 20 * MiB


def test_repeat_runs_the_cell_n_times(ip: Any) -> None:
    ip.user_ns["runs"] = 0
    res = ip.run_line_magic("memwarden", "-r 3 runs += 1")
    assert res.repeats == 3
    assert ip.user_ns["runs"] == 3


def test_ipython_syntax_inside_the_cell_works(ip: Any) -> None:
    """Cells are transformed as IPython would (magics inside a measured cell)."""
    res = ip.run_cell_magic("memwarden", "", "%time x = 1\n")
    assert res.repeats == 1
    assert ip.user_ns["x"] == 1


def test_bad_options_say_so(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert ip.run_line_magic("memwarden", "-r x pass") is None
    assert "needs a whole number" in capsys.readouterr().out


def test_the_footer_prints_under_every_cell(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("memwarden_footer", "on")
    _fresh_heap()
    try:
        ip.run_cell("y = bytearray(30 * 2**20); y[::4096] = b'1' * (len(y) // 4096)")
        out = capsys.readouterr().out
        assert "memwarden: peak +" in out
    finally:
        ip.run_line_magic("memwarden_footer", "off")
    ip.run_cell("z = 1")
    assert "memwarden: peak" not in capsys.readouterr().out


@pytest.mark.slow
def test_a_real_kernel_runs_the_magic_in_a_notebook(tmp_path: Any) -> None:
    """A notebook executed by nbclient in a real ipykernel shows the magic's output."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext memwarden"),
        nbformat.v4.new_code_cell("%%memwarden\n" + ALLOC),
    ]
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3")
    client.execute()
    outputs = nb.cells[1].outputs
    assert outputs, "the magic printed nothing"
    data = outputs[0].get("data", {})
    assert "memwarden: peak +" in data.get("text/plain", "")
    assert "<div class='memwarden'>" in data.get("text/html", "")
