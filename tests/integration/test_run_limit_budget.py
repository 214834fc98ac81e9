"""`memwarden run --limit` tells the child its budget, so a governed service relieves first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

MiB = 2**20

GOVERNED_SERVICE = """
    import os, time
    import memwarden
    MiB = 2**20
    print("budget", memwarden.load_config().max_memory_bytes, flush=True)
    gov = memwarden.governor()
    gov.interval_s = 0.01
    gov.relief_interval_s = 0.05
    gov.start()
    cache = memwarden.LRUCache(max_bytes="2 GiB")
    for i in range(400):                       # 400 MiB of cache under a 250 MiB limit
        block = bytearray(MiB)
        block[::4096] = b"x" * 256
        cache[i] = block
        time.sleep(0.002)
    gov.stop()
    print("kept", len(cache), flush=True)
"""


def _run(
    tmp_path: Path, *args: str, env_budget: str | None = None
) -> subprocess.CompletedProcess[str]:
    prog = tmp_path / "service.py"
    prog.write_text(textwrap.dedent(GOVERNED_SERVICE))
    import os

    env = {k: v for k, v in os.environ.items() if k != "MEMWARDEN_MAX_MEMORY"}
    if env_budget is not None:
        env["MEMWARDEN_MAX_MEMORY"] = env_budget
    return subprocess.run(
        [sys.executable, "-m", "memwarden", "run", "--interval", "0.02", *args,
         "-o", str(tmp_path / "t.jsonl"), str(prog)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def test_a_governed_child_budgets_against_the_limit_and_survives(tmp_path: Path) -> None:
    """Under --limit 250MiB the child's budget is 250 MiB: its cache shrinks, it finishes."""
    done = _run(tmp_path, "--limit", "250MiB")
    assert f"budget {250 * MiB}" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
    kept = int(done.stdout.split("kept", 1)[1].split()[0])
    assert kept < 250  # the cache was shrunk to fit, not allowed to grow to 400 MiB


def test_an_explicit_budget_is_kept(tmp_path: Path) -> None:
    """A budget the user set in the environment wins over --limit."""
    done = _run(tmp_path, "--limit", "250MiB", env_budget="200MiB")
    assert f"budget {200 * MiB}" in done.stdout, done.stdout + done.stderr


SERVER = """
    from memwarden.integrations.wsgi import MemwardenMiddleware
    kept = []

    def app(environ, start_response):
        if environ["PATH_INFO"].startswith("/leak"):
            block = bytearray(2**20)
            block[::4096] = b"x" * 256
            kept.append(block)
        start_response("200 OK", [])
        return [b"ok"]

    mw = MemwardenMiddleware(app)
    for i in range(60):
        for path in (f"/leak/{i}", f"/health/{i}"):
            body = mw({"REQUEST_METHOD": "GET", "PATH_INFO": path}, lambda *a: None)
            body.close()
"""


def test_report_names_the_routes_that_grew(tmp_path: Path) -> None:
    """A server run under `memwarden run`: the report lists its growing route first."""
    prog = tmp_path / "server.py"
    prog.write_text(textwrap.dedent(SERVER))
    trace = tmp_path / "t.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "memwarden", "run", "-q", "-o", str(trace), str(prog)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from memwarden.report.summary import summarize
    from memwarden.report.trace import read_trace

    routes = summarize(read_trace(trace)).routes
    assert routes[0].route == "GET /leak"
    assert routes[0].requests == 60
    assert routes[0].rss_delta_sum_bytes > 40 * MiB
    assert routes[0].allocated_bytes > 40 * MiB  # the profiler's tag for the route
    shown = subprocess.run(
        [sys.executable, "-m", "memwarden", "report", str(trace)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "Routes that grew memory most" in shown.stdout
    assert "GET /leak" in shown.stdout
