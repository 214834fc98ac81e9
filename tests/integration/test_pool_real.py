"""BufferPool against a real process: RSS under churn, trim() through the governor giving
memory back to the kernel, and fork safety of pooled buffers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

MIB = 1 << 20


def _run(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object last."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_rss_flat_under_churn_and_trim_returns_memory() -> None:
    """1 GiB of 1 MiB acquire/write/release keeps RSS flat; governor relief unmaps idle buffers."""
    out = _run(
        """
        import json
        from memwarden.pool import BufferPool
        from memwarden.pressure import governor
        from memwarden.probes import rss

        pool = BufferPool(max_bytes="64 MiB", name="churn-pool")
        payload = b"x" * (1 << 20)
        samples = []
        for i in range(1024):
            with pool.acquire(1 << 20) as view:
                view[:] = payload
            if i % 64 == 63:
                samples.append(rss())
        # Fill 48 MiB of idle buffers, then ask the governor for relief.
        handles = [pool.acquire(1 << 20) for _ in range(48)]
        for h in handles:
            h.view[:] = payload
        del h
        for h in handles:
            h.release()
        handles.clear()
        before = rss()
        run = governor().relieve(reason="test")
        after = rss()
        step = [s for s in run.steps if s.name == "churn-pool"]
        print(json.dumps({
            "samples": samples,
            "before": before,
            "after": after,
            "reported": step[0].reported_bytes if step else None,
            "stats": pool.stats().__dict__,
        }))
        """
    )
    samples = out["samples"]
    assert isinstance(samples, list)
    assert max(samples) - min(samples) < 4 * MIB, samples
    stats = out["stats"]
    assert isinstance(stats, dict)
    assert stats["misses"] == 48
    assert out["reported"] == 48 * MIB
    before, after = out["before"], out["after"]
    assert isinstance(before, int)
    assert isinstance(after, int)
    assert before - after > 40 * MIB


def test_pooled_buffers_are_not_shared_across_fork() -> None:
    """A child's writes into a pooled buffer after fork never reach the parent's buffer."""
    out = _run(
        """
        import json, os
        from memwarden.pool import BufferPool

        pool = BufferPool(max_bytes="1 MiB", zero_on_release=False, register=False)
        h = pool.acquire(4096)
        h.view[:6] = b"parent"
        pid = os.fork()
        if pid == 0:
            h.view[:6] = b"child!"
            h.release()
            with pool.acquire(4096) as view:  # the child's pool works (its lock is fresh)
                view[:1] = b"c"
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": status, "seen": bytes(h.view[:6]).decode()}))
        """
    )
    assert out == {"status": 0, "seen": "parent"}


def test_read_chunks_borrows_from_a_buffer_pool(tmp_path: Path) -> None:
    """read_chunks(pool=BufferPool) reads a real file through one pooled buffer, then returns it."""
    stream = pytest.importorskip("memwarden.stream")
    from memwarden.pool import BufferPool

    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    pool = BufferPool(max_bytes="4 MiB", register=False)
    for _ in range(3):
        got = b"".join(bytes(c) for c in stream.read_chunks(path, "256 KiB", pool=pool))
        assert got == data
    stats = pool.stats()
    assert (stats.misses, stats.hits, stats.in_use) == (1, 2, 0)
