"""The cgroup test helper itself: a child really runs under the limit it was given."""

from __future__ import annotations

import sys

import pytest

from tests.support.cgroups import cgroup_unavailable_reason, memory_cgroup

REASON = cgroup_unavailable_reason()


@pytest.mark.cgroup
@pytest.mark.skipif(REASON is not None, reason=str(REASON))
def test_child_is_oom_killed_above_the_limit() -> None:
    """A child that touches 300 MiB under a 100 MiB cgroup is killed by the kernel."""
    code = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); print('survived')"
    with memory_cgroup(100 * 2**20) as cg:
        proc = cg.run([sys.executable, "-c", code])
        events = cg.events()
    assert proc.returncode != 0
    assert "survived" not in proc.stdout
    assert events.get("oom_kill", 0) >= 1 or events.get("failcnt", 0) >= 1
