"""Bounded caches: a thread-safe LRU (by count, size or bytes) and TTL cache, a weak-value cache.

The playbook's cure for "unbounded caches". ``LRUCache`` and ``TTLCache`` are drop-ins
for cachetools' (``maxsize``, ``currsize``, ``getsizeof``, ``__missing__``, ``timer``;
checked against cachetools' own tests), are also bounded by bytes (``max_bytes``),
report evictions to a callback, keep statistics, and give memory back through
``shrink(fraction)``, which they register (weakly) with the governor given as
``governor=``. ``WeakCache`` holds values weakly with a small strong LRU of recent
values. ``cached`` and ``cached_method`` put either in front of a function;
``cached_method`` never keeps ``self`` alive (the flaw of ``functools.lru_cache`` on
methods); ``cachedmethod`` is cachetools' method decorator. The size bookkeeping is
the one LRU core in ``memwarden._lru``.

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

The hot paths (``get``, ``cache[k]``, count-bounded ``cache[k] = v``) are LRUCache's
base class: ``memwarden._lrucore.LRUBase`` in C when the optional extension is built,
else :class:`_LRUBasePy` here; both take exactly the steps above on the same
``OrderedDict`` and lock, and call back into the Python methods for everything else.

The C paths' counters are exact (they change while holding the GIL); the Python
paths' are plain integers bumped without the lock: exact in single-threaded use;
under heavy thread contention an increment can very rarely be lost (statistics, not
accounting). On free-threaded CPython builds the design
still holds for the mapping (dict operations lock per object) but the counters
become approximate.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
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
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    NamedTuple,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

from memwarden._lru import BoundedLRU
from memwarden._registry import DEFAULT, DefaultType, reset_after_fork
from memwarden._units import SizeLike, parse_size
from memwarden.exceptions import ConfigurationError, ItemTooLargeError
from memwarden.sizing import sizeof

if TYPE_CHECKING:
    from memwarden.pressure import Governor

__all__ = [
    "DEFAULT",
    "DEFAULT_MAXSIZE",
    "CacheInfo",
    "CacheStats",
    "CachedMethod",
    "ItemTooLargeError",
    "LRUCache",
    "TTLCache",
    "WeakCache",
    "cached",
    "cached_method",
    "cachedmethod",
    "hashkey",
    "methodkey",
    "typedkey",
    "typedmethodkey",
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
    # A plain ValueError, as the pools raise: one shrink protocol.
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ValueError(f"shrink(fraction={fraction!r}): expected a number in [0, 1] like 0.5")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"shrink(fraction={fraction!r}): expected a number in [0, 1] like 0.5")
    return float(fraction)


def _register(obj: Any, name: str, governor: Governor | DefaultType | None) -> Any:
    """Register ``obj.shrink`` with ``governor`` (weakly); None for none or on failure.

    Raises:
        TypeError: ``governor`` is not a governor, DEFAULT or None.
    """
    if governor is None:
        return None
    from memwarden.pressure import PRIORITY_CACHE, resolve_governor

    gov = resolve_governor(governor)
    if gov is None:
        return None
    try:
        return gov.register_reliever(obj.shrink, priority=PRIORITY_CACHE, name=name)
    except Exception:  # a full registry must not stop the cache
        log.warning("could not register %s with the governor", name, exc_info=True)
        return None


def _track_for_fork(cache: Any) -> None:
    # A lock that another thread held when the process forked stays locked forever in
    # the child: every cache gets a fresh lock, and consistent bookkeeping, there.
    # Held weakly (a bound method): the registration never keeps a cache alive.
    reset_after_fork(cache._reset_after_fork)


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
        return self._mapping._iter_snapshot()  # type: ignore[attr-defined, no-any-return]


class _SnapshotItems(ItemsView[K, V]):
    def __iter__(self) -> Iterator[tuple[K, V]]:
        return iter(self._mapping._snapshot_items())  # type: ignore[attr-defined]


class _SnapshotValues(ValuesView[V]):
    def __iter__(self) -> Iterator[V]:
        return (value for _, value in self._mapping._snapshot_items())  # type: ignore[attr-defined]


class _LRUBasePy:
    """The hot paths of :class:`LRUCache` in Python: its base when ``memwarden._lrucore``
    (the same paths in C) is not built. Attributes are the subclass's."""

    _base_hits = 0
    _base_misses = 0
    _base_evictions = 0
    _od: OrderedDict[Any, Any]
    _hits: int
    _misses: int
    _evictions: int
    _count_only: bool
    _lock: threading.Lock
    _on_evict: Callable[[Any, Any], None] | None

    def _attach(self, od: OrderedDict[Any, Any], lock: Any, count_bound: int, notify: bool) -> None:
        """Nothing to bind: these paths read the cache's attributes."""

    @property
    def _count_bound(self) -> int | None:
        raise NotImplementedError

    def _setitem(self, key: Any, value: Any) -> None:
        raise NotImplementedError

    def _delitem(self, key: Any) -> None:
        raise NotImplementedError

    def _too_large(self, value: Any, size: int) -> Exception:
        raise NotImplementedError

    def __getitem__(self, key: Any) -> Any:
        od = self._od
        try:
            value = od[key]
            od.move_to_end(key)
        except KeyError:
            self._misses += 1
        else:
            self._hits += 1
            return value
        return self.__missing__(key)

    def __missing__(self, key: Any) -> Any:
        """Called by ``cache[key]`` for a missing key; raises KeyError (override, as dict's)."""
        raise KeyError(key)

    def get(self, key: Any, default: Any = None) -> Any:
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

    def __setitem__(self, key: Any, value: Any) -> None:
        if self._count_only:
            # The common case (bounded by count only), inlined: misses are a fifth of
            # the operations in a typical workload, and each Python frame, list and
            # `with` statement shows (acquire/release is half the cost of `with`).
            od = self._od
            maxsize = self._count_bound
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
                elif maxsize == 0:
                    raise self._too_large(value, 1)
                else:  # maxsize was lowered meanwhile
                    dropped = []
                    while od and len(od) >= maxsize:
                        dropped.append(od.popitem(False))
                    od[key] = value
                    self._evictions += len(dropped)
            finally:
                lock.release()
            del old
            if dropped and self._on_evict is not None:
                _notify(self._on_evict, dropped if type(dropped) is list else [dropped])
            return
        self._setitem(key, value)

    def __delitem__(self, key: Any) -> None:
        self._delitem(key)


if TYPE_CHECKING:

    class _LRUBase:
        """What LRUCache's base class (C, or _LRUBasePy) provides, as type checkers see it."""

        _base_hits: int
        _base_misses: int
        _base_evictions: int

        def _attach(
            self, od: OrderedDict[Any, Any], lock: Any, count_bound: int, notify: bool
        ) -> None: ...

else:
    try:
        from memwarden._lrucore import LRUBase as _LRUBase
    except ImportError:  # built without a C compiler: the same paths in Python
        _LRUBase = _LRUBasePy


def _check_maxsize(maxsize: float | None) -> int | None:
    """``maxsize`` as a bound: an int, or None for ``None``/``math.inf`` (no bound)."""
    if maxsize is None or maxsize == math.inf:
        return None
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
        raise ConfigurationError(
            f"maxsize={maxsize!r} (argument): expected a whole number >= 0 or math.inf",
            value=maxsize,
            source="argument",
        )
    return maxsize


class LRUCache(_LRUBase, MutableMapping[K, V]):
    """A thread-safe least-recently-used cache bounded by entry count, total size or bytes.

    Args:
        maxsize: as in cachetools, the bound on ``currsize``: the number of entries,
            or, when entries are weighed (``getsizeof`` given or overridden, and no
            ``max_bytes``), the total of their weights. ``None`` or ``math.inf`` for
            no such bound. When neither ``maxsize`` nor ``max_bytes`` is given,
            :data:`DEFAULT_MAXSIZE` (128) applies.
        getsizeof: the size of a value; default: 1 per entry, or the deep size in
            bytes (:func:`memwarden.sizing.sizeof`) when ``max_bytes`` is set. A
            subclass may override the ``getsizeof`` method instead. Sizes are
            measured once, on insert.
        max_bytes: memwarden's explicit byte bound, the most bytes held as the sum of
            ``getsizeof(value)``; an ``int`` or a size string such as ``"64 MiB"``.
            With it, ``maxsize`` bounds the number of entries.
        on_evict: called as ``on_evict(key, value)`` for every entry the cache drops
            by itself (bound, expiry, ``shrink``), outside the lock; exceptions are
            logged. Not called for ``del``, ``pop``, ``popitem`` or ``clear``.
        governor: where ``shrink`` is registered as a reliever (weakly: the
            registration never keeps the cache alive): :data:`DEFAULT`, the
            process-wide governor; ``None`` for none; or a :class:`Governor`.
        register: ``False`` is ``governor=None`` (kept for existing callers).
        name: a label for logs and the governor; default ``LRUCache@<id>``.

    Raises:
        ConfigurationError: a bound or ``getsizeof`` is invalid.

    ``currsize`` is the total size when sizes are tracked, else the number of entries.
    Reads through ``in``, ``peek`` and iteration neither count nor refresh entries.
    Storing a value larger than the whole size bound (or any value when
    ``maxsize=0``) raises :class:`ItemTooLargeError` (a ``ValueError``, as cachetools).
    """

    def __init__(
        self,
        maxsize: float | None = None,
        getsizeof: Callable[[V], int] | None = None,
        *,
        max_bytes: SizeLike | None = None,
        on_evict: Callable[[K, V], None] | None = None,
        governor: Governor | DefaultType | None = DEFAULT,
        register: bool = True,
        name: str | None = None,
        **removed: Any,
    ) -> None:
        if removed:
            _reject_removed(type(self).__name__, removed)
        count_bound = _check_maxsize(maxsize)
        limit_bytes = None if max_bytes is None else parse_size(max_bytes, source="max_bytes")
        if maxsize is None and limit_bytes is None:
            maxsize = count_bound = DEFAULT_MAXSIZE
        if getsizeof is not None:
            if not callable(getsizeof):
                raise ConfigurationError(
                    f"getsizeof={getsizeof!r} (argument): expected a callable returning a size",
                    value=getsizeof,
                    source="argument",
                )
            # An instance attribute, as cachetools: ``cache.getsizeof`` is the function.
            self.__dict__["getsizeof"] = getsizeof
        self.maxsize: float | None = maxsize
        self.max_bytes: int | None = limit_bytes
        self.name = name or f"{type(self).__name__}@{id(self):x}"
        self._weighed = getsizeof is not None or type(self).getsizeof is not LRUCache.getsizeof
        if limit_bytes is not None:
            # memwarden's byte bound: maxsize counts entries, sizes are bytes.
            core: BoundedLRU[K, V] = BoundedLRU(count_bound, limit_bytes, sized=True)
        elif self._weighed:
            # cachetools' weighed cache: maxsize bounds the total of the weights.
            core = BoundedLRU(None, count_bound, sized=True)
        else:
            core = BoundedLRU(count_bound, None, sized=False)
        self._core = core
        # The core's OrderedDict, read lock-free by hits (re-read after clear()).
        self._od: OrderedDict[K, V] = core.od
        self._on_evict = on_evict
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        # Write order of expiry times (oldest first), so expiring is amortised O(1);
        # TTLCache sets it.
        self._expires: dict[K, Any] | None = None
        self._bind()
        self._registration = _register(self, self.name, governor if register else None)
        _track_for_fork(self)

    def _bind(self) -> None:
        """Settle what depends on the instance (after __init__ and after a copy)."""
        self._sizer: Callable[[V], int] | None = None
        if self._core.sizes is not None:
            self._sizer = self.getsizeof if self._weighed else sizeof
        self._count_only = (
            self._core.count_bound is not None
            and self._core.sizes is None
            and self._expires is None
        )
        self._attach_base()

    def _attach_base(self) -> None:
        # Bind the base's hot paths (C or Python) to the mapping and the lock; the
        # fast insert path serves count-only caches with room for an entry.
        count_only = self._count_only and self._core.count_bound != 0
        bound = self._core.count_bound if count_only and self._core.count_bound else -1
        self._attach(self._od, self._lock, bound, self._on_evict is not None)

    # The core's bookkeeping, by the names tests and subclasses read.
    @property
    def _count_bound(self) -> int | None:
        return self._core.count_bound

    @property
    def _size_bound(self) -> int | None:
        return self._core.size_bound

    @property
    def _sizes(self) -> dict[K, int] | None:
        return self._core.sizes

    @property
    def _bytes(self) -> int:
        return self._core.total

    def _reset_after_fork(self) -> None:
        """In a forked child: a fresh lock, and sizes and expiry made consistent again
        (a thread of the parent may have been half-way through an insert)."""
        self._lock = threading.Lock()
        self._attach_base()
        od = self._od
        self._core.repair()
        if self._expires is not None:
            self._expires = {k: v for k, v in self._expires.items() if k in od}
            for key in [k for k in od if k not in self._expires]:
                del od[key]

    # -- the hot paths: get, [] and []= come from the base class ---------------

    if TYPE_CHECKING:  # their typed signatures (the base is C or _LRUBasePy)

        def __getitem__(self, key: K) -> V: ...
        @overload
        def get(self, key: K) -> V | None: ...
        @overload
        def get(self, key: K, default: V | T) -> V | T: ...
        def get(self, key: K, default: Any = None) -> Any: ...
        def __setitem__(self, key: K, value: V) -> None: ...
        def __delitem__(self, key: K) -> None: ...

    def __missing__(self, key: K) -> V:
        """Called by ``cache[key]`` for a missing key; raises KeyError (override, as dict's)."""
        raise KeyError(key)

    def _setitem(self, key: K, value: V) -> None:
        """``cache[key] = value`` beyond the count-only fast path (sizes, a zero bound)."""
        size = self._measure(value) if self._sizer is not None else 1
        evicted: list[tuple[K, V]] = []
        with self._lock:
            old = self._insert_locked(key, value, size, evicted, None)
        del old  # released outside the lock
        if evicted:
            _notify(self._on_evict, evicted)

    def _notify_one(self, key: K, value: V) -> None:
        _notify(self._on_evict, [(key, value)])

    def _too_large(self, value: V, size: int) -> ItemTooLargeError:
        if self.max_bytes is not None:
            bound = f"max_bytes={self.max_bytes}"
        elif self._size_bound is not None:
            bound = f"maxsize={self._size_bound} (the total of getsizeof)"
        else:
            bound = f"maxsize={self._count_bound}"
        return ItemTooLargeError(
            f"a {type(value).__name__} of size {size} is too large for {self.name}'s {bound}",
            size_bytes=size,
            max_bytes=self._size_bound if self._size_bound is not None else 0,
        )

    def _measure(self, value: V) -> int:
        assert self._sizer is not None
        size = self._sizer(value)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigurationError(
                f"getsizeof returned {size!r} for a {type(value).__name__}:"
                " expected a whole number >= 0",
                value=size,
                source="getsizeof",
            )
        if self._size_bound is not None and size > self._size_bound:
            raise self._too_large(value, size)
        return size

    def _insert_locked(
        self, key: K, value: V, size: int, evicted: list[tuple[K, V]], expires_at: Any
    ) -> Any:
        core = self._core
        if not core.fits(size):
            raise self._too_large(value, size)
        n = len(evicted)
        old = core.put(key, value, size, evicted)
        expires = self._expires
        if expires is not None:
            for dropped, _ in evicted[n:]:
                expires.pop(dropped, None)
            expires.pop(key, None)  # re-insert: keeps the dict in write order
            expires[key] = expires_at
        self._evictions += len(evicted) - n
        return old

    def _pop_lru_locked(self) -> tuple[K, V]:
        key, value = self._core.pop_lru()
        if self._expires is not None:
            self._expires.pop(key, None)
        return key, value

    def _remove_locked(self, key: K) -> V:
        value = self._core.remove(key)
        if self._expires is not None:
            self._expires.pop(key, None)
        return value

    # -- the rest of the mapping ----------------------------------------------

    def _delitem(self, key: K) -> None:
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
                    raise KeyError(key) from None
                return default
        return value

    def popitem(self) -> tuple[K, V]:
        """Remove and return the least recently used ``(key, value)``; KeyError if empty."""
        with self._lock:
            if not self._od:
                raise KeyError(f"popitem(): {self.name} is empty") from None
            return self._pop_lru_locked()

    def setdefault(self, key: K, default: V = None) -> V:  # type: ignore[assignment]
        """``cache[key]`` if present (never calling ``__missing__``), else store ``default``."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            self[key] = value = default
        return cast("V", value)

    def __contains__(self, key: object) -> bool:
        return key in self._od

    def __len__(self) -> int:
        return len(self._od)

    def __iter__(self) -> Iterator[K]:
        return self._iter_snapshot()

    def _iter_snapshot(self) -> Iterator[K]:
        # A snapshot, least recently used first: inserting while iterating never
        # raises; keys removed meanwhile are skipped.
        return (key for key in self._snapshot_keys() if key in self._od)

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
            old = self._core.clear()
            if self._expires is not None:
                self._expires = {}
        del old  # values are released outside the lock

    # -- sizes, bounds and relief -------------------------------------------

    @property
    def currsize(self) -> int:
        """The total size held when sizes are tracked, else the number of entries."""
        return self._bytes if self._sizes is not None else len(self._od)

    def getsizeof(self, value: V) -> int:
        """The size ``value`` counts for in ``currsize``.

        1 per entry, or its deep size in bytes when bounded by ``max_bytes``.
        Override in a subclass (or pass ``getsizeof=``) to weigh entries.
        """
        return 1 if self.max_bytes is None else sizeof(value)

    def stats(self) -> CacheStats:
        """The counters and sizes now."""
        return CacheStats(
            hits=self._hits + self._base_hits,
            misses=self._misses + self._base_misses,
            evictions=self._evictions + self._base_evictions,
            expirations=self._expirations,
            currsize=self.currsize,
            count=len(self._od),
            size_bytes=self._bytes if self._sizes is not None else None,
            maxsize=None if self.maxsize is None or self.maxsize == math.inf else int(self.maxsize),
            max_bytes=self.max_bytes,
        )

    def shrink(self, fraction: float = 0.5) -> int:
        """Drop the least recently used ``fraction`` of entries (rounded up).

        The governor calls this under memory pressure.

        Args:
            fraction: between 0 and 1; 1 empties the cache.

        Returns:
            The bytes freed: exact when byte-bounded, else an estimate (the deep
            size of the dropped values, which may be shared elsewhere).

        Raises:
            ValueError: ``fraction`` is outside [0, 1].
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
        if self.max_bytes is None:
            freed = sum(sizeof(value) for _, value in evicted)
        if evicted:
            log.debug("%s shrank by %d entries (%d bytes)", self.name, len(evicted), freed)
            _notify(self._on_evict, evicted)
        return freed

    def __getstate__(self) -> dict[str, Any]:
        # copy.copy and pickle get an independent cache: its own lock and entries
        # (values are shared by a shallow copy), and a registration of its own.
        with self._lock:
            state = dict(self.__dict__)
            state["_core"] = self._core.copy()
            state["_expires"] = None if self._expires is None else dict(self._expires)
        state.pop("_od", None)  # the core's, set again from the copy's core
        # The base's counters (C fields, not in __dict__) carry over as the copy's own.
        state["_hits"] += self._base_hits
        state["_misses"] += self._base_misses
        state["_evictions"] += self._base_evictions
        state.pop("_lock", None)
        state.pop("_sizer", None)  # may be a bound method of this cache
        state["_registered"] = state.pop("_registration", None) is not None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        registered = state.pop("_registered", False)
        self.__dict__.update(state)
        self._od = self._core.od
        self._lock = threading.Lock()
        self.name = f"{type(self).__name__}@{id(self):x}"
        self._bind()
        self._registration = _register(self, self.name, DEFAULT if registered else None)
        _track_for_fork(self)

    def __repr__(self) -> str:
        bounds = []
        if self.maxsize is not None:
            bounds.append(f"maxsize={self.maxsize!r}")
        if self.max_bytes is not None:
            bounds.append(f"max_bytes={self.max_bytes}")
        ttl = getattr(self, "ttl", None)
        if ttl is not None:
            bounds.append(f"ttl={ttl!r}")
        return (
            f"{type(self).__name__}({', '.join(bounds)}, currsize={self.currsize},"
            f" len={len(self)}, name={self.name!r})"
        )


class _Timer:
    """A TTL cache's view of its timer.

    Calling it reads the timer; ``with cache.timer as now:`` reads it once and holds
    that time, for the calling thread only, until the block ends (nested blocks share
    it), so several operations see one instant. Other attributes are the wrapped
    timer's. A copy of the cache wraps the same timer in a view of its own; a deep
    copy copies the timer too.
    """

    __slots__ = ("_local", "_timer")

    def __init__(self, timer: Callable[[], Any]) -> None:
        self._timer = timer
        # Per thread: a block held in one thread must not freeze time in another.
        self._local = threading.local()

    def __call__(self) -> Any:
        local = self._local
        return local.now if getattr(local, "depth", 0) else self._timer()

    def __enter__(self) -> Any:
        local = self._local
        depth = getattr(local, "depth", 0)
        if depth == 0:
            local.now = self._timer()
        local.depth = depth + 1
        return local.now

    def __exit__(self, *exc: object) -> None:
        local = self._local
        local.depth -= 1
        if local.depth == 0:
            del local.now

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return (_Timer, (self._timer,))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _Timer.__slots__:
            object.__setattr__(self, name, value)
        else:  # the wrapped timer's attributes (a test clock's ``now``) are set on it
            setattr(self._timer, name, value)

    def __getattr__(self, name: str) -> Any:
        # Not the protocols (copy's __deepcopy__ is the view's own), nor _timer
        # before it is set (during unpickling): no recursion.
        if name.startswith("__") or name in _Timer.__slots__:
            raise AttributeError(name)
        return getattr(self._timer, name)


def _check_ttl(ttl: Any) -> Any:
    if isinstance(ttl, datetime.timedelta):
        if ttl > datetime.timedelta(0):
            return ttl
    elif (
        not isinstance(ttl, bool)
        and isinstance(ttl, (int, float))
        and not math.isnan(ttl)
        and ttl > 0
    ):
        return ttl
    raise ConfigurationError(
        f"ttl={ttl!r} (argument): expected a positive number of seconds (math.inf for"
        " none), or a datetime.timedelta with a timer returning datetimes",
        value=ttl,
        source="argument",
    )


class TTLCache(LRUCache[K, V]):
    """An :class:`LRUCache` whose entries also expire ``ttl`` after they were written.

    cachetools' ``TTLCache``: an entry written at time ``t`` by ``timer()`` is gone
    from ``t + ttl`` on. Expired entries are never returned (``[]``, ``get``, ``pop``,
    ``popitem``, ``del``, ``in``, ``len`` and iteration skip them) and are dropped
    lazily: on lookup, on insert (all expired ones), by ``expire()``, or when the
    LRU bound evicts them. Iteration is in write order (the order they expire in).

    Args:
        maxsize: as for :class:`LRUCache`.
        ttl: an entry's lifetime, in the timer's units: seconds for the default
            timer (``math.inf`` for entries that never expire), or a
            :class:`datetime.timedelta` with a timer returning datetimes.
        timer: the clock; default :func:`time.monotonic`. Injectable for tests.
        getsizeof: as for :class:`LRUCache`.
        max_bytes, on_evict, governor, register, name: as for :class:`LRUCache`.

    Raises:
        ConfigurationError: a bound or ``ttl`` is invalid.
    """

    def __init__(
        self,
        maxsize: float | None,
        ttl: float | datetime.timedelta,
        timer: Callable[[], Any] = time.monotonic,
        getsizeof: Callable[[V], int] | None = None,
        *,
        max_bytes: SizeLike | None = None,
        on_evict: Callable[[K, V], None] | None = None,
        governor: Governor | DefaultType | None = DEFAULT,
        register: bool = True,
        name: str | None = None,
    ) -> None:
        self.ttl: Any = _check_ttl(ttl)
        if not callable(timer):
            raise ConfigurationError(
                f"timer={timer!r} (argument): expected a callable returning the time",
                value=timer,
                source="argument",
            )
        self.timer = _Timer(timer)
        super().__init__(
            maxsize,
            getsizeof,
            max_bytes=max_bytes,
            on_evict=on_evict,
            governor=governor,
            register=register,
            name=name,
        )
        self._expires = {}
        self._bind()

    # -- lookups: the entry's age is checked, lock-free ----------------------

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
        if not self.timer() < when:
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

    def _drop_expired(self, key: K, when: Any) -> None:
        evicted: list[tuple[K, V]] = []
        with self._lock:
            expires = self._expires
            assert expires is not None
            if key in expires and expires[key] is when:  # not rewritten meanwhile
                evicted.append((key, self._remove_locked(key)))
                self._expirations += 1
        if evicted:
            _notify(self._on_evict, evicted)

    def __getitem__(self, key: K) -> V:
        value = self._lookup(key)
        if value is _MISSING:
            return self.__missing__(key)
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
        when = expires.get(key, _MISSING)  # type: ignore[arg-type]
        return when is not _MISSING and self.timer() < when

    @overload
    def peek(self, key: K) -> V | None: ...
    @overload
    def peek(self, key: K, default: V | T) -> V | T: ...
    def peek(self, key: K, default: Any = None) -> Any:
        """The value for ``key`` if not expired, without refreshing or counting it."""
        return self._od.get(key, default) if key in self else default

    # -- writes: expired entries go first ----------------------------------

    def __setitem__(self, key: K, value: V) -> None:
        now = self.timer()  # read once: an op sees one instant (as cachetools)
        expires_at = now + self.ttl  # may raise OverflowError: before any change
        size = self._measure(value) if self._sizer is not None else 1
        evicted: list[tuple[K, V]] = []
        with self._lock:
            self._expire_locked(now, evicted)
            old = self._insert_locked(key, value, size, evicted, expires_at)
        del old
        if evicted:
            _notify(self._on_evict, evicted)

    def _expire_locked(self, now: Any, out: list[tuple[K, V]]) -> None:
        expires = self._expires
        if not expires:
            return
        dead = []
        for key, when in expires.items():
            if now < when:
                break
            dead.append(key)
        for key in dead:
            out.append((key, self._remove_locked(key)))
        self._expirations += len(dead)

    def _take_locked(self, key: K, now: Any, evicted: list[tuple[K, V]]) -> V:
        """Remove ``key``; KeyError if absent or expired (an expired one is dropped)."""
        expires = self._expires
        assert expires is not None
        when = expires.get(key, _MISSING)
        value = self._remove_locked(key)
        if when is not _MISSING and not now < when:
            evicted.append((key, value))
            self._expirations += 1
            raise KeyError(key)
        return value

    def __delitem__(self, key: K) -> None:
        evicted: list[tuple[K, V]] = []
        try:
            now = self.timer()
            with self._lock:
                value = self._take_locked(key, now, evicted)
            del value
        finally:
            _notify(self._on_evict, evicted)

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V) -> V: ...
    @overload
    def pop(self, key: K, default: T) -> V | T: ...
    def pop(self, key: K, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value (``default``, or KeyError, if absent or expired)."""
        evicted: list[tuple[K, V]] = []
        try:
            now = self.timer()
            with self._lock:
                try:
                    return self._take_locked(key, now, evicted)
                except KeyError:
                    if default is _MISSING:
                        raise KeyError(key) from None
                    return default
        finally:
            _notify(self._on_evict, evicted)

    def popitem(self) -> tuple[K, V]:
        """Remove and return the least recently used live ``(key, value)``; KeyError if none."""
        evicted: list[tuple[K, V]] = []
        try:
            now = self.timer()
            with self._lock:
                self._expire_locked(now, evicted)
                if not self._od:
                    raise KeyError(f"popitem(): {self.name} is empty") from None
                return self._pop_lru_locked()
        finally:
            _notify(self._on_evict, evicted)

    def expire(self, time: Any = None) -> list[tuple[K, V]]:
        """Drop every entry expired at ``time`` (default: now); return them as ``(key, value)``."""
        evicted: list[tuple[K, V]] = []
        now = self.timer() if time is None else time
        with self._lock:
            self._expire_locked(now, evicted)
        _notify(self._on_evict, evicted)
        return evicted

    # -- views: live entries in write order, nothing dropped ------------------

    def __len__(self) -> int:
        now = self.timer()
        with self._lock:
            expires = self._expires
            assert expires is not None
            n = len(self._od)
            for when in expires.values():
                if now < when:
                    break
                n -= 1
        return n

    def _live_keys_locked(self, now: Any) -> list[K]:
        expires = self._expires
        assert expires is not None
        return [key for key, when in expires.items() if now < when]

    def _iter_snapshot(self) -> Iterator[K]:
        now = self.timer()
        with self._lock:
            keys = self._live_keys_locked(now)
        return self._still_live(keys, now)

    def _still_live(self, keys: list[K], now: Any) -> Iterator[K]:
        for key in keys:
            when = self._expires.get(key, _MISSING) if self._expires is not None else _MISSING
            if when is not _MISSING and now < when:  # removed or rewritten meanwhile: skip
                yield key

    def _snapshot_keys(self) -> list[K]:
        now = self.timer()
        with self._lock:
            return self._live_keys_locked(now)

    def _snapshot_items(self) -> list[tuple[K, V]]:
        now = self.timer()
        with self._lock:
            od = self._od
            return [(key, od[key]) for key in self._live_keys_locked(now)]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["timer"] = _Timer(self.timer._timer)  # the copy's own view of the timer
        return state


def _reject_removed(cls: str, removed: dict[str, Any]) -> None:
    if "ttl" in removed or "clock" in removed:
        raise TypeError(f"{cls}(ttl=..., clock=...) is now TTLCache(maxsize, ttl=..., timer=...)")
    raise TypeError(f"{cls}() got unexpected keyword arguments {sorted(removed)}")


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
        governor: where ``shrink`` (which releases the strong references) is
            registered, weakly: :data:`DEFAULT` (the process-wide governor), ``None``
            or a :class:`Governor`.
        register: ``False`` is ``governor=None``.
        name: a label for logs and the governor.

    Thread-safe (one re-entrant lock: values may die, and run ``__del__``, while
    it is held). ``maxsize`` is None: the weak part is bounded by the values alive.
    """

    maxsize: int | None = None
    max_bytes: int | None = None

    def __init__(
        self,
        strong_size: int = 128,
        *,
        governor: Governor | DefaultType | None = DEFAULT,
        register: bool = True,
        name: str | None = None,
    ) -> None:
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
        self._registration = _register(self, self.name, governor if register else None)
        _track_for_fork(self)

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
# keys

_KWMARK = object()
# A single argument of these types is its own key (as ``functools.lru_cache`` does
# for int and str), which keeps the commonest lookups cheap. They are the types whose
# equal values hash equal across types (1 == 1.0 == True), so ``f(1)`` then
# ``f(1.0)`` hits, as with cachetools' tuple keys.
_SCALARS = frozenset({int, str, float, bool})


def hashkey(*args: Hashable, **kwargs: Hashable) -> Hashable:
    """The cache key for a call: the arguments, with keywords in name order.

    As cachetools' ``hashkey``: equal arguments give equal keys whatever their types
    (``hashkey(1) == hashkey(1.0)``). A single ``int``, ``float``, ``bool`` or ``str``
    argument is its own key.
    """
    if not kwargs:
        if len(args) == 1 and type(args[0]) in _SCALARS:
            return args[0]
        return args
    return (*args, _KWMARK, *sorted(kwargs.items()))


def typedkey(*args: Hashable, **kwargs: Hashable) -> Hashable:
    """As :func:`hashkey`, but arguments of different types give different keys (``typed``)."""
    items = sorted(kwargs.items())
    base = (*args, _KWMARK, *items) if kwargs else args
    return (*base, *(type(v) for v in args), *(type(v) for _, v in items))


def methodkey(self: object, /, *args: Hashable, **kwargs: Hashable) -> Hashable:
    """The key of a method's arguments without ``self``: always a tuple, as cachetools'."""
    return (*args, _KWMARK, *sorted(kwargs.items())) if kwargs else args


def typedmethodkey(self: object, /, *args: Hashable, **kwargs: Hashable) -> Hashable:
    """:func:`typedkey` of a method's arguments without ``self``."""
    return typedkey(*args, **kwargs)


# ---------------------------------------------------------------------------
# decorators


class CacheInfo(NamedTuple):
    """``cache_info()`` of a function decorated with ``info=True`` (as ``functools``)."""

    hits: int
    misses: int
    maxsize: float | None
    currsize: int


def _store(cache: Any, key: Hashable, value: Any) -> None:
    try:
        cache[key] = value
    except ValueError:  # too large for the cache (cachetools' rule): returned uncached
        log.debug("value for %r not cached (too large)", key)


def _info_of(cache: Any, hits: int, misses: int) -> CacheInfo:
    if isinstance(cache, (LRUCache, WeakCache)):
        return CacheInfo(hits, misses, cache.maxsize, cache.currsize)
    return CacheInfo(hits, misses, None, len(cache))


class _Lock(Protocol):
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: Any) -> Any: ...


class _Condition(_Lock, Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...
    def notify_all(self) -> None: ...


def _wrap(
    func: Callable[..., Any],
    cache: Any,
    key: Callable[..., Hashable],
    *,
    lock: _Lock | None = None,
    condition: _Condition | None = None,
    info: bool = False,
) -> Callable[..., Any]:
    import inspect  # at decoration time only: it is not cheap to import

    if not callable(key):
        raise TypeError(f"key={key!r} (argument): must be callable")
    if condition is not None and lock is None:
        lock = condition
    counts = [0, 0]  # hits, misses (a list: shared by the wrapper's closures)
    get = getattr(cache, "get", None)

    def lookup(k: Hashable) -> Any:
        if get is not None:
            return get(k, _MISSING)
        try:
            return cache[k]
        except KeyError:
            return _MISSING

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(func):
        if lock is not None:
            raise TypeError(
                f"cached({func!r}): lock= and condition= are for threads; memwarden's"
                " caches are thread-safe, so an async function needs neither"
            )

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key(*args, **kwargs)
            value = lookup(k)
            if value is _MISSING:
                counts[1] += 1
                value = await func(*args, **kwargs)
                _store(cache, k, value)
            else:
                counts[0] += 1
            return value

        wrapper = async_wrapper
    elif lock is None:
        if get is not None and not info and key is hashkey:
            scalars = _SCALARS

            @functools.wraps(func)
            def hashkey_wrapper(*args: Any, **kwargs: Any) -> Any:
                # hashkey inlined for its commonest case (one scalar argument): a Python
                # call less per lookup.
                if not kwargs and len(args) == 1 and type(args[0]) in scalars:
                    k: Hashable = args[0]
                else:
                    k = hashkey(*args, **kwargs)
                value = get(k, _MISSING)
                if value is _MISSING:
                    value = func(*args, **kwargs)
                    _store(cache, k, value)
                return value

            wrapper = hashkey_wrapper
        elif get is not None and not info:

            @functools.wraps(func)
            def fast_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = key(*args, **kwargs)
                value = get(k, _MISSING)
                if value is _MISSING:
                    value = func(*args, **kwargs)
                    _store(cache, k, value)
                return value

            wrapper = fast_wrapper
        else:

            @functools.wraps(func)
            def counting_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = key(*args, **kwargs)
                value = lookup(k)
                if value is _MISSING:
                    counts[1] += 1
                    value = func(*args, **kwargs)
                    _store(cache, k, value)
                else:
                    counts[0] += 1
                return value

            wrapper = counting_wrapper
    else:
        held: _Lock = lock
        pending: set[Hashable] = set()

        @functools.wraps(func)
        def locked_wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key(*args, **kwargs)
            with held:
                if condition is not None:
                    # Single flight: wait while another thread computes this key.
                    while k in pending:
                        condition.wait()
                value = lookup(k)
                if value is not _MISSING:
                    counts[0] += 1
                    return value
                counts[1] += 1
                if condition is not None:
                    pending.add(k)
            try:
                value = func(*args, **kwargs)
                with held:
                    _store(cache, k, value)
                return value
            finally:
                if condition is not None:
                    with held:
                        pending.discard(k)
                        condition.notify_all()

        wrapper = locked_wrapper

    def cache_clear() -> None:
        if lock is None:
            cache.clear()
            counts[:] = [0, 0]
        else:
            with lock:
                cache.clear()
                counts[:] = [0, 0]

    def cache_info() -> CacheInfo:
        if lock is None:
            return _info_of(cache, *counts)
        with lock:
            return _info_of(cache, *counts)

    out: Any = wrapper
    out.cache = cache
    out.cache_key = key
    out.cache_lock = lock
    out.cache_condition = condition
    out.cache_clear = cache_clear
    if info:
        out.cache_info = cache_info
    return out  # type: ignore[no-any-return]


@overload
def cached(cache: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def cached(
    cache: MutableMapping[Any, Any] = ...,
    /,
    *,
    key: Callable[..., Hashable] = ...,
    lock: _Lock | None = ...,
    condition: _Condition | None = ...,
    info: bool = ...,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def cached(
    cache: Any = _MISSING,
    /,
    *,
    key: Callable[..., Hashable] = hashkey,
    lock: _Lock | None = None,
    condition: _Condition | None = None,
    info: bool = False,
) -> Any:
    """Cache a function's results in ``cache`` (default: a new ``LRUCache(128)``).

    Use as ``@cached``, ``@cached()`` or ``@cached(LRUCache(max_bytes="64 MiB"))``;
    cachetools' ``@cached(cache, key=, lock=, condition=, info=)`` works as there.
    Works on ``async def`` functions too (the awaited result is cached). Any
    mapping works as the cache; memwarden's caches are thread-safe, so no lock is
    needed (give one to serialise the calls as cachetools does). Without
    ``condition``, concurrent misses for one key may each call the function; with
    it, one computes and the others wait. A value too large for the cache (any
    ``ValueError`` from storing it) is returned uncached.

    Args:
        cache: the mapping to store results in.
        key: builds the key from the call's arguments; default :func:`hashkey`
            (:func:`typedkey` to tell ``1`` from ``1.0``).
        lock: a context manager (``threading.Lock()``) held around the cache's use,
            never around the call.
        condition: a ``threading.Condition`` (over ``lock`` if both are given)
            that makes concurrent misses for one key wait for the first.
        info: count hits and misses, reported by ``cache_info()``.

    Returns:
        The decorator; the decorated function keeps its signature (``Callable[P, R]``;
        an ``async def`` stays a coroutine function) and has ``cache``,
        ``cache_key``, ``cache_lock``, ``cache_condition``, ``cache_clear()`` and,
        with ``info``, ``cache_info()`` attributes (untyped: reach them with
        ``getattr`` or a ``cast``).

    Raises:
        TypeError: ``cache`` is None (as in cachetools 8: pass a cache, or none for
            the default), or ``key`` is not callable.
    """
    if cache is None:
        raise TypeError(
            "cached(None): pass a cache (any mapping), or use @cached or @cached()"
            " for a new LRUCache(128)"
        )
    if callable(cache) and not hasattr(cache, "__getitem__"):  # bare @cached
        return _wrap(cache, LRUCache(DEFAULT_MAXSIZE), key)
    store = LRUCache(DEFAULT_MAXSIZE) if cache is _MISSING else cache

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        return cast(
            "Callable[P, R]", _wrap(func, store, key, lock=lock, condition=condition, info=info)
        )

    return decorator


class _BoundCachedMethod:
    """A :func:`cachedmethod` bound to one instance: its cache, lock and counts."""

    def __init__(self, method: _CachedMethodDescriptor, obj: Any) -> None:
        d = method
        self._obj = obj
        self.__wrapped__ = d.func
        functools.update_wrapper(self, d.func)
        self.cache = d.cache_getter(obj)
        self.cache_lock = None if d.lock is None else d.lock(obj)
        self.cache_condition = None if d.condition is None else d.condition(obj)
        bound = functools.partial(d.func, obj)
        self._call: Any
        self._call = _wrap(
            bound,
            self.cache,
            functools.partial(d.key, obj),
            lock=self.cache_lock,
            condition=self.cache_condition,
            info=d.info,
        )
        self.cache_lock = self._call.cache_lock
        self.cache_clear = self._call.cache_clear
        if d.info:
            self.cache_info = self._call.cache_info
        self._descriptor = d

    def cache_key(self, *args: Any, **kwargs: Any) -> Hashable:
        """The key this instance's call with these arguments is cached under."""
        return self._descriptor.key(self._obj, *args, **kwargs)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<cachedmethod {self.__wrapped__!r} of {object.__repr__(self._obj)}>"


class _CachedMethodDescriptor:
    """What :func:`cachedmethod` returns: a descriptor binding the method per instance."""

    def __init__(
        self,
        func: Callable[..., Any],
        cache_getter: Callable[[Any], Any],
        *,
        key: Callable[..., Hashable],
        lock: Callable[[Any], Any] | None,
        condition: Callable[[Any], Any] | None,
        info: bool,
    ) -> None:
        self.func = func
        self.cache_getter = cache_getter
        self.key = key
        self.lock = lock
        self.condition = condition
        self.info = info
        self.attrname: str | None = None
        self.owner: type | None = None
        functools.update_wrapper(self, func)

    def __set_name__(self, owner: type, name: str) -> None:
        if self.attrname is None:
            self.attrname, self.owner = name, owner
        elif name != self.attrname and owner is self.owner:
            raise TypeError(
                f"cachedmethod {self.func!r} cannot have two names in one class"
                f" ({self.attrname!r} and {name!r})"
            )

    def __copy__(self) -> _CachedMethodDescriptor:
        return self

    def __reduce__(self) -> str | tuple[Any, tuple[Any, str]]:
        # Pickled by reference, as a method is: the class attribute it is.
        if self.owner is None or self.attrname is None:
            return str(getattr(self, "__qualname__", self.func.__qualname__))
        return (getattr, (self.owner, self.attrname))

    def __deepcopy__(self, memo: dict[int, Any]) -> _CachedMethodDescriptor:
        return self

    def _bind(self, obj: Any) -> _BoundCachedMethod:
        if isinstance(obj, type):
            raise TypeError(
                f"cachedmethod {self.func!r} cannot be a class method: it caches per instance"
            )
        if self.attrname is None:
            raise TypeError(
                f"cachedmethod {self.func!r} has no name: it must be the outermost decorator"
                " of a method defined in a class body"
            )
        try:
            namespace = obj.__dict__
        except AttributeError:
            raise TypeError(
                f"No '__dict__' attribute on {type(obj).__name__!r} instance to cache"
                f" {self.attrname!r}"
            ) from None
        bound = namespace.get(_BOUND_ATTR)
        if bound is None:
            bound = _Bindings()
            try:
                namespace[_BOUND_ATTR] = bound
            except TypeError:
                raise TypeError(
                    f"the __dict__ of a {type(obj).__name__!r} object does not support item"
                    f" assignment, needed to cache {self.attrname!r}"
                ) from None
        wrapper: _BoundCachedMethod | None = bound.get(self)
        if wrapper is None:
            wrapper = bound[self] = _BoundCachedMethod(self, obj)
        return wrapper

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _CachedMethodDescriptor: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _BoundCachedMethod: ...
    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else self._bind(obj)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        # Called through the class: the instance is the first argument, positional or
        # by the name of the method's first parameter.
        if args:
            return self._bind(args[0])(*args[1:], **kwargs)
        import inspect

        params = list(inspect.signature(self.func).parameters.values())
        first = params[0] if params else None
        if first is None or first.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            raise TypeError(f"{self.func.__qualname__}() missing its instance argument")
        if first.name not in kwargs:
            raise TypeError(f"{self.func.__qualname__}() missing argument {first.name!r}")
        obj = kwargs.pop(first.name)
        return self._bind(obj)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<cachedmethod {self.func!r}>"


_BOUND_ATTR = "__memwarden_cachedmethods"


class _Bindings(dict[Any, Any]):
    """An instance's :func:`cachedmethod` bindings; copies and pickles start empty."""

    def __reduce__(self) -> tuple[type[_Bindings], tuple[()]]:
        return (_Bindings, ())


def cachedmethod(
    cache: Callable[[Any], Any],
    *,
    key: Callable[..., Hashable] = methodkey,
    lock: Callable[[Any], Any] | None = None,
    condition: Callable[[Any], Any] | None = None,
    info: bool = False,
) -> Callable[[Callable[..., Any]], Any]:
    """cachetools' ``cachedmethod``: cache a method's results in ``cache(self)``.

    For code moving from cachetools; new code should prefer :func:`cached_method`,
    which gives each instance its own bounded cache without a getter. Each argument
    is a function of the instance: ``cache(self)`` returns the mapping,
    ``lock(self)`` and ``condition(self)`` as for :func:`cached`; ``key(self, *args,
    **kwargs)`` builds the key (default :func:`methodkey`, which leaves ``self``
    out). The per-instance binding (its counts, with ``info``) is kept in the
    instance's ``__dict__``.

    Raises:
        TypeError: ``cache`` is not callable.
    """
    if not callable(cache):
        raise TypeError(f"cachedmethod(cache={cache!r}): must be callable (a function of self)")

    def decorator(func: Callable[..., Any]) -> Any:
        return _CachedMethodDescriptor(
            func, cache, key=key, lock=lock, condition=condition, info=info
        )

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
        governor: Governor | DefaultType | None,
    ) -> None:
        self.func = func
        self.cache_factory = cache_factory
        self.key = key
        self.governor = governor
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
            self.registration = _register(self, self.label, self.governor)
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
    governor: Governor | DefaultType | None = ...,
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
    governor: Governor | DefaultType | None = DEFAULT,
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
        governor: where the method's one reliever (shrinking every instance's
            cache) is registered on first use: :data:`DEFAULT` (the process-wide
            governor), ``None``, or a :class:`Governor`.

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

        def cache_factory() -> MutableMapping[Any, Any]:
            if ttl is None:
                return LRUCache(maxsize, max_bytes=max_bytes, governor=None)
            return TTLCache(maxsize, ttl, max_bytes=max_bytes, governor=None)

        cache_factory()  # validate now

    factory = cache_factory

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        caches = _MethodCaches(fn, factory, key, governor)
        cache_for = caches.cache_for

        @functools.wraps(fn)
        def method(obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            cache = cache_for(obj)
            assert cache is not None
            k = key(*args, **kwargs)
            value = cache.get(k, _MISSING)
            if value is _MISSING:
                value = fn(obj, *args, **kwargs)
                _store(cache, k, value)
            return value

        method.cache_for = caches.cache_for  # type: ignore[attr-defined]
        method.cache_clear = caches.cache_clear  # type: ignore[attr-defined]
        method.shrink = caches.shrink  # type: ignore[attr-defined]
        method.stats = caches.stats  # type: ignore[attr-defined]
        return method

    return decorate(func) if func is not None else decorate
