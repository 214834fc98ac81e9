"""Services: middleware cost per request, throughput, and a leaking server in a real cgroup."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.services import harness  # noqa: E402

from memwarden.integrations.wsgi import MemwardenMiddleware  # noqa: E402

ROUNDS = 9
CALLS = 50_000


def _hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def _call_ns(app: Any) -> float:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/hello"}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    t0 = time.perf_counter_ns()
    for _ in range(CALLS):
        body = app(environ, start_response)
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter_ns() - t0) / CALLS


def _overhead() -> tuple[float, float, float]:
    wrapped = MemwardenMiddleware(_hello, recycle=False)
    bare_ns, mw_ns = [], []
    for _ in range(ROUNDS):  # alternate A/B so machine noise hits both alike
        bare_ns.append(_call_ns(_hello))
        mw_ns.append(_call_ns(wrapped))
    bare, mw = statistics.median(bare_ns), statistics.median(mw_ns)
    return bare, mw, (mw - bare) / 1000


def _wrk(port: int, seconds: int) -> float:
    import re
    import subprocess

    out = subprocess.run(
        ["wrk", "-t1", "-c8", f"-d{seconds}s", f"http://127.0.0.1:{port}/hello"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    assert match is not None, out
    return float(match.group(1))


def _throughput(rounds: int = 7, seconds: int = 3) -> tuple[float, float, str]:
    """Requests/s of gunicorn serving the bare and the wrapped app, alternated rounds.

    The load comes from ``wrk`` (Debian's package) where installed: a Python client on
    the same two cores measures itself more than the server. Falls back to the harness.
    """
    import shutil

    use_wrk = shutil.which("wrk") is not None

    def serve(app: str) -> float:
        port = harness.free_port()
        cmd = [harness.PY, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", app]
        log = Path("/tmp") / f"bench-services-{port}.log"
        with harness.server(cmd, port, harness.child_env(), log):
            harness.drive(port, 200)  # warm up
            if use_wrk:
                return _wrk(port, seconds)
            t0 = time.perf_counter()
            res = harness.drive(port, 3000)
            elapsed = time.perf_counter() - t0
            assert res.ok == 3000, res
            return 3000 / elapsed

    bare, wrapped = [], []
    for _ in range(rounds):
        bare.append(serve("bench_apps:hello"))
        wrapped.append(serve("bench_apps:hello_governed"))
    how = f"wrk -t1 -c8, {seconds} s" if use_wrk else "4 Python clients, 3000 requests"
    return statistics.median(bare), statistics.median(wrapped), how


def _cgroup_side_by_side(limit: int = 360 << 20, requests: int = 3000) -> list[str]:
    from tests.support.cgroups import cgroup_unavailable_reason, memory_cgroup

    reason = cgroup_unavailable_reason()
    if reason is not None:
        return [f"Skipped the cgroup comparison: {reason}."]
    rows = []
    for name, extra, leak in (
        ("gunicorn alone", [], 256 << 10),
        (
            "gunicorn + memwarden hooks (line 120 MiB a worker)",
            ["-c", "python:memwarden.integrations.gunicorn"],
            256 << 10,
        ),
    ):
        with memory_cgroup(limit, name="memwarden-bench-services") as cg:
            port = harness.free_port()
            cmd = [harness.PY, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", *extra,
                   "leaky_apps:wsgi_app"]  # fmt: skip
            env = harness.child_env(MEMWARDEN_RECYCLE_LINE=str(120 << 20), LEAK_BYTES=str(leak))
            log = Path("/tmp") / f"bench-services-cg-{port}.log"
            import subprocess

            with log.open("wb") as out:
                proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        cwd=harness.APPS_DIR, preexec_fn=cg.preexec())  # fmt: skip
                try:
                    harness.wait_listening(port, proc)
                    t0 = time.perf_counter()
                    res = harness.drive(port, requests, retries=1)
                    elapsed = time.perf_counter() - t0
                    events = cg.events()
                finally:
                    proc.terminate()
                    proc.wait(30)
            text = log.read_text(errors="replace")
            oom = events.get("oom_kill", events.get("oom_kill_disable", 0))
            killed = text.count("SIGKILL")
            recycles = text.count("memwarden: recycling worker")
            failed = len(res.errors) + sum(v for k, v in res.statuses.items() if k != 200)
            rows.append(
                f"| {name} | {res.ok} | {failed} | {killed} | {oom} | {recycles} "
                f"| {elapsed:.1f} s |"
            )
    return [
        "The recycle line is per worker: two workers of 120 MiB, the arbiter and a "
        "replacement being forked fit in the cgroup.",
        "",
        f"A gunicorn server (2 sync workers) whose app keeps 256 KiB per request, in a real "
        f"memory cgroup of {limit >> 20} MiB, {requests} requests from 4 loopback clients, "
        "no retries:",
        "",
        "| server | answered 200 | failed | workers SIGKILLed | cgroup OOM kills "
        "| graceful recycles | wall |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def run() -> str:
    bare, mw, extra_us = _overhead()
    t_bare, t_mw, how = _throughput()
    lines = [
        "## Services (`python bench/run.py services`)",
        "",
        "WSGI middleware on a hello-world app, called in-process, median of "
        f"{ROUNDS} alternated rounds of {CALLS} calls:",
        "",
        "| | per request | target |",
        "|---|---|---|",
        f"| bare app | {bare / 1000:.2f} µs | |",
        f"| with MemwardenMiddleware | {mw / 1000:.2f} µs | |",
        f"| middleware cost | {extra_us:.2f} µs | <= 5 µs |",
        "",
        f"Throughput under a loopback load (gunicorn, 2 sync workers, {how}, median of "
        "7 alternated runs; client and server share the 2 cores):",
        "",
        "| | requests/s | ratio |",
        "|---|---|---|",
        f"| bare | {t_bare:.0f} | 1.00 |",
        f"| with MemwardenMiddleware | {t_mw:.0f} | {t_mw / t_bare:.3f} (target >= 0.98) |",
        "",
        *_cgroup_side_by_side(),
    ]
    return "\n".join(lines)
