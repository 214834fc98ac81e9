"""Dominators, retained sizes and retainer paths of memwarden.heapgraph on constructed graphs."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden import heapdump, heapgraph
from memwarden.exceptions import TraceFormatError

EDGE = {name: i for i, name in enumerate(heapdump.EDGE_TYPES)}
NODE = {name: i for i, name in enumerate(heapdump.NODE_TYPES)}


def build(
    sizes: list[int], edges: list[tuple[int, int, str, str | int]], names: list[str] | None = None
) -> heapgraph.HeapGraph:
    """A snapshot of ``len(sizes)`` nodes (node 0 the root) and ``(src, dst, type, name)`` edges."""
    strings = [""]
    index: dict[str, int] = {"": 0}

    def s(text: str) -> int:
        if text not in index:
            index[text] = len(strings)
            strings.append(text)
        return index[text]

    out: dict[int, list[tuple[int, str, str | int]]] = {}
    for src, dst, etype, name in edges:
        out.setdefault(src, []).append((dst, etype, name))
    nodes: list[int] = []
    flat: list[int] = []
    for v, size in enumerate(sizes):
        mine = out.get(v, [])
        name = names[v] if names else ("" if v == 0 else f"T{v}")
        ntype = NODE["synthetic"] if v == 0 else NODE["object"]
        nodes += [ntype, s(name), 2 * v + 1, size, len(mine), 0, 0]
        for dst, etype, ename in mine:
            nm = ename if isinstance(ename, int) else s(ename)
            flat += [EDGE[etype], nm, dst * 7]
    data = {
        "snapshot": {
            "meta": {
                "node_fields": heapdump.NODE_FIELDS,
                "node_types": [heapdump.NODE_TYPES],
                "edge_fields": heapdump.EDGE_FIELDS,
                "edge_types": [heapdump.EDGE_TYPES],
            },
            "node_count": len(sizes),
            "edge_count": len(flat) // 3,
        },
        "nodes": nodes,
        "edges": flat,
        "strings": strings,
    }
    return heapgraph.HeapGraph(json.loads(json.dumps(data)))


def reachable(n: int, adj: dict[int, list[int]], removed: int = -1) -> set[int]:
    seen = {0} if removed != 0 else set()
    queue = deque(seen)
    while queue:
        v = queue.popleft()
        for w in adj.get(v, []):
            if w not in seen and w != removed:
                seen.add(w)
                queue.append(w)
    return seen


def brute_retained(sizes: list[int], edges: list[tuple[int, int]]) -> list[int]:
    """Retained size by definition: what becomes unreachable when the node goes."""
    adj: dict[int, list[int]] = {}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
    base = reachable(len(sizes), adj)
    out = []
    for v in range(len(sizes)):
        if v not in base:
            out.append(sizes[v])
            continue
        gone = base - reachable(len(sizes), adj, removed=v)
        out.append(sum(sizes[u] for u in gone | {v}))
    return out


def test_tree_retained_sizes_are_subtree_sums() -> None:
    """In a tree every node retains exactly its subtree."""
    sizes = [0, 10, 20, 30, 40, 50]
    edges = [(0, 1), (1, 2), (1, 3), (3, 4), (0, 5)]
    g = build(sizes, [(a, b, "property", f"e{b}") for a, b in edges])
    assert g.retained_sizes() == [150, 100, 20, 70, 40, 50]
    assert g.dominators()[4] == 3


def test_shared_subgraph_belongs_to_the_common_dominator() -> None:
    """A node reached from two siblings is retained by their parent, by neither sibling."""
    sizes = [0, 1, 10, 20, 100]
    edges = [(0, 1), (1, 2), (1, 3), (2, 4), (3, 4)]
    g = build(sizes, [(a, b, "property", "x") for a, b in edges])
    assert g.retained_sizes() == [131, 131, 10, 20, 100]
    assert g.dominators()[4] == 1


def test_cycles_are_retained_by_their_entry() -> None:
    """A cycle entered at one node is retained by that node; weak edges retain nothing."""
    sizes = [0, 5, 7, 11, 13]
    edges = [(0, 1, "property", "a"), (1, 2, "property", "b"), (2, 3, "property", "c")]
    edges += [(3, 1, "property", "back"), (3, 2, "element", 0), (0, 4, "weak", "w")]
    edges += [(4, 1, "weak", "w2")]
    g = build(sizes, edges)
    assert g.retained_sizes()[:4] == [23, 23, 18, 11]
    assert g.retained_sizes()[4] == 13  # only weakly reachable: its own size
    assert g.dominators()[4] == -1


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_retained_sizes_match_the_definition_on_random_graphs(data: st.DataObject) -> None:
    """Retained sizes equal brute force (remove the node, sum what became unreachable)."""
    n = data.draw(st.integers(2, 14))
    sizes = [0, *data.draw(st.lists(st.integers(0, 1000), min_size=n - 1, max_size=n - 1))]
    pairs = data.draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, n - 1)), max_size=3 * n)
    )
    g = build(sizes, [(a, b, "property", "p") for a, b in pairs])
    assert g.retained_sizes() == brute_retained(sizes, pairs)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_paths_are_shortest(data: st.DataObject) -> None:
    """Each retainer path has as many hops as the breadth-first distance from the root."""
    n = data.draw(st.integers(2, 14))
    pairs = data.draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, n - 1)), max_size=3 * n)
    )
    g = build([1] * n, [(a, b, "property", f"to{b}") for a, b in pairs])
    adj: dict[int, list[int]] = {}
    for a, b in pairs:
        adj.setdefault(a, []).append(b)
    dist = {0: 0}
    queue = deque([0])
    while queue:
        v = queue.popleft()
        for w in adj.get(v, []):
            if w not in dist:
                dist[w] = dist[v] + 1
                queue.append(w)
    targets = [v for v in range(1, n) if v in dist]
    found = {p.node_id: p for p in g.paths(targets, max_paths=0)}
    for v in targets:
        assert len(found[2 * v + 1].hops) == dist[v]


def test_labels_spell_python_paths() -> None:
    """Module attributes, dict keys, list items and attributes read as Python would write them."""
    names = ["", "module", "dict", "list", "app.Item"]
    edges = [
        (0, 1, "property", "app"),
        (1, 2, "property", "CACHE"),
        (2, 3, "property", "key one"),
        (3, 4, "element", 3),
    ]
    g = build([0, 10, 10, 10, 10], edges, names)
    (path,) = g.paths(g.find("Item"))
    assert path.label == "app.CACHE['key one'][3]"
    assert path.retained_bytes == 10
    assert g.by_module()[0].name == "app"
    assert g.by_module()[0].retained_bytes == 40


def test_diff_finds_objects_new_in_b_that_survive_into_c() -> None:
    """The three-snapshot technique: new in B and still alive in C."""
    names = ["", "module", "list", "Leak", "Leak", "Temp"]
    a = build(
        [0, 1, 1, 5],
        [(0, 1, "property", "m"), (1, 2, "property", "l"), (2, 3, "element", 0)],
        names[:4],
    )
    b_edges = [(0, 1, "property", "m"), (1, 2, "property", "l"), (2, 3, "element", 0)]
    b_edges += [(2, 4, "element", 1), (1, 5, "property", "tmp")]
    b = build([0, 1, 1, 5, 50, 9], b_edges, names)
    c = build([0, 1, 1, 5, 50], b_edges[:4], names[:5])
    d = heapgraph.diff(a, b, c)
    assert [t.name for t in d.types] == ["Leak"]
    assert d.types[0].retained_bytes == 50
    assert d.paths[0].label == "m.l[1]"
    assert heapgraph.diff(a, b).types[0].name == "Leak"
    assert {t.name for t in heapgraph.diff(a, b).types} == {"Leak", "Temp"}


def test_load_rejects_what_is_not_a_snapshot(tmp_path: Path) -> None:
    """A file that is not a V8 heap snapshot is a TraceFormatError naming it."""
    bad = tmp_path / "x.heapsnapshot"
    bad.write_text('{"nodes": []}')
    with pytest.raises(TraceFormatError, match=r"x\.heapsnapshot"):
        heapgraph.load(bad)
    bad.write_text("not json")
    with pytest.raises(TraceFormatError, match="invalid JSON"):
        heapgraph.load(bad)


def test_predecessors_without_numpy_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain-Python predecessor arrays equal numpy's, so dominators do not depend on it."""
    sizes = [0, 1, 2, 3, 4, 5]
    edges = [(0, 1), (1, 2), (2, 3), (3, 1), (0, 4), (4, 3), (4, 5), (5, 5)]
    g = build(sizes, [(a, b, "property", "p") for a, b in edges])
    order, _parent = g._bfs()
    num = [-1] * g.node_count
    for i, v in enumerate(order):
        num[v] = i
    fast = g._predecessors(order, num)
    monkeypatch.setattr(heapgraph, "_numpy", lambda: None)
    slow = g._predecessors(order, num)
    assert fast[1] == slow[1]
    for v in range(g.node_count):
        assert sorted(fast[0][fast[1][v] : fast[1][v + 1]]) == sorted(
            slow[0][slow[1][v] : slow[1][v + 1]]
        )
    g2 = build(sizes, [(a, b, "property", "p") for a, b in edges])
    assert g2.retained_sizes() == brute_retained(sizes, edges)


def test_deep_chains_fall_back_to_the_plain_walk() -> None:
    """A chain deeper than the level-at-a-time walk allows still gets exact retained sizes."""
    n = 2500
    g = build([0] + [1] * (n - 1), [(i, i + 1, "property", "next") for i in range(n - 1)])
    np = heapgraph._numpy()
    if np is not None:
        assert g._bfs_order_numpy(np) is None
    assert g.retained_sizes()[1] == n - 1
    assert g.retained_sizes()[n - 1] == 1
    assert g.dominators()[n - 1] == n - 2
