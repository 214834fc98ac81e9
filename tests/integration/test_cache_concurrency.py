"""Threads hammer caches with get/set/delete/shrink; bounds, bookkeeping and values stay right.

The LRU serves hits without a lock (see memwarden/cache.py); these tests force a
thread switch every microsecond so that its unlocked steps interleave with locked
inserts, evictions and shrinks as often as possible. Each run is bounded by an
operation count and a deadline.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memwarden.cache import LRUCache, TTLCache, WeakCache, cached

DEADLINE_S = 1.5
OPS_PER_THREAD = 40_000
KEYS = 300


@pytest.fixture(autouse=True)
def frequent_switches() -> Iterator[None]:
    """Switch threads every microsecond instead of every 5 ms, to widen the races."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def hammer(workers: list[Callable[[random.Random], None]]) -> list[BaseException]:
    """Run each worker in its own thread until its op count or the deadline; return errors."""
    errors: list[BaseException] = []
    deadline = time.monotonic() + DEADLINE_S

    def loop(work: Callable[[random.Random], None], seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(OPS_PER_THREAD):
                work(rng)
                if i % 256 == 0 and time.monotonic() > deadline:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=loop, args=(w, n), daemon=True) for n, w in enumerate(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DEADLINE_S + 30)
    assert not any(t.is_alive() for t in threads), "a worker is stuck (deadlock?)"
    return errors


class Counter:
    """Counts lookups under a lock (the cache's own counters are lock-free)."""

    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def add(self) -> None:
        with self.lock:
            self.n += 1


def lru_workers(
    cache: Any, lookups: Counter, wrong: list[Any]
) -> list[Callable[[random.Random], None]]:
    def reader(rng: random.Random) -> None:
        key = rng.randrange(KEYS)
        value = cache.get(key)
        lookups.add()
        if value is not None and value[0] != key:
            wrong.append((key, value))

    def subscript_reader(rng: random.Random) -> None:
        key = rng.randrange(KEYS)
        try:
            value = cache[key]
        except KeyError:
            value = None
        lookups.add()
        if value is not None and value[0] != key:
            wrong.append((key, value))

    def writer(rng: random.Random) -> None:
        key = rng.randrange(KEYS)
        cache[key] = (key, rng.randrange(1, 200))

    def deleter(rng: random.Random) -> None:
        key = rng.randrange(KEYS)
        if rng.random() < 0.5:
            cache.pop(key, None)
        else:
            with contextlib.suppress(KeyError):
                del cache[key]

    def shrinker(rng: random.Random) -> None:
        if rng.random() < 0.01:
            cache.shrink(rng.choice([0.1, 0.5]))
        elif rng.random() < 0.002:
            cache.clear()
        else:
            list(cache.items())  # iteration under concurrent change must not raise
            time.sleep(0)

    def watcher(rng: random.Random) -> None:
        # Lock-free, as any reader: inserts make room before they add, so even a
        # reader between two steps of an insert never sees more than maxsize entries.
        n = len(cache._od)
        if cache.maxsize is not None and n > cache.maxsize:
            wrong.append(("over maxsize", n))

    return [reader, reader, subscript_reader, writer, writer, deleter, shrinker, watcher]


def _size(value: Any) -> int:
    return int(value[1])


@pytest.mark.parametrize(
    "config",
    [
        {"maxsize": 64},
        {"maxsize": 3000, "getsizeof": _size},
        {"max_bytes": 3000, "getsizeof": _size},
        {"maxsize": 64, "max_bytes": 3000, "getsizeof": _size},
        {"maxsize": 64, "max_bytes": 3000, "ttl": 0.01, "getsizeof": _size},
    ],
    ids=["count", "weighed", "bytes", "count+bytes", "count+bytes+ttl"],
)
def test_lru_cache_under_contention(config: dict[str, Any]) -> None:
    """Bounds hold, sizes add up, no wrong-key value comes back, callbacks match evictions."""
    evicted: list[Any] = []
    ttl = config.pop("ttl", None)
    common: dict[str, Any] = {"on_evict": lambda k, v: evicted.append(k), "governor": None}
    if ttl is None:
        cache: Any = LRUCache(**common, **config)
    else:
        cache = TTLCache(config.pop("maxsize"), ttl, **common, **config)
    lookups, wrong = Counter(), []
    errors = hammer(lru_workers(cache, lookups, wrong))
    assert errors == []
    assert wrong == []
    od = cache._od
    if cache._count_bound is not None:
        assert len(od) <= cache._count_bound
    if cache._size_bound is not None:
        assert cache.currsize <= cache._size_bound
    if cache._sizes is not None:
        assert set(cache._sizes) == set(od)
        assert cache._bytes == sum(v[1] for v in od.values()) == sum(cache._sizes.values())
    if cache.max_bytes is not None:
        assert cache.currsize <= cache.max_bytes
    stats = cache.stats()
    assert len(evicted) == stats.evictions + stats.expirations
    assert 0 < stats.hits + stats.misses <= lookups.n
    assert stats.hits > 0
    if ttl is not None:
        assert set(cache._expires) == set(od)


def test_weak_cache_under_contention() -> None:
    """WeakCache keeps its strong part bounded and never returns another key's value."""

    class Box:
        def __init__(self, key: int) -> None:
            self.key = key

    cache: WeakCache[int, Box] = WeakCache(32, register=False)
    wrong: list[Any] = []
    keep = [Box(k) for k in range(0, KEYS, 10)]  # some values the program holds

    def reader(rng: random.Random) -> None:
        key = rng.randrange(KEYS)
        value = cache.get(key)
        if value is not None and value.key != key:
            wrong.append(key)

    def writer(rng: random.Random) -> None:
        key = rng.randrange(KEYS)
        cache[key] = keep[key // 10] if key % 10 == 0 else Box(key)

    def churner(rng: random.Random) -> None:
        if rng.random() < 0.05:
            cache.shrink(0.5)
        else:
            list(cache)

    errors = hammer([reader, reader, writer, writer, churner])
    assert errors == []
    assert wrong == []
    assert len(cache._strong) <= 32


def test_cached_function_under_contention() -> None:
    """A cached function called from many threads always returns its own result."""

    @cached(LRUCache(50, register=False))
    def square(x: int) -> int:
        return x * x

    wrong: list[int] = []

    def caller(rng: random.Random) -> None:
        x = rng.randrange(200)
        if square(x) != x * x:
            wrong.append(x)

    errors = hammer([caller] * 6)
    assert errors == []
    assert wrong == []
    assert len(square.cache) <= 50  # type: ignore[attr-defined]
