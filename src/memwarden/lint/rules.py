"""The lint rules (MW000–MW601) and the per-module index they share.

Every rule works on one module's AST, without type inference, so each rule is a
heuristic tuned to report what a reviewer would flag and to stay quiet where the
code shows it manages the memory (a removal, a bound, a ``close()``, a hand-off).
Names are resolved through the module's imports, so ``import functools as ft`` and
``from functools import lru_cache as memo`` are seen as ``functools.lru_cache``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from memwarden.lint.index import COMPREHENSIONS, FUNCS, ModuleIndex, bound_names, flat_body
from memwarden.lint.model import RawFinding, Rule

__all__ = [
    "RULES",
    "CacheOnMethod",
    "DeepClone",
    "ListenerNotRemoved",
    "LoggerPerCall",
    "ModuleIndex",
    "UnboundedCache",
    "UnclosedResource",
    "Unparsable",
    "WholeFileRead",
]


def _strip_call(expr: ast.AST) -> ast.AST:
    return expr.func if isinstance(expr, ast.Call) else expr


def _source_name(expr: ast.AST) -> str:
    try:
        return ast.unparse(expr)
    except Exception:  # unparse of exotic trees is best effort; the code stays readable
        return "?"


def _in_loop(module: ModuleIndex, node: ast.AST) -> bool:
    """``node`` runs repeatedly: inside a loop or comprehension of its own function."""
    child: ast.AST | None = node
    parent = module.parent(node)
    while parent is not None and not isinstance(parent, (*FUNCS, ast.Lambda, ast.ClassDef)):
        if isinstance(parent, (ast.For, ast.AsyncFor)):
            if child is not parent.iter:
                return True
        elif isinstance(parent, ast.While):
            return True
        elif isinstance(parent, ast.comprehension):
            comp = module.parent(parent)
            first = getattr(comp, "generators", [None])[0]
            if child is not parent.iter or first is not parent:
                return True
            # The first iterable is evaluated once, outside the comprehension's loop.
            child, parent = comp, module.parent(comp) if comp is not None else None
            continue
        elif isinstance(parent, COMPREHENSIONS):
            return True
        child, parent = parent, module.parent(parent)
    return False


# ---------------------------------------------------------------------------------------------
# MW000


class Unparsable(Rule):
    """A file that cannot be parsed is reported and skipped; the run goes on.

    memwarden lint reads every file as Python source. A syntax error, a null byte, a
    bad encoding declaration or nesting too deep for the parser makes the file
    uncheckable: it is reported (so a broken file is not mistaken for a clean one)
    and the other files are still checked. An internal error of a rule on a file is
    reported under this code too, naming the rule.
    """

    code = "MW000"
    name = "unparsable"
    severity = "error"
    summary = "the file cannot be parsed (or checked); it is skipped"

    def check(self, module: ModuleIndex) -> Iterator[RawFinding]:
        return iter(())  # reported by the runner, which owns parsing


# ---------------------------------------------------------------------------------------------
# MW101

_CACHE_DECORATORS = frozenset({"functools.cache", "functools.lru_cache"})
_NOT_INSTANCE_METHOD = frozenset(
    {"staticmethod", "classmethod", "abc.abstractstaticmethod", "abc.abstractclassmethod"}
)
_IMPLICIT_CLASS_METHODS = frozenset({"__new__", "__init_subclass__", "__class_getitem__"})


class CacheOnMethod(Rule):
    """``functools.cache`` / ``lru_cache`` on an instance method keeps instances alive.

    The cache belongs to the function, which lives on the class, and ``self`` is part
    of every cache key. With ``functools.cache`` or ``lru_cache(maxsize=None)`` each
    instance the method was ever called on stays reachable from the class for as long
    as the class lives (usually: forever), with everything it references: reported as
    a ``warning``. With a bound (``lru_cache()``, ``maxsize=128``) at most ``maxsize``
    recent calls, so at most that many instances, are kept until evicted: a smaller,
    bounded retention, reported as ``info``.

    Bad::

        class Report:
            @functools.lru_cache(maxsize=None)
            def total(self) -> int: ...

    Good: cache per instance, so the cache dies with the instance::

        class Report:
            @functools.cached_property
            def total(self) -> int: ...

    or key a module-level cache on something small and immutable (an id, a path), or
    build the cache in ``__init__`` (``self.total = functools.lru_cache()(self._total)``).
    Not reported: ``staticmethod``, ``classmethod`` (and methods whose first parameter is
    ``cls``), ``cached_property``, plain functions, methods whose cache the module
    clears (``self.total.cache_clear()``), and classes instantiated once, at module level
    (a singleton: its one instance lives forever anyway).
    """

    code = "MW101"
    name = "cache-on-method"
    summary = "functools.cache/lru_cache on an instance method keeps instances alive"

    def check(self, module: ModuleIndex) -> Iterator[RawFinding]:
        cleared: set[str] = set()  # `x.method.cache_clear()` / `method.cache_clear()`
        for node in module.of(ast.Attribute):
            if node.attr == "cache_clear":
                if isinstance(node.value, ast.Attribute):
                    cleared.add(node.value.attr)
                elif isinstance(node.value, ast.Name):
                    cleared.add(node.value.id)
        calls: dict[str, list[ast.Call]] = {}
        for call in module.of(ast.Call):
            if isinstance(call.func, ast.Name):
                calls.setdefault(call.func.id, []).append(call)
        for cls in module.of(ast.ClassDef):
            # A metaclass's instances are classes, which live as long as the cache anyway.
            if any(module.qualify(base) in ("type", "abc.ABCMeta") for base in cls.bases):
                continue
            if _singleton(module, cls, calls):
                continue
            for stmt in flat_body(cls.body):
                if not isinstance(stmt, FUNCS) or stmt.name in _IMPLICIT_CLASS_METHODS:
                    continue
                names = [module.qualify(_strip_call(d)) for d in stmt.decorator_list]
                if any(n in _NOT_INSTANCE_METHOD for n in names):
                    continue
                params = [*stmt.args.posonlyargs, *stmt.args.args]
                if not params or params[0].arg in ("cls", "mcs", "klass", "metacls"):
                    continue  # a class method in all but name (wrapped by classmethod later)
                if stmt.name in cleared:
                    continue  # the module clears this cache: the retention is managed
                for deco, qualified in zip(stmt.decorator_list, names, strict=True):
                    if qualified not in _CACHE_DECORATORS:
                        continue
                    bound = _cache_bound(deco, qualified)
                    where = f"`@{_source_name(deco)}` on method `{cls.name}.{stmt.name}`"
                    if bound is None:
                        yield RawFinding(
                            deco,
                            f"{where} is unbounded and `self` is in its key: every instance "
                            "it is called on stays alive as long as the class; use "
                            "functools.cached_property or a per-instance cache",
                        )
                    else:
                        yield RawFinding(
                            deco,
                            f"{where} keeps up to {bound} recent calls, each holding its "
                            "`self`, alive until evicted; a per-instance cache frees them "
                            "with the instance",
                            "info",
                        )


def _cache_bound(deco: ast.expr, qualified: str | None) -> int | str | None:
    """The decorator's ``maxsize`` (``None``: unbounded); ``"maxsize"`` when not a constant."""
    if qualified == "functools.cache":
        return None
    if not isinstance(deco, ast.Call):
        return 128  # bare @lru_cache: the default maxsize
    value: ast.expr | None = deco.args[0] if deco.args else None
    for keyword in deco.keywords:
        if keyword.arg == "maxsize":
            value = keyword.value
    if value is None:
        return 128
    if isinstance(value, ast.Constant):
        if value.value is None:
            return None
        if isinstance(value.value, int):
            return value.value
    return "maxsize"


def _singleton(module: ModuleIndex, cls: ast.ClassDef, calls: dict[str, list[ast.Call]]) -> bool:
    """``cls`` is instantiated exactly once in the module, at module level, and not subclassed."""
    made = calls.get(cls.name, [])
    if len(made) != 1 or module.function_of(made[0]) is not None:
        return False
    subclassed = any(
        isinstance(base, ast.Name) and base.id == cls.name
        for other in module.of(ast.ClassDef)
        for base in other.bases
    )
    return not subclassed and cls.name not in module.aliases


# ---------------------------------------------------------------------------------------------
# MW102

_CONTAINER_FACTORIES = frozenset(
    {
        "dict",
        "list",
        "set",
        "collections.defaultdict",
        "collections.OrderedDict",
        "collections.Counter",
        "collections.deque",
    }
)
_ADD_METHODS = frozenset(
    {"append", "add", "setdefault", "update", "extend", "insert", "appendleft", "extendleft"}
)
_REMOVE_METHODS = frozenset(
    {
        "pop",
        "popitem",
        "popleft",
        "clear",
        "remove",
        "discard",
        "difference_update",
        "intersection_update",
        "__delitem__",
    }
)
# Calls that only read a container they are given; any other call may take it over.
_READERS = frozenset(
    {
        "len",
        "list",
        "tuple",
        "set",
        "frozenset",
        "sorted",
        "reversed",
        "iter",
        "next",
        "repr",
        "str",
        "print",
        "any",
        "all",
        "sum",
        "min",
        "max",
        "enumerate",
        "zip",
        "isinstance",
        "bool",
        "id",
        "hash",
        "map",
        "filter",
        "dict",
    }
)


def _is_container(module: ModuleIndex, value: ast.AST | None) -> bool:
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return True
    if isinstance(value, ast.Call) and module.qualify(value.func) in _CONTAINER_FACTORIES:
        # deque(maxlen=n) is bounded by construction.
        bounded_deque = module.qualify(value.func) == "collections.deque" and (
            len(value.args) > 1 or any(k.arg == "maxlen" for k in value.keywords)
        )
        return not bounded_deque
    return False


class _Uses:
    def __init__(self) -> None:
        self.adders: list[str] = []  # functions that add
        self.removed = False
        self.escaped = False


class UnboundedCache(Rule):
    """A module- or class-level dict/list/set that functions only ever add to grows forever.

    A container that lives as long as the module (or class) and that functions fill
    (``d[k] = v``, ``append``, ``add``, ``setdefault``, ``update``) while nothing in
    the module ever removes from it (``pop``, ``del``, ``clear``, ``discard`` …),
    bounds it (a ``len(...)`` check) or replaces it, holds every value ever stored:
    a leak proportional to the traffic.

    Bad::

        _results = {}

        def lookup(key):
            if key not in _results:
                _results[key] = compute(key)
            return _results[key]

    Good: a bounded cache (``functools.lru_cache(maxsize=1024)``,
    ``memwarden.cache``), or evict explicitly::

        def lookup(key):
            if len(_results) >= 1024:
                _results.pop(next(iter(_results)))
            ...

    Not reported: containers handed to other code (passed as an argument, returned,
    aliased) since that code may bound them; containers filled only by registration
    functions (``register_x``, ``add_x``, ``set_x`` …: they grow with set-up calls, not
    with traffic); dunder names such as ``__all__``.
    """

    code = "MW102"
    name = "unbounded-cache"
    summary = "a module/class-level container that functions only add to grows forever"

    def check(self, module: ModuleIndex) -> Iterator[RawFinding]:
        # Module level.
        for stmt in flat_body(module.tree.body):
            for name, target in _container_targets(module, stmt):
                uses = self._module_uses(module, name, target)
                yield from self._verdict(module, f"module-level `{name}`", target, uses)
        # Class level.
        for cls in module.of(ast.ClassDef):
            for stmt in flat_body(cls.body):
                for name, target in _container_targets(module, stmt):
                    uses = self._class_uses(module, cls, name)
                    yield from self._verdict(
                        module, f"class attribute `{cls.name}.{name}`", target, uses
                    )

    @staticmethod
    def _verdict(
        module: ModuleIndex, what: str, target: ast.AST, uses: _Uses
    ) -> Iterator[RawFinding]:
        # Filled only by registration functions (register_x, add_alias, set_x …) or by
        # functions the module itself only calls at import time (opcode's def_op, a
        # decorator applied to module-level defs): it grows with the code, not with traffic.
        if all(
            _REGISTRATION.match(name) or _import_time_only(module, name) for name in uses.adders
        ):
            return
        if uses.adders and not uses.removed and not uses.escaped:
            adders = ", ".join(f"`{a}()`" for a in dict.fromkeys(uses.adders))
            yield RawFinding(
                target,
                f"{what} only grows: added to in {adders} but never removed from, cleared, "
                "bounded or replaced; bound it (lru_cache(maxsize=…), memwarden.cache) "
                "or evict",
            )

    def _module_uses(self, module: ModuleIndex, name: str, definition: ast.AST) -> _Uses:
        uses = _Uses()
        for node in module.names_in(module.tree, name):
            if node is definition:
                continue
            func = module.function_of(node)
            if func is not None and name in module.local_names(func):
                continue  # a local of the same name
            if isinstance(node.ctx, ast.Store):
                if func is not None:
                    uses.removed = True  # `global name; name = …` replaces it
                continue
            if isinstance(node.ctx, ast.Del):
                uses.removed = True
                continue
            self._classify(module, node, func, uses)
        return uses

    def _class_uses(self, module: ModuleIndex, cls: ast.ClassDef, name: str) -> _Uses:
        uses = _Uses()
        owners = {"self", "cls", cls.name}
        for node in module.of(ast.Attribute):
            if node.attr != name:
                continue
            func = module.function_of(node)
            if isinstance(node.ctx, ast.Store):
                uses.removed = True  # replaced (on the class or shadowed per instance)
                continue
            if isinstance(node.ctx, ast.Del):
                uses.removed = True
                continue
            owner = node.value
            is_own = (isinstance(owner, ast.Name) and owner.id in owners) or (
                isinstance(owner, ast.Call) and module.is_builtin(owner.func, "type")
            )
            if isinstance(owner, ast.Attribute) and owner.attr == "__class__":
                is_own = True
            self._classify(module, node, func, uses, count_adds=is_own)
        return uses

    @staticmethod
    def _classify(
        module: ModuleIndex,
        node: ast.expr,
        func: ast.FunctionDef | ast.AsyncFunctionDef | None,
        uses: _Uses,
        *,
        count_adds: bool = True,
    ) -> None:
        parent = module.parent(node)
        if isinstance(parent, ast.Subscript) and parent.value is node:
            if isinstance(parent.ctx, ast.Del) or isinstance(parent.slice, ast.Slice):
                uses.removed = True
            elif isinstance(parent.ctx, ast.Store):
                if count_adds:
                    _add(module, func, uses, [parent.slice])
            else:
                # `d[k].append(v)`: grows the value (and a defaultdict's keys) all the same.
                attr = module.parent(parent)
                if isinstance(attr, ast.Subscript) and isinstance(attr.ctx, ast.Del):
                    uses.removed = True  # `del d[k][0]`
                    return
                if isinstance(attr, ast.Attribute) and attr.attr in _REMOVE_METHODS:
                    uses.removed = True  # `d[k].pop()`
                    return
                if (
                    isinstance(attr, ast.Attribute)
                    and attr.attr in _ADD_METHODS
                    and isinstance(module.parent(attr), ast.Call)
                    and count_adds
                ):
                    _add(module, func, uses, [parent.slice])
            return
        if isinstance(parent, ast.Attribute) and parent.value is node:
            if parent.attr in _REMOVE_METHODS:
                uses.removed = True
            elif parent.attr in _ADD_METHODS:
                call = module.parent(parent)
                if isinstance(call, ast.Call) and call.func is parent and count_adds:
                    _add(module, func, uses, [*call.args, *(k.value for k in call.keywords)])
            return
        if isinstance(parent, ast.AugAssign) and parent.target is node:
            if isinstance(parent.op, (ast.Sub, ast.BitAnd)):
                uses.removed = True
            elif count_adds:
                _add(module, func, uses, [parent.value])
            return
        if isinstance(parent, ast.Call) and node is not parent.func:
            callee = module.qualify(parent.func)
            if callee == "len":
                if isinstance(module.parent(parent), ast.Compare):
                    uses.removed = True  # a size check bounds it
                return
            if callee not in _READERS:
                uses.escaped = True
            return
        if isinstance(parent, ast.keyword):
            uses.escaped = True
            return
        if isinstance(parent, (ast.Return, ast.Yield, ast.YieldFrom, ast.Assign, ast.NamedExpr)):
            if not (isinstance(parent, ast.Assign) and node in parent.targets):
                uses.escaped = True
            return
        if isinstance(parent, (ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Starred)):
            uses.escaped = True


#: Adders that run once per class or instance set-up, not per call of the program's traffic.
_SETUP_METHODS = frozenset({"__init__", "__init_subclass__", "__set_name__", "__class_getitem__"})


def _add(
    module: ModuleIndex,
    func: ast.FunctionDef | ast.AsyncFunctionDef | None,
    uses: _Uses,
    added: list[ast.expr],
) -> None:
    """Record ``func`` as an adder when what it adds comes from its inputs.

    A key or item made only of constants, ``self`` state or globals is a fixed slot
    (``_counter[0] += n``, ``_state["ready"] = True``): it cannot grow with traffic. A
    decorator's inner function (returned by the function around it) registers the
    decorated functions: it grows with the code.
    """
    if func is None or func.name in _SETUP_METHODS:
        return
    outer = module.function_of(func)
    if outer is not None and any(
        isinstance(r.value, ast.Name) and r.value.id == func.name
        for r in ast.walk(outer)
        if isinstance(r, ast.Return)
    ):
        return  # a decorator (or factory) registering what it wraps
    params = {a.arg for a in (*func.args.posonlyargs, *func.args.args)}
    if "parser" in params and params & {"option", "opt_str", "opt"}:
        return  # an optparse callback: runs once per command-line option
    if _filled_once(module, func, added):
        return
    returned = {
        r.value.id
        for r in ast.walk(func)
        if isinstance(r, ast.Return) and isinstance(r.value, ast.Name)
    }
    if any(isinstance(expr, ast.Name) and expr.id in returned for expr in added):
        return  # `def register(fn): _registry.add(fn); return fn`: a decorator
    if not any(_from_input(module, func, expr) for expr in added):
        return
    uses.adders.append(func.name)


def _inputs(
    module: ModuleIndex, func: ast.FunctionDef | ast.AsyncFunctionDef
) -> dict[str, frozenset[str]]:
    """Parameters of ``func`` (not ``self``/``cls``) and the locals computed from them.

    Each name maps to the parameters it comes from, so ``k = python.path`` is known to
    come from ``python``.
    """
    cached = module.cache.get(("inputs", id(func)))
    if isinstance(cached, dict):
        return cached
    args = func.args
    origins: dict[str, frozenset[str]] = {
        a.arg: frozenset({a.arg})
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg)
        if a is not None and a.arg not in ("self", "cls")
    }
    # Two passes propagate through `k = key.lower()`, `for item in items`, `x = f(arg)`.
    for _ in range(2):
        for node in ast.walk(func):
            source: ast.AST | None = None
            targets: list[ast.AST] = []
            if isinstance(node, ast.Assign):
                source, targets = node.value, list(node.targets)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
                source, targets = node.value, [node.target]
            elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
                source, targets = node.iter, [node.target]
            if source is None:
                continue
            came_from = _origins(source, origins)
            if not came_from:
                continue
            for target in targets:
                for name in bound_names(target):
                    origins[name] = origins.get(name, frozenset()) | came_from
    module.cache[("inputs", id(func))] = origins
    return origins


def _filled_once(
    module: ModuleIndex, func: ast.FunctionDef | ast.AsyncFunctionDef, added: list[ast.expr]
) -> bool:
    """The add runs under ``if not container:`` (filled once) or in ``for _ in range(N)``."""
    if not added:
        return False
    node: ast.AST | None = added[0]
    while node is not None and node is not func:
        parent = module.parent(node)
        if isinstance(parent, ast.If) and node is not parent.test:
            test = parent.test
            if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
                return True  # `if not _table: fill it`
        if isinstance(parent, ast.For) and node is not parent.iter:
            it = parent.iter
            if (
                isinstance(it, ast.Call)
                and isinstance(it.func, ast.Name)
                and it.func.id == "range"
                and all(isinstance(a, ast.Constant) for a in it.args)
            ):
                return True
        node = parent
    return False


def _origins(expr: ast.AST, origins: dict[str, frozenset[str]]) -> frozenset[str]:
    """The parameters ``expr`` is computed from (``type(x)`` counts as none: classes)."""
    found: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("type", "len", "isinstance", "bool")
        ):
            continue  # a class, a size, a flag: bounded whatever the argument
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Mod)
            and isinstance(node.right, ast.Constant)
            and not isinstance(node.left, ast.Constant)
        ):
            continue  # `n % 6`: one of a fixed number of cases
        if isinstance(node, ast.Name) and node.id in origins:
            found |= origins[node.id]
        stack.extend(ast.iter_child_nodes(node))
    return frozenset(found)


def _mentions(expr: ast.AST, names: set[str] | frozenset[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(expr))


#: Parameter names whose values come from a domain the program enumerates (names of
#: modules, backends, formats, dtypes, options, languages …): a memo keyed only by them
#: is bounded by the code and its configuration, not by traffic.
_BOUNDED_DOMAIN = re.compile(
    r"^_*(\w+_)?(name|names|scheme|format|fmt|backend|backends|dtype|dtypes|type|types|typ|"
    r"kind|method|module|modname|package|pkg|glob|pat|pattern|lang|language|locale|code|"
    r"alias|option|opt|flag|tag|plat|platform|compiler|encoding|mode|level|cls|klass|"
    r"func|fn|op|protocol|version|field|attr|executable|python|section|catalog|namespace|"
    r"config|setting|settings|default)$",
    re.I,
)


def _from_input(
    module: ModuleIndex, func: ast.FunctionDef | ast.AsyncFunctionDef, expr: ast.expr
) -> bool:
    """``expr`` (a key or an added item) is computed from ``func``'s data inputs."""
    origins = _origins(expr, _inputs(module, func))
    return any(not _BOUNDED_DOMAIN.match(name) for name in origins)


def _runs_at_import(module: ModuleIndex, node: ast.AST) -> bool:
    """``node`` is evaluated when the module is imported (not inside a function body)."""
    child, parent = node, module.parent(node)
    while parent is not None:
        if isinstance(parent, (*FUNCS, ast.Lambda)):
            body = parent.body if isinstance(parent.body, list) else [parent.body]
            if any(child is stmt for stmt in body):
                return False  # decorators, defaults and annotations run at definition time
        child, parent = parent, module.parent(parent)
    return True


def _import_time_only(module: ModuleIndex, function: str) -> bool:
    """Every use of ``function`` in the module is a call (or decorator, or ``del``) at import."""
    if function not in module.function_names:
        return False
    refs = module.names_in(module.tree, function)
    if not refs:
        return False
    for ref in refs:
        if isinstance(ref.ctx, ast.Del):
            continue
        parent = module.parent(ref)
        used = (isinstance(parent, ast.Call) and parent.func is ref) or (
            isinstance(parent, (*FUNCS, ast.ClassDef)) and ref in parent.decorator_list
        )
        if not used or not _runs_at_import(module, ref):
            return False
    return True


_REGISTRATION = re.compile(r"^_*(register|add|set|define|install|declare|bind)(_|$|[A-Z])")


def _container_targets(module: ModuleIndex, stmt: ast.stmt) -> Iterator[tuple[str, ast.Name]]:
    if isinstance(stmt, ast.Assign) and _is_container(module, stmt.value):
        for target in stmt.targets:
            if isinstance(target, ast.Name) and not _is_dunder(target.id):
                yield target.id, target
    elif (
        isinstance(stmt, ast.AnnAssign)
        and isinstance(stmt.target, ast.Name)
        and _is_container(module, stmt.value)
        and not _is_dunder(stmt.target.id)
    ):
        yield stmt.target.id, stmt.target


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


# ---------------------------------------------------------------------------------------------
# MW201

_OPENERS = frozenset(
    {"open", "io.open", "codecs.open", "gzip.open", "bz2.open", "lzma.open", "os.fdopen"}
)


class WholeFileRead(Rule):
    """Reading a whole file at once holds all of it in memory; stream it instead (advice).

    ``f.read()`` / ``f.readlines()`` without a size on a file opened in the same scope,
    and ``Path.read_text()`` / ``Path.read_bytes()``, build one object as big as the
    file (``readlines`` several times bigger: one ``str`` per line). Fine for small
    configuration files, a memory spike for logs, exports and uploads of unknown
    size. Reported as ``info``: it is advice, not a bug. Not reported: reads of files
    the code names as configuration, metadata or a small known format (``*.toml``,
    ``*.json``, ``*.cfg``, ``/proc/…``, ``METADATA`` …) and reads of at most N bytes.

    Bad::

        with open(path) as f:
            for line in f.readlines():
                handle(line)

    Good: iterate, or read in chunks (``memwarden.stream``)::

        with open(path) as f:
            for line in f:
                handle(line)

        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                handle(chunk)
    """

    code = "MW201"
    name = "whole-file-read"
    severity = "info"
    summary = "a whole file is read into memory at once; consider streaming"

    def check(self, module: ModuleIndex) -> Iterator[RawFinding]:
        opened: set[tuple[int, str]] = set()  # (scope id, name) bound to an opened file
        for node in module.of(ast.withitem):
            if (
                isinstance(node.optional_vars, ast.Name)
                and self._is_open(module, node.context_expr)
                and not _small_file(node.context_expr)
            ):
                scope = module.scope_of(node.context_expr)
                opened.add((id(scope), node.optional_vars.id))
        for assign in module.of(ast.Assign):
            if self._is_open(module, assign.value) and not _small_file(assign.value):
                for target in assign.targets:
                    if isinstance(target, ast.Name):
                        opened.add((id(module.scope_of(assign)), target.id))
        for call in module.of(ast.Call):
            func = call.func
            if not isinstance(func, ast.Attribute):
                continue
            if func.attr in ("read", "readlines") and _whole(call):
                receiver = func.value
                if (self._is_open(module, receiver) and not _small_file(receiver)) or (
                    isinstance(receiver, ast.Name)
                    and (id(module.scope_of(call)), receiver.id) in opened
                ):
                    yield RawFinding(
                        call,
                        f"`{func.attr}()` without a size reads the whole file into memory; "
                        "iterate over the file or read fixed-size chunks",
                    )
            elif (
                func.attr in ("read_text", "read_bytes")
                and not call.args
                and not _small_file(func.value)
            ):
                yield RawFinding(
                    call,
                    f"`{func.attr}()` loads the whole file into memory; for files of unknown "
                    "size open it and stream",
                )

    @staticmethod
    def _is_open(module: ModuleIndex, expr: ast.AST) -> bool:
        if not isinstance(expr, ast.Call):
            return False
        qualified = module.qualify(expr.func)
        if qualified in _OPENERS:
            return True
        # `path.open(...)` on something that is not an imported module: pathlib's open.
        return (
            isinstance(expr.func, ast.Attribute)
            and expr.func.attr == "open"
            and not (isinstance(expr.func.value, ast.Name) and expr.func.value.id in module.aliases)
        )


_SMALL_FILE = re.compile(
    r"(\.(toml|cfg|ini|json|ya?ml|txt|md|rst|pem|crt|key|version|lock|pth|typed|pyi?|"
    r"in|conf|desc|info|env|html?|css|js|svg)$|^/(proc|sys|etc|dev)/|(^|/)(VERSION|RECORD|"
    r"METADATA|PKG-INFO|LICENSE|README|Dockerfile)$)",
    re.I,
)


def _small_file(expr: ast.AST) -> bool:
    """The path names a configuration file, metadata or a small known format."""
    return any(
        isinstance(n, ast.Constant) and isinstance(n.value, str) and _SMALL_FILE.search(n.value)
        for n in ast.walk(expr)
    )


def _whole(call: ast.Call) -> bool:
    if call.keywords:
        return False
    if not call.args:
        return True
    if len(call.args) == 1 and isinstance(call.args[0], ast.Constant):
        value = call.args[0].value
        return value is None or (isinstance(value, int) and value < 0)
    if len(call.args) == 1 and isinstance(call.args[0], ast.UnaryOp):
        return isinstance(call.args[0].op, ast.USub)  # read(-1)
    return False


# ---------------------------------------------------------------------------------------------
# MW301

_SERIALIZERS = ("json", "pickle", "_pickle", "cPickle", "marshal", "ujson", "orjson", "simplejson")


class DeepClone(Rule):
    """Deep-cloning by a serialization round trip duplicates the whole object graph, twice.

    ``json.loads(json.dumps(x))`` and ``pickle.loads(pickle.dumps(x))`` build the full
    serialized text *and* a full copy: peak memory is several times the object, and
    the copy is usually needed only in part.

    Bad::

        snapshot = json.loads(json.dumps(state))

    Good: copy only what changes (``dict(state)``, ``copy.copy``, a dataclass
    ``replace``), share immutable parts (tuples, frozen dataclasses,
    ``types.MappingProxyType``), or stream the serialization to where it is needed.

    Not reported: round trips where the round trip is the point: in functions that
    validate, check or test serialization (``validate_*``, ``check_*``, ``*picklable*``,
    ``*roundtrip*``, ``*serializ*``). ``copy.deepcopy`` is not reported: whether a deep
    copy is needed cannot be told from the code.
    """

    code = "MW301"
    name = "deep-clone"
    summary = "a deep copy through a serialization round trip duplicates the object graph"

    def check(self, module: ModuleIndex) -> Iterator[RawFinding]:
        for call in module.of(ast.Call):
            qualified = module.qualify(call.func)
            if qualified is None:
                continue
            lib, _, fn = qualified.rpartition(".")
            if fn != "loads" or lib not in _SERIALIZERS or not call.args:
                continue
            inner = call.args[0]
            if not (isinstance(inner, ast.Call) and module.qualify(inner.func) == f"{lib}.dumps"):
                continue
            func = module.function_of(call)
            if func is not None and _ROUND_TRIP_IS_THE_POINT.search(func.name):
                continue
            yield RawFinding(
                call,
                f"`{lib}.loads({lib}.dumps(...))` deep-clones through a full serialized "
                "copy; copy only what changes (dict(x), copy.copy, dataclasses.replace)",
            )


_ROUND_TRIP_IS_THE_POINT = re.compile(
    r"(^_*(validate|check|test|verify|ensure|assert)|picklab|round_?trip|serializ|serialis)",
    re.I,
)


# ---------------------------------------------------------------------------------------------
# MW401

_REMOVERS: dict[str, tuple[str, ...]] = {
    "add_listener": ("remove_listener", "remove_all_listeners", "off"),
    "addListener": ("removeListener", "removeAllListeners", "off"),
    "on": ("off", "remove_listener", "removeListener", "remove_all_listeners"),
    "connect": ("disconnect",),
    "subscribe": ("unsubscribe",),
    "addEventListener": ("removeEventListener",),
    "register": ("unregister", "deregister"),
    "add_handler": ("remove_handler",),
    "addHandler": ("removeHandler",),
    "add_observer": ("remove_observer",),
    "addObserver": ("removeObserver",),
    "add_event_listener": ("remove_event_listener",),
    "observe": ("unobserve",),
    "add_signal_handler": ("remove_signal_handler",),
    "add_reader": ("remove_reader",),
    "add_writer": ("remove_writer",),
    "trace_add": ("trace_remove",),
    "watch": ("unwatch",),
}
_SAVED_HANDLER = re.compile(r"(old|prev|orig|saved|previous|original|default)", re.I)


def _is_saved_handler(expr: ast.expr) -> bool:
    """``old_handlers[sig]``, ``previous``, ``self._orig_handler``: a handler being restored."""
    node: ast.expr = expr.value if isinstance(expr, ast.Subscript) else expr
    name = (
        node.id
        if isinstance(node, ast.Name)
        else node.attr
        if isinstance(node, ast.Attribute)
        else ""
    )
    return bool(name) and bool(_SAVED_HANDLER.search(name))


def _root(expr: ast.expr) -> ast.expr:
    while isinstance(expr, ast.Attribute | ast.Subscript | ast.Call):
        expr = expr.func if isinstance(expr, ast.Call) else expr.value
    return expr


def _long_lived_emitter(module: ModuleIndex, call: ast.Call, receiver: ast.expr) -> bool:
    """The emitter may outlive the registrant: it came from outside (a parameter, a global).

    Emitters the registrant owns die with it and pin nothing: its own attributes and child
    widgets (``self.button.clicked.connect``), objects created in the same function
    (``key = Gtk.EventControllerKey(); key.connect(...)``). An attribute of ``self`` that
    ``__init__`` set from a parameter (``self._bus = bus``) is someone else's emitter.
    """
    root = _root(receiver)
    if not isinstance(root, ast.Name):
        return True  # `IOLoop.current().x`, `get_bus().x`: a shared object
    func = module.function_of(call)
    if root.id in ("self", "cls"):
        first = receiver
        while isinstance(first, ast.Attribute) and not (
            isinstance(first.value, ast.Name) and first.value.id in ("self", "cls")
        ):
            first = first.value
        attr = first.attr if isinstance(first, ast.Attribute) else None
        return attr is not None and func is not None and _attr_from_param(func, attr)
    if func is None:
        return True
    args = func.args
    params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    if root.id in params:
        return True
    if root.id in module.local_names(func):
        # A local: shared only when fetched from a registry of long-lived objects.
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == root.id for t in node.targets
            ):
                value = node.value
                if isinstance(value, ast.Call) and module.qualify(value.func) in _SHARED_GETTERS:
                    return True
                if isinstance(value, ast.Name | ast.Attribute) and _mentions(value, params):
                    return True
        return False
    return True  # a module global or an import


_SHARED_GETTERS = frozenset({"logging.getLogger", "asyncio.get_event_loop"})


def _attr_from_param(func: ast.FunctionDef | ast.AsyncFunctionDef, attr: str) -> bool:
    args = func.args
    params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)} - {"self"}
    for node in ast.walk(func):
        # `self._bus = bus` / `self._loop = options.loop`: a parameter's object, not one
        # built here (`self.edit = QLineEdit(text, parent)` is the instance's own child).
        if isinstance(node, ast.Assign) and isinstance(_root(node.value), ast.Name):
            root = _root(node.value)
            direct = isinstance(node.value, ast.Name | ast.Attribute)
            if direct and isinstance(root, ast.Name) and root.id in params:
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and target.attr == attr:
                        return True
    return False


def _guarded_once(module: ModuleIndex, call: ast.Call) -> bool:
    """``call`` runs under ``if not <flag>:`` inside its function: a once-only registration."""
    node: ast.AST | None = call
    func = module.function_of(call)
    while node is not None and node is not func:
        parent = module.parent(node)
        if (
            isinstance(parent, ast.If)
            and node is not parent.test
            and node in parent.body
            and isinstance(parent.test, ast.UnaryOp)
            and isinstance(parent.test.op, ast.Not)
        ):
            return True
        node = parent
    return False


def _varies_per_iteration(module: ModuleIndex, call: ast.Call) -> bool:
    """In a loop, the callback is a new object each time (it uses the loop's variables).

    Registering one shared handler on each of several emitters adds one entry per
    emitter, not one per iteration of traffic: not a growing list.
    """
    loop_names: set[str] = set()
    node: ast.AST | None = module.parent(call)
    while node is not None and not isinstance(node, (*FUNCS, ast.Lambda, ast.ClassDef)):
        if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            loop_names.update(bound_names(node.target))
        elif isinstance(node, COMPREHENSIONS):
            for gen in node.generators:
                loop_names.update(bound_names(gen.target))
        elif isinstance(node, ast.While):
            return True  # a `while` loop's iterations are unbounded by construction
        node = module.parent(node)
    for arg in (*call.args, *(k.value for k in call.keywords)):
        if isinstance(arg, ast.Lambda):
            return True
        if isinstance(arg, ast.Call) and (module.qualify(arg.func) or "").endswith("partial"):
            return True
        if _mentions(arg, loop_names):
            return True
    return False


_HANDLER_PREFIX = re.compile(r"^_*(on[_A-Z]|handle)")
_HANDLER_SUFFIX = re.compile(r"(callback|handler|listener|_cb|hook|observer|receiver)s?$", re.I)


class ListenerNotRemoved(Rule):
    """A callback registered in ``__init__`` or in a loop, never removed, keeps its target alive.

    A registration (``add_listener``, ``on``, ``connect``, ``subscribe``,
    ``add_done_callback``, ``addEventListener``, ``register``, ``addHandler``,
    ``signal.signal`` …) stores a reference to the callback, and a bound method
    references its ``self``. Done once per instance (in ``__init__``) or once per
    iteration, with no matching removal (``remove_listener``, ``off``,
    ``disconnect``, ``unsubscribe`` …) anywhere in the class or module, every
    instance ever created stays reachable from the emitter, and the list of
    callbacks grows without bound.

    Bad::

        class Widget:
            def __init__(self, bus):
                bus.subscribe("tick", self.on_tick)

    Good: remove what you add, in ``close()``/``dispose()`` (``memwarden.dispose``),
    or register a weak reference (``weakref.WeakMethod``)::

        class Widget:
            def __init__(self, bus):
                self._bus = bus
                bus.subscribe("tick", self.on_tick)

            def close(self):
                self._bus.unsubscribe("tick", self.on_tick)

    Only arguments that look like callbacks count (lambdas, ``functools.partial``,
    functions or methods defined here, names like ``on_x``/``handle_x``/``x_callback``),
    so ``sock.connect(address)`` is not a registration. Registrations on ``self``
    (the instance's own registry) and module-level loops (run once) are not reported.
    """

    code = "MW401"
    name = "listener-not-removed"
    summary = "a callback registered in __init__ or a loop is never removed"

    def check(self, module: ModuleIndex) -> Iterator[RawFinding]:
        restores_signals = bool({"getsignal", "SIG_DFL", "SIG_IGN"} & module.words)
        for call in module.of(ast.Call):
            func = call.func
            if not isinstance(func, ast.Attribute):
                continue
            qualified = module.qualify(func)
            if qualified == "signal.signal":
                # One slot per signal: a handler replaces the previous one, so only a handler
                # installed per instance (in __init__) and never restored pins anything.
                if restores_signals or not isinstance(module.parent(call), ast.Expr):
                    continue  # the old handler is kept or restored
                if len(call.args) > 1 and _is_saved_handler(call.args[1]):
                    continue  # `signal.signal(sig, old_handlers[sig])`: the restore itself
                removal = "a restore of the previous handler (signal.getsignal)"
                if _in_loop(module, call):
                    continue
            elif func.attr in _REMOVERS:
                if any(name in module.words for name in _REMOVERS[func.attr]):
                    continue
                receiver = func.value
                # self.register(...): the registry is the instance's own and dies with it;
                # module.connect(...) (sqlite3, socket) opens something, it is no emitter.
                # atexit.register(...) is the exception: that registry lives forever.
                if isinstance(receiver, ast.Name) and (
                    receiver.id in ("self", "cls")
                    or module.aliases.get(receiver.id, "atexit") != "atexit"
                ):
                    continue
                if not _long_lived_emitter(module, call, receiver):
                    continue
                if not self._passes_callback(module, call):
                    continue
                removal = " / ".join(f"`{r}`" for r in _REMOVERS[func.attr][:2])
            else:
                continue
            where = self._where(module, call)
            if where is None:
                continue
            yield RawFinding(
                call,
                f"`{_source_name(func)}(...)` registers a callback {where} on an emitter that "
                f"outlives it, and nothing in this module removes it ({removal}): the emitter "
                "keeps every callback, and the object it is bound to, alive",
            )

    @staticmethod
    def _where(module: ModuleIndex, call: ast.Call) -> str | None:
        func = module.function_of(call)
        if _guarded_once(module, call):
            return None  # `if not self._registered: register(...)`: once
        if func is not None and func.name == "__init__" and module.scope_of(call) is func:
            return "in `__init__`"
        # A loop at module or class level runs once, at import: bounded by the code.
        if func is not None and _in_loop(module, call) and _varies_per_iteration(module, call):
            return "in a loop"
        return None

    @staticmethod
    def _passes_callback(module: ModuleIndex, call: ast.Call) -> bool:
        methods: set[str] = set()
        cls = module.parent(module.function_of(call) or call)
        if isinstance(cls, ast.ClassDef):
            methods = {s.name for s in cls.body if isinstance(s, FUNCS)}
        for arg in (*call.args, *(k.value for k in call.keywords)):
            if isinstance(arg, ast.Lambda):
                return True
            if isinstance(arg, ast.Call) and (module.qualify(arg.func) or "").endswith("partial"):
                return True
            name = (
                arg.id
                if isinstance(arg, ast.Name)
                else arg.attr
                if isinstance(arg, ast.Attribute)
                else None
            )
            if name is None:
                continue
            if _HANDLER_PREFIX.search(name) or _HANDLER_SUFFIX.search(name):
                return True
            if isinstance(arg, ast.Attribute) and name in methods:
                return True
            if isinstance(arg, ast.Name) and name in module.function_names:
                return True
        return False


# ---------------------------------------------------------------------------------------------
# MW501

_RESOURCES = frozenset(
    {
        "open",
        "io.open",
        "socket.socket",
        "socket.create_connection",
        "tempfile.TemporaryFile",
        "tempfile.NamedTemporaryFile",
        "tempfile.SpooledTemporaryFile",
        "sqlite3.connect",
    }
)
_CLOSERS = frozenset({"close", "__exit__", "detach", "release", "dispose"})


class UnclosedResource(Rule):
    """A file, socket, temporary file or database connection that is never closed leaks.

    ``open()``, ``socket.socket()``, ``tempfile.*File()`` and ``sqlite3.connect()``
    hold an OS handle and buffers until closed. CPython's reference counting often
    closes them late (or, in a reference cycle or on PyPy, much later), so leaked
    handles pile up under load: "Too many open files", growing RSS, locked files.

    Bad::

        data = open(path).read()
        conn = sqlite3.connect(db)
        rows = conn.execute(query).fetchall()

    Good: a ``with`` block (or ``try``/``finally: close()``)::

        with open(path) as f:
            data = f.read()
        with contextlib.closing(sqlite3.connect(db)) as conn:
            rows = conn.execute(query).fetchall()

    Not reported: a resource closed in the same scope, used in ``with``, returned
    or yielded, passed to another call (which takes ownership), or stored on an
    object whose class closes it somewhere in the module.
    """

    code = "MW501"
    name = "unclosed-resource"
    summary = "a file/socket/connection is not used as a context manager and never closed"

    def check(self, module: ModuleIndex) -> Iterator[RawFinding]:
        for call in module.of(ast.Call):
            qualified = module.qualify(call.func)
            if qualified not in _RESOURCES:
                continue
            if qualified == "open" and not module.is_builtin(call.func, "open"):
                continue
            if self._leaks(module, call):
                yield RawFinding(
                    call,
                    f"`{_source_name(call.func)}()` is not closed: use it in a `with` block "
                    "or close it in `finally`",
                )

    def _leaks(self, module: ModuleIndex, call: ast.Call) -> bool:
        parent = module.parent(call)
        if isinstance(parent, ast.Await):
            return False
        if isinstance(parent, ast.Expr):
            return True  # created and dropped
        if isinstance(parent, ast.Attribute) and parent.value is call:
            return parent.attr not in _CLOSERS and parent.attr not in ("__enter__",)
        if isinstance(parent, (ast.For, ast.AsyncFor)) and parent.iter is call:
            return True
        if isinstance(parent, (ast.Assign, ast.AnnAssign, ast.NamedExpr)):
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            # `self.f = f = open(...)`: it leaks only if no binding of it is ever managed.
            return not any(self._target_managed(module, call, target) for target in targets)
        # with-item, argument, return, yield, container, comprehension …: someone else owns it.
        return False

    @staticmethod
    def _name_managed(module: ModuleIndex, call: ast.Call, name: str) -> bool:
        scope = module.scope_of(call)
        for node in module.names_in(scope, name):
            if not isinstance(node.ctx, ast.Load):
                continue
            parent = module.parent(node)
            if isinstance(parent, ast.Attribute):
                if parent.attr in _CLOSERS or parent.attr == "__enter__":
                    return True
                continue
            if isinstance(parent, ast.withitem):
                return True
            if isinstance(parent, ast.Call) and node is not parent.func:
                return True
            if isinstance(
                parent,
                (
                    ast.keyword,
                    ast.Return,
                    ast.Yield,
                    ast.YieldFrom,
                    ast.Assign,
                    ast.AnnAssign,
                    ast.Tuple,
                    ast.List,
                    ast.Set,
                    ast.Dict,
                    ast.NamedExpr,
                ),
            ):
                return True
        return False

    def _target_managed(self, module: ModuleIndex, call: ast.Call, target: ast.AST) -> bool:
        if isinstance(target, ast.Name):
            func = module.function_of(call)
            if func is not None and target.id not in module.local_names(func):
                return True  # `global f; f = open(...)`: the module owns it now
            return self._name_managed(module, call, target.id)
        if isinstance(target, ast.Attribute):
            owner = target.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                return True  # stored on another object (`proc.stdin = open(...)`): it owns it
            return self._attribute_managed(module, target.attr)
        return True  # subscript, tuple unpacking …: stored in a structure

    @staticmethod
    def _attribute_managed(module: ModuleIndex, attr: str) -> bool:
        for node in module.of(ast.Attribute):
            if node.attr != attr or not isinstance(node.ctx, ast.Load):
                continue
            parent = module.parent(node)
            if isinstance(parent, ast.Attribute) and parent.attr in _CLOSERS:
                return True
            if isinstance(parent, (ast.withitem, ast.Return, ast.keyword, ast.NamedExpr)):
                return True
            if isinstance(parent, (ast.Tuple, ast.List)):
                parent = module.parent(parent)  # `f, self.f = self.f, None`
            if isinstance(parent, ast.Assign) and parent.value is not None:
                return True  # `f = self.f; self.f = None; f.close()`
            if isinstance(parent, ast.Call) and node is not parent.func:
                return True
        return False


# ---------------------------------------------------------------------------------------------
# MW601

_NAME_ATTRS = frozenset({"__name__", "__module__", "__qualname__"})


class LoggerPerCall(Rule):
    """``logging.getLogger(name)`` with a name built per call from data creates loggers forever.

    The logging module keeps every logger it ever created in
    ``logging.Logger.manager.loggerDict``; loggers are never freed. A name built
    from data (a request id, a user, a counter, an object's ``id``) makes one new
    logger, with its handlers and level cache, per distinct value.

    Bad::

        def handle(request):
            log = logging.getLogger(f"app.request.{request.id}")

    Good: one logger per module (or class), and the data in the record::

        log = logging.getLogger(__name__)

        def handle(request):
            log.info("handling", extra={"request_id": request.id})

    Reported only where the name is *built* in the call (an f-string, ``%``, ``+``,
    ``.format``) from a value that is not itself a name (a module, class or logger
    name). Not reported: constant names, ``__name__``, ``__module__``/``__qualname__``,
    a class's ``__name__`` (bounded by the code), a name passed through
    (``getLogger(name)``, ``getLogger(record.name)``: the caller's existing names), and
    ``getLogger()`` (the root logger).
    """

    code = "MW601"
    name = "logger-per-call"
    summary = "logging.getLogger() with a name built per call from data"

    def check(self, module: ModuleIndex) -> Iterator[RawFinding]:
        for call in module.of(ast.Call):
            if module.qualify(call.func) != "logging.getLogger":
                continue
            arg = call.args[0] if call.args else None
            for keyword in call.keywords:
                if keyword.arg == "name":
                    arg = keyword.value
            if arg is None or _constant_name(arg):
                continue
            if module.function_of(call) is None:
                continue
            data = _data_parts(arg)
            if not data:
                continue
            yield RawFinding(
                call,
                f"`getLogger({_source_name(arg)})` builds a logger name from "
                f"`{_source_name(data[0])}` on every call: one logger per distinct value, "
                "and loggers are never freed; use a module-level logger and put the data in "
                "the log record",
            )


_NAMEISH = re.compile(r"(^|_)(name|modname|qualname|module|logger|prefix|namespace)s?$", re.I)


def _nameish(expr: ast.expr) -> bool:
    """A value that is itself a name of code or of a logger (bounded by the program)."""
    if isinstance(expr, ast.Name):
        return expr.id.isupper() or bool(_NAMEISH.search(expr.id.strip("_")))
    if isinstance(expr, ast.Attribute):
        return expr.attr in _NAME_ATTRS or bool(_NAMEISH.search(expr.attr.strip("_")))
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "str":
        return len(expr.args) == 1 and _nameish(expr.args[0])
    return isinstance(expr, ast.Constant)


def _data_parts(expr: ast.expr) -> list[ast.expr]:
    """The non-name values a logger name is built from (empty: not built, or only names)."""
    parts: list[ast.expr] = []
    if isinstance(expr, ast.JoinedStr):
        parts = [v.value for v in expr.values if isinstance(v, ast.FormattedValue)]
    elif isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mod):
        right = expr.right
        parts = list(right.elts) if isinstance(right, ast.Tuple) else [right]
    elif isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        return _data_parts(expr.left) + _data_parts(expr.right) or [
            side
            for side in (expr.left, expr.right)
            if not isinstance(side, ast.BinOp | ast.JoinedStr) and not _nameish(side)
        ]
    elif (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Attribute)
        and expr.func.attr in ("format", "join")
        and isinstance(expr.func.value, ast.Constant)
    ):
        parts = [*expr.args, *(k.value for k in expr.keywords)]
    else:
        return []
    return [p for p in parts if not _nameish(p) and not _constant_name(p)]


def _constant_name(expr: ast.AST) -> bool:
    if isinstance(expr, ast.Constant):
        return True
    if isinstance(expr, ast.Name):
        return expr.id == "__name__" or expr.id.isupper()  # __name__ or a CONSTANT
    if isinstance(expr, ast.Attribute):
        return expr.attr in _NAME_ATTRS
    if isinstance(expr, ast.JoinedStr):
        return all(
            isinstance(v, ast.Constant)
            or (isinstance(v, ast.FormattedValue) and _constant_name(v.value))
            for v in expr.values
        )
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        return _constant_name(expr.left) and _constant_name(expr.right)
    return False


#: Every rule, by code, in code order.
RULES: dict[str, type[Rule]] = {
    rule.code: rule
    for rule in (
        Unparsable,
        CacheOnMethod,
        UnboundedCache,
        WholeFileRead,
        DeepClone,
        ListenerNotRemoved,
        UnclosedResource,
        LoggerPerCall,
    )
}
