"""Read a V8 ``.heapsnapshot`` and answer who holds what: dominators, retained sizes, paths, diffs.

:func:`load` parses any V8-format snapshot (memwarden's own, or one Chrome or Node
wrote) into flat arrays. :meth:`HeapGraph.dominators` builds the dominator tree
from the root with the Cooper-Harvey-Kennedy iteration over a breadth-first
numbering, ignoring weak edges as DevTools does; an object's retained size is its
own size plus that of everything it dominates (what would be freed with it).
:meth:`HeapGraph.paths` finds shortest retainer paths from the root, labelled the
way Python spells them (``mymod.cache['key'][3].field``). :func:`diff` is the
three-snapshot technique: objects present in B (and still in C) that A did not
have, grouped by type. numpy, when installed, speeds up building the arrays; the
algorithms are plain Python either way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memwarden.exceptions import TraceFormatError

__all__ = [
    "HeapGraph",
    "RetainerPath",
    "SnapshotDiff",
    "TypeStat",
    "diff",
    "load",
    "why_alive",
]


@dataclass(frozen=True)
class TypeStat:
    """Objects of one type (or one module) in a snapshot.

    Attributes:
        name: the type's qualified name (or the module's name).
        count: how many objects.
        self_bytes: their own sizes summed.
        retained_bytes: what they retain, counting each object once (objects of the
            type dominated by another of the same type are not counted twice).
    """

    name: str
    count: int
    self_bytes: int
    retained_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "count": self.count,
            "self_bytes": self.self_bytes,
            "retained_bytes": self.retained_bytes,
        }


@dataclass(frozen=True)
class RetainerPath:
    """One shortest path from the root to an object.

    Attributes:
        node_id: the object's snapshot id.
        type_name: its type.
        retained_bytes: what it retains.
        label: the path as Python spells it, e.g. ``app.cache['k'][3].field``.
        hops: the nodes on the path: ``(edge label, type name, node id)`` from the root.
    """

    node_id: int
    type_name: str
    retained_bytes: int
    label: str
    hops: list[tuple[str, str, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.node_id,
            "type": self.type_name,
            "retained_bytes": self.retained_bytes,
            "path": self.label,
            "hops": [{"edge": e, "type": t, "id": i} for e, t, i in self.hops],
        }


_MAPPING_NAMES = frozenset(
    {"dict", "collections.OrderedDict", "collections.defaultdict", "collections.Counter"}
)


class HeapGraph:
    """A heap snapshot as flat arrays, with its dominator tree computed on first use.

    Attributes:
        node_count: nodes in the snapshot.
        names: each node's name (type name for objects, value for strings).
        types: each node's V8 type name.
        ids: each node's snapshot id.
        self_sizes: each node's own size in bytes.
    """

    def __init__(self, data: dict[str, Any], source: str = "<snapshot>") -> None:
        try:
            meta = data["snapshot"]["meta"]
            node_fields: list[str] = meta["node_fields"]
            edge_fields: list[str] = meta["edge_fields"]
            node_types: list[str] = meta["node_types"][0]
            edge_types: list[str] = meta["edge_types"][0]
            nodes: list[int] = data["nodes"]
            edges: list[int] = data["edges"]
            strings: list[str] = data["strings"]
        except (KeyError, IndexError, TypeError) as exc:
            raise TraceFormatError(f"{source}: not a V8 heap snapshot (missing {exc})") from None
        nw, ew = len(node_fields), len(edge_fields)
        try:
            f_type, f_name, f_id = (node_fields.index(k) for k in ("type", "name", "id"))
            f_size, f_count = node_fields.index("self_size"), node_fields.index("edge_count")
            e_type, e_name, e_to = (
                edge_fields.index(k) for k in ("type", "name_or_index", "to_node")
            )
        except ValueError as exc:
            raise TraceFormatError(f"{source}: snapshot meta lacks a field ({exc})") from None
        if len(nodes) % nw or len(edges) % ew:
            raise TraceFormatError(f"{source}: nodes or edges array has a partial record")
        n = len(nodes) // nw
        self.source = source
        self.node_count = n
        self._strings = strings
        self._node_types = node_types
        self._edge_types = edge_types
        self.types = [node_types[t] for t in nodes[f_type::nw]]
        self.names = [strings[s] for s in nodes[f_name::nw]]
        self.ids: list[int] = nodes[f_id::nw]
        self.self_sizes: list[int] = nodes[f_size::nw]
        counts: list[int] = nodes[f_count::nw]
        first = [0] * (n + 1)
        acc = 0
        for i, c in enumerate(counts):
            first[i] = acc
            acc += c
        first[n] = acc
        if acc * ew != len(edges):
            raise TraceFormatError(
                f"{source}: node edge counts sum to {acc}, edges array holds {len(edges) // ew}"
            )
        self.first_edge = first
        self.edge_types: list[int] = edges[e_type::ew]
        self.edge_names: list[int] = edges[e_name::ew]
        to = edges[e_to::ew]
        self.edge_to: list[int] = [t // nw for t in to]
        self._weak = edge_types.index("weak") if "weak" in edge_types else -1
        self._name_kinds = {edge_types.index(k) for k in ("element", "hidden") if k in edge_types}
        self._idom: list[int] | None = None
        self._retained: list[int] | None = None
        self._by_id: dict[int, int] | None = None
        self._parents: tuple[list[int], list[int], list[int]] | None = None

    # -- structure --------------------------------------------------------

    def children(self, v: int) -> Iterable[tuple[int, int, int]]:
        """``(edge type index, name_or_index, target node)`` of node ``v``."""
        et, en, to = self.edge_types, self.edge_names, self.edge_to
        for k in range(self.first_edge[v], self.first_edge[v + 1]):
            yield et[k], en[k], to[k]

    def index_of(self, node_id: int) -> int:
        """The node index of snapshot id ``node_id``.

        Raises:
            KeyError: no such node.
        """
        if self._by_id is None:
            self._by_id = {nid: i for i, nid in enumerate(self.ids)}
        return self._by_id[node_id]

    def _bfs(self) -> tuple[list[int], list[int]]:
        """Strong-edge breadth-first order from the root, and each node's BFS parent."""
        n = self.node_count
        parent = [-1] * n
        order = [0]
        parent[0] = 0
        et, to, first, weak = self.edge_types, self.edge_to, self.first_edge, self._weak
        i = 0
        while i < len(order):
            v = order[i]
            i += 1
            for k in range(first[v], first[v + 1]):
                w = to[k]
                if parent[w] < 0 and et[k] != weak:
                    parent[w] = v
                    order.append(w)
        return order, parent

    def _bfs_order_numpy(self, np: Any, max_levels: int = 2000) -> list[int] | None:
        """The strong-edge BFS order, a level at a time with numpy (None: too many levels).

        Each level's nodes come after the level before, so every node's BFS parent
        precedes it, which is all the dominator iteration needs of the numbering.
        """
        first = np.asarray(self.first_edge, dtype=np.int64)
        to = np.asarray(self.edge_to, dtype=np.int64)
        strong = np.asarray(self.edge_types, dtype=np.int64) != self._weak
        seen = np.zeros(self.node_count, dtype=bool)
        seen[0] = True
        frontier = np.zeros(1, dtype=np.int64)
        levels = [frontier]
        while frontier.size:
            if len(levels) > max_levels:
                return None
            starts, ends = first[frontier], first[frontier + 1]
            lens = ends - starts
            total = int(lens.sum())
            if not total:
                break
            # Edge indices of every frontier node, in node order.
            offsets = np.repeat(starts - np.cumsum(lens) + lens, lens)
            idx = offsets + np.arange(total, dtype=np.int64)
            targets = to[idx[strong[idx]]]
            targets = targets[~seen[targets]]
            if not targets.size:
                break
            _u, first_pos = np.unique(targets, return_index=True)
            frontier = targets[np.sort(first_pos)]
            seen[frontier] = True
            levels.append(frontier)
        order: list[int] = np.concatenate(levels).tolist()
        return order

    def dominators(self) -> list[int]:
        """Each node's immediate dominator (the root's is itself; unreachable: -1)."""
        if self._idom is not None:
            return self._idom
        n = self.node_count
        np = _numpy()
        fast = self._bfs_order_numpy(np) if np is not None else None
        order = fast if fast is not None else self._bfs()[0]
        num = [-1] * n  # BFS number: every tree ancestor has a smaller number
        for i, v in enumerate(order):
            num[v] = i
        preds, pstart = self._predecessors(order, num)
        idom = [-1] * n
        idom[0] = 0
        multi: list[int] = []
        # First pass in BFS order: a node with one predecessor is dominated by it; the
        # others start from their first already-numbered predecessor.
        for v in order[1:]:
            a, b = pstart[v], pstart[v + 1]
            if b - a == 1:
                idom[v] = preds[a]
                continue
            multi.append(v)
            idom[v] = self._meet(v, preds, a, b, idom, num)
        changed = True
        while changed:
            changed = False
            for v in multi:
                new = self._meet(v, preds, pstart[v], pstart[v + 1], idom, num)
                if new != idom[v]:
                    idom[v] = new
                    changed = True
        self._idom = idom
        self._order = order
        return idom

    def _predecessors(self, order: list[int], num: list[int]) -> tuple[list[int], list[int]]:
        """Strong-edge predecessors of every node among reachable nodes, in CSR form."""
        n = self.node_count
        et, to, first, weak = self.edge_types, self.edge_to, self.first_edge, self._weak
        np = _numpy()
        if np is not None:
            counts = np.diff(np.asarray(first, dtype=np.int64))
            src = np.repeat(np.arange(n, dtype=np.int64), counts)
            dst = np.asarray(to, dtype=np.int64)
            reach = np.asarray(num, dtype=np.int64) >= 0
            keep = (np.asarray(et, dtype=np.int64) != weak) & (dst != src) & reach[src]
            src, dst = src[keep], dst[keep]
            by_dst = np.argsort(dst, kind="stable")
            starts = np.searchsorted(dst[by_dst], np.arange(n + 1, dtype=np.int64))
            return src[by_dst].tolist(), starts.tolist()
        pred_count = [0] * n
        src_of: list[int] = []
        dst_of: list[int] = []
        for v in order:
            for k in range(first[v], first[v + 1]):
                if et[k] != weak:
                    w = to[k]
                    if w != v:
                        src_of.append(v)
                        dst_of.append(w)
                        pred_count[w] += 1
        pstart = [0] * (n + 1)
        acc = 0
        for v in range(n):
            pstart[v] = acc
            acc += pred_count[v]
        pstart[n] = acc
        preds = [0] * acc
        fill = pstart[:n]
        for s_, d in zip(src_of, dst_of, strict=True):
            preds[fill[d]] = s_
            fill[d] += 1
        return preds, pstart

    @staticmethod
    def _meet(  # noqa: PLR0917 - the hot loop's arrays, passed rather than looked up
        v: int, preds: list[int], a: int, b: int, idom: list[int], num: list[int]
    ) -> int:
        """Intersect the dominator chains of ``v``'s ready predecessors.

        Its BFS parent is always ready (numbered lower, processed earlier), so the
        result lies on that parent's chain and is numbered lower than ``v``: each
        chain strictly decreases to the root, which the finger walk relies on.
        """
        new = -1
        for k in range(a, b):
            p = preds[k]
            if idom[p] < 0:
                continue
            if new < 0:
                new = p
                continue
            x, y = p, new
            while x != y:
                while num[x] > num[y]:
                    x = idom[x]
                while num[y] > num[x]:
                    y = idom[y]
            new = x
        return new

    def retained_sizes(self) -> list[int]:
        """Each node's retained size: itself plus all it dominates (unreachable: own size)."""
        if self._retained is not None:
            return self._retained
        idom = self.dominators()
        retained = list(self.self_sizes)
        for v in reversed(self._order):
            if v:
                retained[idom[v]] += retained[v]
        self._retained = retained
        return retained

    # -- summaries ----------------------------------------------------------

    def by_type(self, *, limit: int | None = None) -> list[TypeStat]:
        """Retained size by object type, largest first."""
        idom, retained = self.dominators(), self.retained_sizes()
        names, types = self.names, self.types
        groups: dict[str, list[int]] = {}
        for v in range(self.node_count):
            t = types[v]
            if t == "synthetic":  # the root and its grouping nodes are not objects
                continue
            key = names[v] if t in ("object", "native", "closure", "array") else f"({t})"
            groups.setdefault(key, []).append(v)
        key_of = {}
        for key, vs in groups.items():
            for v in vs:
                key_of[v] = key
        stats = []
        for key, vs in groups.items():
            own = sum(self.self_sizes[v] for v in vs)
            # Count a node unless an ancestor in the dominator tree has the same type.
            ret = 0
            for v in vs:
                if idom[v] < 0:
                    ret += self.self_sizes[v]
                    continue
                u = idom[v]
                nested = False
                hops = 0
                while u != 0 and hops < 64:
                    if key_of.get(u) == key:
                        nested = True
                        break
                    u = idom[u]
                    hops += 1
                if not nested:
                    ret += retained[v]
            stats.append(TypeStat(key, len(vs), own, ret))
        stats.sort(key=lambda s: s.retained_bytes, reverse=True)
        return stats[:limit] if limit else stats

    def by_module(self, *, limit: int | None = None) -> list[TypeStat]:
        """Retained size of each module the root refers to, largest first."""
        retained = self.retained_sizes()
        out = []
        prop = self._edge_types.index("property") if "property" in self._edge_types else -1
        for etype, name, w in self.children(0):
            if etype == prop and self.names[w] == "module":
                out.append(TypeStat(self._strings[name], 1, self.self_sizes[w], retained[w]))
        out.sort(key=lambda s: s.retained_bytes, reverse=True)
        return out[:limit] if limit else out

    # -- paths ---------------------------------------------------------------

    def _edge_label(self, src: int, etype: int, name: int) -> str:
        kind = self._edge_types[etype]
        if etype in self._name_kinds:
            return f"[{name}]"
        text = self._strings[name]
        if kind in ("property", "context", "shortcut"):
            if self.names[src] in _MAPPING_NAMES:
                return f"[{text!r}]"
            return f".{text}" if text.isidentifier() else f"[{text!r}]"
        if kind == "weak":
            return "<weak>"
        return text if text.startswith("<") else f"<{text}>"

    def paths(self, targets: Sequence[int], *, max_paths: int = 5) -> list[RetainerPath]:
        """Shortest strong retainer paths from the root to nodes ``targets`` (indices).

        One breadth-first search from the root serves all targets; each path found is
        a shortest one. Targets the root does not reach strongly get no path.
        """
        _order, pnode, pedge = self._bfs_with_edges()
        retained = self.retained_sizes()
        et, en = self.edge_types, self.edge_names
        out = []
        for v in targets[:max_paths] if max_paths else targets:
            if pnode[v] < 0:
                continue
            hops: list[tuple[str, str, int]] = []
            u = v
            while u != 0:
                p, k = pnode[u], pedge[u]
                hops.append((self._edge_label(p, et[k], en[k]), self.names[u], self.ids[u]))
                u = p
            hops.reverse()
            out.append(
                RetainerPath(
                    self.ids[v], self.names[v], retained[v], _join_labels(hops, self), hops
                )
            )
        return out

    def _bfs_with_edges(self) -> tuple[list[int], list[int], list[int]]:
        """Breadth-first from the root: the order, each node's parent and the edge it came by.

        Hidden edges (a frame's caller, its globals) make poor labels: a node is reached
        through one only when the ordinary edges have run out, so each path is a shortest
        one among those that avoid hidden edges where any does. Unreached nodes have
        parent -1; the root's edge is -1.
        """
        if self._parents is not None:
            return self._parents
        n = self.node_count
        pnode = [-1] * n
        pedge = [-1] * n
        pnode[0] = 0
        order = [0]
        et, to, first, weak = self.edge_types, self.edge_to, self.first_edge, self._weak
        hidden = self._edge_types.index("hidden") if "hidden" in self._edge_types else -1
        deferred: list[tuple[int, int, int]] = []
        i = 0
        while True:
            while i < len(order):
                v = order[i]
                i += 1
                for k in range(first[v], first[v + 1]):
                    w = to[k]
                    if pnode[w] < 0:
                        t = et[k]
                        if t == hidden:
                            deferred.append((w, v, k))
                        elif t != weak:
                            pnode[w] = v
                            pedge[w] = k
                            order.append(w)
            if not deferred:
                break
            for w, v, k in deferred:
                if pnode[w] < 0:
                    pnode[w] = v
                    pedge[w] = k
                    order.append(w)
            deferred.clear()
        self._parents = (order, pnode, pedge)
        return self._parents

    def find(self, selector: str) -> list[int]:
        """Nodes matching ``selector``: a node id (``@123`` or ``123``) or a type name.

        Matching by type name picks the objects with that name (or whose name ends
        with ``.selector``), largest retained size first.
        """
        sel = selector.lstrip("@")
        if sel.isdigit():
            try:
                return [self.index_of(int(sel))]
            except KeyError:
                return []
        retained = self.retained_sizes()
        found = [
            v
            for v in range(self.node_count)
            if self.types[v] != "string"
            and (self.names[v] == selector or self.names[v].endswith("." + selector))
        ]
        found.sort(key=retained.__getitem__, reverse=True)
        return found


def _numpy() -> Any:
    """numpy if installed (optional: it only speeds up building arrays), else None."""
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _join_labels(hops: list[tuple[str, str, int]], g: HeapGraph) -> str:
    out = ""
    for k, (lab, tname, _nid) in enumerate(hops):
        if k == 0:
            # From the root: a module (its name), a thread's stack or (GC roots).
            out = lab[1:] if lab.startswith(".") else lab.strip("[]'\"")
            if tname.startswith("(thread"):
                out = tname
            continue
        if lab.startswith((".", "[")):
            out += lab
        else:
            out += f" -> {lab}"
    return out


def load(path: str | os.PathLike[str]) -> HeapGraph:
    """Read the V8 heap snapshot at ``path``.

    Raises:
        TraceFormatError: the file is not valid JSON or not a V8 heap snapshot.
        OSError: it cannot be read.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(f"{p}: not a heap snapshot (invalid JSON: {exc})") from None
    if not isinstance(data, dict):
        raise TraceFormatError(f"{p}: not a heap snapshot (top level is not an object)")
    return HeapGraph(data, str(p))


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class SnapshotDiff:
    """Objects new in a later snapshot, by type.

    Attributes:
        types: per type, the new objects' count, own and retained bytes, largest first.
        paths: a retainer path for the largest new objects of the top types.
        count_growth: per type name, live count in B minus live count in A.
    """

    types: list[TypeStat]
    paths: list[RetainerPath]
    count_growth: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "types": [t.to_dict() for t in self.types],
            "paths": [p.to_dict() for p in self.paths],
            "count_growth": self.count_growth,
        }


def _signatures(g: HeapGraph) -> list[str | None]:
    """Each node's identity across snapshots: its type and shortest strong path.

    Snapshot ids are sequential per dump, so an object is matched across dumps by
    the path that reaches it (``app.cache[3]``) and its type.
    """
    order, pnode, pedge = g._bfs_with_edges()
    sig: list[str | None] = [None] * g.node_count
    sig[0] = ""
    et, en = g.edge_types, g.edge_names
    for v in order:
        if v == 0:
            continue
        p, k = pnode[v], pedge[v]
        ps = sig[p]
        if ps is None:
            continue
        sig[v] = f"{ps}/{g._edge_label(p, et[k], en[k])}:{g.names[v]}"
    return sig


def diff(
    a: HeapGraph, b: HeapGraph, c: HeapGraph | None = None, *, limit: int = 20, paths: int = 5
) -> SnapshotDiff:
    """Objects in ``b`` that ``a`` lacks (and, with ``c``, that survive into ``c``).

    The three-snapshot technique: take A after warm-up, B after the suspect action,
    C after doing it again; what is new in B and still alive in C is what leaks.
    """
    sig_a = _signatures(a)
    seen_a = {s for s in sig_a if s is not None}
    sig_b = _signatures(b)
    seen_c: set[str] | None = None
    if c is not None:
        sig_c = _signatures(c)
        seen_c = {s for s in sig_c if s is not None}
    retained = b.retained_sizes()
    idom = b.dominators()
    new = [
        v
        for v in range(b.node_count)
        if sig_b[v] is not None
        and sig_b[v] not in seen_a
        and (seen_c is None or sig_b[v] in seen_c)
        and b.types[v] not in ("synthetic",)
    ]
    new_set = set(new)
    groups: dict[str, list[int]] = {}
    for v in new:
        t = b.types[v]
        key = b.names[v] if t in ("object", "native", "closure", "array") else f"({t})"
        groups.setdefault(key, []).append(v)
    stats = []
    for key, vs in groups.items():
        # Retained: the new objects not dominated by another new one, so nothing counts twice.
        tops = [v for v in vs if idom[v] not in new_set]
        stats.append(
            TypeStat(key, len(vs), sum(b.self_sizes[v] for v in vs), sum(retained[v] for v in tops))
        )
    stats.sort(key=lambda s: (s.retained_bytes, s.count), reverse=True)
    stats = stats[:limit]
    top_nodes: list[int] = []
    for st in stats[:paths]:
        vs = [v for v in groups[st.name] if idom[v] not in new_set]
        if vs:
            top_nodes.append(max(vs, key=retained.__getitem__))
    counts_a: dict[str, int] = {}
    for nm, t in zip(a.names, a.types, strict=True):
        if t == "object":
            counts_a[nm] = counts_a.get(nm, 0) + 1
    counts_b: dict[str, int] = {}
    for nm, t in zip(b.names, b.types, strict=True):
        if t == "object":
            counts_b[nm] = counts_b.get(nm, 0) + 1
    growth = {
        k: counts_b[k] - counts_a.get(k, 0) for k in counts_b if counts_b[k] > counts_a.get(k, 0)
    }
    growth = dict(sorted(growth.items(), key=lambda kv: kv[1], reverse=True)[:limit])
    return SnapshotDiff(stats, b.paths(top_nodes, max_paths=0), growth)


def why_alive(obj: object, *, max_s: float = 2.0) -> str | None:
    """What keeps ``obj`` alive: the shortest reference path from a root, or None.

    Searches the live objects of this process breadth-first from the modules and
    every thread's frames (the caller's frame excluded), with the labels a heap
    snapshot uses, e.g. ``myapp.cache['user:1'][3].session -> <Session at 0x…>``.
    Bounded by ``max_s`` seconds; None when no path was found in time.
    """
    from memwarden.heapdump import format_path, live_path

    labels = live_path(obj, max_s=max_s, caller_depth=2)
    return format_path(labels) if labels else None
