"""The metrics server under hostile clients: half-open floods, idle sockets, bad requests."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client", reason="needs the 'prometheus' extra")

from prometheus_client import CollectorRegistry, generate_latest

import memwarden.integrations.prometheus as prom
from memwarden.config import MemoryConfig
from memwarden.exceptions import ConfigurationError
from memwarden.integrations.prometheus import expose
from memwarden.monitoring import MemoryMonitor
from tests.support.monitoring import FakeProbe


@pytest.fixture
def mon() -> Iterator[MemoryMonitor]:
    m = MemoryMonitor(MemoryConfig(max_memory_bytes=2**30), probe=FakeProbe(values=[100]))
    m.sample_now()
    yield m
    m.close()


def _get(url: str, accept: str | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read()


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_half_open_flood_costs_no_threads_and_metrics_still_answer(mon: MemoryMonitor) -> None:
    """300 half-open connections add no thread; the host starts threads; /metrics answers."""
    with expose(0, monitor=mon) as exporter, contextlib.ExitStack() as stack:
        before = threading.active_count()
        socks = []
        for i in range(300):
            s = stack.enter_context(socket.create_connection(("127.0.0.1", exporter.port)))
            if i % 2:
                s.sendall(b"GET /metr")  # a request that never finishes
            socks.append(s)
        time.sleep(0.3)  # let the server accept them all
        assert threading.active_count() <= before + 1
        started = [threading.Thread(target=time.sleep, args=(0.01,)) for _ in range(50)]
        for t in started:
            t.start()
        for t in started:
            t.join()
        status, _, body = _get(exporter.url)
        assert status == 200
        assert b"memwarden_rss_bytes" in body
        assert exporter._server.connections <= exporter._server.max_connections


def test_idle_connections_are_closed_after_the_timeout(mon: MemoryMonitor) -> None:
    """A client that sends nothing is disconnected after timeout_s."""
    with (
        expose(0, monitor=mon, timeout_s=0.3) as exporter,
        socket.create_connection(("127.0.0.1", exporter.port), timeout=5) as s,
    ):
        started = time.monotonic()
        assert s.recv(1) == b""  # closed by the server
        assert time.monotonic() - started < 4


def test_bad_requests_get_http_errors(mon: MemoryMonitor) -> None:
    """Wrong method, unknown path, an oversized head: 405, 404, 431; the server keeps serving."""
    with expose(0, monitor=mon) as exporter:
        assert _raw(exporter.port, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
        assert _raw(exporter.port, b"GET /etc/passwd HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
        big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9_000  # over the 8 KiB bound
        assert _raw(exporter.port, big).startswith(b"HTTP/1.1 431")
        assert _raw(exporter.port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _get(exporter.url)[0] == 200


def test_exposition_is_prometheus_clients_own(mon: MemoryMonitor) -> None:
    """The body equals generate_latest of the registry; OpenMetrics when the scraper asks."""
    with expose(0, monitor=mon) as exporter:
        _, ctype, body = _get(exporter.url)
        assert ctype.startswith("text/plain; version=0.0.4")
        names = {line.split(b" ")[2] for line in body.splitlines() if line.startswith(b"# TYPE")}
        expected = generate_latest(exporter.registry)
        assert names == {
            line.split(b" ")[2] for line in expected.splitlines() if line.startswith(b"# TYPE")
        }
        _, ctype, body = _get(exporter.url, accept="application/openmetrics-text; version=1.0.0")
        assert ctype.startswith("application/openmetrics-text")
        assert body.rstrip().endswith(b"# EOF")


def test_failed_expose_leaves_no_collector_registered(mon: MemoryMonitor) -> None:
    """expose() on a busy port raises and leaves the caller's registry as it was."""
    reg = CollectorRegistry()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        for _ in range(2):
            with pytest.raises(ConfigurationError):
                expose(busy, monitor=mon, registry=reg)
    assert b"memwarden_rss_bytes" not in generate_latest(reg)
    with expose(0, monitor=mon, registry=reg) as exporter:
        body = _get(exporter.url)[2]
        assert body.count(b"# TYPE memwarden_rss_bytes gauge") == 1
    assert b"memwarden_rss_bytes" not in generate_latest(reg)  # close() unregistered it


@pytest.mark.parametrize(
    ("addr", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("metrics.example.com", False),
    ],
)
def test_is_loopback(addr: str, loopback: bool) -> None:
    """Loopback addresses are recognized; wildcard, private and host names are not."""
    assert prom.is_loopback(addr) is loopback


def test_non_loopback_bind_warns(
    mon: MemoryMonitor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Binding an address that is not loopback logs a WARNING naming it (loopback: no warning)."""
    with caplog.at_level(logging.WARNING, logger="memwarden"), expose(0, monitor=mon):
        pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # Tests bind loopback only: pretend 127.0.0.1 is not, to see the warning path.
    monkeypatch.setattr(prom, "is_loopback", lambda addr: False)
    with caplog.at_level(logging.WARNING, logger="memwarden"), expose(0, monitor=mon):
        pass
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warned
    assert "127.0.0.1" in warned[0].getMessage()
    assert "not a loopback address" in warned[0].getMessage()


def test_multiprocess_directory_must_be_private(tmp_path: Path) -> None:
    """A metrics directory that is a symlink or writable by anyone is refused, named."""
    from memwarden.integrations.prometheus_multiprocess import multiprocess_registry

    shared = tmp_path / "metrics"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigurationError, match="writable by other users"):
        multiprocess_registry(shared)
    shared.chmod(0o700)
    link = tmp_path / "link"
    link.symlink_to(shared)
    with pytest.raises(ConfigurationError, match="symlink"):
        multiprocess_registry(link)
    assert multiprocess_registry(shared) is not None


def test_multiprocess_exporter_is_bounded_too(tmp_path: Path) -> None:
    """expose_multiprocess serves from the same one-thread server (no thread per connection)."""
    from memwarden.integrations.prometheus_multiprocess import expose_multiprocess

    server, thread = expose_multiprocess(0, path=tmp_path)
    try:
        port = server.server_address[1]
        with contextlib.ExitStack() as stack:
            before = threading.active_count()
            for _ in range(100):
                stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            time.sleep(0.2)
            assert threading.active_count() <= before + 1
            assert _get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
    assert not thread.is_alive()
