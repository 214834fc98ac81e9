"""Limit discovery against the kernel: a child placed in a real 200 MiB cgroup reports it."""

from __future__ import annotations

import json
import sys
import time

import pytest

from memwarden.probes import cgroup_info
from tests.support.cgroups import cgroup_unavailable_reason, memory_cgroup

REASON = cgroup_unavailable_reason()
MIB = 2**20


@pytest.mark.cgroup
@pytest.mark.skipif(REASON is not None, reason=f"no writable memory cgroup: {REASON}")
def test_child_in_real_cgroup_reports_its_limit() -> None:
    """effective_limit(), cgroup_usage() and memory_events() in the child see the 200 MiB cgroup."""
    code = (
        "import json, memwarden\n"
        "from memwarden.probes import cgroup_info\n"
        "l = memwarden.effective_limit(); u = memwarden.cgroup_usage()\n"
        "e = memwarden.memory_events()\n"
        "print(json.dumps({'limit': l.limit_bytes, 'source': l.source,\n"
        "  'dir': str(cgroup_info().directory), 'usage': u.usage_bytes, 'ulimit': u.limit_bytes,\n"
        "  'events': e is not None}))\n"
    )
    with memory_cgroup(200 * MIB) as cg:
        proc = cg.run([sys.executable, "-c", code], timeout=60)
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["limit"] == 200 * MIB
        assert str(cg.path) in data["source"]
        assert data["dir"] == str(cg.path)
        assert 0 < data["usage"] < 200 * MIB
        assert data["ulimit"] == 200 * MIB
        assert data["events"] is True
    assert not cg.path.exists(), "the test cgroup was not cleaned up"


@pytest.mark.cgroup
@pytest.mark.skipif(REASON is not None, reason=f"no writable memory cgroup: {REASON}")
def test_nested_child_cgroup_inherits_the_parent_limit() -> None:
    """A child cgroup without a limit, inside a 150 MiB one, reports the parent's 150 MiB."""
    with memory_cgroup(150 * MIB) as outer:
        inner = outer.path / "inner"
        inner.mkdir()
        try:
            code = (
                "import os, memwarden\n"
                f"open({str(inner / 'cgroup.procs')!r}, 'w').write(str(os.getpid()))\n"
                "l = memwarden.effective_limit(); print(l.limit_bytes); print(l.source)\n"
            )
            proc = outer.run([sys.executable, "-c", code], timeout=60)
        finally:
            for _ in range(100):
                try:
                    inner.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
        assert proc.returncode == 0, proc.stderr
        limit, source = proc.stdout.splitlines()[:2]
        assert int(limit) == 150 * MIB
        assert source.endswith(f"({outer.path})")


def test_this_process_cgroup_is_found_or_absent_cleanly() -> None:
    """On the real machine cgroup_info() either finds an existing directory or returns None."""
    info = cgroup_info()
    if info is None:
        pytest.skip("this process is in no memory cgroup")
    assert info.directory.is_dir()
    assert info.version in (1, 2)
