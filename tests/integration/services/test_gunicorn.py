"""gunicorn with a leaking app: memwarden recycles workers gracefully, every request answered."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.integration.services.harness import PY, WorkerWatch, child_env, drive, free_port, server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gunicorn") is None, reason="gunicorn not installed"
    ),
]

LINE = 150 << 20
LEAK = 256 << 10


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_gunicorn_recycles_gracefully(tmp_path: Path, worker_class: str) -> None:
    """Two workers leak 256 KiB a request; over 150 MiB they drain and exit, none is killed."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    cmd = [
        PY, "-m", "gunicorn", "-w", "2", "-k", worker_class,
        *(["--threads", "2"] if worker_class == "gthread" else []),
        "-b", f"127.0.0.1:{port}", "--log-level", "info", "--graceful-timeout", "10",
        "-c", "python:memwarden.integrations.gunicorn", "leaky_apps:wsgi_app",
    ]  # fmt: skip
    env = child_env(MEMWARDEN_RECYCLE_LINE=str(LINE), LEAK_BYTES=str(LEAK))
    with server(cmd, port, env, log) as proc, WorkerWatch(proc.pid) as watch:
        result = drive(port, 2400)
    # What the arbiter logged before the test stopped it.
    text = log.read_text(errors="replace").split("Handling signal: term")[0]
    assert result.errors == []
    assert result.statuses == {200: 2400}
    assert "memwarden: recycling worker" in text, text[-3000:]
    assert "was sent" not in text, text[-3000:]  # gunicorn's words for a worker killed
    assert "SIGKILL" not in text, text[-3000:]
    # 2400 x 256 KiB = 600 MiB leaked in all: without recycling two workers would pass the line.
    assert len(result.pids) > 2
    # Bounded: a worker over the line waits at most for the other's recycle and the
    # gate's cooldown (0.5 s of requests) before it drains.
    assert watch.max_rss_bytes < LINE + (48 << 20)


def test_gunicorn_uvicorn_worker_recycles_gracefully(tmp_path: Path) -> None:
    """gunicorn with uvicorn's worker class: the ASGI middleware drains the worker on SIGTERM."""
    pytest.importorskip("uvicorn.workers", reason="uvicorn's gunicorn worker class not installed")
    port = free_port()
    log = tmp_path / "gunicorn.log"
    cmd = [
        PY, "-m", "gunicorn", "-w", "2", "-k", "uvicorn.workers.UvicornWorker",
        "-b", f"127.0.0.1:{port}", "--log-level", "info", "--graceful-timeout", "10",
        "leaky_apps:governed_asgi()",
    ]  # fmt: skip
    env = child_env(MEMWARDEN_RECYCLE_LINE=str(LINE), LEAK_BYTES=str(LEAK))
    with server(cmd, port, env, log) as proc, WorkerWatch(proc.pid) as watch:
        result = drive(port, 2400)
    text = log.read_text(errors="replace").split("Handling signal: term")[0]
    assert result.errors == []
    assert result.statuses == {200: 2400}
    assert "recycles gracefully" in text, text[-3000:]
    assert "SIGKILL" not in text, text[-3000:]
    assert len(result.pids) > 2
    assert watch.max_rss_bytes < LINE + (48 << 20)
