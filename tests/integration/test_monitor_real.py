"""The monitor against real memory: level changes as this process (or a cgroup child) allocates."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from memwarden.config import MemoryConfig
from memwarden.monitoring import Level, MemoryMonitor, Sample
from memwarden.probes import rss
from tests.support.cgroups import cgroup_unavailable_reason, memory_cgroup

MiB = 1 << 20


def test_level_changes_fire_as_this_process_allocates_and_frees() -> None:
    """Allocating real memory past the warning and critical lines fires both; freeing returns OK."""
    base = rss()
    max_bytes = base + 200 * MiB
    cfg = MemoryConfig(
        max_memory_bytes=max_bytes,
        warning_threshold=(base + 40 * MiB) / max_bytes,
        critical_threshold=(base + 90 * MiB) / max_bytes,
        hysteresis=0.02,
        monitoring_interval_s=0.005,
    )
    changes: list[tuple[Level, Level, Sample]] = []
    reached = {lvl: threading.Event() for lvl in Level}

    def on_change(old: Level, new: Level, sample: Sample) -> None:
        changes.append((old, new, sample))
        reached[new].set()

    with MemoryMonitor(cfg) as mon:
        mon.on_level_change(on_change)
        blocks = [b"w" * (60 * MiB)]  # touched pages: RSS really grows
        assert reached[Level.WARNING].wait(20), f"no WARNING; last sample {mon.last_sample}"
        blocks.append(b"c" * (60 * MiB))
        assert reached[Level.CRITICAL].wait(20), f"no CRITICAL; last sample {mon.last_sample}"
        blocks.clear()  # large blocks are mmapped: freeing them returns the pages
        assert reached[Level.OK].wait(20), f"no return to OK; last sample {mon.last_sample}"
        st = mon.stats()
    path = [(old, new) for old, new, _ in changes]
    assert path[:2] == [(Level.OK, Level.WARNING), (Level.WARNING, Level.CRITICAL)]
    assert path[-1][1] is Level.OK
    crit = next(s for old, new, s in changes if new is Level.CRITICAL)
    assert crit.rss_bytes >= cfg.critical_bytes
    assert st.peak_rss_bytes is not None
    assert st.peak_rss_bytes >= cfg.critical_bytes
    assert st.level_changes[Level.CRITICAL] >= 1


CHILD = textwrap.dedent(
    """
    import json, sys, threading
    from memwarden.config import load_config
    from memwarden.monitoring import Level, MemoryMonitor

    cfg = load_config("testing", pyproject=False, environ={}, monitoring_interval_s=0.005)
    events = []
    done = threading.Event()

    def on_change(old, new, sample):
        events.append([old.monitor_name, new.monitor_name, sample.rss_bytes])
        if new is Level.CRITICAL:
            done.set()

    blocks = []
    with MemoryMonitor(cfg) as mon:
        mon.on_level_change(on_change)
        for _ in range(200):  # at most 200 x 4 MiB; stop at CRITICAL, well before the limit
            if done.wait(0.01):
                break
            blocks.append(b"x" * (4 << 20))
    print(json.dumps({"max": cfg.max_memory_bytes, "source": cfg.source_of("max_memory_bytes"),
                      "critical": cfg.critical_bytes, "events": events}))
    """
)


@pytest.mark.cgroup
@pytest.mark.skipif(
    cgroup_unavailable_reason() is not None, reason=str(cgroup_unavailable_reason())
)
def test_a_child_under_a_real_cgroup_limit_reaches_critical_before_the_kernel_kills_it() -> None:
    """max_memory comes from a real 256 MiB cgroup; the child goes WARNING then CRITICAL."""
    limit = 256 * MiB
    with memory_cgroup(limit) as cg:
        out = cg.run([sys.executable, "-c", CHILD], timeout=60)
        events = cg.events()
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["max"] <= limit
    assert "cgroup" in report["source"]
    names = [(old, new) for old, new, _ in report["events"]]
    assert ("OK", "WARNING") in names
    assert names[-1] == ("WARNING", "CRITICAL")
    assert report["events"][-1][2] >= report["critical"]
    assert events.get("oom_kill", 0) == 0


def test_memwarden_monitor_default_works_in_a_fresh_process() -> None:
    """In a fresh interpreter the default monitor samples the real process at its interval."""
    code = textwrap.dedent(
        """
        import time
        from memwarden.monitoring import monitor
        m = monitor()
        deadline = time.monotonic() + 20
        while m.stats().samples < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        st = m.stats()
        print(st.samples, st.current_rss_bytes, m.config.max_memory_bytes)
        """
    )
    env = {"MEMWARDEN_MONITORING_INTERVAL_S": "0.01", "MEMWARDEN_MAX_MEMORY": "1 GiB", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    samples, current, max_bytes = (int(x) for x in out.stdout.split())
    assert samples >= 3
    assert current > MiB
    assert max_bytes == 1 << 30


def test_the_docs_example_runs() -> None:
    """The first Python example in docs/monitoring.md runs and reaches CRITICAL."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
    code = doc.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "level OK -> WARNING" in out.stdout or "level OK -> CRITICAL" in out.stdout
    assert "memwarden_level 3.0" in out.stdout  # CRITICAL on the shared scale
    assert "OperationStats(name='load'" in out.stdout
