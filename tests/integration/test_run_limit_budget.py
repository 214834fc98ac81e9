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
