"""`memwarden watch --pid`: the target's own budget (agent), its own limits (/proc), its tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from memwarden.agent import socket_path
from tests.support.cgroups import cgroup_unavailable_reason, memory_cgroup

MiB = 2**20

HOLD = """
    import sys
    hold = bytearray({mib} * 2**20)
    hold[::4096] = b"x" * (len(hold) // 4096)
    print("ready", flush=True)
    sys.stdin.readline()
"""


def _start(
    tmp_path: Path, body: str, *, env: dict[str, str] | None = None, **kw: object
) -> subprocess.Popen[str]:
    prog = tmp_path / f"p{len(list(tmp_path.iterdir()))}.py"
    prog.write_text(textwrap.dedent(body))
    proc = subprocess.Popen(
        [sys.executable, str(prog)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env, **kw,  # type: ignore[call-overload]
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)


def _watch(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "memwarden", "watch", "--json", "--count", "1", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return record


def test_with_an_agent_the_targets_own_budget_is_used(tmp_path: Path) -> None:
    """The target budgets 300 MiB and runs an agent: watch measures against that budget."""
    env = dict(os.environ, MEMWARDEN_AGENT="1", MEMWARDEN_MAX_MEMORY="300MiB")
    proc = _start(tmp_path, "import memwarden\n" + textwrap.dedent(HOLD.format(mib=20)), env=env)
    try:
        deadline = time.monotonic() + 10
        while not socket_path(proc.pid).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        rec = _watch("--pid", str(proc.pid))
    finally:
        _stop(proc)
    assert rec["via"] == "agent"
    assert rec["limit_bytes"] == 300 * MiB
    assert rec["target_level"] == "NONE"


@pytest.mark.cgroup
@pytest.mark.skipif(
    cgroup_unavailable_reason() is not None, reason=str(cgroup_unavailable_reason())
)
def test_without_an_agent_the_targets_cgroup_limit_is_found(tmp_path: Path) -> None:
    """A target in a 200 MiB cgroup: watch's budget is 90% of that limit, named by source."""
    with memory_cgroup(200 * MiB, name="memwarden-watch") as cg:
        proc = _start(tmp_path, HOLD.format(mib=10), preexec_fn=cg.preexec())
        try:
            rec = _watch("--pid", str(proc.pid))
        finally:
            _stop(proc)
    assert rec["via"] == "proc"
    assert rec["limit_bytes"] == int(200 * MiB * 0.9)
    assert "cgroup" in str(rec["limit_source"])


def test_tree_counts_the_descendants(tmp_path: Path) -> None:
    """A parent holding 10 MiB with a child holding 60 MiB: --tree sees both."""
    parent = f"""
        import subprocess, sys, textwrap
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent({HOLD.format(mib=60)!r})],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        hold = bytearray(10 * 2**20)
        hold[::4096] = b"x" * (len(hold) // 4096)
        print("ready", flush=True)
        sys.stdin.readline()
        child.stdin.close()
        child.wait()
    """
    proc = _start(tmp_path, parent)
    try:
        alone = _watch("--pid", str(proc.pid))
        tree = _watch("--pid", str(proc.pid), "--tree")
    finally:
        _stop(proc)
    assert int(tree["rss_bytes"]) >= int(alone["rss_bytes"]) + 55 * MiB  # type: ignore[call-overload]
