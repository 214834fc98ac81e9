"""The plugin's helpers: marker validation, frame attribution and function names for filter_fn."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from memwarden.exceptions import ConfigurationError
from memwarden.pytest_plugin._marks import (
    Measurement,
    belongs_to_runner,
    function_at,
    to_stack,
    validate,
)


def test_validate_parses_sizes_and_defaults() -> None:
    """Valid marker arguments come back parsed (decimal MB, binary MiB) with defaults filled."""
    assert validate("limit_memory", ("24 MB",), {}) == {
        "limit_bytes": 24_000_000,
        "limit_text": "24 MB",
    }
    assert validate("limit_leaks", ("1 MiB",), {})["limit_bytes"] == 1 << 20
    assert validate("no_leaks", (), {"rounds": 6}) == {
        "rounds": 6,
        "calls_per_round": None,
        "warmup": 2,
    }


def test_validate_names_the_marker_and_value() -> None:
    """A bad value raises ConfigurationError quoting the marker call."""
    with pytest.raises(ConfigurationError, match=r"limit_memory\('-3 MB'\)"):
        validate("limit_memory", ("-3 MB",), {})


def test_function_at_finds_enclosing_function(tmp_path: Path) -> None:
    """Line numbers map to the innermost enclosing def, '<module>' at top level."""
    src = tmp_path / "m.py"
    src.write_text("x = 1\n\ndef outer():\n    def inner():\n        return 2\n    return inner\n")
    assert function_at(str(src), 1) == "<module>"
    assert function_at(str(src), 5) == "inner"
    assert function_at(str(src), 6) == "outer"
    assert function_at(str(tmp_path / "missing.py"), 3) == "???"


def _allocate() -> list[bytearray]:
    return [bytearray(1000)]


def test_attribution_and_stack_of_a_real_allocation() -> None:
    """An allocation made by test code is the test's; its Stack lists this function first."""
    was = tracemalloc.is_tracing()
    m = Measurement(want_leaks=True)
    m.start()
    kept = _allocate()
    m.stop()
    assert tracemalloc.is_tracing() == was  # tracing it started is stopped again
    leaks = m.leaks(None)
    mine = [tb for tb, size, _ in leaks if size >= 1000]
    assert mine, leaks
    assert not belongs_to_runner(mine[0])
    stack = to_stack(mine[0])
    assert stack.frames[0].function == "_allocate"
    assert stack.frames[0].filename == __file__
    del kept


def test_filter_fn_excludes_stacks() -> None:
    """A filter function returning False removes that allocation from the leaks."""
    m = Measurement(want_leaks=True)
    m.start()
    kept = _allocate()
    m.stop()
    assert not [
        size
        for _, size, _ in m.leaks(lambda s: s.frames[0].function != "_allocate")
        if size >= 1000
    ]
    del kept
