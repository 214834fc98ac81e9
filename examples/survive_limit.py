"""Survive a hard memory limit: the same service dies ungoverned and finishes governed.

The workload (``memwarden.report._demo_service``, part two of ``memwarden demo``) is
service-like: a request loop that caches every response (about 128 KiB each) in a cache
nobody bounds, and every 200 requests a batch job with a 24 MiB temporary. It needs
about 550 MiB if nothing is ever dropped.

* ``--child ungoverned``: a plain ``dict`` cache. Under a 300 MiB limit the kernel
  OOM-kills it (cgroup) or an allocation fails with ``MemoryError`` (RLIMIT_DATA).
* ``--child governed``: a ``memwarden.LRUCache`` with no entry limit of its own,
  registered with the process-wide governor as a reliever; under pressure the governor
  shrinks the cache, collects garbage and trims malloc, and the batch job waits for
  relief before allocating. It finishes under the limit.

Run the whole demo (as root it makes a 300 MiB memory cgroup; otherwise it uses
RLIMIT_DATA)::

    python examples/survive_limit.py

Each child prints one JSON line with what happened.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from memwarden.report._demo_service import REQUESTS, run_service
from memwarden.report.demo import hard_limit

MiB = 1 << 20


def _preexec(cgroup: Path | None, limit_bytes: int) -> Callable[[], None]:
    def enter() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        else:
            resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    return enter


def demo(limit_bytes: int = 300 * MiB, requests: int = REQUESTS) -> int:
    """Run both children under the same hard limit and print the comparison."""
    with hard_limit(limit_bytes) as (cg, how):
        print(f"hard limit: {how}")
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
