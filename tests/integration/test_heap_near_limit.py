"""A governed child near a real cgroup memory limit writes one heap snapshot and keeps running."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from memwarden import heapgraph
from tests.support.cgroups import cgroup_unavailable_reason, memory_cgroup

ROOT = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 192 * 1024 * 1024
_REASON = cgroup_unavailable_reason()

pytestmark = [pytest.mark.slow, pytest.mark.cgroup]

CHILD = """
import json, os, sys, threading, time
from memwarden.pressure import PressureLevel, governor

class Chunk:
    def __init__(self):
        self.data = bytearray(2 << 20)
        for i in range(0, len(self.data), 4096):
            self.data[i] = 1  # touch every page: resident, charged to the cgroup

HOARD = []
gov = governor()
deadline = time.monotonic() + 60
while gov.current_level < PressureLevel.CRITICAL and time.monotonic() < deadline:
    HOARD.append(Chunk())
    time.sleep(0.02)
critical = gov.current_level >= PressureLevel.CRITICAL
# Keep running: wait for the snapshot thread, then let memory go and carry on.
for t in threading.enumerate():
    if t.name == "memwarden-heapdump":
        t.join(60)
del HOARD[len(HOARD) // 2 :]
work = sum(range(100_000))
print(json.dumps({"critical": critical, "chunks": len(HOARD), "work": work}))
"""


@pytest.mark.skipif(_REASON is not None, reason=f"no child memory cgroup: {_REASON}")
def test_critical_near_the_cgroup_limit_writes_one_snapshot(tmp_path: Path) -> None:
    """Pressure turns CRITICAL under a 192 MiB cgroup: one snapshot, no OOM kill, exit 0."""
    prog = tmp_path / "grow.py"
    prog.write_text(CHILD)
    dumps = tmp_path / "dumps"
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "src"),
        MEMWARDEN_HEAP_DUMP_DIR=str(dumps),
        MEMWARDEN_HEAP_DUMP_MAX="1",
    )
    with memory_cgroup(LIMIT_BYTES, name="memwarden-heapdump") as cg:
        proc = cg.run(
            [sys.executable, "-m", "memwarden.heapwatch", str(prog)], env=env, timeout=180
        )
        events = cg.events()
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["critical"] is True
    assert out["work"] == sum(range(100_000))  # it kept running after the dump
    assert events.get("oom_kill", 0) == 0
    files = sorted(dumps.iterdir())
    assert len(files) == 1, files
    g = heapgraph.load(files[0])
    (hoard,) = [p for p in g.paths(g.find("list"), max_paths=0) if p.label == "__main__.HOARD"]
    # The snapshot holds the chunks that filled the cgroup, as native buffers.
    assert hoard.retained_bytes > LIMIT_BYTES // 3
