"""cached and cached_method: memoisation through memwarden caches, never keeping instances alive."""

from __future__ import annotations

import asyncio
import functools
import gc
import weakref
from typing import Any

import pytest

from memwarden.cache import (
    CacheInfo,
    LRUCache,
    WeakCache,
    cached,
    cached_method,
    cachedmethod,
    hashkey,
    methodkey,
    typedkey,
)


def test_cached_calls_once_per_key() -> None:
    """A cached function runs once per distinct argument tuple."""
    calls: list[tuple[Any, ...]] = []

    @cached(LRUCache(10, register=False))
    def square(x: int, *, offset: int = 0) -> int:
        calls.append((x, offset))
        return x * x + offset

    assert [square(3), square(3), square(4), square(3, offset=1), square(3, offset=1)] == [
        9,
        9,
        16,
        10,
        10,
    ]
    assert calls == [(3, 0), (4, 0), (3, 1)]
    assert square.cache.stats().hits == 2  # type: ignore[attr-defined]


def test_cached_without_parentheses_uses_a_bounded_lru() -> None:
    """@cached alone gives the function a 128-entry LRUCache."""

    @cached
    def ident(x: int) -> int:
        return x

    for i in range(300):
        ident(i)
    cache = ident.cache  # type: ignore[attr-defined]
    assert isinstance(cache, LRUCache)
    assert len(cache) == 128
    assert ident.__name__ == "ident"


def test_cached_caches_none_results_and_clears() -> None:
    """A None result is cached (a sentinel marks misses), and cache_clear empties the cache."""
    calls = []

    @cached()
    def nothing(x: int) -> None:
        calls.append(x)

    nothing(1)
    nothing(1)
    assert calls == [1]
    nothing.cache_clear()  # type: ignore[attr-defined]
    nothing(1)
    assert calls == [1, 1]


def test_cached_with_a_plain_dict_and_a_custom_key() -> None:
    """Any MutableMapping works as the store, and key= decides what counts as the same call."""
    store: dict[Any, Any] = {}

    @cached(store, key=lambda s: s.lower())
    def shout(s: str) -> str:
        return s.upper()

    assert shout("abc") == "ABC"
    assert shout("ABC") == "ABC"
    assert store == {"abc": "ABC"}


def test_too_large_results_are_returned_uncached() -> None:
    """A result bigger than the cache's byte bound is returned, just not stored."""
    calls = []

    @cached(LRUCache(max_bytes=100, getsizeof=len, register=False))
    def blob(n: int) -> bytes:
        calls.append(n)
        return b"x" * n

    assert blob(1000) == b"x" * 1000
    assert blob(1000) == b"x" * 1000
    assert blob(10) == b"x" * 10
    assert blob(10) == b"x" * 10
    assert calls == [1000, 1000, 10]


def test_cached_async_functions_cache_the_result_not_the_coroutine() -> None:
    """On an async def, the awaited value is cached and later awaits return it."""
    calls = []

    @cached(LRUCache(4, register=False))
    async def fetch(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0)
        return x + 1

    async def main() -> list[int]:
        return [await fetch(1), await fetch(1), await fetch(2)]

    assert asyncio.run(main()) == [2, 2, 3]
    assert calls == [1, 2]


def test_hashkey_shapes() -> None:
    """Single scalar arguments are their own key; equal values give equal keys across types."""
    assert hashkey(5) == 5
    assert hashkey("a") == "a"
    assert (
        hashkey(5.0)
        == hashkey(5)
        == hashkey(
            5,
        )
    )
    assert hashkey((5,)) == ((5,),)
    assert hashkey(1, 2) == (1, 2)
    assert hashkey(1, a=1, b=2) == hashkey(1, b=2, a=1)
    assert hashkey(1, a=1) != hashkey(1, 1)


# ---------------------------------------------------------------------------
# cached_method


class Service:
    """A class whose method results are cached per instance."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.calls = 0

    @cached_method
    def compute(self, x: int) -> int:
        """Add base to x."""
        self.calls += 1
        return self.base + x

    @cached_method(maxsize=2)
    def small(self, x: int) -> int:
        self.calls += 1
        return x


def test_cached_method_caches_per_instance() -> None:
    """Each instance has its own cache; a repeated call does not run the method again."""
    a, b = Service(10), Service(20)
    assert (a.compute(1), a.compute(1), b.compute(1)) == (11, 11, 21)
    assert (a.calls, b.calls) == (1, 1)
    assert Service.compute.cache_for(a) is not Service.compute.cache_for(b)  # type: ignore[attr-defined]
    assert Service.compute.__doc__ == "Add base to x."
    assert a.compute.__name__ == "compute"


def test_cached_method_does_not_keep_instances_alive() -> None:
    """After the last reference to an instance goes, it is collected (refcount, no gc needed)."""
    obj = Service(1)
    obj.compute(1)
    obj.compute(2)
    ref = weakref.ref(obj)
    cache_ref = weakref.ref(Service.compute.cache_for(obj))  # type: ignore[attr-defined]
    gc.disable()
    try:
        del obj
        assert ref() is None  # no cycle through the instance: freed at once
        assert cache_ref() is None
    finally:
        gc.enable()


def test_functools_lru_cache_on_a_method_does_keep_them_alive() -> None:
    """The bug cached_method fixes: lru_cache on a method holds self in its keys."""

    class Leaky:
        @functools.lru_cache(maxsize=128)  # noqa: B019 - the point of the test
        def compute(self, x: int) -> int:
            return x

    obj = Leaky()
    obj.compute(1)
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    assert ref() is not None
    Leaky.compute.cache_clear()
    gc.collect()
    assert ref() is None


def test_cached_method_bound_is_per_instance() -> None:
    """maxsize bounds each instance's cache."""
    s = Service(0)
    for i in range(5):
        s.small(i)
    assert len(Service.small.cache_for(s)) == 2  # type: ignore[attr-defined]
    s.small(4)
    assert s.calls == 5


def test_class_level_call_uses_the_instance_cache() -> None:
    """Service.compute(obj, x) goes through obj's cache like obj.compute(x)."""
    s = Service(1)
    assert Service.compute(s, 1) == 2
    assert s.compute(1) == 2
    assert Service.compute(s, 1) == 2
    assert s.calls == 1


def test_cached_method_with_a_cache_factory_and_values_pointing_back() -> None:
    """A custom per-instance cache works; a value referring to self is reclaimed by gc."""

    class Node:
        def __init__(self) -> None:
            self.value = 0

        @cached_method(cache_factory=lambda: WeakCache(4, register=False))
        def me(self) -> Node:
            return self

    node = Node()
    assert node.me() is node
    assert isinstance(Node.me.cache_for(node), WeakCache)  # type: ignore[attr-defined]
    ref = weakref.ref(node)
    del node
    gc.collect()
    assert ref() is None


def test_slots_classes_work_and_unweakrefable_ones_get_a_clear_error() -> None:
    """A __slots__ class with __weakref__ is supported; one without gets a TypeError saying why."""

    class Slotted:
        __slots__ = ("__weakref__", "n")

        def __init__(self) -> None:
            self.n = 0

        @cached_method
        def f(self) -> int:
            self.n += 1
            return self.n

    s = Slotted()
    assert (s.f(), s.f()) == (1, 1)

    class NoWeak:
        __slots__ = ()

        @cached_method
        def f(self) -> int:
            return 1

    with pytest.raises(TypeError, match="__weakref__"):
        NoWeak().f()


def test_copies_do_not_share_a_cache() -> None:
    """copy.copy of an instance gets its own cache, so it never sees the original's results."""
    import copy

    a = Service(1)
    assert a.compute(1) == 2
    b = copy.copy(a)
    b.base = 100
    assert b.compute(1) == 101
    assert a.compute(1) == 2


def test_temporary_instances_and_held_bound_methods() -> None:
    """Calling on a temporary works, and a held bound method keeps its instance usable."""
    assert Service(5).compute(1) == 6
    bound = Service(7).compute
    assert bound(1) == 8
    assert bound(1) == 8


def test_cache_clear_for_one_or_all_instances() -> None:
    """cache_clear(obj) empties that instance's cache; cache_clear() empties all."""
    a, b = Service(1), Service(2)
    a.compute(1)
    b.compute(1)
    Service.compute.cache_clear(a)  # type: ignore[attr-defined]
    assert len(Service.compute.cache_for(a)) == 0  # type: ignore[attr-defined]
    assert len(Service.compute.cache_for(b)) == 1  # type: ignore[attr-defined]
    Service.compute.cache_clear()  # type: ignore[attr-defined]
    assert len(Service.compute.cache_for(b)) == 0  # type: ignore[attr-defined]


def test_descriptor_shrinks_every_instance_cache_and_registers() -> None:
    """The descriptor's shrink reaches all live instances' caches, and it is a governor reliever."""
    objs = [Service(i) for i in range(3)]
    for o in objs:
        for x in range(4):
            o.compute(x)
    descriptor: Any = Service.compute
    descriptor.cache_clear()
    assert descriptor.stats().count == 0
    for o in objs:
        for x in range(4):
            o.compute(x)
    assert descriptor.stats().count == 12
    descriptor.shrink(1.0)
    assert descriptor.stats().count == 0
    assert descriptor.stats().evictions == 12
    pressure = pytest.importorskip("memwarden.pressure")
    names = [r.name for r in pressure.governor().relievers()]
    assert any("Service.compute" in n for n in names)


def test_descriptor_bookkeeping_stays_bounded() -> None:
    """Creating and dropping 5000 instances leaves no per-instance cache behind."""
    descriptor: Any = Service.compute
    before = descriptor.stats().count
    for i in range(5000):
        Service(i).compute(1)
    assert descriptor.stats().count == before


def test_pickled_and_deep_copied_instances_carry_no_cache() -> None:
    """An instance whose method was cached pickles and deep-copies; the copy computes afresh."""
    import copy
    import pickle

    a = Service(3)
    a.compute(1)
    b = pickle.loads(pickle.dumps(a))
    c = copy.deepcopy(a)
    for other in (b, c):
        other.base = 50
        assert other.compute(1) == 51
    assert a.compute(1) == 4


def test_slots_only_instances_are_forgotten_when_they_die() -> None:
    """For a class without __dict__, the identity table drops the entry when the instance dies."""

    class Slim:
        __slots__ = ("__weakref__",)

        @cached_method
        def f(self, x: int) -> int:
            return x

    s = Slim()
    s.f(1)
    assert Slim.f.stats().count == 1  # type: ignore[attr-defined]
    ref = weakref.ref(s)
    del s
    assert ref() is None
    assert Slim.f.stats().count == 0  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# cachetools' decorator arguments


def test_equal_arguments_hit_across_types_unless_typed() -> None:
    """f(1) then f(1.0) is one call with hashkey (as cachetools), two with typedkey."""
    calls: list[object] = []

    def ident(x: object) -> object:
        calls.append(x)
        return x

    plain = cached(LRUCache(8, governor=None))(ident)
    plain(1)
    plain(1.0)
    assert calls == [1]
    typed = cached(LRUCache(8, governor=None), key=typedkey)(ident)
    typed(1)
    typed(1.0)
    assert calls == [1, 1, 1.0]
    assert methodkey(object(), 1, a=2) == methodkey(None, 1, a=2)


def test_cached_none_is_a_type_error() -> None:
    """cached(None) names the problem (as cachetools 8); bare @cached still makes a cache."""
    with pytest.raises(TypeError, match="None"):
        cached(None)  # type: ignore[call-overload]

    @cached
    def double(x: int) -> int:
        return 2 * x

    assert double(2) == 4
    assert isinstance(double.cache, LRUCache)


def test_info_counts_hits_and_misses_and_clear_resets_them() -> None:
    """info=True adds cache_info() -> (hits, misses, maxsize, currsize); cache_clear resets."""
    f = cached(LRUCache(4, governor=None), info=True)(lambda x: x)
    f(1)
    f(1)
    f(2)
    info = f.cache_info()
    assert isinstance(info, CacheInfo)
    assert tuple(info) == (1, 2, 4, 2)
    f.cache_clear()
    assert tuple(f.cache_info()) == (0, 0, 4, 0)


def test_condition_makes_concurrent_misses_wait_for_the_first() -> None:
    """With condition=, threads missing the same key wait: the function runs once."""
    import threading

    started = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def slow(x: int) -> int:
        calls.append(x)
        started.set()
        release.wait(5)
        return x * 10

    f = cached(LRUCache(4, governor=None), condition=threading.Condition())(slow)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(f(7))) for _ in range(4)]
    for t in threads:
        t.start()
    assert started.wait(5)
    release.set()
    for t in threads:
        t.join(5)
    assert calls == [7]
    assert results == [70] * 4


def test_lock_is_held_around_the_cache_never_the_call() -> None:
    """lock= guards the cache's use; the function itself runs without the lock."""
    import threading

    lock = threading.Lock()
    held_during_call: list[bool] = []

    def probe(x: int) -> int:
        held_during_call.append(lock.locked())
        return x

    f = cached(LRUCache(4, governor=None), lock=lock)(probe)
    assert f(3) == 3
    assert f(3) == 3
    assert held_during_call == [False]
    assert f.cache_lock is lock


def test_cachedmethod_uses_the_instance_cache_and_lock() -> None:
    """cachetools-style cachedmethod: cache and lock are functions of self."""
    import threading

    class Repo:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, int] = LRUCache(8, governor=None)
            self.lock = threading.RLock()
            self.calls = 0

        @cachedmethod(lambda self: self.cache, lock=lambda self: self.lock, info=True)
        def load(self, n: int) -> int:
            self.calls += 1
            return n * 2

    repo = Repo()
    assert repo.load(2) == 4
    assert repo.load(2) == 4
    assert repo.calls == 1
    assert repo.load.cache is repo.cache
    assert tuple(repo.load.cache_info()) == (1, 1, 8, 1)
    other = Repo()
    assert other.load(2) == 4
    assert other.calls == 1  # per instance
