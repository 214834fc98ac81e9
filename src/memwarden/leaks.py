"""Find memory leaks by calling code repeatedly and judging growth with robust statistics.

``check_leaks(fn)`` warms ``fn`` up, then runs rounds of calls with a full
``gc.collect()`` and a clean-up of the interpreter's own caches between rounds (as
CPython's ``regrtest -R`` does), and records per round: the Python heap
(tracemalloc), ``sys.getallocatedblocks()``, the number of gc-tracked objects and
the RSS (which sees native leaks that tracemalloc cannot). A signal leaks only when
it grows in (almost) every round, the Mann–Kendall trend test agrees and the growth
exceeds the signal's noise floor, so a cache that fills up and then stays flat, a
sawtooth, a one-time lazy initialisation, allocator retention after a large
temporary and reference cycles are not reported. Works on release builds.

``LeakDetector`` offers the playbook's profiler style (``snapshot(name)`` …
``detect_leaks()``), ``assert_collected`` checks that one object is gone, and
``suspect_leak`` judges a recorded time series (used by ``memwarden report``).
"""

from __future__ import annotations

import array
import contextlib
import contextvars
import ctypes
import gc
import linecache
import logging
import math
import sys
import time
import tracemalloc
import types
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from memwarden import tracing
from memwarden._stats import trend
from memwarden._units import format_size
from memwarden.exceptions import ConfigurationError
from memwarden.heapdump import live_path

__all__ = [
    "LeakDetector",
    "LeakReport",
    "LeakSuspicion",
    "SignalFigures",
    "SiteGrowth",
    "TypeGrowth",
    "abc_classes_to_clear",
    "assert_collected",
    "check_leaks",
    "check_leaks_async",
    "clear_interpreter_caches",
    "format_chain",
    "referrer_chain",
    "suspect_leak",
]

_log = logging.getLogger("memwarden.leaks")


#: Per signal: (unit, smallest per-round growth that counts, smallest total growth).
#: The floors are what a do-nothing function shows on this interpreter plus margin:
#: a page of RSS moves for reasons outside the program (allocator, tracemalloc's
#: own tables), a few blocks/objects move with interned names and freelists.
_NOISE: dict[str, tuple[str, float, float]] = {
    "python": ("bytes", 1.0, 2048.0),
    "blocks": ("blocks", 1.0, 32.0),
    "gc_objects": ("objects", 1.0, 16.0),
    "native": ("bytes", 1.0, 64 * 1024.0),
    "rss": ("bytes", 4096.0, 512 * 1024.0),
}
#: The verdict rests on these; ``gc_objects`` and ``blocks`` are reported and
#: corroborate, but a leak must show in bytes (Python heap, C heap or RSS).
_DECIDING = ("python", "native", "rss")

_TARGET_ROUND_S = 0.06
_MAX_CALLS_PER_ROUND = 100_000


@dataclass(frozen=True)
class SignalFigures:
    """One signal's figures over the measured rounds.

    Attributes:
        name: ``python`` (tracemalloc bytes), ``blocks`` (``sys.getallocatedblocks``),
            ``gc_objects`` (gc-tracked objects) or ``rss`` (resident bytes).
        unit: ``bytes``, ``blocks`` or ``objects``.
        deltas: growth in each measured round.
        growth_per_call: Theil–Sen slope per call.
        rounds_grown: how many rounds grew by more than the per-round noise floor.
        p_value: one-sided Mann–Kendall p-value of an upward trend.
        total_growth: growth from the first to the last measurement.
        leaking: this signal alone says "leak".
    """

    name: str
    unit: str
    deltas: tuple[float, ...]
    growth_per_call: float
    rounds_grown: int
    p_value: float
    total_growth: float
    leaking: bool


@dataclass(frozen=True)
class SiteGrowth:
    """An allocation site whose live memory grew.

    Attributes:
        where: ``file:line`` of the allocation (innermost frame).
        size_per_call_bytes: live bytes added per call.
        count_per_call: live blocks added per call.
        traceback: up to 8 frames, innermost last, as ``file:line``.
    """

    where: str
    size_per_call_bytes: float
    count_per_call: float
    traceback: tuple[str, ...] = ()

    @property
    def caller(self) -> str:
        """The innermost frame outside the standard library: the code to look at."""
        files = [frame.rsplit(":", 1)[0] for frame in reversed(self.traceback)]
        i = tracing.user_frame(files, skip=frozenset({"stdlib"}))
        return self.where if i is None else self.traceback[len(files) - 1 - i]


@dataclass(frozen=True)
class TypeGrowth:
    """A type whose number of live gc-tracked instances grew."""

    type_name: str
    count_per_call: float
    count_growth: int


@dataclass(frozen=True)
class LeakReport:
    """What ``check_leaks`` found.

    Attributes:
        leaked: the verdict.
        growth_per_call_bytes: live bytes added per call by the deciding signal
            (Python heap, else RSS); 0 when nothing grew.
        kind: ``"python"``, ``"native"`` (RSS grew, the Python heap did not) or ``""``.
        signals: per-signal figures.
        top_sites: sites with the most live-memory growth.
        growing_types: types whose live instance count grew.
        referrer_chain: for the top growing type, a chain from a module, class or
            thread frame to one new instance; empty when none was found.
        rounds, calls_per_round, warmup: how it was measured.
        duration_s: wall time of the check.
        name: what was checked.
    """

    leaked: bool
    growth_per_call_bytes: float
    kind: str
    signals: dict[str, SignalFigures]
    top_sites: list[SiteGrowth]
    growing_types: list[TypeGrowth]
    referrer_chain: list[str]
    rounds: int
    calls_per_round: int
    warmup: int
    duration_s: float
    name: str = ""

    @property
    def potential_leak(self) -> bool:
        """The playbook's name for ``leaked``."""
        return self.leaked

    def summary(self) -> str:
        """Return text a person can act on: the verdict, why, and where to look."""
        head = self.name or "function"
        calls = self.rounds * self.calls_per_round
        lines: list[str] = []
        if self.leaked:
            what = (
                "native memory (C heap/RSS; not seen by tracemalloc)"
                if self.kind == "native"
                else ""
            )
            lines.append(
                f"LEAK: {head} keeps {format_size(round(self.growth_per_call_bytes))} per call"
                + (f" of {what}" if what else "")
                + f" ({self.rounds} rounds x {self.calls_per_round} calls, grew in "
                + f"{self._grown_text()})."
            )
        else:
            lines.append(
                f"no leak: {head} did not grow steadily over {self.rounds} rounds x "
                f"{self.calls_per_round} calls ({calls} calls)."
            )
        for sig in self.signals.values():
            per = (
                format_size(round(sig.growth_per_call)) + "/call"
                if sig.unit == "bytes"
                else f"{sig.growth_per_call:.2f} {sig.unit}/call"
            )
            lines.append(
                f"  {sig.name:<10} {per:>16}  grew in {sig.rounds_grown}/{len(sig.deltas)} rounds"
                f"  p={sig.p_value:.3g}{'  LEAKING' if sig.leaking else ''}"
            )
        if self.leaked and self.top_sites:
            lines.append("Top allocation sites (live growth per call):")
            for site in self.top_sites[:5]:
                caller = site.caller
                lines.append(
                    f"  {site.where}: {format_size(round(site.size_per_call_bytes))}/call, "
                    f"{site.count_per_call:.2f} blocks/call"
                    + (f" (called from {caller})" if caller and caller != site.where else "")
                )
                # The stack behind it, innermost first (the largest traceback of the site).
                stack = [
                    f for f in reversed(site.traceback) if not f.startswith(tracing.PACKAGE_DIR)
                ]
                lines.extend(f"      at {frame}" for frame in stack[:6])
        if self.leaked and self.growing_types:
            lines.append("Growing types (instances per call):")
            lines.extend(
                f"  {t.type_name}: +{t.count_per_call:.2f}/call" for t in self.growing_types[:5]
            )
        if self.leaked and self.referrer_chain:
            lines.append("Who keeps one alive: " + format_chain(self.referrer_chain))
        if self.leaked and self.kind == "native":
            lines.append(
                "The Python heap is flat: look for C extensions or ctypes code that "
                "allocates without freeing (run under memray for native stacks)."
            )
        return "\n".join(lines)

    def _grown_text(self) -> str:
        parts = [
            f"{s.name} {s.rounds_grown}/{len(s.deltas)}" for s in self.signals.values() if s.leaking
        ]
        return ", ".join(parts) or "-"

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "name": self.name,
            "leaked": self.leaked,
            "kind": self.kind,
            "growth_per_call_bytes": self.growth_per_call_bytes,
            "rounds": self.rounds,
            "calls_per_round": self.calls_per_round,
            "warmup": self.warmup,
            "duration_s": self.duration_s,
            "signals": {
                name: {
                    "unit": s.unit,
                    "deltas": list(s.deltas),
                    "growth_per_call": s.growth_per_call,
                    "rounds_grown": s.rounds_grown,
                    "p_value": s.p_value,
                    "total_growth": s.total_growth,
                    "leaking": s.leaking,
                }
                for name, s in self.signals.items()
            },
            "top_sites": [
                {
                    "where": s.where,
                    "size_per_call_bytes": s.size_per_call_bytes,
                    "count_per_call": s.count_per_call,
                    "traceback": list(s.traceback),
                }
                for s in self.top_sites
            ],
            "growing_types": [
                {"type": t.type_name, "count_per_call": t.count_per_call, "count": t.count_growth}
                for t in self.growing_types
            ],
            "referrer_chain": list(self.referrer_chain),
            "summary": self.summary(),
        }


# --------------------------------------------------------------------------- noise control


def clear_interpreter_caches(abc_classes: Sequence[type] | None = None) -> None:
    """Clear caches the interpreter and stdlib keep on the program's behalf.

    The same list CPython's ``regrtest -R`` clears between runs, restricted to
    modules already imported (nothing is imported here): the method type cache,
    ABC subclass caches, ``re``/``fnmatch``/``struct``/``urllib.parse``/``typing``
    caches, ``linecache`` and the import system's finder caches. These fill on
    first use and would otherwise read as growth.

    Args:
        abc_classes: the ABCs whose caches to clear, as ``abc_classes_to_clear()``
            returns them; default: found now (walking every ABC's subclasses costs a
            few ms, so a check finds them once and reuses the list every round).
    """
    sys._clear_type_cache()
    mods = sys.modules
    for cls in abc_classes if abc_classes is not None else abc_classes_to_clear():
        with contextlib.suppress(TypeError):  # a non-ABC subclass
            cls._abc_caches_clear()  # type: ignore[attr-defined]
    linecache.clearcache()
    re_mod = mods.get("re")
    if re_mod is not None:
        re_mod.purge()
    for modname, attr in (
        ("fnmatch", "_compile_pattern"),
        ("functools", "_find_impl"),  # not an lru_cache on 3.11; skipped by hasattr
    ):
        mod = mods.get(modname)
        fn = getattr(mod, attr, None) if mod is not None else None
        clear = getattr(fn, "cache_clear", None)
        if clear is not None:
            clear()
    struct_mod = mods.get("struct")
    if struct_mod is not None and hasattr(struct_mod, "_clearcache"):
        struct_mod._clearcache()
    parse = mods.get("urllib.parse")
    if parse is not None and hasattr(parse, "clear_cache"):
        parse.clear_cache()
    typing_mod = mods.get("typing")
    if typing_mod is not None:
        for cleanup in getattr(typing_mod, "_cleanups", ()):
            cleanup()
    sys.path_importer_cache.clear()
    importlib = mods.get("importlib")
    if importlib is not None:
        importlib.invalidate_caches()


def abc_classes_to_clear() -> list[type]:
    """Every ABC of ``collections.abc`` and its subclasses that has ABC caches."""
    abc_mod = sys.modules.get("collections.abc")
    if abc_mod is None:
        return []
    import abc

    out: list[type] = []
    seen: set[int] = set()
    stack: list[type] = [
        obj
        for name in getattr(abc_mod, "__all__", ())
        if isinstance(obj := getattr(abc_mod, name, None), abc.ABCMeta)
    ]
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        if hasattr(c, "_abc_caches_clear"):
            out.append(c)
        with contextlib.suppress(TypeError):
            stack.extend(type.__subclasses__(c))
    return out


def _collect(abc_classes: Sequence[type] | None = None) -> None:
    clear_interpreter_caches(abc_classes)
    # Several passes: finalizers and weakref callbacks of the first pass free more.
    for _ in range(3):
        if gc.collect() == 0:
            break


# --------------------------------------------------------------------------- measurement


class _Recorder:
    """Takes measurements into preallocated arrays so its own bookkeeping stays flat."""

    def __init__(self, rounds: int, rss_probe: Callable[[], int]) -> None:
        n = rounds + 1
        self.rss_probe = rss_probe
        # array('d') stores raw doubles: recording a value allocates no Python object.
        self.values = {name: array.array("d", bytes(8 * n)) for name in _NOISE}
        self.n = 0
        self.abc_classes = abc_classes_to_clear()

    def record(self) -> None:
        _collect(self.abc_classes)
        i = self.n
        self.values["gc_objects"][i] = len(gc.get_objects())
        traced = tracing.traced_memory()
        self.values["python"][i] = 0 if traced is None else traced[0]
        self.values["blocks"][i] = sys.getallocatedblocks()
        self.values["native"][i] = _native_heap()
        self.values["rss"][i] = self.rss_probe()
        self.n = i + 1


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_mallinfo2: Callable[[], _MallInfo2] | None = None
_mallinfo_probed = False


def _native_heap() -> float:
    """Bytes in use in the C heap (glibc ``mallinfo2``: in-use chunks plus mmapped blocks).

    Unlike RSS this does not depend on whether freed pages were returned to the
    system, so a native leak that reuses retained pages still shows. 0 off glibc.
    """
    global _mallinfo2, _mallinfo_probed
    if not _mallinfo_probed:
        _mallinfo_probed = True
        try:
            libc = ctypes.CDLL(None)
            fn = libc.mallinfo2
            fn.restype = _MallInfo2
            fn.argtypes = []
            _mallinfo2 = fn
        except (OSError, AttributeError):  # not glibc >= 2.33
            _mallinfo2 = None
    if _mallinfo2 is None:
        return 0.0
    info = _mallinfo2()
    return float(info.uordblks + info.hblkhd)


def _signal(name: str, ys: Sequence[float], calls_per_round: int, alpha: float) -> SignalFigures:
    unit, min_delta, min_total = _NOISE[name]
    deltas = tuple(ys[i + 1] - ys[i] for i in range(len(ys) - 1))
    grown = sum(1 for d in deltas if d >= min_delta)
    tr = trend(ys, noise_floor=min_total, alpha=alpha)
    p_value = tr.p_value
    if deltas and all(d > 0 for d in deltas):
        # strictly increasing: the exact null probability is 1/n!, sharper than the
        # normal approximation on short series (5 points: 0.0083 vs 0.014)
        p_value = min(p_value, 1.0 / math.factorial(len(ys)))
    # regrtest -R asks for growth in every round; one quiet round is forgiven when
    # there are many (a leak into a dict whose resize frees the old table).
    allowed_misses = 1 if len(deltas) >= 8 else 0
    total = ys[-1] - ys[0]
    leaking = (
        p_value < alpha
        and tr.slope > 0
        and grown >= len(deltas) - allowed_misses
        and total >= min_total
        # the last half must grow too: a cache that saturates late is flat there
        and ys[-1] - ys[len(ys) // 2] >= min_total * (len(ys) - 1 - len(ys) // 2) / len(ys)
    )
    return SignalFigures(
        name=name,
        unit=unit,
        deltas=deltas,
        growth_per_call=tr.slope / calls_per_round,
        rounds_grown=grown,
        p_value=p_value,
        total_growth=total,
        leaking=leaking,
    )


def _verdict(signals: dict[str, SignalFigures]) -> tuple[bool, str, float]:
    py, native, rss_sig = signals["python"], signals["native"], signals["rss"]
    if py.leaking:
        return True, "python", py.growth_per_call
    if native.leaking:
        return True, "native", native.growth_per_call
    if rss_sig.leaking:
        return True, "native", rss_sig.growth_per_call
    return False, "", 0.0


def _type_counts() -> Counter[type]:
    # Counter's C counting loop: ~10x faster than a Python loop on a 300k-object heap
    return Counter(map(type, gc.get_objects()))


def _type_name(t: type) -> str:
    mod = getattr(t, "__module__", "builtins")
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def _site_growth(
    before: tracemalloc.Snapshot | None, after: tracemalloc.Snapshot, calls: int, limit: int = 10
) -> list[SiteGrowth]:
    # Without ``before`` the traces were cleared at the baseline: all are growth.
    # Sites are the innermost frames; the detector's own bookkeeping (its code, or
    # stdlib it called) is left out by the grouping.
    sites = tracing.by_site(
        tracing.group_traces(after, before), charge="innermost", skip=frozenset({"stdlib"})
    )
    out = []
    # a site must add at least a byte per call: one-off allocations are not the leak
    for site in [s for s in sites if s.size_bytes >= calls][:limit]:
        text = tuple(f"{f}:{n}" for f, n in reversed(site.stack[:8]))
        out.append(SiteGrowth(site.where, site.size_bytes / calls, site.count / calls, text))
    return out


def _newest_instance(t: type) -> object | None:
    # After a full collection gc.get_objects() lists the oldest generation in
    # allocation order, so the last instance is (usually) one the leak just made.
    found = None
    for obj in gc.get_objects():
        if type(obj) is t:
            found = obj
    return found


# --------------------------------------------------------------------------- referrer chains

_MAX_VISIT = 2_000_000


def referrer_chain(target: object, *, max_visit: int = _MAX_VISIT, max_s: float = 2.0) -> list[str]:
    """Return a chain of labels from a root to ``target``, or ``[]`` if none was found.

    Roots are the modules in ``sys.modules`` and the frames of other threads (as
    objgraph's ``find_backref_chain`` ends at a module). The search walks forward
    from the roots breadth-first, so the chain is a shortest one; it is bounded by
    ``max_visit`` objects and ``max_s`` seconds.
    """
    deadline = time.monotonic() + max_s
    # First the module that defines the target's type: leaks are most often held
    # by the module that made them, and a small search there is fast.
    home = sys.modules.get(getattr(type(target), "__module__", "") or "")
    if home is not None:
        found = live_path(
            target,
            roots=[home],
            max_visit=200_000,
            max_s=max(0.0, deadline - time.monotonic()),
            exclude=_is_module,
        )
        if found:
            return found
    roots: list[object] = [m for m in list(sys.modules.values()) if m is not None]
    roots.extend(
        f
        for tid, f in sys._current_frames().items()
        if tid != _current_thread_id() and f.f_code.co_filename != __file__
    )
    # The same labelled breadth-first search a heap snapshot's paths use.
    return live_path(
        target, roots=roots, max_visit=max_visit, max_s=max(0.0, deadline - time.monotonic())
    )


def _is_module(obj: object) -> bool:
    return type(obj) is types.ModuleType


def format_chain(labels: Sequence[str]) -> str:
    """Join ``referrer_chain`` labels: ``mod.attr['key'] -> <method> -> <T at 0x…>``."""
    out = ""
    for lab in labels:
        if out and not lab.startswith((".", "[")):
            out += " -> "
        out += lab
    return out


def _current_thread_id() -> int:
    import threading

    return threading.get_ident()


# --------------------------------------------------------------------------- check_leaks


@dataclass
class _Plan:
    warmup: int
    rounds: int
    calls_per_round: int | None
    alpha: float
    nframes: int
    rss_probe: Callable[[], int]
    name: str
    started: float = field(default_factory=time.perf_counter)


def _validate(warmup: int, rounds: int, calls_per_round: int | None) -> None:
    if not isinstance(rounds, int) or rounds < 4:
        raise ConfigurationError(
            f"rounds={rounds!r} (check_leaks argument): expected an int >= 4", value=rounds
        )
    if not isinstance(warmup, int) or warmup < 0:
        raise ConfigurationError(
            f"warmup={warmup!r} (check_leaks argument): expected an int >= 0", value=warmup
        )
    if calls_per_round is not None and (
        not isinstance(calls_per_round, int) or calls_per_round < 1
    ):
        raise ConfigurationError(
            f"calls_per_round={calls_per_round!r} (check_leaks argument): expected an int >= 1 "
            "or None (calibrate)",
            value=calls_per_round,
        )


def _default_rss() -> Callable[[], int]:
    from memwarden.probes import rss

    return rss


class _Session:
    """Tracing held through the tracing owner for one check (started if off, then restored)."""

    def __init__(self, nframes: int) -> None:
        self.nframes = nframes
        self.user: tracing.TraceUser | None = None
        self._token: contextvars.Token[_Session | None] | None = None

    @property
    def ours(self) -> bool:
        """This check started tracing: nothing traced before it is the check's."""
        return self.user is not None and self.user.started

    def __enter__(self) -> _Session:
        self.user = tracing.acquire(self.nframes, name="check_leaks")
        self._token = _innermost.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            # A LeakDetector may close in another context than it opened in.
            with contextlib.suppress(ValueError):
                _innermost.reset(self._token)
            self._token = None
        if self.user is not None:
            self.user.release()
            self.user = None


# The innermost open check of this thread or task (checks nest: a leak check of
# code that runs one).
_innermost: contextvars.ContextVar[_Session | None] = contextvars.ContextVar(
    "memwarden_leak_session", default=None
)


def _baseline() -> tracemalloc.Snapshot | None:
    """Start the measured rounds: clear our own traces, or snapshot a caller's session."""
    session = _innermost.get()
    if session is not None and session.ours:
        # Only blocks allocated from here on are traced: the Python-heap signal is
        # then "live memory the rounds allocated", and the final snapshot is small
        # (comparing snapshots of 100k older blocks costs seconds).
        tracing.clear_traces()
        return None
    return tracing.snapshot()


def _finish(
    plan: _Plan,
    rec: _Recorder,
    calls: int,
    snap0: tracemalloc.Snapshot | None,
    counts0: Counter[type],
) -> LeakReport:
    counts1 = _type_counts()
    total_calls = plan.rounds * calls
    signals = {name: _signal(name, rec.values[name][: rec.n], calls, plan.alpha) for name in _NOISE}
    leaked, kind, per_call = _verdict(signals)
    growth = []
    for t, c in counts1.items():
        d = c - counts0.get(t, 0)
        # at least one new instance per measured round: the detector's own few
        # objects (its arrays, this Counter) stay below that
        if d >= plan.rounds:
            growth.append(TypeGrowth(_type_name(t), d / total_calls, d))
    growth.sort(key=lambda g: g.count_growth, reverse=True)
    sites = _site_growth(snap0, tracing.snapshot(), total_calls) if leaked else []
    chain: list[str] = []
    session = _innermost.get()
    if session is not None and session.ours and session.user is not None:
        # The figures are taken: stop tracing now (the session would at exit), so the
        # referrer search's own allocations are not traced, which makes it ~3x faster.
        tracing.pause(session.user)
    if leaked and growth:
        # A program's own class says more than the list or dict that holds it.
        pick = next((g for g in growth if "." in g.type_name), growth[0])
        top_type = next((t for t in counts1 if _type_name(t) == pick.type_name), None)
        if top_type is not None:
            example = _newest_instance(top_type)
            if example is not None:
                chain = referrer_chain(example)
            del example
    del counts0, counts1
    return LeakReport(
        leaked=leaked,
        growth_per_call_bytes=max(0.0, per_call),
        kind=kind,
        signals=signals,
        top_sites=sites,
        growing_types=growth[:10],
        referrer_chain=chain,
        rounds=plan.rounds,
        calls_per_round=calls,
        warmup=plan.warmup,
        duration_s=time.perf_counter() - plan.started,
        name=plan.name,
    )


def _calls_for(per_call_s: float) -> int:
    if per_call_s <= 0:
        return _MAX_CALLS_PER_ROUND
    return max(1, min(_MAX_CALLS_PER_ROUND, round(_TARGET_ROUND_S / per_call_s)))


def _name_of(fn: Callable[..., object]) -> str:
    mod = getattr(fn, "__module__", None) or ""
    qual = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{mod}.{qual}" if mod else qual


def _check(plan: _Plan) -> Generator[int, None, LeakReport]:
    """The one leak check behind :func:`check_leaks` and :func:`check_leaks_async`.

    Yields how many calls of the code under test to make next; the caller makes them
    (plainly, or awaiting each) and resumes the generator, which measures between the
    rounds and returns the report. Closing it early (the code under test raised)
    ends the tracing session like a normal exit.
    """
    with _Session(plan.nframes):
        t0 = time.perf_counter()
        yield 1  # first call: lazy initialisation, imports
        calls = plan.calls_per_round
        if calls is None:
            n, t1 = 1, time.perf_counter()
            while n < 1000 and time.perf_counter() - t1 < 0.02:
                yield 1
                n += 1
            per_call = (time.perf_counter() - t1) / max(1, n - 1) if n > 1 else t1 - t0
            calls = _calls_for(per_call)
        for _ in range(plan.warmup):
            yield calls
        rec = _Recorder(plan.rounds, plan.rss_probe)
        _collect(rec.abc_classes)
        counts0 = _type_counts()
        snap0 = _baseline()
        rec.record()
        for _ in range(plan.rounds):
            yield calls
            rec.record()
        report = _finish(plan, rec, calls, snap0, counts0)
    _log.debug("check_leaks(%s): leaked=%s", plan.name, report.leaked)
    return report


def _plan(
    fn: Callable[..., object],
    *,
    warmup: int,
    rounds: int,
    calls_per_round: int | None,
    alpha: float,
    nframes: int,
    rss_probe: Callable[[], int] | None,
) -> _Plan:
    _validate(warmup, rounds, calls_per_round)
    return _Plan(
        warmup, rounds, calls_per_round, alpha, nframes, rss_probe or _default_rss(), _name_of(fn)
    )


def check_leaks(
    fn: Callable[..., object],
    *args: Any,
    warmup: int = 2,
    rounds: int = 8,
    calls_per_round: int | None = None,
    alpha: float = 0.01,
    nframes: int = 8,
    rss_probe: Callable[[], int] | None = None,
    **kwargs: Any,
) -> LeakReport:
    """Call ``fn(*args, **kwargs)`` repeatedly and report whether it leaks memory.

    Args:
        fn: the code under test; exceptions it raises propagate.
        warmup: rounds run before measuring (fills caches, lazy initialisation).
        rounds: measured rounds (>= 4); the verdict needs growth in nearly all of them.
        calls_per_round: calls per round; ``None`` calibrates to about 60 ms a round
            (a 100 µs function: about 600 calls, the whole check under 2 s).
        alpha: significance level of the trend test.
        nframes: tracemalloc frames kept per allocation when tracing is started here.
        rss_probe: returns RSS in bytes (injectable for tests); default ``probes.rss``.
        **kwargs: passed to ``fn``.

    Returns:
        A ``LeakReport``; ``report.leaked`` is the verdict and ``report.summary()``
        says where the memory went.

    Raises:
        ConfigurationError: ``rounds``, ``warmup`` or ``calls_per_round`` is invalid.
    """
    plan = _plan(
        fn,
        warmup=warmup,
        rounds=rounds,
        calls_per_round=calls_per_round,
        alpha=alpha,
        nframes=nframes,
        rss_probe=rss_probe,
    )
    with contextlib.closing(_check(plan)) as steps:
        calls = next(steps)
        while True:
            for _ in range(calls):
                fn(*args, **kwargs)
            try:
                calls = next(steps)
            except StopIteration as done:
                report: LeakReport = done.value
                return report


async def check_leaks_async(
    fn: Callable[..., Awaitable[object]],
    *args: Any,
    warmup: int = 2,
    rounds: int = 8,
    calls_per_round: int | None = None,
    alpha: float = 0.01,
    nframes: int = 8,
    rss_probe: Callable[[], int] | None = None,
    **kwargs: Any,
) -> LeakReport:
    """``check_leaks`` for a coroutine function: each call is ``await fn(*args, **kwargs)``.

    Runs in the caller's event loop; other tasks of that loop run between calls and
    their allocations count, so check in a quiet loop.
    """
    if not callable(fn):
        raise ConfigurationError(
            f"fn={fn!r} (check_leaks_async argument): expected a coroutine function", value=fn
        )
    plan = _plan(
        fn,
        warmup=warmup,
        rounds=rounds,
        calls_per_round=calls_per_round,
        alpha=alpha,
        nframes=nframes,
        rss_probe=rss_probe,
    )
    with contextlib.closing(_check(plan)) as steps:
        calls = next(steps)
        while True:
            for _ in range(calls):
                await fn(*args, **kwargs)
            try:
                calls = next(steps)
            except StopIteration as done:
                report: LeakReport = done.value
                return report


# --------------------------------------------------------------------------- LeakDetector


class LeakDetector:
    """The playbook's profiler-style detector: ``snapshot(name)`` between batches of work.

    With three or more snapshots the verdict is the same robust one as
    ``check_leaks`` (growth between nearly every pair of snapshots, a significant
    trend, above the noise floor). With two, it is a before/after difference
    against ``threshold_bytes``. Snapshots are bounded (``max_snapshots``; the
    oldest beyond the first are dropped).

    Example::

        detector = LeakDetector()
        for _ in range(3):
            operation()
        detector.snapshot("before")
        for _ in range(100):
            operation()
        detector.snapshot("after")
        assert not detector.detect_leaks().potential_leak
    """

    def __init__(
        self,
        *,
        threshold_bytes: int = 1 << 20,
        max_snapshots: int = 64,
        nframes: int = 8,
        rss_probe: Callable[[], int] | None = None,
    ) -> None:
        if max_snapshots < 2:
            raise ConfigurationError(
                f"max_snapshots={max_snapshots!r}: expected an int >= 2", value=max_snapshots
            )
        self.threshold_bytes = threshold_bytes
        self.max_snapshots = max_snapshots
        self._session = _Session(nframes)
        self._rss = rss_probe or _default_rss()
        self._names: list[str] = []
        self._values: list[tuple[float, ...]] = []
        self._first: tracemalloc.Snapshot | None = None
        self._last: tracemalloc.Snapshot | None = None
        self._counts0: Counter[type] | None = None
        self._started = time.perf_counter()

    @property
    def names(self) -> list[str]:
        """Names of the snapshots kept, oldest first."""
        return list(self._names)

    def snapshot(self, name: str = "") -> None:
        """Collect garbage and record every signal under ``name``."""
        if self._session.user is None or not tracing.is_tracing():
            self._session.__exit__()
            self._session.__enter__()
        _collect()
        if self._counts0 is None:
            self._counts0 = _type_counts()
        snap = tracing.snapshot()
        if self._first is None:
            self._first = snap
        else:
            self._last = snap
        self._values.append(
            (
                float((tracing.traced_memory() or (0, 0))[0]),
                float(sys.getallocatedblocks()),
                float(len(gc.get_objects())),
                _native_heap(),
                float(self._rss()),
            )
        )
        self._names.append(name or f"#{len(self._names)}")
        if len(self._values) > self.max_snapshots:
            del self._values[1], self._names[1]

    def detect_leaks(self, *, calls: int = 1) -> LeakReport:
        """Judge the snapshots taken so far.

        Args:
            calls: how many operations ran between consecutive snapshots (for the
                per-call figures).

        Raises:
            ConfigurationError: fewer than two snapshots were taken.
        """
        if len(self._values) < 2 or self._first is None or self._last is None:
            raise ConfigurationError(
                f"detect_leaks() needs two snapshots, got {len(self._values)}",
                value=len(self._values),
            )
        names = list(_NOISE)
        series = {n: [v[i] for v in self._values] for i, n in enumerate(names)}
        steps = len(self._values) - 1
        signals: dict[str, SignalFigures] = {}
        for n in names:
            ys = series[n]
            if len(ys) >= 4:
                signals[n] = _signal(n, ys, calls, 0.05 if len(ys) < 6 else 0.01)
            else:
                total = ys[-1] - ys[0]
                limit = self.threshold_bytes if _NOISE[n][0] == "bytes" else float("inf")
                signals[n] = SignalFigures(
                    n,
                    _NOISE[n][0],
                    tuple(ys[i + 1] - ys[i] for i in range(len(ys) - 1)),
                    total / (steps * calls),
                    sum(1 for i in range(len(ys) - 1) if ys[i + 1] > ys[i]),
                    1.0,
                    total,
                    total > limit,
                )
        leaked, kind, per_call = _verdict(signals)
        counts1 = _type_counts()
        counts0 = self._counts0 or Counter()
        growth = [
            TypeGrowth(_type_name(t), (c - counts0.get(t, 0)) / (steps * calls), c - counts0[t])
            for t, c in counts1.items()
            if c - counts0.get(t, 0) >= max(2, steps)
        ]
        growth.sort(key=lambda g: g.count_growth, reverse=True)
        return LeakReport(
            leaked=leaked,
            growth_per_call_bytes=max(0.0, per_call),
            kind=kind,
            signals=signals,
            top_sites=_site_growth(self._first, self._last, steps * calls),
            growing_types=growth[:10],
            referrer_chain=[],
            rounds=steps,
            calls_per_round=calls,
            warmup=0,
            duration_s=time.perf_counter() - self._started,
            name=" -> ".join((self._names[0], self._names[-1])),
        )

    def close(self) -> None:
        """Stop tracemalloc if this detector started it, and drop the snapshots."""
        self._session.__exit__()
        self._first = self._last = None
        self._values.clear()
        self._names.clear()

    def __enter__(self) -> LeakDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- assert_collected


def assert_collected(obj_or_weakref: object, *, passes: int = 3, what: str = "") -> None:
    """Assert that an object has been garbage-collected (Jest's ``--detectLeaks``, but exact).

    Pass a ``weakref.ref`` to an object whose last strong reference you dropped, or
    the object itself when the call's argument is its only reference
    (``assert_collected(make())``). After ``passes`` gc passes the object must be
    gone; otherwise the ``AssertionError`` shows who keeps it alive.

    Raises:
        AssertionError: the object is still alive; the message has a referrer chain.
        ConfigurationError: the object cannot be weakly referenced.
    """
    if isinstance(obj_or_weakref, weakref.ReferenceType):
        ref = obj_or_weakref
    else:
        try:
            ref = weakref.ref(obj_or_weakref)
        except TypeError as exc:
            raise ConfigurationError(
                f"assert_collected({type(obj_or_weakref).__name__} object): it does not "
                "support weak references; pass an object with __weakref__ or a weakref.ref",
                value=type(obj_or_weakref).__name__,
            ) from exc
        del obj_or_weakref
    for _ in range(max(1, passes)):
        if ref() is None:
            return
        gc.collect()
    if ref() is None:
        return
    target = ref()
    chain = referrer_chain(target) if target is not None else []
    label = what or (f"{type(target).__name__} object" if target is not None else "object")
    n = sys.getrefcount(target) - 2 if target is not None else 0
    del target
    if chain:
        raise AssertionError(
            f"{label} is still alive after {passes} gc passes; kept by: " + format_chain(chain)
        )
    raise AssertionError(
        f"{label} is still alive after {passes} gc passes ({n} references; none reachable "
        "from a module or another thread: a local variable of a running frame holds it?)"
    )


# --------------------------------------------------------------------------- time series


@dataclass(frozen=True)
class LeakSuspicion:
    """The leak detector's judgement of a memory time series.

    Attributes:
        suspected: the series rises steadily (significant upward trend, growth
            above ``noise_floor_bytes``, its floor rising, not only its peaks).
        slope_bytes_per_s: Theil–Sen slope.
        tau: Mann–Kendall S/pairs in [-1, 1].
        p_value: one-sided p-value of an upward trend.
        total_growth_bytes: slope times the span.
        floor_growth_bytes: lowest value of the last quarter minus lowest of the first.
        points: samples used.
        reason: one sentence saying why.
    """

    suspected: bool
    slope_bytes_per_s: float
    tau: float
    p_value: float
    total_growth_bytes: float
    floor_growth_bytes: float
    points: int
    reason: str


def suspect_leak(
    times_s: Sequence[float],
    values_bytes: Sequence[float],
    *,
    noise_floor_bytes: float = 1 << 20,
    alpha: float = 0.01,
) -> LeakSuspicion:
    """Judge whether a memory series (e.g. RSS samples) looks like a leak.

    Args:
        times_s: sample times in seconds, increasing.
        values_bytes: samples in bytes, as long as ``times_s``.
        noise_floor_bytes: growth over the span at or below this is not growth.
        alpha: significance level of the Mann–Kendall test.

    Raises:
        ConfigurationError: the sequences differ in length.
    """
    if len(times_s) != len(values_bytes):
        raise ConfigurationError(
            f"times_s has {len(times_s)} samples but values_bytes has {len(values_bytes)}",
            value=(len(times_s), len(values_bytes)),
        )
    n = len(values_bytes)
    if n < 8:
        return LeakSuspicion(False, 0.0, 0.0, 1.0, 0.0, 0.0, n, f"too few samples ({n} < 8)")
    tr = trend(values_bytes, times_s, noise_floor=noise_floor_bytes, alpha=alpha)
    q = max(2, n // 4)
    floor_growth = float(min(values_bytes[-q:]) - min(values_bytes[:q]))
    suspected = tr.growing and floor_growth > noise_floor_bytes / 2
    if suspected:
        reason = (
            f"rises {format_size(round(tr.slope))}/s (p={tr.p_value:.2g}); its floor rose "
            f"{format_size(round(floor_growth))}"
        )
    elif not tr.growing:
        reason = (
            f"no significant growth (p={tr.p_value:.2g}, total "
            f"{format_size(round(max(0.0, tr.total_growth)))})"
        )
    else:
        reason = "peaks rise but the floor does not (sawtooth or cache filling)"
    return LeakSuspicion(
        suspected, tr.slope, tr.tau, tr.p_value, tr.total_growth, floor_growth, tr.points, reason
    )
