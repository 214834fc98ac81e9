"""The one owner of Python-heap tracing: every memwarden user of tracemalloc goes through it.

tracemalloc is process-wide: one on/off switch, one traceback depth and one peak.
Several memwarden tools trace at once (a ``memory_budget`` inside a pytest
``limit_memory`` test inside ``memwarden run --python-heap``), so none of them
may start, stop or reset it alone. Each asks this module for a
:class:`TraceUser` (:func:`acquire`); the owner

- starts tracing for the first user and stops it when the last user that needed
  it is released (a session started outside memwarden, ``-X tracemalloc`` or a
  user's ``tracemalloc.start()``, is reused and never stopped);
- folds tracemalloc's peak into every open user before any reset, so each user's
  :meth:`TraceUser.peak_bytes` is its own peak since its own start even when an
  inner user resets the process-wide one;
- negotiates the traceback depth: tracemalloc cannot change it while tracing, so
  when a user asks for more frames than a session memwarden started records, the
  session is restarted with the larger depth. A restart forgets the traces of
  blocks allocated before it (their frees are no longer seen), so the owner keeps
  the traced total continuous across it with an offset; snapshots taken before a
  restart cannot be diffed exactly against later ones. A session memwarden did not
  start keeps its depth;
- resets itself in a forked child (the forking thread's users stay open).

It also holds the two things every report needs: :func:`frame_kind` /
:func:`user_frame` (which frame of a stack is the user's code, as opposed to
memwarden, the interpreter's machinery, the standard library, installed libraries
or the test runner) and :func:`group_traces` / :func:`by_site` (traces grouped
by traceback at C-level speed, then charged to sites). It is the only module that
starts, stops or resets tracemalloc or reads its private structures.

The sampling profiler (:mod:`memwarden.profiler`) plugs in beside it the same
way: :func:`acquire_sampler` starts the sampler for the first user and stops it
after the last, with the same peak folding.
"""

from __future__ import annotations

# The C functions only: tracemalloc.py imports pickle, linecache and fnmatch, which
# ``import memwarden`` must not pay for. Snapshots import it lazily.
import _tracemalloc
import functools
import operator
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    import tracemalloc

__all__ = [
    "LIBRARIES",
    "SamplerUser",
    "SiteTotal",
    "TraceGroup",
    "TraceUser",
    "acquire",
    "acquire_sampler",
    "by_site",
    "frame_kind",
    "group_traces",
    "is_tracing",
    "snapshot",
    "traced_memory",
    "user_frame",
]

FrameKind = Literal["memwarden", "runner", "stdlib", "library", "user"]

#: Directory of memwarden's own package (every module's frames start with it).
PACKAGE_DIR = str(Path(__file__).resolve().parent) + os.sep

#: Frame kinds that are not the user's code when looking for the line to blame.
LIBRARIES: frozenset[FrameKind] = frozenset({"memwarden", "runner", "stdlib", "library"})
#: Only memwarden and the standard library: a site-packages frame counts as the user's.
STDLIB_ONLY: frozenset[FrameKind] = frozenset({"memwarden", "stdlib"})


# --------------------------------------------------------------------------- frames


@functools.cache
def _prefixes() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(stdlib, installed libraries, test runner)`` directory prefixes."""
    import sysconfig

    paths = sysconfig.get_paths()

    def norm(p: str | Path) -> str:
        return str(Path(p).resolve()).rstrip(os.sep) + os.sep

    stdlib = {norm(paths[k]) for k in ("stdlib", "platstdlib") if k in paths}
    site = {norm(paths[k]) for k in ("purelib", "platlib") if k in paths}
    site.update(norm(p) for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    runner = []
    for name in ("_pytest", "pytest", "pluggy", "xdist", "execnet", "pytest_memray", "coverage"):
        # Found without importing them: a module loaded here would be traced memory.
        for base in sys.path:
            candidate = Path(base or ".") / name
            if candidate.is_dir():
                runner.append(norm(candidate))
                break
    return tuple(sorted(stdlib)), tuple(sorted(site)), tuple(runner)


_MACHINERY = ("<frozen ", "<unknown>", "<string>")


@functools.lru_cache(maxsize=8192)  # bounded: a program has finitely many source files
def frame_kind(filename: str) -> FrameKind:
    """What a frame's file is: memwarden's, the test runner's, stdlib, a library, or the user's.

    ``stdlib`` includes the interpreter's machinery (``<frozen importlib._bootstrap>``,
    ``<unknown>``); ``library`` is anything installed in site-packages or
    dist-packages; ``runner`` is pytest, pluggy, xdist, execnet, pytest-memray and
    coverage.
    """
    if filename.startswith(PACKAGE_DIR):
        return "memwarden"
    if filename.startswith(_MACHINERY):
        return "stdlib"
    stdlib, site, runner = _prefixes()
    if filename.startswith(runner):
        return "runner"
    if "site-packages" in filename or "dist-packages" in filename or filename.startswith(site):
        return "library"
    if filename.startswith(stdlib):
        return "stdlib"
    return "user"


def user_frame(
    filenames: Sequence[str],
    *,
    skip: frozenset[FrameKind] = LIBRARIES,
    libraries: tuple[str, ...] = (),
) -> int | None:
    """Index of the innermost frame that is the user's code, or None when none is.

    Args:
        filenames: a stack's files, most recent frame first.
        skip: frame kinds that are not the user's (default: memwarden, the runner,
            the standard library and installed libraries, so a numpy buffer is
            charged to the line that called numpy).
        libraries: more path prefixes to treat as library code.
    """
    for i, name in enumerate(filenames):
        if frame_kind(name) in skip or (libraries and name.startswith(libraries)):
            continue
        return i
    return None


# --------------------------------------------------------------------------- traces


class TraceGroup(NamedTuple):
    """The traced blocks allocated from one traceback.

    Attributes:
        frames: ``(filename, lineno)`` pairs, most recent first.
        size_bytes: their bytes (a growth when from a diff).
        blocks: their number of blocks (a growth when from a diff).
    """

    frames: tuple[tuple[str, int], ...]
    size_bytes: int
    blocks: int


def snapshot() -> tracemalloc.Snapshot:
    """A tracemalloc snapshot (tracing must be on)."""
    import tracemalloc

    return tracemalloc.take_snapshot()


def _raw(snap: tracemalloc.Snapshot) -> list[tuple[Any, ...]]:
    """``(domain, size, frames most recent first, nframes)`` per trace, without copies."""
    raw = getattr(snap.traces, "_traces", None)
    if isinstance(raw, list | tuple):
        return list(raw) if isinstance(raw, tuple) else raw
    # Another Python's private layout: rebuild it from the public API (slower).
    return [  # pragma: no cover
        (0, t.size, tuple((f.filename, f.lineno) for f in reversed(t.traceback)), 0)
        for t in snap.traces
    ]


def _by_traceback(raw: Iterable[tuple[Any, ...]]) -> dict[Any, list[int]]:
    # This may run while tracemalloc traces (a budget's check() inside its block),
    # where every object the loop allocates costs a traced allocation: so the loop
    # allocates nothing per trace. It files each trace under its traceback tuple
    # (hashing allocates nothing) and sums sizes with sum(), whose C fast path
    # adds without creating an int per step.
    members: dict[Any, list[tuple[Any, ...]]] = {}
    for trace in raw:
        try:
            members[trace[2]].append(trace)
        except KeyError:
            members[trace[2]] = [trace]
    size_of = operator.itemgetter(1)
    return {tb: [sum(map(size_of, ts)), len(ts)] for tb, ts in members.items()}


def group_traces(
    after: tracemalloc.Snapshot, before: tracemalloc.Snapshot | None = None
) -> list[TraceGroup]:
    """Traced bytes and blocks per distinct traceback (growth since ``before`` if given).

    Groups that did not grow are left out of a diff. Costs one pass over the
    traces in Python with an int-keyed dict (~0.1 µs a trace); use it after the
    snapshot, ideally with tracing stopped or reset so grouping is not traced.
    """
    groups = _by_traceback(_raw(after))
    if before is not None:
        for tb, (size, count) in _by_traceback(_raw(before)).items():
            entry = groups.get(tb)
            if entry is None:
                groups[tb] = [-size, -count]
            else:
                entry[0] -= size
                entry[1] -= count
        return [TraceGroup(tb, s, c) for tb, (s, c) in groups.items() if s > 0]
    return [TraceGroup(tb, s, c) for tb, (s, c) in groups.items()]


@dataclass(frozen=True)
class SiteTotal:
    """Memory charged to one source line.

    Attributes:
        filename: the line's file.
        lineno: the line.
        size_bytes: bytes charged to it.
        count: blocks charged to it.
        stack: the largest traceback charged to it, ``(file, line)`` most recent first.
    """

    filename: str
    lineno: int
    size_bytes: int
    count: int
    stack: tuple[tuple[str, int], ...]

    @property
    def where(self) -> str:
        """``file:line``."""
        return f"{self.filename}:{self.lineno}"


_OWN_MACHINERY = frozenset(
    {
        str(Path(threading.__file__).resolve().parent / n)
        for n in ("tracemalloc.py", "linecache.py", "runpy.py")
    }
)


def by_site(
    groups: Iterable[TraceGroup],
    *,
    charge: Literal["user", "innermost"] = "user",
    skip: frozenset[FrameKind] = LIBRARIES,
    libraries: tuple[str, ...] = (),
    drop_own: bool = True,
) -> list[SiteTotal]:
    """Charge trace groups to source lines, largest first.

    Args:
        groups: from :func:`group_traces`.
        charge: ``"user"``: the innermost frame that is the user's code
            (:func:`user_frame` with ``skip``), else the innermost frame;
            ``"innermost"``: the innermost frame.
        skip: frame kinds that are not the user's.
        libraries: more path prefixes to treat as library code.
        drop_own: leave out memwarden's own bookkeeping: blocks whose nearest
            frame outside the standard library is memwarden's, and blocks
            allocated by tracemalloc, linecache or runpy themselves.

    Returns:
        One :class:`SiteTotal` per line, by ``size_bytes`` descending.
    """
    totals: dict[tuple[str, int], list[Any]] = {}
    for frames, size, count in groups:
        if not frames:
            continue
        files = [f for f, _ in frames]
        if frames[0][0] in _OWN_MACHINERY:
            continue
        if drop_own:
            nearest = user_frame(files, skip=frozenset({"stdlib"}))
            if nearest is None:
                own = any(frame_kind(f) == "memwarden" for f in files)
            else:
                own = frame_kind(files[nearest]) == "memwarden"
            if own:
                continue
        i = 0
        if charge == "user":
            found = user_frame(files, skip=skip, libraries=libraries)
            i = 0 if found is None else found
        key = frames[i]
        if key[0].startswith("<frozen importlib"):
            continue
        entry = totals.get(key)
        if entry is None:
            totals[key] = [size, count, frames, size]
        else:
            entry[0] += size
            entry[1] += count
            if size > entry[3]:
                entry[2], entry[3] = frames, size
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [SiteTotal(f, n, s, c, st) for (f, n), (s, c, st, _) in ranked]


# --------------------------------------------------------------------------- the owner


class _Owner:
    """The process's tracing state; one instance, guarded by its lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users: list[TraceUser] = []
        self.started_here = False  # memwarden started the running session
        # Traced bytes lost from view by restarts (see the module docstring).
        self.offset = 0

    def traced(self) -> tuple[int, int]:
        cur, peak = _tracemalloc.get_traced_memory()
        return cur + self.offset, peak + self.offset

    def current(self) -> int:
        # No tuple of our own: a start level read here should not count a temporary
        # that is freed a moment later (a 1 MiB test would come out 100 B short).
        cur: int = _tracemalloc.get_traced_memory()[0]
        return cur + self.offset if self.offset else cur

    def fold_locked(self) -> None:
        if not _tracemalloc.is_tracing():
            return
        peak = self.traced()[1]
        for u in self.users:
            u._peak_abs = max(u._peak_abs, peak)

    def ensure_locked(self, nframes: int) -> bool:
        """Trace with at least ``nframes`` frames if memwarden may; return True if it started."""
        if not _tracemalloc.is_tracing():
            _tracemalloc.start(nframes)
            self.started_here = True
            self.offset = 0
            return True
        if self.started_here and nframes > _tracemalloc.get_traceback_limit():
            self.fold_locked()
            cur = self.traced()[0]
            _tracemalloc.stop()
            _tracemalloc.start(nframes)
            self.offset = cur
        return False

    def after_fork_in_child(self) -> None:
        self.lock = threading.RLock()
        me = threading.get_ident()
        # Users opened by other threads of the parent never end in the child.
        self.users = [u for u in self.users if u._thread == me]
        if not self.users and self.started_here and _tracemalloc.is_tracing():
            _tracemalloc.stop()
            self.started_here = False
            self.offset = 0


_owner = _Owner()


@dataclass
class TraceResult:
    """What a user saw, as of its release.

    Attributes:
        current_bytes: traced bytes at release, above the user's start.
        peak_bytes: the highest traced bytes since the start, above the start.
    """

    current_bytes: int
    peak_bytes: int


class TraceUser:
    """One user's hold on tracing: its start level and its own peak.

    Get one from :func:`acquire`; release it (or use it as a context manager).
    Thread-safe; the object is for one block at a time.
    """

    __slots__ = ("_peak_abs", "_thread", "active", "base_bytes", "name", "nframes", "started")

    def __init__(self, name: str, nframes: int) -> None:
        self.name = name
        self.nframes = nframes
        self.base_bytes = 0
        self._peak_abs = 0
        self._thread = threading.get_ident()
        self.active = False
        #: Whether this user's acquire started tracing (nothing traced before it).
        self.started = False

    def current_bytes(self) -> int:
        """Traced bytes now, above this user's start (negative when memory was freed)."""
        if not self.active or not _tracemalloc.is_tracing():
            return 0
        return _owner.current() - self.base_bytes

    def peak_abs(self) -> int:
        """The highest traced total since this user's start (or its last reset)."""
        if not self.active or not _tracemalloc.is_tracing():
            return self._peak_abs
        return max(self._peak_abs, _owner.traced()[1])

    def peak_bytes(self) -> int:
        """The peak since this user's start (or its last reset), above its start level."""
        return max(0, self.peak_abs() - self.base_bytes)

    def reset_peak(self) -> None:
        """Start this user's peak again from now; every other user keeps its own."""
        with _owner.lock:
            if not self.active or not _tracemalloc.is_tracing():
                return
            _owner.fold_locked()
            _tracemalloc.reset_peak()
            self.base_bytes = self._peak_abs = _owner.current()

    def release(self) -> TraceResult:
        """End this user's hold: fold its peak, stop tracing if it was the last memwarden user."""
        with _owner.lock:
            if not self.active:
                return TraceResult(0, max(0, self._peak_abs - self.base_bytes))
            tracing = _tracemalloc.is_tracing()
            if tracing:
                _owner.fold_locked()
                cur = _owner.traced()[0]
            else:  # someone stopped tracing under us: report what was seen
                cur = self.base_bytes
            self.active = False
            for i in range(len(_owner.users) - 1, -1, -1):
                if _owner.users[i] is self:
                    del _owner.users[i]
                    break
            if not _owner.users and _owner.started_here:
                _owner.started_here = False
                _owner.offset = 0
                if tracing:
                    _tracemalloc.stop()
                    _stop_sampler_if_pending()
            return TraceResult(cur - self.base_bytes, max(0, self._peak_abs - self.base_bytes))

    def __enter__(self) -> TraceUser:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<TraceUser {self.name!r} nframes={self.nframes} active={self.active}>"


def acquire(nframes: int = 1, *, name: str = "", reset_peak: bool = True) -> TraceUser:
    """Hold Python-heap tracing for one user: start it if off, measure this user's own peak.

    Args:
        nframes: frames per allocation this user needs (the session records the
            largest any open user asked for; see the module docstring on restarts).
        name: who holds it (shown in ``repr``, for debugging).
        reset_peak: reset tracemalloc's peak (after folding it into every open user)
            so this user's peak starts at the current level; without it the peak
            since the start is found on the first read only if the process-wide
            peak is below the current level, so keep it on unless the caller
            resets later itself.

    Returns:
        An active :class:`TraceUser`; release it when done.
    """
    user = TraceUser(name, max(1, int(nframes)))
    with _owner.lock:
        user.started = _owner.ensure_locked(user.nframes)
        if reset_peak and not user.started:
            _owner.fold_locked()
            _tracemalloc.reset_peak()
        user.base_bytes = user._peak_abs = _owner.current()
        user.active = True
        _owner.users.append(user)
    return user


def is_tracing() -> bool:
    """Whether tracemalloc traces now (by memwarden or anyone)."""
    return bool(_tracemalloc.is_tracing())


def traced_memory() -> tuple[int, int] | None:
    """``(current, peak)`` traced bytes, continuous across restarts; None when not tracing.

    The peak is tracemalloc's since its last reset; a user's own peak is
    :meth:`TraceUser.peak_bytes`.
    """
    if not _tracemalloc.is_tracing():
        return None
    return _owner.traced()


def clear_traces() -> None:
    """Forget the traces so far (only blocks allocated from now on are traced).

    Used by a user that started tracing itself and wants only its own blocks; the
    traced total drops, so the owner folds every open user's peak first and keeps
    the total continuous with its offset.
    """
    with _owner.lock:
        if not _tracemalloc.is_tracing():
            return
        _owner.fold_locked()
        cur = _owner.traced()[0]
        _tracemalloc.clear_traces()
        _owner.offset = cur - _tracemalloc.get_traced_memory()[0]


def pause(user: TraceUser) -> None:
    """Stop tracing now when ``user`` is the only open user and started it (its figures taken).

    Later work (a referrer search, report formatting) is then not traced, which
    makes it several times faster; :meth:`TraceUser.release` still works.
    """
    with _owner.lock:
        if _owner.users == [user] and _owner.started_here and _tracemalloc.is_tracing():
            _owner.fold_locked()
            _tracemalloc.stop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_owner.after_fork_in_child)


# --------------------------------------------------------------------------- the sampler


# Allocator hooks nest (PEP 445): each saves the allocator it found and restores
# it when it stops. tracemalloc.stop() restores what it found at its start, so a
# sampler installed after tracemalloc would be unhooked by it, and a sampler
# stopped while tracemalloc runs would unhook tracemalloc. The owner keeps the
# order: the sampler starts only while tracemalloc is off (it then sits below
# it), and a sampler released while tracemalloc runs is stopped after tracemalloc
# (when memwarden stops it; else at exit).
_sampler_stop_pending: Any = None


def _stop_sampler_if_pending() -> None:
    global _sampler_stop_pending
    module, _sampler_stop_pending = _sampler_stop_pending, None
    if module is not None and _sampler_users == 0:
        module.stop()


class SamplerUser:
    """One user's hold on the sampling profiler (see :func:`acquire_sampler`)."""

    def __init__(self, module: Any, started: bool) -> None:
        self._module = module
        self.started = started
        self.active = True

    @property
    def profiler(self) -> Any:
        """The :mod:`memwarden.profiler` module (``snapshot()``, ``peak()``...)."""
        return self._module

    def release(self) -> None:
        """End this hold; stop the profiler after the last user that started it."""
        global _sampler_users, _sampler_started_here, _sampler_stop_pending
        with _owner.lock:
            if not self.active:
                return
            self.active = False
            _sampler_users -= 1
            if _sampler_users == 0 and _sampler_started_here:
                _sampler_started_here = False
                if _tracemalloc.is_tracing():
                    _sampler_stop_pending = self._module  # after tracemalloc (see above)
                else:
                    self._module.stop()


_sampler_users = 0
_sampler_started_here = False


def acquire_sampler(
    interval_bytes: int | None = None, max_frames: int | None = None
) -> SamplerUser | None:
    """Hold the native sampling profiler: start it for the first user, stop after the last.

    Returns:
        A :class:`SamplerUser`, or None when the profiler cannot run here (its
        extension is not built or not loadable, or tracemalloc traces already: a
        sampler started above tracemalloc would be unhooked when tracemalloc
        stops); callers then fall back to :func:`acquire` (tracemalloc).
    """
    global _sampler_users, _sampler_started_here, _sampler_stop_pending
    import importlib

    try:
        # By name: the profiler is optional (its extension may be missing) and must
        # not be imported with memwarden.
        profiler: Any = importlib.import_module("memwarden.profiler")
    except ImportError:
        return None
    with _owner.lock:
        started = False
        if not profiler.is_running():
            if _tracemalloc.is_tracing():
                return None
            kwargs: dict[str, int] = {}
            if interval_bytes is not None:
                kwargs["interval_bytes"] = interval_bytes
            if max_frames is not None:
                kwargs["max_frames"] = max_frames
            try:
                profiler.start(**kwargs)
            except Exception:  # the extension is missing: tracemalloc is the fallback
                return None
            if profiler.backend() == "tracemalloc":  # its fallback: use acquire() instead
                profiler.stop()
                return None
            started = _sampler_started_here = True
        elif _sampler_stop_pending is not None:
            # Released while tracemalloc ran and not stopped yet: hold it again.
            _sampler_stop_pending = None
            started = _sampler_started_here = True
        _sampler_users += 1
        return SamplerUser(profiler, started)
