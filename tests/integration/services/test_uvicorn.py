"""uvicorn with a leaking ASGI app: the middleware recycles workers gracefully."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.integration.services.harness import PY, WorkerWatch, child_env, drive, free_port, server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="uvicorn not installed"),
]

LINE = 150 << 20
LEAK = 256 << 10


def test_uvicorn_workers_recycle_gracefully(tmp_path: Path) -> None:
    """uvicorn --workers 2: over 150 MiB a worker drains on SIGTERM and is replaced."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    cmd = [
        PY, "-m", "uvicorn", "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
        "--factory", "leaky_apps:governed_asgi", "--no-access-log",
    ]  # fmt: skip
    env = child_env(MEMWARDEN_RECYCLE_LINE=str(LINE), LEAK_BYTES=str(LEAK))
    with server(cmd, port, env, log) as proc, WorkerWatch(proc.pid) as watch:
        result = drive(port, 2400)
    text = log.read_text(errors="replace")
    assert result.errors == []
    assert result.statuses == {200: 2400}
    assert "recycles gracefully" in text, text[-3000:]
    assert len(result.pids) > 2
    # Bounded: after its SIGTERM a uvicorn worker still finishes the requests it accepted,
    # and the other waits for the gate; on a loaded machine that is a few hundred requests.
    assert watch.max_rss_bytes < LINE + (96 << 20)
