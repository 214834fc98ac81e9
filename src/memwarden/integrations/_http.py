"""A small metrics HTTP server whose cost is bounded whatever its clients do.

prometheus_client's ``start_http_server`` starts one thread per connection and
never times an idle one out: a few hundred half-open connections exhaust the
host application's threads. This server runs in one thread with a selector:

- connections are bounded (``max_connections``); when full, the connection idle
  the longest is dropped to make room, so a flood of half-open sockets cannot keep
  a scraper out;
- each connection has a deadline (``timeout_s``) for sending its request and
  reading the answer;
- requests are bounded in size (``max_request_bytes``);
- the body is prometheus_client's own exposition (``choose_encoder``: text or
  OpenMetrics, as the scraper's ``Accept`` header asks) of the registry.

Only ``GET``/``HEAD`` of ``/metrics`` (and ``/``) are served; one request per
connection (``Connection: close``), as Prometheus scrapes.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["MetricsServer"]

log = logging.getLogger("memwarden.integrations.http")


@dataclass
class _Conn:
    sock: socket.socket
    deadline: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: memoryview | None = None


class MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` from one daemon thread.

    Args:
        registry: what to expose.
        host: address to bind.
        port: TCP port; 0 picks a free one (see ``server_address``).
        max_connections: connections held at once (the oldest is dropped beyond it).
        timeout_s: seconds a connection may take to send its request and read the answer.
        max_request_bytes: a longer request head is answered 431 and closed.

    Raises:
        OSError: the address cannot be bound.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        *,
        max_connections: int = 64,
        timeout_s: float = 10.0,
        max_request_bytes: int = 8192,
    ) -> None:
        self.registry = registry
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self.max_request_bytes = max_request_bytes
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=128)
        self._listener.setblocking(False)
        self.server_address: tuple[Any, ...] = self._listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._conns: dict[int, _Conn] = {}
        self._stopping = False
        self.dropped = 0
        self.thread = threading.Thread(target=self._serve, name="memwarden-metrics", daemon=True)
        self.thread.start()

    # -- the loop ---------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._selector.select(timeout=0.5):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    else:
                        self._service(key.data, mask)
                self._expire(time.monotonic())
        except Exception:  # never take the host down; log and stop serving
            log.exception("metrics server stopped after an unexpected error")
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again on the next event
                log.warning("metrics server cannot accept a connection: %s", exc)
                return
            if len(self._conns) >= self.max_connections:
                # Make room by dropping the connection closest to its deadline (the oldest):
                # half-open sockets must not lock a scraper out.
                oldest = min(self._conns.values(), key=lambda c: c.deadline)
                self._close(oldest)
                self.dropped += 1
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic() + self.timeout_s)
            self._conns[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _service(self, conn: _Conn, mask: int) -> None:
        try:
            if conn.outbox is None and mask & selectors.EVENT_READ:
                data = conn.sock.recv(4096)
                if not data:
                    self._close(conn)
                    return
                conn.inbox += data
                if b"\r\n\r\n" in conn.inbox or b"\n\n" in conn.inbox:
                    self._respond(conn, self._answer(bytes(conn.inbox)))
                elif len(conn.inbox) > self.max_request_bytes:
                    self._respond(conn, _status(431, "Request Header Fields Too Large"))
            elif conn.outbox is not None and mask & selectors.EVENT_WRITE:
                sent = conn.sock.send(conn.outbox)
                conn.outbox = conn.outbox[sent:]
                if not conn.outbox:
                    self._close(conn)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)

    def _respond(self, conn: _Conn, payload: bytes) -> None:
        conn.outbox = memoryview(payload)
        conn.inbox.clear()
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)

    def _answer(self, head: bytes) -> bytes:
        lines = head.split(b"\n")
        parts = lines[0].strip().split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _status(400, "Bad Request")
        method, target = parts[0], parts[1]
        if method not in (b"GET", b"HEAD"):
            return _status(405, "Method Not Allowed", extra=b"Allow: GET, HEAD\r\n")
        path = target.split(b"?", 1)[0]
        if path not in (b"/metrics", b"/"):
            return _status(404, "Not Found")
        accept = ""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"accept":
                accept = value.strip().decode("latin-1")
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        try:
            body = encoder(self.registry)
        except Exception:  # a failing collector is a 500, not a dead server
            log.exception("collecting metrics failed")
            return _status(500, "Internal Server Error")
        header = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        return header if method == b"HEAD" else header + body

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self._conns.pop(fd, None)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()

    # -- the socketserver-like interface Exporter uses ----------------------------------------

    @property
    def connections(self) -> int:
        """Connections open now (bounded by ``max_connections``)."""
        return len(self._conns)

    def shutdown(self) -> None:
        """Stop the loop and wait for the thread (idempotent)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=5)

    def server_close(self) -> None:
        """Release the port and the selector."""
        for sock in (self._listener, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(OSError):
            self._selector.close()


def _status(code: int, reason: str, *, extra: bytes = b"") -> bytes:
    body = f"{code} {reason}\n".encode("ascii")
    return (
        (
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        ).encode("ascii")
        + extra
        + b"\r\n"
        + body
    )
