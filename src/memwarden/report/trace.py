"""Read and write ``memwarden.trace/1`` files: a JSON header line, then JSON Lines records.

A trace is written as the program runs, one ``os.write`` per record on a file
opened with ``O_APPEND``, so a long run never holds its timeline in memory, a
crash leaves every record written so far readable, and the profiled child (the
``--python-heap`` bootstrap) can append its own records to the same file without
interleaving bytes. Nothing is pickled: every line is plain JSON.

The format (documented in ``docs/run.md``)::

    {"format": "memwarden.trace/1", "command": [...], "interval_s": 0.1, ...}   # header
    {"type": "sample", "t_s": 0.1, "rss_bytes": 123, "processes": 1}
    {"type": "span", "name": "parse", "start_s": 1.2, "duration_s": 0.4, ...}
    {"type": "sites", "when": "peak", "t_s": 3.1, "traced_bytes": ..., "sites": [...]}
    {"type": "event", "t_s": 9.0, "kind": "limit", "message": "..."}
    {"type": "end", "t_s": 9.5, "exit_code": 0, "reason": "exited", ...}

Times ``t_s`` are seconds since the run started. Readers ignore record types
they do not know (later minor additions), and refuse any other format version.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memwarden._files import create_new, open_output
from memwarden.exceptions import MemwardenWarning, TraceFormatError

__all__ = [
    "FORMAT",
    "Event",
    "ProcessProfile",
    "RouteRow",
    "Sample",
    "Site",
    "SiteSnapshot",
    "Span",
    "Trace",
    "TraceEnd",
    "TraceWriter",
    "append_record",
    "iter_records",
    "profile_record",
    "read_trace",
]

log = logging.getLogger("memwarden.report.trace")

#: The format name and version written in every header; readers accept exactly this.
FORMAT = "memwarden.trace/1"
_FORMAT_FAMILY = "memwarden.trace/"

#: A record line longer than this is damage, not data (a site snapshot is a few KiB).
MAX_LINE_BYTES = 4 * 2**20

#: Default bound on samples held in memory by the reader; longer traces are thinned
#: by merging neighbours (keeping the larger RSS, so the peak survives).
DEFAULT_MAX_SAMPLES = 100_000

_MAX_SPANS = 100_000
_MAX_EVENTS = 10_000
_MAX_SITE_SNAPSHOTS = 100
#: Processes whose profiles a reader keeps (a fork bomb must not grow the reader).
_MAX_PROFILED_PROCESSES = 256
#: Route rows a reader keeps per process (the middleware bounds its labels too).
_MAX_ROUTES = 1000

#: Integers in a trace beyond this are damage (no byte count or pid is that large);
#: a 400-digit ``limit_bytes`` must not reach float conversions downstream.
MAX_INT = 2**63

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Sample:
    """RSS of the whole process tree at one moment."""

    t_s: float
    rss_bytes: int
    processes: int = 1


@dataclass(frozen=True)
class Span:
    """One finished ``track()`` operation reported by the profiled program."""

    name: str
    start_s: float
    duration_s: float
    rss_delta_bytes: int = 0
    peak_rss_bytes: int = 0
    python_heap_delta_bytes: int = 0
    python_heap_peak_bytes: int = 0


@dataclass(frozen=True)
class Site:
    """One allocation site (file and line) and what it held when the snapshot was taken."""

    file: str
    line: int
    size_bytes: int
    count: int
    code: str = ""


@dataclass(frozen=True)
class SiteSnapshot:
    """The top allocation sites at one moment (``when`` is ``"peak"`` or ``"exit"``)."""

    when: str
    t_s: float
    traced_bytes: int
    peak_traced_bytes: int
    sites: tuple[Site, ...]


@dataclass(frozen=True)
class Event:
    """Something that happened during the run: a limit hit, a forwarded signal, a note."""

    t_s: float
    kind: str
    message: str


@dataclass(frozen=True)
class TraceEnd:
    """How the run ended.

    Attributes:
        reason: ``"exited"``, ``"signaled"``, ``"limit"`` (stopped by memwarden for
            exceeding ``--limit``) or ``"interrupted"``.
        max_rss_bytes: the kernel's maximum resident set size of the child
            (``wait4`` ``ru_maxrss``: the largest single process, as ``time -v``).
    """

    t_s: float
    exit_code: int | None
    reason: str
    signal: int | None = None
    peak_rss_bytes: int = 0
    max_rss_bytes: int = 0


@dataclass(frozen=True)
class RouteRow:
    """One route's request memory in one server process (from the WSGI/ASGI middleware).

    Attributes:
        route: the route label.
        requests: requests finished.
        rss_delta_sum_bytes: the summed RSS change of its requests.
        under_pressure: requests that ended under memory pressure.
        allocated_bytes: bytes the sampling profiler attributed to it (0 when not profiling).
    """

    route: str
    requests: int
    rss_delta_sum_bytes: int
    under_pressure: int
    allocated_bytes: int


@dataclass(frozen=True)
class ProcessProfile:
    """A sampling profile one process of the run wrote (the last of its kind wins).

    Attributes:
        pid: the process.
        ppid: its parent when it wrote the record.
        when: ``"peak"`` (the live heap at its highest estimate) or ``"exit"``.
        t_s: seconds since the run started.
        argv: the process's first command-line words (``sys.argv``).
        data: the profile as :meth:`memwarden.profiler.Profile.to_dict` wrote it.
    """

    pid: int
    ppid: int
    when: str
    t_s: float
    argv: tuple[str, ...]
    data: dict[str, Any]

    def profile(self) -> Any:
        """The :class:`memwarden.profiler.Profile` (raises ``TraceFormatError`` if malformed)."""
        from memwarden.profiler import Profile

        return Profile.from_dict(self.data, source=f"profile of pid {self.pid}")


@dataclass
class Trace:
    """A trace read back: header, samples and the other records, in time order.

    Attributes:
        header: the header object as written (``command``, ``interval_s``, ...).
        stride: how many written samples each held sample stands for (1 unless thinned).
        damaged_line: the first line that could not be read, when the reader
            stopped early (the trace was truncated or corrupted there).
        problems: human-readable notes about damage, also issued as warnings.
    """

    header: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    sites: list[SiteSnapshot] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: The last profile of each kind per process, by ``(pid, when)``.
    profiles: dict[tuple[int, str], ProcessProfile] = field(default_factory=dict)
    #: The last per-route request figures each server process wrote, by pid.
    routes: dict[int, tuple[RouteRow, ...]] = field(default_factory=dict)
    end: TraceEnd | None = None
    path: str | None = None
    stride: int = 1
    damaged_line: int | None = None
    problems: list[str] = field(default_factory=list)
    #: How many sample records were read (``len(samples)`` is fewer once thinned).
    sample_count: int = 0
    _pending: Sample | None = field(default=None, repr=False, compare=False)
    _pending_n: int = field(default=0, repr=False, compare=False)

    @property
    def command(self) -> list[str]:
        """The profiled command line."""
        cmd = self.header.get("command", [])
        return [_clean_text(str(c)) for c in cmd] if isinstance(cmd, list) else [str(cmd)]

    @property
    def label(self) -> str:
        """A short name for this run (the header's ``label`` or the command)."""
        label = self.header.get("label")
        if isinstance(label, str) and label:
            return _clean_text(label)
        return " ".join(self.command) or (self.path or "trace")

    @property
    def limit_bytes(self) -> int | None:
        """The ``--limit`` the run was guarded by, if any."""
        value = self.header.get("limit_bytes")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_INT:
            return None
        return value

    @property
    def peak_rss_bytes(self) -> int:
        """The highest RSS seen: the sampled tree sum or the kernel's own maximum."""
        sampled = max((s.rss_bytes for s in self.samples), default=0)
        if self.end is not None:
            return max(sampled, self.end.peak_rss_bytes, self.end.max_rss_bytes)
        return sampled

    @property
    def duration_s(self) -> float:
        """Seconds from start to the end record (or the last sample of a truncated trace)."""
        if self.end is not None:
            return self.end.t_s
        return self.samples[-1].t_s if self.samples else 0.0


# ---------------------------------------------------------------------------
# writing


def _dumps(record: Mapping[str, Any]) -> bytes:
    # allow_nan=False: NaN is not JSON; a writer bug must not produce unreadable traces.
    return (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()


def append_record(fd: int, record: Mapping[str, Any]) -> None:
    """Write one record as one line with a single ``os.write`` on an ``O_APPEND`` descriptor.

    One write per line keeps records whole when the parent and the profiled child
    append to the same file at once.
    """
    data = _dumps(record)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class TraceWriter:
    """Write a ``memwarden.trace/1`` file record by record (nothing is buffered in memory).

    Args:
        path: the trace file.
        header: header fields (``command``, ``interval_s``, ``limit_bytes``, ...);
            ``format`` is filled in.
        exclusive: the name was chosen by memwarden, not the user: create it
            exclusively (never follow or overwrite what is already there). Otherwise
            an existing regular file is replaced, see :func:`memwarden._files.open_output`.
        on_error: called once with the ``OSError`` when a write fails (a full disk).

    A failed write (``ENOSPC``, ``EIO``) does not raise: it is logged once at WARNING,
    ``error`` keeps it, and later records are dropped (counted in ``dropped``), so
    the caller keeps supervising its program. Thread-safe; use as a context manager
    or call :meth:`close`.

    Raises:
        OSError: the file cannot be created (``FileExistsError`` with ``exclusive``;
            :class:`~memwarden.exceptions.UnsafePathError` for a foreign symlink).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: Mapping[str, Any],
        *,
        exclusive: bool = False,
        on_error: Callable[[OSError], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.error: OSError | None = None
        self.dropped = 0
        self._on_error = on_error
        opener = create_new if exclusive else open_output
        self._fd = opener(self.path, append=True)
        self._write({"format": FORMAT, **{k: v for k, v in header.items() if k != "format"}})

    def _write(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"trace {self.path} is closed")
            if self.error is not None:
                self.dropped += 1
                return
            try:
                append_record(self._fd, record)
            except OSError as exc:
                self.error = exc
                self.dropped += 1
                # Said once; through the caller's callback when it has one (the CLI
                # words it for the user), else as a warning in the log.
                log.log(
                    logging.DEBUG if self._on_error is not None else logging.WARNING,
                    "cannot write trace %s: %s; recording stops here (the trace is read "
                    "up to this point)",
                    self.path,
                    exc.strerror or exc,
                )
                if self._on_error is not None:
                    self._on_error(exc)

    def sample(self, t_s: float, rss_bytes: int, processes: int = 1) -> None:
        """Append one RSS sample of the process tree."""
        self._write(
            {"type": "sample", "t_s": round(t_s, 4), "rss_bytes": rss_bytes, "processes": processes}
        )

    def span(self, span: Span) -> None:
        """Append one finished operation span."""
        self._write({"type": "span", **asdict(span)})

    def sites(self, snapshot: SiteSnapshot) -> None:
        """Append a top-allocation-sites snapshot."""
        self._write(site_snapshot_record(snapshot))

    def event(self, t_s: float, kind: str, message: str) -> None:
        """Append an event (limit hit, signal forwarded, ...)."""
        self._write({"type": "event", "t_s": round(t_s, 4), "kind": kind, "message": message})

    def end(self, end: TraceEnd) -> None:
        """Append the end record; the trace is complete after it."""
        self._write({"type": "end", **asdict(end)})

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def site_snapshot_record(snapshot: SiteSnapshot) -> dict[str, Any]:
    """The JSON record of a site snapshot (shared by the writer and the child bootstrap)."""
    return {
        "type": "sites",
        "when": snapshot.when,
        "t_s": round(snapshot.t_s, 4),
        "traced_bytes": snapshot.traced_bytes,
        "peak_traced_bytes": snapshot.peak_traced_bytes,
        "sites": [asdict(s) for s in snapshot.sites],
    }


def profile_record(
    *, pid: int, ppid: int, when: str, t_s: float, argv: Sequence[str], profile: dict[str, Any]
) -> dict[str, Any]:
    """The JSON record of one process's sampling profile (written by the child bootstrap)."""
    return {
        "type": "profile",
        "pid": pid,
        "ppid": ppid,
        "when": when,
        "t_s": round(t_s, 4),
        "argv": [str(a) for a in argv],
        "profile": profile,
    }


# ---------------------------------------------------------------------------
# reading


def _open_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """Yield ``(line_number, raw_line, ended_with_newline)``; lines are bounded in length.

    A gzip-compressed trace (``trace.jsonl.gz``, found by its magic bytes, not its
    name) is decompressed as it is read; a truncated or corrupt stream ends the
    trace at the damage like a truncated plain file.
    """
    with path.open("rb") as raw_fh:
        gzipped = raw_fh.read(2) == _GZIP_MAGIC
        raw_fh.seek(0)
        fh: Any = gzip.GzipFile(fileobj=raw_fh, mode="rb") if gzipped else raw_fh
        number = 0
        while True:
            try:
                raw = fh.readline(MAX_LINE_BYTES + 1)
            except (EOFError, OSError, gzip.BadGzipFile) as exc:
                if not gzipped:
                    raise
                raise TraceFormatError(
                    f"{path}:{number + 1}: compressed data is damaged ({exc})",
                    path=str(path),
                    line=number + 1,
                ) from None
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                yield number, raw[:200], False
                return
            yield number, raw, raw.endswith(b"\n")


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which are not JSON: a writer never emits
    # them (allow_nan=False), so they are damage, and must not reach `report --json`.
    raise ValueError(f"{name} is not a JSON number")


def _clean_text(text: str) -> str:
    """``text`` with lone surrogates (valid in JSON escapes, not in UTF-8) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _parse(raw: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TraceFormatError(
            f"{path}:{number}: not a JSON record ({exc})", path=str(path), line=number
        ) from None
    except RecursionError:
        raise TraceFormatError(
            f"{path}:{number}: not a JSON record (nested too deeply)", path=str(path), line=number
        ) from None
    if not isinstance(obj, dict):
        raise TraceFormatError(
            f"{path}:{number}: expected a JSON object, got {type(obj).__name__}",
            path=str(path),
            line=number,
        )
    return obj


def _check_header(header: dict[str, Any], path: Path) -> None:
    fmt = header.get("format")
    if not isinstance(fmt, str) or not fmt.startswith(_FORMAT_FAMILY):
        raise TraceFormatError(
            f"{path}:1: not a memwarden trace (header format={fmt!r}, expected {FORMAT!r})",
            path=str(path),
            line=1,
        )
    if fmt != FORMAT:
        raise TraceFormatError(
            f"{path}:1: unsupported trace version {fmt!r}; this memwarden reads {FORMAT!r}",
            path=str(path),
            line=1,
        )


def iter_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for every line of a trace, header first.

    Raises:
        TraceFormatError: at the first line that is not a complete JSON object
            (the error names the file and line), or when the header is not
            ``memwarden.trace/1``.
    """
    p = Path(path)
    first = True
    for number, raw, complete in _open_lines(p):
        if not raw.strip():
            continue
        if not complete:
            # A last line without its newline is what a crash mid-write leaves behind.
            try:
                obj = _parse(raw, p, number)
            except TraceFormatError:
                raise TraceFormatError(
                    f"{p}:{number}: truncated record (no end of line)", path=str(p), line=number
                ) from None
        else:
            obj = _parse(raw, p, number)
        if first:
            _check_header(obj, p)
            first = False
        yield number, obj
    if first:
        raise TraceFormatError(f"{p}: empty file, not a memwarden trace", path=str(p), line=1)


def _num(rec: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = rec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"field {key!r} must be a finite number, got {_short(value)}")
    return float(value)


def _int(rec: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = rec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {key!r} must be an integer, got {_short(value)}")
    if not -MAX_INT <= value <= MAX_INT:
        raise ValueError(f"field {key!r} is out of range ({_short(value)})")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _opt_int(rec: Mapping[str, Any], key: str) -> int | None:
    value = rec.get(key)
    return None if value is None else _int(rec, key)


def _str(rec: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = rec.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {_short(value)}")
    return _clean_text(value)


def _site(obj: Any) -> Site:
    if not isinstance(obj, dict):
        raise ValueError(f"a site must be an object, got {obj!r}")
    return Site(
        file=_str(obj, "file"),
        line=_int(obj, "line", 0),
        size_bytes=_int(obj, "size_bytes"),
        count=_int(obj, "count", 0),
        code=_str(obj, "code", ""),
    )


def _thin(samples: list[Sample]) -> list[Sample]:
    # Merge neighbours, keeping the sample with the larger RSS so the peak survives.
    out = []
    for i in range(0, len(samples) - 1, 2):
        a, b = samples[i], samples[i + 1]
        out.append(a if a.rss_bytes >= b.rss_bytes else b)
    if len(samples) % 2:
        out.append(samples[-1])
    return out


def _add_sample(trace: Trace, sample: Sample, max_samples: int) -> None:
    # Once thinned to a stride of N, every N incoming samples are merged into one
    # before they are held, so the kept samples stand for equal runs of the timeline
    # (appending later ones one by one would crowd the end of the chart).
    last_t = trace._pending.t_s if trace._pending is not None else None
    if last_t is None and trace.samples:
        last_t = trace.samples[-1].t_s
    floor = max(0.0, last_t or 0.0)
    if sample.t_s < floor:
        # A clock that ran backwards (a restored VM, an edited file): keep time order,
        # so durations and peak times are never negative.
        sample = Sample(floor, sample.rss_bytes, sample.processes)
    trace.sample_count += 1
    pending = trace._pending
    if pending is None or sample.rss_bytes > pending.rss_bytes:
        trace._pending = sample
    trace._pending_n += 1
    if trace._pending_n >= trace.stride:
        _flush_pending(trace)
        if len(trace.samples) > max_samples:
            trace.samples = _thin(trace.samples)
            trace.stride *= 2


def _flush_pending(trace: Trace) -> None:
    if trace._pending is not None:
        trace.samples.append(trace._pending)
    trace._pending = None
    trace._pending_n = 0


def _apply(trace: Trace, rec: dict[str, Any], max_samples: int) -> None:
    kind = rec.get("type")
    if kind == "sample":
        _add_sample(
            trace,
            Sample(_num(rec, "t_s"), _int(rec, "rss_bytes"), _int(rec, "processes", 1)),
            max_samples,
        )
    elif kind == "span":
        if len(trace.spans) < _MAX_SPANS:
            trace.spans.append(
                Span(
                    name=_str(rec, "name"),
                    start_s=_num(rec, "start_s"),
                    duration_s=_num(rec, "duration_s"),
                    rss_delta_bytes=_int(rec, "rss_delta_bytes", 0),
                    peak_rss_bytes=_int(rec, "peak_rss_bytes", 0),
                    python_heap_delta_bytes=_int(rec, "python_heap_delta_bytes", 0),
                    python_heap_peak_bytes=_int(rec, "python_heap_peak_bytes", 0),
                )
            )
    elif kind == "sites":
        sites = rec.get("sites", [])
        if not isinstance(sites, list):
            raise ValueError(f"field 'sites' must be a list, got {type(sites).__name__}")
        snap = SiteSnapshot(
            when=_str(rec, "when"),
            t_s=_num(rec, "t_s"),
            traced_bytes=_int(rec, "traced_bytes", 0),
            peak_traced_bytes=_int(rec, "peak_traced_bytes", 0),
            sites=tuple(_site(s) for s in sites),
        )
        if len(trace.sites) < _MAX_SITE_SNAPSHOTS:
            trace.sites.append(snap)
    elif kind == "profile":
        data = rec.get("profile")
        if not isinstance(data, dict):
            raise ValueError("field 'profile' must be an object")
        key = (_int(rec, "pid"), _str(rec, "when"))
        if key in trace.profiles or len(trace.profiles) < _MAX_PROFILED_PROCESSES * 2:
            argv = rec.get("argv", [])
            trace.profiles[key] = ProcessProfile(
                pid=key[0],
                ppid=_int(rec, "ppid", 0),
                when=key[1],
                t_s=_num(rec, "t_s"),
                argv=tuple(str(a) for a in argv) if isinstance(argv, list) else (),
                data=data,
            )
    elif kind == "routes":
        rows = rec.get("routes", [])
        if not isinstance(rows, list):
            raise ValueError(f"field 'routes' must be a list, got {type(rows).__name__}")
        pid = _int(rec, "pid")
        if pid in trace.routes or len(trace.routes) < _MAX_PROFILED_PROCESSES:
            trace.routes[pid] = tuple(
                RouteRow(
                    route=_str(r, "route"),
                    requests=_int(r, "requests", 0),
                    rss_delta_sum_bytes=_int(r, "rss_delta_sum_bytes", 0),
                    under_pressure=_int(r, "under_pressure", 0),
                    allocated_bytes=_int(r, "allocated_bytes", 0),
                )
                for r in rows[:_MAX_ROUTES]
                if isinstance(r, dict)
            )
    elif kind == "event":
        if len(trace.events) < _MAX_EVENTS:
            trace.events.append(Event(_num(rec, "t_s"), _str(rec, "kind"), _str(rec, "message")))
    elif kind == "end":
        trace.end = TraceEnd(
            t_s=_num(rec, "t_s"),
            exit_code=_opt_int(rec, "exit_code"),
            reason=_str(rec, "reason"),
            signal=_opt_int(rec, "signal"),
            peak_rss_bytes=_int(rec, "peak_rss_bytes", 0),
            max_rss_bytes=_int(rec, "max_rss_bytes", 0),
        )
    elif not isinstance(kind, str):
        raise ValueError(f"record has no string 'type' (got {kind!r})")
    # else: a record type from a later minor version; skip it.


def read_trace(
    path: str | os.PathLike[str], *, strict: bool = False, max_samples: int = DEFAULT_MAX_SAMPLES
) -> Trace:
    """Read a trace file.

    Args:
        path: a ``memwarden.trace/1`` file.
        strict: raise at the first damaged line instead of stopping there with a warning.
        max_samples: bound on samples held; longer timelines are thinned by
            merging neighbours (the larger RSS of each pair is kept).

    Returns:
        The trace. When the file is damaged after its header (a crash mid-write,
        a corrupted line) and ``strict`` is false, everything before the damage
        is returned, ``damaged_line`` names the line, and a
        :class:`~memwarden.exceptions.MemwardenWarning` is issued.

    Raises:
        TraceFormatError: the file is empty, its header is not a memwarden trace
            or of another version, or (``strict``) any line is damaged. The
            message names the file and line.
        OSError: the file cannot be read.
    """
    p = Path(path)
    if max_samples < 2:
        raise ValueError(f"max_samples={max_samples!r}: must be at least 2")
    records = iter_records(p)
    try:
        _, header = next(records)
    except StopIteration:  # pragma: no cover - iter_records raises on empty files
        raise TraceFormatError(f"{p}: empty file", path=str(p), line=1) from None
    trace = Trace(header=header, path=str(p))
    number = 1
    try:
        for number, rec in records:
            try:
                _apply(trace, rec, max_samples)
            except ValueError as exc:
                raise TraceFormatError(
                    f"{p}:{number}: bad {rec.get('type', 'untyped')!r} record: {exc}",
                    path=str(p),
                    line=number,
                ) from None
    except TraceFormatError as exc:
        if strict or exc.line == 1:
            raise
        trace.damaged_line = exc.line
        note = f"{exc}; read the {exc.line - 1 if exc.line else '?'} lines before it"
        trace.problems.append(note)
        warnings.warn(note, MemwardenWarning, stacklevel=2)
        log.warning("%s", note)
    _flush_pending(trace)
    bad_limit = trace.header.get("limit_bytes")
    if bad_limit is not None and trace.limit_bytes is None:
        trace.problems.append(
            f"{p}:1: header limit_bytes={_short(bad_limit)} is not a byte count; ignored"
        )
    trace.spans.sort(key=lambda s: s.start_s)
    trace.events.sort(key=lambda e: e.t_s)
    trace.sites.sort(key=lambda s: s.t_s)
    if trace.end is None and trace.damaged_line is None:
        note = f"{p}: no end record (the run was still going, or memwarden was killed)"
        trace.problems.append(note)
    return trace
