"""The demo's service: a request loop that caches every response, run ungoverned or governed.

Each request renders a response of about 128 KiB and caches it; every 200 requests a
batch job needs a 24 MiB temporary. Nothing bounds the cache, so the service needs about
550 MiB if nothing is dropped. Under a hard limit of 300 MiB:

* ``ungoverned`` keeps a plain ``dict``: the kernel OOM-kills it (memory cgroup) or an
  allocation fails with ``MemoryError`` (RLIMIT_DATA).
* ``governed`` keeps a :class:`memwarden.LRUCache` with no bound of its own, registered
  with the process-wide governor, which shrinks it under pressure (with ``gc`` and
  ``malloc_trim``); the batch job waits for relief before allocating. It finishes.

The child puts itself under the limit (``MEMWARDEN_DEMO_CGROUP``: a cgroup directory to
join; else ``MEMWARDEN_DEMO_RLIMIT``: bytes of RLIMIT_DATA), writes its result as JSON
and, when run under ``memwarden run``, each relief run as an event on the trace's timeline.

    python -m memwarden.report._demo_service governed|ungoverned OUT.json
"""

from __future__ import annotations

import json
import logging
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

MiB = 1 << 20
REQUESTS = 4400
VALUE_BYTES = 128 * 1024
BATCH_EVERY = 200
BATCH_BYTES = 24 * MiB
LIMIT_BYTES = 300 * MiB


def handle_request(i: int, cache: Any) -> int:
    """Render a response (its own, fully written buffer) and cache it."""
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


def enter_limit() -> str:
    """Put this process under the demo's hard limit; return how."""
    cgroup = os.environ.get("MEMWARDEN_DEMO_CGROUP")
    if cgroup:
        Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))
        return f"memory cgroup {cgroup}"
    limit = int(os.environ.get("MEMWARDEN_DEMO_RLIMIT", str(LIMIT_BYTES)))
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return f"RLIMIT_DATA {limit // MiB} MiB"


class _TimelineEvents:
    """Appends relief runs to the ``memwarden run`` trace as timeline events (after the run:
    writing during it would put the demo's own I/O inside the measurement)."""

    def __init__(self) -> None:
        path = os.environ.get("MEMWARDEN_TRACE_FILE")
        self.t0 = float(os.environ.get("MEMWARDEN_TRACE_T0", "nan"))
        self.fd: int | None = None
        if path and self.t0 == self.t0:
            # The run engine created the file; never create or follow a link here.
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)

    def relief(self, run: Any) -> None:
        if self.fd is None:
            return
        from memwarden.report.trace import append_record

        append_record(
            self.fd,
            {
                "type": "event",
                "t_s": round(run.started_s - self.t0, 4),  # the governor's clock is monotonic
                "kind": "relief",
                "message": run.summary(),
            },
        )


def run_service(*, governed: bool, requests: int = REQUESTS) -> dict[str, Any]:
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
        history = gov.history()
        stats = gov.stats()
        out["relief_runs"] = len(history)
        out["pressure_episodes"] = stats.pressure_episodes
        out["kernel_events"] = stats.kernel_events
        out["relief_freed_bytes"] = sum(r.freed_bytes for r in history)
        first = next((r for r in history if r.steps), None)
        out["first_relief_steps"] = [st.name for st in first.steps] if first else []
        events = _TimelineEvents()
        for run in history:
            events.relief(run)
        gov.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m memwarden.report._demo_service MODE OUT.json``: serve under the limit."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("governed", "ungoverned"):
        print("usage: python -m memwarden.report._demo_service governed|ungoverned OUT.json")
        return 2
    # The table and the timeline tell the story; the governor's pressure warnings
    # would only interleave with the parent's output.
    logging.getLogger("memwarden").setLevel(logging.ERROR)
    how = enter_limit()
    result = run_service(governed=args[0] == "governed")
    result["limit"] = how
    Path(args[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
