"""Survive a hard memory limit: the same service dies ungoverned and finishes governed.

The workload is service-like: a request loop that caches every response (about
128 KiB each) in a cache nobody bounds, and every 200 requests a batch job with a
24 MiB temporary. It needs about 550 MiB if nothing is ever dropped.

* ``--child ungoverned``: a plain ``dict`` cache. Under a 300 MiB limit the kernel
  OOM-kills it (cgroup) or an allocation fails with ``MemoryError`` (RLIMIT_DATA).
* ``--child governed``: a ``memwarden.cache.LRUCache`` with no entry limit of its own,
  registered with the process-wide governor as a reliever; the governor watches
  (cgroup usage thresholds and PSI where the kernel has them, RSS sampling always)
  and, under pressure, shrinks the cache, collects garbage and trims malloc; the
  batch job waits for relief before allocating. It finishes under the limit.

Run the whole demo (as root it makes a 300 MiB memory cgroup; otherwise it uses
RLIMIT_DATA)::

    python examples/survive_limit.py

Each child prints one JSON line with what happened.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MiB = 1 << 20
REQUESTS = 4400
VALUE_BYTES = 128 * 1024
BATCH_EVERY = 200
BATCH_BYTES = 24 * MiB


def handle_request(i: int, cache: Any) -> int:
    """Render a response (its own, fully written buffer) and cache it forever."""
    key = f"user:{i}"
    value = cache.get(key)
    if value is None:
        value = i.to_bytes(8, "little") * (VALUE_BYTES // 8)
        cache[key] = value
    return len(value)


def batch_job(rng: random.Random) -> int:
    """A batch step with a big temporary working set, dropped at the end."""
    chunks = [rng.randbytes(64) * (MiB // 64) for _ in range(BATCH_BYTES // MiB)]
    return sum(c[0] for c in chunks)


def run_service(*, governed: bool, requests: int) -> dict[str, Any]:
    """Serve ``requests`` requests; return what happened."""
    from memwarden.probes import peak_rss, rss

    rng = random.Random(42)
    out: dict[str, Any] = {"mode": "governed" if governed else "ungoverned"}
    t0 = time.perf_counter()
    if governed:
        from memwarden.cache import LRUCache
        from memwarden.pressure import governor

        gov = governor()
        # No entry limit: only the governor's relief keeps this cache in check.
        cache: Any = LRUCache(maxsize=10**9, getsizeof=len, name="responses")
        gov.interval_s = 0.02  # RSS sampling is ~1 us; kernel events arrive sooner still
        gov.start()
        out["mechanisms"] = gov.mechanisms()
        out["budget_bytes"] = gov.budget_bytes
    else:
        cache = {}
    done = 0
    for i in range(requests):
        handle_request(i, cache)
        if i % BATCH_EVERY == BATCH_EVERY - 1:
            if governed:
                gov.wait_for_relief(timeout=30)
            batch_job(rng)
        done = i + 1
    out["requests_done"] = done
    out["cache_entries"] = len(cache)
    out["duration_s"] = round(time.perf_counter() - t0, 3)
    out["rss_bytes"] = rss()
    out["peak_rss_bytes"] = peak_rss()
    if governed:
        stats = gov.stats()
        out["relief_runs"] = stats["relief_runs"]
        out["pressure_episodes"] = stats["pressure_episodes"]
        out["kernel_events"] = stats["kernel_events"]
        out["relief_freed_bytes"] = sum(r.freed_bytes for r in gov.history())
        first = next((r for r in gov.history() if r.steps), None)
        out["first_relief_steps"] = [s.name for s in first.steps] if first else []
        gov.stop()
    return out


# ---------------------------------------------------------------------------
# the demo driver: a hard limit for each child


@contextlib.contextmanager
def _memory_cgroup(limit_bytes: int) -> Iterator[Path | None]:
    """A child memory cgroup under ours with ``limit_bytes`` (None if not permitted)."""
    from memwarden.probes import cgroup_info

    info = cgroup_info()
    if os.geteuid() != 0 or info is None or not os.access(info.directory, os.W_OK):
        yield None
        return
    path = info.directory / f"survive-limit-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
        limit_file = "memory.limit_in_bytes" if info.version == 1 else "memory.max"
        (path / limit_file).write_text(str(limit_bytes))
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        yield None
        return
    try:
        yield path
    finally:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def _preexec(cgroup: Path | None, limit_bytes: int) -> Callable[[], None]:
    def enter() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        else:
            resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    return enter


def demo(limit_bytes: int = 300 * MiB, requests: int = REQUESTS) -> int:
    """Run both children under the same hard limit and print the comparison."""
    with _memory_cgroup(limit_bytes) as cg:
        how = f"cgroup {cg}" if cg is not None else "RLIMIT_DATA"
        print(f"hard limit: {limit_bytes // MiB} MiB via {how}")
        for mode in ("ungoverned", "governed"):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--requests", str(requests)],
                preexec_fn=_preexec(cg, limit_bytes),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if proc.returncode == 0:
                print(f"{mode:>10}: finished: {proc.stdout.strip()}")
            else:
                tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                print(f"{mode:>10}: died with exit code {proc.returncode}: {tail}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("governed", "ungoverned"))
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--limit-mib", type=int, default=300)
    args = parser.parse_args(argv)
    if args.child is None:
        return demo(args.limit_mib * MiB, args.requests)
    result = run_service(governed=args.child == "governed", requests=args.requests)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
