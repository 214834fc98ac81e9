"""Cache throughput and per-entry memory: LRUCache vs cachetools, lru_cache and OrderedDict.

Workload (issue 5): 1e6 operations over 100k keys with about 80% hits, maxsize 10k.
An operation on a mapping cache is ``v = cache.get(k)`` and, on a miss,
``cache[k] = value``; on a decorated function it is one call. Times are the
thread's CPU time (other builds share this machine), interleaved chunk by chunk.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import random
import statistics
import threading
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import cachetools

from memwarden.cache import LRUCache, cached

#: Whether LRUCache's hot paths are the C extension's in this run.
_C_CORE = importlib.util.find_spec("memwarden._lrucore") is not None

N_OPS = 1_000_000
N_KEYS = 100_000
MAXSIZE = 10_000
HOT_KEYS = 5_000
HOT_SHARE = 0.8
ROUNDS = 5
CHUNK = 20_000
TARGET = 2.0  # vs cachetools made thread-safe as its docs say (a lock around it)
LRU_GAP_TARGET = 1.5  # at most this many times functools.lru_cache's time

Decorator = Callable[[Callable[[int], int]], Callable[[int], int]]


class OrderedDictLRU:
    """The textbook LRU: an OrderedDict, no lock (not thread-safe)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.od: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, default: Any = None) -> Any:
        od = self.od
        if key in od:
            od.move_to_end(key)
            return od[key]
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        od = self.od
        od[key] = value
        od.move_to_end(key)
        if len(od) > self.maxsize:
            od.popitem(last=False)


class LockedOrderedDictLRU(OrderedDictLRU):
    """The same with a threading.Lock around every operation (thread-safe, the naive way)."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self.lock:
            return super().get(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        with self.lock:
            super().__setitem__(key, value)


class LockedCachetoolsLRU:
    """cachetools.LRUCache made thread-safe as a user does: one Lock around each use."""

    def __init__(self, maxsize: int) -> None:
        self.cache: cachetools.LRUCache[Any, Any] = cachetools.LRUCache(maxsize)
        self.lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self.lock:
            return self.cache.get(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        with self.lock:
            self.cache[key] = value


def workload(seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return [
        rng.randrange(HOT_KEYS) if rng.random() < HOT_SHARE else rng.randrange(N_KEYS)
        for _ in range(N_OPS)
    ]


def mapping_runner(cache: Any) -> Callable[[list[int]], float]:
    get = cache.get

    def run_chunk(keys: list[int]) -> float:
        t0 = time.thread_time()
        for k in keys:
            v = get(k)
            if v is None:
                cache[k] = k
        return time.thread_time() - t0

    return run_chunk


def function_runner(decorate: Decorator) -> Callable[[list[int]], float]:
    def ident(k: int) -> int:
        return k

    f = decorate(ident)

    def run_chunk(keys: list[int]) -> float:
        t0 = time.thread_time()
        for k in keys:
            f(k)
        return time.thread_time() - t0

    return run_chunk


MAPPINGS: dict[str, Callable[[], Any]] = {
    "cachetools.LRUCache": lambda: cachetools.LRUCache(MAXSIZE),
    "cachetools.LRUCache + Lock": lambda: LockedCachetoolsLRU(MAXSIZE),
    "memwarden LRUCache": lambda: LRUCache(MAXSIZE, governor=None),
    "OrderedDict LRU, no lock": lambda: OrderedDictLRU(MAXSIZE),
    "OrderedDict LRU + Lock": lambda: LockedOrderedDictLRU(MAXSIZE),
}
FUNCTIONS: dict[str, Decorator] = {
    "@cachetools.cached(LRUCache)": lambda f: cachetools.cached(cachetools.LRUCache(MAXSIZE))(f),
    "@cachetools.cached(LRUCache, lock=Lock())": lambda f: cachetools.cached(
        cachetools.LRUCache(MAXSIZE), lock=threading.Lock()
    )(f),
    "@memwarden cached(LRUCache)": lambda f: cached(LRUCache(MAXSIZE, governor=None))(f),
    "@functools.lru_cache": lambda f: functools.lru_cache(maxsize=MAXSIZE)(f),
}


def hit_ratio(keys: list[int]) -> float:
    f = functools.lru_cache(maxsize=MAXSIZE)(lambda k: k)
    for k in keys:
        f(k)
    info = f.cache_info()
    return info.hits / (info.hits + info.misses)


def per_entry_bytes(fill: Callable[[list[int], list[object]], object], n: int = MAXSIZE) -> float:
    """Bytes the cache structure itself allocates per entry (keys and values pre-made)."""
    keys = list(range(10**6, 10**6 + n))
    values = [object() for _ in range(n)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        holder = fill(keys, values)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del holder
    return (after - before) / n


def fill_mapping(make: Callable[[], Any]) -> Callable[[list[int], list[object]], object]:
    def fill(keys: list[int], values: list[object]) -> object:
        cache = make()
        for k, v in zip(keys, values, strict=True):
            cache[k] = v
        return cache

    return fill


def fill_lru_cache(keys: list[int], values: list[object]) -> object:
    first = keys[0]
    f = functools.lru_cache(maxsize=MAXSIZE)(lambda k: values[k - first])
    for k in keys:
        f(k)
    return f


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:,.0f}"


def run() -> str:
    keys = workload()
    ratio = hit_ratio(keys)
    names = [*MAPPINGS, *FUNCTIONS]
    chunks = [keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK)]
    # chunk_times[name][round][chunk]: every variant runs chunk i right after the
    # others (in a shuffled order), so a burst of load from the other builds on this
    # machine hits all of them alike; chunk i is the same work in every round.
    chunk_times: dict[str, list[list[float]]] = {name: [] for name in names}
    for rnd in range(ROUNDS):
        runners = {name: mapping_runner(make()) for name, make in MAPPINGS.items()}
        runners.update({name: function_runner(deco) for name, deco in FUNCTIONS.items()})
        for name in names:
            chunk_times[name].append([])
        gc.collect()
        gc.disable()
        try:
            rng = random.Random(rnd)
            for chunk in chunks:
                order = names[:]
                rng.shuffle(order)
                for name in order:
                    chunk_times[name][rnd].append(runners[name](chunk))
        finally:
            gc.enable()
    # best: per chunk, the least disturbed of the rounds, summed; median: of round totals
    best = {
        name: sum(min(r[i] for r in rounds) for i in range(len(chunks)))
        for name, rounds in chunk_times.items()
    }
    median = {
        name: statistics.median(sum(r) for r in rounds) for name, rounds in chunk_times.items()
    }

    ref = "cachetools.LRUCache"
    fref = "@cachetools.cached(LRUCache)"
    lines = [
        "## Caches: LRUCache throughput and per-entry memory",
        "",
        f"{N_OPS:,} operations over {N_KEYS:,} keys ({HOT_SHARE:.0%} of them drawn from"
        f" {HOT_KEYS:,} hot keys), maxsize {MAXSIZE:,}: hit ratio {ratio:.1%}. A mapping"
        " operation is `v = cache.get(k)` plus `cache[k] = v` on a miss; a function"
        " operation is one call of the decorated identity function. Thread CPU time; the"
        f" workload is cut into {len(chunks)} chunks of {CHUNK:,} operations and every"
        " variant runs each chunk in turn (shuffled), so load from other builds on this"
        f" shared machine hits all alike; {ROUNDS} rounds on fresh caches. *best* = the sum"
        " over chunks of each chunk's best round; the median of the round totals is in"
        " brackets. Speedup = reference time / time.",
        "",
        "| mapping cache | thread-safe | time (ms) | vs cachetools.LRUCache best | median |",
        "|---|---|---:|---:|---:|",
    ]
    safe = {
        "cachetools.LRUCache": "no",
        "cachetools.LRUCache + Lock": "yes",
        "memwarden LRUCache": "yes",
        "OrderedDict LRU, no lock": "no",
        "OrderedDict LRU + Lock": "yes",
    }
    for name in MAPPINGS:
        lines.append(
            f"| {name} | {safe[name]} | {fmt_ms(best[name])} ({fmt_ms(median[name])}) |"
            f" {best[ref] / best[name]:.2f}x | {median[ref] / median[name]:.2f}x |"
        )
    lines += [
        "",
        "| decorated function | time (ms) | vs @cachetools.cached best | median |",
        "|---|---:|---:|---:|",
    ]
    for name in FUNCTIONS:
        lines.append(
            f"| {name} | {fmt_ms(best[name])} ({fmt_ms(median[name])}) |"
            f" {best[fref] / best[name]:.2f}x | {median[fref] / median[name]:.2f}x |"
        )

    mw = "memwarden LRUCache"
    locked = "cachetools.LRUCache + Lock"
    speedup = best[locked] / best[mw]
    speedup_med = median[locked] / median[mw]
    bare = best[ref] / best[mw]
    lru_gap = best[mw] / best["@functools.lru_cache"]
    lru_gap_med = median[mw] / median["@functools.lru_cache"]
    fn_gap = best["@memwarden cached(LRUCache)"] / best["@functools.lru_cache"]
    met = speedup >= TARGET
    gap_met = lru_gap <= LRU_GAP_TARGET
    lines += [
        "",
        f"**Target** (memwarden `LRUCache` >= {TARGET}x cachetools made thread-safe with a"
        f" lock, as its documentation says to): {speedup:.2f}x best, {speedup_med:.2f}x"
        f" median — {'met' if met else '**not met**'} ({bare:.2f}x the bare, not"
        " thread-safe, cachetools).",
        "",
        f"**Target** (within {LRU_GAP_TARGET}x of `functools.lru_cache`): {lru_gap:.2f}x"
        f" best, {lru_gap_med:.2f}x median — {'met' if gap_met else '**not met**'}.",
        "",
        f"**Gap to `functools.lru_cache`** (C): as a mapping, memwarden's `LRUCache` takes"
        f" {lru_gap:.2f}x the time of a call to an `lru_cache`-decorated function; as a"
        f" decorator, `@cached(LRUCache(...))` takes {fn_gap:.1f}x. memwarden's `get`,"
        " `cache[k]` and count-bounded `cache[k] = v` run in C"
        f" (`memwarden._lrucore`: {'built' if _C_CORE else '**not built** in this run'}),"
        " over the same `OrderedDict` and lock as the Python paths that serve without the"
        " extension; `@cached` still pays one Python frame per call. Use `lru_cache` for"
        " pure functions of hashable arguments that need no byte bound, no TTL, no eviction"
        " callback, no relief under memory pressure and no per-instance caching of methods.",
        "",
    ]

    entries = {
        "cachetools.LRUCache": per_entry_bytes(fill_mapping(MAPPINGS["cachetools.LRUCache"])),
        "memwarden LRUCache": per_entry_bytes(fill_mapping(MAPPINGS["memwarden LRUCache"])),
        "memwarden LRUCache(max_bytes=…)": per_entry_bytes(
            fill_mapping(lambda: LRUCache(max_bytes=10**9, getsizeof=lambda v: 16, governor=None))
        ),
        "OrderedDict LRU": per_entry_bytes(fill_mapping(MAPPINGS["OrderedDict LRU, no lock"])),
        "functools.lru_cache": per_entry_bytes(fill_lru_cache),
        "dict (no eviction order)": per_entry_bytes(fill_mapping(dict)),
    }
    lines += [
        f"Per-entry memory of the cache structure ({MAXSIZE:,} int keys to pre-made values,"
        " measured with tracemalloc; keys and values themselves excluded):",
        "",
        "| structure | bytes per entry | vs cachetools |",
        "|---|---:|---:|",
    ]
    for name, b in entries.items():
        lines.append(f"| {name} | {b:.0f} | {b / entries['cachetools.LRUCache']:.2f}x |")
    lines += [
        "",
        "memwarden's LRUCache keeps one `OrderedDict` (cachetools keeps a dict plus an"
        " `OrderedDict` for the order); byte-bounded caches add one size per entry.",
        "",
        "Reproduce: `python bench/run.py cache`",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
