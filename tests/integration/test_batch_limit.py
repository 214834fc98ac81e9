"""The adaptive-batching proof under a real memory limit (a cgroup here, RLIMIT_DATA elsewhere).

The child workload (``_batch_workload.py``) holds ~1 MiB per item for the length of a
batch. Under a 300 MiB hard limit a fixed batch of 500 items is killed (cgroup OOM)
or fails with MemoryError (RLIMIT_DATA); the adaptive processor, discovering the
limit itself, finishes every item with its peak under the limit. Throughput against
the best fixed size is a benchmark (``bench/bench_batch.py``), not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cgroups import cgroup_unavailable_reason, memory_cgroup, rlimit_preexec

WORKLOAD = str(Path(__file__).with_name("_batch_workload.py"))
LIMIT_BYTES = 300 * 1024 * 1024
ITEMS = 1200

pytestmark = pytest.mark.slow

_REASON = cgroup_unavailable_reason()


def _argv(*args: str) -> list[str]:
    return [sys.executable, WORKLOAD, *args, "--items", str(ITEMS), "--overhead-ms", "2"]


@pytest.mark.cgroup
@pytest.mark.skipif(_REASON is not None, reason=f"no child memory cgroup: {_REASON}")
def test_fixed_batch_of_500_is_killed_by_the_cgroup() -> None:
    """A fixed batch of 500 x 1 MiB exceeds 300 MiB and the kernel OOM-kills the child."""
    with memory_cgroup(LIMIT_BYTES, name="memwarden-batch") as cg:
        proc = cg.run(_argv("fixed", "500"), timeout=120)
        events = cg.events()
    assert proc.returncode != 0, proc.stdout
    assert proc.returncode == -9  # SIGKILL from the OOM killer
    assert events.get("oom_kill", 0) >= 1


@pytest.mark.cgroup
@pytest.mark.skipif(_REASON is not None, reason=f"no child memory cgroup: {_REASON}")
def test_adaptive_processor_completes_under_the_cgroup_limit() -> None:
    """The adaptive processor finds the 300 MiB limit itself and finishes under it."""
    with memory_cgroup(LIMIT_BYTES, name="memwarden-batch") as cg:
        proc = cg.run(_argv("adaptive"), timeout=120)
        events = cg.events()
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["items"] == ITEMS
    assert out["checksum"] == sum(range(ITEMS)) + ITEMS  # every item, once
    assert out["limit_bytes"] == LIMIT_BYTES  # discovered from the cgroup
    assert events.get("oom_kill", 0) == 0
    assert events["max_usage_in_bytes"] < LIMIT_BYTES
    assert 0.9 * 2**20 <= out["item_bytes"] <= 1.5 * 2**20
    assert out["max_batch"] > 100  # it used the room it had, not a timid fixed size


def test_fixed_batch_fails_and_adaptive_completes_under_rlimit_data() -> None:
    """Under RLIMIT_DATA (the fallback) the fixed batch hits MemoryError; adaptive finishes."""
    fixed = subprocess.run(
        _argv("fixed", "500"),
        preexec_fn=rlimit_preexec(LIMIT_BYTES),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fixed.returncode != 0
    assert "MemoryError" in fixed.stderr
    adaptive = subprocess.run(
        [*_argv("adaptive"), "--initial", "500"],  # start too big: MemoryError, cut, retry
        preexec_fn=rlimit_preexec(LIMIT_BYTES),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert adaptive.returncode == 0, adaptive.stderr[-2000:]
    out = json.loads(adaptive.stdout)
    assert out["items"] == ITEMS
    assert out["checksum"] == sum(range(ITEMS)) + ITEMS
    assert out["retries"] >= 1
    assert out["limit_bytes"] == LIMIT_BYTES


@pytest.mark.cgroup
@pytest.mark.skipif(_REASON is not None, reason=f"no child memory cgroup: {_REASON}")
def test_adaptive_shrinks_when_memory_is_taken_mid_run() -> None:
    """60 MiB taken mid-run kills a fixed batch of 250 that fitted; adaptive shrinks and lives."""
    taken = ["--ballast-mib", "60", "--ballast-after", "400"]
    with memory_cgroup(LIMIT_BYTES, name="memwarden-batch") as cg:
        fixed_alone = cg.run(_argv("fixed", "250"), timeout=120)
    with memory_cgroup(LIMIT_BYTES, name="memwarden-batch") as cg:
        fixed = cg.run([*_argv("fixed", "250"), *taken], timeout=120)
    with memory_cgroup(LIMIT_BYTES, name="memwarden-batch") as cg:
        adaptive = cg.run([*_argv("adaptive"), *taken], timeout=120)
        events = cg.events()
    assert fixed_alone.returncode == 0, "a fixed batch of 250 fits when nothing else grows"
    assert fixed.returncode == -9
    assert adaptive.returncode == 0, adaptive.stderr[-2000:]
    out = json.loads(adaptive.stdout)
    assert out["items"] == ITEMS
    assert events.get("oom_kill", 0) == 0
    sizes = out["sizes"]
    assert min(sizes[2:-1]) < 0.7 * max(sizes)  # it cut its batches after memory was taken
