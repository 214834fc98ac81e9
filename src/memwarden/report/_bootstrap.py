"""The child side of ``memwarden run``: the sampling profile of every Python process, and
``--python-heap``'s exact tracemalloc session.

**Profiling (the default for Python targets).** ``memwarden run`` puts a directory
holding only ``sitecustomize.py`` (``report/_shim``) first on ``PYTHONPATH``, so
every Python process of the run, the target and the children it starts
(``subprocess``, multiprocessing ``spawn`` and ``forkserver``), calls
:func:`install_from_env` at start-up. It starts the sampling profiler through the
tracing owner and appends ``profile`` records (the live heap at its peak, and at
exit) to the run's trace, tagged with the process id; a flusher thread rewrites
the peak record when the peak grew, so a process killed by ``--limit`` (SIGTERM,
then SIGKILL) still says where its memory was. Forked children (``os.fork``,
multiprocessing ``fork``) keep profiling and write their own records.

**``--python-heap``.**

Invoked as ``python -m memwarden.report._bootstrap [-m] TARGET [ARGS...]`` with
``MEMWARDEN_TRACE_*`` variables naming the trace file. It starts tracemalloc
(``MEMWARDEN_TRACE_HEAP=1``), watches the traced heap from a daemon thread and
appends the top allocation sites each time the heap reaches a new high (the last
one is the peak), appends them again at exit (and on SIGTERM, so a run stopped by
``--limit`` still says where memory went), and appends one span record per
finished ``track()`` block (``MEMWARDEN_TRACE_SPANS=1``). Records go to the
parent's trace file with one ``O_APPEND`` write each; nothing else is written.
"""

from __future__ import annotations

import atexit
import contextlib
import linecache
import logging
import os
import runpy
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from memwarden import tracing
from memwarden.report.trace import (
    Site,
    SiteSnapshot,
    append_record,
    profile_record,
    site_snapshot_record,
)

log = logging.getLogger("memwarden.report.bootstrap")

_ENV = (
    "MEMWARDEN_TRACE_FILE",
    "MEMWARDEN_TRACE_T0",
    "MEMWARDEN_TRACE_T0_WALL",
    "MEMWARDEN_TRACE_HEAP",
    "MEMWARDEN_TRACE_SPANS",
    "MEMWARDEN_TRACE_TOP",
    "MEMWARDEN_TRACE_INTERVAL",
    "MEMWARDEN_TRACE_FRAMES",
)

#: A new peak snapshot is taken when the traced heap is this much above the last one.
_PEAK_GROWTH = 1.2
_MIN_PEAK_BYTES = 1 << 20


#: Frames kept per allocation by default: enough to walk out of most library calls
#: to the caller. tracemalloc's cost grows with the frames it records.
DEFAULT_FRAMES = 4


def _top_sites(groups: list[tracing.TraceGroup], top: int) -> tuple[Site, ...]:
    """Group allocations by the innermost frame in the program's own code.

    ``np.ones(...)`` allocates inside numpy; the line a user can change is the
    caller's, so each traceback is charged to its innermost frame outside the
    standard library, site-packages and memwarden (the innermost frame when all
    of them are library code). Allocations made by memwarden on its own behalf
    (the monitor's history, this bootstrap) are its overhead and are left out.
    """
    ranked = tracing.by_site(groups)[:top]
    return tuple(
        Site(
            s.filename,
            s.lineno,
            s.size_bytes,
            s.count,
            linecache.getline(s.filename, s.lineno).strip()[:200],
        )
        for s in ranked
    )


class _Session:
    """Everything the bootstrap records for one child process."""

    def __init__(
        self,
        fd: int,
        t0: float,
        t0_wall: float,
        *,
        heap: bool,
        spans: bool,
        top: int,
        every_s: float,
        frames: int = DEFAULT_FRAMES,
    ) -> None:
        self.fd = fd
        self.t0 = t0
        self.t0_wall = t0_wall
        self.heap = heap
        self.spans = spans
        self.top = top
        self.every_s = max(0.05, every_s)
        self.frames = max(1, frames)
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._best_bytes = 0
        self._finished = False
        self._subscription: Any = None
        self._watcher: threading.Thread | None = None
        self._peak: tuple[float, int, int, list[tracing.TraceGroup]] | None = None
        self._trace: tracing.TraceUser | None = None

    def write(self, record: dict[str, Any]) -> None:
        if os.getpid() != self.pid:  # a forked child inherited us; it is not the profiled process
            return
        try:
            with self._lock:
                append_record(self.fd, record)
        except (OSError, ValueError) as exc:  # never take the program down over a trace
            log.debug("cannot write trace record: %s", exc)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _event(self, started_s: float, message: str) -> None:
        # Snapshots cost the child time and memory; say so on the timeline.
        self.write(
            {
                "type": "event",
                "t_s": round(started_s, 4),
                "kind": "heap-snapshot",
                "message": message,
            }
        )

    def capture_peak(self) -> None:
        """Keep the traces at a new high, grouped by traceback (far smaller than the traces).

        Grouping hashes one int per block and allocates per distinct traceback only,
        so it costs little even while tracing; the snapshot is dropped at once.
        """
        traced = tracing.traced_memory()
        if traced is None:
            return
        current, peak = traced
        started_s = self.now()
        snap = tracing.snapshot()
        blocks = len(snap.traces)
        groups = tracing.group_traces(snap)
        del snap
        self._peak = (started_s, current, peak, groups)
        self._event(
            started_s,
            f"peak heap snapshot of {blocks} blocks ({len(groups)} stacks kept) took "
            f"{self.now() - started_s:.2f} s",
        )

    def write_sites(self) -> None:
        """Take the exit snapshot, stop tracing, then group and write the peak and exit sites."""
        traced = tracing.traced_memory()
        if traced is None:
            return
        current, peak = traced
        started_s = self.now()
        snap = tracing.snapshot()
        # Nothing is traced after the exit snapshot: stop now so that grouping
        # does not itself run traced.
        if self._trace is not None:
            self._trace.release()
            self._trace = None
        blocks = len(snap.traces)
        exit_sites = _top_sites(tracing.group_traces(snap), self.top)
        del snap
        if self._peak is not None:
            t_s, p_current, p_peak, groups = self._peak
            self._peak = None
            peak_sites = _top_sites(groups, self.top)
            del groups
            self.write(
                site_snapshot_record(SiteSnapshot("peak", t_s, p_current, p_peak, peak_sites))
            )
        self.write(site_snapshot_record(SiteSnapshot("exit", started_s, current, peak, exit_sites)))
        self._event(
            started_s, f"exit heap snapshot of {blocks} blocks took {self.now() - started_s:.2f} s"
        )

    def start(self) -> None:
        if self.heap:
            tracing.frame_kind(__file__)  # sysconfig's import is not the program's memory
            self._trace = tracing.acquire(self.frames, name="memwarden run --python-heap")
            self._watcher = threading.Thread(
                target=self._watch, name="memwarden-heap-watch", daemon=True
            )
            self._watcher.start()
        if self.spans:
            self._subscribe_spans()

    def _subscribe_spans(self) -> None:
        try:
            from memwarden.monitoring import monitor
        except ImportError:
            log.debug("memwarden.monitor is not available; no operation spans recorded")
            return
        self._subscription = monitor().on_operation(self._on_operation)

    def _on_operation(self, stats: Any) -> None:
        start = float(stats.start_time_s)
        # OperationStats.start_time_s is wall-clock (time.time()).
        start_s = start - self.t0_wall if start > 1e9 else start - self.t0
        self.write(
            {
                "type": "span",
                "name": str(stats.name),
                "start_s": round(start_s, 4),
                "duration_s": round(float(stats.duration_s), 6),
                "rss_delta_bytes": int(stats.rss_delta_bytes or 0),
                "peak_rss_bytes": int(stats.peak_rss_bytes or 0),
                "python_heap_delta_bytes": int(stats.python_heap_delta_bytes or 0),
                "python_heap_peak_bytes": int(stats.python_heap_peak_bytes or 0),
            }
        )

    def _watch(self) -> None:
        min_gap_s = 0.5
        last_at = 0.0
        while not self._stop.wait(self.every_s):
            traced = tracing.traced_memory()
            if traced is None:
                return
            current = traced[0]
            now = time.monotonic()
            if (
                current >= _MIN_PEAK_BYTES
                and current > self._best_bytes * _PEAK_GROWTH
                and now - last_at >= min_gap_s
            ):
                self._best_bytes = current
                started = time.perf_counter()
                try:
                    self.capture_peak()
                except Exception as exc:  # the heap watcher must never kill the program
                    log.debug("peak snapshot failed: %s", exc)
                    return
                # A snapshot costs O(live blocks) of Python work competing for the GIL;
                # spacing them by 10x their cost keeps them near a tenth of the run.
                min_gap_s = max(0.5, 10 * (time.perf_counter() - started))
                last_at = time.monotonic()

    def finish(self) -> None:
        if self._finished or os.getpid() != self.pid:
            return
        self._finished = True
        self._stop.set()
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                self._subscription.unsubscribe()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=10)  # let a snapshot in progress finish
        if self.heap and tracing.is_tracing():
            try:
                self.write_sites()
            except Exception as exc:  # never take the program down over a trace
                log.debug("exit snapshot failed: %s", exc)


#: Stacks kept per profile record: enough for any report, bounded line size.
PROFILE_STACKS = 400
#: A peak record is rewritten when the peak estimate grew by this factor...
_PROFILE_GROWTH = 1.1
#: ...checked this often (seconds).
_PROFILE_FLUSH_S = 1.0


class _ProfileSession:
    """The sampling profile of one process of the run, written as ``profile`` records."""

    def __init__(self, fd: int, t0: float, *, interval_bytes: int, frames: int) -> None:
        self.fd = fd
        self.t0 = t0
        self.interval_bytes = interval_bytes
        self.frames = frames
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._user: tracing.SamplerUser | None = None
        self._flusher: threading.Thread | None = None
        self._written_peak = 0.0
        self._finished = False

    def start(self) -> bool:
        self._user = tracing.acquire_sampler(self.interval_bytes, self.frames)
        if self._user is None:
            log.debug("the sampling profiler is not available here; no profile recorded")
            return False
        self._start_flusher()
        return True

    def _start_flusher(self) -> None:
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_loop, name="memwarden-profile-flush", daemon=True
        )
        self._flusher.start()

    def after_fork_in_child(self) -> None:
        """A forked child keeps the (inherited) profile and writes its own records."""
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._written_peak = 0.0
        self._finished = False
        if self._user is not None and self._user.profiler.is_running():
            self._start_flusher()
            _register_mp_finalizer(self)

    def _write(self, when: str) -> None:
        assert self._user is not None
        profiler = self._user.profiler
        prof = profiler.peak() if when == "peak" else profiler.snapshot("live")
        stacks = sorted(prof.stacks, key=lambda st: st.size_bytes, reverse=True)
        if len(stacks) > PROFILE_STACKS:
            import dataclasses

            prof = dataclasses.replace(prof, stacks=tuple(stacks[:PROFILE_STACKS]))
        record = profile_record(
            pid=self.pid,
            ppid=os.getppid(),
            when=when,
            t_s=time.monotonic() - self.t0,
            argv=sys.argv[:8],
            profile=prof.to_dict(),
        )
        with self._lock:
            append_record(self.fd, record)

    def _flush_loop(self) -> None:
        while not self._stop.wait(_PROFILE_FLUSH_S):
            try:
                if self._user is None or not self._user.profiler.is_running():
                    return
                peak = float(self._user.profiler.stats().get("peak_bytes", 0.0))
                if peak > self._written_peak * _PROFILE_GROWTH and peak >= _MIN_PEAK_BYTES:
                    self._write("peak")
                    self._written_peak = peak
            except Exception as exc:  # never take the program down over a trace
                log.debug("profile flush failed: %s", exc)
                return

    def finish(self) -> None:
        """Write the peak and exit profiles once (atexit, SIGTERM, a worker's finalizer)."""
        if self._finished or os.getpid() != self.pid or self._user is None:
            return
        self._finished = True
        self._stop.set()
        try:
            if self._user.profiler.is_running():
                self._write("peak")
                self._write("exit")
        except Exception as exc:  # never take the program down over a trace
            log.debug("profile write failed: %s", exc)


_profile_session: _ProfileSession | None = None


def _register_mp_finalizer(session: _ProfileSession) -> None:
    # multiprocessing's forked workers leave through os._exit (no atexit) after
    # running multiprocessing.util's finalizers: write the profile from there. The
    # worker's bootstrap clears the finalizers it inherited and then runs the
    # after-fork callbacks, so the finalizer is registered from one of those.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        with contextlib.suppress(Exception):
            mp_util.register_after_fork(session, _mp_finalizer)


def _mp_finalizer(session: _ProfileSession) -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        with contextlib.suppress(Exception):
            mp_util.Finalize(None, session.finish, exitpriority=100)


def _on_term_profile(signum: int, frame: FrameType | None) -> None:
    if _profile_session is not None:
        _profile_session.finish()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_from_env() -> None:
    """Start this process's sampling profile when ``memwarden run`` asked for one.

    Called by the ``sitecustomize`` shim at interpreter start-up in every Python
    process of the run. Does nothing without ``MEMWARDEN_TRACE_FILE`` and
    ``MEMWARDEN_TRACE_PROFILE=1``; never raises.
    """
    global _profile_session
    if _profile_session is not None or os.environ.get("MEMWARDEN_TRACE_PROFILE") != "1":
        return
    path = os.environ.get("MEMWARDEN_TRACE_FILE", "")
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        log.debug("cannot open the trace %s: %s", path, exc)
        return
    try:
        session = _ProfileSession(
            fd,
            float(os.environ.get("MEMWARDEN_TRACE_T0") or time.monotonic()),
            interval_bytes=int(os.environ.get("MEMWARDEN_TRACE_PROFILE_INTERVAL") or 512 * 1024),
            frames=int(os.environ.get("MEMWARDEN_TRACE_PROFILE_FRAMES") or 64),
        )
        if not session.start():
            os.close(fd)
            return
    except Exception as exc:  # never take the program down over a trace
        log.debug("profiling not started: %s", exc)
        os.close(fd)
        return
    _profile_session = session
    atexit.register(session.finish)
    os.register_at_fork(after_in_child=session.after_fork_in_child)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                # The target may install its own handler later; then it decides.
                signal.signal(signal.SIGTERM, _on_term_profile)
    _register_mp_finalizer(session)


def _install_sigterm(session: _Session) -> None:
    def on_term(signum: int, frame: FrameType | None) -> None:
        session.finish()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    # The target may install its own handler later; then it decides what SIGTERM does.
    signal.signal(signal.SIGTERM, on_term)


def main(argv: list[str] | None = None) -> None:
    """Run the target named on the command line under the trace session."""
    args = list(sys.argv[1:] if argv is None else argv)
    module = False
    if args and args[0] == "-m":
        module = True
        args = args[1:]
    if not args:
        sys.stderr.write("usage: python -m memwarden.report._bootstrap [-m] TARGET [ARGS...]\n")
        raise SystemExit(2)
    env = {k: os.environ.pop(k, "") for k in _ENV}  # not inherited by the target's children
    if os.environ.get("MEMWARDEN_TRACE_PROFILE") == "1":
        # Profiling follows the target's Python children: they need the trace's name.
        for key in ("MEMWARDEN_TRACE_FILE", "MEMWARDEN_TRACE_T0", "MEMWARDEN_TRACE_T0_WALL"):
            if env[key]:
                os.environ[key] = env[key]
    # memwarden's own directory was put on PYTHONPATH to start this bootstrap; the
    # target's children get the user's PYTHONPATH back (or none, if there was none).
    user_path = os.environ.pop("MEMWARDEN_TRACE_PYTHONPATH", None)
    if os.environ.pop("MEMWARDEN_TRACE_PYTHONPATH_UNSET", None) == "1":
        os.environ.pop("PYTHONPATH", None)
    elif user_path is not None:
        os.environ["PYTHONPATH"] = user_path
    session: _Session | None = None
    if env["MEMWARDEN_TRACE_FILE"]:
        # O_NOFOLLOW: the parent created this file; a symlink swapped in since is refused.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(env["MEMWARDEN_TRACE_FILE"], flags)
        session = _Session(
            fd,
            float(env["MEMWARDEN_TRACE_T0"] or time.monotonic()),
            float(env["MEMWARDEN_TRACE_T0_WALL"] or time.time()),
            heap=env["MEMWARDEN_TRACE_HEAP"] == "1",
            spans=env["MEMWARDEN_TRACE_SPANS"] == "1",
            top=int(env["MEMWARDEN_TRACE_TOP"] or 20),
            every_s=float(env["MEMWARDEN_TRACE_INTERVAL"] or 0.1),
            frames=int(env["MEMWARDEN_TRACE_FRAMES"] or DEFAULT_FRAMES),
        )
        atexit.register(session.finish)
        _install_sigterm(session)
        session.start()
    if os.environ.get("MEMWARDEN_HEAP_DUMP_DIR"):  # memwarden run --heap-dump-near-limit
        from memwarden.heapwatch import install_from_env

        install_from_env()
    target, rest = args[0], args[1:]
    sys.argv = [target, *rest]
    try:
        if module:
            sys.path[0] = str(Path.cwd())
            namespace = runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.path[0] = str(Path(target).resolve().parent)
            namespace = runpy.run_path(target, run_name="__main__")
    except BaseException:
        # The traceback's frames keep the program's globals alive: the exit
        # snapshot still sees what the program held when it ended.
        if session is not None:
            session.finish()
        raise
    if session is not None:
        session.finish()  # runpy returned a copy of the globals, still alive here
    del namespace


if __name__ == "__main__":
    main()
