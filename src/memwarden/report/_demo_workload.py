"""The workloads ``memwarden demo`` profiles: one log analysis, naive and the memwarden way.

Run as ``python -m memwarden.report._demo_workload {naive|memwarden} LOG OUT.json``.
Both compute the same report of a synthetic access log (counts per level and
per service/status, latency percentiles per normalized route, the top users by
bytes, totals) and write it as JSON, so the demo can check the results are equal.

- ``naive``: reads the whole file into one string, splits it into a list of
  lines, parses every line into a record kept in a list, deep-clones the list
  (a pickle round trip, "so the analysis cannot change the input"), memoizes
  route normalization in an unbounded dict, and keeps every latency to sort.
- ``memwarden``: streams lines (:func:`memwarden.stream.iter_lines`, chunks in a
  :class:`memwarden.pool.BufferPool`), parses them in adaptive batches
  (:class:`memwarden.batch.AdaptiveBatchProcessor`) under the monitor's
  ``track()`` spans, normalizes routes through a bounded cache
  (``memwarden.cache.LRUCache`` when present, ``functools.lru_cache`` otherwise),
  and keeps latency histograms (exact percentiles of integer milliseconds)
  instead of every value.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["COMPONENTS", "generate_log", "main", "run_memwarden", "run_naive"]

LINE_RE = re.compile(
    r"^(\S+) level=(\w+) svc=(\w+) method=(\w+) path=(\S+) status=(\d+) ms=(\d+) bytes=(\d+) "
    r"user=(\w+)$"
)
_ID_RE = re.compile(r"/\d+")
_MAX_MS = 5000

_SERVICES = ("api", "auth", "billing", "search", "media", "admin")
_METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE")
_ROUTES = (
    "/items/{}",
    "/items/{}/reviews",
    "/users/{}",
    "/users/{}/orders/{}",
    "/search",
    "/cart/{}",
    "/media/{}/thumb",
    "/health",
)
_LEVELS = ("INFO",) * 16 + ("WARN",) * 3 + ("ERROR",)
_STATUSES = (200,) * 20 + (201, 204, 301, 304, 400, 401, 403, 404, 404, 500, 503)

#: Which memwarden component each piece of the memwarden version used in this run.
COMPONENTS: dict[str, str] = {}


def generate_log(path: str | Path, size_bytes: int, *, seed: int = 1) -> int:
    """Write a deterministic synthetic access log of about ``size_bytes``; return the line count."""
    rng = random.Random(seed)
    # Pre-built field combinations keep generation to a few random draws per line.
    heads = [
        f" level={rng.choice(_LEVELS)} svc={rng.choice(_SERVICES)} method={rng.choice(_METHODS)}"
        for _ in range(4096)
    ]
    tails = [
        f" status={rng.choice(_STATUSES)} ms={min(_MAX_MS, int(rng.expovariate(1 / 40)))} bytes="
        for _ in range(4096)
    ]
    routes = [r.replace("{}", "%d") for r in _ROUTES]
    nids = [r.count("{}") for r in _ROUTES]
    bits = rng.getrandbits
    lines = 0
    written = 0
    with Path(path).open("w", encoding="ascii", newline="\n") as fh:
        while written < size_bytes:
            block = []
            for _ in range(5000):
                sec = lines // 50
                r = bits(3)
                n = nids[r]
                route = (
                    routes[r] % ((bits(16),) if n == 1 else (bits(16), bits(16)))[:n]
                    if n
                    else routes[r]
                )
                block.append(
                    f"2026-01-01T{sec // 3600 % 24:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}."
                    f"{lines % 1000:03d}Z{heads[bits(12)]} path={route}{tails[bits(12)]}"
                    f"{bits(16)} user=u{bits(15):05d}\n"
                )
                lines += 1
            text = "".join(block)
            fh.write(text)
            written += len(text)
    return lines


def _normalize(path: str) -> str:
    return _ID_RE.sub("/{id}", path)


def _percentile_sorted(values: list[int], q: float) -> int:
    # Nearest-rank percentile: the smallest value with at least q of the data at or below it.
    rank = max(1, -(-len(values) * q // 100))
    return values[int(rank) - 1]


def _percentile_hist(hist: list[int], total: int, q: float) -> int:
    rank = max(1, -(-total * q // 100))
    seen = 0
    for ms, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return ms
    raise AssertionError("rank beyond histogram")  # pragma: no cover


def _finish(
    *,
    levels: dict[str, int],
    svc_status: dict[str, int],
    routes: dict[str, dict[str, int]],
    user_bytes: dict[str, int],
    total_bytes: int,
    lines: int,
) -> dict[str, Any]:
    top_users = sorted(user_bytes.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {
        "lines": lines,
        "total_bytes": total_bytes,
        "levels": dict(sorted(levels.items())),
        "svc_status": dict(sorted(svc_status.items())),
        "routes": {k: routes[k] for k in sorted(routes)},
        "top_users": [[u, b] for u, b in top_users],
    }


# ---------------------------------------------------------------------------
# naive


def run_naive(log_path: str) -> dict[str, Any]:
    """Whole-file read, all records in memory, a deep clone, an unbounded cache."""
    import pickle

    with Path(log_path).open(encoding="ascii") as fh:
        data = fh.read()
    lines = data.splitlines()
    records = []
    for line in lines:
        m = LINE_RE.match(line)
        if m is not None:
            records.append(m.groups())
    # "Defensive" deep copy before analysis: doubles the records in memory.
    records = pickle.loads(pickle.dumps(records))
    cache: dict[str, str] = {}  # memoized normalization that never forgets
    levels: dict[str, int] = {}
    svc_status: dict[str, int] = {}
    latencies: dict[str, list[int]] = {}
    user_bytes: dict[str, int] = {}
    total = 0
    for _, level, svc, _method, path, status, ms, nbytes, user in records:
        levels[level] = levels.get(level, 0) + 1
        key = f"{svc} {status}"
        svc_status[key] = svc_status.get(key, 0) + 1
        route = cache.get(path)
        if route is None:
            route = cache[path] = _normalize(path)
        latencies.setdefault(route, []).append(int(ms))
        b = int(nbytes)
        user_bytes[user] = user_bytes.get(user, 0) + b
        total += b
    routes = {}
    for route, values in latencies.items():
        values.sort()
        routes[route] = {
            "count": len(values),
            "p50_ms": _percentile_sorted(values, 50),
            "p95_ms": _percentile_sorted(values, 95),
            "p99_ms": _percentile_sorted(values, 99),
        }
    return _finish(
        levels=levels,
        svc_status=svc_status,
        routes=routes,
        user_bytes=user_bytes,
        total_bytes=total,
        lines=len(records),
    )


# ---------------------------------------------------------------------------
# memwarden


def _bounded_normalizer() -> Callable[[str], str]:
    try:
        from memwarden.cache import LRUCache  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        import functools

        COMPONENTS["cache"] = "functools.lru_cache(maxsize=4096) (memwarden.cache not present)"
        return functools.lru_cache(maxsize=4096)(_normalize)
    cache: Any = LRUCache(4096, max_bytes="4 MiB")
    COMPONENTS["cache"] = "memwarden.cache.LRUCache(4096, max_bytes='4 MiB')"

    def normalize(path: str) -> str:
        route = cache.get(path)
        if route is None:
            route = _normalize(path)
            cache[path] = route
        return str(route)

    return normalize


def _lines(log_path: str) -> Iterable[str]:
    try:
        from memwarden.pool import BufferPool
        from memwarden.stream import iter_lines
    except ImportError:  # pragma: no cover - both ship with memwarden
        COMPONENTS["stream"] = "built-in file iteration (memwarden.stream not present)"
        return Path(log_path).open(encoding="ascii")
    pool = BufferPool(max_bytes="4 MiB")
    COMPONENTS["stream"] = "memwarden.stream.iter_lines(chunk_size='1 MiB')"
    COMPONENTS["pool"] = "memwarden.pool.BufferPool(max_bytes='4 MiB')"
    return iter_lines(log_path, encoding="ascii", chunk_size="1 MiB", pool=pool)


def run_memwarden(log_path: str) -> dict[str, Any]:
    """Streaming, pooled buffers, a bounded cache, adaptive batches, under the monitor."""
    from memwarden.batch import AdaptiveBatchProcessor
    from memwarden.monitoring import track

    COMPONENTS["batch"] = "memwarden.batch.AdaptiveBatchProcessor(max_batch=50_000)"
    COMPONENTS["monitor"] = "memwarden.track() spans per batch"
    normalize = _bounded_normalizer()
    levels: dict[str, int] = {}
    svc_status: dict[str, int] = {}
    hists: dict[str, list[int]] = {}
    user_bytes: dict[str, int] = {}
    state = {"total": 0, "lines": 0}

    def process(batch: list[str]) -> None:
        with track("parse batch"):
            total = 0
            for line in batch:
                m = LINE_RE.match(line)
                if m is None:
                    continue
                _, level, svc, _method, path, status, ms, nbytes, user = m.groups()
                levels[level] = levels.get(level, 0) + 1
                key = f"{svc} {status}"
                svc_status[key] = svc_status.get(key, 0) + 1
                route = normalize(path)
                hist = hists.get(route)
                if hist is None:
                    hist = hists[route] = [0] * (_MAX_MS + 1)
                hist[min(int(ms), _MAX_MS)] += 1
                b = int(nbytes)
                user_bytes[user] = user_bytes.get(user, 0) + b
                total += b
                state["lines"] += 1
            state["total"] += total

    processor: AdaptiveBatchProcessor[str, None] = AdaptiveBatchProcessor(
        process, max_memory="256 MiB", max_batch=50_000, initial_batch=5_000
    )
    for _ in processor.run(_lines(log_path)):
        pass
    with track("summarize"):
        routes = {}
        for route, hist in hists.items():
            count = sum(hist)
            routes[route] = {
                "count": count,
                "p50_ms": _percentile_hist(hist, count, 50),
                "p95_ms": _percentile_hist(hist, count, 95),
                "p99_ms": _percentile_hist(hist, count, 99),
            }
        return _finish(
            levels=levels,
            svc_status=svc_status,
            routes=routes,
            user_bytes=user_bytes,
            total_bytes=state["total"],
            lines=state["lines"],
        )


def main(argv: list[str] | None = None) -> int:
    """``{naive|memwarden} LOG OUT.json``: run one variant and write its result."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] not in ("naive", "memwarden"):
        sys.stderr.write(
            "usage: python -m memwarden.report._demo_workload naive|memwarden LOG OUT\n"
        )
        return 2
    variant, log_path, out = args
    result = run_naive(log_path) if variant == "naive" else run_memwarden(log_path)
    result["components"] = dict(COMPONENTS)
    Path(out).write_text(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
