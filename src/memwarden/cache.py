"""Bounded caches: a thread-safe LRU (by count, bytes and age), a weak-value cache, decorators.

The playbook's cure for "unbounded caches". ``LRUCache`` speaks cachetools'
vocabulary (``maxsize``, ``currsize``, ``getsizeof``, ``popitem``), is bounded by
entry count and/or total bytes, can expire entries after ``ttl`` seconds, reports
evictions to a callback, keeps statistics, and gives memory back through
``shrink(fraction)``, which it registers (weakly) with the governor. ``WeakCache``
holds values weakly with a small strong LRU of recent values. ``cached`` and
``cached_method`` put either in front of a function; ``cached_method`` never keeps
``self`` alive (the flaw of ``functools.lru_cache`` on methods).

Thread safety without a lock on every hit
-----------------------------------------
An ``OrderedDict`` LRU guarded by a ``threading.Lock`` on every operation is slower
than cachetools; without the lock it is 1.6x faster. ``LRUCache`` therefore takes
its lock only where the structure changes (insert, update, delete, evict, expire,
shrink, clear) and serves hits lock-free, relying on two facts of CPython:

* each step of a hit (``key in od``, ``od[key]``, ``od.move_to_end(key)``) is one
  call into C that runs to completion while holding the GIL, so a hit never sees
  the ``OrderedDict`` half-updated, and ``OrderedDict`` guards its own linked list
  (it raises rather than corrupting itself if a key's Python ``__eq__`` mutates it);
* a hit never changes which keys are present: only locked code inserts or removes,
  so the count and byte bounds and the size bookkeeping are exact.

A hit can race with an eviction of the same key between its steps; then
``move_to_end`` raises ``KeyError`` and the lookup reports a miss, which is what a
lookup just after the eviction would have returned (linearisable). Values removed
under the lock are released after it is released, so a value's ``__del__`` that
touches the cache cannot deadlock. The concurrency stress test
(tests/integration/test_cache_concurrency.py) checks all of this under contention.

The hit and miss counters are plain integers bumped without the lock: exact in
single-threaded use; under heavy thread contention an increment can very rarely be
lost (statistics, not accounting). On free-threaded CPython builds the design
still holds for the mapping (dict operations lock per object) but the counters
become approximate.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import (
    Callable,
    Hashable,
    ItemsView,
    Iterator,
    KeysView,
    MutableMapping,
    ValuesView,
)
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast, overload

from memwarden._units import SizeLike, parse_size
from memwarden.exceptions import ConfigurationError, ItemTooLargeError
from memwarden.sizing import sizeof

__all__ = [
    "DEFAULT_MAXSIZE",
    "CacheStats",
    "CachedMethod",
    "ItemTooLargeError",
    "LRUCache",
    "WeakCache",
    "cached",
    "cached_method",
    "hashkey",
]

log = logging.getLogger("memwarden.cache")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)
P = ParamSpec("P")

#: Entries an ``LRUCache`` holds when given neither ``maxsize`` nor ``max_bytes``
#: (``functools.lru_cache``'s default): every cache is bounded.
DEFAULT_MAXSIZE = 128

_MISSING: Any = object()


@dataclass(frozen=True)
class CacheStats:
    """A cache's counters at one moment.

    Attributes:
        hits: lookups that found a live entry.
        misses: lookups that did not (including expired entries).
        evictions: entries the cache dropped by itself: to keep its bounds, or in
            ``shrink`` (for ``WeakCache``: strong references released).
        expirations: entries dropped because their ``ttl`` ran out.
        currsize: as the cache's ``currsize`` (bytes when byte-bounded, else count).
        count: entries held.
        size_bytes: total size of the values when sizes are tracked, else None.
        maxsize: the count bound, or None.
        max_bytes: the byte bound, or None.
    """

    hits: int
    misses: int
    evictions: int
    expirations: int
    currsize: int
    count: int
    size_bytes: int | None
    maxsize: int | None
    max_bytes: int | None

    @property
    def bytes(self) -> int | None:
        """Alias of ``size_bytes``."""
        return self.size_bytes

    @property
    def hit_ratio(self) -> float:
        """hits / (hits + misses); 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def _check_fraction(fraction: float) -> float:
    if not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise ConfigurationError(
            f"shrink(fraction={fraction!r}) (argument): expected a fraction in [0, 1] like 0.5",
            value=fraction,
            source="argument",
        )
    return float(fraction)


def _register(obj: Any, name: str) -> Any:
    """Register ``obj.shrink`` with the process-wide governor, weakly; None if that failed."""
    from memwarden.pressure import PRIORITY_CACHE, try_register_reliever

    return try_register_reliever(obj.shrink, priority=PRIORITY_CACHE, name=name)


# Fork safety: a lock that another thread held when the process forked stays locked
# forever in the child. Every live cache is listed here (weakly: the list never keeps
# a cache alive) and gets a fresh lock, and consistent bookkeeping, in the child.
_live_caches: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _reset_after_fork() -> None:
    for cache in list(_live_caches.values()):
        try:
            cache._reset_after_fork()
        except Exception:  # never let one cache break the child
            log.exception("could not reset %r after fork", cache)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _notify(on_evict: Callable[[Any, Any], None] | None, items: list[tuple[Any, Any]]) -> None:
    if on_evict is None:
        return
    for key, value in items:
        try:
            on_evict(key, value)
        except Exception:  # a callback must never break the cache or its caller
            log.exception("on_evict callback %r failed for key %r", on_evict, key)


# ---------------------------------------------------------------------------
# LRUCache


class _SnapshotKeys(KeysView[K]):
    def __iter__(self) -> Iterator[K]:
        return iter(self._mapping._snapshot_keys())  # type: ignore[attr-defined]


class _SnapshotItems(ItemsView[K, V]):
    def __iter__(self) -> Iterator[tuple[K, V]]:
        return iter(self._mapping._snapshot_items())  # type: ignore[attr-defined]


class _SnapshotValues(ValuesView[V]):
    def __iter__(self) -> Iterator[V]:
        return (value for _, value in self._mapping._snapshot_items())  # type: ignore[attr-defined]


class LRUCache(MutableMapping[K, V]):
    """A thread-safe least-recently-used cache bounded by entry count and/or bytes.

    Args:
        maxsize: the most entries held; ``None`` for no count bound. When neither
            bound is given, :data:`DEFAULT_MAXSIZE` (128) applies.
        max_bytes: the most bytes held, as the sum of ``getsizeof(value)``; an
            ``int`` or a size string such as ``"64 MiB"``.
        getsizeof: the size of a value in bytes; default :func:`memwarden.sizing.sizeof`
            (deep) when ``max_bytes`` is set. Sizes are measured once, on insert.
        ttl: seconds an entry lives after it was last written; expired entries
            are misses and are dropped lazily (on lookup, insert, ``len``,
            iteration and ``expire()``).
        on_evict: called as ``on_evict(key, value)`` for every entry the cache drops
            by itself (bound, expiry, ``shrink``), outside the lock; exceptions are
            logged. Not called for ``del``, ``pop``, ``popitem`` or ``clear``.
        clock: the monotonic clock for ``ttl``; injectable for tests.
        register: register ``shrink`` with memwarden's governor (held weakly, so
            the registration never keeps the cache alive).
        name: a label for logs and the governor; default ``LRUCache@<id>``.

    Raises:
        ConfigurationError: a bound, ``ttl`` or ``getsizeof`` is invalid.

    ``currsize`` is in bytes when ``max_bytes`` is set, else a count (as cachetools).
    Reads through ``in``, ``peek`` and iteration neither count nor refresh entries.
    """

    # Why a TTL cache is a private subclass: the hit path of the common (no-TTL)
    # cache is the whole cost of a cache hit, so it must not test for a TTL.
    def __new__(cls, *args: Any, **kwargs: Any) -> LRUCache[K, V]:
        impl = _TTLLRUCache if cls is LRUCache and kwargs.get("ttl") is not None else cls
        return object.__new__(impl)

    def __init__(
        self,
        maxsize: int | None = None,
        *,
        max_bytes: SizeLike | None = None,
        getsizeof: Callable[[V], int] | None = None,
        ttl: float | None = None,
        on_evict: Callable[[K, V], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        register: bool = True,
        name: str | None = None,
    ) -> None:
        if maxsize is not None and (
            isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0
        ):
            raise ConfigurationError(
                f"maxsize={maxsize!r} (argument): expected a whole number of entries >= 0",
                value=maxsize,
                source="argument",
            )
        limit_bytes = None if max_bytes is None else parse_size(max_bytes, source="max_bytes")
        if maxsize is None and limit_bytes is None:
            maxsize = DEFAULT_MAXSIZE
        if getsizeof is not None and not callable(getsizeof):
            raise ConfigurationError(
                f"getsizeof={getsizeof!r} (argument): expected a callable returning bytes",
                value=getsizeof,
                source="argument",
            )
        if ttl is not None and (
            isinstance(ttl, bool)
            or not isinstance(ttl, (int, float))
            or not math.isfinite(ttl)
            or ttl <= 0
        ):
            raise ConfigurationError(
                f"ttl={ttl!r} (argument): expected a positive number of seconds",
                value=ttl,
                source="argument",
            )
        self.maxsize: int | None = maxsize
        self.max_bytes: int | None = limit_bytes
        self.ttl: float | None = None if ttl is None else float(ttl)
        self.name = name or f"{type(self).__name__.lstrip('_')}@{id(self):x}"
        self._od: OrderedDict[K, V] = OrderedDict()
        # Sizes are tracked when bounded by bytes or when a size function is given.
        self._sizer: Callable[[V], int] | None = getsizeof or (
            sizeof if limit_bytes is not None else None
        )
        self._sizes: dict[K, int] | None = {} if self._sizer is not None else None
        self._bytes = 0
        self._on_evict = on_evict
        self._clock = clock
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        # Write order of expiry times (oldest first), so expiring is amortised O(1).
        self._expires: dict[K, float] | None = {} if ttl is not None else None
        self._count_only = maxsize is not None and self._sizes is None and self._expires is None
        self._registration = _register(self, self.name) if register else None
        _live_caches[id(self)] = self

    def _reset_after_fork(self) -> None:
        """In a forked child: a fresh lock, and sizes and expiry made consistent again
        (a thread of the parent may have been half-way through an insert)."""
        self._lock = threading.Lock()
        od = self._od
        if self._sizes is not None:
            self._sizes = {k: v for k, v in self._sizes.items() if k in od}
            for key in [k for k in od if k not in self._sizes]:
                del od[key]
            self._bytes = sum(self._sizes.values())
        if self._expires is not None:
            self._expires = {k: v for k, v in self._expires.items() if k in od}
            for key in [k for k in od if k not in self._expires]:
                del od[key]

    # -- the hot paths ------------------------------------------------------

    def __getitem__(self, key: K) -> V:
        od = self._od
        try:
            value = od[key]
            od.move_to_end(key)
        except KeyError:
            self._misses += 1
            raise KeyError(key) from None
        self._hits += 1
        return value

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T) -> V | T: ...
    def get(self, key: K, default: Any = None) -> Any:
        """The value for ``key`` (refreshing it as most recently used), else ``default``."""
        od = self._od
        if key in od:  # a membership test first: raising KeyError on a miss costs more
            try:
                value = od[key]
                od.move_to_end(key)
            except KeyError:  # evicted by another thread between the two steps
                self._misses += 1
                return default
            self._hits += 1
            return value
        self._misses += 1
        return default

    def __setitem__(self, key: K, value: V) -> None:
        if self._count_only:
            # The common case (bounded by count only), inlined: misses are a fifth of
            # the operations in a typical workload, and each Python frame, list and
            # `with` statement shows (acquire/release is half the cost of `with`).
            od = self._od
            maxsize = self.maxsize
            assert maxsize is not None
            dropped: Any = None
            old: Any = None  # the replaced value, released after the lock
            lock = self._lock
            lock.acquire()
            try:
                if key in od:
                    old = od[key]
                    od[key] = value
                    od.move_to_end(key)
                elif len(od) < maxsize:
                    od[key] = value
                elif maxsize > 0 and len(od) == maxsize:  # the steady state of a full cache
                    # Make room first, so that even lock-free readers never see more
                    # than maxsize entries. popitem(False) pops the oldest (positional
                    # is cheaper than last=False).
                    dropped = od.popitem(False)
                    od[key] = value
                    self._evictions += 1
                else:  # maxsize was lowered meanwhile, or is 0
                    dropped = []
                    while od and len(od) >= maxsize:
                        dropped.append(od.popitem(False))
                    if maxsize > 0:
                        od[key] = value
                    else:  # a disabled cache: the new entry is dropped at once
                        dropped.append((key, value))
                    self._evictions += len(dropped)
            finally:
                lock.release()
            if dropped and self._on_evict is not None:
                _notify(self._on_evict, dropped if type(dropped) is list else [dropped])
            return
        size = self._measure(value) if self._sizer is not None else 1
        evicted: list[tuple[K, V]] = []
        with self._lock:
            old = self._insert_locked(key, value, size, evicted)
        del old  # released outside the lock
        if evicted:
            _notify(self._on_evict, evicted)

    def _measure(self, value: V) -> int:
        assert self._sizer is not None
        size = self._sizer(value)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigurationError(
                f"getsizeof returned {size!r} for a {type(value).__name__}:"
                " expected a whole number of bytes >= 0",
                value=size,
                source="getsizeof",
            )
        if self.max_bytes is not None and size > self.max_bytes:
            raise ItemTooLargeError(
                f"a {type(value).__name__} of {size} bytes is larger than"
                f" {self.name}'s max_bytes={self.max_bytes}",
                size_bytes=size,
                max_bytes=self.max_bytes,
            )
        return size

    def _insert_locked(self, key: K, value: V, size: int, evicted: list[tuple[K, V]]) -> Any:
        od = self._od
        expires = self._expires
        if expires is not None:
            self._expire_locked(self._clock(), evicted)
        old = od.get(key, _MISSING)
        sizes = self._sizes
        maxsize, max_bytes = self.maxsize, self.max_bytes
        n = len(evicted)
        if old is _MISSING:
            # Make room first, so that lock-free readers never see the cache over its
            # count bound. (Updates change no count; their byte total is settled below,
            # before the lock is released.)
            while od and (
                (maxsize is not None and len(od) >= maxsize)
                or (max_bytes is not None and self._bytes + size > max_bytes)
            ):
                evicted.append(self._pop_lru_locked())
            if maxsize == 0:  # a disabled cache: the new entry is dropped at once
                evicted.append((key, value))
                self._evictions += len(evicted) - n
                return old
        od[key] = value
        if old is not _MISSING:
            od.move_to_end(key)
        if sizes is not None:
            self._bytes += size - sizes.get(key, 0)
            sizes[key] = size
        if expires is not None:
            expires.pop(key, None)  # re-insert: keeps the dict in write order
            assert self.ttl is not None
            expires[key] = self._clock() + self.ttl
        while (maxsize is not None and len(od) > maxsize) or (
            max_bytes is not None and self._bytes > max_bytes
        ):
            evicted.append(self._pop_lru_locked())
        self._evictions += len(evicted) - n
        return old

    def _pop_lru_locked(self) -> tuple[K, V]:
        key, value = self._od.popitem(False)
        if self._sizes is not None:
            self._bytes -= self._sizes.pop(key)
        if self._expires is not None:
            self._expires.pop(key, None)
        return key, value

    def _remove_locked(self, key: K) -> V:
        value = self._od.pop(key)
        if self._sizes is not None:
            self._bytes -= self._sizes.pop(key)
        if self._expires is not None:
            self._expires.pop(key, None)
        return value

    def _expire_locked(self, now: float, out: list[tuple[K, V]]) -> int:
        expires = self._expires
        if not expires:
            return 0
        dead = []
        for key, when in expires.items():
            if when > now:
                break
            dead.append(key)
        for key in dead:
            out.append((key, self._remove_locked(key)))
        self._expirations += len(dead)
        return len(dead)

    # -- the rest of the mapping ----------------------------------------------

    def __delitem__(self, key: K) -> None:
        with self._lock:
            value = self._remove_locked(key)
        del value

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V) -> V: ...
    @overload
    def pop(self, key: K, default: T) -> V | T: ...
    def pop(self, key: K, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value (``default``, or KeyError, if absent)."""
        with self._lock:
            try:
                value = self._remove_locked(key)
            except KeyError:
                if default is _MISSING:
                    raise
                return default
        return value

    def popitem(self) -> tuple[K, V]:
        """Remove and return the least recently used ``(key, value)``; KeyError if empty."""
        with self._lock:
            if not self._od:
                raise KeyError(f"popitem(): {self.name} is empty")
            return self._pop_lru_locked()

    def __contains__(self, key: object) -> bool:
        return key in self._od

    def __len__(self) -> int:
        return len(self._od)

    def __iter__(self) -> Iterator[K]:
        return iter(self._snapshot_keys())

    def keys(self) -> KeysView[K]:
        """Keys, least recently used first, as a snapshot (iterating never raises)."""
        return _SnapshotKeys(self)

    def items(self) -> ItemsView[K, V]:
        """``(key, value)`` pairs as a snapshot; neither counted nor refreshed."""
        return _SnapshotItems(self)

    def values(self) -> ValuesView[V]:
        """Values as a snapshot; neither counted nor refreshed."""
        return _SnapshotValues(self)

    def _snapshot_keys(self) -> list[K]:
        with self._lock:
            return list(self._od)

    def _snapshot_items(self) -> list[tuple[K, V]]:
        with self._lock:
            return list(self._od.items())

    @overload
    def peek(self, key: K) -> V | None: ...
    @overload
    def peek(self, key: K, default: V | T) -> V | T: ...
    def peek(self, key: K, default: Any = None) -> Any:
        """The value for ``key`` without refreshing it or counting a hit or miss."""
        return self._od.get(key, default)

    def clear(self) -> None:
        """Remove every entry (``on_evict`` is not called)."""
        with self._lock:
            old = self._od
            self._od = OrderedDict()
            if self._sizes is not None:
                self._sizes = {}
            if self._expires is not None:
                self._expires = {}
            self._bytes = 0
        del old  # values are released outside the lock

    # -- sizes, bounds and relief -------------------------------------------

    @property
    def currsize(self) -> int:
        """Bytes held when bounded by ``max_bytes``, else the number of entries."""
        return self._bytes if self.max_bytes is not None else len(self._od)

    def getsizeof(self, value: V) -> int:
        """The size ``value`` counts for in ``currsize``: bytes when byte-bounded, else 1."""
        if self.max_bytes is None:
            return 1
        assert self._sizer is not None
        return self._sizer(value)

    def stats(self) -> CacheStats:
        """The counters and sizes now."""
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            expirations=self._expirations,
            currsize=self.currsize,
            count=len(self._od),
            size_bytes=self._bytes if self._sizes is not None else None,
            maxsize=self.maxsize,
            max_bytes=self.max_bytes,
        )

    def shrink(self, fraction: float = 0.5) -> int:
        """Drop the least recently used ``fraction`` of entries (rounded up).

        The governor calls this under memory pressure.

        Args:
            fraction: between 0 and 1; 1 empties the cache.

        Returns:
            The bytes freed: exact when sizes are tracked, else an estimate
            (the deep size of the dropped values, which may be shared elsewhere).

        Raises:
            ConfigurationError: ``fraction`` is outside [0, 1].
        """
        fraction = _check_fraction(fraction)
        evicted: list[tuple[K, V]] = []
        with self._lock:
            before = self._bytes
            n = math.ceil(len(self._od) * fraction)
            for _ in range(n):
                evicted.append(self._pop_lru_locked())
            self._evictions += n
            freed = before - self._bytes
        if self._sizes is None:
            freed = sum(sizeof(value) for _, value in evicted)
        if evicted:
            log.debug("%s shrank by %d entries (%d bytes)", self.name, len(evicted), freed)
            _notify(self._on_evict, evicted)
        return freed

    def expire(self) -> int:
        """Drop every expired entry now; return how many (0 without a ``ttl``)."""
        if self._expires is None:
            return 0
        evicted: list[tuple[K, V]] = []
        with self._lock:
            n = self._expire_locked(self._clock(), evicted)
        if evicted:
            _notify(self._on_evict, evicted)
        return n

    def __getstate__(self) -> dict[str, Any]:
        # copy.copy and pickle get an independent cache: its own lock and entries
        # (values are shared by a shallow copy), and a registration of its own.
        with self._lock:
            state = dict(self.__dict__)
            state["_od"] = OrderedDict(self._od)
            state["_sizes"] = None if self._sizes is None else dict(self._sizes)
            state["_expires"] = None if self._expires is None else dict(self._expires)
        state.pop("_lock", None)
        state["_registered"] = state.pop("_registration", None) is not None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        registered = state.pop("_registered", False)
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self.name = f"{type(self).__name__.lstrip('_')}@{id(self):x}"
        self._registration = _register(self, self.name) if registered else None
        _live_caches[id(self)] = self

    def __repr__(self) -> str:
        bounds = []
        if self.maxsize is not None:
            bounds.append(f"maxsize={self.maxsize}")
        if self.max_bytes is not None:
            bounds.append(f"max_bytes={self.max_bytes}")
        if self.ttl is not None:
            bounds.append(f"ttl={self.ttl}")
        return f"<LRUCache {self.name} {' '.join(bounds)} len={len(self)} currsize={self.currsize}>"


class _TTLLRUCache(LRUCache[K, V]):
    """``LRUCache(ttl=...)``: the same cache whose lookups also check the entry's age."""

    def _lookup(self, key: K) -> Any:
        od = self._od
        expires = self._expires
        assert expires is not None
        try:
            value = od[key]
            when = expires[key]
        except KeyError:
            self._misses += 1
            return _MISSING
        if self._clock() >= when:
            self._drop_expired(key, when)
            self._misses += 1
            return _MISSING
        try:
            od.move_to_end(key)
        except KeyError:
            self._misses += 1
            return _MISSING
        self._hits += 1
        return value

    def _drop_expired(self, key: K, when: float) -> None:
        evicted: list[tuple[K, V]] = []
        with self._lock:
            expires = self._expires
            assert expires is not None
            if expires.get(key) == when:  # not rewritten meanwhile
                evicted.append((key, self._remove_locked(key)))
                self._expirations += 1
        if evicted:
            _notify(self._on_evict, evicted)

    def __getitem__(self, key: K) -> V:
        value = self._lookup(key)
        if value is _MISSING:
            raise KeyError(key)
        return cast("V", value)

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T) -> V | T: ...
    def get(self, key: K, default: Any = None) -> Any:
        """The value for ``key`` if present and not expired, else ``default``."""
        value = self._lookup(key)
        return default if value is _MISSING else value

    def __contains__(self, key: object) -> bool:
        expires = self._expires
        assert expires is not None
        when = expires.get(key)  # type: ignore[arg-type]
        return when is not None and self._clock() < when

    @overload
    def peek(self, key: K) -> V | None: ...
    @overload
    def peek(self, key: K, default: V | T) -> V | T: ...
    def peek(self, key: K, default: Any = None) -> Any:
        """The value for ``key`` if not expired, without refreshing or counting it."""
        return self._od.get(key, default) if key in self else default

    def __len__(self) -> int:
        self.expire()
        return len(self._od)

    def _snapshot_keys(self) -> list[K]:
        self.expire()
        return super()._snapshot_keys()

    def _snapshot_items(self) -> list[tuple[K, V]]:
        self.expire()
        return super()._snapshot_items()


# ---------------------------------------------------------------------------
# WeakCache


class WeakCache(MutableMapping[K, V]):
    """A cache whose values live only while something else uses them, plus recent ones.

    Values are held through a :class:`weakref.WeakValueDictionary`, so an entry
    disappears when its value is garbage-collected; the ``strong_size`` most
    recently used values are also held strongly, so hot values survive a
    collection. Values must be weakly referenceable (instances of most classes;
    not ``int``, ``str``, ``tuple``, ``list`` or ``dict``).

    Args:
        strong_size: how many recent values to keep alive (0 for none).
        register: register ``shrink`` (which releases the strong references) with
            the governor, weakly.
        name: a label for logs and the governor.

    Thread-safe (one re-entrant lock: values may die, and run ``__del__``, while
    it is held). ``maxsize`` is None: the weak part is bounded by the values alive.
    """

    maxsize: int | None = None
    max_bytes: int | None = None

    def __init__(self, strong_size: int = 128, *, register: bool = True, name: str | None = None):
        if isinstance(strong_size, bool) or not isinstance(strong_size, int) or strong_size < 0:
            raise ConfigurationError(
                f"strong_size={strong_size!r} (argument): expected a whole number >= 0",
                value=strong_size,
                source="argument",
            )
        self.strong_size = strong_size
        self.name = name or f"WeakCache@{id(self):x}"
        self._weak: weakref.WeakValueDictionary[K, V] = weakref.WeakValueDictionary()
        self._strong: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.RLock()
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._registration = _register(self, self.name) if register else None
        _live_caches[id(self)] = self

    def _reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held)."""
        self._lock = threading.RLock()

    def _touch_locked(self, key: K, value: V, released: list[V]) -> None:
        if self.strong_size == 0:
            return
        strong = self._strong
        strong[key] = value
        strong.move_to_end(key)
        while len(strong) > self.strong_size:
            released.append(strong.popitem(False)[1])
            self._evictions += 1

    def __getitem__(self, key: K) -> V:
        released: list[V] = []
        with self._lock:
            value = self._weak.get(key)
            if value is None:
                self._misses += 1
                raise KeyError(key)
            self._hits += 1
            self._touch_locked(key, value, released)
        return value

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T) -> V | T: ...
    def get(self, key: K, default: Any = None) -> Any:
        """The live value for ``key`` (refreshing it), else ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: K, value: V) -> None:
        released: list[V] = []
        with self._lock:
            try:
                self._weak[key] = value
            except TypeError:
                raise TypeError(
                    f"{self.name}: a {type(value).__name__} cannot be held weakly;"
                    " store instances of a class (add '__weakref__' to its __slots__),"
                    " or use LRUCache"
                ) from None
            self._touch_locked(key, value, released)

    def __delitem__(self, key: K) -> None:
        with self._lock:
            strong = self._strong.pop(key, None)
            del self._weak[key]
        del strong

    def __contains__(self, key: object) -> bool:
        return key in self._weak

    def __len__(self) -> int:
        return len(self._weak)

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            return iter(list(self._weak.keys()))

    def popitem(self) -> tuple[K, V]:
        """Remove and return a live ``(key, value)``, oldest strongly held first."""
        with self._lock:
            while self._strong:
                key, value = self._strong.popitem(False)
                if self._weak.pop(key, None) is not None:
                    return key, value
            key, value = self._weak.popitem()
            return key, value

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            old = self._strong
            self._strong = OrderedDict()
            self._weak.clear()
        del old

    @property
    def currsize(self) -> int:
        """The number of live entries."""
        return len(self._weak)

    def getsizeof(self, value: V) -> int:
        """Every entry counts 1 in ``currsize``."""
        return 1

    def stats(self) -> CacheStats:
        """The counters now (``evictions`` counts strong references released)."""
        n = len(self._weak)
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            expirations=0,
            currsize=n,
            count=n,
            size_bytes=None,
            maxsize=None,
            max_bytes=None,
        )

    def shrink(self, fraction: float = 0.5) -> int:
        """Release the strong references to the oldest ``fraction`` of recent values.

        Returns:
            The deep size of the released values that were then collected (those
            still used elsewhere free nothing and are not counted).
        """
        fraction = _check_fraction(fraction)
        with self._lock:
            n = math.ceil(len(self._strong) * fraction)
            dropped = [self._strong.popitem(False) for _ in range(n)]
            self._evictions += n
        measured = [(weakref.ref(value), sizeof(value)) for _, value in dropped]
        del dropped
        return sum(size for ref, size in measured if ref() is None)

    def __reduce__(self) -> Any:
        raise TypeError(
            f"{self.name}: a WeakCache cannot be copied or pickled (its values are held"
            " weakly, and a copy would share its lock); build a new one"
        )

    def __repr__(self) -> str:
        return f"<WeakCache {self.name} strong_size={self.strong_size} len={len(self)}>"


# ---------------------------------------------------------------------------
# decorators

_KWMARK = object()
_FAST_TYPES = frozenset({int, str})


def hashkey(*args: Hashable, **kwargs: Hashable) -> Hashable:
    """The cache key for a call: the arguments, with keywords in name order.

    A single ``int`` or ``str`` argument is its own key (as ``functools.lru_cache``
    does), which keeps the commonest lookups cheap.
    """
    if not kwargs:
        if len(args) == 1 and type(args[0]) in _FAST_TYPES:
            return args[0]
        return args
    return (*args, _KWMARK, *sorted(kwargs.items()))


def _miss_store(cache: MutableMapping[Any, Any], key: Hashable, value: Any) -> None:
    try:
        cache[key] = value
    except ItemTooLargeError:
        log.debug("value for %r too large to cache; returned uncached", key)


def _wrap(
    func: Callable[P, R],
    cache: MutableMapping[Any, Any],
    key: Callable[..., Hashable],
) -> Callable[P, R]:
    import inspect  # at decoration time only: it is not cheap to import

    get = cache.get
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key(*args, **kwargs)
            value = get(k, _MISSING)
            if value is _MISSING:
                value = await func(*args, **kwargs)
                _miss_store(cache, k, value)
            return value

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key(*args, **kwargs)
            value = get(k, _MISSING)
            if value is _MISSING:
                value = func(*args, **kwargs)
                _miss_store(cache, k, value)
            return value

        wrapper = sync_wrapper
    wrapper.cache = cache  # type: ignore[attr-defined]
    wrapper.cache_key = key  # type: ignore[attr-defined]
    wrapper.cache_clear = cache.clear  # type: ignore[attr-defined]
    return cast("Callable[P, R]", wrapper)


@overload
def cached(cache: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def cached(
    cache: MutableMapping[Any, Any] | None = None,
    /,
    *,
    key: Callable[..., Hashable] = ...,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def cached(cache: Any = None, /, *, key: Callable[..., Hashable] = hashkey) -> Any:
    """Cache a function's results in ``cache`` (default: a new ``LRUCache(128)``).

    Use as ``@cached``, ``@cached()`` or ``@cached(LRUCache(max_bytes="64 MiB"))``.
    Works on ``async def`` functions too (the awaited result is cached). Any
    ``MutableMapping`` works as the cache; memwarden's caches are thread-safe, so
    no lock is needed. Concurrent misses for one key may each call the function
    (no single-flight). A value too large for a byte-bounded cache is returned
    uncached.

    Args:
        cache: the mapping to store results in.
        key: builds the key from the call's arguments; default :func:`hashkey`.

    Returns:
        The decorator; the decorated function keeps its signature (``Callable[P, R]``;
        an ``async def`` stays a coroutine function) and has ``cache``,
        ``cache_key`` and ``cache_clear()`` attributes (untyped: reach them with
        ``getattr`` or a ``cast``).
    """
    if callable(cache) and not isinstance(cache, MutableMapping):
        return _wrap(cache, LRUCache(DEFAULT_MAXSIZE), key)
    store: MutableMapping[Any, Any] = LRUCache(DEFAULT_MAXSIZE) if cache is None else cache

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        return _wrap(func, store, key)

    return decorator


class _Slot:
    """One instance's cache, with a weak reference to the instance it belongs to."""

    __slots__ = ("__weakref__", "cache", "owner")

    def __init__(self, owner: weakref.ref[Any], cache: MutableMapping[Any, Any]) -> None:
        self.owner = owner
        self.cache = cache

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        # pickle/deepcopy of an instance carry no cache (nor its lock): an empty slot,
        # which belongs to nobody, so the copy makes its own on first call.
        return (_empty_slot, ())


def _dead_owner() -> None:
    return None


def _empty_slot() -> _Slot:
    return _Slot(_dead_owner, {})  # type: ignore[arg-type]


class _MethodCaches:
    """The per-instance caches of one ``cached_method``.

    Who keeps what alive: an instance with a ``__dict__`` holds its own cache there
    (in a :class:`_Slot`, like ``functools.cached_property`` stores its value), so
    the cache dies with the instance, and a cached value that refers back to the
    instance only makes a cycle the garbage collector reclaims. The slot knows its
    owner through a weak reference, so a ``copy.copy`` of the instance, which
    shares the ``__dict__`` entries, is detected and gets a cache of its own.
    Instances without a ``__dict__`` (``__slots__``) are found by identity in a
    table that holds them weakly and drops their entry when they die; there a
    value referring back to its instance would keep it alive (documented).
    ``slots`` lets the governor's reliever reach every live cache.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        cache_factory: Callable[[], MutableMapping[Any, Any]],
        key: Callable[..., Hashable],
    ) -> None:
        self.func = func
        self.cache_factory = cache_factory
        self.key = key
        self.attr = f"__cached_method_{getattr(func, '__qualname__', id(func))}"
        self.by_id: dict[int, _Slot] = {}
        self.slots: weakref.WeakSet[_Slot] = weakref.WeakSet()
        self.registration: Any = None
        self.label = f"cached_method {getattr(func, '__qualname__', repr(func))}"

    def cache_for(self, obj: object, *, create: bool = True) -> MutableMapping[Any, Any] | None:
        """``obj``'s cache (made on first use when ``create``), else None."""
        namespace = getattr(obj, "__dict__", None)
        slot = namespace.get(self.attr) if namespace is not None else self.by_id.get(id(obj))
        if slot is not None and slot.owner() is obj:
            return slot.cache
        return self.create(obj) if create else None

    def create(self, obj: object) -> MutableMapping[Any, Any]:
        """Make and remember ``obj``'s cache."""
        namespace = getattr(obj, "__dict__", None)
        i = id(obj)
        try:
            if namespace is not None:
                ref = weakref.ref(obj)
            else:
                ref = weakref.ref(obj, functools.partial(self._forget, i))
        except TypeError:
            raise TypeError(
                f"{self.label}: {type(obj).__name__} instances cannot be weakly referenced;"
                " add '__weakref__' to its __slots__"
            ) from None
        slot = _Slot(ref, self.cache_factory())
        if namespace is not None:
            namespace[self.attr] = slot
        else:
            self.by_id[i] = slot
        self.slots.add(slot)
        if self.registration is None:
            self.registration = _register(self, self.label)
        return slot.cache

    def _forget(self, i: int, ref: weakref.ref[Any]) -> None:
        # A weakref callback: may run in any thread, during garbage collection; so no
        # lock, only single dict operations.
        slot = self.by_id.get(i)
        if slot is not None and slot.owner is ref:
            self.by_id.pop(i, None)

    def _caches(self) -> list[MutableMapping[Any, Any]]:
        return [slot.cache for slot in list(self.slots)]

    def cache_clear(self, obj: object | None = None) -> None:
        """Empty ``obj``'s cache, or every instance's when ``obj`` is None."""
        caches = self._caches() if obj is None else [self.cache_for(obj, create=False)]
        for cache in caches:
            if cache is not None:
                cache.clear()

    def shrink(self, fraction: float = 0.5) -> int:
        """Shrink every live instance's cache by ``fraction``; return the bytes freed."""
        fraction = _check_fraction(fraction)
        freed = 0
        for cache in self._caches():
            shrink = getattr(cache, "shrink", None)
            if shrink is not None:
                freed += int(shrink(fraction) or 0)
        return freed

    def stats(self) -> CacheStats:
        """The per-instance caches' counters summed (``maxsize`` is per instance)."""
        parts = [c.stats() for c in self._caches() if hasattr(c, "stats")]
        sizes = [p.size_bytes for p in parts if p.size_bytes is not None]
        first = parts[0] if parts else None
        return CacheStats(
            hits=sum(p.hits for p in parts),
            misses=sum(p.misses for p in parts),
            evictions=sum(p.evictions for p in parts),
            expirations=sum(p.expirations for p in parts),
            currsize=sum(p.currsize for p in parts),
            count=sum(p.count for p in parts),
            size_bytes=sum(sizes) if sizes else None,
            maxsize=first.maxsize if first else None,
            max_bytes=first.max_bytes if first else None,
        )


class CachedMethod(Protocol[S_contra, P, R_co]):
    """What :func:`cached_method` returns, as type checkers see it.

    A method: called on an instance it has the decorated method's parameters and
    return type; reached through the class (``Repo.load``) it has the cache
    controls, typed. At run time it is a plain function with these attributes.
    """

    def __call__(self, obj: S_contra, /, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    @overload
    def __get__(
        self, obj: None, owner: type[Any] | None = None, /
    ) -> CachedMethod[S_contra, P, R_co]: ...

    @overload
    def __get__(self, obj: S_contra, owner: type[Any] | None = None, /) -> Callable[P, R_co]: ...

    def cache_for(self, obj: object, *, create: bool = True) -> MutableMapping[Any, Any] | None:
        """``obj``'s cache (made on first use when ``create``), else None."""

    def cache_clear(self, obj: object | None = None) -> None:
        """Empty ``obj``'s cache, or every instance's when ``obj`` is None."""

    def shrink(self, fraction: float = 0.5) -> int:
        """Shrink every live instance's cache by ``fraction``; return the bytes freed."""

    def stats(self) -> CacheStats:
        """The per-instance caches' counters summed (``maxsize`` is per instance)."""


@overload
def cached_method(func: Callable[Concatenate[S, P], R], /) -> CachedMethod[S, P, R]: ...


@overload
def cached_method(
    func: None = None,
    /,
    *,
    maxsize: int | None = ...,
    max_bytes: SizeLike | None = ...,
    ttl: float | None = ...,
    key: Callable[..., Hashable] = ...,
    cache_factory: Callable[[], MutableMapping[Any, Any]] | None = ...,
) -> Callable[[Callable[Concatenate[S, P], R]], CachedMethod[S, P, R]]: ...


def cached_method(
    func: Callable[..., Any] | None = None,
    /,
    *,
    maxsize: int | None = DEFAULT_MAXSIZE,
    max_bytes: SizeLike | None = None,
    ttl: float | None = None,
    key: Callable[..., Hashable] = hashkey,
    cache_factory: Callable[[], MutableMapping[Any, Any]] | None = None,
) -> Any:
    """Cache a method's results per instance without keeping the instance alive.

    ``functools.lru_cache`` on a method keys one global cache on ``self``, so every
    instance it has seen stays alive until evicted. Here each instance gets its own
    cache, kept in the instance's ``__dict__`` (as ``functools.cached_property``
    keeps its value) and owned by the instance through a weak reference, so the
    cache dies with the instance, and copies and pickles never share or carry it.
    Instances without a ``__dict__`` are looked up by identity in a table that
    holds them weakly. The decorated method stays a plain function, so a bound
    method keeps its instance alive while you hold it, as usual.

    Use as ``@cached_method`` or ``@cached_method(maxsize=..., max_bytes=..., ttl=...)``.

    Args:
        func: the method (when used without parentheses).
        maxsize: per-instance count bound (default 128).
        max_bytes: per-instance byte bound (int or size string).
        ttl: per-instance entry lifetime in seconds.
        key: builds the key from the arguments after ``self``; default :func:`hashkey`.
        cache_factory: makes each instance's cache instead (called with no
            arguments); overrides ``maxsize``, ``max_bytes`` and ``ttl``.

    Returns:
        The method, typed as the original (``self`` and the other parameters
        kept), with ``cache_for(obj)``, ``cache_clear(obj=None)``,
        ``shrink(fraction)`` and ``stats()`` attributes (untyped: reach them with
        ``getattr`` or a ``cast``).

    Raises:
        ConfigurationError: a bound or ``ttl`` is invalid (at decoration).
        TypeError: on first call, if the instance cannot be weakly referenced
            (add ``"__weakref__"`` to its ``__slots__``).

    Per-instance caches are not registered with the governor one by one (an
    application may have millions of instances): one reliever per decorated method
    shrinks them all. A cached value that refers back to its instance makes a
    cycle, which the garbage collector (not reference counting) reclaims; for a
    ``__slots__`` class without ``__dict__`` such a value keeps the instance alive.
    The cache appears in ``vars(obj)`` under ``__cached_method_<qualname>``.
    """
    if cache_factory is None:
        LRUCache(maxsize, max_bytes=max_bytes, ttl=ttl, register=False)  # validate now

        def cache_factory() -> MutableMapping[Any, Any]:
            return LRUCache(maxsize, max_bytes=max_bytes, ttl=ttl, register=False)

    factory = cache_factory

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        caches = _MethodCaches(fn, factory, key)
        cache_for = caches.cache_for

        @functools.wraps(fn)
        def method(obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            cache = cache_for(obj)
            assert cache is not None
            k = key(*args, **kwargs)
            value = cache.get(k, _MISSING)
            if value is _MISSING:
                value = fn(obj, *args, **kwargs)
                _miss_store(cache, k, value)
            return value

        method.cache_for = caches.cache_for  # type: ignore[attr-defined]
        method.cache_clear = caches.cache_clear  # type: ignore[attr-defined]
        method.shrink = caches.shrink  # type: ignore[attr-defined]
        method.stats = caches.stats  # type: ignore[attr-defined]
        return method

    return decorate(func) if func is not None else decorate
