"""Multi-process metrics: real worker processes, one HTTP scrape that sees all of them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client", reason="the prometheus extra is not installed")
from prometheus_client.parser import text_string_to_metric_families

from memwarden.exceptions import ConfigurationError
from memwarden.integrations.prometheus_multiprocess import (
    expose_multiprocess,
    mark_process_dead,
    multiprocess_registry,
)

MIB = 2**20

WORKER = textwrap.dedent(
    """
    import os, sys, time
    # As under gunicorn: the directory is set before prometheus_client is imported.
    size = int(sys.argv[1])
    ballast = bytearray(size); ballast[::4096] = b"x" * len(ballast[::4096])
    from memwarden.config import MemoryConfig
    from memwarden.monitoring import MemoryMonitor
    from memwarden.integrations.prometheus_multiprocess import publish
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=2**30, monitoring_interval_s=0.05)).start()
    publish(mon)
    time.sleep(0.3)
    print(os.getpid(), mon.sample_now().rss_bytes, flush=True)
    sys.stdin.readline()  # run until told to stop
    mon.close()
    """
)


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        body = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.mark.slow
def test_three_worker_processes_are_all_reported(tmp_path: Path) -> None:
    """Each live worker's RSS appears with its pid; sum and max aggregate; a dead one goes."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    sizes = [40 * MIB, 80 * MIB, 120 * MIB]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for size in sizes
    ]
    server = None
    try:
        reported: dict[str, int] = {}
        for p in procs:
            assert p.stdout is not None
            pid, rss_bytes = p.stdout.readline().split()
            reported[pid] = int(rss_bytes)
        server, _thread = expose_multiprocess(0, path=tmp_path)
        port = server.server_address[1]
        metrics = _scrape(port)
        per_pid = {labels["pid"]: value for labels, value in metrics["memwarden_rss_bytes"]}
        assert set(per_pid) == set(reported)
        for pid, value in per_pid.items():
            assert abs(value - reported[pid]) < 0.1 * reported[pid]
        total = metrics["memwarden_rss_sum_bytes"][0][1]
        assert abs(total - sum(per_pid.values())) < 1
        assert metrics["memwarden_rss_max_bytes"][0][1] == max(per_pid.values())
        # the largest worker holds 120 MiB of ballast
        assert max(per_pid.values()) > 120 * MIB

        # One worker exits; after mark_process_dead its live gauges are gone.
        first = procs[0]
        assert first.stdin is not None
        first.stdin.write("\n")
        first.stdin.flush()
        first.wait(timeout=30)
        mark_process_dead(first.pid, tmp_path)
        metrics = _scrape(port)
        alive = {labels["pid"] for labels, _ in metrics["memwarden_rss_bytes"]}
        assert str(first.pid) not in alive
        assert len(alive) == 2
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


def test_missing_or_bad_directory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR, or with a path that is not a directory, errors say so."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(ConfigurationError, match="PROMETHEUS_MULTIPROC_DIR is not set"):
        multiprocess_registry()
    with pytest.raises(ConfigurationError, match="not a directory"):
        multiprocess_registry(tmp_path / "missing")
    with pytest.raises(ConfigurationError, match="port"):
        expose_multiprocess(70000, path=tmp_path)


def test_publisher_refuses_a_late_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setting the directory after prometheus_client was imported is refused with the reason."""
    import prometheus_client  # noqa: F401 - imported before the variable is set

    from memwarden.integrations.prometheus_multiprocess import MultiprocessPublisher

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError, match="set after prometheus_client was imported"):
        MultiprocessPublisher()
