"""Where the memory went: a sampling heap profiler with call stacks, at production cost.

The native backend (the C extension ``memwarden._sampler``) hooks the PyMem RAW,
MEM and OBJ allocators and samples allocations by bytes with a Poisson process
of mean ``interval_bytes``; a sample records the Python stack, the thread and the
context tag. Each sample is weighted by its inverse probability, so every figure
is an unbiased estimate of bytes, reported with its standard error. Live sampled
blocks are tracked by pointer: ``snapshot("live")`` is what is held now,
``snapshot("allocations")`` what was allocated since ``start()``, and ``peak()``
the live heap at its highest (copied whenever the estimated live heap passes
its previous high by more than max(2 intervals, 1 %)).

Where the extension is not built, the same API runs on tracemalloc (exact, but
about ten times slower, live heap only): ``backend()`` says which is in use.

Context tags attribute memory to a request or task under concurrency::

    with profiler.tag("GET /report"):
        handle()

The tag lives in a :class:`contextvars.ContextVar` that the extension reads at
each sample, so threads and asyncio tasks (each runs in its own context copy)
keep their own tags without any bookkeeping on task switches.
"""

from __future__ import annotations

import atexit
import contextvars
import importlib
import json
import logging
import math
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from memwarden._units import SizeLike, parse_size
from memwarden.exceptions import ConfigurationError, MemwardenError, TraceFormatError

__all__ = [
    "DEFAULT_INTERVAL_BYTES",
    "DEFAULT_MAX_FRAMES",
    "NO_GIL_FRAME",
    "NO_PYTHON_FRAME",
    "OVERFLOW_FRAME",
    "Frame",
    "Profile",
    "ProfileEntry",
    "ProfilerError",
    "StackSample",
    "backend",
    "clear",
    "current_tag",
    "dumps",
    "is_running",
    "merge",
    "native_available",
    "native_error",
    "peak",
    "reset_peak",
    "snapshot",
    "start",
    "stats",
    "stop",
    "tag",
    "tag_var",
]

log = logging.getLogger("memwarden.profiler")


def _load_native() -> tuple[Any, str | None]:
    """The C extension (optional: built when the package is installed with a compiler).

    Loaded by name: the import-linter graph knows only Python sources, and a plain
    ``import memwarden._sampler`` would read as importing the whole package. Its
    interface is documented by ``_sampler.pyi``.
    """
    try:
        return importlib.import_module("memwarden._sampler"), None
    except ImportError as exc:  # pragma: no cover - depends on the build
        return None, str(exc)


_native, _NATIVE_ERROR = _load_native()

#: Mean sampling interval (Go's heap profiler default too). A site of B bytes gets
#: about B / interval samples, i.e. a relative error near 1 / sqrt(B / interval);
#: see docs/profiling.md for the measured cost and accuracy.
DEFAULT_INTERVAL_BYTES = 512 * 1024
DEFAULT_MAX_FRAMES = 64
MAX_FRAMES_LIMIT = 256

# Table capacities of the native backend (fixed at start; overflow is counted).
_MAX_STACKS = 32768
_MAX_LIVE = 65536
_MAX_FRAME_ENTRIES = 65536
_MAX_TAGS = 4096

Kind = Literal["live", "allocations", "peak"]
GroupBy = Literal["line", "function", "file", "stack"]
BackendName = Literal["native", "tracemalloc"]

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


class ProfilerError(MemwardenError, RuntimeError):
    """The profiler was used in a state that does not allow it (not running, already running)."""


@dataclass(frozen=True, order=True)
class Frame:
    """One frame of a stack: the source file, the function (qualified name) and the line."""

    filename: str
    function: str
    lineno: int

    def __str__(self) -> str:
        return f"{self.function} ({self.filename}:{self.lineno})"


# Pseudo-frames for samples without a Python stack.
NO_GIL_FRAME = Frame("<no GIL>", "<allocation without the GIL>", 0)
OVERFLOW_FRAME = Frame("<overflow>", "<stack table full>", 0)
NO_PYTHON_FRAME = Frame("<no Python frame>", "<no Python frame>", 0)


@dataclass(frozen=True)
class StackSample:
    """The estimate for one call stack (innermost frame first) in one thread and context tag.

    Attributes:
        frames: the stack, innermost first.
        tag: the context tag active at the allocations, or None.
        thread_id: the native thread id (0 where unknown, e.g. tracemalloc).
        size_bytes: estimated bytes (exact under tracemalloc).
        samples: samples behind the estimate (blocks under tracemalloc).
        variance: variance of ``size_bytes`` (bytes squared; 0 when exact).
        truncated: the stack was deeper than ``max_frames``.
    """

    frames: tuple[Frame, ...]
    tag: str | None
    thread_id: int
    size_bytes: int
    samples: int
    variance: float = 0.0
    truncated: bool = False


@dataclass(frozen=True)
class ProfileEntry:
    """One row of :meth:`Profile.top`.

    Attributes:
        key: what the row groups by (``file:line``, ``file:function``, ``file`` or the stack).
        frames: the key's frame (line/function/file) or the whole stack (stack), innermost first.
        size_bytes: estimated bytes.
        samples: samples behind the estimate.
        error_bytes: one standard error of ``size_bytes`` (0 when exact).
    """

    key: str
    frames: tuple[Frame, ...]
    size_bytes: int
    samples: int
    error_bytes: int

    @property
    def relative_error(self) -> float:
        """``error_bytes / |size_bytes|`` (0 for an empty row)."""
        return self.error_bytes / abs(self.size_bytes) if self.size_bytes else 0.0


def _not_memwarden(frame: Frame) -> bool:
    return not frame.filename.startswith(_PACKAGE_DIR)


@dataclass(frozen=True)
class Profile:
    """A heap profile: estimated bytes per call stack, thread and context tag.

    Attributes:
        kind: ``live``, ``allocations``, ``peak`` or ``diff``.
        backend: ``native`` or ``tracemalloc``.
        interval_bytes: the mean sampling interval (0 for exact profiles).
        stacks: one entry per (stack, tag, thread).
        stats: the profiler's counters when the profile was taken (samples, dropped, …).
        time_s: wall-clock time (``time.time()``) when it was taken.
    """

    kind: str
    backend: str
    interval_bytes: int
    stacks: tuple[StackSample, ...]
    stats: Mapping[str, float] = field(default_factory=dict)
    time_s: float = 0.0

    @property
    def total_bytes(self) -> int:
        """The estimated total over every stack."""
        return sum(s.size_bytes for s in self.stacks)

    @property
    def samples(self) -> int:
        """Samples behind the profile."""
        return sum(s.samples for s in self.stacks)

    def _key_frame(
        self, sample: StackSample, frame_filter: Callable[[Frame], bool] | None
    ) -> Frame:
        frames = sample.frames or (NO_PYTHON_FRAME,)
        if frame_filter is None:
            return frames[0]
        for frame in frames:
            if frame_filter(frame):
                return frame
        return frames[0]

    def top(
        self,
        by: GroupBy = "line",
        n: int | None = 10,
        *,
        frame_filter: Callable[[Frame], bool] | None = _not_memwarden,
    ) -> list[ProfileEntry]:
        """The largest sites, grouped by the innermost line, function, file, or by whole stack.

        Args:
            by: ``line`` (``file:line``), ``function`` (``file:function``), ``file`` or
                ``stack``.
            n: how many rows (None: all).
            frame_filter: for ``line``/``function``/``file``, a stack is attributed to
                its innermost frame that passes this predicate (by default the
                innermost frame outside memwarden's own package; None: the innermost
                frame). Pass e.g. ``lambda f: f.filename == test_file`` to attribute
                to a test's own line.

        Returns:
            Rows sorted by ``size_bytes``, largest first (the largest growth for a diff).

        Raises:
            ConfigurationError: ``by`` is not one of the four groupings.
        """
        if by not in ("line", "function", "file", "stack"):
            raise ConfigurationError(
                f"Profile.top(by={by!r}): expected 'line', 'function', 'file' or 'stack'",
                value=by,
            )
        groups: dict[str, list[Any]] = {}
        for sample in self.stacks:
            if by == "stack":
                frames = sample.frames or (NO_PYTHON_FRAME,)
                key = ";".join(str(f) for f in reversed(frames))
            else:
                frame = self._key_frame(sample, frame_filter)
                if by == "line":
                    key = f"{frame.filename}:{frame.lineno}"
                elif by == "function":
                    key = f"{frame.filename}:{frame.function}"
                else:
                    key = frame.filename
                frames = (frame,)
            row = groups.get(key)
            if row is None:
                groups[key] = [frames, sample.size_bytes, sample.samples, sample.variance]
            else:
                row[1] += sample.size_bytes
                row[2] += sample.samples
                row[3] += sample.variance
        rows = [
            ProfileEntry(key, frames, size, count, round(math.sqrt(max(var, 0.0))))
            for key, (frames, size, count, var) in groups.items()
        ]
        rows.sort(key=lambda r: (-r.size_bytes, r.key))
        return rows if n is None else rows[:n]

    def diff(self, other: Profile) -> Profile:
        """``self - other`` per (stack, tag, thread): the growth since ``other`` was taken.

        Variances add (the two estimates are independent samples).
        """
        acc: dict[tuple[Any, ...], list[Any]] = {}
        for sign, profile in ((1, self), (-1, other)):
            for s in profile.stacks:
                key = (s.frames, s.tag, s.thread_id, s.truncated)
                row = acc.setdefault(key, [0, 0, 0.0])
                row[0] += sign * s.size_bytes
                row[1] += sign * s.samples
                row[2] += s.variance
        stacks = tuple(
            StackSample(frames, tag_name, tid, size, count, var, trunc)
            for (frames, tag_name, tid, trunc), (size, count, var) in acc.items()
            if size != 0 or count != 0
        )
        return Profile("diff", self.backend, self.interval_bytes, stacks, self.stats, self.time_s)

    def by_tag(self) -> dict[str | None, Profile]:
        """One profile per context tag (None: allocations outside any tag)."""
        parts: dict[str | None, list[StackSample]] = {}
        for s in self.stacks:
            parts.setdefault(s.tag, []).append(s)
        return {
            name: Profile(
                self.kind, self.backend, self.interval_bytes, tuple(v), self.stats, self.time_s
            )
            for name, v in parts.items()
        }

    def by_thread(self) -> dict[int, Profile]:
        """One profile per native thread id."""
        parts: dict[int, list[StackSample]] = {}
        for s in self.stacks:
            parts.setdefault(s.thread_id, []).append(s)
        return {
            tid: Profile(
                self.kind, self.backend, self.interval_bytes, tuple(v), self.stats, self.time_s
            )
            for tid, v in parts.items()
        }

    # --- serialisation -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (frames interned once); :meth:`from_dict` reads it back."""
        frame_ids: dict[Frame, int] = {}
        stacks = []
        for s in self.stacks:
            ids = [frame_ids.setdefault(f, len(frame_ids)) for f in s.frames]
            stacks.append(
                {
                    "frames": ids,
                    "tag": s.tag,
                    "thread_id": s.thread_id,
                    "size_bytes": s.size_bytes,
                    "samples": s.samples,
                    "variance": s.variance,
                    "truncated": s.truncated,
                }
            )
        return {
            "format": "memwarden-profile",
            "version": 1,
            "kind": self.kind,
            "backend": self.backend,
            "interval_bytes": self.interval_bytes,
            "time_s": self.time_s,
            "frames": [[f.filename, f.function, f.lineno] for f in frame_ids],
            "stacks": stacks,
            "stats": dict(self.stats),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "profile") -> Profile:
        """Rebuild a profile from :meth:`to_dict`'s output.

        Raises:
            TraceFormatError: the data is not a memwarden profile (the message names
                ``source`` and the bad field).
        """
        try:
            if data.get("format") != "memwarden-profile" or data.get("version") != 1:
                raise TraceFormatError(
                    f"{source}: not a memwarden profile (format={data.get('format')!r}, "
                    f"version={data.get('version')!r})"
                )
            frames = [Frame(str(f), str(fn), int(line)) for f, fn, line in data["frames"]]
            stacks = tuple(
                StackSample(
                    frames=tuple(frames[i] for i in s["frames"]),
                    tag=None if s["tag"] is None else str(s["tag"]),
                    thread_id=int(s["thread_id"]),
                    size_bytes=int(s["size_bytes"]),
                    samples=int(s["samples"]),
                    variance=float(s["variance"]),
                    truncated=bool(s["truncated"]),
                )
                for s in data["stacks"]
            )
            return cls(
                kind=str(data["kind"]),
                backend=str(data["backend"]),
                interval_bytes=int(data["interval_bytes"]),
                stacks=stacks,
                stats={str(k): float(v) for k, v in dict(data.get("stats", {})).items()},
                time_s=float(data.get("time_s", 0.0)),
            )
        except TraceFormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise TraceFormatError(f"{source}: malformed memwarden profile: {exc!r}") from exc

    def collapsed(self) -> Iterator[str]:
        """Collapsed stacks (``outer;…;inner bytes``), the input of flamegraph.pl and speedscope.

        Frames read ``function (file:line)``; a ``;`` inside a name becomes ``,``.
        Rows with no positive estimate are left out; equal stacks are merged.
        """
        merged: dict[str, int] = {}
        for s in self.stacks:
            frames = s.frames or (NO_PYTHON_FRAME,)
            line = ";".join(str(f).replace(";", ",") for f in reversed(frames))
            merged[line] = merged.get(line, 0) + s.size_bytes
        for line, size in sorted(merged.items()):
            if size > 0:
                yield f"{line} {size}"

    def write_collapsed(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write :meth:`collapsed` to ``path`` (created exclusively unless ``overwrite``).

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is false.
            OSError: ``path`` is a symbolic link (never followed) or cannot be written.
        """
        data = "".join(line + "\n" for line in self.collapsed()).encode()
        return _write_new(path, data, overwrite)

    def pprof_bytes(self) -> bytes:
        """This profile as gzipped pprof ``profile.proto`` bytes."""
        from memwarden._pprof import PprofBuilder, PprofSample

        prefix = {"live": "inuse", "peak": "inuse", "allocations": "alloc"}.get(self.kind, "delta")
        builder = PprofBuilder(
            sample_types=[(f"{prefix}_samples", "count"), (f"{prefix}_space", "bytes")],
            period=self.interval_bytes,
            time_nanos=int(self.time_s * 1e9),
        )
        for s in self.stacks:
            frames = s.frames or (NO_PYTHON_FRAME,)
            labels = [("tag", s.tag)] if s.tag is not None else []
            builder.add(
                PprofSample(
                    stack=[(f.function, f.filename, f.lineno) for f in frames],
                    values=[s.samples, s.size_bytes],
                    labels=labels,
                    num_labels=[("thread_id", s.thread_id)] if s.thread_id else [],
                )
            )
        return builder.encode()

    def write_pprof(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the profile as gzipped ``profile.proto`` (``go tool pprof -top PATH``).

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is false.
            OSError: ``path`` is a symbolic link (never followed) or cannot be written.
        """
        return _write_new(path, self.pprof_bytes(), overwrite)


def _write_new(path: str | os.PathLike[str], data: bytes, overwrite: bool) -> Path:
    """Create ``path`` exclusively (or truncate it when ``overwrite``), never via a symlink."""
    target = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_TRUNC if overwrite else os.O_EXCL
    fd = os.open(target, flags, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return target


# --- context tags --------------------------------------------------------------------

#: The current context tag as an id (0: none). Set it through :func:`tag`.
tag_var: contextvars.ContextVar[int] = contextvars.ContextVar("memwarden_profile_tag", default=0)

_tag_lock = threading.Lock()
_tag_names: list[str | None] = [None]
_tag_ids: dict[str, int] = {}
_OTHER_TAG = "<other tags>"


def _tag_id(name: str) -> int:
    with _tag_lock:
        tid = _tag_ids.get(name)
        if tid is None:
            if len(_tag_names) >= _MAX_TAGS:
                # Bounded: beyond the cap every new name shares one id.
                name = _OTHER_TAG
                tid = _tag_ids.get(name)
            if tid is None:
                tid = _tag_ids[name] = len(_tag_names)
                _tag_names.append(name)
        return tid


def _tag_name(tid: int) -> str | None:
    return _tag_names[tid] if 0 <= tid < len(_tag_names) else None


@contextmanager
def tag(name: str) -> Iterator[None]:
    """Attribute the allocations made inside the block (in this thread or task) to ``name``.

    Nested tags replace the outer one until the inner block ends. Up to 4096
    distinct names are kept; later names share the tag ``<other tags>``.
    """
    if not isinstance(name, str):
        raise ConfigurationError(f"profiler.tag({name!r}): the tag must be a str", value=name)
    token = tag_var.set(_tag_id(name))
    try:
        yield
    finally:
        tag_var.reset(token)


def current_tag() -> str | None:
    """The tag set by the innermost active :func:`tag` block of this context, or None."""
    return _tag_name(tag_var.get())


# --- the session ---------------------------------------------------------------------


@dataclass
class _Session:
    backend: BackendName
    interval_bytes: int
    max_frames: int
    started_tracemalloc: bool = False
    running: bool = True
    trace_user: Any = None  # the tracing owner's hold (tracemalloc backend)


_lock = threading.RLock()
_session: _Session | None = None
_atexit_registered = False


def _after_fork_in_child() -> None:
    # Another thread may have held a lock at fork(); it does not exist in the child.
    global _lock, _tag_lock
    _lock = threading.RLock()
    _tag_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _choose_backend(requested: str | None) -> BackendName:
    wanted = requested or os.environ.get("MEMWARDEN_PROFILER_BACKEND") or "auto"
    source = "backend=" if requested else "MEMWARDEN_PROFILER_BACKEND"
    if wanted not in ("auto", "native", "tracemalloc"):
        raise ConfigurationError(
            f"{source}{wanted!r}: expected 'native', 'tracemalloc' or 'auto'",
            value=wanted,
            source=source,
        )
    if wanted == "tracemalloc":
        return "tracemalloc"
    if _native is None:
        if wanted == "native":
            raise ProfilerError(
                f"the native profiler is not available ({_NATIVE_ERROR}); "
                "reinstall memwarden with a C compiler and the Python headers"
            )
        return "tracemalloc"
    return "native"


def backend() -> BackendName:
    """The backend in use, or the one :func:`start` would choose: ``native`` or ``tracemalloc``."""
    with _lock:
        if _session is not None and _session.running:
            return _session.backend
    try:
        return _choose_backend(None)
    except ConfigurationError:
        return "native" if _native is not None else "tracemalloc"


def native_available() -> bool:
    """True when the C extension is built and loads."""
    return _native is not None


def native_error() -> str | None:
    """Why the C extension did not load (None when it did)."""
    return _NATIVE_ERROR


def start(
    interval_bytes: SizeLike = DEFAULT_INTERVAL_BYTES,
    max_frames: int = DEFAULT_MAX_FRAMES,
    *,
    backend: str | None = None,
) -> None:
    """Start profiling this process (clearing any previous profile).

    Args:
        interval_bytes: mean bytes between samples (``"512 KiB"`` or an int >= 1;
            1 samples every allocation).
        max_frames: deepest stack recorded (1-256), innermost frames kept.
        backend: ``native``, ``tracemalloc`` or None (the ``MEMWARDEN_PROFILER_BACKEND``
            environment variable, else native where built).

    Raises:
        ProfilerError: already running, or ``native`` requested but not built.
        ConfigurationError: a bad argument.
    """
    global _session, _atexit_registered
    interval = parse_size(interval_bytes, source="interval_bytes")
    if interval < 1:
        raise ConfigurationError(
            f"interval_bytes={interval_bytes!r}: must be at least 1 byte", value=interval_bytes
        )
    if not isinstance(max_frames, int) or not 1 <= max_frames <= MAX_FRAMES_LIMIT:
        raise ConfigurationError(
            f"max_frames={max_frames!r}: expected an int from 1 to {MAX_FRAMES_LIMIT}",
            value=max_frames,
        )
    with _lock:
        if _session is not None and _session.running:
            raise ProfilerError(
                f"the profiler is already running ({_session.backend}, "
                f"interval_bytes={_session.interval_bytes}); stop() it first"
            )
        chosen = _choose_backend(backend)
        if chosen == "native":
            assert _native is not None
            _native.start(
                float(interval),
                max_frames,
                _MAX_STACKS,
                _MAX_LIVE,
                _MAX_FRAME_ENTRIES,
                tag_var,
            )
            _session = _Session("native", interval, max_frames)
        else:
            # Through the tracing owner: an outer tracemalloc session is joined, never
            # cleared or stopped, and its traces from before start() stay in the profile.
            from memwarden import tracing

            user = tracing.acquire(max_frames, name="profiler (tracemalloc backend)")
            _session = _Session(
                "tracemalloc", 0, max_frames, started_tracemalloc=user.started, trace_user=user
            )
        if not _atexit_registered:
            # The hooks come out before interpreter finalisation.
            atexit.register(stop)
            _atexit_registered = True
        log.debug("profiler started: %s, interval %d B", chosen, interval)


def stop() -> None:
    """Stop sampling; the profile taken so far stays readable until the next :func:`start`."""
    with _lock:
        if _session is None or not _session.running:
            return
        if _session.backend == "native":
            assert _native is not None
            _native.stop()
        elif _session.trace_user is not None:
            # Keep the final live heap readable after the owner stops tracemalloc.
            if _session.started_tracemalloc:
                _session_snapshots["final"] = tracemalloc.take_snapshot()
            _session.trace_user.release()
        _session.running = False


_session_snapshots: dict[str, tracemalloc.Snapshot] = {}


def clear() -> None:
    """Forget the last profile and free the native tables (after :func:`stop`).

    Raises:
        ProfilerError: the profiler is running.
    """
    global _session
    with _lock:
        if _session is not None and _session.running:
            raise ProfilerError("the profiler is running: stop() it before clear()")
        if _native is not None:
            _native.clear()
        _session_snapshots.clear()
        _session = None


def is_running() -> bool:
    """True between :func:`start` and :func:`stop`."""
    with _lock:
        return _session is not None and _session.running


def _need_session() -> _Session:
    if _session is None:
        raise ProfilerError("the profiler has not been started: call memwarden.profiler.start()")
    return _session


def stats() -> dict[str, float]:
    """The profiler's counters: samples, samples without the GIL, dropped stacks and live
    samples (tables full), table sizes and capacities, own memory (bytes reserved for the
    tables; pages are only resident once used), the live and peak estimates."""
    with _lock:
        session = _need_session()
        if session.backend == "native":
            assert _native is not None
            return _native_stats()
        current, peak_size = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, 0)
        return {
            "live_bytes": float(current),
            "peak_bytes": float(peak_size),
            "own_memory_bytes": float(tracemalloc.get_tracemalloc_memory()),
            "max_frames": float(session.max_frames),
        }


def _frame_of(raw: tuple[str, str, int], cache: dict[tuple[str, str, int], Frame]) -> Frame:
    frame = cache.get(raw)
    if frame is None:
        frame = cache[raw] = Frame(str(raw[0]), str(raw[1]), int(raw[2]))
    return frame


def _native_profile(kind: Kind, session: _Session) -> Profile:
    assert _native is not None
    raw_frames, raw_stacks, rows = _native.snapshot(kind)
    cache: dict[tuple[str, str, int], Frame] = {}
    frames = [_frame_of(f, cache) for f in raw_frames]
    no_gil, overflow = _native.STACK_NO_GIL, _native.STACK_OVERFLOW
    out = []
    for stack_id, samples, size, variance in rows:
        ids, tag_id, thread_id, flags = raw_stacks[stack_id]
        if stack_id == no_gil:
            stack: tuple[Frame, ...] = (NO_GIL_FRAME,)
        elif stack_id == overflow:
            stack = (OVERFLOW_FRAME,)
        else:
            stack = tuple(frames[i] for i in ids) or (NO_PYTHON_FRAME,)
        out.append(
            StackSample(
                frames=stack,
                tag=_tag_name(tag_id),
                thread_id=thread_id,
                size_bytes=size,
                samples=samples,
                variance=variance,
                truncated=bool(flags & _native.STACK_TRUNCATED),
            )
        )
    return Profile(kind, "native", session.interval_bytes, tuple(out), _native_stats(), time.time())


def _native_stats() -> dict[str, float]:
    assert _native is not None
    return {k: float(v) for k, v in _native.stats().items()}


def _tracemalloc_profile(kind: Kind, session: _Session) -> Profile:
    if kind == "allocations":
        raise ProfilerError(
            "allocations since start need the native backend (tracemalloc tracks only the "
            "live heap); use snapshot('live')"
        )
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
    elif "final" in _session_snapshots:
        snap = _session_snapshots["final"]
    else:
        raise ProfilerError("tracemalloc was stopped by someone else: no profile to read")
    cache: dict[tuple[str, str, int], Frame] = {}
    acc: dict[tuple[Frame, ...], list[int]] = {}
    for stat in snap.statistics("traceback"):
        # tracemalloc lists frames oldest first and knows no function names.
        stack = tuple(
            _frame_of((fr.filename, "?", fr.lineno), cache) for fr in reversed(stat.traceback)
        )
        row = acc.setdefault(stack, [0, 0])
        row[0] += stat.size
        row[1] += stat.count
    out = tuple(
        StackSample(frames, None, 0, size, count, 0.0, len(frames) >= session.max_frames)
        for frames, (size, count) in acc.items()
    )
    # Under tracemalloc the peak profile is not kept: peak() is the live heap now.
    return Profile(kind, "tracemalloc", 0, out, stats(), time.time())


def snapshot(kind: Kind = "live") -> Profile:
    """The profile of the live heap (``live``), or of every allocation since start
    (``allocations``, native only).

    Readable while running and after :func:`stop`.

    Raises:
        ProfilerError: never started, or ``allocations`` under tracemalloc.
        ConfigurationError: ``kind`` is not ``live`` or ``allocations``.
    """
    if kind not in ("live", "allocations", "peak"):
        raise ConfigurationError(
            f"snapshot(kind={kind!r}): expected 'live' or 'allocations'", value=kind
        )
    with _lock:
        session = _need_session()
        if session.backend == "native":
            return _native_profile(kind, session)
        return _tracemalloc_profile(kind, session)


def peak() -> Profile:
    """The live heap at its highest estimate since start (or :func:`reset_peak`).

    The copy is taken when the estimate passes the previous high by more than
    max(2 intervals, 1 %), so it may lag the true sampled peak by that much. Under
    tracemalloc it is the live heap now.
    """
    return snapshot("peak")


def reset_peak() -> None:
    """Start a new peak from the live heap now."""
    with _lock:
        session = _need_session()
        if session.backend == "native":
            assert _native is not None
            _native.reset_peak()
        elif session.trace_user is not None:
            session.trace_user.reset_peak()


def dumps(profile: Profile) -> str:
    """``profile.to_dict()`` as compact JSON."""
    return json.dumps(profile.to_dict(), separators=(",", ":"))


def merge(profiles: Iterable[Profile], *, kind: str | None = None) -> Profile:
    """Sum several profiles (e.g. one per process) into one."""
    items = list(profiles)
    if not items:
        return Profile(kind or "live", backend(), 0, ())
    acc: dict[tuple[Any, ...], list[Any]] = {}
    for p in items:
        for s in p.stacks:
            row = acc.setdefault((s.frames, s.tag, s.thread_id, s.truncated), [0, 0, 0.0])
            row[0] += s.size_bytes
            row[1] += s.samples
            row[2] += s.variance
    stacks = tuple(
        StackSample(fr, tg, tid, size, n, var, trunc)
        for (fr, tg, tid, trunc), (size, n, var) in acc.items()
    )
    first = items[0]
    return Profile(
        kind or first.kind, first.backend, first.interval_bytes, stacks, {}, first.time_s
    )
