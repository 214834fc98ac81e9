"""Walk the live Python object graph and stream it to disk as a V8 ``.heapsnapshot``.

The file is the JSON format Chrome DevTools' Memory tab and memlab read: a
``snapshot`` header (``meta`` with the node and edge fields and type names), the
flat ``nodes`` and ``edges`` integer arrays and the ``strings`` table last. Node 0
is a synthetic root with edges to a synthetic ``(GC roots)`` node, to every module
in ``sys.modules`` and to each thread's stack; every Python object reachable from
those is an ``object`` node named by its type's qualified name (strings and numbers
are ``string``/``number`` nodes named by their value), attributes and dict keys are
``property`` edges, list and tuple items ``element`` edges, weak references ``weak``
edges. Buffers an object owns (``bytearray``, numpy arrays owning their data,
``mmap``) are separate ``native`` nodes so they show in retained sizes.

The walk is breadth-first, so nodes are numbered in the order edges are written
and both arrays stream to temporary files beside the output: memory beyond the
graph itself is one map entry per object referred to more than once (objects with
a single referrer, most of a typical heap, are met exactly once and need none), the
frontier of the walk and the string table. The GIL is released every few thousand
objects so other threads keep running; nothing in the graph is imported, pickled
or called, except ``__sizeof__`` of builtin types.

:func:`live_path` is the in-process counterpart: the shortest chain of labelled
references from a root to one live object, with the same edge labels.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from memwarden._files import create_new

__all__ = [
    "EDGE_FIELDS",
    "EDGE_TYPES",
    "NODE_FIELDS",
    "NODE_TYPES",
    "DumpStats",
    "dump",
    "estimate_dump_bytes",
    "format_path",
    "live_path",
]

log = logging.getLogger("memwarden.heapdump")

NODE_FIELDS = ["type", "name", "id", "self_size", "edge_count", "trace_node_id", "detachedness"]
EDGE_FIELDS = ["type", "name_or_index", "to_node"]
#: V8's node type names, in V8's order (the ``type`` field indexes this list).
NODE_TYPES = [
    "hidden",
    "array",
    "string",
    "object",
    "code",
    "closure",
    "regexp",
    "number",
    "native",
    "synthetic",
    "concatenated string",
    "sliced string",
    "symbol",
    "bigint",
    "object shape",
]
#: V8's edge type names, in V8's order.
EDGE_TYPES = ["context", "element", "property", "internal", "hidden", "shortcut", "weak"]

_N_HIDDEN, _N_ARRAY, _N_STRING, _N_OBJECT, _N_CODE, _N_CLOSURE = 0, 1, 2, 3, 4, 5
_N_NUMBER, _N_NATIVE, _N_SYNTHETIC = 7, 8, 9
_E_CONTEXT, _E_ELEMENT, _E_PROPERTY, _E_INTERNAL, _E_HIDDEN, _E_SHORTCUT, _E_WEAK = range(7)
_NODE_WIDTH = len(NODE_FIELDS)
_MAX_NAME = 1024  # longer string values are cut in node names (the size stays exact)
_SLICE = 8192  # objects walked per GIL slice
_DEDUP_MAX = 50_000  # distinct names kept in the string table's map
_U32 = (1 << 32) - 1
_MANAGED_DICT = 1 << 4  # Py_TPFLAGS_MANAGED_DICT (3.11+): the instance dict may not exist yet

# Singletons and cached small ints are interpreter statics, not heap objects (V8 has
# no nodes for its small integers either); leaving them out keeps every int 0 off
# hundreds of thousands of retainer lists.
_STATIC_IDS = frozenset(id(o) for o in (None, True, False, Ellipsis, NotImplemented, (), ""))
_SMALL_INT = range(-5, 257)
_NUMBER_TYPES = (int, float, complex)
_STRING_TYPES = (str, bytes)
_SKIP_TYPES = (type,)  # types are reached through their modules, not their instances


@dataclass(frozen=True)
class DumpStats:
    """What a dump wrote.

    Attributes:
        path: the snapshot file.
        node_count: nodes written (objects plus synthetic and native nodes).
        edge_count: edges written.
        size_bytes: bytes of the file.
        duration_s: wall time of the walk and the write.
    """

    path: Path
    node_count: int
    edge_count: int
    size_bytes: int
    duration_s: float


# --------------------------------------------------------------------------- edges of one object

Edge = tuple[int, Any, object]  # (edge type, name str or index int, child)


def _is_frame_of_ours(obj: object) -> bool:
    # type(), not isinstance(): isinstance may read a user-defined __class__.
    return type(obj) is types.FrameType and obj.f_code.co_filename == __file__


_TYPE_NAME = type.__dict__["__name__"]
_TYPE_MODULE = type.__dict__["__module__"]


def _named_in_module(cls: Any) -> bool:
    """Whether class ``cls`` is a global of its module (read without running any user code)."""
    try:
        name, module = _TYPE_NAME.__get__(cls, type), _TYPE_MODULE.__get__(cls, type)
        mod = sys.modules.get(module) if isinstance(module, str) else None
        return mod is not None and vars(mod).get(name) is cls
    except Exception:
        return False


_attr_names_cache: dict[type, tuple[str, ...]] = {}


def _code_names(code: types.CodeType, out: set[str]) -> None:
    out.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_names(const, out)


def _attr_names(t: type) -> tuple[str, ...]:
    """Names the instances of ``t`` may hold in their ``__dict__``, learnt from its methods.

    Reading ``obj.__dict__`` would create the dict of a 3.11+ instance that has none
    yet (it keeps its values inline), changing the heap being measured; instead each
    name its methods store (``self.x = ...``) is looked up without descriptors.
    """
    cached = _attr_names_cache.get(t)
    if cached is not None:
        return cached
    names: set[str] = set()
    class_attrs: set[str] = set()
    for klass in t.__mro__:
        if klass is object:
            continue
        for name, value in list(vars(klass).items()):
            class_attrs.add(name)
            # Only functions' code is read: getattr on another class attribute could run
            # its __getattr__ (user code).
            vt = type(value)
            funcs: tuple[Any, ...] = ()
            if vt is types.FunctionType:
                funcs = (value,)
            elif vt is staticmethod or vt is classmethod:
                funcs = (value.__func__,)
            elif vt is property:
                funcs = (value.fget, value.fset, value.fdel)
            for func in funcs:
                if type(func) is types.FunctionType:
                    _code_names(func.__code__, names)
    # A name the type itself defines is found through the type first (maybe a property
    # whose getter is user code): never looked up on the instance.
    result = tuple(sorted(n for n in names if n not in class_attrs and not n.startswith("__")))
    if len(_attr_names_cache) > 10_000:
        _attr_names_cache.clear()
    _attr_names_cache[t] = result
    return result


def _namespace_items(d: dict[Any, Any]) -> list[tuple[Any, Any]]:
    try:
        return list(dict.items(d))
    except RuntimeError:  # changed size while another thread ran: take what gc sees
        return [(None, v) for v in gc.get_referents(d)]


def _instance_edges(obj: object, refs: list[object]) -> tuple[list[Edge], dict[Any, Any] | None]:
    """Edges of an instance and its ``__dict__`` (folded into the instance), if any."""
    edges: list[Edge] = []
    pending = {id(r): r for r in refs}
    getattribute = object.__getattribute__
    for name in _attr_names(type(obj)):
        try:
            value = getattribute(obj, name)
        except Exception:  # noqa: S112 - absent on this instance
            continue
        if id(value) in pending:
            edges.append((_E_PROPERTY, name, value))
            del pending[id(value)]
    ns: dict[Any, Any] | None = None
    for r in list(pending.values()):
        if type(r) is dict and ns is None:
            items = _namespace_items(r)
            # The instance's own (already created) dict, when its items are its attributes.
            if not items or all(
                isinstance(k, str) and _getattr_is(obj, k, v) for k, v in items[:8]
            ):
                ns = r
                del pending[id(r)]
                for k, v in items:
                    edges.append((_E_PROPERTY, k if isinstance(k, str) else repr(k), v))
    rest = [r for r in pending.values() if r is not type(obj)]
    if rest and ns is None:
        # Attributes no method of the class names (set from outside): read the
        # instance's dict once, creating it if it was kept inline, and remember the
        # names so later instances of the type are read without it.
        d = _instance_dict(obj)
        if d is not None:
            left = {id(r): r for r in rest}
            for k, v in _namespace_items(d):
                if id(v) in left and isinstance(k, str):
                    edges.append((_E_PROPERTY, k, v))
                    del left[id(v)]
                    _learn_name(type(obj), k)
            rest = [r for r in left.values() if r is not d]
    edges.extend((_E_INTERNAL, "<attr>", r) for r in rest)
    return edges, ns


def _instance_dict(obj: object) -> dict[Any, Any] | None:
    for klass in type(obj).__mro__:
        desc = vars(klass).get("__dict__")
        if desc is not None:
            if isinstance(desc, types.GetSetDescriptorType):  # C code, never user code
                try:
                    d = desc.__get__(obj, type(obj))
                except Exception:
                    return None
                return d if type(d) is dict else None
            return None
    return None


def _learn_name(t: type, name: str) -> None:
    names = _attr_names_cache.get(t, ())
    if name not in names and not name.startswith("__") and len(names) < 256:
        _attr_names_cache[t] = (*names, name)


def _getattr_is(obj: object, name: str, value: object) -> bool:
    try:
        return object.__getattribute__(obj, name) is value
    except Exception:
        return False


_KNOWN_ATTRS: dict[type, tuple[str, ...]] = {
    types.FunctionType: (
        "__globals__",
        "__code__",
        "__defaults__",
        "__kwdefaults__",
        "__closure__",
        "__annotations__",
        "__module__",
        "__name__",
        "__qualname__",
        "__doc__",
    ),
    types.MethodType: ("__self__", "__func__"),
    types.CellType: ("cell_contents",),
    types.BuiltinMethodType: ("__self__",),
    property: ("fget", "fset", "fdel", "__doc__"),
    staticmethod: ("__func__",),
    classmethod: ("__func__",),
    types.GeneratorType: ("gi_frame", "gi_code"),
    types.CoroutineType: ("cr_frame", "cr_code"),
}


def _generic_edges(obj: object, refs: list[object], names: Iterable[str]) -> list[Edge]:
    edges: list[Edge] = []
    pending = {id(r): r for r in refs}
    for name in names:
        try:
            value = getattr(obj, name)
        except Exception:  # noqa: S112
            continue
        if id(value) in pending:
            edges.append((_E_PROPERTY, name, value))
            del pending[id(value)]
    edges.extend((_E_INTERNAL, f"<{type(r).__name__}>", r) for r in pending.values())
    return edges


def _frame_edges(frame: types.FrameType) -> list[Edge]:
    """A frame's locals (``context`` edges, by name), its caller and globals (``hidden``).

    A running frame is not tracked by the collector and reports no referents, so
    its references are read through its attributes instead.
    """
    edges: list[Edge] = []
    try:
        f_locals = frame.f_locals
        # A module's top-level frame has its globals as locals: reached as the module.
        local_items = [] if f_locals is frame.f_globals else list(f_locals.items())
    except Exception:
        local_items = []
    for k, v in local_items:
        edges.append((_E_CONTEXT, str(k), v))
    for name in ("f_back", "f_globals"):
        v = getattr(frame, name, None)
        if v is not None:
            # The caller's frame and the module's globals keep things alive through
            # other paths; ``hidden`` keeps them out of this frame's labels.
            edges.append((_E_HIDDEN, 0 if name == "f_back" else 1, v))
    return edges


_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python
_plain_types: dict[type, bool] = {}


def _is_plain(t: type) -> bool:
    """Whether ``t`` is an ordinary Python class: attributes in a managed dict, no builtin base."""
    plain = _plain_types.get(t)
    if plain is None:
        plain = bool(t.__flags__ & _MANAGED_DICT) and all(
            k is object or (k.__flags__ & _HEAPTYPE and "__slots__" not in vars(k))
            for k in t.__mro__
        )
        if len(_plain_types) > 10_000:
            _plain_types.clear()
        _plain_types[t] = plain
    return plain


def _plain_instance_edges(obj: Any, t: type) -> tuple[list[Edge], dict[Any, Any] | None]:
    # The common case, fast: every referent but the class is an attribute its methods name.
    refs = gc.get_referents(obj)
    getattribute = object.__getattribute__
    edges: list[Edge] = []
    for name in _attr_names(t):
        try:
            edges.append((_E_PROPERTY, name, getattribute(obj, name)))
        except AttributeError:
            continue
    if len(edges) == len(refs) - 1 and {id(e[2]) for e in edges} == {
        id(r) for r in refs if r is not t
    }:
        return edges, None
    return _instance_edges(obj, refs)


def _edges_of(obj: Any) -> tuple[Iterable[Edge], dict[Any, Any] | None]:
    """The labelled references of ``obj`` and the namespace dict folded into it, if any."""
    t = type(obj)
    if _is_plain(t):
        return _plain_instance_edges(obj, t)
    if t is dict or (issubclass(t, dict) and t.__flags__ & _MANAGED_DICT == 0):
        out: list[Edge] = []
        for k, v in _namespace_items(obj):
            if isinstance(k, str):
                out.append((_E_PROPERTY, k, v))
            elif type(k) is int and 0 <= k <= _U32:
                out.append((_E_ELEMENT, k, v))
            else:
                out.append((_E_PROPERTY, _short_repr(k), v))
                if gc.is_tracked(k):
                    out.append((_E_INTERNAL, "<key>", k))
        return out, None
    if t is list or t is tuple or t is deque or t is set or t is frozenset:
        if _LAZY_SEQUENCES:
            # Lazily: a list of a million items would otherwise need a million edge
            # tuples at once (zip keeps one result tuple, as the list keeps one per item).
            return zip(_REPEAT_ELEMENT, itertools.count(), t.__iter__(obj)), None
        return [(_E_ELEMENT, i, v) for i, v in enumerate(t.__iter__(obj))], None
    if t is types.ModuleType or issubclass(t, types.ModuleType):
        ns = getattr(obj, "__dict__", None)
        if isinstance(ns, dict):
            return [(_E_PROPERTY, str(k), v) for k, v in _namespace_items(ns)], ns
        return [], None
    if t is types.FrameType:
        return _frame_edges(obj), None
    refs = gc.get_referents(obj)
    if issubclass(t, weakref.ref):
        target = obj()
        edges: list[Edge] = [(_E_INTERNAL, f"<{type(r).__name__}>", r) for r in refs]
        if target is not None:
            edges.append((_E_WEAK, "__referent__", target))
        return edges, None
    if issubclass(t, type):
        ns_dict = None
        for r in refs:
            if type(r) is dict:
                ns_dict = r
                break
        out = []
        if ns_dict is not None:
            out = [(_E_PROPERTY, str(k), v) for k, v in _namespace_items(ns_dict)]
            refs = [r for r in refs if r is not ns_dict]
        out.extend(_generic_edges(obj, refs, ("__mro__", "__bases__", "__base__")))
        return out, ns_dict
    known = _KNOWN_ATTRS.get(t)
    if known is not None:
        return _generic_edges(obj, refs, known), None
    if issubclass(t, (list, tuple)):  # subclasses: items plus their attributes
        items: list[Edge] = [
            (_E_ELEMENT, i, v)
            for i, v in enumerate(
                list.__iter__(obj) if issubclass(t, list) else tuple.__iter__(obj)
            )
        ]
        seen = {id(e[2]) for e in items}
        rest, ns = _instance_edges(obj, [r for r in refs if id(r) not in seen])
        return items + rest, ns
    if hasattr(t, "__dict__") and (t.__flags__ & _MANAGED_DICT or t.__dictoffset__):
        return _instance_edges(obj, refs)
    return [(_E_INTERNAL, f"<{type(r).__name__}>", r) for r in refs if type(r) is not t], None


def _short_repr(k: object) -> str:
    t = type(k)
    if t in (int, float, bytes, bool, complex) or (t is tuple and len(k) < 8):  # type: ignore[arg-type]
        try:
            return repr(k)[:200]
        except Exception:
            return f"<{t.__name__}>"
    return f"<{t.__name__}>"


def _type_name(t: type) -> str:
    mod = getattr(t, "__module__", "builtins")
    qual = getattr(t, "__qualname__", t.__name__)
    return qual if mod == "builtins" else f"{mod}.{qual}"


_sizeof_safe: dict[type, bool] = {}


def _self_size(obj: object) -> int:
    t = type(obj)
    safe = _sizeof_safe.get(t)
    if safe is None:
        # A __sizeof__ written in Python is user code: measure those by the base size.
        safe = not isinstance(getattr(t, "__sizeof__", None), types.FunctionType)
        if len(_sizeof_safe) > 10_000:
            _sizeof_safe.clear()
        _sizeof_safe[t] = safe
    try:
        if safe:
            return int(sys.getsizeof(obj))
        return int(object.__sizeof__(obj))
    except Exception:
        return int(object.__sizeof__(obj))


def _owned_buffer(obj: object) -> int:
    """Bytes of a buffer ``obj`` owns outside its object header (0 when none)."""
    t = type(obj)
    if t is bytearray:
        return int(bytearray.__alloc__(obj))  # type: ignore[arg-type]
    mod = t.__module__
    if mod == "mmap" and t.__name__ == "mmap":
        try:
            return len(obj)  # type: ignore[arg-type]
        except (ValueError, TypeError):  # closed
            return 0
    if mod == "numpy" and t.__name__ == "ndarray":
        flags = getattr(obj, "flags", None)
        if flags is not None and flags.owndata:
            return int(obj.nbytes)  # type: ignore[attr-defined]
    return 0


# --------------------------------------------------------------------------- the walk


class _Strings:
    """The snapshot's string table: each distinct string once, by index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.items: list[str] = []

    def __call__(self, s: str) -> int:
        """The index of ``s`` (a type or edge name), deduplicated up to a bound."""
        i = self.index.get(s)
        if i is None:
            i = len(self.items)
            self.items.append(s)
            # A bounded map: past it, new names are appended again (the format allows
            # repeats), so a dict with a million distinct keys costs 8 bytes a key.
            if len(self.index) < _DEDUP_MAX:
                self.index[s] = i
        return i

    def value(self, s: str) -> int:
        """The index of a string node's value: appended unless already known."""
        i = self.index.get(s)
        if i is None:
            i = len(self.items)
            self.items.append(s)
        return i


def _calibrate() -> int:
    """The reference count a child referred to once shows inside :func:`_walk`'s loop."""
    probe = [object()]
    edges = [(_E_ELEMENT, 0, probe[0])]
    for _t, _n, child in edges:
        return sys.getrefcount(child)
    raise AssertionError("unreachable")  # pragma: no cover


_UNIQUE_REFCOUNT = _calibrate()
_REPEAT_ELEMENT = itertools.repeat(_E_ELEMENT)


def _calibrate_lazy() -> bool:
    """Whether a child met through :func:`zip` shows the count :data:`_UNIQUE_REFCOUNT` does."""
    probe = [object()]
    for _t, _n, child in zip(_REPEAT_ELEMENT, itertools.count(), list.__iter__(probe)):
        return sys.getrefcount(child) == _UNIQUE_REFCOUNT
    return False  # pragma: no cover


_LAZY_SEQUENCES = _calibrate_lazy()


def _roots() -> list[tuple[int, str, object]]:
    """The root's children: ``(edge type, name, object)`` for modules and thread stacks."""
    out: list[tuple[int, str, object]] = []
    for name, mod in list(sys.modules.items()):
        if mod is not None:
            out.append((_E_PROPERTY, name, mod))
    return out


def _thread_stacks() -> list[tuple[str, list[types.FrameType]]]:
    names = {t.ident: t.name for t in threading.enumerate()}
    stacks: list[tuple[str, list[types.FrameType]]] = []
    for tid, frame in sys._current_frames().items():
        frames: list[types.FrameType] = []
        f: types.FrameType | None = frame
        while f is not None:
            if f.f_code.co_filename != __file__:
                frames.append(f)
            f = f.f_back
        stacks.append((names.get(tid, f"thread {tid}"), frames))
    return stacks


def _format_ints(buf: list[int], chunk_format: str) -> str:
    """``1,2,3`` for ints (one %-format is about 3x faster than str.join of str())."""
    fmt = chunk_format if len(buf) * 3 == len(chunk_format) + 1 else ",".join(["%d"] * len(buf))
    return fmt % tuple(buf)


class _Writer:
    """Streams node and edge records to two temporary files in the output's directory.

    Records collect in flat int lists and are written a chunk at a time, so the
    extra memory is a chunk, not the arrays.
    """

    _CHUNK = 1 << 14

    def __init__(self, directory: Path) -> None:
        # Anonymous files beside the output (same disk); closed by close().
        self.nodes: IO[str] = tempfile.TemporaryFile("w+", dir=directory, buffering=1 << 18)  # noqa: SIM115
        self.edges: IO[str] = tempfile.TemporaryFile("w+", dir=directory, buffering=1 << 18)  # noqa: SIM115
        self.node_buf: list[int] = []
        self.edge_buf: list[int] = []
        self.node_count = 0
        self.edge_count = 0
        self._nodes_started = False
        self._edges_started = False
        self._fmt = ",".join(["%d"] * self._CHUNK)

    def node(self, ntype: int, name: int, size: int, edge_count: int) -> None:
        """Add a node whose ``edge_count`` edges were just added to :attr:`edge_buf`."""
        idx = self.node_count
        # Odd ids, as V8 gives heap objects; sequential, never addresses.
        self.node_buf += (
            ntype,
            name,
            2 * idx + 1,
            size if size <= _U32 else _U32,
            edge_count,
            0,
            0,
        )
        self.node_count = idx + 1
        self.edge_count += edge_count
        if len(self.node_buf) >= self._CHUNK:
            self.flush_nodes()
        if len(self.edge_buf) >= self._CHUNK:
            self.flush_edges()

    def flush_nodes(self, final: bool = False) -> None:
        self._nodes_started = self._flush(self.nodes, self.node_buf, self._nodes_started, final)

    def flush_edges(self, final: bool = False) -> None:
        self._edges_started = self._flush(self.edges, self.edge_buf, self._edges_started, final)

    def _flush(self, out: IO[str], buf: list[int], started: bool, final: bool) -> bool:
        # Whole chunks share one format string; only the last, partial one needs its own.
        size = self._CHUNK
        while len(buf) >= size or (final and buf):
            part = buf[:size]
            out.write(("," if started else "") + _format_ints(part, self._fmt) + "\n")
            started = True
            del buf[:size]
        return started

    def close(self) -> None:
        self.nodes.close()
        self.edges.close()


class _Native:
    """A buffer an object owns, queued as its own node."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


def _walk(writer: _Writer, strings: _Strings, slice_size: int) -> None:
    """Breadth-first over the graph from the synthetic root, writing each node in order."""
    # id -> node index for objects referred to more than once; -1 marks objects left
    # out (singletons, small ints, classes reached through their modules).
    memo: dict[int, int] = dict.fromkeys(_STATIC_IDS, -1)
    memo.update((id(i), -1) for i in _SMALL_INT)
    queue: deque[object] = deque()
    next_index = 0
    refcount = sys.getrefcount
    getweakrefcount = weakref.getweakrefcount
    unique = _UNIQUE_REFCOUNT
    is_tracked = gc.is_tracked
    getsizeof = sys.getsizeof
    ebuf = writer.edge_buf
    node = writer.node
    type_names: dict[type, int] = {}
    plain = {str, int, float, bytes, list, tuple, dict, set, frozenset, bool, complex}
    name_kinds = (_E_ELEMENT, _E_HIDDEN)
    module_type, frame_type = types.ModuleType, types.FrameType

    def new_index() -> int:
        nonlocal next_index
        i = next_index
        next_index += 1
        return i

    # 0: root, 1: (GC roots), then one synthetic node per thread stack.
    _root, gc_roots = new_index(), new_index()
    stacks = _thread_stacks()
    stack_nodes = [new_index() for _ in stacks]
    ebuf += (_E_ELEMENT, 1, gc_roots * _NODE_WIDTH)
    count = 1
    for etype, name, obj in _roots():
        i = memo.get(id(obj))
        if i is None:
            i = memo[id(obj)] = new_index()
            queue.append(obj)
        ebuf += (etype, strings(name), i * _NODE_WIDTH)
        count += 1
    for k, sn in enumerate(stack_nodes):
        ebuf += (_E_ELEMENT, k + 2, sn * _NODE_WIDTH)
        count += 1
    node(_N_SYNTHETIC, strings(""), 0, count)
    # (GC roots): the interpreter's own roots, builtins and sys.
    count = 0
    for name in ("builtins", "sys"):
        mod = sys.modules.get(name)
        if mod is not None and memo.get(id(mod), -1) >= 0:
            ebuf += (_E_PROPERTY, strings(name), memo[id(mod)] * _NODE_WIDTH)
            count += 1
    node(_N_SYNTHETIC, strings("(GC roots)"), 0, count)
    for tname, frames in stacks:
        for depth, fr in enumerate(frames):
            i = memo.get(id(fr))
            if i is None:
                i = memo[id(fr)] = new_index()
                queue.append(fr)
            ebuf += (_E_ELEMENT, depth, i * _NODE_WIDTH)
        node(_N_SYNTHETIC, strings(f"(thread {tname})"), 0, len(frames))
    del stacks

    done = 0
    popleft = queue.popleft
    append = queue.append
    while queue:
        obj = popleft()
        t = type(obj)
        done += 1
        if done % slice_size == 0:
            time.sleep(0)  # let other threads run between slices
        if t is str:
            node(_N_STRING, strings.value(obj[:_MAX_NAME]), getsizeof(obj), 0)  # type: ignore[index]
            continue
        if t is int or t is float or t is complex or t is bool:
            node(_N_NUMBER, strings(t.__name__), getsizeof(obj), 0)
            continue
        if t is bytes:
            node(_N_STRING, strings("(bytes)"), getsizeof(obj), 0)
            continue
        if t is _Native:
            node(_N_NATIVE, strings("(native buffer)"), obj.size, 0)  # type: ignore[attr-defined]
            continue
        size = getsizeof(obj) if t in plain else _self_size(obj)
        count = 0
        if is_tracked(obj) or t is module_type or t is frame_type:
            try:
                edges, ns = _edges_of(obj)
            except Exception:  # a broken object: keep its node, drop its edges
                log.debug("cannot list the references of a %s", t, exc_info=True)
                edges, ns = [], None
            if ns is not None:
                known = memo.get(id(ns))
                if known is None:
                    # Fold the namespace dict into its owner (``mod.attr``, not
                    # ``mod.__dict__['attr']``); other referrers of the dict (a
                    # function's __globals__) point at the owner.
                    memo[id(ns)] = writer.node_count
                    size += getsizeof(ns)
                else:
                    edges = [(_E_INTERNAL, "__dict__", ns)]
            for etype, name, child in edges:
                cid = id(child)
                i = memo.get(cid)
                if i is None:
                    ct = type(child)
                    if ct is frame_type and child.f_code.co_filename == __file__:  # type: ignore[attr-defined]
                        memo[cid] = -1
                        continue
                    # Classes are reached through their modules; an edge from every
                    # instance would give each class a million retainers.
                    if issubclass(ct, type) and _named_in_module(child):
                        memo[cid] = -1
                        continue
                    i = new_index()
                    # Referred to once (and not weakly): met only through this edge.
                    if refcount(child) > unique or getweakrefcount(child):
                        memo[cid] = i
                    append(child)
                elif i < 0:
                    continue
                ebuf += (etype, name if etype in name_kinds else strings(name), i * _NODE_WIDTH)
                count += 1
        buf = _owned_buffer(obj) if t not in plain else 0
        if buf:
            size = max(0, size - buf)
            j = new_index()
            append(_Native(buf))
            ebuf += (_E_INTERNAL, strings("(buffer)"), j * _NODE_WIDTH)
            count += 1
        tn = type_names.get(t)
        if tn is None:
            tn = type_names[t] = strings(_type_name(t))
        node(_N_OBJECT, tn, size, count)
    writer.flush_nodes(final=True)
    writer.flush_edges(final=True)


def estimate_dump_bytes() -> int:
    """A rough upper estimate of a snapshot's size now: about 90 bytes per live object."""
    return len(gc.get_objects()) * 2 * 90 + (1 << 20)


def dump(
    path: str | os.PathLike[str], *, collect: bool = True, slice_size: int = _SLICE
) -> DumpStats:
    """Write a V8 heap snapshot of this process to ``path`` (a new file).

    Args:
        path: the ``.heapsnapshot`` file to create; it must not exist (created
            exclusively, a symlink at that name is never followed).
        collect: run a full garbage collection first, as DevTools does, so the
            snapshot holds only live objects.
        slice_size: objects walked between releases of the GIL.

    Returns:
        What was written.

    Raises:
        FileExistsError: ``path`` exists.
        OSError: the directory is missing or not writable, or the disk is full.
    """
    start = time.perf_counter()
    target = Path(path)
    fd = create_new(target, mode=0o600)
    try:
        out = os.fdopen(fd, "w", encoding="utf-8", buffering=1 << 18)
    except BaseException:
        os.close(fd)
        raise
    writer: _Writer | None = None
    try:
        with out:
            if collect:
                gc.collect()
            writer = _Writer(target.resolve().parent)
            strings = _Strings()
            strings("")
            _walk(writer, strings, max(1, slice_size))
            _write_file(out, writer, strings)
    except BaseException:
        with contextlib.suppress(OSError):
            target.unlink()
        raise
    finally:
        if writer is not None:
            writer.close()
    assert writer is not None
    return DumpStats(
        path=target,
        node_count=writer.node_count,
        edge_count=writer.edge_count,
        size_bytes=target.stat().st_size,
        duration_s=time.perf_counter() - start,
    )


def _write_file(out: IO[str], writer: _Writer, strings: _Strings) -> None:
    import json

    meta = {
        "node_fields": NODE_FIELDS,
        "node_types": [NODE_TYPES, "string", "number", "number", "number", "number", "number"],
        "edge_fields": EDGE_FIELDS,
        "edge_types": [EDGE_TYPES, "string_or_number", "node"],
        "trace_function_info_fields": [
            "function_id",
            "name",
            "script_name",
            "script_id",
            "line",
            "column",
        ],
        "trace_node_fields": ["id", "function_info_index", "count", "size", "children"],
        "sample_fields": ["timestamp_us", "last_assigned_id"],
        "location_fields": ["object_index", "script_id", "line", "column"],
    }
    header = {
        "meta": meta,
        "node_count": writer.node_count,
        "edge_count": writer.edge_count,
        "trace_function_count": 0,
    }
    out.write('{"snapshot":' + json.dumps(header, separators=(",", ":")) + ',\n"nodes":[')
    for tmp in (writer.nodes, writer.edges):
        tmp.flush()
        tmp.seek(0)
    shutil.copyfileobj(writer.nodes, out, 1 << 20)
    out.write('],\n"edges":[')
    shutil.copyfileobj(writer.edges, out, 1 << 20)
    out.write('],\n"trace_function_infos":[],\n"trace_tree":[],\n"samples":[],\n"locations":[],\n')
    out.write('"strings":[')
    encode = json.JSONEncoder(ensure_ascii=True).encode
    batch: list[str] = []
    for s in strings.items:
        batch.append(encode(s))
        if len(batch) >= 4096:
            out.write(",\n".join(batch) + ",\n")
            batch.clear()
    out.write(",\n".join(batch) + "]}\n")


# --------------------------------------------------------------------------- in-process paths


def _label(etype: int, name: object, owner_is_mapping: bool) -> str:
    if etype == _E_ELEMENT:
        return f"[{name}]"
    if etype == _E_CONTEXT:
        return f".{name}"
    if etype == _E_PROPERTY:
        return f"[{name!r}]" if owner_is_mapping else f".{name}"
    if etype == _E_WEAK:
        return "<weak>"
    return f"<{name}>" if isinstance(name, str) and not name.startswith("<") else str(name)


def _describe(obj: object) -> str:
    if isinstance(obj, types.FrameType):
        code = obj.f_code
        return f"<frame {code.co_name} {code.co_filename}:{obj.f_lineno}>"
    return f"<{type(obj).__name__}>"


def live_path(
    target: object,
    *,
    roots: Iterable[object] | None = None,
    max_visit: int = 2_000_000,
    max_s: float = 2.0,
    exclude: Callable[[object], bool] | None = None,
    caller_depth: int = 1,
) -> list[str]:
    """The shortest chain of labelled references from a root to ``target``, or ``[]``.

    Roots are the modules in ``sys.modules`` and the frames of every thread (the
    caller's own frame excluded: ``caller_depth`` frames up from here) unless
    ``roots`` is given. The walk is breadth-first
    over the same labelled edges a dump writes, so the chain is a shortest one; it is
    bounded by ``max_visit`` objects and ``max_s`` seconds.

    Returns:
        Labels like ``['mymod', '.cache', "['key']", '[3]', '.field', '<T at 0x…>']``:
        the first names the root (a module or a frame), each later one the hop.
    """
    deadline = time.monotonic() + max_s
    if roots is None:
        # First the module that defines the target's type: objects are most often held
        # by the module that made them, and a search there alone is small.
        home = sys.modules.get(getattr(type(target), "__module__", "") or "")
        if home is not None:
            home_path = live_path(
                target,
                roots=[home],
                max_visit=min(max_visit, 200_000),
                max_s=max_s / 2,
                exclude=lambda o: (
                    type(o) is types.ModuleType or (exclude is not None and exclude(o))
                ),
                caller_depth=caller_depth + 1,
            )
            if home_path:
                return home_path
    skip: set[int] = set()
    fr0: types.FrameType | None = sys._getframe()
    for _ in range(caller_depth + 1):
        if fr0 is None:
            break
        skip.add(id(fr0))
        fr0 = fr0.f_back
    del fr0
    if roots is None:
        root_list: list[object] = [m for m in list(sys.modules.values()) if m is not None]
        for f in sys._current_frames().values():
            fr: types.FrameType | None = f
            while fr is not None:
                if id(fr) not in skip and fr.f_code.co_filename != __file__:
                    root_list.append(fr)
                fr = fr.f_back
    else:
        root_list = list(roots)
    target_id = id(target)
    parent: dict[int, tuple[int, str]] = {}
    objs: dict[int, object] = {}
    queue: deque[object] = deque()
    for r in root_list:
        if id(r) not in objs and id(r) not in skip:
            objs[id(r)] = r
            queue.append(r)
    skip.update((id(parent), id(objs), id(queue), id(root_list)))
    found = target_id in objs
    steps = 0
    while queue and not found and len(objs) < max_visit:
        steps += 1
        if steps % 512 == 0 and time.monotonic() > deadline:
            break
        obj = queue.popleft()
        oid = id(obj)
        try:
            edges, _ns = _edges_of(obj)
        except Exception:  # noqa: S112 - a broken object leads nowhere
            continue
        mapping = isinstance(obj, dict)
        for etype, name, child in edges:
            cid = id(child)
            if cid in objs or cid in skip or cid in _STATIC_IDS:
                continue
            if cid == target_id:
                objs[cid] = child
                parent[cid] = (oid, _label(etype, name, mapping))
                found = True
                break
            # Untracked objects (str, int, flat tuples) refer to nothing further.
            if not gc.is_tracked(child) and type(child) is not types.ModuleType:
                continue
            if _is_frame_of_ours(child) or (exclude is not None and exclude(child)):
                continue
            objs[cid] = child
            parent[cid] = (oid, _label(etype, name, mapping))
            queue.append(child)
    if not found:
        return []
    labels: list[str] = []
    cur = target_id
    while cur in parent:
        pid, lab = parent[cur]
        labels.append(lab)
        cur = pid
    first = objs[cur]
    labels.append(first.__name__ if isinstance(first, types.ModuleType) else _describe(first))
    labels.reverse()
    labels.append(f"<{type(target).__name__} at {target_id:#x}>")
    return labels


def format_path(labels: list[str]) -> str:
    """Join :func:`live_path` labels: ``mod.attr['key'][3] -> <T at 0x…>``."""
    out = ""
    for lab in labels:
        if out and not lab.startswith((".", "[")):
            out += " -> "
        out += lab
    return out
