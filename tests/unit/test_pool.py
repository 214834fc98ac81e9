"""Tests of memwarden.pool: one contract suite over both pools, then BufferPool and ObjectPool
specifics, and a Hypothesis state machine checking the idle bound and the counters."""

from __future__ import annotations

import ctypes
import gc
import mmap
import pickle
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from memwarden import pool as pool_module
from memwarden.exceptions import (
    ConfigurationError,
    DisposedError,
    PoolExhaustedError,
    UndisposedResourceWarning,
)
from memwarden.pool import BufferHandle, BufferPool, ObjectPool
from memwarden.typing import SupportsAcquire, SupportsShrink

KIB = 1024


# --------------------------------------------------------------------------- contract suite


@dataclass
class Impl:
    """How the contract suite drives one pool implementation."""

    name: str
    make: Callable[..., Any]  # (max_idle, **options) -> pool
    acquire: Callable[[Any], Any]  # pool -> handle
    payload: Callable[[Any], Any]  # handle -> what the borrower uses


def _make_buffer_pool(max_idle: int, **options: Any) -> BufferPool:
    return BufferPool(max_bytes=max_idle * 4 * KIB, size_classes=[4 * KIB], **options)


def _make_object_pool(max_idle: int, **options: Any) -> ObjectPool[bytearray]:
    return ObjectPool(lambda: bytearray(4 * KIB), max_size=max_idle, **options)


IMPLS = [
    Impl("buffer", _make_buffer_pool, lambda p: p.acquire(4 * KIB), lambda h: h.view),
    Impl("object", _make_object_pool, lambda p: p.acquire(), lambda h: h.value),
]


@pytest.fixture(params=IMPLS, ids=lambda i: i.name)
def impl(request: pytest.FixtureRequest) -> Impl:
    return request.param  # type: ignore[no-any-return]


def _pools(impl: Impl, **options: Any) -> Any:
    options.setdefault("register", False)
    return impl.make(4, **options)


def test_contract_release_then_reuse_is_a_hit(impl: Impl) -> None:
    """A released resource is lent again: the second acquire is a hit, not a new allocation."""
    pool = _pools(impl)
    first = impl.acquire(pool)
    first.release()
    second = impl.acquire(pool)
    stats = pool.stats()
    assert (stats.hits, stats.misses, stats.in_use, stats.released) == (1, 1, 1, 1)
    assert stats.hit_rate == 0.5
    second.release()
    assert pool.stats().in_use == 0


def test_contract_governor_is_explicit(impl: Impl) -> None:
    """``governor=`` says where trim() is registered: a given governor, DEFAULT, or None."""
    from memwarden.config import MemoryConfig
    from memwarden.pressure import DEFAULT, Governor, governor

    own = Governor(MemoryConfig(max_memory_bytes=1 << 30), probe=lambda: 0, psi=False, cgroup=False)
    try:
        pool = impl.make(4, governor=own, name="explicit")
        assert [r.name for r in own.relievers() if r.name == "explicit"] == ["explicit"]
        assert not any(r.name == "explicit" for r in governor().relievers())
        pool.close()
        assert not any(r.name == "explicit" for r in own.relievers())

        default = impl.make(4, governor=DEFAULT, name="process-wide")
        assert any(r.name == "process-wide" for r in governor().relievers())
        default.close()

        for off in ({"governor": None}, {"register": False}):
            none = impl.make(4, name="unregistered", **off)
            assert none._registration is None
            none.close()
        with pytest.raises(TypeError, match="governor="):
            impl.make(4, governor=object())
    finally:
        own.close()


def test_contract_double_release_raises(impl: Impl) -> None:
    """Releasing a handle twice raises DisposedError and does not corrupt the counters."""
    pool = _pools(impl)
    handle = impl.acquire(pool)
    handle.release()
    assert handle.released
    with pytest.raises(DisposedError, match="twice"):
        handle.release()
    assert pool.stats().released == 1


def test_contract_context_manager_yields_payload_and_releases(impl: Impl) -> None:
    """`with pool.acquire(...) as x` yields what the borrower uses and releases on exit."""
    pool = _pools(impl)
    handle = impl.acquire(pool)
    with handle as payload:
        assert payload is impl.payload(handle) or payload == impl.payload(handle)
    assert handle.released
    with pytest.raises(RuntimeError), impl.acquire(pool):
        raise RuntimeError("body")
    assert pool.stats().in_use == 0


def test_contract_idle_bound_holds(impl: Impl) -> None:
    """No more than the idle bound is kept; the rest is discarded on release."""
    pool = _pools(impl)
    handles = [impl.acquire(pool) for _ in range(7)]
    for h in handles:
        h.release()
    stats = pool.stats()
    assert stats.idle == 4
    assert stats.discarded == 3
    assert stats.in_use == 0


def test_contract_trim_and_shrink_give_back(impl: Impl) -> None:
    """shrink() drops about a fraction of the idle resources and trim() the rest."""
    pool = _pools(impl)
    assert isinstance(pool, SupportsShrink)
    handles = [impl.acquire(pool) for _ in range(4)]
    for h in handles:
        h.release()
    assert pool.shrink(0.5) > 0
    assert pool.stats().idle == 2
    assert pool.trim() > 0
    assert pool.stats().idle == 0
    assert pool.trim() == 0
    with pytest.raises(ValueError, match=r"fraction=1\.5") as info:
        pool.shrink(1.5)
    assert type(info.value) is ValueError  # plain, as every shrink() raises (caches too)


def test_contract_closed_pool_refuses_acquire(impl: Impl) -> None:
    """After close() acquire raises DisposedError; a handle still lent can be released."""
    pool = _pools(impl)
    lent = impl.acquire(pool)
    with pool:
        pass
    assert pool.closed
    with pytest.raises(DisposedError, match="closed"):
        impl.acquire(pool)
    lent.release()
    assert pool.stats().idle == 0


def test_contract_leaked_handle_warns_in_debug_mode(impl: Impl) -> None:
    """A handle collected without release() warns with its acquisition site and is counted."""
    pool = _pools(impl, debug=True)

    def forget() -> None:
        impl.acquire(pool)

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        forget()
        gc.collect()
    msgs = [str(w.message) for w in record if issubclass(w.category, UndisposedResourceWarning)]
    assert len(msgs) == 1
    assert "without release()" in msgs[0]
    assert "forget" in msgs[0]
    stats = pool.stats()
    assert stats.leaked == 1
    assert stats.in_use == 0


def test_contract_leak_sampling_one_in_n(impl: Impl) -> None:
    """With leak_sample_rate=N about 1 leaked handle in N is reported; 0 reports none."""
    pool = _pools(impl, leak_sample_rate=5)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(50):
            impl.acquire(pool)
        gc.collect()
    assert sum(issubclass(w.category, UndisposedResourceWarning) for w in record) == 10
    assert pool.stats().leaked == 10
    quiet = _pools(impl, leak_sample_rate=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndisposedResourceWarning)
        for _ in range(20):
            impl.acquire(quiet)
        gc.collect()
    assert quiet.stats().leaked == 0


def test_contract_released_handles_do_not_warn(impl: Impl) -> None:
    """Handles that were released never produce a leak warning, even when tracked."""
    pool = _pools(impl, debug=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndisposedResourceWarning)
        for _ in range(10):
            impl.acquire(pool).release()
        gc.collect()
    assert pool.stats().leaked == 0


def test_contract_bad_leak_rate_is_refused(impl: Impl) -> None:
    """A negative or non-int leak_sample_rate raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="leak_sample_rate=-1"):
        _pools(impl, leak_sample_rate=-1)
    with pytest.raises(ConfigurationError, match=r"leak_sample_rate=0\.5"):
        _pools(impl, leak_sample_rate=0.5)


@pytest.mark.parametrize("workers", [4])
def test_contract_threads_keep_counters_consistent(impl: Impl, workers: int) -> None:
    """Threads hammering acquire/release/trim leave every counter consistent."""
    pool = _pools(impl)
    rounds = 2000
    errors: list[BaseException] = []

    def work(trimmer: bool) -> None:
        try:
            for i in range(rounds):
                h = impl.acquire(pool)
                h.release()
                if trimmer and i % 50 == 0:
                    pool.trim()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i == 0,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    stats = pool.stats()
    assert stats.hits + stats.misses == workers * rounds
    assert stats.released == workers * rounds
    assert stats.in_use == 0
    assert stats.idle <= 4


def test_contract_registers_weakly_with_governor(impl: Impl) -> None:
    """register=True adds trim() to the governor's relievers without keeping the pool alive."""
    pressure = pytest.importorskip("memwarden.pressure")
    gov = pressure.governor()
    pool = impl.make(4, register=True, name=f"contract-{impl.name}")
    names = [r.name for r in gov.relievers()]
    assert f"contract-{impl.name}" in names
    reg = next(r for r in gov.relievers() if r.name == f"contract-{impl.name}")
    assert reg.priority == pressure.PRIORITY_POOL
    h = impl.acquire(pool)
    h.release()
    assert reg.resolve()() > 0  # the registered reliever is this pool's trim()
    ref = weakref.ref(pool)
    del pool, h
    gc.collect()
    assert ref() is None
    assert f"contract-{impl.name}" not in [r.name for r in gov.relievers()]


def test_contract_close_unregisters(impl: Impl) -> None:
    """close() removes the pool's reliever from the governor."""
    pressure = pytest.importorskip("memwarden.pressure")
    pool = impl.make(4, register=True, name=f"closing-{impl.name}")
    assert f"closing-{impl.name}" in [r.name for r in pressure.governor().relievers()]
    pool.close()
    assert f"closing-{impl.name}" not in [r.name for r in pressure.governor().relievers()]


# --------------------------------------------------------------------------- BufferPool


@pytest.fixture
def pool() -> Iterator[BufferPool]:
    p = BufferPool(max_bytes="8 MiB", register=False)
    yield p
    p.close()


def _address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def test_view_is_exact_size_and_page_aligned(pool: BufferPool) -> None:
    """The view has exactly the requested length and starts on a page boundary."""
    for size in (1, 100, 4096, 5000, 65536, 1_000_000):
        with pool.acquire(size) as view:
            assert len(view) == size
            assert view.format == "B"
            assert not view.readonly
            assert _address(view) % mmap.PAGESIZE == 0


def test_size_class_is_smallest_fitting(pool: BufferPool) -> None:
    """A request gets the smallest default class that fits."""
    assert pool.acquire(4096).capacity == 4096
    assert pool.acquire(4097).capacity == 8192
    assert pool.acquire(0).capacity == 4096
    assert pool.acquire(1 << 20).capacity == 1 << 20


def test_custom_classes_are_page_rounded_and_bisected() -> None:
    """Custom size classes round up to pages; a request maps to the next class up."""
    pool = BufferPool(max_bytes=1 << 20, size_classes=[1000, 10_000, 40_000], register=False)
    assert pool.size_classes == (4096, 12288, 40960)
    assert pool.acquire(5000).capacity == 12288
    assert pool.acquire(12289).capacity == 40960


def test_release_zeroes_the_buffer(pool: BufferPool) -> None:
    """With zeroing on, the next borrower of the same buffer sees only zeros."""
    h = pool.acquire(10_000)
    h.view[:] = b"\xaa" * 10_000
    h.release()
    h2 = pool.acquire(16_000)
    assert pool.stats().hits == 1
    assert bytes(h2.view) == bytes(16_000)


def test_release_zeroes_large_buffers_chunk_by_chunk() -> None:
    """Buffers above the 1 MiB zero source are zeroed in full, partial sizes included."""
    pool = BufferPool(max_bytes="64 MiB", register=False)
    size = 3 * (1 << 20) + 100  # a 4 MiB class, used partially, not a chunk multiple
    h = pool.acquire(size)
    h.view[:] = b"\xff" * size
    h.release()
    with pool.acquire(4 << 20) as view:
        assert pool.stats().hits == 1
        assert view.tobytes().count(0) == 4 << 20


def test_zero_source_is_shared_and_small() -> None:
    """Every pool copies from one 256 KiB zero mapping, whatever its largest class."""
    a = BufferPool(max_bytes=1, register=False)
    b = BufferPool(max_bytes=1, size_classes=[1 << 26], register=False)
    assert len(a._zeros[0]) == 4096
    assert len(b._zeros[0]) == pool_module.ZERO_SOURCE_BYTES == 256 << 10
    assert a._zeros[0].obj is b._zeros[0].obj is pool_module._zero_source().obj


@pytest.mark.parametrize("n", [1, 4096, (256 << 10) - 1, 256 << 10, 300_001])
def test_both_zeroing_paths_clear_exactly_the_used_bytes(n: int) -> None:
    """Copy (small) and memset (large) zeroing clear every used byte, on both release paths."""
    for debug in (False, True):  # the inlined hot path, and the tracked (slow) path
        pool = BufferPool(max_bytes="8 MiB", size_classes=[1 << 20], register=False, debug=debug)
        h = pool.acquire(n)
        h.view[:] = b"\x01" * n
        h.release()
        with pool.acquire(1 << 20) as view:
            assert view.tobytes().count(0) == 1 << 20


def test_copy_fallback_zeroes_like_memset() -> None:
    """The ctypes-free fallback zeroes whole chunks and the remainder."""
    n = 2 * pool_module.ZERO_SOURCE_BYTES + 123
    buf = memoryview(bytearray(b"\xff" * (n + 10)))
    pool_module._zero_by_copy(buf, n)
    assert buf[:n].tobytes().count(0) == n
    assert buf[n:].tobytes() == b"\xff" * 10


def test_without_zeroing_data_survives_reuse() -> None:
    """With zeroing off the buffer is reused as is (proving reuse, and why zeroing exists)."""
    pool = BufferPool(max_bytes=1 << 20, zero_on_release=False, register=False)
    h = pool.acquire(4096)
    h.view[:4] = b"keep"
    h.release()
    assert bytes(pool.acquire(4096).view[:4]) == b"keep"


def test_with_block_after_explicit_release_is_a_double_release(pool: BufferPool) -> None:
    """Leaving a with block whose handle was already released raises, like any double release."""
    handle = pool.acquire(10)
    with pytest.raises(DisposedError, match="twice"), handle:
        handle.release()
    assert pool.stats().released == 1


def test_released_view_raises_instead_of_reading(pool: BufferPool) -> None:
    """After release() the handle's view raises instead of exposing the next owner's data."""
    h = pool.acquire(100)
    view = h.view
    h.release()
    with pytest.raises(ValueError, match="released memoryview"):
        view[0]
    with pytest.raises(ValueError, match="released memoryview"):
        bytes(view)
    assert len(h) == 0
    assert "released" in repr(h)


def test_live_export_blocks_release() -> None:
    """An object holding an export of the view makes release() raise BufferError until dropped."""
    pool = BufferPool(max_bytes=1 << 20, register=False)
    h = pool.acquire(64)
    export = pickle.PickleBuffer(h.view)
    with pytest.raises(BufferError):
        h.release()
    assert not h.released
    assert pool.stats().in_use == 1
    export.release()
    h.release()
    assert h.released
    assert pool.stats().in_use == 0


def test_derived_views_outlive_release_as_documented() -> None:
    """A slice or numpy array made from the view is NOT released with it (documented limit)."""
    np = pytest.importorskip("numpy")
    pool = BufferPool(max_bytes=1 << 20, zero_on_release=False, register=False)
    h = pool.acquire(64)
    arr = np.frombuffer(h.view, dtype=np.uint8)
    piece = h.view[:8]
    h.release()
    assert len(piece) == 8  # still usable: the borrower must drop it before release()
    assert arr.shape == (64,)


def test_oversize_requests_are_served_and_not_kept() -> None:
    """A request above the largest class gets its own buffer, unmapped on release."""
    pool = BufferPool(max_bytes=1 << 30, size_classes=[4096, 8192], register=False)
    h = pool.acquire(20_000)
    assert len(h.view) == 20_000
    assert h.capacity == 20_480
    assert pool.stats().in_use_bytes == 20_480
    h.release()
    stats = pool.stats()
    assert (stats.idle, stats.discarded, stats.in_use_bytes) == (0, 1, 0)


def test_tracked_oversize_and_pooled_handles_go_back_their_own_ways() -> None:
    """Tracked handles take the slow path: an oversize one is unmapped, a pooled one kept.

    The handle carries an explicit oversize capacity (0 for pooled buffers), so a
    pooled buffer of the last class and a dedicated buffer of the same size stay apart.
    """
    pool = BufferPool(max_bytes=1 << 30, size_classes=[4096, 8192], debug=True, register=False)
    big = pool.acquire(8193)
    last = pool.acquire(8192)
    assert (big.capacity, last.capacity) == (12_288, 8192)
    assert pool.stats().in_use_bytes == 12_288 + 8192
    big.release()
    last.release()
    stats = pool.stats()
    assert (stats.idle, stats.idle_bytes, stats.discarded, stats.in_use_bytes) == (1, 8192, 1, 0)
    again = pool.acquire(5000)
    assert again.capacity == 8192
    assert pool.stats().hits == 1
    again.release()


def test_stats_track_bytes_and_high_water(pool: BufferPool) -> None:
    """in_use_bytes, idle_bytes and high_water_bytes follow acquires, releases and trims."""
    a = pool.acquire(4096)
    b = pool.acquire(65536)
    s = pool.stats()
    assert (s.in_use, s.in_use_bytes, s.idle_bytes, s.high_water_bytes) == (2, 69632, 0, 69632)
    a.release()
    b.release()
    s = pool.stats()
    assert (s.in_use_bytes, s.idle_bytes, s.idle, s.high_water_bytes) == (0, 69632, 2, 69632)
    assert pool.trim() == 69632
    s = pool.stats()
    assert (s.idle_bytes, s.trimmed_bytes, s.high_water_bytes) == (0, 69632, 69632)
    assert "BufferPool" in repr(pool)


def test_max_bytes_accepts_size_strings_and_rejects_garbage() -> None:
    """max_bytes takes parse_size strings; bad values and classes raise ConfigurationError."""
    assert BufferPool(max_bytes="2 MiB", register=False).max_bytes == 2 * 1024 * 1024
    with pytest.raises(ConfigurationError, match="max_bytes"):
        BufferPool(max_bytes="lots", register=False)
    with pytest.raises(ConfigurationError, match="size_classes"):
        BufferPool(max_bytes=1, size_classes=[0], register=False)
    with pytest.raises(ConfigurationError, match="size_classes"):
        BufferPool(max_bytes=1, size_classes=[], register=False)


def test_bad_sizes_are_refused(pool: BufferPool) -> None:
    """Negative and non-int sizes raise ValueError/TypeError naming the value."""
    with pytest.raises(ValueError, match="size=-1"):
        pool.acquire(-1)
    with pytest.raises(TypeError, match=r"1\.5"):
        pool.acquire(1.5)  # type: ignore[arg-type]


def test_max_in_use_bytes_bounds_loans_and_leaks_return_budget() -> None:
    """Beyond max_in_use_bytes acquire raises; a leaked handle's bytes return when collected."""
    pool = BufferPool(max_bytes=1 << 20, max_in_use_bytes=8192, register=False)
    a = pool.acquire(4096)
    pool.acquire(4096)  # leaked at once: tracked because the bound needs every handle
    gc.collect()
    b = pool.acquire(4096)
    with pytest.raises(PoolExhaustedError, match="max_in_use_bytes=8192"):
        pool.acquire(1)
    a.release()
    b.release()
    assert pool.stats().leaked == 1


def test_satisfies_supports_acquire(pool: BufferPool) -> None:
    """BufferPool is a SupportsAcquire (what read_chunks(pool=...) accepts)."""
    assert isinstance(pool, SupportsAcquire)
    handle: BufferHandle = pool.acquire(10)
    assert isinstance(handle.view, memoryview)
    handle.release()


def test_trim_unmaps_buffers(pool: BufferPool) -> None:
    """trim() closes the idle mappings, so their memory is gone, not just forgotten."""
    h = pool.acquire(4096)
    mm = h._buf.obj  # type: ignore[union-attr]
    h.release()
    assert not mm.closed  # type: ignore[attr-defined]
    pool.trim()
    assert mm.closed  # type: ignore[attr-defined]


def test_buffers_are_private_mappings(pool: BufferPool) -> None:
    """Buffers are MAP_PRIVATE, so a forked child never shares a pooled buffer with its parent."""
    with pool.acquire(4096) as view:
        addr = _address(view)
        with Path("/proc/self/maps").open() as maps:
            for line in maps:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if lo <= addr < hi:
                    assert line.split()[1].endswith("p")
                    break
            else:
                pytest.fail("buffer mapping not found in /proc/self/maps")


def _thp_advised(view: memoryview) -> bool | None:
    """Whether the mapping holding ``view`` carries the hugepage advice (None: unknown)."""
    addr = _address(view)
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for i, line in enumerate(lines):
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            lo, hi = (int(x, 16) for x in head.split("-"))
            if lo <= addr < hi:
                for follow in lines[i + 1 :]:
                    if follow.startswith("VmFlags:"):
                        return " hg" in follow
                return None
    return None


def test_large_buffers_ask_for_huge_pages() -> None:
    """Buffers of 2 MiB and more carry MADV_HUGEPAGE unless huge_pages=False; small ones never."""
    if getattr(mmap, "MADV_HUGEPAGE", None) is None:
        pytest.skip("this platform's mmap has no MADV_HUGEPAGE")
    on = BufferPool(max_bytes="16 MiB", register=False)
    off = BufferPool(max_bytes="16 MiB", register=False, huge_pages=False)
    with on.acquire(4 << 20) as big, on.acquire(64 << 10) as small, off.acquire(4 << 20) as plain:
        if _thp_advised(big) is None:
            pytest.skip("/proc/self/smaps shows no VmFlags here")
        assert _thp_advised(big) is True
        assert _thp_advised(small) is False
        assert _thp_advised(plain) is False


def test_hit_path_handles_are_untracked_by_default(pool: BufferPool) -> None:
    """By default only about 1 handle in 128 carries a weak reference (the sampling)."""
    pool.acquire(4096).release()
    tracked = 0
    for _ in range(256):
        h = pool.acquire(4096)
        tracked += h._track is not None
        h.release()
    assert tracked == 2


# --------------------------------------------------------------------------- ObjectPool


def test_object_pool_resets_and_reuses() -> None:
    """reset() runs on release, and the same object is lent again."""
    resets: list[list[int]] = []
    pool: ObjectPool[list[int]] = ObjectPool(
        list, reset=lambda obj: (obj.clear(), resets.append(obj)), max_size=2, register=False
    )
    with pool.acquire() as obj:
        obj.append(1)
    assert resets == [obj]
    with pool.acquire() as again:
        assert again is obj
        assert again == []


def test_object_pool_drops_objects_whose_reset_fails(caplog: pytest.LogCaptureFixture) -> None:
    """An object whose reset() raises is dropped (and logged), never lent again."""

    def bad_reset(obj: list[int]) -> None:
        raise RuntimeError("cannot reset")

    pool: ObjectPool[list[int]] = ObjectPool(list, reset=bad_reset, max_size=2, register=False)
    first = pool.acquire()
    obj = first.value
    first.release()
    assert pool.stats().idle == 0
    assert pool.stats().discarded == 1
    assert pool.acquire().value is not obj
    assert "reset() failed" in caplog.text


def test_object_pool_release_by_value() -> None:
    """release(obj) finds the loan through its live handle; a stranger raises ValueError."""
    pool: ObjectPool[list[int]] = ObjectPool(list, max_size=2, register=False)
    handle = pool.acquire()
    pool.release(handle.value)
    assert handle.released
    with pytest.raises(ValueError, match="not on loan"):
        pool.release([1])
    other: ObjectPool[list[int]] = ObjectPool(list, max_size=2, register=False)
    with pytest.raises(ValueError, match="was not lent by"):
        pool.release(other.acquire())
    h = pool.acquire()
    pool.release(h)
    with pytest.raises(DisposedError):
        _ = h.value


def test_object_pool_max_in_use() -> None:
    """max_in_use bounds loans with PoolExhaustedError; a leaked handle frees its slot."""
    pool: ObjectPool[list[int]] = ObjectPool(list, max_size=2, max_in_use=2, register=False)
    a = pool.acquire()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndisposedResourceWarning)
        pool.acquire()  # leaked
        gc.collect()
    b = pool.acquire()
    with pytest.raises(PoolExhaustedError, match="max_in_use=2"):
        pool.acquire()
    a.release()
    b.release()
    assert pool.stats().leaked == 1


def test_object_pool_rejects_bad_arguments() -> None:
    """A non-callable factory, a negative bound and a factory returning None are refused."""
    with pytest.raises(TypeError, match="factory"):
        ObjectPool(3, max_size=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_size=-1"):
        ObjectPool(list, max_size=-1)
    pool: ObjectPool[None] = ObjectPool(lambda: None, max_size=1, register=False)
    with pytest.raises(TypeError, match="returned None"):
        pool.acquire()
    assert pool.stats().in_use == 0


# --------------------------------------------------------------------------- state machine


class BufferPoolMachine(RuleBasedStateMachine):
    """Random acquire/release/trim/shrink sequences never break the idle bound or the counts."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = BufferPool(
            max_bytes=64 * KIB,
            size_classes=[4 * KIB, 16 * KIB, 32 * KIB],
            register=False,
            leak_sample_rate=0,
        )
        self.handles: list[BufferHandle] = []
        self.fill = 0

    @rule(size=st.integers(min_value=0, max_value=40 * KIB))
    def acquire(self, size: int) -> None:
        h = self.pool.acquire(size)
        assert len(h.view) == size
        assert bytes(h.view) == bytes(size)  # zeroed, whoever had it before
        self.fill = (self.fill + 1) % 255 + 1
        h.view[:] = bytes([self.fill]) * size
        self.handles.append(h)

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(min_value=0))
    def release(self, i: int) -> None:
        h = self.handles.pop(i % len(self.handles))
        h.release()

    @rule()
    def trim(self) -> None:
        self.pool.trim()
        assert self.pool.stats().idle_bytes == 0

    @rule(fraction=st.floats(min_value=0.0, max_value=1.0))
    def shrink(self, fraction: float) -> None:
        before = self.pool.stats().idle_bytes
        freed = self.pool.shrink(fraction)
        assert freed >= int(before * fraction)
        assert self.pool.stats().idle_bytes == before - freed

    @invariant()
    def bounded_and_consistent(self) -> None:
        s = self.pool.stats()
        assert s.idle_bytes <= s.max_bytes
        assert s.in_use == len(self.handles)
        assert s.in_use_bytes == sum(h.capacity for h in self.handles)
        assert s.idle_bytes == sum(
            len(free) * cap for free, cap in zip(self.pool._free, self.pool._classes, strict=True)
        )
        assert s.high_water_bytes >= s.in_use_bytes + s.idle_bytes

    def teardown(self) -> None:
        for h in self.handles:
            h.release()
        self.pool.close()


BufferPoolMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
TestBufferPoolMachine = BufferPoolMachine.TestCase


class ObjectPoolMachine(RuleBasedStateMachine):
    """Random acquire/release/trim/shrink sequences keep ObjectPool within max_size and exact."""

    def __init__(self) -> None:
        super().__init__()
        self.made = 0

        def factory() -> list[int]:
            self.made += 1
            return []

        self.pool: ObjectPool[list[int]] = ObjectPool(
            factory, reset=list.clear, max_size=3, register=False, leak_sample_rate=0
        )
        self.handles: list[Any] = []

    @rule()
    def acquire(self) -> None:
        h = self.pool.acquire()
        assert h.value == []  # reset before reuse
        assert all(h.value is not other.value for other in self.handles)  # never lent twice
        h.value.append(1)
        self.handles.append(h)

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(min_value=0), by_value=st.booleans())
    def release(self, i: int, by_value: bool) -> None:
        h = self.handles.pop(i % len(self.handles))
        self.pool.release(h.value if by_value else h)

    @rule(fraction=st.sampled_from([0.0, 0.5, 1.0]))
    def shrink(self, fraction: float) -> None:
        self.pool.shrink(fraction)

    @invariant()
    def bounded_and_consistent(self) -> None:
        s = self.pool.stats()
        assert s.idle <= 3
        assert s.in_use == len(self.handles)
        assert s.misses == self.made
        assert s.high_water >= s.in_use + s.idle


ObjectPoolMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None
)
TestObjectPoolMachine = ObjectPoolMachine.TestCase


def test_a_lock_held_by_another_thread_at_fork_is_new_in_the_child() -> None:
    """The pools' fork reset (through the base layer's reset_after_fork) renews their locks.

    A thread of the parent holds both pools' locks while the process forks; the child
    can still acquire and release, instead of deadlocking on a lock nobody will release.
    """
    import os

    buffers = BufferPool(max_bytes=1 << 20, governor=None)
    objects: ObjectPool[list[int]] = ObjectPool(list, max_size=2, governor=None)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with buffers._lock, objects._lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with a live thread
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                with buffers.acquire(4096) as view:
                    view[0] = 1
                objects.acquire().release()
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child deadlocked on a pool lock held at fork time")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        t.join()
