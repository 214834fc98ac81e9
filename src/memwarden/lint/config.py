"""``[tool.memwarden.lint]``: which rules run (``select``/``ignore``) and which files are skipped.

Codes may be given whole (``MW101``) or as prefixes (``MW1`` selects every MW1xx
rule). Exclusion patterns are shell globs matched against the path relative to the
project root and against each of its leading directories, so ``build`` and
``tests/lint_fixtures/*`` both work.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from memwarden.config import read_tool_table
from memwarden.exceptions import ConfigurationError
from memwarden.lint.rules import RULES

__all__ = ["DEFAULT_EXCLUDE", "TEST_DIRECTORIES", "TEST_FILES", "LintConfig", "load_lint_config"]

#: Directories never searched when a directory is linted (explicit file arguments still are).
DEFAULT_EXCLUDE = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".memwarden-cache",
    ".cache",
    "node_modules",
    "build",
    "dist",
    "site-packages",
    ".eggs",
)


#: Below a linted directory, directories of tests and fixtures skipped unless
#: ``include_tests`` (``--include-tests``): test code builds throw-away state on purpose.
TEST_DIRECTORIES = frozenset(
    {"tests", "test", "testing_fixtures", "fixtures", "lint_fixtures", "__tests__"}
)
#: File names (globs) of tests skipped the same way.
TEST_FILES = ("test_*.py", "*_test.py", "tests.py", "conftest.py")


@dataclass(frozen=True)
class LintConfig:
    """Which rules are reported and which files are linted.

    Attributes:
        select: codes or code prefixes to report; empty means every rule.
        ignore: codes or prefixes never reported (wins over ``select``).
        exclude: glob patterns of files and directories to skip.
        include_tests: also lint tests and fixtures found below a linted directory.
        source: where the settings came from (for error messages).
    """

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    source: str = "defaults"
    include_tests: bool = False

    def enabled(self, code: str) -> bool:
        """Whether findings of ``code`` are reported."""
        if any(code.startswith(prefix) for prefix in self.ignore):
            return False
        # MW000 (a file that could not be checked) is reported unless explicitly ignored:
        # a selection of rules must not turn a broken file into a clean one.
        return (
            not self.select
            or code == "MW000"
            or any(code.startswith(prefix) for prefix in self.select)
        )

    def is_excluded(self, relative: str | PurePosixPath) -> bool:
        """Whether a path (relative to the project root, ``/``-separated) is excluded."""
        path = PurePosixPath(relative)
        candidates = [
            str(path),
            *(str(parent) for parent in path.parents if str(parent) != "."),
            *path.parts,
        ]
        return any(
            fnmatch.fnmatchcase(candidate, pattern)
            for pattern in self.exclude
            for candidate in candidates
        )

    def merged(
        self,
        *,
        select: Sequence[str] = (),
        ignore: Sequence[str] = (),
        exclude: Sequence[str] = (),
        include_tests: bool = False,
        source: str = "command line",
    ) -> LintConfig:
        """This configuration with command-line options applied.

        ``select`` replaces the configured selection; ``ignore`` and ``exclude`` extend.

        Raises:
            ConfigurationError: an unknown code.
        """
        return LintConfig(
            select=_codes(select, "select", source) if select else self.select,
            ignore=self.ignore + _codes(ignore, "ignore", source),
            exclude=self.exclude + tuple(exclude),
            source=self.source if not (select or ignore or exclude) else f"{self.source}+{source}",
            include_tests=self.include_tests or include_tests,
        )


def _split(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _codes(raw: Any, key: str, source: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(v, str) for v in raw):
        raise ConfigurationError(
            f"{key}={raw!r} ({source}): expected a list of rule codes such as ['MW101']",
            value=raw,
            source=source,
        )
    codes = [c.upper() for c in _split(raw)]
    for code in codes:
        if not code.startswith("MW") or not any(known.startswith(code) for known in RULES):
            raise ConfigurationError(
                f"{key}: unknown rule code {code!r} ({source}); known codes: " + ", ".join(RULES),
                value=code,
                source=source,
            )
    return tuple(codes)


def load_lint_config(pyproject: str | Path | None) -> LintConfig:
    """Read ``[tool.memwarden.lint]`` from a ``pyproject.toml`` (defaults when absent).

    Raises:
        ConfigurationError: an unreadable file, an unknown key, or a bad value; the
            message names the key and the file.
    """
    if pyproject is None:
        return LintConfig()
    path = Path(pyproject)
    section = read_tool_table(path).get("lint", {})
    source = f"{path} [tool.memwarden.lint]"
    if not isinstance(section, dict):
        raise ConfigurationError(f"{source}: must be a table", source=str(path))
    known = {"select", "ignore", "exclude", "include_tests"}
    for key in section:
        if key.replace("-", "_") not in known:
            raise ConfigurationError(
                f"{source}: unknown key {key!r}; expected one of {sorted(known)}",
                value=key,
                source=str(path),
            )
    exclude = section.get("exclude", [])
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(v, str) for v in exclude):
        raise ConfigurationError(
            f"exclude={exclude!r} ({source}): expected a list of glob patterns",
            value=exclude,
            source=str(path),
        )
    include_tests = section.get("include-tests", section.get("include_tests", False))
    if not isinstance(include_tests, bool):
        raise ConfigurationError(
            f"include-tests={include_tests!r} ({source}): expected true or false",
            value=include_tests,
            source=str(path),
        )
    return LintConfig(
        include_tests=include_tests,
        select=_codes(section.get("select", []), "select", source),
        ignore=_codes(section.get("ignore", []), "ignore", source),
        exclude=tuple(exclude),
        source=source,
    )
