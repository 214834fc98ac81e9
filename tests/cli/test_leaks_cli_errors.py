"""`memwarden leaks` never says "no leak" for a target that did not run, and never dumps a stack."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from memwarden.cli import main
from memwarden.cli.leaks import EXIT_BAD_TARGET, EXIT_TARGET_FAILED

TARGETS = """
import sys

HOARD = []

def exits_zero():
    sys.exit(0)

def raises():
    raise ValueError("boom")

class Custom(BaseException):
    pass

def raises_custom():
    raise Custom("odd")

def leaky_generator():
    HOARD.append([0] * 100)
    yield 1

def clean_generator():
    yield [0] * 100

async def agen():
    yield 1
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "mw_leaks_targets.py").write_text(TARGETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mw_leaks_targets", raising=False)
    return "mw_leaks_targets"


def _bad_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("exits_zero", "called sys.exit(0)"),
        ("raises", "raised ValueError: boom"),
        ("raises_custom", "raised Custom: odd"),
    ],
)
def test_a_failing_target_has_its_own_exit_code(
    module: str, capsys: pytest.CaptureFixture[str], function: str, message: str
) -> None:
    """sys.exit(0), an exception or a custom BaseException: exit 3, never 0 and never 1."""
    code = main(["leaks", f"{module}:{function}", "--rounds", "4", "--calls-per-round", "5"])
    err = capsys.readouterr().err
    assert code == EXIT_TARGET_FAILED
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import sys\nsys.exit(0)\n", "called sys.exit(0)"),
        ("def f(:\n    pass\n", "syntax error"),
        ("raise RuntimeError('not today')\n", "raised RuntimeError: not today"),
    ],
    ids=["sys-exit", "syntax-error", "runtime-error"],
)
def test_a_module_failing_at_import_is_a_bad_target(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    body: str,
    message: str,
) -> None:
    """A module that exits, has a syntax error or raises at import: exit 2, message, no stack."""
    name = _bad_module(tmp_path, monkeypatch, "mw_bad_import", body)
    code = main(["leaks", f"{name}:f"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_TARGET
    assert message in err
    assert "Traceback" not in err


def test_relative_module_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """`.mod:f` is refused with a hint instead of a TypeError traceback."""
    assert main(["leaks", ".mod:f"]) == EXIT_BAD_TARGET
    assert "relative module names" in capsys.readouterr().err


def test_generator_function_body_is_run_and_judged(
    module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A generator function is run to exhaustion: its leaking body is found, a clean one is not."""
    leak = main(["leaks", f"{module}:leaky_generator", "--rounds", "5", "--calls-per-round", "100"])
    assert leak == 1
    clean = main(
        ["leaks", f"{module}:clean_generator", "--rounds", "5", "--calls-per-round", "100"]
    )
    assert clean == 0
    capsys.readouterr()


def test_async_generator_is_refused(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An async generator function cannot be called as a check: a bad target, said so."""
    assert main(["leaks", f"{module}:agen"]) == EXIT_BAD_TARGET
    assert "async generator" in capsys.readouterr().err
