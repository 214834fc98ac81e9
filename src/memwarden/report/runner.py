"""Run a program as a child, sample the RSS of its whole process tree, and write a trace.

This is the engine of ``memwarden run``: the child runs in its own process group
(given the terminal when memwarden has it, so Ctrl-C reaches the program first),
signals memwarden receives are forwarded to that group, and the child's exit
status is handed back. Every ``interval_s`` the tree is walked through
``/proc/<pid>/task/<tid>/children`` (psutil where that file is missing) and the
RSS of every process is summed; ``VmHWM`` and the kernel's ``ru_maxrss`` from
``wait4`` catch single-process peaks that fall between two samples. With
``limit_bytes`` the tree is stopped (SIGTERM, then SIGKILL after ``grace_s``)
when it goes over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from memwarden._files import describe_os_error
from memwarden.report.trace import TraceEnd, TraceWriter

__all__ = [
    "EXIT_LIMIT",
    "ProcessTree",
    "RunResult",
    "TraceOutputError",
    "bootstrap_command",
    "bootstrap_env",
    "is_python_executable",
    "profile_env",
    "run_program",
    "shim_dir",
]

log = logging.getLogger("memwarden.report.runner")

#: Exit code of ``memwarden run`` when it stopped the program for exceeding ``--limit``.
EXIT_LIMIT = 3


class TraceOutputError(OSError):
    """The trace file cannot be created; the message blames the path, not the program."""


_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_BOOTSTRAP = "memwarden.report._bootstrap"

# ---------------------------------------------------------------------------
# the process tree


def _read_rss_hwm(pid: int) -> tuple[int, int] | None:
    """``(rss_bytes, hwm_bytes)`` of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:  # noqa: PTH123 - hot path, no Path objects
            data = fh.read()
    except OSError:
        return None
    rss = hwm = 0
    for line in data.split(b"\n"):
        if line.startswith(b"VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith(b"VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


class ProcessTree:
    """The live descendants of one process, remembered across samples.

    Processes once seen stay tracked while alive, so a grandchild whose parent
    exited (re-parented to init) is still counted.

    Args:
        root_pid: the process at the top of the tree.
        max_processes: bound on tracked processes (a fork bomb must not grow memwarden).
        adopter_pid: a child subreaper (``PR_SET_CHILD_SUBREAPER``, this process)
            that orphans of the tree are re-parented to: its children, other than
            ``root_pid`` and those in ``foreign``, belong to the tree. This is how a
            daemon that double-forks away from the program is still counted (and
            stopped by ``--limit``).
        foreign: the adopter's children that are not part of the tree.
    """

    def __init__(
        self,
        root_pid: int,
        *,
        max_processes: int = 4096,
        adopter_pid: int | None = None,
        foreign: frozenset[int] = frozenset(),
    ) -> None:
        self.root_pid = root_pid
        self.max_processes = max_processes
        self._pids: dict[int, None] = {root_pid: None}
        self._proc_children = Path(f"/proc/{root_pid}/task/{root_pid}/children").exists()
        self._adopter = adopter_pid
        self._foreign = set(foreign)
        #: Orphans re-parented to the adopter: it must reap them when they exit.
        self.adopted: set[int] = set()

    @property
    def pids(self) -> list[int]:
        """The processes tracked now (root first)."""
        return list(self._pids)

    def _children_of(self, pid: int) -> list[int]:
        out: list[int] = []
        try:
            tids = [t.name for t in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:
            return out
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:  # noqa: PTH123
                    out.extend(int(c) for c in fh.read().split())
            except (OSError, ValueError):
                continue
        return out

    def refresh(self) -> None:
        """Discover new descendants of every tracked process."""
        if self._proc_children:
            if self._adopter is not None:
                for child in self._children_of(self._adopter):
                    if child in self._foreign or child == self.root_pid:
                        continue
                    self.adopted.add(child)
                    if len(self._pids) < self.max_processes:
                        self._pids.setdefault(child, None)
            frontier = list(self._pids)
            while frontier and len(self._pids) < self.max_processes:
                pid = frontier.pop()
                for child in self._children_of(pid):
                    if child not in self._pids and len(self._pids) < self.max_processes:
                        self._pids[child] = None
                        frontier.append(child)
            return
        import psutil  # lazy: only where /proc children files are missing

        for pid in list(self._pids):
            try:
                kids = psutil.Process(pid).children(recursive=True)
            except psutil.Error:
                continue
            for kid in kids:
                if len(self._pids) >= self.max_processes:
                    return
                self._pids.setdefault(kid.pid, None)

    def sample(self) -> tuple[int, int, int]:
        """Return ``(rss_sum_bytes, live_processes, max_hwm_bytes)`` and forget exited processes.

        ``max_hwm_bytes`` is the largest single-process high-water mark (``VmHWM``).
        """
        self.refresh()
        total = count = hwm = 0
        for pid in list(self._pids):
            got = _read_rss_hwm(pid)
            if got is None:
                if pid != self.root_pid:
                    del self._pids[pid]
                    self.adopted.discard(pid)
                continue
            rss, pid_hwm = got
            hwm = max(hwm, pid_hwm)
            if rss == 0 and pid != self.root_pid:
                if pid in self.adopted:
                    self.reap(pid)
                continue  # a zombie: counted nowhere, reaped by its parent soon
            total += rss
            count += rss > 0
        return total, count, hwm

    def reap(self, pid: int, *, block: bool = False) -> None:
        """Collect an adopted orphan's exit status so it does not stay a zombie."""
        with contextlib.suppress(ChildProcessError, OSError):
            got, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            if got == pid:
                self._pids.pop(pid, None)
                self.adopted.discard(pid)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the root's process group and to tracked processes outside it.

        Each process gets the signal once: a Python program hit twice by SIGINT
        would see a second KeyboardInterrupt inside its handler for the first.
        """
        with contextlib.suppress(OSError):
            os.killpg(self.root_pid, sig)
        for pid in self.pids:
            try:
                if os.getpgid(pid) == self.root_pid:
                    continue
                os.kill(pid, sig)
            except OSError:
                continue


# ---------------------------------------------------------------------------
# building the command


def is_python_executable(arg: str) -> bool:
    """True when ``arg`` names a Python interpreter (``python``, ``python3.11``, a venv's)."""
    name = Path(arg).name
    if name.startswith("python"):
        rest = name[len("python") :]
        return rest == "" or all(c.isdigit() or c == "." for c in rest)
    return False


# Interpreter options that take a separate value (``-X dev``, ``-W error``).
_PY_OPTS_WITH_VALUE = {"-X", "-W", "-Q"}


def bootstrap_command(argv: Sequence[str]) -> list[str]:
    """Rewrite ``python [opts] script.py|-m mod args`` to run under the memwarden bootstrap.

    Raises:
        ValueError: ``argv`` does not run a script or module (``-c`` code, a REPL).
    """
    if not argv or not is_python_executable(argv[0]):
        raise ValueError(f"{argv[0] if argv else ''!r} is not a Python interpreter")
    opts: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            if i + 1 >= len(argv):
                raise ValueError("python -m needs a module name")
            return [argv[0], *opts, "-m", _BOOTSTRAP, "-m", *argv[i + 1 :]]
        if arg in ("-c", "-"):
            raise ValueError(f"python {arg} cannot run under the heap bootstrap; use a script")
        if arg in _PY_OPTS_WITH_VALUE:
            opts.extend(argv[i : i + 2])
            i += 2
            continue
        if arg.startswith("-"):
            opts.append(arg)
            i += 1
            continue
        return [argv[0], *opts, "-m", _BOOTSTRAP, *argv[i:]]
    raise ValueError("no script or module to run")


def bootstrap_env(
    base: Mapping[str, str],
    *,
    trace_path: str | os.PathLike[str],
    t0_monotonic: float,
    t0_wall: float,
    heap: bool,
    spans: bool,
    top: int,
    interval_s: float,
    frames: int = 4,
) -> dict[str, str]:
    """The environment that tells the child bootstrap where and what to record."""
    import memwarden

    env = dict(base)
    src = str(Path(memwarden.__file__).resolve().parent.parent)
    old = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = src + (os.pathsep + old if old else "")
    # The bootstrap puts the user's own PYTHONPATH back before the target runs, so
    # the target's children never see memwarden's site-packages.
    # (An environment value cannot hold NUL, so "unset" is its own variable.)
    if "PYTHONPATH" in base:
        env["MEMWARDEN_TRACE_PYTHONPATH"] = old
    else:
        env["MEMWARDEN_TRACE_PYTHONPATH_UNSET"] = "1"
    env.update(
        {
            "MEMWARDEN_TRACE_FILE": str(Path(trace_path).resolve()),
            "MEMWARDEN_TRACE_T0": repr(t0_monotonic),
            "MEMWARDEN_TRACE_T0_WALL": repr(t0_wall),
            "MEMWARDEN_TRACE_HEAP": "1" if heap else "0",
            "MEMWARDEN_TRACE_SPANS": "1" if spans else "0",
            "MEMWARDEN_TRACE_TOP": str(top),
            "MEMWARDEN_TRACE_INTERVAL": repr(interval_s),
            "MEMWARDEN_TRACE_FRAMES": str(frames),
        }
    )
    return env


def shim_dir() -> Path:
    """The directory holding only the ``sitecustomize`` start-up shim (see ``_bootstrap``)."""
    return Path(__file__).resolve().parent / "_shim"


def profile_env(
    base: Mapping[str, str],
    *,
    trace_path: str | os.PathLike[str],
    t0_monotonic: float,
    t0_wall: float,
    interval_bytes: int,
    frames: int,
) -> dict[str, str]:
    """The environment that makes every Python process of the run profile itself.

    Only the shim's directory goes on ``PYTHONPATH`` (first); the shim loads
    memwarden from ``MEMWARDEN_RUN_PKG`` when the interpreter matches
    ``MEMWARDEN_RUN_CACHE_TAG``. The variables stay in the environment so the
    program's Python children profile too.
    """
    import memwarden

    env = dict(base)
    old = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(shim_dir()) + (os.pathsep + old if old else "")
    env.update(
        {
            "MEMWARDEN_RUN_PKG": str(Path(memwarden.__file__).resolve().parent.parent),
            "MEMWARDEN_RUN_CACHE_TAG": str(sys.implementation.cache_tag),
            "MEMWARDEN_TRACE_FILE": str(Path(trace_path).resolve()),
            "MEMWARDEN_TRACE_T0": repr(t0_monotonic),
            "MEMWARDEN_TRACE_T0_WALL": repr(t0_wall),
            "MEMWARDEN_TRACE_PROFILE": "1",
            "MEMWARDEN_TRACE_PROFILE_INTERVAL": str(int(interval_bytes)),
            "MEMWARDEN_TRACE_PROFILE_FRAMES": str(int(frames)),
        }
    )
    return env


# ---------------------------------------------------------------------------
# running


@dataclass(frozen=True)
class RunResult:
    """What happened to the profiled program.

    Attributes:
        exit_code: what ``memwarden run`` should exit with: the child's code,
            ``128 + signal`` when a signal ended it, :data:`EXIT_LIMIT` when
            memwarden stopped it for exceeding the limit.
        reason: ``"exited"``, ``"signaled"``, ``"limit"`` or ``"interrupted"``.
        peak_rss_bytes: the highest RSS of the tree (sampled) or of one process (kernel).
        max_rss_bytes: the kernel's ``ru_maxrss`` for the child (as ``/usr/bin/time -v``).
    """

    exit_code: int
    reason: str
    trace_path: Path
    peak_rss_bytes: int
    max_rss_bytes: int
    duration_s: float
    samples: int
    signal: int | None = None
    #: Why the trace stopped being written (a full disk), or None when it is complete.
    trace_error: str | None = None


class _SignalForwarder:
    """Forward SIGINT/SIGTERM/SIGHUP/SIGQUIT received by memwarden to the child's group."""

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self._on_signal = on_signal
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for sig in _FORWARDED:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._on_signal(signum)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _foreground_fd() -> int | None:
    """The terminal fd memwarden owns as foreground process group, or None."""
    for fd in (0, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return fd
        except OSError:
            continue
    return None


def _give_terminal(fd: int, pgid: int) -> None:
    # tcsetpgrp from a background group raises SIGTTOU unless it is ignored.
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgid)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, old)


def _preexec(tty_fd: int | None) -> Callable[[], None]:
    def setup() -> None:
        os.setpgid(0, 0)
        if tty_fd is not None:
            _give_terminal(tty_fd, os.getpgrp())

    return setup


def _exit_code(status: int) -> tuple[int, int | None]:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    return os.waitstatus_to_exitcode(status), None


class _ExitWatcher:
    """Sleep until the next sample is due or the child exits, whichever comes first."""

    def __init__(self, pid: int) -> None:
        self._poll: select.poll | None = None
        self._fd = -1
        try:
            self._fd = os.pidfd_open(pid)
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)
        except (AttributeError, OSError):  # no pidfd (old kernel or not Linux)
            self._poll = None

    def wait(self, timeout_s: float) -> None:
        if timeout_s <= 0:
            return
        if self._poll is not None:
            with contextlib.suppress(InterruptedError):
                self._poll.poll(max(1, int(timeout_s * 1000)))
        else:
            time.sleep(timeout_s)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


def _prctl_subreaper(on: bool) -> bool | None:
    """Make this process a child subreaper (or stop); return the previous state, None if unable."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        previous = ctypes.c_int(0)
        if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0) != 0:
            return None
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return bool(previous.value)


def _own_children() -> frozenset[int]:
    me = os.getpid()
    out: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{me}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                out.update(int(c) for c in (task / "children").read_bytes().split())
    return frozenset(out)


def run_program(
    argv: Sequence[str],
    *,
    trace_path: str | os.PathLike[str],
    interval_s: float = 0.1,
    limit_bytes: int | None = None,
    grace_s: float = 5.0,
    env: Mapping[str, str] | None = None,
    header: Mapping[str, Any] | None = None,
    on_sample: Callable[[float, int, int], None] | None = None,
    on_limit: Callable[[str], None] | None = None,
    t0: tuple[float, float] | None = None,
    foreground: bool = True,
    on_start: Callable[[int], None] | None = None,
    exclusive_trace: bool = False,
    on_warning: Callable[[str], None] | None = None,
    adopt_orphans: bool = False,
) -> RunResult:
    """Run ``argv`` as a child, sample its process tree every ``interval_s`` and write a trace.

    Args:
        argv: the command; ``argv[0]`` is looked up on ``PATH``.
        trace_path: the ``memwarden.trace/1`` file to write (created or truncated).
        interval_s: seconds between samples.
        limit_bytes: stop the tree (SIGTERM, SIGKILL after ``grace_s``) when its
            RSS goes over this.
        env: the child's environment (default: memwarden's).
        header: extra header fields (``label``, ``python_heap``, ...).
        on_sample: called as ``on_sample(t_s, rss_bytes, peak_bytes)`` after each sample.
        on_limit: called with a message when the limit is hit.
        t0: ``(monotonic, wall)`` start times shared with the child bootstrap.
        foreground: hand the terminal to the child when memwarden owns it (off when
            several programs run at once).
        on_start: called with the child's pid once it runs.
        exclusive_trace: ``trace_path`` is a name memwarden chose: create it
            exclusively, never following or overwriting what is there.
        on_warning: called with a message when the trace cannot be written any more
            (a full disk); the program keeps running, supervised, and ``--limit``
            is still enforced.
        adopt_orphans: make this process a child subreaper for the run so processes
            that double-fork away from the program are re-parented here, counted and
            stopped with the tree. Its other children started before the run are
            not counted; meant for a process that runs one program (the CLI).

    Returns:
        The outcome; the trace is complete (it has its end record) unless
        ``trace_error`` says why writing stopped.

    Raises:
        TraceOutputError: the trace file cannot be created (missing directory,
            read-only, an existing name with ``exclusive_trace``, a foreign symlink).
        OSError: the command cannot be started (``FileNotFoundError`` when not
            found); a trace file created for it is removed.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s={interval_s!r}: must be positive")
    t0_mono, t0_wall = t0 if t0 is not None else (time.monotonic(), time.time())
    head: dict[str, Any] = {
        "command": list(argv),
        "interval_s": interval_s,
        "limit_bytes": limit_bytes,
        "grace_s": grace_s,
        "started_unix": t0_wall,
        "host": socket.gethostname(),
        "cwd": str(Path.cwd()),
        "memwarden_pid": os.getpid(),
        "python": sys.version.split()[0],
    }
    try:
        from memwarden import __version__

        head["memwarden_version"] = __version__
    except ImportError:  # pragma: no cover
        pass
    head.update(header or {})
    write_errors: list[str] = []

    def on_write_error(exc: OSError) -> None:
        message = (
            f"{describe_os_error(exc, trace_path)}; the trace stops here, the program "
            "keeps running and is still supervised"
        )
        write_errors.append(message)
        if on_warning is not None:
            on_warning(message)

    try:
        writer = TraceWriter(trace_path, head, exclusive=exclusive_trace, on_error=on_write_error)
    except OSError as exc:
        raise TraceOutputError(describe_os_error(exc, trace_path)) from exc
    trace_is_file = Path(trace_path).is_file()
    tty_fd = _foreground_fd() if foreground else None
    import subprocess

    foreign = _own_children() if adopt_orphans else frozenset()
    was_subreaper = _prctl_subreaper(True) if adopt_orphans else None
    try:
        # The child gets its own process group (and the terminal, when we own it)
        # so the whole tree can be signalled at once and Ctrl-C reaches it directly.
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            preexec_fn=_preexec(tty_fd),  # noqa: PLW1509 - setpgid/tcsetpgrp must run in the child
        )
    except OSError:
        writer.close()
        if was_subreaper is not None:
            _prctl_subreaper(was_subreaper)
        if trace_is_file:  # never unlink a device the user named (-o /dev/null)
            with contextlib.suppress(OSError):
                Path(trace_path).unlink()
        raise
    pid = proc.pid
    if on_start is not None:
        on_start(pid)
    tree = ProcessTree(
        pid,
        adopter_pid=os.getpid() if was_subreaper is not None else None,
        foreign=foreign,
    )
    watcher = _ExitWatcher(pid)
    peak = 0
    samples = 0
    reason = "exited"
    stop_at: float | None = None
    killed = False
    forwarded: list[int] = []

    def forward(signum: int) -> None:
        forwarded.append(signum)
        tree.signal(signum)

    status = 0
    rusage: Any = None
    reaped = False
    try:
        with _SignalForwarder(forward):
            next_at = time.monotonic()
            while True:
                wpid, status, rusage = os.wait4(pid, os.WNOHANG)
                if wpid == pid:
                    reaped = True
                    break
                now = time.monotonic()
                rss, count, hwm = tree.sample()
                if rss > 0:
                    t_rel = now - t0_mono
                    writer.sample(t_rel, rss, count)
                    samples += 1
                    peak = max(peak, rss, hwm)
                    if on_sample is not None:
                        on_sample(t_rel, rss, peak)
                if forwarded:
                    for signum in forwarded:
                        writer.event(now - t0_mono, "signal", f"forwarded signal {signum}")
                    reason = "interrupted"
                    forwarded.clear()
                if limit_bytes is not None and rss > limit_bytes and stop_at is None:
                    from memwarden._units import format_size

                    message = (
                        f"process tree RSS {format_size(rss)} exceeded --limit "
                        f"{format_size(limit_bytes)}; sent SIGTERM "
                        f"(SIGKILL in {grace_s:g} s if still running)"
                    )
                    writer.event(now - t0_mono, "limit", message)
                    log.info("%s", message)  # the CLI shows it through on_limit
                    if on_limit is not None:
                        on_limit(message)
                    reason = "limit"
                    stop_at = now + grace_s
                    tree.signal(signal.SIGTERM)
                if stop_at is not None and not killed and now >= stop_at:
                    writer.event(now - t0_mono, "limit", "grace period over; sent SIGKILL")
                    tree.signal(signal.SIGKILL)
                    killed = True
                next_at += interval_s
                delay = next_at - time.monotonic()
                if delay < -interval_s:  # fell behind (slow /proc, suspended): don't burst
                    next_at = time.monotonic()
                    delay = 0.0
                watcher.wait(delay)
    finally:
        watcher.close()
        # wait4(WNOHANG) returns a (zeroed) rusage before the child exits too, so
        # whether it was reaped is tracked on its own.
        if not reaped:  # interrupted by an exception in memwarden itself: don't orphan
            tree.signal(signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                _, status, rusage = os.wait4(pid, 0)
        if was_subreaper is not None:
            _prctl_subreaper(was_subreaper)
        proc.returncode = status  # Popen must not try to reap it again
        if tty_fd is not None:
            _give_terminal(tty_fd, os.getpgrp())
    end_t = time.monotonic() - t0_mono
    if stop_at is not None and reason == "limit":
        for_pids = [p for p in tree.pids if p != pid]
        for p in for_pids:  # the rest of the tree got the same signals; make sure it is gone
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        for p in list(tree.adopted):
            tree.reap(p, block=True)
    for p in list(tree.adopted):  # orphans that already exited: no zombies left behind
        tree.reap(p)
    code, sig = _exit_code(status)
    if reason == "exited" and sig is not None:
        reason = "signaled"
    max_rss = int(rusage.ru_maxrss) * 1024 if rusage is not None else 0
    peak = max(peak, max_rss)
    exit_code = code
    if reason == "limit":
        exit_code = EXIT_LIMIT
    writer.end(
        TraceEnd(
            t_s=round(end_t, 4),
            exit_code=code,
            reason=reason,
            signal=sig,
            peak_rss_bytes=peak,
            max_rss_bytes=max_rss,
        )
    )
    writer.close()
    return RunResult(
        exit_code=exit_code,
        reason=reason,
        trace_path=Path(trace_path),
        peak_rss_bytes=peak,
        max_rss_bytes=max_rss,
        duration_s=end_t,
        samples=samples,
        signal=sig,
        trace_error=write_errors[0] if write_errors else None,
    )
