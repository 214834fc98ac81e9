"""Test helpers users import: leak assertions and the types the pytest markers pass around.

``assert_no_leaks(fn)`` fails a test when ``check_leaks`` finds a leak, with the
report's summary as the message; ``assert_collected`` (from ``memwarden.leaks``)
checks that one object is gone. ``Stack``/``StackFrame`` are what a
``limit_leaks(filter_fn=...)`` function receives, shaped as pytest-memray's so
existing filter functions keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from memwarden.leaks import LeakReport, assert_collected, check_leaks

__all__ = [
    "LeaksFilterFunction",
    "Stack",
    "StackFrame",
    "assert_collected",
    "assert_no_leaks",
]


@dataclass(frozen=True)
class StackFrame:
    """One frame of the stack that allocated a block.

    Attributes:
        function: the enclosing function's name (``"<module>"`` at top level,
            ``"???"`` when the source is unavailable).
        filename: the source file.
        lineno: the line number.
    """

    function: str
    filename: str
    lineno: int


@dataclass(frozen=True)
class Stack:
    """The call stack that allocated a block still alive at the end of a test.

    Attributes:
        frames: the frames, most recent first (as pytest-memray orders them).
    """

    frames: tuple[StackFrame, ...]


class LeaksFilterFunction(Protocol):
    """``limit_leaks(filter_fn=...)``: return False to exclude an allocation's stack."""

    def __call__(self, stack: Stack) -> bool: ...


def assert_no_leaks(fn: Callable[..., object], *args: Any, **kwargs: Any) -> LeakReport:
    """Run ``check_leaks(fn, *args, **kwargs)`` and raise ``AssertionError`` if it leaks.

    Keyword arguments of ``check_leaks`` (``rounds``, ``calls_per_round``,
    ``warmup``…) are accepted; the rest reach ``fn``.

    Returns:
        The report, for further assertions.

    Raises:
        AssertionError: a leak was found; the message is the report's summary.
    """
    report = check_leaks(fn, *args, **kwargs)
    if report.leaked:
        raise AssertionError(report.summary())
    return report
