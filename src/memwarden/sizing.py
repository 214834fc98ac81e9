"""Deep object sizes: ``sizeof(obj)`` counts an object and everything it references once.

The walk is breadth-first over ``gc.get_referents`` (C code that knows every
container's, ``__slots__`` class's and instance ``__dict__``'s references), one
batch per level, with deduplication done by set operations on ``id()`` rather
than by a Python loop per object. That is why it runs many times faster than
``pympler.asizeof``, which walks each object in Python (see docs/benchmarks.md).

What is counted:
    each distinct object reachable from ``obj`` once (cycles and shared objects
    are fine), by ``sys.getsizeof`` (which includes the GC header); numpy
    arrays and their subclasses (``np.memmap``) by their own ``__sizeof__``
    (which includes ``nbytes`` when the array owns its data) plus their ``base``
    when the array is a view, and the elements of object arrays; ``memoryview``
    through the object it exports; ``mmap`` by its mapped length.

What is not (the documented limits):
    classes, modules, functions and code objects reached from ``obj`` (they are
    program structure, shared by every instance); the singletons ``None``,
    ``True``, ``False``, ``...`` and ``NotImplemented``; the targets of weak
    references; memory a C extension allocates without reporting it in
    ``__sizeof__`` or exposing it to the garbage collector (its references are
    then invisible, too); on Python 3.11+, the inline attribute array of an
    instance whose ``__dict__`` was never materialised (a few pointers per
    instance; pympler materialises the dict as a side effect of measuring).
    Small ints and interned strings shared with the rest of the program are
    counted, once per call, as a real reference to them would keep them alive.
    The walk is not atomic: another thread mutating the graph meanwhile may be
    seen half-way.
"""

from __future__ import annotations

import gc
import sys
from itertools import chain
from types import CodeType, FunctionType, ModuleType

__all__ = ["sizeof"]

# Type kinds, decided once per type and cached in _KIND (bounded: one entry per
# type seen, and programs have a bounded number of types).
_PLAIN = 0
_SKIP = 1
_NUMPY = 2
_MMAP = 3
_DICT = 4

_SKIPPED_BASES: tuple[type, ...] = (type, ModuleType, FunctionType, CodeType)
_SKIPPED_TYPES: frozenset[type] = frozenset(
    {type(None), bool, type(Ellipsis), type(NotImplemented)}
)

_KIND: dict[type, int] = {}
_KIND_MAX = 4096


def _kind_of(t: type) -> int:
    kind = _KIND.get(t)
    if kind is not None:
        return kind
    if t in _SKIPPED_TYPES or issubclass(t, _SKIPPED_BASES):
        kind = _SKIP
    elif any(b.__name__ == "ndarray" and b.__module__.startswith("numpy") for b in t.__mro__):
        # Checked by name so that numpy is never imported here; subclasses too
        # (np.memmap, user arrays).
        kind = _NUMPY
    elif t.__name__ == "mmap" and t.__module__ == "mmap":
        kind = _MMAP
    elif issubclass(t, dict):
        # The garbage collector does not visit the keys of a dict whose keys are
        # all strings (strings hold no references), so they are added by hand.
        kind = _DICT
    else:
        kind = _PLAIN
    if len(_KIND) < _KIND_MAX:
        _KIND[t] = kind
    return kind


def _safe_getsizeof(obj: object) -> int:
    try:
        return sys.getsizeof(obj)
    except Exception:  # a broken __sizeof__ must not stop a measurement
        return 0


def _sum_sizes(batch: list[object]) -> int:
    try:
        return sum(map(sys.getsizeof, batch))
    except Exception:
        return sum(map(_safe_getsizeof, batch))


def _mmap_length(obj: object) -> int:
    try:
        return len(obj)  # type: ignore[arg-type]
    except (ValueError, TypeError):  # closed
        return 0


def sizeof(obj: object, *, deep: bool = True) -> int:
    """Return the memory held by ``obj`` in bytes.

    Args:
        obj: any object.
        deep: count everything ``obj`` references, each distinct object once
            (the default); when false, only ``obj`` itself (``sys.getsizeof``,
            plus the mapped length of an ``mmap``).

    Returns:
        The size in bytes. See the module docstring for what is and is not counted.
    """
    root_kind = _kind_of(type(obj))
    if not deep:
        size = _safe_getsizeof(obj)
        if root_kind == _MMAP:
            size += _mmap_length(obj)
        return size

    seen: set[int] = {id(obj)}
    keep: list[object] = [obj]  # keeps every visited object alive, so ids stay unique
    total = 0
    batch: list[object] = [obj]
    while batch:
        kinds = {t: _kind_of(t) for t in set(map(type, batch))}
        extra: list[object] = []
        special = [t for t, k in kinds.items() if k != _PLAIN]
        dict_types = {t for t in special if kinds[t] == _DICT}
        skip_types = {t for t in special if kinds[t] == _SKIP}
        if not special:
            pass
        elif len(dict_types) + len(skip_types) == len(special):
            # Plain objects, dicts and skipped ones only (the common case): filter with
            # comprehensions rather than dispatch object by object.
            if skip_types:
                batch = [o for o in batch if type(o) not in skip_types or o is obj]
            if dict_types:
                dicts = (
                    batch
                    if len(kinds) == len(dict_types)
                    else [o for o in batch if type(o) in dict_types]
                )
                extra.extend(_dict_keys_of(dicts))
        else:
            plain: list[object] = []
            for o in batch:
                kind = kinds[type(o)]
                if kind == _PLAIN:
                    plain.append(o)
                elif kind == _DICT:
                    plain.append(o)
                    extra.extend(_dict_keys(o))  # type: ignore[arg-type]
                elif kind == _SKIP:
                    if o is obj:  # the root is measured even if it is a class or a module
                        plain.append(o)
                elif kind == _NUMPY:
                    total += _safe_getsizeof(o)
                    extra.extend(_numpy_refs(o))
                else:  # _MMAP
                    total += _safe_getsizeof(o) + _mmap_length(o)
            batch = plain
        total += _sum_sizes(batch)
        pending: list[object] = gc.get_referents(*batch)
        if extra:
            pending += extra
        # Deduplicate with C-level set operations, not a Python loop per object;
        # when nothing in the level was seen before (tree-shaped data), the level
        # is the next batch as it is.
        ids = list(map(id, pending))
        new_ids = set(ids)
        new_ids -= seen
        seen |= new_ids
        if len(new_ids) == len(ids):
            batch = pending
        else:
            by_id = dict(zip(ids, pending, strict=True))
            batch = list(map(by_id.__getitem__, new_ids))
        keep.append(batch)
    return total


def _dict_keys(d: dict[object, object]) -> list[object]:
    try:
        return list(d)
    except RuntimeError:  # resized by another thread meanwhile: measure without its keys
        return []


def _dict_keys_of(dicts: list[object]) -> list[object]:
    try:
        return list(chain.from_iterable(dicts))  # type: ignore[arg-type]
    except RuntimeError:
        return [k for d in dicts for k in _dict_keys(d)]  # type: ignore[arg-type]


def _numpy_refs(arr: object) -> list[object]:
    """What a numpy array references that the garbage collector cannot see."""
    refs: list[object] = []
    base = getattr(arr, "base", None)
    if base is not None:
        refs.append(base)
    dtype = getattr(arr, "dtype", None)
    if dtype is not None and getattr(dtype, "hasobject", False):
        refs.extend(arr.flat)  # type: ignore[attr-defined]
    return refs
