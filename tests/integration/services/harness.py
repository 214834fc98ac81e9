"""Start real servers on a free loopback port, drive a bounded load, watch worker memory."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import memwarden

APPS_DIR = Path(__file__).resolve().parent
SRC_DIR = Path(memwarden.__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a server process: memwarden and the test apps importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(APPS_DIR), str(SRC_DIR), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.update(extra)
    return env


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Wait until something accepts on ``port`` (or the server died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@dataclass
class LoadResult:
    """What a bounded load saw."""

    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)


def drive(
    port: int, requests: int, *, clients: int = 4, timeout_s: float = 120.0, retries: int = 20
) -> LoadResult:
    """Send ``requests`` GETs from ``clients`` threads, a new connection each, bounded in time.

    A connection refused or reset is retried up to ``retries`` times (clients of a real
    server do the same); with ``retries=1`` each such failure is counted in ``errors``.
    """
    result = LoadResult()
    lock = threading.Lock()
    deadline = time.monotonic() + timeout_s
    per = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client(n: int) -> None:
        for i in range(n):
            for attempt in range(retries):
                if time.monotonic() > deadline:
                    with lock:
                        result.errors.append("deadline")
                    return
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                try:
                    conn.request("GET", f"/leak/{i}")
                    resp = conn.getresponse()
                    body = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    if attempt == retries - 1:
                        with lock:
                            result.errors.append(repr(exc))
                    time.sleep(0.02)
                    continue
                finally:
                    conn.close()
                with lock:
                    result.statuses[resp.status] = result.statuses.get(resp.status, 0) + 1
                    with contextlib.suppress(ValueError):
                        result.pids.add(int(body))
                break

    threads = [threading.Thread(target=client, args=(n,)) for n in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 5)
    return result


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (d / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def rss_of(pid: int) -> int:
    """RSS of ``pid`` in bytes (0 when it is gone)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class WorkerWatch:
    """Samples the RSS of a server's worker processes in a thread; keeps the maximum."""

    def __init__(self, master_pid: int, *, descend: int = 1) -> None:
        self.master_pid = master_pid
        self.descend = descend
        self.max_rss_bytes = 0
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _workers(self) -> list[int]:
        level = [self.master_pid]
        for _ in range(self.descend):
            level = [c for p in level for c in children(p)]
        return level

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for pid in self._workers():
                self.seen.add(pid)
                self.max_rss_bytes = max(self.max_rss_bytes, rss_of(pid))

    def __enter__(self) -> WorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@contextlib.contextmanager
def server(
    cmd: list[str], port: int, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server command, wait until it listens, stop it (SIGTERM, then SIGKILL) after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=APPS_DIR)
        try:
            wait_listening(port, proc)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


PY = sys.executable
