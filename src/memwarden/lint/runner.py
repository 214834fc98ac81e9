"""Run the rules over files: parsing, suppression comments, file discovery, the incremental cache.

:func:`check_source` checks one module's source. :func:`lint_paths` finds the
Python files under the given paths, checks the changed ones on a process pool
through :class:`memwarden.incremental.IncrementalEngine` (results persisted in the
cache directory unless ``cache_dir=None``), and filters findings by the
configuration.
"""

from __future__ import annotations

import ast
import gc
import hashlib
import io
import logging
import os
import re
import sys
import tokenize
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from memwarden.exceptions import ConfigurationError
from memwarden.incremental import IncrementalEngine
from memwarden.lint.config import DEFAULT_EXCLUDE, LintConfig
from memwarden.lint.index import ModuleIndex
from memwarden.lint.model import Finding, RawFinding
from memwarden.lint.rules import RULES

__all__ = ["LintResult", "check_source", "discover", "lint_paths"]

log = logging.getLogger("memwarden.lint")

#: Bumped whenever a rule's behaviour changes, so cached results of older rules are not reused.
RULES_VERSION = 1

_SUPPRESS = re.compile(r"#\s*memwarden:\s*ignore(?:\[([^\]]*)\])?", re.IGNORECASE)
_SUFFIXES = (".py", ".pyi")


def _suppressions(source: bytes) -> dict[int, frozenset[str] | None]:
    """Line -> codes suppressed there (``None``: every code) from ``# memwarden: ignore[…]``."""
    result: dict[int, frozenset[str] | None] = {}
    try:
        tokens = list(tokenize.tokenize(io.BytesIO(source).readline))
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError):
        return result
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        match = _SUPPRESS.search(tok.string)
        if match is None:
            continue
        line = tok.start[0]
        if match.group(1) is None:
            result[line] = None
            continue
        codes = frozenset(c.strip().upper() for c in match.group(1).split(",") if c.strip())
        previous = result.get(line, frozenset())
        result[line] = None if previous is None else previous | codes
    return result


def _column(lines: Sequence[bytes], line: int, col_offset: int) -> int:
    """1-based character column from ast's UTF-8 byte offset."""
    if 0 < line <= len(lines):
        text = lines[line - 1]
        if not text.isascii():
            return len(text[:col_offset].decode("utf-8", "replace")) + 1
    return col_offset + 1


def check_source(source: str | bytes, path: str = "<string>") -> list[Finding]:
    """Check one module's source with every rule; suppression comments are applied.

    A file that cannot be parsed gives one ``MW000`` finding. Configuration
    (select/ignore) is not applied here: see :func:`lint_paths`.
    """
    data = source.encode() if isinstance(source, str) else source
    # Parsing makes hundreds of thousands of container objects; the cyclic collector would
    # scan them over and over for nothing (the checker creates no cycles), which costs more
    # than the parse itself. Paused for this call only, and restored.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _check(data, path)
    finally:
        if paused:
            gc.enable()


def _check(data: bytes, path: str) -> list[Finding]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning of odd escapes is not our business
            tree = ast.parse(data, filename=path)
    except SyntaxError as exc:
        return [
            Finding(
                path,
                max(exc.lineno or 1, 1),
                max(exc.offset or 1, 1),
                "MW000",
                f"cannot parse: {exc.msg}",
                "error",
            )
        ]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [Finding(path, 1, 1, "MW000", f"cannot parse: {exc}", "error")]
    lines = data.splitlines()
    try:
        index = ModuleIndex(tree)
    except Exception as exc:  # the index is our code too: a bug in it is reported, not raised
        log.warning("indexing %s failed", path, exc_info=True)
        return [Finding(path, 1, 1, "MW000", f"internal error while indexing ({exc!r})", "error")]
    raw: list[tuple[str, str, RawFinding]] = []
    for code, rule_class in RULES.items():
        rule = rule_class()
        try:
            raw.extend((code, rule.severity, found) for found in rule.check(index))
        except Exception as exc:  # a rule bug must not stop the run; it is reported
            log.warning("rule %s failed on %s", code, path, exc_info=True)
            return [
                Finding(
                    path,
                    1,
                    1,
                    "MW000",
                    f"internal error in {code} ({type(exc).__name__}: {exc}); please report it",
                    "error",
                )
            ]
    suppressed = _suppressions(data) if b"memwarden:" in data else {}
    findings: list[Finding] = []
    for code, severity, found in raw:
        line = getattr(found.node, "lineno", 1)
        if line in suppressed:
            codes = suppressed[line]
            if codes is None or code in codes:
                continue
        end_line = getattr(found.node, "end_lineno", None) or line
        end_col = getattr(found.node, "end_col_offset", None)
        findings.append(
            Finding(
                path,
                line,
                _column(lines, line, getattr(found.node, "col_offset", 0)),
                code,
                found.message,
                found.severity or severity,
                end_line,
                _column(lines, end_line, end_col) if end_col is not None else 0,
            )
        )
    findings.sort()
    return findings


def _check_file(key: str, data: bytes) -> list[list[object]]:
    """The engine's compute step: a file's findings as JSON rows (module level: picklable)."""
    return [f.to_row() for f in check_source(data, key)]


@dataclass
class LintResult:
    """What :func:`lint_paths` found."""

    findings: list[Finding]
    files: list[str]
    checked: int = 0
    """Files checked in this run (the rest came from the cache)."""
    cached: int = 0
    root: Path = field(default_factory=Path.cwd)

    @property
    def exit_code(self) -> int:
        """0 when clean, 1 with findings."""
        return 1 if self.findings else 0


def discover(paths: Iterable[str | os.PathLike[str]], config: LintConfig, root: Path) -> list[str]:
    """The Python files to lint under ``paths``, absolute, sorted, excluded ones removed.

    Raises:
        ConfigurationError: a path that does not exist.
    """
    found: set[str] = set()

    def excluded(path: Path) -> bool:
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            rel = path.as_posix().lstrip("/")
        return config.is_excluded(rel)

    for given in paths:
        path = Path(given).absolute()
        if path.is_file():
            if not excluded(path):
                found.add(str(path))
            continue
        if not path.is_dir():
            raise ConfigurationError(f"{given}: no such file or directory", value=str(given))
        for dirpath, dirnames, filenames in os.walk(path):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames if d not in DEFAULT_EXCLUDE and not excluded(here / d)
            )
            for name in filenames:
                if name.endswith(_SUFFIXES):
                    candidate = here / name
                    if not excluded(candidate):
                        found.add(str(candidate))
    return sorted(found)


def _fingerprint() -> str:
    from memwarden import __version__
    from memwarden.lint import index, model, rules

    # Results depend on the rules (memwarden's version, RULES_VERSION, and the rule code
    # itself, so an edited rule never meets results of its old self) and on the parser (the
    # Python version); select/ignore only filter, so they are not part of it.
    digest = hashlib.blake2b(digest_size=16)
    for module in (index, model, rules, sys.modules[__name__]):
        try:
            digest.update(Path(module.__file__ or "").read_bytes())
        except OSError:  # no source on disk (zipapp, frozen): the version has to do
            digest.update(module.__name__.encode())
    return (
        f"memwarden-lint {__version__} rules={RULES_VERSION} code={digest.hexdigest()} "
        f"{sys.version} {sorted(RULES)}"
    )


def lint_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    config: LintConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    root: str | os.PathLike[str] | None = None,
) -> LintResult:
    """Lint the Python files under ``paths``.

    Args:
        paths: files and directories.
        config: rule selection and exclusions (default: every rule, default exclusions).
        cache_dir: where results persist between runs; ``None`` disables the cache.
        jobs: worker processes (default: every core).
        root: the project root that exclusions and displayed paths are relative to
            (default: the current directory).

    Returns:
        A :class:`LintResult` whose findings are sorted by path, line, column.

    Raises:
        ConfigurationError: a path that does not exist, a bad ``jobs``.
    """
    cfg = config or LintConfig()
    base = Path(root).absolute() if root is not None else Path.cwd()
    files = discover(paths, cfg, base)
    engine: IncrementalEngine[list[list[object]]] = IncrementalEngine(
        _check_file,
        cache_dir=cache_dir,
        fingerprint=_fingerprint(),
        jobs=jobs,
        register=False,  # lives for one call: nothing for the governor to relieve later
        name="memwarden.lint",
    )
    try:
        report = engine.run(files)
    finally:
        engine.close()
    findings: list[Finding] = []
    for key in files:
        shown = _display(key, base)
        if key in report.errors:
            findings.append(
                Finding(shown, 1, 1, "MW000", f"cannot read: {report.errors[key]}", "error")
            )
            continue
        for row in report.results[key]:
            finding = Finding.from_row(shown, row)
            if cfg.enabled(finding.code):
                findings.append(finding)
    findings.sort()
    return LintResult(
        findings,
        files,
        checked=len(report.computed),
        cached=report.reused,
        root=base,
    )


def _display(key: str, root: Path) -> str:
    try:
        return Path(key).relative_to(root).as_posix()
    except ValueError:
        return key
