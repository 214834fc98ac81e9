"""Run the rules over files: parsing, suppression comments, file discovery, the incremental cache.

:func:`check_source` checks one module's source. :func:`lint_paths` finds the
Python files under the given paths, checks the changed ones on a process pool
through :class:`memwarden.incremental.IncrementalEngine` (results persisted in the
cache directory unless ``cache_dir=None``), and filters findings by the
configuration.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import dataclasses
import fnmatch
import gc
import hashlib
import io
import json
import logging
import os
import re
import stat
import sys
import tokenize
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from memwarden._files import check_owned_file, create_new, safe_directory, write_output
from memwarden.exceptions import ConfigurationError, UnsafePathError
from memwarden.incremental import IncrementalEngine
from memwarden.lint.config import DEFAULT_EXCLUDE, TEST_DIRECTORIES, TEST_FILES, LintConfig
from memwarden.lint.index import ModuleIndex
from memwarden.lint.model import Finding, RawFinding
from memwarden.lint.rules import RULES

__all__ = [
    "MAX_FILE_BYTES",
    "Baseline",
    "LintResult",
    "check_source",
    "discover",
    "lint_paths",
]

log = logging.getLogger("memwarden.lint")

#: Bumped whenever a rule's behaviour changes, so cached results of older rules are not reused.
RULES_VERSION = 2

#: Files larger than this are not read (one MW000 finding says so): source files are
#: rarely over a few hundred KiB, and an unbounded read of a planted ``x.py`` would be
#: an out-of-memory kill.
MAX_FILE_BYTES = 4 * 1024 * 1024

#: How long a run waits for a cache locked by another process before going without it.
CACHE_BUSY_TIMEOUT_S = 2.0

_SILENCE = " (if intended: `# memwarden: ignore[{code}] <reason>` on that line)"

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
        # MemoryError and RecursionError from the parser carry no text: say what they mean.
        detail = str(exc) or "nested too deeply or too large for the parser"
        return [
            Finding(path, 1, 1, "MW000", f"cannot parse: {detail} ({type(exc).__name__})", "error")
        ]
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
                found.message + _SILENCE.format(code=code),
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
    baselined: int = 0
    """Findings hidden because the baseline lists them."""

    @property
    def exit_code(self) -> int:
        """0 when clean, 1 with findings."""
        return 1 if self.findings else 0


def _is_test_path(relative: Path) -> bool:
    """``relative`` (below a linted directory) is a test file or lies in a test directory."""
    if any(part in TEST_DIRECTORIES for part in relative.parts[:-1]):
        return True
    return any(fnmatch.fnmatchcase(relative.name, pattern) for pattern in TEST_FILES)


def discover(paths: Iterable[str | os.PathLike[str]], config: LintConfig, root: Path) -> list[str]:
    """The Python files to lint under ``paths``, absolute, sorted, excluded ones removed.

    Directories are walked without following symlinked directories. Below a directory
    given, tests and fixtures (``tests/``, ``test_*.py``, ``conftest.py`` …) are skipped
    unless ``config.include_tests``; a file or directory named explicitly is linted.

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
        if path.is_file() or (path.exists() and not path.is_dir()):
            if not excluded(path):
                found.add(str(path))  # a FIFO or device named explicitly is reported later
            continue
        if not path.is_dir():
            raise ConfigurationError(f"{given}: no such file or directory", value=str(given))
        for dirpath, dirnames, filenames in os.walk(path):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d
                for d in dirnames
                if d not in DEFAULT_EXCLUDE
                and not excluded(here / d)
                and (config.include_tests or d not in TEST_DIRECTORIES)
            )
            for name in filenames:
                if name.endswith(_SUFFIXES):
                    candidate = here / name
                    if not config.include_tests and _is_test_path(candidate.relative_to(path)):
                        continue
                    if not excluded(candidate):
                        found.add(str(candidate))
    return sorted(found)


def _screen(files: Sequence[str], root: Path) -> tuple[list[str], list[Finding]]:
    """Keep regular files of at most :data:`MAX_FILE_BYTES`; the others become MW000 findings.

    A symlink to ``/dev/zero`` or a FIFO named ``x.py`` would make a read never end
    (or exhaust memory): only regular files are read, after a size check.
    """
    readable: list[str] = []
    skipped: list[Finding] = []
    for key in files:
        shown = _display(key, root)
        try:
            st = os.stat(key)  # noqa: PTH116 - a str key, as the engine gets it
        except OSError as exc:
            skipped.append(
                Finding(shown, 1, 1, "MW000", f"cannot read: {exc.strerror or exc}", "error")
            )
            continue
        if not stat.S_ISREG(st.st_mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(st.st_mode)
                else "a device"
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket"
                if stat.S_ISSOCK(st.st_mode)
                else "not a regular file"
            )
            skipped.append(
                Finding(shown, 1, 1, "MW000", f"not checked: {kind}, not a regular file", "error")
            )
            continue
        if st.st_size > MAX_FILE_BYTES:
            skipped.append(
                Finding(
                    shown,
                    1,
                    1,
                    "MW000",
                    f"not checked: {st.st_size} bytes, over the {MAX_FILE_BYTES}-byte limit "
                    "for a source file",
                    "error",
                )
            )
            continue
        readable.append(key)
    return readable, skipped


def _check_file_bounded(key: str) -> list[Finding]:
    """Check one file directly (outside the engine), reading at most the size limit."""
    try:
        fd = os.open(key, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return [Finding(key, 1, 1, "MW000", "not checked: not a regular file", "error")]
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        return [Finding(key, 1, 1, "MW000", f"cannot read: {exc.strerror or exc}", "error")]
    if len(data) > MAX_FILE_BYTES:
        return [Finding(key, 1, 1, "MW000", "not checked: over the size limit", "error")]
    return check_source(data, key)


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


def _prepare_cache(cache_dir: str | os.PathLike[str]) -> Path:
    """The cache directory, made safe: ours, not a symlink, and its files not symlinks.

    A cloned repository can contain a ``.memwarden-cache`` that is a symlink (or holds
    symlinks named like the database or ``.gitignore``) pointing at the user's files;
    writing through them would overwrite those. The ``.gitignore`` is created here,
    exclusively and without following symlinks.

    Raises:
        ConfigurationError: the directory or one of its files is a symlink, not ours, or
            not what it should be; the message names the path and what to do.
    """
    from memwarden.incremental import DB_NAME

    try:
        directory = safe_directory(cache_dir, purpose="lint cache directory", create=True)
        for name in (".gitignore", DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
            check_owned_file(directory / name, purpose="lint cache file")
    except UnsafePathError as exc:
        raise ConfigurationError(
            f"{exc} (use --cache-dir DIR or --no-cache)", value=str(cache_dir)
        ) from exc
    except OSError as exc:
        log.warning("cache directory %s unusable, not persisting: %s", cache_dir, exc)
        return Path(cache_dir)
    ignore = directory / ".gitignore"
    with contextlib.suppress(FileExistsError, OSError):
        fd = create_new(ignore)
        try:
            os.write(fd, b"# written by memwarden: the cache is never committed\n*\n")
        finally:
            os.close(fd)
    return directory


def _rows_to_findings(shown: str, rows: object) -> list[Finding]:
    """Findings from cached rows; ``ValueError`` when the rows are damaged."""
    if not isinstance(rows, list):
        raise ValueError(f"cached value is {type(rows).__name__}, not a list")
    return [Finding.from_row(shown, row) for row in rows]


def lint_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    config: LintConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    root: str | os.PathLike[str] | None = None,
    baseline: Baseline | None = None,
) -> LintResult:
    """Lint the Python files under ``paths``.

    Args:
        paths: files and directories.
        config: rule selection and exclusions (default: every rule, default exclusions).
        cache_dir: where results persist between runs; ``None`` disables the cache.
        jobs: worker processes (default: every core).
        root: the project root that exclusions and displayed paths are relative to
            (default: the current directory).
        baseline: findings already known (``--baseline``): they are counted in
            :attr:`LintResult.baselined`, not reported.

    Returns:
        A :class:`LintResult` whose findings are sorted by path, line, column.

    Raises:
        ConfigurationError: a path that does not exist, a bad ``jobs``, an unsafe cache
            directory.
    """
    cfg = config or LintConfig()
    base = Path(root).absolute() if root is not None else Path.cwd()
    files = discover(paths, cfg, base)
    readable, findings = _screen(files, base)
    cache = _prepare_cache(cache_dir) if cache_dir is not None else None
    engine: IncrementalEngine[list[list[object]]] = IncrementalEngine(
        _check_file,
        cache_dir=cache,
        fingerprint=_fingerprint(),
        jobs=jobs,
        register=False,  # lives for one call: nothing for the governor to relieve later
        name="memwarden.lint",
        busy_timeout_s=CACHE_BUSY_TIMEOUT_S,
    )
    try:
        report = engine.run(readable)
        damaged: list[str] = []
        for key in readable:
            shown = _display(key, base)
            if key in report.errors:
                findings.append(
                    Finding(shown, 1, 1, "MW000", f"cannot read: {report.errors[key]}", "error")
                )
                continue
            try:
                found = _rows_to_findings(shown, report.results.get(key))
            except (ValueError, TypeError) as exc:
                # A damaged cache row must neither crash the run nor hide findings: the
                # file is checked again, and the engine forgets the bad entry.
                log.warning("damaged cached result for %s (%s); checking it again", key, exc)
                damaged.append(key)
                found = [dataclasses.replace(f, path=shown) for f in _check_file_bounded(key)]
            findings.extend(f for f in found if cfg.enabled(f.code))
        for key in damaged:
            engine.invalidate(key)
    finally:
        engine.close()
    findings.sort()
    baselined = 0
    if baseline is not None:
        findings, baselined = baseline.filter(findings, base)
    return LintResult(
        findings,
        files,
        checked=len(report.computed),
        cached=report.reused,
        root=base,
        baselined=baselined,
    )


class Baseline:
    """Findings a team has accepted (``--write-baseline``), so a run shows only new ones.

    Entries are keyed by path, code and a hash of the flagged line's text (not the line
    number), so findings stay matched when code above them moves; a finding whose line
    text changes counts as new. Identical entries are counted, not merged: a second
    copy of a known finding on another line is new.
    """

    VERSION = 1

    def __init__(self, entries: Iterable[tuple[str, str, str]] = ()) -> None:
        self.entries: collections.Counter[tuple[str, str, str]] = collections.Counter(entries)

    @staticmethod
    def key(finding: Finding, root: Path, lines: dict[str, list[str]]) -> tuple[str, str, str]:
        """(path, code, hash of the stripped source line) of ``finding``."""
        text = lines.get(finding.path)
        if text is None:
            source = Path(finding.path)
            source = source if source.is_absolute() else root / source
            try:
                raw = source.read_bytes()[: MAX_FILE_BYTES + 1]
                text = raw.decode("utf-8", "replace").splitlines()
            except OSError:
                text = []
            lines[finding.path] = text
        line = text[finding.line - 1].strip() if 0 < finding.line <= len(text) else ""
        digest = hashlib.blake2b(line.encode(), digest_size=8).hexdigest()
        return finding.path, finding.code, digest

    def filter(self, findings: Sequence[Finding], root: Path) -> tuple[list[Finding], int]:
        """The findings not in the baseline, and how many were."""
        remaining = collections.Counter(self.entries)
        lines: dict[str, list[str]] = {}
        new: list[Finding] = []
        known = 0
        for finding in findings:
            key = self.key(finding, root, lines)
            if remaining[key] > 0:
                remaining[key] -= 1
                known += 1
            else:
                new.append(finding)
        return new, known

    @classmethod
    def of(cls, findings: Sequence[Finding], root: Path) -> Baseline:
        """A baseline accepting exactly ``findings``."""
        lines: dict[str, list[str]] = {}
        return cls(cls.key(f, root, lines) for f in findings)

    def dumps(self) -> str:
        """The baseline file's text (JSON, sorted, one entry per finding)."""
        rows = [
            {"path": p, "code": c, "line_hash": h}
            for (p, c, h), n in sorted(self.entries.items())
            for _ in range(n)
        ]
        return json.dumps({"memwarden-baseline": self.VERSION, "findings": rows}, indent=1) + "\n"

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the baseline to ``path`` (replaced atomically; a symlink is not followed)."""
        write_output(path, self.dumps())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baseline:
        """Read a baseline file.

        Raises:
            ConfigurationError: it cannot be read or is not a memwarden baseline.
        """
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigurationError(
                f"--baseline {path}: cannot read it ({exc})", value=str(path)
            ) from exc
        rows = doc.get("findings") if isinstance(doc, dict) else None
        if not isinstance(rows, list) or doc.get("memwarden-baseline") != cls.VERSION:
            raise ConfigurationError(
                f"--baseline {path}: not a memwarden baseline (write one with --write-baseline)",
                value=str(path),
            )
        entries = []
        for row in rows:
            if not (
                isinstance(row, dict)
                and all(isinstance(row.get(k), str) for k in ("path", "code", "line_hash"))
            ):
                raise ConfigurationError(f"--baseline {path}: bad entry {row!r}", value=str(path))
            entries.append((row["path"], row["code"], row["line_hash"]))
        return cls(entries)


def _display(key: str, root: Path) -> str:
    try:
        return Path(key).relative_to(root).as_posix()
    except ValueError:
        return key
