"""The V8 heap snapshot writer (memwarden.heapdump) and the in-process path search."""

from __future__ import annotations

import gc
import json
import mmap
import os
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memwarden
from memwarden import heap, heapdump, heapgraph


class Planted:
    """An object the tests look for in the snapshot."""

    def __init__(self, n: int) -> None:
        self.payload = bytearray(n)
        self.label = f"planted-{n}"


class Outsider:
    """An instance whose attribute is set from outside its methods."""


HOLDER: dict[str, Any] = {}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    HOLDER["items"] = [Planted(5000), Planted(7000)]
    HOLDER["weak"] = weakref.ref(HOLDER["items"][0])
    o = Outsider()
    o.extra = ["outside"]  # type: ignore[attr-defined]
    HOLDER["outsider"] = o
    path = tmp_path_factory.mktemp("dump") / "x.heapsnapshot"
    stats = heap.dump(path)
    assert stats.path == path
    data: dict[str, Any] = json.loads(path.read_text())
    data["_stats"] = stats
    data["_path"] = path
    yield data
    HOLDER.clear()


def test_format_is_v8s(snapshot: dict[str, Any]) -> None:
    """Meta fields and type names as V8 writes them; strings last; counts consistent."""
    meta = snapshot["snapshot"]["meta"]
    assert meta["node_fields"] == [
        "type",
        "name",
        "id",
        "self_size",
        "edge_count",
        "trace_node_id",
        "detachedness",
    ]
    assert meta["edge_fields"] == ["type", "name_or_index", "to_node"]
    assert meta["node_types"][0][:4] == ["hidden", "array", "string", "object"]
    assert meta["edge_types"][0] == [
        "context",
        "element",
        "property",
        "internal",
        "hidden",
        "shortcut",
        "weak",
    ]
    assert list(snapshot)[-3] == "strings"  # then the two test-only keys
    nodes, edges = snapshot["nodes"], snapshot["edges"]
    n = len(nodes) // 7
    assert snapshot["snapshot"]["node_count"] == n == snapshot["_stats"].node_count
    assert sum(nodes[4::7]) * 3 == len(edges)
    assert all(isinstance(x, int) and 0 <= x < 2**32 for x in nodes + edges)
    assert all(t % 7 == 0 and t < len(nodes) for t in edges[2::3])
    assert nodes[2::7] == [2 * i + 1 for i in range(n)]  # sequential odd ids
    assert max(nodes[1::7]) < len(snapshot["strings"])


def test_root_reaches_gc_roots_modules_and_threads(snapshot: dict[str, Any]) -> None:
    """Node 0 is synthetic with edges to (GC roots), every module and each thread's stack."""
    g = heapgraph.HeapGraph(snapshot)
    assert g.types[0] == "synthetic"
    targets = {g.names[w] for _t, _n, w in g.children(0)}
    assert "(GC roots)" in targets
    assert "module" in targets
    assert any(t.startswith("(thread MainThread") for t in targets)
    mod_names = {snapshot["strings"][nm] for t, nm, w in g.children(0) if g.names[w] == "module"}
    assert {"sys", __name__, "memwarden.heapdump"} <= mod_names


def test_planted_objects_have_paths_sizes_and_buffers(snapshot: dict[str, Any]) -> None:
    """Objects are named by type; attributes and keys are property edges; buffers are native."""
    g = heapgraph.HeapGraph(snapshot)
    found = g.find(f"{__name__}.Planted")
    assert len(found) == 2
    paths = {p.label for p in g.paths(found)}
    assert paths == {f"{__name__}.HOLDER['items'][0]", f"{__name__}.HOLDER['items'][1]"}
    retained = g.retained_sizes()
    big = found[0]
    assert g.names[big] == f"{__name__}.Planted"
    # It retains its bytearray (a node plus its native buffer) and its label string.
    assert retained[big] >= 7000
    assert retained[big] - 7000 < 400
    natives = [v for v in range(g.node_count) if g.types[v] == "native"]
    assert {g.self_sizes[v] for v in natives} >= {5000, 7000} or any(
        g.self_sizes[v] >= 7000 for v in natives
    )
    labels = [
        v for v in range(g.node_count) if g.types[v] == "string" and g.names[v] == "planted-7000"
    ]
    assert labels


def test_weak_references_are_weak_edges(snapshot: dict[str, Any]) -> None:
    """A weakref's referent is reached by a ``weak`` edge, which retains nothing."""
    g = heapgraph.HeapGraph(snapshot)
    weak = g._edge_types.index("weak")
    refs = [v for v in range(g.node_count) if g.names[v] == "weakref.ReferenceType"]
    assert any(any(t == weak for t, _n, _w in g.children(v)) for v in refs)


def test_attributes_set_from_outside_are_named(snapshot: dict[str, Any]) -> None:
    """An attribute no method assigns is still labelled by its name."""
    g = heapgraph.HeapGraph(snapshot)
    (v,) = g.find(f"{__name__}.Outsider")
    names = {snapshot["strings"][nm] for _t, nm, _w in g.children(v)}
    assert "extra" in names
    (path,) = g.paths([v])
    assert path.label == f"{__name__}.HOLDER['outsider']"


def test_instance_dicts_are_not_created() -> None:
    """Dumping does not give 3.11 instances (attributes kept inline) a __dict__ object."""
    planted = Planted(10)
    before = [r for r in gc.get_referents(planted) if type(r) is dict]
    heapdump._edges_of(planted)
    after = [r for r in gc.get_referents(planted) if type(r) is dict]
    assert before == after == []


def test_mmap_and_numpy_buffers_are_native_nodes(tmp_path: Path) -> None:
    """An mmap's mapping and a numpy array's own data count as native buffers."""
    m = mmap.mmap(-1, 1 << 16)
    HOLDER["map"] = m
    try:
        import numpy as np

        HOLDER["array"] = np.zeros(30_000, dtype=np.uint8)
    except ImportError:  # pragma: no cover - numpy is optional
        pass
    path = tmp_path / "n.heapsnapshot"
    heapdump.dump(path)
    g = heapgraph.load(path)
    sizes = {g.self_sizes[v] for v in range(g.node_count) if g.types[v] == "native"}
    assert 1 << 16 in sizes
    if "array" in HOLDER:
        assert 30_000 in sizes
    m.close()
    HOLDER.clear()


def test_files_are_created_exclusively(tmp_path: Path) -> None:
    """An existing file or a planted symlink is never written through."""
    existing = tmp_path / "a.heapsnapshot"
    existing.write_text("keep")
    with pytest.raises(FileExistsError):
        heapdump.dump(existing)
    assert existing.read_text() == "keep"
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "b.heapsnapshot"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        heapdump.dump(link)
    assert victim.read_text() == "keep"
    with pytest.raises(FileNotFoundError):
        heapdump.dump(tmp_path / "missing" / "c.heapsnapshot")


def test_other_threads_keep_running_and_their_stacks_are_roots(tmp_path: Path) -> None:
    """A thread's local is reached through its stack; the thread runs during the dump."""
    stop = threading.Event()
    ticks = []

    def worker() -> None:
        local_only = [Planted(321)]  # noqa: F841 - held by this frame only
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    t = threading.Thread(target=worker, name="holder-thread")
    t.start()
    try:
        path = tmp_path / "t.heapsnapshot"
        heapdump.dump(path, slice_size=64)
    finally:
        stop.set()
        t.join()
    g = heapgraph.load(path)
    found = [v for v in g.find("Planted") if g.retained_sizes()[v] >= 321]
    labels = [p.label for p in g.paths(found, max_paths=0)]
    assert any(
        lab.startswith("(thread holder-thread)") and ".local_only[0]" in lab for lab in labels
    )
    assert ticks


def test_live_path_and_why_alive_label_the_chain() -> None:
    """why_alive names the module attribute, key and index that hold an object."""
    target = Planted(1)
    HOLDER["deep"] = {"k": [0, 1, 2, target]}
    try:
        labels = heapdump.live_path(target, max_s=60)
        assert labels[:4] == [__name__, ".HOLDER", "['deep']", "['k']"]
        assert labels[4] == "[3]"
        text = memwarden.why_alive(target, max_s=60)
        assert text is not None
        assert text.startswith(f"{__name__}.HOLDER['deep']['k'][3] -> <Planted at 0x")
    finally:
        HOLDER.clear()
    assert memwarden.why_alive(object()) is None


def test_unique_refcount_calibration_matches_the_walk() -> None:
    """The calibrated count of a once-referred child is what the walk's loop sees."""
    assert sys.getrefcount(object()) + 2 == heapdump._UNIQUE_REFCOUNT


def test_estimate_grows_with_the_heap() -> None:
    """The disk-room estimate is positive and grows with live objects."""
    before = heapdump.estimate_dump_bytes()
    keep = [[i] for i in range(20_000)]
    assert heapdump.estimate_dump_bytes() > before
    del keep
    assert os.cpu_count()


class _Tripwire:
    """Records any attribute lookup that reaches user code."""

    calls: list[str] = []  # noqa: RUF012 - shared on purpose

    def __getattr__(self, name: str) -> object:
        _Tripwire.calls.append(name)
        raise AttributeError(name)


class _HasTripwire:
    helper = _Tripwire()

    def __init__(self) -> None:
        self.value = [1, 2]


def test_no_user_code_runs_while_dumping(tmp_path: Path) -> None:
    """Class attributes with __getattr__ and module __getattr__ are never called by a dump."""
    import types as _types

    lazy = _types.ModuleType("memwarden_test_lazy_module")
    lazy.__getattr__ = lambda name: _Tripwire.calls.append(f"module:{name}")  # type: ignore[attr-defined,method-assign]
    sys.modules[lazy.__name__] = lazy
    HOLDER["obj"] = _HasTripwire()
    try:
        _Tripwire.calls.clear()
        heapdump.dump(tmp_path / "u.heapsnapshot")
        assert _Tripwire.calls == []
    finally:
        del sys.modules[lazy.__name__]
        HOLDER.clear()
