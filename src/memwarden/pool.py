"""Buffer and object pools: reuse instead of reallocating, bounded, leak-checked, relievable.

The playbook's "Buffer Pooling Pattern". ``BufferPool`` lends page-aligned, ``mmap``-backed
buffers by size class as ``memoryview`` slices of exactly the requested size; a released
buffer is zeroed (by copying from a zero mapping, which costs no page faults) and kept for
the next borrower, up to ``max_bytes`` of idle buffers. ``trim()`` gives the idle buffers
back to the kernel and is registered (weakly) as a reliever with the governor of
``memwarden.pressure``. Handles garbage-collected without ``release()`` are detected on a
sample, as Netty's leak detector does (every handle, with its creation site, in debug mode).
``ObjectPool`` applies the same discipline to reusable Python objects.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import mmap
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from memwarden._leaktrack import creation_site
from memwarden._registry import DEFAULT, DefaultType, reset_after_fork
from memwarden._units import SizeLike, format_size, parse_size
from memwarden.exceptions import (
    ConfigurationError,
    DisposedError,
    PoolExhaustedError,
    UndisposedResourceWarning,
)

if TYPE_CHECKING:
    from memwarden.pressure import Governor, ReliefRegistration

__all__ = [
    "DEFAULT_LEAK_SAMPLE_RATE",
    "DEFAULT_SIZE_CLASSES",
    "BufferHandle",
    "BufferPool",
    "ObjectHandle",
    "ObjectPool",
    "ObjectPoolStats",
    "PoolStats",
]

logger = logging.getLogger("memwarden.pool")

T = TypeVar("T")

PAGE_BYTES = mmap.PAGESIZE
DEFAULT_SIZE_CLASSES: tuple[int, ...] = tuple(4096 << i for i in range(15))  # 4 KiB … 64 MiB
"""Default buffer size classes: powers of two from 4 KiB to 64 MiB."""
DEFAULT_LEAK_SAMPLE_RATE = 128
"""Track 1 handle in 128 for leaks by default, as Netty's SIMPLE level does."""

_new_object = object.__new__
_bisect_left = bisect.bisect_left


HUGE_PAGE_MIN_BYTES = 2 << 20
"""Buffers this large or larger ask for transparent huge pages (``huge_pages=True``)."""
_MADV_HUGEPAGE: int | None = getattr(mmap, "MADV_HUGEPAGE", None)


def _new_buffer(nbytes: int, huge_pages: bool) -> memoryview:
    # MAP_PRIVATE: Python's default for anonymous maps is MAP_SHARED, which a forked child
    # would share with its parent (two owners of one pooled buffer).
    mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)
    if huge_pages and nbytes >= HUGE_PAGE_MIN_BYTES and _MADV_HUGEPAGE is not None:
        # Copies into a buffer backed by 2 MiB pages ran 20-30% faster here at 16 MiB
        # (fewer TLB misses); a pooled buffer lives long enough to be worth one. Where THP
        # is "never", or the kernel refuses, the advice is ignored.
        with contextlib.suppress(OSError):
            mm.madvise(_MADV_HUGEPAGE)
    return memoryview(mm)


ZERO_SOURCE_BYTES = 256 << 10
"""Buffers zeroed by copy use a zero source this large; from this size on, memset is used."""
_zero: memoryview | None = None
_memset: Callable[[memoryview, int], None] | None = None
_zero_lock = threading.Lock()


def _zero_source() -> memoryview:
    """The process-wide zero source (``ZERO_SOURCE_BYTES``), shared by every pool.

    Untouched anonymous pages all map the kernel's zero page: the mapping costs address
    space, not memory, and a copy from it reads one cached page.
    """
    global _zero
    with _zero_lock:
        if _zero is None:
            _zero = memoryview(
                mmap.mmap(-1, ZERO_SOURCE_BYTES, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
            )
        return _zero


def _zero_large(buf: memoryview, n: int) -> None:
    """Zero ``buf[:n]`` for n >= ZERO_SOURCE_BYTES: memset through ctypes.

    memset is about twice as fast as a copy from the zero source from 256 KiB up (it
    reads nothing, and glibc uses non-temporal stores on large sizes); below that the
    ctypes call costs more than it saves. ctypes is imported on first use only.
    """
    global _memset
    if _memset is None:
        try:
            import ctypes
        except ImportError:  # pragma: no cover - CPython without ctypes
            _memset = _zero_by_copy
        else:
            memset, addressof, from_buffer = (
                ctypes.memset,
                ctypes.addressof,
                ctypes.c_char.from_buffer,
            )

            def _ctypes_memset(buf: memoryview, n: int) -> None:
                if n > buf.nbytes:  # memset past the mapping would corrupt the process
                    raise ValueError(f"cannot zero {n} bytes of a {buf.nbytes}-byte buffer")
                memset(addressof(from_buffer(buf)), 0, n)

            _memset = _ctypes_memset
    _memset(buf, n)


def _zero_by_copy(buf: memoryview, n: int) -> None:
    zero = _zero_source()
    step = len(zero)
    for off in range(0, n - step + 1, step):
        buf[off : off + step] = zero
    rest = n % step
    if rest:
        buf[n - rest : n] = zero[:rest]


def _free_buffer(buf: memoryview) -> None:
    """Unmap ``buf`` now, so its pages go back to the kernel at once."""
    mm = buf.obj
    buf.release()
    # A view derived from a handle's view may still exist; the mapping is then freed when
    # that view dies.
    with contextlib.suppress(BufferError):
        mm.close()  # type: ignore[attr-defined]


def _check_rate(leak_sample_rate: int) -> int:
    if isinstance(leak_sample_rate, bool) or not isinstance(leak_sample_rate, int):
        raise ConfigurationError(
            f"leak_sample_rate={leak_sample_rate!r} (argument): expected an int N "
            "(track 1 handle in N) or 0 (off)",
            value=leak_sample_rate,
            source="argument",
        )
    if leak_sample_rate < 0:
        raise ConfigurationError(
            f"leak_sample_rate={leak_sample_rate!r} (argument): cannot be negative",
            value=leak_sample_rate,
            source="argument",
        )
    return leak_sample_rate


def _register_reliever(
    pool: BufferPool | ObjectPool[Any], governor: Governor | DefaultType | None
) -> ReliefRegistration | None:
    """Register ``pool.trim`` with ``governor`` (weakly); None for no governor or on failure.

    Raises:
        TypeError: ``governor`` is not a governor, DEFAULT or None.
    """
    if governor is None:
        return None
    from memwarden.pressure import PRIORITY_POOL, resolve_governor

    gov = resolve_governor(governor)
    if gov is None:
        return None
    try:
        return gov.register_reliever(pool.trim, priority=PRIORITY_POOL, name=pool.name)
    except Exception:  # a pool works without relief; a full registry must not stop it
        logger.warning("could not register %s with the governor", pool.name, exc_info=True)
        return None


def _new_zero_lock() -> None:
    # A lock held by another thread of the parent at fork time would never be released here.
    global _zero_lock
    _zero_lock = threading.Lock()


reset_after_fork(_new_zero_lock)


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class PoolStats:
    """A consistent snapshot of a ``BufferPool``'s counters.

    Attributes:
        hits: acquires served from an idle buffer.
        misses: acquires that had to map a new buffer (oversize acquires included).
        in_use: handles lent and not released (nor detected as leaked).
        in_use_bytes: capacity of the buffers lent.
        idle: idle buffers kept for reuse.
        idle_bytes: their capacity (at most ``max_bytes``).
        high_water_bytes: the largest ``in_use_bytes + idle_bytes`` seen.
        released: handles released.
        discarded: released buffers unmapped because the idle bound was full (or oversize).
        trimmed_bytes: bytes unmapped by ``trim()``/``shrink()`` in total.
        leaked: handles garbage-collected without ``release()`` (sampled: a lower bound).
        max_bytes: the bound on idle bytes.
    """

    hits: int
    misses: int
    in_use: int
    in_use_bytes: int
    idle: int
    idle_bytes: int
    high_water_bytes: int
    released: int
    discarded: int
    trimmed_bytes: int
    leaked: int
    max_bytes: int

    @property
    def hit_rate(self) -> float:
        """Hits over acquires (0.0 before the first acquire)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass(frozen=True)
class ObjectPoolStats:
    """A consistent snapshot of an ``ObjectPool``'s counters (see ``PoolStats``)."""

    hits: int
    misses: int
    in_use: int
    idle: int
    high_water: int
    released: int
    discarded: int
    trimmed: int
    leaked: int
    max_size: int

    @property
    def hit_rate(self) -> float:
        """Hits over acquires (0.0 before the first acquire)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


# --------------------------------------------------------------------------- buffers


class BufferHandle:
    """A pooled buffer on loan. ``view`` is a writable ``memoryview`` of exactly the size asked.

    ``release()`` gives the buffer back and releases ``view``: any later use of ``view``
    raises ``ValueError`` instead of reading the next borrower's data; a second
    ``release()`` raises ``DisposedError``. As a context manager it yields ``view`` and
    releases on exit (so calling ``release()`` inside the block is a double release).
    Views *derived* from ``view`` (slices, ``memoryview(view)``, ``numpy.frombuffer(view)``)
    share its buffer but are not released with it: drop them before ``release()``, as you
    would in C. An object that holds an export of ``view``
    itself (a ``pickle.PickleBuffer``, a C extension mid-call) makes ``release()`` raise
    ``BufferError``, with nothing released, until it is gone.
    """

    # A __slots__ class, not a @contextmanager generator: about 3x cheaper per use.
    __slots__ = ("__weakref__", "_buf", "_idx", "_oversize_bytes", "_pool", "_track", "view")

    _pool: BufferPool
    _buf: memoryview | None
    _idx: int
    """The size class of a pooled buffer (unused for an oversize one)."""
    _oversize_bytes: int
    """0 for a pooled buffer; the capacity of a dedicated buffer larger than every class."""
    _track: weakref.ref[BufferHandle] | None
    view: memoryview

    @property
    def released(self) -> bool:
        """True once ``release()`` ran."""
        return self._buf is None

    @property
    def capacity(self) -> int:
        """Bytes of the pooled buffer behind ``view`` (its size class)."""
        return self._oversize_bytes or self._pool._classes[self._idx]

    def release(self, *_exc_info: object) -> None:
        """Give the buffer back to the pool (zeroed if the pool zeroes).

        Also the context manager's ``__exit__`` (hence the ignored arguments).

        Raises:
            DisposedError: the handle was already released.
            BufferError: an object still exports ``view``'s buffer (nothing was released).
        """
        buf = self._buf
        if buf is None:
            raise DisposedError("BufferHandle.release() called twice: the buffer is back in a pool")
        view = self.view
        n = len(view)
        view.release()  # raises BufferError while an export (a numpy array…) is alive
        self._buf = None
        pool = self._pool
        idx = self._idx
        track = self._track
        if self._oversize_bytes or track is not None:
            pool._give_back(buf, idx, self._oversize_bytes, n, track)
            return
        if n and pool._zero_on_release:
            # Copy from a zero mapping: reads hit one shared zero page, no page faults.
            if n >= ZERO_SOURCE_BYTES:
                _zero_large(buf, n)
            else:
                # Copy from a zero mapping: reads hit one shared zero page, no page faults.
                zeros = pool._zeros[idx]
                if n == len(zeros):  # n is then the whole buffer
                    buf[:] = zeros
                else:
                    buf[:n] = zeros[:n]
        cap = pool._classes[idx]
        # The common case of the pool's _give_back, inlined (this is the hot path); an
        # explicit acquire/release costs half of a `with` block.
        lock = pool._lock
        lock.acquire()
        try:
            pool._released += 1
            if pool._idle_bytes + cap <= pool.max_bytes and not pool._closed:
                pool._free[idx].append(buf)
                pool._idle_bytes += cap
                return
            pool._discarded += 1
            pool._total_bytes -= cap
        finally:
            lock.release()
        _free_buffer(buf)

    def __enter__(self) -> memoryview:
        return self.view

    # One frame instead of two on exit: the with form costs about 0.4 µs less per use.
    # Exiting after an explicit release() therefore raises, like any double release.
    __exit__ = release

    def __len__(self) -> int:
        return 0 if self._buf is None else len(self.view)

    def __repr__(self) -> str:
        if self._buf is None:
            return "<BufferHandle released>"
        return f"<BufferHandle {len(self.view)} bytes of {self.capacity}>"


def _lost_handle_callback(pool_ref: weakref.ref[Any]) -> Callable[[weakref.ref[Any]], None]:
    """The weakref callback run when a tracked handle dies; holds its pool weakly."""

    def lost(ref: weakref.ref[Any]) -> None:
        pool = pool_ref()
        if pool is not None:
            pool._handle_lost(ref)

    return lost


def _warn_lost(what: str, site: str | None) -> None:
    """Warn that a tracked handle (``what``) died unreleased; called from ``_handle_lost``."""
    where = f"; acquired at:\n{site}" if site else " (use debug=True to see where)"
    warnings.warn(
        f"{what} was garbage-collected without release(){where}",
        UndisposedResourceWarning,
        stacklevel=3,
    )


class BufferPool:
    """Lends page-aligned ``memoryview`` buffers by size class and keeps released ones for reuse.

    Args:
        max_bytes: bound on the bytes of *idle* buffers kept (``int`` or a size string such
            as ``"64 MiB"``); a released buffer that would exceed it is unmapped.
        size_classes: buffer capacities; a request gets the smallest class that fits. Each
            is rounded up to whole pages. Default: powers of two from 4 KiB to 64 MiB.
            Requests larger than the largest class get a dedicated buffer that is unmapped
            on release.
        zero_on_release: zero the used bytes on ``release()`` so no borrower sees another's
            data (sensitive data); off saves one copy per use.
        governor: where ``trim`` is registered as a reliever, weakly (the registration
            never keeps the pool alive): :data:`~memwarden.pressure.DEFAULT` (the
            default) for the process-wide governor, ``None`` for none, or a
            :class:`~memwarden.pressure.Governor`.
        register: ``False`` is ``governor=None`` (kept for existing callers).
        leak_sample_rate: track 1 handle in N for leaks (default 128; 0: off). Tracking
            costs a weak reference per tracked handle.
        debug: track every handle and record where it was acquired (named in the warning).
        max_in_use_bytes: optional bound on lent bytes; beyond it ``acquire`` raises
            ``PoolExhaustedError``. Setting it tracks every handle, so a leaked handle gives
            its bytes back to the bound when collected.
        huge_pages: advise transparent huge pages (``MADV_HUGEPAGE``) for buffers of 2 MiB
            and more: faster copies, at the cost of RSS rounded up to 2 MiB per buffer.
        name: shown in logs, warnings and the governor's relief records.

    Thread-safe. Example::

        pool = BufferPool(max_bytes="64 MiB")
        with pool.acquire(65536) as view:
            n = f.readinto(view)
    """

    def __init__(
        self,
        *,
        max_bytes: int | str,
        size_classes: Sequence[int] | None = None,
        zero_on_release: bool = True,
        governor: Governor | DefaultType | None = DEFAULT,
        register: bool = True,
        leak_sample_rate: int = DEFAULT_LEAK_SAMPLE_RATE,
        debug: bool = False,
        max_in_use_bytes: SizeLike | None = None,
        huge_pages: bool = True,
        name: str | None = None,
    ) -> None:
        self.max_bytes = parse_size(max_bytes, source="BufferPool(max_bytes=...)")
        self._huge_pages = huge_pages
        self.max_in_use_bytes = (
            None
            if max_in_use_bytes is None
            else parse_size(max_in_use_bytes, source="BufferPool(max_in_use_bytes=...)")
        )
        classes = DEFAULT_SIZE_CLASSES if size_classes is None else size_classes
        rounded = set()
        for c in classes:
            if isinstance(c, bool) or not isinstance(c, int) or c <= 0:
                raise ConfigurationError(
                    f"size_classes contains {c!r} (argument): expected positive byte counts",
                    value=c,
                    source="argument",
                )
            rounded.add(-(-c // PAGE_BYTES) * PAGE_BYTES)
        if not rounded:
            raise ConfigurationError(
                "size_classes=[] (argument): expected at least one size class",
                value=list(classes),
                source="argument",
            )
        self._classes: list[int] = sorted(rounded)
        self._nclasses = len(self._classes)
        # Default-like classes (consecutive powers of two) find their index by bit_length.
        first = self._classes[0]
        pow2 = first & (first - 1) == 0 and all(
            c == first << i for i, c in enumerate(self._classes)
        )
        self._pow2_shift = first.bit_length() - 1 if pow2 else 0
        self._zero_on_release = zero_on_release
        self._leak_sample_rate = _check_rate(leak_sample_rate)
        # Hits are tracked when hits % _sample_every == 0; "never" when sampling is off.
        self._sample_every = self._leak_sample_rate or 1 << 62
        self._debug = debug
        self._track_all = debug or self.max_in_use_bytes is not None
        self.name = name or f"BufferPool@{id(self):x}"
        self._lock = threading.Lock()
        self._free: list[list[memoryview]] = [[] for _ in self._classes]
        # The hit path looks here: the real free lists, or empty ones once every acquire
        # must take the slow path (a closed pool, every handle tracked).
        self._hot: list[list[memoryview]] = (
            [[] for _ in self._classes] if self._track_all else self._free
        )
        # Per class, the zero view a copy reads: the whole buffer below ZERO_SOURCE_BYTES.
        zero = _zero_source()
        self._zeros: list[memoryview] = [zero[: min(c, ZERO_SOURCE_BYTES)] for c in self._classes]
        self._closed = False
        self._tracked: dict[int, tuple[weakref.ref[BufferHandle], int, str | None]] = {}
        self._lost = _lost_handle_callback(weakref.ref(self))
        # Counters. Lent bytes are derived (total - idle) so the hot path updates only two.
        self._hits = self._misses = self._released = self._discarded = self._leaked = 0
        self._total_bytes = self._idle_bytes = 0
        self._high_water_bytes = self._trimmed_bytes = 0
        reset_after_fork(self._after_fork)
        self._registration = _register_reliever(self, governor if register else None)

    def _after_fork(self) -> None:
        # Another thread of the parent may have held the lock at fork time.
        self._lock = threading.Lock()

    @property
    def size_classes(self) -> tuple[int, ...]:
        """The page-rounded size classes, ascending."""
        return tuple(self._classes)

    @property
    def zero_on_release(self) -> bool:
        """Whether released buffers are zeroed."""
        return self._zero_on_release

    @property
    def leak_sample_rate(self) -> int:
        """1 handle in this many is tracked for leaks (0: off)."""
        return self._leak_sample_rate

    @property
    def debug(self) -> bool:
        """Whether every handle is tracked with its acquisition site."""
        return self._debug

    def acquire(self, size: int) -> BufferHandle:
        """Lend a buffer whose ``view`` is exactly ``size`` bytes.

        Args:
            size: bytes wanted (0 is allowed).

        Returns:
            A handle; ``handle.view`` is the memoryview, ``handle.release()`` gives it back,
            and ``with pool.acquire(n) as view:`` does both.

        Raises:
            ValueError: ``size`` is negative. TypeError: it is not an int.
            PoolExhaustedError: ``max_in_use_bytes`` would be exceeded.
            DisposedError: the pool was closed.
        """
        # The hit path is kept short on purpose: at 64 KiB the pool's own Python overhead
        # is what competes with malloc (see docs/bench/pool.md).
        if size.__class__ is not int or size < 0:
            size = _check_size(size)
        shift = self._pow2_shift
        if shift:
            idx = (size - 1).bit_length() - shift
            if idx < 0:  # noqa: PLR1730 (a branch is cheaper than max())
                idx = 0
        else:
            idx = _bisect_left(self._classes, size)
        if idx >= self._nclasses:
            return self._acquire_slow(size, idx)
        free = self._hot[idx]
        lock = self._lock
        lock.acquire()
        try:
            if not free:
                buf = None
            else:
                buf = free.pop()
                self._idle_bytes -= self._classes[idx]
                self._hits = hits = self._hits + 1
        finally:
            lock.release()
        if buf is None:
            return self._acquire_slow(size, idx)
        handle = _new_object(BufferHandle)
        handle._pool = self
        handle._buf = buf
        handle._idx = idx
        handle._oversize_bytes = 0
        handle.view = buf[:size]
        if hits % self._sample_every:
            handle._track = None
        else:
            handle._track = self._track(handle, self._classes[idx])
        return handle

    def _acquire_slow(self, size: int, idx: int) -> BufferHandle:
        """Every case but a plain hit: misses, oversize, bounds, tracking, a closed pool."""
        buf: memoryview | None = None
        with self._lock:
            if self._closed:
                raise DisposedError(f"{self.name} is closed")
            if idx < self._nclasses:
                cap = self._classes[idx]
                oversize = 0
                free = self._free[idx]
            else:
                # Larger than every class: a dedicated buffer, unmapped on release.
                cap = oversize = -(-size // PAGE_BYTES) * PAGE_BYTES
                free = []
            limit = self.max_in_use_bytes
            lent = self._total_bytes - self._idle_bytes
            if limit is not None and lent + cap > limit:
                raise PoolExhaustedError(
                    f"{self.name}: lending {cap} more bytes would exceed max_in_use_bytes="
                    f"{limit} ({lent} lent)"
                )
            if free:
                buf = free.pop()
                self._idle_bytes -= cap
                self._hits = count = self._hits + 1
            else:
                self._misses = count = self._misses + 1
                self._total_bytes += cap
                if self._total_bytes > self._high_water_bytes:  # noqa: PLR1730
                    self._high_water_bytes = self._total_bytes
            track = self._track_all or count % self._sample_every == 0
        if buf is None:
            try:
                buf = _new_buffer(cap, self._huge_pages)
            except BaseException:
                with self._lock:
                    self._misses -= 1
                    self._total_bytes -= cap
                raise
        handle = _new_object(BufferHandle)
        handle._pool = self
        handle._buf = buf
        handle._idx = idx
        handle._oversize_bytes = oversize
        handle.view = buf[:size]
        handle._track = self._track(handle, cap) if track else None
        return handle

    def _track(self, handle: BufferHandle, cap: int) -> weakref.ref[BufferHandle]:
        ref = weakref.ref(handle, self._lost)
        site = creation_site() if self._debug else None
        with self._lock:
            self._tracked[id(ref)] = (ref, cap, site)
        return ref

    def _handle_lost(self, ref: weakref.ref[BufferHandle]) -> None:
        with self._lock:
            entry = self._tracked.pop(id(ref), None)
            if entry is None:
                return
            cap = entry[1]
            self._leaked += 1
            # The buffer died with the handle (or with the last view of it): it is no
            # longer lent, and no longer ours.
            self._total_bytes -= cap
        _warn_lost(f"BufferHandle of {cap} bytes from {self.name}", entry[2])

    def _give_back(
        self,
        buf: memoryview,
        idx: int,
        oversize_bytes: int,
        n: int,
        track: weakref.ref[BufferHandle] | None,
    ) -> None:
        """Take back a buffer whose handle was tracked or oversize (the uncommon cases)."""
        keep = not oversize_bytes
        cap = self._classes[idx] if keep else oversize_bytes
        if keep and n and self._zero_on_release:
            if n >= ZERO_SOURCE_BYTES:
                _zero_large(buf, n)
            else:
                buf[:n] = self._zeros[idx][:n]
        with self._lock:
            if track is not None:
                self._tracked.pop(id(track), None)
            self._released += 1
            if keep and not self._closed and self._idle_bytes + cap <= self.max_bytes:
                self._free[idx].append(buf)
                self._idle_bytes += cap
                return
            self._discarded += 1
            self._total_bytes -= cap
        # Oversize buffers are unmapped without zeroing: the kernel zeroes pages it reuses.
        _free_buffer(buf)

    def trim(self) -> int:
        """Unmap every idle buffer; return the bytes given back (a reliever)."""
        return self._drop_idle(None)

    def shrink(self, fraction: float = 0.5) -> int:
        """Unmap about ``fraction`` of the idle bytes, largest buffers first; return the bytes.

        Raises:
            ValueError: ``fraction`` is not within [0, 1].
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction={fraction!r}: expected a number in [0, 1]")
        return self._drop_idle(fraction)

    def _drop_idle(self, fraction: float | None) -> int:
        dropped: list[memoryview] = []
        freed = 0
        with self._lock:
            target = self._idle_bytes if fraction is None else int(self._idle_bytes * fraction)
            for idx in range(self._nclasses - 1, -1, -1):
                free = self._free[idx]
                cap = self._classes[idx]
                while free and freed < target:
                    dropped.append(free.pop())
                    freed += cap
            self._idle_bytes -= freed
            self._total_bytes -= freed
            self._trimmed_bytes += freed
        for buf in dropped:  # unmap outside the lock
            _free_buffer(buf)
        if freed:
            logger.debug("%s gave back %s of idle buffers", self.name, format_size(freed))
        return freed

    def stats(self) -> PoolStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return PoolStats(
                hits=self._hits,
                misses=self._misses,
                in_use=self._hits + self._misses - self._released - self._leaked,
                in_use_bytes=self._total_bytes - self._idle_bytes,
                idle=sum(len(free) for free in self._free),
                idle_bytes=self._idle_bytes,
                high_water_bytes=self._high_water_bytes,
                released=self._released,
                discarded=self._discarded,
                trimmed_bytes=self._trimmed_bytes,
                leaked=self._leaked,
                max_bytes=self.max_bytes,
            )

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        return self._closed

    def close(self) -> None:
        """Unmap idle buffers, leave the governor, refuse new acquires; idempotent.

        Handles still lent stay valid; their buffers are unmapped when released.
        """
        with self._lock:
            self._closed = True
            self._hot = [[] for _ in self._classes]
        self.trim()
        reg, self._registration = self._registration, None
        if reg is not None:
            reg.unregister()

    dispose = close

    def __enter__(self) -> BufferPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<BufferPool {self.name!r} in_use={s.in_use} ({format_size(s.in_use_bytes)}) "
            f"idle={format_size(s.idle_bytes)}/{format_size(s.max_bytes)}>"
        )


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, got {size!r}")
    if size < 0:
        raise ValueError(f"size={size!r}: cannot acquire a negative number of bytes")
    return int(size)


# --------------------------------------------------------------------------- objects


class ObjectHandle(Generic[T]):
    """A pooled object on loan: ``value`` until ``release()``; ``with`` yields the value."""

    __slots__ = ("__weakref__", "_pool", "_track", "_value")

    def __init__(self, pool: ObjectPool[T], value: T) -> None:
        self._pool = pool
        self._value: T | None = value
        self._track: Any = None

    @property
    def value(self) -> T:
        """The object lent.

        Raises:
            DisposedError: the handle was released.
        """
        value = self._value
        if value is None:
            raise DisposedError("ObjectHandle was released: its object is back in the pool")
        return value

    @property
    def released(self) -> bool:
        """True once ``release()`` ran."""
        return self._value is None

    def release(self) -> None:
        """Give the object back (reset first, when the pool has a ``reset``).

        Raises:
            DisposedError: the handle was already released.
        """
        value = self._value
        if value is None:
            raise DisposedError("ObjectHandle.release() called twice")
        self._value = None
        self._pool._give_back(value, self._track)

    def __enter__(self) -> T:
        return self.value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._value is not None:
            self.release()

    def __repr__(self) -> str:
        return (
            "<ObjectHandle released>" if self._value is None else f"<ObjectHandle {self._value!r}>"
        )


class ObjectPool(Generic[T]):
    """Lends reusable objects made by ``factory`` and keeps up to ``max_size`` idle ones.

    Args:
        factory: makes a new object when none is idle.
        reset: called on each released object before it is kept; if it raises, the object
            is dropped (and the error logged) rather than lent again in a bad state.
        max_size: bound on idle objects kept.
        max_in_use: optional bound on objects lent; beyond it ``acquire`` raises
            ``PoolExhaustedError``. Setting it tracks every handle, so a leaked handle
            frees its slot when collected.
        getsizeof: estimates an object's bytes for ``trim()``'s return value (default
            ``sys.getsizeof``, shallow).
        governor: where ``trim`` is registered, weakly: ``DEFAULT`` (the process-wide
            governor), ``None`` for none, or a ``Governor`` (as for :class:`BufferPool`).
        register: ``False`` is ``governor=None``.
        leak_sample_rate: track 1 handle in N for leaks (0: off).
        debug: track every handle with its acquisition site.
        name: shown in logs and warnings.

    ``release(x)`` accepts the handle or the object itself (while its handle is alive).
    Thread-safe.
    """

    def __init__(
        self,
        factory: Callable[[], T],
        *,
        reset: Callable[[T], object] | None = None,
        max_size: int,
        max_in_use: int | None = None,
        getsizeof: Callable[[T], int] | None = None,
        governor: Governor | DefaultType | None = DEFAULT,
        register: bool = True,
        leak_sample_rate: int = DEFAULT_LEAK_SAMPLE_RATE,
        debug: bool = False,
        name: str | None = None,
    ) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {factory!r}")
        for label, bound in (("max_size", max_size), ("max_in_use", max_in_use)):
            if bound is None and label == "max_in_use":
                continue
            if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
                raise ConfigurationError(
                    f"{label}={bound!r} (argument): expected a non-negative int",
                    value=bound,
                    source="argument",
                )
        self.factory = factory
        self.reset = reset
        self.max_size = max_size
        self.max_in_use = max_in_use
        self.getsizeof: Callable[[Any], int] = getsizeof or sys.getsizeof
        self.leak_sample_rate = _check_rate(leak_sample_rate)
        self.debug = debug
        self.name = name or f"ObjectPool@{id(self):x}"
        self._lock = threading.Lock()
        self._idle_objs: list[T] = []
        # id(value) -> handle, weakly: lets release(value) find the loan without keeping it.
        self._loans: weakref.WeakValueDictionary[int, ObjectHandle[T]] = (
            weakref.WeakValueDictionary()
        )
        self._tracked: dict[int, tuple[weakref.ref[ObjectHandle[T]], str | None]] = {}
        self._lost = _lost_handle_callback(weakref.ref(self))
        self._tick = 0
        self._closed = False
        self._hits = self._misses = self._released = self._discarded = 0
        self._leaked = self._trimmed = self._in_use = self._high_water = 0
        reset_after_fork(self._after_fork)
        self._registration = _register_reliever(self, governor if register else None)

    def _after_fork(self) -> None:
        # Another thread of the parent may have held the lock at fork time.
        self._lock = threading.Lock()

    def acquire(self) -> ObjectHandle[T]:
        """Lend an idle object, or a new one from ``factory``.

        Raises:
            PoolExhaustedError: ``max_in_use`` objects are lent already.
            DisposedError: the pool was closed.
        """
        with self._lock:
            if self._closed:
                raise DisposedError(f"{self.name} is closed")
            if self.max_in_use is not None and self._in_use >= self.max_in_use:
                raise PoolExhaustedError(
                    f"{self.name}: max_in_use={self.max_in_use} objects are lent already"
                )
            have = bool(self._idle_objs)
            value = self._idle_objs.pop() if have else None
            if have:
                self._hits += 1
            else:
                self._misses += 1
            self._in_use += 1
            total = self._in_use + len(self._idle_objs)
            self._high_water = max(self._high_water, total)
            track = self.debug or self.max_in_use is not None
            if not track and self.leak_sample_rate:
                self._tick += 1
                if self._tick >= self.leak_sample_rate:
                    self._tick = 0
                    track = True
        if not have:
            try:
                value = self.factory()
                if value is None:
                    raise TypeError(f"{self.name}: factory returned None; pools lend objects")
            except BaseException:
                with self._lock:
                    self._in_use -= 1
                raise
        handle: ObjectHandle[T] = ObjectHandle(self, value)  # type: ignore[arg-type]
        self._loans[id(value)] = handle
        if track:
            ref = weakref.ref(handle, self._lost)
            site = creation_site() if self.debug else None
            with self._lock:
                self._tracked[id(ref)] = (ref, site)
            handle._track = ref
        return handle

    def release(self, obj: ObjectHandle[T] | T) -> None:
        """Give back a handle, or an object whose handle is still alive.

        Raises:
            ValueError: ``obj`` is not on loan from this pool.
            DisposedError: the handle was already released.
        """
        if isinstance(obj, ObjectHandle):
            if obj._pool is not self:
                raise ValueError(f"{obj!r} was not lent by {self.name}")
            obj.release()
            return
        handle = self._loans.get(id(obj))
        if handle is None or handle._value is not obj:
            raise ValueError(
                f"{type(obj).__name__} object is not on loan from {self.name} (or its handle "
                "was garbage-collected: keep the handle, or use `with pool.acquire() as obj`)"
            )
        handle.release()

    def _give_back(self, value: T, track: Any) -> None:
        self._loans.pop(id(value), None)
        keep = True
        if self.reset is not None:
            try:
                self.reset(value)
            except Exception:
                logger.exception("%s: reset() failed; dropping the object", self.name)
                keep = False
        with self._lock:
            if track is not None:
                self._tracked.pop(id(track), None)
            self._released += 1
            self._in_use -= 1
            if keep and not self._closed and len(self._idle_objs) < self.max_size:
                self._idle_objs.append(value)
                return
            self._discarded += 1

    def _handle_lost(self, ref: weakref.ref[Any]) -> None:
        with self._lock:
            entry = self._tracked.pop(id(ref), None)
            if entry is None:
                return
            self._leaked += 1
            self._in_use -= 1
        _warn_lost(f"ObjectHandle from {self.name}", entry[1])

    def trim(self) -> int:
        """Drop every idle object; return their estimated bytes (a reliever)."""
        return self._drop(1.0)

    def shrink(self, fraction: float = 0.5) -> int:
        """Drop about ``fraction`` of the idle objects; return their estimated bytes.

        Raises:
            ValueError: ``fraction`` is not within [0, 1] (as for every ``shrink()``).
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction={fraction!r}: expected a number in [0, 1]")
        return self._drop(fraction)

    def _drop(self, fraction: float) -> int:
        with self._lock:
            count = (
                len(self._idle_objs) if fraction >= 1.0 else int(len(self._idle_objs) * fraction)
            )
            dropped = self._idle_objs[len(self._idle_objs) - count :]
            del self._idle_objs[len(self._idle_objs) - count :]
            self._trimmed += count
        freed = 0
        for obj in dropped:
            try:
                freed += int(self.getsizeof(obj))
            except Exception:  # an estimate must not fail relief
                logger.debug("getsizeof failed for %r", obj, exc_info=True)
        return freed

    def stats(self) -> ObjectPoolStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return ObjectPoolStats(
                hits=self._hits,
                misses=self._misses,
                in_use=self._in_use,
                idle=len(self._idle_objs),
                high_water=self._high_water,
                released=self._released,
                discarded=self._discarded,
                trimmed=self._trimmed,
                leaked=self._leaked,
                max_size=self.max_size,
            )

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        return self._closed

    def close(self) -> None:
        """Drop idle objects, leave the governor, refuse new acquires; idempotent."""
        with self._lock:
            self._closed = True
        self.trim()
        reg, self._registration = self._registration, None
        if reg is not None:
            reg.unregister()

    dispose = close

    def __enter__(self) -> ObjectPool[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.stats()
        return f"<ObjectPool {self.name!r} in_use={s.in_use} idle={s.idle}/{s.max_size}>"
