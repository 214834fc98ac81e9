"""The child side of ``memwarden run --python-heap``: run a script or module under tracemalloc.

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
from memwarden.report.trace import Site, SiteSnapshot, append_record, site_snapshot_record

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
            from memwarden.monitor import monitor
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
    session: _Session | None = None
    if env["MEMWARDEN_TRACE_FILE"]:
        fd = os.open(env["MEMWARDEN_TRACE_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
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
