"""One contract every memwarden cache keeps, run against each cache class and configuration."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import pytest

from memwarden.cache import CacheStats, ItemTooLargeError, LRUCache, TTLCache, WeakCache, cached
from memwarden.exceptions import ConfigurationError

BOUND = 16


class Val:
    """A weakly referenceable value (WeakCache cannot hold ints or strings)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Val({self.n})"


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Kind:
    name: str
    make: Callable[..., Any]


KINDS = [
    Kind("lru-count", lambda register=False: LRUCache(BOUND, register=register)),
    Kind(
        "lru-bytes",
        lambda register=False: LRUCache(
            max_bytes=BOUND * 100, getsizeof=lambda v: 100, register=register
        ),
    ),
    Kind(
        "lru-count-and-default-sizeof",
        lambda register=False: LRUCache(BOUND, max_bytes="1 MiB", register=register),
    ),
    Kind(
        "lru-ttl",
        lambda register=False: TTLCache(BOUND, 60.0, timer=FakeClock(), register=register),
    ),
    Kind("weak", lambda register=False: WeakCache(BOUND, register=register)),
]


@pytest.fixture(params=KINDS, ids=lambda k: k.name)
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def cache(kind: Kind) -> Any:
    return kind.make()


def test_is_a_mutable_mapping(cache: Any) -> None:
    """Every cache is a MutableMapping with the cachetools vocabulary."""
    assert isinstance(cache, MutableMapping)
    for attr in ("maxsize", "currsize", "getsizeof", "popitem", "stats", "shrink", "clear"):
        assert hasattr(cache, attr), attr


def test_set_then_get_returns_the_same_object(cache: Any) -> None:
    """A stored value comes back as the very same object, through [] and get()."""
    v = Val(1)
    cache["a"] = v
    assert cache["a"] is v
    assert cache.get("a") is v
    assert "a" in cache
    assert len(cache) == 1


def test_missing_keys(cache: Any) -> None:
    """A missing key raises KeyError from [], returns the default from get(), and is not in."""
    with pytest.raises(KeyError):
        cache["nope"]
    assert cache.get("nope") is None
    sentinel = object()
    assert cache.get("nope", sentinel) is sentinel
    assert "nope" not in cache


def test_hits_and_misses_are_counted(cache: Any) -> None:
    """Each found lookup is a hit and each failed one a miss; `in` counts neither."""
    v = Val(1)
    cache["a"] = v
    cache.get("a")
    _ = cache["a"]
    cache.get("b")
    with pytest.raises(KeyError):
        cache["c"]
    _ = "a" in cache
    stats = cache.stats()
    assert isinstance(stats, CacheStats)
    assert (stats.hits, stats.misses) == (2, 2)
    assert stats.hit_ratio == 0.5
    assert stats.count == 1


def test_overwrite_replaces_without_growing(cache: Any) -> None:
    """Setting an existing key replaces its value and keeps the length."""
    a, b = Val(1), Val(2)
    cache["k"] = a
    cache["k"] = b
    assert cache["k"] is b
    assert len(cache) == 1


def test_delete_and_pop(cache: Any) -> None:
    """del and pop remove an entry; on a missing key del raises and pop returns its default."""
    a, b = Val(1), Val(2)
    cache["a"] = a
    cache["b"] = b
    del cache["a"]
    assert "a" not in cache
    with pytest.raises(KeyError):
        del cache["a"]
    assert cache.pop("b") is b
    assert cache.pop("b", None) is None
    with pytest.raises(KeyError):
        cache.pop("b")
    assert len(cache) == 0


def test_popitem_and_clear(cache: Any) -> None:
    """popitem removes and returns one stored item; clear empties; popitem on empty raises."""
    values = {k: Val(i) for i, k in enumerate("abc")}
    cache.update(values)
    key, value = cache.popitem()
    assert values[key] is value
    assert key not in cache
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0
    assert list(cache) == []
    with pytest.raises(KeyError):
        cache.popitem()


def test_iteration_is_a_snapshot(cache: Any) -> None:
    """Iterating while inserting and deleting never raises, and items() match the entries."""
    values = [Val(i) for i in range(8)]
    for i, v in enumerate(values):
        cache[i] = v
    for key in cache:
        cache[key + 100] = Val(key)  # mutating while iterating
        del cache[key + 100]
    assert sorted(cache) == list(range(8))
    assert {k: v.n for k, v in cache.items()} == {i: i for i in range(8)}
    assert sorted(v.n for v in cache.values()) == list(range(8))


def test_the_bound_holds(kind: Kind, cache: Any) -> None:
    """After three times the bound in inserts, at most the bound is held (weak: once collected)."""
    for i in range(3 * BOUND):
        cache[i] = Val(i)
    gc.collect()
    assert len(cache) <= BOUND
    assert cache.stats().evictions >= 2 * BOUND


def test_least_recently_used_goes_first(cache: Any) -> None:
    """Reading an entry protects it: the oldest unread entry is the one dropped."""
    for i in range(BOUND):
        cache[i] = Val(i)
    cache.get(0)  # 0 becomes the most recently used; 1 is now the oldest
    cache["new"] = Val(-1)
    gc.collect()
    assert 0 in cache
    assert 1 not in cache
    assert "new" in cache


def test_shrink_gives_back_and_reports_bytes(cache: Any) -> None:
    """shrink(1.0) drops every entry held only by the cache and reports bytes >= 0."""
    for i in range(BOUND):
        cache[i] = Val(i)
    freed = cache.shrink(1.0)
    gc.collect()
    assert len(cache) == 0
    assert isinstance(freed, int)
    assert freed > 0


def test_shrink_half(cache: Any) -> None:
    """shrink(0.5) drops half of the entries held only by the cache."""
    for i in range(BOUND):
        cache[i] = Val(i)
    cache.shrink(0.5)
    gc.collect()
    assert len(cache) == BOUND // 2


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "half"])
def test_shrink_rejects_bad_fractions(cache: Any, bad: Any) -> None:
    """A fraction outside [0, 1] is a plain ValueError naming the value (as the pools')."""
    with pytest.raises(ValueError, match="fraction") as info:
        cache.shrink(bad)
    assert not isinstance(info.value, ConfigurationError)


def test_currsize_and_getsizeof(cache: Any) -> None:
    """currsize grows with entries by getsizeof(value) and returns to 0 when cleared."""
    v = Val(1)
    cache["a"] = v
    assert cache.currsize == cache.getsizeof(v) > 0
    cache.clear()
    assert cache.currsize == 0


def test_registers_with_the_governor_weakly(kind: Kind) -> None:
    """A cache made with register=True is a reliever of the governor that does not keep it alive."""
    pressure = pytest.importorskip("memwarden.pressure")
    cache = kind.make(register=True)
    keep = [Val(i) for i in range(BOUND)]
    for i, v in enumerate(keep):
        cache[i] = v
    name = cache.name
    regs = [r for r in pressure.governor().relievers() if r.name == name]
    assert len(regs) == 1
    assert regs[0].priority == pressure.PRIORITY_CACHE
    reliever = regs[0].resolve()
    assert reliever is not None
    reliever()  # what the governor calls under pressure: shrink(0.5)
    del reliever
    assert cache.stats().evictions >= BOUND // 2
    ref = weakref.ref(cache)
    del cache, regs
    gc.collect()
    assert ref() is None
    assert not [r for r in pressure.governor().relievers() if r.name == name]


# ---------------------------------------------------------------------------
# LRUCache specifics: bounds by bytes, TTL, callbacks, validation


def test_default_bound_is_128_entries() -> None:
    """LRUCache() without bounds is still bounded, like functools.lru_cache."""
    cache: LRUCache[int, int] = LRUCache(register=False)
    for i in range(500):
        cache[i] = i
    assert len(cache) == cache.maxsize == 128


def test_byte_bound_evicts_by_size_and_currsize_is_bytes() -> None:
    """With max_bytes, currsize is the sum of sizes and never exceeds the bound."""
    cache: LRUCache[str, bytes] = LRUCache(max_bytes="1 KiB", getsizeof=len, register=False)
    cache["a"] = b"x" * 600
    cache["b"] = b"y" * 300
    assert cache.currsize == 900
    cache["c"] = b"z" * 200  # 1100 > 1024: "a" (the oldest) goes
    assert "a" not in cache
    assert cache.currsize == 500
    assert cache.stats().size_bytes == 500
    cache["b"] = b"y" * 10  # overwrite adjusts the total
    assert cache.currsize == 210


def test_default_sizes_are_deep() -> None:
    """Without getsizeof, a byte-bounded cache weighs values with the deep sizeof."""
    from memwarden.sizing import sizeof

    cache: LRUCache[str, list[bytes]] = LRUCache(max_bytes=10**6, register=False)
    value = [b"q" * 5000, b"r" * 5000]
    cache["v"] = value
    assert cache.currsize == sizeof(value) > 10_000


def test_too_large_item_raises_a_clear_value_error() -> None:
    """An item bigger than max_bytes raises ItemTooLargeError (a ValueError) and changes nothing."""
    from memwarden.cache import ItemTooLargeError

    cache: LRUCache[str, bytes] = LRUCache(max_bytes=100, getsizeof=len, register=False)
    cache["keep"] = b"k" * 50
    with pytest.raises(ItemTooLargeError, match="max_bytes=100") as info:
        cache["big"] = b"b" * 101
    assert isinstance(info.value, ValueError)
    assert (info.value.size_bytes, info.value.max_bytes) == (101, 100)
    assert list(cache) == ["keep"]
    assert cache.currsize == 50


def test_shrink_reports_exact_bytes_when_sizes_are_tracked() -> None:
    """shrink returns the tracked bytes of the entries it dropped, oldest first."""
    cache: LRUCache[int, bytes] = LRUCache(max_bytes=10_000, getsizeof=len, register=False)
    for i in range(4):
        cache[i] = b"x" * (100 * (i + 1))
    assert cache.shrink(0.5) == 100 + 200
    assert list(cache) == [2, 3]
    assert cache.shrink(0.0) == 0


def test_ttl_expires_entries_with_an_injected_clock() -> None:
    """An entry older than ttl is a miss, counted as an expiration, and reported to on_evict."""
    clock = FakeClock()
    dropped: list[tuple[str, int]] = []
    cache: TTLCache[str, int] = TTLCache(
        10, 5.0, timer=clock, on_evict=lambda k, v: dropped.append((k, v)), register=False
    )
    cache["a"] = 1
    clock.now += 3
    cache["b"] = 2
    assert cache.get("a") == 1  # reading does not extend the life
    clock.now += 2.5  # a is 5.5 s old, b 2.5 s
    assert cache.get("a") is None
    assert "a" not in cache
    assert "b" in cache
    assert dropped == [("a", 1)]
    clock.now += 10
    assert len(cache) == 0  # len counts live entries only, dropping nothing
    assert cache.expire() == [("b", 2)]
    stats = cache.stats()
    assert stats.expirations == 2
    assert (stats.hits, stats.misses) == (1, 1)
    assert dropped == [("a", 1), ("b", 2)]


def test_ttl_rewrite_restarts_the_clock() -> None:
    """Writing a key again gives it a fresh ttl, and expire() drops only what is due."""
    clock = FakeClock()
    cache: TTLCache[str, int] = TTLCache(10, 5.0, timer=clock, register=False)
    cache["a"] = 1
    cache["b"] = 1
    clock.now += 4
    cache["a"] = 2
    clock.now += 2
    assert cache.expire() == [("b", 1)]
    assert list(cache) == ["a"]
    assert cache["a"] == 2


def test_ttl_with_the_real_clock() -> None:
    """With the real monotonic clock, an entry is gone after its ttl has passed."""
    import time

    cache: TTLCache[str, int] = TTLCache(10, 0.05, register=False)
    cache["a"] = 1
    assert cache.get("a") == 1
    deadline = time.monotonic() + 0.1
    while time.monotonic() < deadline:
        time.sleep(0.02)
    assert cache.get("a") is None


def test_on_evict_sees_bound_evictions_and_shrink_but_not_deletes() -> None:
    """on_evict is called for entries the cache drops itself, not for del/pop/clear."""
    seen: list[int] = []
    cache: LRUCache[int, int] = LRUCache(2, on_evict=lambda k, v: seen.append(k), register=False)
    cache[1] = 1
    cache[2] = 2
    cache[3] = 3  # evicts 1
    del cache[2]
    cache[4] = 4
    cache.shrink(0.5)  # drops 3
    cache.pop(4)
    cache[5] = 5
    cache.clear()
    assert seen == [1, 3]


def test_a_failing_on_evict_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in on_evict is logged on memwarden.cache and the insert still succeeds."""

    def boom(key: int, value: int) -> None:
        raise RuntimeError("callback broke")

    cache: LRUCache[int, int] = LRUCache(1, on_evict=boom, register=False)
    cache[1] = 1
    with caplog.at_level("ERROR", logger="memwarden.cache"):
        cache[2] = 2
    assert cache[2] == 2
    assert "on_evict" in caplog.text


def test_values_are_released_outside_the_lock() -> None:
    """A value whose __del__ uses the same cache (when evicted or replaced) does not deadlock."""
    cache: LRUCache[str, Any] = LRUCache(1, register=False)
    log: list[str] = []

    class Touchy:
        def __del__(self) -> None:
            log.append(str(cache.get("x")))
            cache["from-del"] = 0

    def scenario() -> None:
        cache["a"] = Touchy()
        cache["b"] = 1  # evicts Touchy, whose __del__ re-enters the cache
        cache["c"] = Touchy()
        cache["c"] = 2  # replaces it
        cache["d"] = Touchy()
        cache.clear()

    # In a thread, so that a deadlock fails the test instead of hanging it.
    worker = threading.Thread(target=scenario, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "deadlocked: a value was released while the lock was held"
    assert len(log) == 3


def test_peek_neither_refreshes_nor_counts() -> None:
    """peek returns the value without a hit and without protecting it from eviction."""
    cache: LRUCache[int, int] = LRUCache(2, register=False)
    cache[1] = 10
    cache[2] = 20
    assert cache.peek(1) == 10
    assert cache.peek(9, -1) == -1
    cache[3] = 30
    assert 1 not in cache
    assert cache.stats().hits == 0


def test_popitem_pops_the_least_recently_used() -> None:
    """popitem returns the oldest entry, as cachetools.LRUCache does."""
    cache: LRUCache[int, int] = LRUCache(5, register=False)
    for i in range(3):
        cache[i] = i
    cache.get(0)
    assert cache.popitem() == (1, 1)


def test_maxsize_zero_stores_nothing() -> None:
    """maxsize=0 keeps nothing: a write is ItemTooLargeError (a ValueError, as cachetools)."""
    cache: LRUCache[int, int] = LRUCache(0, register=False)
    with pytest.raises(ItemTooLargeError, match="maxsize=0"):
        cache[1] = 1
    assert len(cache) == 0
    assert cached(cache)(lambda x: x + 1)(1) == 2  # returned uncached
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"maxsize": -1}, "maxsize=-1"),
        ({"maxsize": 2.5}, "maxsize=2.5"),
        ({"maxsize": True}, "maxsize=True"),
        ({"max_bytes": "lots"}, "lots"),
        ({"max_bytes": -5}, "-5"),
        ({"getsizeof": 3}, "getsizeof=3"),
    ],
)
def test_bad_settings_are_configuration_errors(kwargs: dict[str, Any], match: str) -> None:
    """Invalid bounds, ttl or getsizeof raise ConfigurationError naming the value."""
    with pytest.raises(ConfigurationError, match=match):
        LRUCache(register=False, **kwargs)


def test_a_bad_getsizeof_result_is_reported() -> None:
    """A getsizeof that returns a negative number is a ConfigurationError, not silent corruption."""
    cache: LRUCache[str, int] = LRUCache(max_bytes=100, getsizeof=lambda v: -1, register=False)
    with pytest.raises(ConfigurationError, match="getsizeof returned -1"):
        cache["a"] = 1
    assert len(cache) == 0


@pytest.mark.parametrize("ttl", [0, -1.0, float("nan"), "5", True])
def test_bad_ttl_is_a_configuration_error(ttl: Any) -> None:
    """A ttl that is not a positive number (or timedelta) raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="ttl="):
        TTLCache(3, ttl, register=False)


def test_lru_cache_ttl_points_to_ttl_cache() -> None:
    """LRUCache(ttl=...) (before TTLCache existed) is a TypeError naming TTLCache."""
    with pytest.raises(TypeError, match="TTLCache"):
        LRUCache(3, ttl=1.0, register=False)


def test_weighed_cache_bounds_the_total_as_cachetools() -> None:
    """With getsizeof and no max_bytes, maxsize bounds the total size (cachetools' rule)."""
    cache: LRUCache[str, int] = LRUCache(10, getsizeof=lambda v: v, register=False)
    cache["a"] = 4
    cache["b"] = 5
    assert cache.currsize == 9
    cache["c"] = 3  # 12 > 10: the least recently used goes
    assert list(cache) == ["b", "c"]
    assert cache.currsize == 8
    with pytest.raises(ItemTooLargeError):
        cache["d"] = 11


def test_subclass_getsizeof_is_honoured() -> None:
    """A subclass overriding getsizeof weighs its entries without a getsizeof argument."""

    class ByLength(LRUCache[str, str]):
        def getsizeof(self, value: str) -> int:
            return len(value)

    cache = ByLength(5, register=False)
    cache["a"] = "xxx"
    cache["b"] = "yyy"
    assert list(cache) == ["b"]
    assert cache.currsize == 3


def test_missing_is_called_by_getitem_only() -> None:
    """A subclass's __missing__ answers cache[key] misses; get and pop do not call it."""

    class Squares(LRUCache[int, int]):
        def __missing__(self, key: int) -> int:
            self[key] = key * key
            return key * key

    cache = Squares(4, register=False)
    assert cache[3] == 9
    assert 3 in cache
    assert cache.get(5) is None
    assert cache.setdefault(6) is None
    assert cache.pop(7, -1) == -1


def test_ttl_cache_is_still_an_lru_cache() -> None:
    """TTLCache is an LRUCache and shows its ttl."""
    cache: TTLCache[str, int] = TTLCache(3, 1.0, register=False)
    assert isinstance(cache, LRUCache)
    assert cache.ttl == 1.0
    assert "ttl=1.0" in repr(cache)


def test_weak_cache_drops_values_nobody_uses() -> None:
    """Beyond its strong LRU, a WeakCache entry lives exactly as long as its value."""
    cache: WeakCache[str, Val] = WeakCache(strong_size=1, register=False)
    kept = Val(1)
    cache["kept"] = kept
    cache["temp"] = Val(2)  # pushes "kept" out of the strong LRU; "temp" is strong
    cache["other"] = Val(3)  # pushes "temp" out: nobody else holds it
    gc.collect()
    assert "kept" in cache
    assert "temp" not in cache
    assert "other" in cache
    del kept
    cache["last"] = Val(4)
    gc.collect()
    assert "kept" not in cache


def test_weak_cache_rejects_values_that_cannot_be_weakly_referenced() -> None:
    """Storing an int in a WeakCache is a TypeError that says what to do instead."""
    cache: WeakCache[str, Any] = WeakCache(register=False)
    with pytest.raises(TypeError, match="LRUCache"):
        cache["n"] = 42
    assert len(cache) == 0


def test_copies_and_pickles_of_an_lru_cache_are_independent() -> None:
    """copy.copy and pickle give a cache with its own entries and lock, same bounds and order."""
    import copy
    import pickle

    for cache in (
        LRUCache(3, register=False),
        LRUCache(max_bytes=100, getsizeof=len, register=False),
        TTLCache(3, 10.0, register=False),
    ):
        cache["a"] = b"1"
        cache["b"] = b"22"
        for other in (copy.copy(cache), pickle.loads(pickle.dumps(cache))):
            assert type(other) is type(cache)
            assert list(other.items()) == list(cache.items())
            assert other.currsize == cache.currsize
            assert other._lock is not cache._lock
            other["c"] = b"333"
            assert "c" not in cache
            del other["a"]
            assert "a" in cache


def test_weak_cache_refuses_to_be_copied() -> None:
    """Copying or pickling a WeakCache raises a TypeError instead of sharing its internals."""
    import copy
    import pickle

    cache: WeakCache[str, Val] = WeakCache(register=False)
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.copy(cache)
    with pytest.raises(TypeError, match="cannot be copied"):
        pickle.dumps(cache)


def test_caches_satisfy_supports_shrink() -> None:
    """LRUCache and WeakCache are SupportsShrink, so pools of relievers can take either."""
    from memwarden.typing import SupportsShrink

    assert isinstance(LRUCache(2, register=False), SupportsShrink)
    assert isinstance(WeakCache(2, register=False), SupportsShrink)


def test_a_governor_relief_run_shrinks_a_real_cache_and_rss_falls() -> None:
    """In this process, the governor's relief run calls the cache's shrink and RSS drops."""
    pressure = pytest.importorskip("memwarden.pressure")
    mib = 1 << 20
    cache: LRUCache[int, bytearray] = LRUCache(max_bytes="96 MiB", getsizeof=len, name="rss-test")
    for i in range(64):
        block = bytearray(mib)
        block[::4096] = b"x" * len(block[::4096])  # touch every page so it counts in RSS
        cache[i] = block
    run = pressure.governor().relieve(reason="test_cache_contract")
    steps = [s for s in run.steps if s.name == "rss-test"]
    assert len(steps) == 1
    assert steps[0].reported_bytes == 32 * mib
    assert len(cache) == 32
    # RSS really fell during the run: at once when glibc served the blocks with mmap, or
    # at the malloc_trim step when an earlier free had raised glibc's mmap threshold and
    # the blocks came from the heap (which depends on what ran before in this process).
    assert run.freed_bytes >= 16 * mib


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork (POSIX)")
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_forked_child_can_use_a_cache_whose_lock_was_held(kind: Kind) -> None:
    """If another thread held a cache's lock at fork(), the child still inserts (fresh lock)."""
    import os
    import time
    import warnings

    cache = kind.make()
    keep = [Val(1), Val(2)]
    cache["before"] = keep[0]
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with cache._lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert holding.wait(10)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
            pid = os.fork()
        if pid == 0:  # the child: exit 0 only if the cache works
            code = 1
            try:
                import signal

                signal.alarm(10)  # a deadlock ends the child instead of hanging the test
                cache["after"] = keep[1]
                code = 0 if cache.get("after") is keep[1] and "before" in cache else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child deadlocked on the cache lock")
        assert os.WIFEXITED(status)
        assert os.WEXITSTATUS(status) == 0
    finally:
        release.set()
        holder.join(10)


def test_dropped_caches_leave_no_dead_registrations() -> None:
    """5,000 short-lived registered LRUCaches leave the governor's registry near its baseline."""
    pressure = pytest.importorskip("memwarden.pressure")
    gov = pressure.governor()
    baseline = gov.registration_count()
    runs = gov.stats().relief_runs
    for i in range(5_000):
        cache: LRUCache[int, int] = LRUCache(8)
        cache[i] = i
        del cache
    # Read the raw registry first: stats() and relievers() prune dead entries themselves.
    assert len(gov._relievers._registrations) <= baseline + 8
    assert gov.registration_count() <= baseline + 8
    # No relieve() ran: the registrations dropped themselves when their caches died.
    assert gov.stats().relief_runs == runs


def test_item_too_large_error_lives_in_the_exception_tree() -> None:
    """``ItemTooLargeError`` is defined in memwarden.exceptions and re-exported from cache."""
    import memwarden.cache as cache
    import memwarden.exceptions as exceptions

    assert cache.ItemTooLargeError is exceptions.ItemTooLargeError
    assert exceptions.ItemTooLargeError.__module__ == "memwarden.exceptions"
    assert issubclass(exceptions.ItemTooLargeError, exceptions.MemwardenError)
    assert issubclass(exceptions.ItemTooLargeError, ValueError)
    big = LRUCache[str, bytes](max_bytes=1024)
    with pytest.raises(exceptions.ItemTooLargeError) as info:
        big["k"] = bytes(10_000)
    assert info.value.max_bytes == 1024
    assert info.value.size_bytes > 1024


def test_governor_policy_is_explicit() -> None:
    """governor=DEFAULT registers with the process-wide governor, None with none, g with g."""
    from memwarden import pressure

    pressure._reset_default_for_tests()
    try:
        mine = pressure.Governor()
        default = LRUCache(4, name="default-cache")
        quiet = TTLCache(4, 1.0, governor=None, name="quiet-cache")
        local = WeakCache(4, governor=mine, name="local-cache")
        process_wide = [r.name for r in pressure.governor().relievers()]
        assert "default-cache" in process_wide
        assert "quiet-cache" not in process_wide
        assert "local-cache" not in process_wide
        assert "local-cache" in [r.name for r in mine.relievers()]  # beside the built-ins
        with pytest.raises(TypeError, match="governor="):
            LRUCache(4, governor="yes")  # type: ignore[arg-type]
        del default, quiet, local
    finally:
        pressure._reset_default_for_tests()


def test_c_hot_paths_are_the_base_class_when_built() -> None:
    """With memwarden._lrucore built, LRUCache's get/[]/[]= are C; they count, refresh, evict."""
    lrucore = pytest.importorskip("memwarden._lrucore", reason="C extension not built")
    dropped: list[tuple[str, int]] = []
    cache: LRUCache[str, int] = LRUCache(2, on_evict=lambda k, v: dropped.append((k, v)))
    assert isinstance(cache, lrucore.LRUBase)
    cache["a"] = 1
    cache["b"] = 2
    assert cache.get("a") == 1  # a is now the most recent
    assert cache.get("zz", -1) == -1
    cache["c"] = 3  # evicts b
    assert list(cache) == ["a", "c"]
    assert dropped == [("b", 2)]
    assert cache["c"] == 3
    with pytest.raises(KeyError):
        cache["zz"]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions) == (2, 2, 1)
    cache.clear()  # the C paths stay bound to the (same, emptied) mapping
    cache["d"] = 4
    assert cache.get("d") == 4
    del cache["d"]
    assert "d" not in cache
    with pytest.raises(TypeError):
        cache.get()  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        cache[["unhashable"]] = 1  # type: ignore[index]
    with pytest.raises(TypeError, match="OrderedDict"):
        cache._attach({}, threading.Lock(), 2, False)  # type: ignore[arg-type]


def test_pure_python_base_serves_without_the_extension() -> None:
    """Without memwarden._lrucore, the same behaviour comes from the Python base class."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys
        sys.modules["memwarden._lrucore"] = None  # as if it were not built
        from memwarden.cache import LRUCache, _LRUBasePy
        dropped = []
        cache = LRUCache(2, on_evict=lambda k, v: dropped.append(k), governor=None)
        assert type(cache).__mro__[1] is _LRUBasePy
        cache["a"] = 1; cache["b"] = 2
        assert cache.get("a") == 1 and cache["b"] == 2 and cache.get("x", 0) == 0
        cache["c"] = 3
        assert list(cache) == ["b", "c"] and dropped == ["a"], (list(cache), dropped)
        del cache["c"]
        s = cache.stats()
        assert (s.hits, s.misses, s.evictions) == (2, 1, 1), s
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.stdout.strip() == "ok", proc.stderr


def test_ttl_cache_takes_inf_and_timedelta_and_never_returns_expired_entries() -> None:
    """ttl=math.inf never expires; a timedelta works with a datetime timer; expired entries
    are gone from get, pop, popitem and del even before they are dropped."""
    import datetime
    import math

    forever: TTLCache[str, int] = TTLCache(4, math.inf, timer=FakeClock(), governor=None)
    forever["a"] = 1
    assert forever.timer.now == 1000.0  # the timer's own attributes show through
    forever.timer.now += 1e9
    assert forever["a"] == 1

    now = [datetime.datetime(2026, 1, 1)]
    daily: TTLCache[str, int] = TTLCache(
        4, datetime.timedelta(days=1), timer=lambda: now[0], governor=None
    )
    for key in "abcd":
        daily[key] = 1
    now[0] += datetime.timedelta(days=1)
    assert daily.get("a") is None
    assert daily.pop("b", None) is None
    with pytest.raises(KeyError):
        del daily["c"]
    with pytest.raises(KeyError):
        daily.popitem()
    assert len(daily) == 0
    assert daily.expire() == []  # all were dropped on the way
    assert daily.stats().expirations == 4


def test_a_frozen_timer_block_holds_only_in_its_own_thread() -> None:
    """with cache.timer as now: freezes time for the calling thread, not for others."""
    clock = FakeClock()
    cache: TTLCache[str, int] = TTLCache(4, 10.0, timer=clock, governor=None)
    seen: list[float] = []
    with cache.timer as frozen:
        clock.now += 5
        assert cache.timer() == frozen  # this thread still sees the frozen instant
        worker = threading.Thread(target=lambda: seen.append(cache.timer()))
        worker.start()
        worker.join(5)
    assert seen == [frozen + 5]  # the other thread read the real clock
    assert cache.timer() == frozen + 5
