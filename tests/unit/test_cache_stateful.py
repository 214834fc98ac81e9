"""Hypothesis state machines: caches match a reference LRU model and never break their bounds."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from memwarden.cache import ItemTooLargeError, LRUCache, TTLCache, WeakCache

KEYS = st.integers(min_value=0, max_value=12)
SIZES = st.integers(min_value=0, max_value=60)


class Clock:
    """A clock moved only by the machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class LRUMachine(RuleBasedStateMachine):
    """Drives an LRUCache and a plain OrderedDict model side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: Any = None
        self.model: OrderedDict[int, tuple[int, float]] = OrderedDict()  # key -> (size, expiry)
        self.clock = Clock()
        self.maxsize: int | None = None
        self.max_bytes: int | None = None
        self.ttl: float | None = None
        self.evicted: list[int] = []

    @initialize(
        maxsize=st.none() | st.integers(min_value=0, max_value=6),
        max_bytes=st.none() | st.integers(min_value=1, max_value=120),
        ttl=st.none() | st.sampled_from([1.0, 5.0]),
    )
    def setup(self, maxsize: int | None, max_bytes: int | None, ttl: float | None) -> None:
        if maxsize is None and max_bytes is None:
            maxsize = 4
        self.maxsize, self.max_bytes, self.ttl = maxsize, max_bytes, ttl
        # Sizes are bytes under max_bytes; without it, every entry counts 1 (a
        # getsizeof would make maxsize bound the total size: cachetools' rule,
        # checked by the peer suite).
        sized: dict[str, Any] = {"getsizeof": lambda v: v[1]} if max_bytes is not None else {}
        common: dict[str, Any] = {
            "max_bytes": max_bytes,
            "on_evict": lambda k, v: self.evicted.append(k),
            "governor": None,
            **sized,
        }
        if ttl is None:
            self.cache = LRUCache(maxsize, **common)
        else:
            self.cache = TTLCache(maxsize, ttl, timer=self.clock, **common)

    # -- the model ------------------------------------------------------------

    def _expired(self, key: int) -> bool:
        return self.ttl is not None and self.clock.now >= self.model[key][1]

    def _model_expire_all(self) -> None:
        if self.ttl is None:
            return
        for key in [k for k, (_, exp) in self.model.items() if self.clock.now >= exp]:
            del self.model[key]

    def _model_bytes(self) -> int:
        if self.max_bytes is None:
            return len(self.model)  # each entry counts 1
        return sum(size for size, _ in self.model.values())

    def _model_evict(self) -> None:
        while (self.maxsize is not None and len(self.model) > self.maxsize) or (
            self.max_bytes is not None and self._model_bytes() > self.max_bytes
        ):
            self.model.popitem(last=False)

    # -- rules ----------------------------------------------------------------

    @rule(key=KEYS, size=SIZES)
    def put(self, key: int, size: int) -> None:
        if (self.max_bytes is not None and size > self.max_bytes) or self.maxsize == 0:
            before = list(self.cache._od)
            with pytest.raises(ItemTooLargeError):
                self.cache[key] = (key, size)
            assert list(self.cache._od) == before
            return
        self.cache[key] = (key, size)
        self._model_expire_all()
        expiry = self.clock.now + self.ttl if self.ttl is not None else math.inf
        self.model[key] = (size, expiry)
        self.model.move_to_end(key)
        self._model_evict()

    @rule(key=KEYS)
    def get(self, key: int) -> None:
        got = self.cache.get(key)
        if key in self.model and not self._expired(key):
            assert got == (key, self.model[key][0])
            self.model.move_to_end(key)
        else:
            assert got is None
            self.model.pop(key, None)

    @rule(key=KEYS)
    def delete(self, key: int) -> None:
        if key in self.model:
            del self.cache[key]
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                del self.cache[key]

    @rule(fraction=st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    def shrink(self, fraction: float) -> None:
        before = self._model_bytes()
        freed = self.cache.shrink(fraction)
        for _ in range(math.ceil(len(self.model) * fraction)):
            self.model.popitem(last=False)
        if self.max_bytes is not None:  # exact; otherwise an estimate of the deep size
            assert freed == before - self._model_bytes()
        else:
            assert freed >= 0

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0]))
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @precondition(lambda self: self.ttl is not None)
    @rule()
    def expire(self) -> None:
        self.cache.expire()
        self._model_expire_all()

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.model.clear()

    # -- invariants -------------------------------------------------------------

    @invariant()
    def matches_the_model_in_lru_order(self) -> None:
        if self.cache is not None:
            assert list(self.cache._od) == list(self.model)

    @invariant()
    def bounds_hold(self) -> None:
        if self.cache is None:
            return
        if self.maxsize is not None:
            assert len(self.cache._od) <= self.maxsize
        if self.max_bytes is not None:
            assert 0 <= self.cache.currsize <= self.max_bytes
            assert self.cache.currsize == self._model_bytes()


class WeakMachine(RuleBasedStateMachine):
    """Drives a WeakCache; its strong part never exceeds strong_size and stays consistent."""

    class Box:
        def __init__(self, n: int) -> None:
            self.n = n

    def __init__(self) -> None:
        super().__init__()
        self.cache: Any = None
        self.held: dict[int, Any] = {}  # values the "program" keeps alive

    @initialize(strong_size=st.integers(min_value=0, max_value=4))
    def setup(self, strong_size: int) -> None:
        self.cache = WeakCache(strong_size, register=False)

    @rule(key=KEYS, keep=st.booleans())
    def put(self, key: int, keep: bool) -> None:
        box = self.Box(key)
        self.cache[key] = box
        if keep:
            self.held[key] = box
        else:
            self.held.pop(key, None)

    @rule(key=KEYS)
    def get(self, key: int) -> None:
        got = self.cache.get(key)
        if key in self.held:
            assert got is self.held[key]
        if got is not None:
            assert got.n == key

    @rule(key=KEYS)
    def release(self, key: int) -> None:
        self.held.pop(key, None)

    @rule(fraction=st.sampled_from([0.5, 1.0]))
    def shrink(self, fraction: float) -> None:
        self.cache.shrink(fraction)

    @invariant()
    def strong_part_is_bounded_and_held_values_survive(self) -> None:
        if self.cache is None:
            return
        assert len(self.cache._strong) <= self.cache.strong_size
        assert set(self.cache._strong) <= set(self.cache)
        for key, box in self.held.items():
            if key in self.cache:
                assert self.cache.get(key) is box
        # Boxes hold no cycles, so reference counting frees them at once: only held
        # values and the strong part can still be in the cache.
        assert set(self.cache) <= set(self.held) | set(self.cache._strong)


TestLRUMachine = LRUMachine.TestCase
TestLRUMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestWeakMachine = WeakMachine.TestCase
TestWeakMachine.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
