"""The corpus cases: each models one cause of leaks (or of apparent growth) in real programs."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import itertools
import logging
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

Fn = Callable[[], object]
Factory = Callable[[], tuple[Fn, Fn]]


@dataclass(frozen=True)
class Case:
    """One corpus entry: ``name``, whether it leaks, how to build it, what kind of memory."""

    name: str
    leaks: bool
    factory: Factory
    native: bool = False


def _noop() -> None:
    return None


def _work(n: int = 30) -> int:
    # a little honest CPU work so each call looks like a small request handler
    return sum(i * i for i in range(n))


# ----------------------------------------------------------------------------- leaks


def logger_per_request() -> tuple[Fn, Fn]:
    """A logger named after each request id: logging.Manager keeps every one forever."""
    counter = itertools.count()

    def handle() -> None:
        log = logging.getLogger(f"corpus.request.{next(counter)}")
        log.debug("handled")

    def cleanup() -> None:
        manager = logging.Logger.manager
        for name in [n for n in manager.loggerDict if n.startswith("corpus.request")]:
            del manager.loggerDict[name]
        logging.Logger.manager._clear_cache()

    return handle, cleanup


def unique_warning_messages() -> tuple[Fn, Fn]:
    """A warning whose text embeds a value: the caller's __warningregistry__ keeps every text."""
    counter = itertools.count()
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("default")
    warnings.showwarning = lambda *a, **k: None  # restored by the context's exit

    def handle() -> None:
        warnings.warn(f"value {next(counter)} is deprecated", UserWarning, stacklevel=1)

    def cleanup() -> None:
        ctx.__exit__(None, None, None)
        globals().pop("__warningregistry__", None)

    return handle, cleanup


class _Handler:
    def __init__(self, payload: int) -> None:
        self.payload = payload
        self.buffer = bytes(64)

    @functools.cache  # noqa: B019 - the leak under test
    def compute(self, x: int) -> int:
        return self.payload * x


def lru_cache_on_method() -> tuple[Fn, Fn]:
    """lru_cache on a method, called on a new instance per request: the cache keeps them all."""
    counter = itertools.count()

    def handle() -> None:
        _Handler(next(counter)).compute(2)

    return handle, _Handler.compute.cache_clear


_ERRORS: list[BaseException] = []


def stored_exceptions() -> tuple[Fn, Fn]:
    """Exceptions kept for later reporting: each holds its traceback, frames and their locals."""

    def parse(data: bytes) -> None:
        scratch = bytearray(data) * 4  # a local the kept frame holds on to
        raise ValueError(f"bad input of {len(scratch)} bytes")

    def handle() -> None:
        try:
            parse(b"x" * 64)
        except ValueError as exc:
            _ERRORS.append(exc)

    return handle, _ERRORS.clear


class _EventBus:
    def __init__(self) -> None:
        self.listeners: list[Callable[[str], None]] = []

    def subscribe(self, fn: Callable[[str], None]) -> None:
        self.listeners.append(fn)

    def unsubscribe(self, fn: Callable[[str], None]) -> None:
        self.listeners.remove(fn)


BUS = _EventBus()


class _Widget:
    def __init__(self) -> None:
        self.state = [0] * 8

    def on_event(self, name: str) -> None:
        self.state[0] += 1


def listeners_never_removed() -> tuple[Fn, Fn]:
    """A widget per request subscribes to a global bus and never unsubscribes."""

    def handle() -> None:
        w = _Widget()
        BUS.subscribe(w.on_event)

    return handle, BUS.listeners.clear


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free.restype = None
    return libc


_NATIVE_BYTES = 2048
_NATIVE_SLOTS = 60_000


def native_malloc_without_free() -> tuple[Fn, Fn]:
    """C memory (ctypes malloc, used, never freed): invisible to tracemalloc, seen in RSS."""
    libc = _libc()
    # The pointers are parked in a preallocated C array (not a Python list) so the
    # leak stays purely native, and cleanup can free them.
    slots = (ctypes.c_void_p * _NATIVE_SLOTS)()
    state = [0]

    def handle() -> None:
        p = libc.malloc(_NATIVE_BYTES)
        ctypes.memset(p, 1, _NATIVE_BYTES)
        i = state[0]
        if i < _NATIVE_SLOTS:
            slots[i] = p
            state[0] = i + 1
        _work(200)

    def cleanup() -> None:
        for i in range(state[0]):
            libc.free(slots[i])
        state[0] = 0

    return handle, cleanup


_SESSIONS: dict[str, dict[str, object]] = {}


def unbounded_module_dict() -> tuple[Fn, Fn]:
    """A module-level dict keyed by session id that nothing ever evicts."""
    counter = itertools.count()

    def handle() -> None:
        sid = f"session-{next(counter)}"
        _SESSIONS[sid] = {"user": sid, "items": [1, 2, 3]}

    return handle, _SESSIONS.clear


def closure_in_global_list() -> tuple[Fn, Fn]:
    """Callbacks (closures over request data) appended to a retry queue that is never drained."""
    retry: list[Callable[[], int]] = []
    counter = itertools.count()

    def handle() -> None:
        data = list(range(8))
        n = next(counter)
        retry.append(lambda: n + len(data))

    return handle, retry.clear


# ----------------------------------------------------------------------------- look-alikes


def bounded_cache_saturating() -> tuple[Fn, Fn]:
    """lru_cache(maxsize=256) over many keys: fills during warm-up, then evicts as it adds."""
    counter = itertools.count()

    @functools.lru_cache(maxsize=256)
    def lookup(key: int) -> tuple[int, ...]:
        return tuple(range(key % 7, key % 7 + 5))

    def handle() -> None:
        lookup(next(counter) % 10_000)

    return handle, lookup.cache_clear


def deque_with_maxlen() -> tuple[Fn, Fn]:
    """Recent events in a deque(maxlen=500): bounded by construction."""
    recent: deque[dict[str, int]] = deque(maxlen=500)
    counter = itertools.count()

    def handle() -> None:
        recent.append({"id": next(counter)})

    return handle, recent.clear


class _Thing:
    def __init__(self, n: int) -> None:
        self.n = n


def weak_value_cache() -> tuple[Fn, Fn]:
    """A WeakValueDictionary cache of objects nobody else holds: entries vanish."""
    cache: weakref.WeakValueDictionary[int, _Thing] = weakref.WeakValueDictionary()
    counter = itertools.count()

    def handle() -> None:
        k = next(counter)
        t = _Thing(k)
        cache[k] = t
        _work()

    return handle, cache.clear


def sawtooth_buffer() -> tuple[Fn, Fn]:
    """A batch buffer that grows to 700 items, then is flushed: rises and falls forever."""
    buf: list[bytes] = []

    def handle() -> None:
        buf.append(b"x" * 100)
        if len(buf) >= 700:
            buf.clear()

    return handle, buf.clear


def temporaries() -> tuple[Fn, Fn]:
    """Large short-lived structures built and dropped in each call."""

    def handle() -> None:
        rows = [{"i": i, "s": str(i)} for i in range(200)]
        blob = bytes(200_000)
        del rows, blob

    return handle, _noop


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None
        self.data = [0] * 16


def reference_cycles() -> tuple[Fn, Fn]:
    """Objects in reference cycles, unreachable after each call: the collector frees them."""

    def handle() -> None:
        a, b = _Node(), _Node()
        a.other, b.other = b, a

    return handle, _noop


def threads_started_and_joined() -> tuple[Fn, Fn]:
    """A worker thread per request, always joined: stacks and arenas are reused, not leaked."""

    def handle() -> None:
        t = threading.Thread(target=_work, args=(100,))
        t.start()
        t.join()

    return handle, _noop


def native_malloc_and_free() -> tuple[Fn, Fn]:
    """C memory allocated, used and freed in the same call."""
    libc = _libc()

    def handle() -> None:
        p = libc.malloc(_NATIVE_BYTES)
        ctypes.memset(p, 1, _NATIVE_BYTES)
        libc.free(p)
        _work(200)

    return handle, _noop


_LAZY: dict[str, object] = {}


def lazy_initialisation() -> tuple[Fn, Fn]:
    """A big table built on first use only."""

    def handle() -> None:
        if "table" not in _LAZY:
            _LAZY["table"] = {i: str(i) for i in range(50_000)}
        _work()

    return handle, _LAZY.clear


_RETAIN: list[object] = []


def allocator_retention() -> tuple[Fn, Fn]:
    """Every 50th call a ~10 MB burst of small objects, then freed: the allocator may keep pages."""
    counter = itertools.count()

    def handle() -> None:
        if next(counter) % 50 == 0:
            burst = [str(i) * 3 for i in range(100_000)]
            del burst
        _work()

    return handle, _noop


def bounded_key_space_dict() -> tuple[Fn, Fn]:
    """A module dict keyed by one of 100 tenants: it stops growing when all are seen."""
    table: dict[str, list[int]] = {}
    counter = itertools.count()

    def handle() -> None:
        tenant = f"tenant-{next(counter) % 100}"
        table[tenant] = [1, 2, 3]

    return handle, table.clear


def interned_strings_and_regex() -> tuple[Fn, Fn]:
    """re.compile over a few patterns and str formatting: stdlib caches saturate."""
    import re

    counter = itertools.count()

    def handle() -> None:
        n = next(counter) % 20
        re.compile(rf"item-{n}-(\d+)").match(f"item-{n}-42")

    return handle, _noop


LEAKS = [
    Case("logger_per_request", True, logger_per_request),
    Case("unique_warning_messages", True, unique_warning_messages),
    Case("lru_cache_on_method", True, lru_cache_on_method),
    Case("stored_exceptions", True, stored_exceptions),
    Case("listeners_never_removed", True, listeners_never_removed),
    Case("native_malloc_without_free", True, native_malloc_without_free, native=True),
    Case("unbounded_module_dict", True, unbounded_module_dict),
    Case("closure_in_global_list", True, closure_in_global_list),
]

NOT_LEAKS = [
    Case("bounded_cache_saturating", False, bounded_cache_saturating),
    Case("deque_with_maxlen", False, deque_with_maxlen),
    Case("weak_value_cache", False, weak_value_cache),
    Case("sawtooth_buffer", False, sawtooth_buffer),
    Case("temporaries", False, temporaries),
    Case("reference_cycles", False, reference_cycles),
    Case("threads_started_and_joined", False, threads_started_and_joined),
    Case("native_malloc_and_free", False, native_malloc_and_free, native=True),
    Case("lazy_initialisation", False, lazy_initialisation),
    Case("allocator_retention", False, allocator_retention),
    Case("bounded_key_space_dict", False, bounded_key_space_dict),
    Case("interned_strings_and_regex", False, interned_strings_and_regex),
]
