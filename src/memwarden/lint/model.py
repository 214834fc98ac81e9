"""The lint vocabulary: severities, a finding, and the base class every rule derives from."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from memwarden.lint.index import ModuleIndex

__all__ = ["SEVERITIES", "Finding", "Rule"]

#: Severities, most severe first; ``info`` findings are advice (SARIF level ``note``).
SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True, order=True)
class Finding:
    """One anti-pattern at one place. Lines and columns are 1-based; columns count characters."""

    path: str
    line: int
    column: int
    code: str
    message: str
    severity: str = "warning"
    end_line: int = 0
    end_column: int = 0

    def to_row(self) -> list[object]:
        """A compact JSON row (path omitted) for the result cache."""
        return [
            self.line,
            self.column,
            self.code,
            self.message,
            self.severity,
            self.end_line,
            self.end_column,
        ]

    @classmethod
    def from_row(cls, path: str, row: object) -> Finding:
        """The inverse of :meth:`to_row`.

        Raises:
            ValueError: a damaged row (wrong length, wrong types, unknown severity): the
                caller checks the file again instead of trusting it.
        """
        if not isinstance(row, list | tuple) or len(row) != 7:
            raise ValueError(f"damaged cache row {row!r}: expected 7 fields")
        line, column, code, message, severity, end_line, end_column = row
        numbers = (line, column, end_line, end_column)
        if not all(type(n) is int and 0 <= n < 2**31 for n in numbers):
            raise ValueError(f"damaged cache row {row!r}: positions must be integers")
        if not (isinstance(code, str) and isinstance(message, str)) or severity not in SEVERITIES:
            raise ValueError(f"damaged cache row {row!r}: bad code, message or severity")
        return cls(path, line, column, code, message, str(severity), end_line, end_column)

    def to_dict(self) -> dict[str, object]:
        """The finding as a JSON object (the ``--format json`` shape)."""
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
        }


@dataclass(frozen=True)
class RawFinding:
    """What a rule reports: the node (for the location), the message, an optional severity."""

    node: ast.AST
    message: str
    severity: str | None = None


class Rule:
    """Base class of lint rules: the subclass docstring is the explanation shown to users."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[str] = "warning"
    summary: ClassVar[str]

    def check(self, module: ModuleIndex) -> Iterator[RawFinding]:
        """Yield the anti-patterns found in ``module``."""
        raise NotImplementedError

    @classmethod
    def explanation(cls) -> str:
        """The rule's documentation (its class docstring, dedented)."""
        return inspect.cleandoc(cls.__doc__ or cls.summary)
