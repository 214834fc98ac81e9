"""One contract every memwarden cache keeps, run against each cache class and configuration."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import pytest

from memwarden.cache import CacheStats, LRUCache, WeakCache
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
        lambda register=False: LRUCache(BOUND, ttl=60.0, clock=FakeClock(), register=register),
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
    """A fraction outside [0, 1] is a ConfigurationError naming the value."""
    with pytest.raises(ConfigurationError, match="fraction"):
        cache.shrink(bad)


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
