"""An incremental engine: compute a result per input file and only recompute what changed.

This is the playbook's "Incremental Compilation Pattern" as a reusable component.
:class:`IncrementalEngine` keeps, for each input (a file path), the file's
``(mtime_ns, size)``, a content digest, the declared dependencies and the
result of ``compute``. On the next call, or in the next process when a
``cache_dir`` is given (sqlite3), an input is recomputed only when:

* its ``(mtime_ns, size)`` changed *and* its content digest changed (a touched
  but identical file is re-hashed, not recomputed);
* or an input it declared a dependency on changed (transitively, within a run).

Results live in an in-memory LRU bounded by bytes; the sqlite cache is keyed by a
fingerprint of the engine's schema and the caller's ``fingerprint`` (tool version,
configuration), so a cache written by another version or configuration is never
trusted. Many processes may share one cache directory: sqlite's WAL journal and
short write transactions keep the file consistent, and a cache that cannot be
read is ignored (and rebuilt), never fatal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from memwarden._lru import BoundedLRU
from memwarden._registry import DEFAULT, DefaultType
from memwarden._units import SizeLike, parse_size
from memwarden.exceptions import ConfigurationError

__all__ = ["JSON_CODEC", "PICKLE_CODEC", "Codec", "EngineStats", "IncrementalEngine", "RunReport"]

if TYPE_CHECKING:
    from memwarden.pressure import Governor

log = logging.getLogger("memwarden.incremental")

R = TypeVar("R")

#: Bumped whenever the on-disk layout or the meaning of a row changes; part of the file name,
#: so an engine never opens a database written with another layout.
SCHEMA_VERSION = 1
DB_NAME = f"incremental-v{SCHEMA_VERSION}.sqlite3"

# A file modified within this window of the moment its state was recorded may have been
# changed again inside the filesystem's timestamp granularity without a visible mtime change
# (git's "racy clean" problem), so its (mtime, size) is not trusted and its digest is checked.
_RACY_WINDOW_NS = 2_000_000_000
# Fingerprints whose rows are kept in a shared cache file; older ones are deleted.
_MAX_FINGERPRINTS = 8
# Below this many inputs to (re)check, a process pool costs more than it saves.
_MIN_PARALLEL = 24
_BUSY_TIMEOUT_S = 30.0
_MAX_PRUNE = 10_000  # orphaned rows deleted per run (bounds one transaction)
_ENTRY_OVERHEAD_BYTES = 200


@dataclass(frozen=True)
class Codec:
    """How results are turned into bytes for the persistent cache, and back.

    ``loads`` may raise anything on bytes it did not write; such a row is ignored.
    """

    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


JSON_CODEC = Codec(
    "json",
    lambda value: json.dumps(value, separators=(",", ":")).encode(),
    lambda data: json.loads(data.decode()),
)
"""The default codec: safe to load from a shared directory; results must be JSON values."""


def _pickle_dumps(value: Any) -> bytes:
    import pickle

    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_loads(data: bytes) -> Any:
    import pickle

    # Only for cache directories the user alone can write: unpickling runs code.
    return pickle.loads(data)


PICKLE_CODEC = Codec("pickle", _pickle_dumps, _pickle_loads)
"""Any picklable result; use only with a cache directory nobody else can write."""


@dataclass
class _Entry:
    mtime_ns: int
    size: int
    digest: str
    checked_ns: int  # wall-clock time the (mtime, size) was recorded, for the racy check
    deps: dict[str, str]  # dependency key -> its digest when the result was computed
    value: Any
    cost_bytes: int


@dataclass
class EngineStats:
    """Counters over the engine's life (``engine.stats``)."""

    runs: int = 0
    stat_hits: int = 0
    """Inputs reused because their (mtime_ns, size) was unchanged."""
    hash_hits: int = 0
    """Inputs whose stat changed but content digest did not: reused after re-hashing."""
    computed: int = 0
    """Inputs computed (new, changed, or a dependency changed)."""
    missing: int = 0
    """Inputs that did not exist or could not be read."""
    evictions: int = 0
    """In-memory entries dropped to stay within ``max_memory_bytes``."""


@dataclass
class RunReport(Generic[R]):
    """What one :meth:`IncrementalEngine.run` produced and how much it recomputed."""

    results: dict[str, R]
    computed: list[str] = field(default_factory=list)
    reused: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    """Inputs that could not be read: key -> the OS error message."""

    def __len__(self) -> int:
        return len(self.results)


@dataclass
class _Outcome:
    key: str
    mtime_ns: int = 0
    size: int = 0
    digest: str = ""
    changed: bool = True
    value: Any = None
    deps: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def _register(engine: IncrementalEngine[Any], governor: Governor | DefaultType | None) -> Any:
    """Register ``engine.shrink`` with ``governor``, weakly; None for none or on failure.

    Raises:
        TypeError: ``governor`` is not a governor, DEFAULT or None.
    """
    if governor is None:
        return None
    from memwarden.pressure import PRIORITY_CACHE, resolve_governor

    gov = resolve_governor(governor)
    if gov is None:
        return None
    try:
        return gov.register_reliever(engine.shrink, priority=PRIORITY_CACHE, name=engine.name)
    except Exception:  # a full registry must not stop the engine
        log.warning("could not register %s with the governor", engine.name, exc_info=True)
        return None


def _pool_context() -> Any:
    """``fork`` (fast: no re-import in workers) when this process has one thread, else the default.

    Forking a process with other threads running can deadlock the child on a lock one
    of them held; then the platform's default start method is used.
    """
    import multiprocessing

    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _evaluate(
    compute: Callable[[str, bytes], Any],
    depends_on: Callable[[str, bytes, Any], Iterable[str]] | None,
    key: str,
    known_digest: str | None,
) -> _Outcome:
    """Read ``key``, and compute unless its content digest equals ``known_digest``.

    Runs in a worker process when a pool is used, so reading and hashing are parallel too.
    """
    path = Path(key)
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        return _Outcome(key, error=f"{type(exc).__name__}: {exc.strerror or exc}")
    digest = _digest(data)
    out = _Outcome(key, st.st_mtime_ns, st.st_size, digest)
    if known_digest is not None and digest == known_digest:
        out.changed = False
        return out
    out.value = compute(key, data)
    if depends_on is not None:
        for dep in depends_on(key, data, out.value):
            out.deps[dep] = _digest_of_path(dep)
    return out


def _evaluate_many(
    compute: Callable[[str, bytes], Any],
    depends_on: Callable[[str, bytes, Any], Iterable[str]] | None,
    jobs: Sequence[tuple[str, str | None]],
) -> list[_Outcome]:
    return [_evaluate(compute, depends_on, key, known) for key, known in jobs]


def _digest_of_path(key: str) -> str:
    try:
        return _digest(Path(key).read_bytes())
    except OSError:
        return ""  # a missing dependency: changes when it appears


class _Store:
    """The sqlite3 side of the engine: one row per (fingerprint, key)."""

    def __init__(
        self, directory: Path, fingerprint: str, busy_timeout_s: float = _BUSY_TIMEOUT_S
    ) -> None:
        self.path = directory / DB_NAME
        self.fingerprint = fingerprint
        self.busy_timeout_s = busy_timeout_s
        self.orphans: list[str] = []  # keys of rows whose files are gone (found by a bulk load)
        self._conn: sqlite3.Connection | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # A read-only checkout or a bad --cache-dir costs speed, never the run.
            log.warning("cache directory %s unusable, not persisting: %s", directory, exc)
            return
        ignore = directory / ".gitignore"
        if not ignore.exists():
            with contextlib.suppress(OSError):
                ignore.write_text("# written by memwarden: the cache is never committed\n*\n")
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection | None:
        for attempt in range(2):
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout_s,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS results ("
                    " fingerprint TEXT NOT NULL, key TEXT NOT NULL, mtime_ns INTEGER NOT NULL,"
                    " size INTEGER NOT NULL, digest TEXT NOT NULL, checked_ns INTEGER NOT NULL,"
                    " deps TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (fingerprint, key))"
                )
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS fingerprints ("
                    " fingerprint TEXT PRIMARY KEY, used_ns INTEGER NOT NULL)"
                )
                return conn
            except sqlite3.DatabaseError as exc:
                # Not a database (truncated, overwritten, another tool's file): never trusted.
                log.warning("ignoring unreadable cache %s: %s", self.path, exc)
                if attempt == 0 and "locked" not in str(exc) and "busy" not in str(exc):
                    self._discard()
        return None

    def _heal(self, exc: sqlite3.DatabaseError) -> None:
        """A damaged database (not a locked one) is rebuilt from scratch, once per run."""
        text = str(exc)
        if "locked" in text or "busy" in text or getattr(self, "_healed", False):
            return
        self._healed = True
        log.warning("rebuilding damaged cache %s", self.path)
        self.close()
        self._discard()
        self._conn = self._open()

    def _discard(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{self.path}{suffix}").unlink()

    @property
    def usable(self) -> bool:
        return self._conn is not None

    def load(self, keys: Sequence[str]) -> Iterator[tuple[str, int, int, str, int, str, bytes]]:
        if self._conn is None:
            return
        try:
            if len(keys) > 500:
                # One scan of this fingerprint's rows is cheaper than many lookups.
                wanted = set(keys)
                rows = self._conn.execute(
                    "SELECT key, mtime_ns, size, digest, checked_ns, deps, value"
                    " FROM results WHERE fingerprint = ?",
                    (self.fingerprint,),
                ).fetchall()
                # Rows of files that no longer exist are pruned on the way, so the cache stays
                # bounded by the files on disk, not by every file ever seen.
                self.orphans = [
                    row[0]
                    for row in rows
                    if row[0] not in wanted and not os.path.exists(row[0])  # noqa: PTH110
                ][:_MAX_PRUNE]
                yield from (row for row in rows if row[0] in wanted)
                return
            for key in keys:  # primary-key lookups: cheap for the few inputs of a small run
                yield from self._conn.execute(
                    "SELECT key, mtime_ns, size, digest, checked_ns, deps, value FROM results"
                    " WHERE fingerprint = ? AND key = ?",
                    (self.fingerprint, key),
                ).fetchall()
        except sqlite3.DatabaseError as exc:
            log.warning("ignoring unreadable cache %s: %s", self.path, exc)
            self._heal(exc)

    def save(
        self,
        rows: Sequence[tuple[str, int, int, str, int, str, bytes]],
        deleted: Sequence[str],
    ) -> None:
        if self._conn is None or not (rows or deleted):
            return
        now = time.time_ns()
        try:
            # BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue on the
            # busy timeout instead of failing half-way; each run writes in one short transaction.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO results"
                    " (fingerprint, key, mtime_ns, size, digest, checked_ns, deps, value)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(self.fingerprint, *row) for row in rows],
                )
                self._conn.executemany(
                    "DELETE FROM results WHERE fingerprint = ? AND key = ?",
                    [(self.fingerprint, key) for key in deleted],
                )
                self._conn.execute(
                    "INSERT OR REPLACE INTO fingerprints (fingerprint, used_ns) VALUES (?, ?)",
                    (self.fingerprint, now),
                )
                stale = [
                    fp
                    for (fp,) in self._conn.execute(
                        "SELECT fingerprint FROM fingerprints"
                        " ORDER BY used_ns DESC LIMIT -1 OFFSET ?",
                        (_MAX_FINGERPRINTS,),
                    )
                ]
                for fp in stale:
                    self._conn.execute("DELETE FROM results WHERE fingerprint = ?", (fp,))
                    self._conn.execute("DELETE FROM fingerprints WHERE fingerprint = ?", (fp,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            # A cache that cannot be written costs speed next time, never correctness now.
            log.warning("could not update cache %s: %s", self.path, exc)
            self._heal(exc)

    def clear(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute("DELETE FROM results WHERE fingerprint = ?", (self.fingerprint,))
        except sqlite3.DatabaseError as exc:
            log.warning("could not clear cache %s: %s", self.path, exc)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class IncrementalEngine(Generic[R]):
    """Compute ``compute(key, data)`` per input file; recompute only what changed.

    Args:
        compute: ``(key, content bytes) -> result``. With a pool (``jobs > 1``) it must be
            picklable (a module-level function). Exceptions propagate to the caller.
        cache_dir: directory for the sqlite3 cache shared between runs and processes;
            ``None`` keeps state in memory only.
        max_memory_bytes: bound of the in-memory result cache (``parse_size`` strings
            accepted); least recently used results are dropped beyond it (and reloaded from
            ``cache_dir`` when there is one).
        fingerprint: everything the results depend on besides the input files (tool
            version, configuration). Rows written under another fingerprint are ignored.
        codec: how results are stored on disk; :data:`JSON_CODEC` by default.
        depends_on: ``(key, data, result) -> keys`` this input's result depends on; when
            one of them changes, this input is recomputed too.
        jobs: worker processes for :meth:`run` (default: all cores); 1 computes inline.
        governor: where :meth:`shrink` is registered (held weakly), so the in-memory
            results are dropped first under memory pressure: :data:`DEFAULT` (the
            process-wide governor), ``None`` for none, or a :class:`Governor`.
        register: ``False`` is ``governor=None``.
        name: a label for logs and the governor.
        busy_timeout_s: how long to wait for a cache another process holds locked
            before going on without it.

    Raises:
        ConfigurationError: a bad ``max_memory_bytes`` or ``jobs``.
    """

    def __init__(
        self,
        compute: Callable[[str, bytes], R],
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        max_memory_bytes: SizeLike = 64 * 2**20,
        fingerprint: str = "",
        codec: Codec = JSON_CODEC,
        depends_on: Callable[[str, bytes, R], Iterable[str]] | None = None,
        jobs: int | None = None,
        governor: Governor | DefaultType | None = DEFAULT,
        register: bool = True,
        name: str | None = None,
        busy_timeout_s: float = _BUSY_TIMEOUT_S,
    ) -> None:
        self._compute = compute
        self._depends_on = depends_on
        self.max_memory_bytes = parse_size(max_memory_bytes, source="max_memory_bytes")
        if self.max_memory_bytes < 0:
            raise ConfigurationError(
                f"max_memory_bytes={max_memory_bytes!r}: must not be negative",
                value=max_memory_bytes,
                source="IncrementalEngine",
            )
        if jobs is not None and jobs < 1:
            raise ConfigurationError(
                f"jobs={jobs!r}: expected a positive number of processes",
                value=jobs,
                source="IncrementalEngine",
            )
        self.jobs = jobs or os.cpu_count() or 1
        self.codec = codec
        self.fingerprint = hashlib.blake2b(
            json.dumps([SCHEMA_VERSION, codec.name, fingerprint]).encode(), digest_size=16
        ).hexdigest()
        # The in-memory results: the same size-bounded LRU core as memwarden.cache's
        # LRUCache, guarded by the engine's lock; sizes are the entries' cost_bytes.
        self._lru: BoundedLRU[str, _Entry] = BoundedLRU(None, self.max_memory_bytes, sized=True)
        self._lock = threading.RLock()
        self.stats = EngineStats()
        self._store = (
            _Store(Path(cache_dir), self.fingerprint, busy_timeout_s)
            if cache_dir is not None
            else None
        )
        self.name = name or f"IncrementalEngine@{id(self):x}"
        self._registration: Any = _register(self, governor if register else None)

    # -- public API ---------------------------------------------------------------------

    @property
    def memory_bytes(self) -> int:
        """Estimated bytes of results held in memory (always <= ``max_memory_bytes``)."""
        return self._lru.total

    @property
    def cache_path(self) -> Path | None:
        """The sqlite3 file, when the engine persists (it may be unusable; see the log)."""
        return self._store.path if self._store is not None else None

    def get(self, key: str | os.PathLike[str]) -> R:
        """Return the result for one input, computing it only if it changed.

        Raises:
            OSError: the input cannot be read.
        """
        name = os.fspath(key)
        report = self.run([name], jobs=1)
        if name in report.errors:
            raise OSError(f"{name}: {report.errors[name]}")
        return report.results[name]

    def run(
        self,
        keys: Iterable[str | os.PathLike[str]],
        *,
        jobs: int | None = None,
        executor: Executor | None = None,
    ) -> RunReport[R]:
        """Bring every input up to date and return all their results.

        Args:
            keys: input file paths; used as given (pass absolute paths for a stable cache).
            jobs: override the engine's process count for this run.
            executor: run computations on this executor instead of a fresh process pool.

        Returns:
            A :class:`RunReport`: results by key, which keys were computed, how many reused,
            and the inputs that could not be read (absent from ``results``).
        """
        names = list(dict.fromkeys(os.fspath(k) for k in keys))
        with self._lock:
            self.stats.runs += 1
            known = self._known(names)
            report: RunReport[R] = RunReport({})
            now_ns = time.time_ns()
            # Phase 1: stat every input; trust (mtime, size) unless it is racy.
            to_check: list[tuple[str, str | None]] = []
            sizes: dict[str, int] = {}
            current: dict[str, str] = {}  # key -> content digest now
            for name in names:
                entry = known.get(name)
                try:
                    st = os.stat(name)  # noqa: PTH116 - a Path per input costs on big trees
                except OSError as exc:
                    report.errors[name] = f"{type(exc).__name__}: {exc.strerror or exc}"
                    continue
                if (
                    entry is not None
                    and entry.mtime_ns == st.st_mtime_ns
                    and entry.size == st.st_size
                    and st.st_mtime_ns < entry.checked_ns - _RACY_WINDOW_NS
                ):
                    current[name] = entry.digest
                    self.stats.stat_hits += 1
                else:
                    to_check.append((name, entry.digest if entry is not None else None))
                    sizes[name] = st.st_size
            # Phase 2: read + hash the suspects, computing those whose content changed.
            outcomes = self._execute(to_check, jobs, executor, sizes)
            dirty: dict[str, _Outcome] = {}
            for out in outcomes:
                if out.error is not None:
                    report.errors[out.key] = out.error
                    continue
                current[out.key] = out.digest
                if out.changed:
                    dirty[out.key] = out
                else:
                    self.stats.hash_hits += 1
                    entry = known[out.key]
                    # Same content under a new stat: remember the stat so the next run is fast.
                    entry.mtime_ns, entry.size, entry.checked_ns = out.mtime_ns, out.size, now_ns
            touched = {out.key for out in outcomes if out.error is None and not out.changed}
            # Phase 3: dependencies. A reused input whose dependency changed (its digest
            # differs from the one recorded, or it is recomputed in this run) is recomputed.
            stale = self._stale_by_deps(names, known, current, set(dirty))
            if stale:
                for out in self._execute([(k, None) for k in stale], jobs, executor, sizes):
                    if out.error is not None:
                        report.errors[out.key] = out.error
                        current.pop(out.key, None)
                        continue
                    dirty[out.key] = out
                    touched.discard(out.key)
            # Phase 4: fold results in, persist, answer.
            rows: list[tuple[str, int, int, str, int, str, bytes]] = []
            for out in dirty.values():
                blob = self.codec.dumps(out.value)
                entry = _Entry(
                    out.mtime_ns,
                    out.size,
                    out.digest,
                    now_ns,
                    out.deps,
                    out.value,
                    len(blob) + len(out.key) + _ENTRY_OVERHEAD_BYTES,
                )
                known[out.key] = entry
                rows.append(self._row(out.key, entry, blob))
                report.computed.append(out.key)
            self.stats.computed += len(dirty)
            for name in touched:
                entry = known[name]
                rows.append(self._row(name, entry, self.codec.dumps(entry.value)))
            for name in names:
                if name in current:
                    report.results[name] = known[name].value
            report.reused = len(report.results) - len(dirty)
            self.stats.missing += len(report.errors)
            for name in names:
                if name in known and name in current:
                    self._remember(name, known[name])
            gone = [name for name in report.errors if name in known]
            for name in gone:
                self._forget(name)
            if self._store is not None:
                self._store.save(rows, [*gone, *self._store.orphans])
                self._store.orphans = []
            return report

    def invalidate(self, key: str | os.PathLike[str] | None = None) -> None:
        """Forget one input's result, or every result (also in the persistent cache)."""
        with self._lock:
            if key is None:
                self._lru.clear()
                if self._store is not None:
                    self._store.clear()
                return
            name = os.fspath(key)
            self._forget(name)
            if self._store is not None:
                self._store.save([], [name])

    def shrink(self, fraction: float = 0.5) -> int:
        """Drop about ``fraction`` of the in-memory results, least recently used first.

        Called by the governor under memory pressure; persisted results are reloaded from
        ``cache_dir`` when next needed, others recomputed. Never blocks: while a run holds
        the engine, it returns 0.

        Returns:
            The estimated bytes released.
        """
        # A plain ValueError, as the caches' and pools' shrink: one protocol.
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise ValueError(f"shrink(fraction={fraction!r}): expected a number in [0, 1]")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"shrink(fraction={fraction!r}): expected a number in [0, 1]")
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            lru = self._lru
            target = lru.total * (1.0 - fraction)
            released = 0
            while lru.od and lru.total > target:
                _, evicted = lru.pop_lru()
                released += evicted.cost_bytes
                self.stats.evictions += 1
            return released
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the persistent cache and leave the governor (results stay in memory)."""
        if self._store is not None:
            self._store.close()
        registration, self._registration = self._registration, None
        if registration is not None:
            with contextlib.suppress(Exception):
                registration.unregister()

    def __enter__(self) -> IncrementalEngine[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._lru.od)

    # -- internals ----------------------------------------------------------------------

    def _row(
        self, key: str, entry: _Entry, blob: bytes
    ) -> tuple[str, int, int, str, int, str, bytes]:
        return (
            key,
            entry.mtime_ns,
            entry.size,
            entry.digest,
            entry.checked_ns,
            json.dumps(entry.deps, separators=(",", ":")),
            blob,
        )

    def _known(self, names: Sequence[str]) -> dict[str, _Entry]:
        """Entries for ``names`` from memory, then from the persistent cache."""
        known: dict[str, _Entry] = {}
        missing: list[str] = []
        for name in names:
            entry = self._lru.od.get(name)
            if entry is None:
                missing.append(name)
            else:
                known[name] = entry
        if missing and self._store is not None:
            for key, mtime_ns, size, digest, checked_ns, deps, blob in self._store.load(missing):
                try:
                    value = self.codec.loads(blob)
                    dep_map = json.loads(deps)
                    if not isinstance(dep_map, dict):
                        raise TypeError("deps is not an object")
                except Exception as exc:  # a row we cannot decode is ignored, never trusted
                    log.debug("ignoring undecodable cache row for %s: %s", key, exc)
                    continue
                known[key] = _Entry(
                    int(mtime_ns),
                    int(size),
                    str(digest),
                    int(checked_ns),
                    {str(k): str(v) for k, v in dep_map.items()},
                    value,
                    len(blob) + len(key) + _ENTRY_OVERHEAD_BYTES,
                )
        return known

    def _stale_by_deps(
        self,
        names: Sequence[str],
        known: Mapping[str, _Entry],
        current: Mapping[str, str],
        recomputed: set[str],
    ) -> list[str]:
        stale: set[str] = set()
        candidates = [
            n
            for n in names
            if n in current and n not in recomputed and n in known and known[n].deps
        ]
        if not candidates:
            return []
        outside: dict[str, str] = {}

        def digest_now(dep: str) -> str:
            if dep in current:
                return current[dep]
            if dep not in outside:
                outside[dep] = _digest_of_path(dep)
            return outside[dep]

        changed = True
        # Fixed point: each pass can only add keys, so it ends within len(candidates) passes.
        while changed:
            changed = False
            for name in candidates:
                if name in stale:
                    continue
                for dep, digest in known[name].deps.items():
                    if dep in recomputed or dep in stale or digest_now(dep) != digest:
                        stale.add(name)
                        changed = True
                        break
        return sorted(stale)

    def _execute(
        self,
        jobs_list: Sequence[tuple[str, str | None]],
        jobs: int | None,
        executor: Executor | None,
        sizes: Mapping[str, int],
    ) -> list[_Outcome]:
        if not jobs_list:
            return []
        workers = jobs or self.jobs
        if executor is None and (workers <= 1 or len(jobs_list) < _MIN_PARALLEL):
            return _evaluate_many(self._compute, self._depends_on, jobs_list)
        # Big inputs first, in small chunks, so no worker is left with the longest tail.
        ordered = sorted(jobs_list, key=lambda job: sizes.get(job[0], 0), reverse=True)
        n_chunks = min(len(ordered), workers * 8)
        chunks = [ordered[i::n_chunks] for i in range(n_chunks)]
        own = executor is None
        pool: Executor = executor or ProcessPoolExecutor(
            max_workers=min(workers, len(chunks)), mp_context=_pool_context()
        )
        try:
            futures = [
                pool.submit(_evaluate_many, self._compute, self._depends_on, chunk)
                for chunk in chunks
            ]
            return [out for fut in futures for out in fut.result()]
        finally:
            if own:
                pool.shutdown(wait=True, cancel_futures=True)

    def _remember(self, name: str, entry: _Entry) -> None:
        lru = self._lru
        if not lru.fits(entry.cost_bytes):
            # Larger than the whole bound: served from disk (or recomputed) next time.
            self._forget(name)
            return
        evicted: list[tuple[str, _Entry]] = []
        lru.put(name, entry, entry.cost_bytes, evicted)
        self.stats.evictions += len(evicted)

    def _forget(self, name: str) -> None:
        if name in self._lru.od:
            self._lru.remove(name)
