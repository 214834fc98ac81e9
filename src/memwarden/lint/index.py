"""The per-module index every rule shares: the parsed tree, parents, nodes by type, imports.

Built once per file by one hand-rolled traversal (indexing is on the hot path of a
cold run). :meth:`ModuleIndex.of` is typed by the node class asked for, so rules
get ``list[ast.Call]`` for ``of(ast.Call)`` and need no ``isinstance`` asserts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, overload

__all__ = ["COMPREHENSIONS", "FUNCS", "ModuleIndex", "bound_names", "flat_body"]

N = TypeVar("N", bound=ast.AST)
M = TypeVar("M", bound=ast.AST)

FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.Module)
_TRY: tuple[type[ast.stmt], ...] = (ast.Try, *([ast.TryStar] if hasattr(ast, "TryStar") else []))
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
# Fields that never hold child nodes (``ctx``: Load/Store/Del are shared singletons); the
# traversal visits only the others, per node type: indexing is on a cold run's hot path.
_SCALAR_FIELDS = frozenset(
    {
        "ctx",
        "id",
        "attr",
        "name",
        "arg",
        "module",
        "level",
        "kind",
        "type_comment",
        "is_async",
        "conversion",
        "simple",
        "asname",
        "n",
        "s",
    }
)
_CHILD_FIELDS: dict[type[ast.AST], tuple[str, ...]] = {
    ast.Constant: (),  # its `value` is a Python object, never a node
}


class ModuleIndex:
    """One parsed module with what the rules need: parents, nodes by type, import aliases."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.by_type: dict[type[ast.AST], list[ast.AST]] = {}
        self.aliases: dict[str, str] = {}
        self.defined: set[str] = set()  # names bound at module level other than by imports
        self.function_names: set[str] = set()  # every def anywhere in the module
        self.words: set[str] = set()  # every attribute name and identifier used
        self._qualified: dict[int, str | None] = {}  # id(expr) -> qualify(expr); tree is held
        # One hand-rolled traversal instead of ast.walk + iter_child_nodes: indexing is on
        # the hot path of a cold run (as costly as parsing when done the obvious way).
        # Parents live in a side table, not on the nodes: no reference cycles, so a checked
        # tree is freed by reference counting alone (the checker runs with gc paused).
        self.parents: dict[int, ast.AST] = {}
        parents = self.parents
        by_type = self.by_type
        stack: list[ast.AST] = [tree]
        while stack:
            node = stack.pop()
            kind = type(node)
            bucket = by_type.get(kind)
            if bucket is None:
                by_type[kind] = [node]
            else:
                bucket.append(node)
            fields = _CHILD_FIELDS.get(kind)
            if fields is None:
                fields = _CHILD_FIELDS[kind] = tuple(
                    f for f in kind._fields if f not in _SCALAR_FIELDS
                )
            for name in fields:
                value = getattr(node, name, None)
                if isinstance(value, list):
                    for item in value:
                        if isinstance(item, ast.AST):
                            parents[id(item)] = node
                            stack.append(item)
                elif isinstance(value, ast.AST):
                    parents[id(value)] = node
                    stack.append(value)
        for node in self.of(ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    self.aliases[top] = top
        for node in self.of(ast.ImportFrom):
            if node.level or not node.module:
                continue
            for alias in node.names:
                if alias.name != "*":
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for stmt in flat_body(tree.body):
            if isinstance(stmt, (*FUNCS, ast.ClassDef)):
                self.defined.add(stmt.name)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    self.defined.update(bound_names(target))
        for node in self.of(*FUNCS):
            self.function_names.add(node.name)
        for node in self.of(ast.Attribute):
            self.words.add(node.attr)
        for node in self.of(ast.Name):
            self.words.add(node.id)
        self._locals: dict[int, frozenset[str]] = {}
        #: Per-module memo for rules (keys: a tuple naming the rule's question).
        self.cache: dict[tuple[str, int], object] = {}
        self._names: dict[int, dict[str, list[ast.Name]]] = {}

    @overload
    def of(self, kind: type[N], /) -> list[N]: ...

    @overload
    def of(self, kind: type[N], other: type[M], /) -> list[N | M]: ...

    def of(self, *types: type[ast.AST]) -> list[Any]:
        """Every node of these types, in traversal order (typed by the classes asked for)."""
        if len(types) == 1:
            return self.by_type.get(types[0], [])
        return [node for t in types for node in self.by_type.get(t, [])]

    def qualify(self, expr: ast.AST) -> str | None:
        """The dotted name ``expr`` refers to through imports (``ft.cache`` -> ``functools.cache``).

        A builtin not shadowed at module level is its bare name (``open``); a name defined in
        the module is ``<module>.name``; anything else that is not a dotted name is ``None``.
        """
        key = id(expr)
        if key in self._qualified:  # several rules ask about every call's callee
            return self._qualified[key]
        result: str | None = None
        if isinstance(expr, ast.Name):
            if expr.id in self.aliases:
                result = self.aliases[expr.id]
            elif expr.id in self.defined:
                result = f"<module>.{expr.id}"
            else:
                result = expr.id
        elif isinstance(expr, ast.Attribute):
            base = self.qualify(expr.value)
            result = None if base is None else f"{base}.{expr.attr}"
        self._qualified[key] = result
        return result

    def is_builtin(self, expr: ast.AST, name: str) -> bool:
        """``expr`` is the builtin ``name``, not shadowed by an import or a module-level binding."""
        return isinstance(expr, ast.Name) and expr.id == name and self.qualify(expr) == name

    def parent(self, node: ast.AST | None) -> ast.AST | None:
        """The node ``node`` is a child of (``None`` for the module)."""
        return None if node is None else self.parents.get(id(node))

    def scope_of(self, node: ast.AST) -> ast.AST:
        """The nearest enclosing function, lambda, class or module."""
        parent = self.parent(node)
        while parent is not None and not isinstance(parent, _SCOPES):
            parent = self.parent(parent)
        return parent if parent is not None else node

    def function_of(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """The nearest enclosing ``def`` (through classes and lambdas), if any."""
        parent = self.parent(node)
        while parent is not None and not isinstance(parent, FUNCS):
            parent = self.parent(parent)
        return parent

    def local_names(self, func: ast.AST) -> frozenset[str]:
        """Names bound locally in ``func`` (parameters and assignments, minus ``global``)."""
        cached = self._locals.get(id(func))
        if cached is not None:
            return cached
        bound: set[str] = set()
        declared: set[str] = set()
        if isinstance(func, (*FUNCS, ast.Lambda)):
            args = func.args
            for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
                if arg is not None:
                    bound.add(arg.arg)
        for node in ast.walk(func):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                declared.update(node.names)
        result = frozenset(bound - declared)
        self._locals[id(func)] = result
        return result

    def names_in(self, scope: ast.AST, name: str) -> list[ast.Name]:
        """Every ``Name`` node called ``name`` inside ``scope`` (nested scopes included)."""
        table = self._names.get(id(scope))
        if table is None:
            table = {}
            if scope is self.tree:
                names = self.of(ast.Name)
            else:
                names = [n for n in ast.walk(scope) if isinstance(n, ast.Name)]
            for node in names:
                table.setdefault(node.id, []).append(node)
            self._names[id(scope)] = table
        return table.get(name, [])


def flat_body(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a block, descending into ``if``/``try``/``with`` but not into defs."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from flat_body(stmt.body)
            yield from flat_body(stmt.orelse)
        elif isinstance(stmt, _TRY):
            try_stmt: Any = stmt  # ast.Try or, from Python 3.11, ast.TryStar: same fields
            for block in (try_stmt.body, try_stmt.orelse, try_stmt.finalbody):
                yield from flat_body(block)
            for handler in try_stmt.handlers:
                yield from flat_body(handler.body)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            yield from flat_body(stmt.body)


def bound_names(target: ast.AST) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from bound_names(elt)
    elif isinstance(target, ast.Starred):
        yield from bound_names(target.value)
