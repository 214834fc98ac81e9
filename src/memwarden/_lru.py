"""One size-bounded LRU core: the bookkeeping that ``LRUCache`` and ``IncrementalEngine`` share.

An ``OrderedDict`` in recency order (least recently used first), each entry's size,
their total, and the two bounds (entries, total size). Not thread-safe: its users hold
their own lock around every call, and may read :attr:`BoundedLRU.od` without it for
lock-free hits (see ``memwarden.cache``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: What :meth:`BoundedLRU.put` returns when the key was new.
NEW: Any = object()


class BoundedLRU(Generic[K, V]):
    """Entries in recency order, bounded by count and/or total size.

    Args:
        count_bound: the most entries, or None.
        size_bound: the most total size, or None.
        sized: keep each entry's size (else every entry counts 1 and ``total`` stays 0).
    """

    __slots__ = ("count_bound", "od", "size_bound", "sizes", "total")

    def __init__(self, count_bound: int | None, size_bound: int | None, *, sized: bool) -> None:
        self.count_bound = count_bound
        self.size_bound = size_bound
        self.od: OrderedDict[K, V] = OrderedDict()
        self.sizes: dict[K, int] | None = {} if sized else None
        self.total = 0

    def fits(self, size: int) -> bool:
        """Whether an entry of ``size`` can be held at all."""
        if self.count_bound == 0:
            return False
        return self.size_bound is None or size <= self.size_bound

    def put(self, key: K, value: V, size: int, evicted: list[tuple[K, V]]) -> Any:
        """Insert or replace ``key`` as the most recent entry, evicting to stay in bounds.

        The caller has checked :meth:`fits`. Entries are evicted *before* the insert,
        so lock-free readers never see more than ``count_bound`` entries, and an update
        only needs room for the growth of its own size (cachetools' rule). Evicted
        pairs are appended to ``evicted``.

        Returns:
            The replaced value, or :data:`NEW`.
        """
        od, sizes = self.od, self.sizes
        old = od.get(key, NEW)
        if old is not NEW:
            # The updated entry becomes the most recent, so eviction never picks it.
            od.move_to_end(key)
            if sizes is not None:
                self.total -= sizes.get(key, 0)
                sizes[key] = 0
            keep = 1
        else:
            count_bound = self.count_bound
            while od and count_bound is not None and len(od) >= count_bound:
                evicted.append(self.pop_lru())
            keep = 0
        size_bound = self.size_bound
        while size_bound is not None and len(od) > keep and self.total + size > size_bound:
            evicted.append(self.pop_lru())
        od[key] = value
        if sizes is not None:
            self.total += size
            sizes[key] = size
        return old

    def pop_lru(self) -> tuple[K, V]:
        """Remove and return the least recently used entry (KeyError if empty)."""
        key, value = self.od.popitem(False)
        if self.sizes is not None:
            self.total -= self.sizes.pop(key)
        return key, value

    def remove(self, key: K) -> V:
        """Remove ``key`` and return its value (KeyError if absent)."""
        value = self.od.pop(key)
        if self.sizes is not None:
            self.total -= self.sizes.pop(key)
        return value

    def clear(self) -> list[tuple[K, V]]:
        """Empty the core; return the old entries, for the caller to release after its lock.

        The ``OrderedDict`` stays the same object (a C getter may be bound to it); the
        returned list holds the keys and values, so no ``__del__`` runs here.
        """
        old = list(self.od.items())
        self.od.clear()
        if self.sizes is not None:
            self.sizes = {}
        self.total = 0
        return old

    def copy(self) -> BoundedLRU[K, V]:
        """An independent core with the same entries, order and sizes."""
        other: BoundedLRU[K, V] = BoundedLRU(
            self.count_bound, self.size_bound, sized=self.sizes is not None
        )
        other.od = OrderedDict(self.od)
        other.sizes = None if self.sizes is None else dict(self.sizes)
        other.total = self.total
        return other

    def repair(self) -> None:
        """Make sizes agree with the entries again (in a forked child, where another
        thread of the parent may have been half-way through a change)."""
        if self.sizes is None:
            return
        od = self.od
        self.sizes = {k: v for k, v in self.sizes.items() if k in od}
        for key in [k for k in od if k not in self.sizes]:
            del od[key]
        self.total = sum(self.sizes.values())

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
