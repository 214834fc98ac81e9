"""Live attach: snapshot round trip, live top sites of a 1 GiB heap, the idle agent's wake-ups."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from memwarden.agent import Client, socket_path

TARGET = """
    import sys
    import memwarden.profiler as profiler
    profiler.start()
    import memwarden.agent
    memwarden.agent.start()
    big = [bytearray(2**20) for _ in range(768)]                 # 768 MiB in large blocks
    small = [(i, str(i)) for i in range(2_000_000)]              # and ~250 MiB of small objects
    for b in big:
        b[::4096] = b"x" * 256
    print("ready", flush=True)
    sys.stdin.readline()
"""


def _switches(pid: int, tid: int) -> int:
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
    )
    return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])


def run() -> str:
    prog = Path("/tmp") / f"bench-live-{os.getpid()}.py"
    prog.write_text(textwrap.dedent(TARGET))
    proc = subprocess.Popen(
        [sys.executable, str(prog)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        while not socket_path(proc.pid).exists():
            time.sleep(0.01)
        rss = int(Path(f"/proc/{proc.pid}/statm").read_text().split()[1]) * os.sysconf(
            "SC_PAGE_SIZE"
        )
        rounds = []
        for _ in range(50):
            t0 = time.perf_counter()
            with Client(proc.pid) as c:
                c.request("snapshot")
            rounds.append(time.perf_counter() - t0)
        with Client(proc.pid) as c:
            tid = c.request("hello")["agent_thread_id"]
            tops = []
            for _ in range(5):
                t0 = time.perf_counter()
                top = c.request("profile.top", n=10, kind="live")
                tops.append(time.perf_counter() - t0)
        before = _switches(proc.pid, tid)
        time.sleep(5)
        idle = (_switches(proc.pid, tid) - before) / 5
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
        prog.unlink()
    snap_ms = statistics.median(rounds) * 1000
    top_s = statistics.median(tops)
    return "\n".join(
        [
            "## Live attach (`python bench/run.py live`)",
            "",
            f"A target process with a {rss / 2**30:.2f} GiB RSS heap (768 MiB of 1 MiB blocks, "
            "2 M small tuples), profiling at the default rate, its agent started; the client "
            "is a separate process.",
            "",
            "| what | measured | target |",
            "|---|---|---|",
            "| snapshot round trip (connect, ask, answer), median of 50 "
            f"| {snap_ms:.1f} ms | <= 50 ms |",
            f"| live top 10 sites, median of 5 | {top_s * 1000:.0f} ms ({top['samples']} "
            f"samples, {top['total_bytes'] / 2**20:.0f} MiB estimated) | <= 1 s |",
            f"| idle agent thread: context switches per second over 5 s | {idle:.1f} | 0 |",
        ]
    )
