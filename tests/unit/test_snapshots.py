"""Snapshots, deltas and heap sessions measure the real process and serialise cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import pytest

from memwarden.exceptions import ConfigurationError
from memwarden.heap import HeapSession, gc_type_counts, growing_types, top_sites
from memwarden.snapshots import MemoryDelta, MemorySnapshot, snapshot

MIB = 2**20


class Leaky:
    """A gc-tracked type whose instances the tests count."""


def test_snapshot_fields_without_tracing() -> None:
    """A plain snapshot has RSS figures and no Python heap when tracemalloc is off."""
    assert not tracemalloc.is_tracing()
    snap = snapshot(label="x")
    assert snap.rss_bytes > 0
    assert snap.peak_rss_bytes >= snap.rss_bytes - 4096
    assert snap.vms_bytes >= snap.rss_bytes
    assert snap.python_heap_bytes is None
    assert snap.allocated_blocks > 0
    assert snap.thread_count >= 1
    assert snap.uss_bytes is None
    assert snap.label == "x"


def test_delta_sees_allocation_and_python_heap() -> None:
    """snapshot_b - snapshot_a shows a 32 MiB allocation in RSS and in the traced heap."""
    from memwarden.pressure import malloc_trim

    # A worker that ran other tests keeps freed heap pages resident, and a new block may
    # reuse them without moving RSS: give them back first, so the block's pages are new.
    malloc_trim()
    tracemalloc.start()
    try:
        a = snapshot()
        block = bytearray(32 * MIB)
        b = snapshot()
    finally:
        tracemalloc.stop()
    delta = b - a
    assert isinstance(delta, MemoryDelta)
    assert delta.python_heap_bytes is not None
    assert delta.python_heap_bytes >= 32 * MIB
    assert delta.heap_used_bytes == delta.python_heap_bytes
    assert delta.rss_bytes >= 30 * MIB
    assert delta.duration_s >= 0
    assert "rss" in delta.summary()
    del block


def test_detail_snapshot_counts_objects_and_uss() -> None:
    """detail=True adds USS/PSS and per-type object counts that see new instances."""
    a = snapshot(detail=True)
    keep = [Leaky() for _ in range(500)]
    b = snapshot(detail=True)
    assert a.uss_bytes is not None
    assert a.uss_bytes > 0
    assert a.pss_bytes is not None
    delta = b - a
    assert delta.object_counts is not None
    assert delta.object_counts[f"{__name__}.Leaky"] == 500
    del keep


def test_round_trip_through_json() -> None:
    """to_dict/from_dict round-trip through JSON for snapshots and deltas."""
    a = snapshot(detail=True, label="a")
    b = snapshot(label="b")
    again = MemorySnapshot.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again == a
    d = b - a
    assert MemoryDelta.from_dict(json.loads(json.dumps(d.to_dict()))) == d


@pytest.mark.parametrize(
    "bad",
    [
        {"nonsense": 1},
        {"rss_bytes": 1},
        "not a dict",
    ],
)
def test_from_dict_rejects_bad_input(bad: object) -> None:
    """Unknown fields, missing fields and non-dicts raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match=r"MemorySnapshot\.from_dict"):
        MemorySnapshot.from_dict(bad)  # type: ignore[arg-type]


def test_bad_gc_counts_rejected() -> None:
    """gc_counts must be three integers."""
    data = snapshot().to_dict()
    data["gc_counts"] = [1, 2]
    with pytest.raises(ConfigurationError, match="gc_counts"):
        MemorySnapshot.from_dict(data)


def test_subtracting_other_types_is_unsupported() -> None:
    """Only snapshots subtract."""
    with pytest.raises(TypeError):
        snapshot() - 5  # type: ignore[operator]


def test_heap_session_peak_and_sites() -> None:
    """HeapSession measures the exact peak of a temporary and names the allocating line."""
    assert not tracemalloc.is_tracing()
    with HeapSession() as heap:
        tmp = bytearray(8 * MIB)
        kept = [bytes(1000) for _ in range(1000)]
        del tmp
    assert not tracemalloc.is_tracing()  # stopped again: it started it
    assert heap.peak_bytes >= 8 * MIB
    assert heap.delta_bytes < 4 * MIB
    sites = heap.top_sites(5)
    assert sites
    assert sites[0].filename == __file__
    assert ":" in sites[0].where
    del kept


def test_heap_session_nests_in_an_outer_trace() -> None:
    """Inside an outer tracemalloc session the inner one resets the peak and leaves tracing on."""
    tracemalloc.start()
    try:
        big = bytearray(16 * MIB)
        del big
        with HeapSession(snapshots=False) as heap:
            small = bytearray(MIB)
            assert heap.current_peak_bytes() >= MIB
            del small
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()
    assert MIB <= heap.peak_bytes < 8 * MIB


def test_top_sites_filters_memwarden_frames() -> None:
    """top_sites leaves memwarden's own files out unless asked."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        data = [bytearray(1000) for _ in range(100)]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    sites = top_sites(after, before)
    assert all("/memwarden/" not in s.filename for s in sites)
    assert any(s.filename == __file__ for s in sites)
    del data


def test_gc_type_counts_and_growth() -> None:
    """Type counts see new instances; growing_types ranks them."""
    before = gc_type_counts()
    keep = [Leaky() for _ in range(300)]
    after = gc_type_counts()
    grown = dict(growing_types(before, after, limit=50))
    assert grown[f"{__name__}.Leaky"] == 300
    del keep


_IMPORT_ORDERS = {
    "package first": (
        "import memwarden\n"
        "assert memwarden.snapshot().rss_bytes > 0\n"
        "from memwarden.snapshot import MemorySnapshot\n"
    ),
    "old path first": (
        "from memwarden.snapshot import MemorySnapshot\n"
        "import memwarden\n"
        "assert memwarden.snapshot().rss_bytes > 0\n"
    ),
    "import statement of the old path": (
        "import memwarden.snapshot\n"
        "assert memwarden.snapshot().rss_bytes > 0\n"
        "from memwarden.snapshot import MemorySnapshot\n"
    ),
    "new module first": (
        "import memwarden.snapshots\n"
        "assert memwarden.snapshot().rss_bytes > 0\n"
        "from memwarden.snapshot import MemorySnapshot\n"
    ),
}


@pytest.mark.parametrize("order", sorted(_IMPORT_ORDERS))
def test_old_module_path_warns_and_function_stays_callable(order: str) -> None:
    """``memwarden.snapshot`` is the function in every import order; the old module path warns.

    The names still load from ``memwarden.snapshot`` for one release, each use raising a
    ``DeprecationWarning`` that names the new module; the package attribute is never
    rebound to a module (no callable-module trick).
    """
    code = (
        "import types, warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        + "".join(f"    {line}\n" for line in _IMPORT_ORDERS[order].splitlines())
        + "import memwarden, memwarden.snapshots\n"
        "assert isinstance(memwarden.snapshot, types.FunctionType), memwarden.snapshot\n"
        "assert MemorySnapshot is memwarden.snapshots.MemorySnapshot\n"
        "messages = [str(w.message) for w in seen if w.category is DeprecationWarning]\n"
        "assert len(messages) == 1, messages\n"
        "assert 'import MemorySnapshot from memwarden.snapshots' in messages[0], messages\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_old_module_path_refuses_unknown_names() -> None:
    """A name the new module lacks is an ImportError from the old path too, not a crash."""
    import memwarden  # noqa: F401 - installs the alias

    with (
        pytest.warns(DeprecationWarning, match="memwarden.snapshots"),
        pytest.raises(ImportError, match="no_such_name"),
    ):
        from memwarden.snapshot import no_such_name  # type: ignore[attr-defined]  # noqa: F401
