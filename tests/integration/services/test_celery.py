"""Celery with a real Redis broker: leaking tasks, graceful recycling, every task run once."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.services.harness import (
    PY,
    WorkerWatch,
    child_env,
    free_port,
    wait_listening,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("celery") is None, reason="celery not installed"),
    pytest.mark.skipif(importlib.util.find_spec("redis") is None, reason="redis-py not installed"),
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="redis-server (Debian) not installed"
    ),
]

LINE = 150 << 20
LEAK = 512 << 10
TASKS = 500


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port, stopped after the test."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port, proc)  # type: ignore[arg-type]
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


class Supervisor:
    """Restarts the worker whenever it exits, like systemd's ``Restart=always``."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.cmd, self.env, self.log = cmd, env, log
        self.exit_codes: list[int] = []
        self.current: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.log.open("ab") as out:
            while not self._stop.is_set():
                self.current = subprocess.Popen(
                    self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                    cwd=Path(__file__).parent,
                )  # fmt: skip
                code = self.current.wait()
                if not self._stop.is_set():
                    self.exit_codes.append(code)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        proc = self.current
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._thread.join(35)


def _run_tasks(redis_url: str, pool: str, tmp_path: Path) -> tuple[Counter[int], Supervisor, int]:
    import redis

    env = child_env(
        TEST_REDIS_URL=redis_url, MEMWARDEN_RECYCLE_LINE=str(LINE), LEAK_BYTES=str(LEAK)
    )
    cmd = [PY, "-m", "celery", "-A", "celery_app", "worker", f"--pool={pool}",
           "--concurrency=2", "--loglevel=INFO", "--without-gossip", "--without-mingle",
           "--without-heartbeat"]  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    log = tmp_path / f"celery-{pool}.log"
    from celery import Celery

    producer = Celery("producer", broker=redis_url)
    with Supervisor(cmd, env, log) as sup:
        for i in range(TASKS):
            producer.send_task("leak", args=(i,))
        deadline = time.monotonic() + 240
        max_rss = 0
        while client.llen("ran") < TASKS and time.monotonic() < deadline:
            time.sleep(0.05)
            proc = sup.current
            if proc is not None:
                with WorkerWatch(proc.pid, descend=0 if pool != "prefork" else 1) as w:
                    time.sleep(0.05)
                max_rss = max(max_rss, w.max_rss_bytes)
        ran = Counter(int(x.split(b":")[0]) for x in client.lrange("ran", 0, -1))
    return ran, sup, max_rss


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_celery_worker_recycles_by_warm_shutdown(redis_url: str, pool: str, tmp_path: Path) -> None:
    """Over 150 MiB the worker finishes its tasks, exits 0, restarts; no task lost or run twice."""
    ran, sup, max_rss = _run_tasks(redis_url, pool, tmp_path)
    log = (tmp_path / f"celery-{pool}.log").read_text(errors="replace")
    assert sorted(ran) == list(range(TASKS)), log[-3000:]
    assert set(ran.values()) == {1}
    assert len(sup.exit_codes) >= 1, log[-3000:]  # at least one graceful recycle
    assert set(sup.exit_codes) == {0}, (sup.exit_codes, log[-3000:])  # none killed
    assert "memwarden: warm shutdown" in log
    assert max_rss < LINE + (48 << 20)


def test_celery_prefork_children_recycle(redis_url: str, tmp_path: Path) -> None:
    """Prefork: pool processes leave between tasks over the line; every task runs once."""
    ran, sup, max_rss = _run_tasks(redis_url, "prefork", tmp_path)
    log = (tmp_path / "celery-prefork.log").read_text(errors="replace")
    assert sorted(ran) == list(range(TASKS)), log[-3000:]
    assert set(ran.values()) == {1}
    assert sup.exit_codes == []  # the worker itself never stopped
    # Replacements: billiard numbers pool processes, so more names than --concurrency=2.
    assert len(set(re.findall(r"ForkPoolWorker-\d+", log))) > 2, log[-3000:]
    assert "WorkerLostError" not in log
    assert "SIGKILL" not in log
    assert max_rss < LINE + (48 << 20)
