"""The in-process agent: look at a running program's memory from outside, as ``--inspect`` does.

Opt-in: ``memwarden.agent.start()``, or ``MEMWARDEN_AGENT=1`` in the environment of a
process that imports memwarden (``memwarden run --agent`` sets it). The agent listens on
a Unix-domain socket ``agent-<pid>.sock`` in the user's private runtime directory
(``$XDG_RUNTIME_DIR/memwarden``, else ``/tmp/memwarden-<uid>``; the directory 0700, the
socket 0600) and serves only peers of the same uid (checked with ``SO_PEERCRED``).

The protocol is JSON lines, version :data:`PROTOCOL` (``docs/live.md``): a request
``{"v": 1, "id": 7, "cmd": "profile.top", "args": {"n": 10}}`` gets one response
``{"v": 1, "id": 7, "ok": true, "result": ...}`` or ``{"v": 1, "id": 7, "ok": false,
"error": {"code": "...", "message": "..."}}``. Nothing is ever unpickled or evaluated.

Bounded and quiet: one thread blocked in ``accept()`` while idle (no polling, no
wake-ups), at most ``max_connections`` clients at once (more are told ``busy``), one
request at a time per connection, requests of at most 64 KiB, idle connections closed
after ``timeout_s``. A failing command is an error response; the host is never affected.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memwarden._files import runtime_dir, safe_directory
from memwarden._registry import reset_after_fork
from memwarden.exceptions import ConfigurationError, MemwardenError, UnsafePathError

__all__ = [
    "COMMANDS",
    "PROTOCOL",
    "Agent",
    "AgentError",
    "Client",
    "agent",
    "socket_path",
    "start",
    "stop",
]

log = logging.getLogger("memwarden.agent")

PROTOCOL = 1
MAX_REQUEST_BYTES = 64 * 1024
ENV = "MEMWARDEN_AGENT"
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class AgentError(MemwardenError):
    """An agent answered with an error, or could not be reached.

    Attributes:
        code: the protocol's error code (``not_running``, ``forbidden``, ``busy``,
            ``bad_request``, ``too_large``, ``unknown_command``, ``failed``, ``timeout``).
    """

    def __init__(self, message: str, *, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_agent_error, (str(self), self.code))


def _rebuild_agent_error(message: str, code: str) -> AgentError:
    return AgentError(message, code=code)


def socket_path(pid: int | None = None) -> Path:
    """Where the agent of process ``pid`` (default: this one) listens."""
    return runtime_dir() / f"agent-{os.getpid() if pid is None else pid}.sock"


# ---------------------------------------------------------------------------
# commands: name -> handler(args) -> JSON-able result


def _cmd_hello(args: dict[str, Any]) -> dict[str, Any]:
    from memwarden import __version__

    return {
        "protocol": PROTOCOL,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "argv": sys.argv[:8],
        "memwarden": __version__,
        "commands": sorted(COMMANDS),
        "agent_thread_id": _agent._thread.native_id
        if _agent is not None and _agent._thread is not None
        else None,
    }


def _level() -> dict[str, Any]:
    from memwarden.pressure import governor

    gov = governor()
    return {
        "level": gov.current_level.name,
        "budget_bytes": gov.budget_bytes,
        "thresholds_bytes": dict(gov.thresholds_bytes()),
        "watching": gov.watching,
    }


def _cmd_snapshot(args: dict[str, Any]) -> dict[str, Any]:
    import gc
    import tracemalloc

    from memwarden import probes

    limit = probes.effective_limit()
    out: dict[str, Any] = {
        "pid": os.getpid(),
        "rss_bytes": probes.rss(),
        "peak_rss_bytes": probes.peak_rss(),
        "limit_bytes": limit.limit_bytes,
        "limit_source": limit.source,
        "gc_objects": len(gc.get_objects()) if args.get("objects") else None,
        "gc_counts": list(gc.get_count()),
        "threads": threading.active_count(),
        "tracemalloc_bytes": tracemalloc.get_traced_memory()[0]
        if tracemalloc.is_tracing()
        else None,
        **_level(),
    }
    out["profiling"] = bool(_need_profiler().is_running())
    return out


def _need_profiler() -> Any:
    from memwarden import profiler

    return profiler


def _cmd_profile_start(args: dict[str, Any]) -> dict[str, Any]:
    prof = _need_profiler()
    if not prof.is_running():
        kwargs = {}
        if "interval_bytes" in args:
            kwargs["interval_bytes"] = int(args["interval_bytes"])
        prof.start(**kwargs)
    return {"running": True, "backend": prof.backend()}


def _cmd_profile_stop(args: dict[str, Any]) -> dict[str, Any]:
    prof = _need_profiler()
    if prof.is_running():
        prof.stop()
    return {"running": False}


def _profile(args: dict[str, Any]) -> Any:
    prof = _need_profiler()
    if not prof.is_running():
        raise AgentError(
            "the profiler is not running (start it: memwarden attach PID profile-start)",
            code="failed",
        )
    kind = args.get("kind", "live")
    if kind == "peak":
        return prof.peak()
    if kind not in ("live", "allocations"):
        raise AgentError(f"kind={kind!r}: expected live, allocations or peak", code="bad_request")
    return prof.snapshot(kind)


def _cmd_profile_top(args: dict[str, Any]) -> dict[str, Any]:
    by = args.get("by", "line")
    n = max(1, min(int(args.get("n", 10)), 1000))
    profile = _profile(args)
    entries = profile.top(by=by, n=n)
    return {
        "kind": args.get("kind", "live"),
        "by": by,
        "total_bytes": profile.total_bytes,
        "samples": profile.samples,
        "top": [
            {
                "key": e.key,
                "size_bytes": e.size_bytes,
                "samples": getattr(e, "samples", None),
                "frames": [str(f) for f in e.frames[:16]],
            }
            for e in entries
        ],
    }


def _cmd_profile_stacks(args: dict[str, Any]) -> dict[str, Any]:
    n = max(1, min(int(args.get("n", 200)), 10_000))
    lines = list(_profile(args).collapsed())
    lines.sort(key=lambda line: int(line.rsplit(" ", 1)[1]), reverse=True)
    return {"collapsed": lines[:n], "total_stacks": len(lines)}


def _cmd_heap_dump(args: dict[str, Any]) -> dict[str, Any]:
    path = args.get("path")
    if not isinstance(path, str) or not path:
        raise AgentError("heap.dump needs a 'path' (a new file to create)", code="bad_request")
    from memwarden import heap

    t0 = time.perf_counter()
    result = heap.dump(path)
    return {
        "path": str(Path(path).resolve()),
        "bytes": Path(path).stat().st_size,
        "seconds": round(time.perf_counter() - t0, 3),
        "summary": str(result) if result is not None else None,
    }


def _cmd_governor_explain(args: dict[str, Any]) -> dict[str, Any]:
    from memwarden.pressure import governor

    return {"explain": governor().explain(), **_level()}


def _cmd_governor_relieve(args: dict[str, Any]) -> dict[str, Any]:
    from memwarden.pressure import governor

    run = governor().relieve(reason="memwarden attach")
    return {"summary": run.summary(), "freed_bytes": run.freed_bytes}


def _cmd_monitor_history(args: dict[str, Any]) -> dict[str, Any]:
    from memwarden.monitoring import default_monitor_if_created

    n = max(1, min(int(args.get("n", 100)), 100_000))
    mon = default_monitor_if_created()
    if mon is None:
        return {"samples": [], "note": "no monitor runs in this process"}
    samples = mon.history()[-n:]
    return {"samples": [s._asdict() for s in samples]}


COMMANDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "hello": _cmd_hello,
    "snapshot": _cmd_snapshot,
    "profile.start": _cmd_profile_start,
    "profile.stop": _cmd_profile_stop,
    "profile.top": _cmd_profile_top,
    "profile.stacks": _cmd_profile_stacks,
    "heap.dump": _cmd_heap_dump,
    "governor.explain": _cmd_governor_explain,
    "governor.relieve": _cmd_governor_relieve,
    "monitor.history": _cmd_monitor_history,
}


def _error(req_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"v": PROTOCOL, "id": req_id, "ok": False, "error": {"code": code, "message": message}}


def handle(line: bytes) -> dict[str, Any]:
    """Answer one request line (the whole protocol, without the socket)."""
    try:
        req = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(None, "bad_request", f"not a JSON line: {exc}")
    if not isinstance(req, dict):
        return _error(None, "bad_request", "a request is a JSON object")
    req_id = req.get("id")
    if req.get("v", PROTOCOL) != PROTOCOL:
        return _error(
            req_id, "bad_request", f"protocol version {req.get('v')!r}: we speak {PROTOCOL}"
        )
    cmd, args = req.get("cmd"), req.get("args", {})
    if not isinstance(args, dict):
        return _error(req_id, "bad_request", "'args' must be an object")
    handler = COMMANDS.get(cmd) if isinstance(cmd, str) else None
    if handler is None:
        return _error(req_id, "unknown_command", f"unknown command {cmd!r}; see 'hello'")
    try:
        result = handler(args)
    except AgentError as exc:
        return _error(req_id, exc.code, str(exc))
    except Exception as exc:  # a failing command must never take the agent (or host) down
        log.warning("agent command %s failed", cmd, exc_info=True)
        return _error(req_id, "failed", f"{type(exc).__name__}: {exc}")
    return {"v": PROTOCOL, "id": req_id, "ok": True, "result": result}


# ---------------------------------------------------------------------------
# the server


class Agent:
    """A running agent (see the module docstring); ``stop()`` closes it.

    Args:
        path: the socket path (default :func:`socket_path`).
        max_connections: clients served at once; more are answered ``busy``.
        timeout_s: an idle or slow connection is closed after this long.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_connections: int = 8,
        timeout_s: float = 30.0,
    ) -> None:
        if not (isinstance(max_connections, int) and 1 <= max_connections <= 256):
            raise ConfigurationError(
                f"max_connections={max_connections!r}: expected 1..256", value=max_connections
            )
        self.path = Path(path) if path is not None else socket_path()
        self.max_connections = max_connections
        self.timeout_s = float(timeout_s)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.refused = 0
        self.served = 0

    @property
    def running(self) -> bool:
        """Whether the agent accepts connections."""
        return self._sock is not None

    def start(self) -> Agent:
        """Bind the socket (0600 in a private directory) and start the accept thread."""
        if self._sock is not None:
            return self
        if self.path.parent == runtime_dir():
            try:
                safe_directory(self.path.parent, purpose="agent directory", create=True)
            except UnsafePathError as exc:
                raise ConfigurationError(str(exc), value=str(self.path), source="agent") from exc
        with contextlib.suppress(FileNotFoundError):
            st = self.path.lstat()
            if not stat.S_ISSOCK(st.st_mode):
                raise ConfigurationError(
                    f"agent socket path {str(self.path)!r} exists and is not a socket",
                    value=str(self.path),
                    source="agent",
                )
            self.path.unlink()  # a socket left by a dead process of the same pid
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600, never briefly wider
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._accept_loop, name="memwarden-agent", daemon=True
        )
        self._thread.start()
        log.info("memwarden agent listening at %s", self.path)
        return self

    def stop(self) -> None:
        """Stop accepting, remove the socket file (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if os.getpid() == self._pid:
            with contextlib.suppress(OSError):
                self.path.unlink()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        sock.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _after_fork(self) -> None:
        # The child inherits the listening socket but not the thread: it must neither
        # serve nor remove the parent's socket file.
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._thread = None

    def _accept_loop(self) -> None:
        while True:
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()  # blocks: no wake-ups while idle
            except OSError:
                return  # stop() shut the socket down
            try:
                self._admit(conn)
            except Exception:  # never let one client end the agent
                log.warning("agent: could not serve a connection", exc_info=True)
                conn.close()

    def _admit(self, conn: socket.socket) -> None:
        pid, uid, _gid = _CRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
        )
        if uid != os.geteuid():
            self.refused += 1
            log.warning("agent: refused a client of uid %d (pid %d)", uid, pid)
            self._send_close(conn, _error(None, "forbidden", "only the same user may attach"))
            return
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self._send_close(conn, _error(None, "busy", f"{self.max_connections} clients already"))
            return
        threading.Thread(
            target=self._serve, args=(conn,), name="memwarden-agent-client", daemon=True
        ).start()

    def _send_close(self, conn: socket.socket, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(1.0)
            conn.sendall(json.dumps(message).encode() + b"\n")
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self.timeout_s)
            buf = b""
            while True:
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self.served += 1
                        conn.sendall(json.dumps(handle(line), default=str).encode() + b"\n")
                if len(buf) > MAX_REQUEST_BYTES:
                    # Framing is lost on an oversized line: answer, then hang up.
                    conn.sendall(
                        json.dumps(
                            _error(
                                None, "too_large", f"requests are at most {MAX_REQUEST_BYTES} bytes"
                            )
                        ).encode()
                        + b"\n"
                    )
                    return
        except OSError:
            return
        finally:
            conn.close()
            self._slots.release()


_agent: Agent | None = None
_lock = threading.Lock()


def start(path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Agent:
    """Start this process's agent (idempotent) and return it."""
    global _agent
    with _lock:
        if _agent is None or not _agent.running:
            _agent = Agent(path, **kwargs).start()
        return _agent


def agent() -> Agent | None:
    """This process's agent, if one runs."""
    return _agent if _agent is not None and _agent.running else None


def stop() -> None:
    """Stop this process's agent, if one runs."""
    global _agent
    with _lock:
        a, _agent = _agent, None
    if a is not None:
        a.stop()


def _after_fork_in_child() -> None:
    global _agent, _lock
    _lock = threading.Lock()
    a, _agent = _agent, None
    if a is not None:
        a._after_fork()
        if os.environ.get(ENV):
            with contextlib.suppress(Exception):
                start()  # a forked worker gets its own socket


reset_after_fork(_after_fork_in_child)


def _at_exit() -> None:
    with contextlib.suppress(Exception):
        stop()


import atexit  # noqa: E402 - registered after the module's names exist

atexit.register(_at_exit)


def start_from_environment() -> Agent | None:
    """Start the agent when ``MEMWARDEN_AGENT`` is set (``1``, or a socket path)."""
    value = os.environ.get(ENV, "")
    if not value or value == "0":
        return None
    try:
        return start(None if value == "1" else value)
    except Exception:
        log.warning("memwarden agent could not start (%s=%r)", ENV, value, exc_info=True)
        return None


# ---------------------------------------------------------------------------
# the client


class Client:
    """Talk to the agent of process ``pid`` (or at ``path``).

    Raises:
        AgentError: code ``not_running`` when no agent listens there.
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path) if path is not None else socket_path(pid)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        try:
            self._sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self._sock.close()
            raise AgentError(
                f"no memwarden agent listens at {self.path} ({exc.strerror})", code="not_running"
            ) from None
        self._buf = b""
        self._next_id = 0

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command and return its result.

        Raises:
            AgentError: the agent answered with an error, or the connection broke.
        """
        self._next_id += 1
        line = json.dumps({"v": PROTOCOL, "id": self._next_id, "cmd": cmd, "args": args})
        try:
            self._sock.sendall(line.encode() + b"\n")
            while b"\n" not in self._buf:
                chunk = self._sock.recv(1 << 20)
                if not chunk:
                    raise AgentError("the agent closed the connection", code="failed")
                self._buf += chunk
        except TimeoutError:
            raise AgentError(f"no answer to {cmd!r} in time", code="timeout") from None
        except OSError as exc:
            # A refused client (another uid, too many clients) is told why before the
            # agent hangs up: surface that reason rather than the broken pipe.
            with contextlib.suppress(OSError):
                self._buf += self._sock.recv(65536)
            if b"\n" not in self._buf:
                raise AgentError(f"connection to the agent failed: {exc}", code="failed") from None
        reply, self._buf = self._buf.split(b"\n", 1)
        resp = json.loads(reply)
        if not resp.get("ok"):
            err = resp.get("error") or {}
            raise AgentError(str(err.get("message", "error")), code=str(err.get("code", "failed")))
        result: dict[str, Any] = resp["result"]
        return result

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
