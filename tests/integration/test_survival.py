"""The proof that the governor matters: the same service under a real hard memory limit.

Ungoverned (a plain dict cache) it is OOM-killed by a 300 MiB cgroup or dies with
MemoryError under RLIMIT_DATA; governed (memwarden's LRUCache registered as a
reliever, the governor watching) it finishes with its peak under the limit. The
workload is ``examples/survive_limit.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cgroups import cgroup_unavailable_reason, memory_cgroup, rlimit_preexec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "survive_limit.py"
LIMIT_BYTES = 300 << 20
REQUESTS = 4400  # ~550 MiB of responses if nothing is dropped

pytestmark = pytest.mark.slow


def _argv(mode: str) -> list[str]:
    return [sys.executable, str(EXAMPLE), "--child", mode, "--requests", str(REQUESTS)]


@pytest.fixture
def child_env(tmp_path: Path) -> dict[str, Any]:
    """Run children away from any pyproject.toml and MEMWARDEN_* settings: defaults only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMWARDEN_")}
    return {"cwd": str(tmp_path), "env": env}


def _check_governed(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["requests_done"] == REQUESTS
    assert result["relief_runs"] >= 1
    # Relief began with the cache (priority 10), before gc and malloc_trim.
    assert result["first_relief_steps"][0] == "responses"
    assert result["cache_entries"] < REQUESTS
    assert result["peak_rss_bytes"] < LIMIT_BYTES
    return dict(result)


@pytest.mark.cgroup
@pytest.mark.skipif(
    cgroup_unavailable_reason() is not None, reason=str(cgroup_unavailable_reason())
)
def test_service_is_oom_killed_ungoverned_and_finishes_governed_in_a_cgroup(
    child_env: dict[str, Any],
) -> None:
    """Under a 300 MiB memory cgroup the ungoverned run is OOM-killed, the governed one finishes."""
    with memory_cgroup(LIMIT_BYTES, name="memwarden-survival") as cg:
        dead = cg.run(_argv("ungoverned"), timeout=120, **child_env)
        events = cg.events()
        assert dead.returncode != 0
        # Killed by the cgroup's OOM killer, or (if the kernel failed the charge first)
        # a MemoryError: either way the service did not finish.
        killed = events.get("oom_kill", 0) >= 1 or "MemoryError" in dead.stderr
        assert killed, (dead.returncode, events, dead.stderr[-500:])
    with memory_cgroup(LIMIT_BYTES, name="memwarden-survival") as cg:
        alive = cg.run(_argv("governed"), timeout=120, **child_env)
        events = cg.events()
        result = _check_governed(alive)
        assert events.get("oom_kill", 0) == 0
        # The kernel's own peak for the cgroup (RSS and page cache) stayed under the limit.
        assert events["max_usage_in_bytes"] < LIMIT_BYTES
        assert any(str(m).startswith("cgroup-v") for m in result["mechanisms"])  # type: ignore[attr-defined]


def test_service_dies_ungoverned_and_finishes_governed_under_rlimit_data(
    child_env: dict[str, Any],
) -> None:
    """Under RLIMIT_DATA of 300 MiB the ungoverned run dies of MemoryError; governed finishes."""
    dead = subprocess.run(
        _argv("ungoverned"),
        preexec_fn=rlimit_preexec(LIMIT_BYTES),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **child_env,
    )
    assert dead.returncode != 0
    assert "MemoryError" in dead.stderr
    alive = subprocess.run(
        _argv("governed"),
        preexec_fn=rlimit_preexec(LIMIT_BYTES),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **child_env,
    )
    result = _check_governed(alive)
    assert result["budget_bytes"] == int(LIMIT_BYTES * 0.9)  # RLIMIT_DATA less the margin
