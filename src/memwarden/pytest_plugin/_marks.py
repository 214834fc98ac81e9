"""The plugin's markers and the measurement behind them (tracemalloc and the leak detector).

Each marker is a function whose signature is the marker's (checked at
collection, so a bad argument is a usage error before any test runs) and whose
docstring is its ``--markers`` help. A failed check returns a ``MemoryProblem``
that the report hook shows.
"""

from __future__ import annotations

import ast
import gc
import inspect
import os
import sys
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memwarden import tracing
from memwarden._units import SizeLike, format_size, parse_size
from memwarden.exceptions import ConfigurationError
from memwarden.testing import Stack, StackFrame

__all__ = [
    "MARKERS",
    "Measurement",
    "MemoryProblem",
    "limit_leaks",
    "limit_memory",
    "no_leaks",
    "validate",
]

#: Frames per allocation for limit_leaks: enough to see past the stdlib to the code
#: that called it, and for filter functions to look at callers.
NFRAMES = 8
#: Frames when only the peak is wanted: each frame recorded costs (1 frame: ~20x
#: slower allocation than untraced, 16 frames: ~70x).
NFRAMES_PEAK = 1


def belongs_to_runner(frames: tracemalloc.Traceback) -> bool:
    """True when the innermost frame outside the stdlib is the runner's (pytest, memwarden…).

    Such allocations (pytest's capture buffers, pluggy's hook results, memwarden's
    own bookkeeping, xdist's channel threads) are not the test's; only stdlib
    frames means interpreter or runner machinery, not test code.
    """
    files = [f.filename for f in reversed(frames)]  # tracemalloc orders oldest first
    i = tracing.user_frame(files, skip=frozenset({"stdlib"}))
    if i is None or tracing.frame_kind(files[i]) in ("runner", "memwarden"):
        return True
    # A library's callback run by memwarden itself (a gc callback during the plugin's
    # own gc.collect()): memwarden on the stack and no frame of the test's code.
    kinds = {tracing.frame_kind(f) for f in files}
    return "memwarden" in kinds and "user" not in kinds


# ----------------------------------------------------------------------------- markers


@dataclass(frozen=True)
class MemoryProblem:
    """A failed memory check: the report section's title and its text."""

    title: str
    text: str
    kind: str  # "limit_memory" | "limit_leaks" | "no_leaks"


def limit_memory(limit: SizeLike, *, current_thread_only: bool = False) -> dict[str, Any]:
    """limit_memory(limit, current_thread_only=False): fail the test when the peak memory it
    allocates (Python heap via tracemalloc, numpy buffers included) exceeds ``limit``
    (``"24 MB"``, ``"1.5 MiB"``, bytes). Same signature as pytest-memray's marker.
    ``current_thread_only`` is accepted for compatibility: tracemalloc cannot tell threads
    apart, so every thread's allocations count (a test passing with all threads also
    passes with one).
    """
    return {
        "limit_bytes": parse_size(limit, source="limit_memory marker"),
        # quoted as written in failures ("1 MB", not "976.6 KiB")
        "limit_text": limit.strip() if isinstance(limit, str) else None,
    }


def limit_leaks(
    location_limit: SizeLike, *, filter_fn: Callable[[Stack], bool] | None = None
) -> dict[str, Any]:
    """limit_leaks(location_limit, filter_fn=None): fail the test when memory it allocated
    and still alive at its end (after gc) exceeds ``location_limit``. ``filter_fn(stack)``
    gets each leaking allocation's stack (pytest-memray's ``Stack``: ``frames`` most recent
    first, each with ``function``, ``filename``, ``lineno``) and returns False to exclude it.
    Allocations made by pytest and memwarden themselves are not the test's: an empty test or
    one that only prints passes even at ``"1 B"``.
    """
    if filter_fn is not None and not callable(filter_fn):
        raise ConfigurationError(
            f"limit_leaks(filter_fn={filter_fn!r}): expected a callable taking a Stack",
            value=filter_fn,
        )
    return {
        "limit_bytes": parse_size(location_limit, source="limit_leaks marker"),
        "filter_fn": filter_fn,
    }


def no_leaks(
    *, rounds: int = 8, calls_per_round: int | None = None, warmup: int = 2
) -> dict[str, Any]:
    """no_leaks(rounds=8, calls_per_round=None, warmup=2): rerun the test body with the same
    fixture values in rounds (memwarden.leaks.check_leaks: gc and interpreter-cache clean-up
    between rounds, robust trend statistics on the Python heap, C heap and RSS) and fail when
    it leaks. ``calls_per_round=None`` calibrates to about 60 ms per round. Fixtures are set up
    once, so a test body that mutates a fixture grows it each call.
    """
    if not isinstance(rounds, int) or rounds < 4:
        raise ConfigurationError(f"no_leaks(rounds={rounds!r}): expected an int >= 4", value=rounds)
    if calls_per_round is not None and (
        not isinstance(calls_per_round, int) or calls_per_round < 1
    ):
        raise ConfigurationError(
            f"no_leaks(calls_per_round={calls_per_round!r}): expected an int >= 1 or None",
            value=calls_per_round,
        )
    if not isinstance(warmup, int) or warmup < 0:
        raise ConfigurationError(f"no_leaks(warmup={warmup!r}): expected an int >= 0", value=warmup)
    return {"rounds": rounds, "calls_per_round": calls_per_round, "warmup": warmup}


MARKERS: dict[str, Callable[..., dict[str, Any]]] = {
    "limit_memory": limit_memory,
    "limit_leaks": limit_leaks,
    "no_leaks": no_leaks,
}


def validate(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check a marker's arguments against its signature and parse them.

    Raises:
        ConfigurationError: wrong arguments or an invalid value; the message names both.
    """
    fn = MARKERS[name]
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigurationError(
            f"@pytest.mark.{name}{_call_text(args, kwargs)}: {exc}; "
            f"expected {name}{inspect.signature(fn)}",
            value=(args, kwargs),
        ) from exc
    try:
        return fn(*args, **kwargs)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"@pytest.mark.{name}{_call_text(args, kwargs)}: {exc}", value=(args, kwargs)
        ) from exc


def _call_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return "(" + ", ".join(parts) + ")"


# ----------------------------------------------------------------------------- measurement


class Measurement:
    """Tracemalloc around one test's call phase: its peak, and what it left alive.

    If tracemalloc already runs (``-X tracemalloc``, a fixture), it is reused and
    left running: the peak is then relative to the traced memory at the start and
    leaks come from a snapshot difference.
    """

    def __init__(
        self,
        *,
        want_leaks: bool,
        limit_bytes: int | None = None,
        leak_limit_bytes: int | None = None,
        filter_fn: Callable[[Stack], bool] | None = None,
        test_file: str | None = None,
    ) -> None:
        self.want_leaks = want_leaks
        self.test_file = test_file
        #: The sampled stacks behind the peak, when the limit was exceeded.
        self.peak_stacks: list[PeakStack] = []
        self._sampler: tracing.SamplerUser | None = None
        self.limit_bytes = limit_bytes
        self.leak_limit_bytes = leak_limit_bytes
        self.filter_fn = filter_fn
        self.ours = False
        self._user: tracing.TraceUser | None = None
        self.start_bytes = 0
        self.peak_bytes = 0
        self.snapshot: tracemalloc.Snapshot | None = None
        self._before: tracemalloc.Snapshot | None = None
        # The last _leaks result: stop() and the judging hook ask for the same one.
        self._last: tuple[object, object, list[tuple[tracemalloc.Traceback, int, int]]] | None = (
            None
        )

    def start(self) -> None:
        if self.limit_bytes is not None:
            # Before tracemalloc starts: the sampler's hook must sit below its hook.
            self._sampler = _peak_sampler()
        nframes = NFRAMES if self.want_leaks else NFRAMES_PEAK
        outer = tracing.is_tracing()
        self._user = tracing.acquire(nframes, name="pytest marker", reset_peak=not outer)
        if outer:
            if self.want_leaks or self.limit_bytes is not None:
                self._before = tracemalloc.take_snapshot()
            self._user.reset_peak()  # after the snapshot: its cost is not the test's
        self.ours = self._user.started
        if self._sampler is not None:
            self._sampler.profiler.reset_peak()
        self.start_bytes = self._user.base_bytes

    def stop(self) -> None:
        user, self._user = self._user, None
        if user is None:
            return
        if not tracing.is_tracing():  # the test stopped it: nothing to report
            user.release()
            self.ours = False
            return
        self.peak_bytes = user.peak_bytes()
        over = self.limit_bytes is not None and self.peak_bytes > self.limit_bytes
        if over and self._sampler is not None:
            try:
                self.peak_stacks = _stacks_behind(self._sampler.profiler.peak(), self.test_file)
            except Exception:  # the sampled attribution is a bonus; the verdict stands
                self.peak_stacks = []
        if self.want_leaks or over:
            # Over the limit: what is still alive is the best tracemalloc can show
            # of where the peak came from. The test's garbage is young: collecting
            # generations 0-1 is enough in most tests and costs far less than a full
            # collection of pytest's heap; ``full_collect`` follows if needed.
            gc.collect(1)
            self.snapshot = tracemalloc.take_snapshot()
            if self.want_leaks and (
                sum(size for _, size, _ in self._leaks(self.filter_fn))
                > (self.leak_limit_bytes or 0)
            ):
                gc.collect()  # older garbage too, before calling it a leak
                self.snapshot = tracemalloc.take_snapshot()
        user.release()
        self.ours = False

    def top_sites(self, n: int = 5) -> list[tuple[str, int]]:
        """Largest allocation sites alive at the end (file:line, bytes), test code only."""
        return [(_where(tb), size) for tb, size, _ in self._leaks(None)[:n]]

    def leaks(
        self, filter_fn: Callable[[Stack], bool] | None
    ) -> list[tuple[tracemalloc.Traceback, int, int]]:
        """The test's live allocations at its end: ``(traceback, bytes, blocks)``."""
        return self._leaks(filter_fn)

    def _leaks(
        self, filter_fn: Callable[[Stack], bool] | None
    ) -> list[tuple[tracemalloc.Traceback, int, int]]:
        if self.snapshot is None:
            return []
        if self._last is not None and self._last[0] is self.snapshot and self._last[1] is filter_fn:
            return self._last[2]
        if self._before is not None:
            stats = [
                (d.traceback, d.size_diff, d.count_diff)
                for d in self.snapshot.compare_to(self._before, "traceback")
                if d.size_diff > 0
            ]
        else:
            stats = [(s.traceback, s.size, s.count) for s in self.snapshot.statistics("traceback")]
        out = []
        for tb, size, count in stats:
            if belongs_to_runner(tb):
                continue
            if filter_fn is not None and not filter_fn(to_stack(tb)):
                continue
            out.append((tb, size, count))
        out.sort(key=lambda x: x[1], reverse=True)
        self._last = (self.snapshot, filter_fn, out)
        return out


def _where(tb: tracemalloc.Traceback) -> str:
    """The innermost frame outside the stdlib (the test's line), else the innermost."""
    frames = list(reversed(tb))
    if not frames:
        return "?"
    i = tracing.user_frame([f.filename for f in frames], skip=frozenset({"stdlib"}))
    frame = frames[0 if i is None else i]
    return f"{frame.filename}:{frame.lineno}"


@dataclass(frozen=True)
class PeakStack:
    """A sampled stack alive at the test's peak: its line in the test first, then the stack.

    Attributes:
        where: ``file:line`` of the test's own frame (the innermost frame in the
            test's file), else the innermost frame in user code.
        size_bytes: estimated bytes at the peak.
        error_bytes: one standard error of the estimate.
        frames: ``function (file:line)``, innermost first (at most 6).
    """

    where: str
    size_bytes: int
    error_bytes: int
    frames: tuple[str, ...]


#: Mean bytes between samples while limit_memory tests run: fine enough for a
#: one-megabyte limit, a few percent of cost.
PEAK_SAMPLE_INTERVAL = 64 * 1024

_sampler_state: dict[str, Any] = {"user": None, "tried": False}


def _peak_sampler() -> tracing.SamplerUser | None:
    """The session's sampling profiler, started on first use if memwarden can start it here.

    Only a profiler this plugin started is used: resetting its peak per test
    would disturb a profile someone else is taking (``memwarden run pytest``).
    """
    # Opt-in for now: with the sampler under tracemalloc, in-process pytester
    # sessions hung in testing; until that is understood the default stays the
    # sites still alive at the end.
    if os.environ.get("MEMWARDEN_PYTEST_PEAK_PROFILE") != "1":
        return None
    if not _sampler_state["tried"]:
        _sampler_state["tried"] = True
        user = tracing.acquire_sampler(PEAK_SAMPLE_INTERVAL, 32)
        if user is not None and not user.started:
            user.release()
            user = None
        _sampler_state["user"] = user
    user = _sampler_state["user"]
    return user if isinstance(user, tracing.SamplerUser) else None


def release_peak_sampler() -> None:
    """Stop the session's sampling profiler (at the end of the session)."""
    user = _sampler_state["user"]
    if isinstance(user, tracing.SamplerUser):
        user.release()
    _sampler_state.update(user=None, tried=False)


def _stacks_behind(profile: Any, test_file: str | None, n: int = 5) -> list[PeakStack]:
    """The largest sampled stacks of the test at the peak, charged to the test's own line."""
    acc: dict[str, list[Any]] = {}
    for sample in profile.stacks:
        frames = sample.frames
        files = [f.filename for f in frames]
        mine = [i for i, f in enumerate(files) if test_file is not None and f == test_file]
        if mine:
            i = mine[0]
        else:
            found = tracing.user_frame(files)
            if found is None:
                continue  # the runner's or memwarden's own memory
            i = found
        key = f"{files[i]}:{frames[i].lineno}"
        entry = acc.get(key)
        if entry is None:
            acc[key] = [sample.size_bytes, sample.variance, frames, sample.size_bytes]
        else:
            entry[0] += sample.size_bytes
            entry[1] += sample.variance
            if sample.size_bytes > entry[3]:
                entry[2], entry[3] = frames, sample.size_bytes
    ranked = sorted(acc.items(), key=lambda kv: -kv[1][0])[:n]
    return [
        PeakStack(
            where,
            int(size),
            int(variance**0.5),
            tuple(f"{f.function} ({f.filename}:{f.lineno})" for f in frames[:6]),
        )
        for where, (size, variance, frames, _) in ranked
        if size > 0
    ]


_FUNC_CACHE: OrderedDict[str, list[tuple[int, int, str]]] = OrderedDict()
_FUNC_CACHE_SIZE = 256


def function_at(filename: str, lineno: int) -> str:
    """Name of the function enclosing ``filename:lineno`` (tracemalloc records no names)."""
    spans = _FUNC_CACHE.get(filename)
    if spans is None:
        spans = []
        try:
            tree = ast.parse(Path(filename).read_text(encoding="utf-8", errors="replace"))
        except (OSError, SyntaxError, ValueError):
            spans = [(-1, -1, "???")]
        else:
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    spans.append((node.lineno, node.end_lineno or node.lineno, node.name))
        _FUNC_CACHE[filename] = spans
        if len(_FUNC_CACHE) > _FUNC_CACHE_SIZE:
            _FUNC_CACHE.popitem(last=False)
    if spans and spans[0][0] == -1:
        return "???"
    best = "<module>"
    best_len = 1 << 30
    for start, end, name in spans:
        if start <= lineno <= end and end - start < best_len:
            best, best_len = name, end - start
    return best


def to_stack(tb: tracemalloc.Traceback) -> Stack:
    """A pytest-memray style ``Stack`` (most recent frame first) from a tracemalloc traceback."""
    return Stack(
        tuple(
            StackFrame(function_at(f.filename, f.lineno), f.filename, f.lineno)
            for f in reversed(tb)
        )
    )


def limit_memory_problem(
    m: Measurement, limit_bytes: int, source: str, limit_text: str | None = None
) -> MemoryProblem | None:
    """The failure of a ``limit_memory`` check, or None when the peak is within the limit."""
    if m.peak_bytes <= limit_bytes:
        return None
    lines = [
        f"Test was limited to {limit_text or format_size(limit_bytes)} ({source}) but allocated "
        f"{format_size(m.peak_bytes)} at its peak (Python heap, tracemalloc).",
    ]
    if m.peak_stacks:
        lines.append("Allocations behind the peak (sampling profile, the test's line first):")
        for st in m.peak_stacks:
            err = f" ± {format_size(st.error_bytes)}" if st.error_bytes else ""
            lines.append(f"    {st.where}: {format_size(st.size_bytes)}{err}")
            lines.extend(f"        {frame}" for frame in st.frames)
        return MemoryProblem("memory limit exceeded", "\n".join(lines), "limit_memory")
    sites = m.top_sites()
    if sites:
        lines.append("Largest allocation sites still alive at the end of the test:")
        lines.extend(f"    {where}: {format_size(size)}" for where, size in sites)
    else:
        lines.append(
            "Nothing it allocated is alive at the end: the peak came from temporaries "
            "(run the test body under `memwarden.budget.memory_budget` to see the sites)."
        )
    return MemoryProblem("memory limit exceeded", "\n".join(lines), "limit_memory")


def limit_leaks_problem(
    m: Measurement, limit_bytes: int, filter_fn: Callable[[Stack], bool] | None
) -> tuple[MemoryProblem | None, int]:
    """The failure of a ``limit_leaks`` check (or None) and the leaked bytes."""
    leaks = m.leaks(filter_fn)
    leaked = sum(size for _, size, _ in leaks)
    if leaked <= limit_bytes:
        return None, leaked
    lines = [
        f"Test leaked {format_size(leaked)}, more than its limit of {format_size(limit_bytes)}: "
        "memory allocated during the test and still alive at its end (after gc).",
        "Leaking allocation sites:",
    ]
    for tb, size, count in leaks[:5]:
        stack = to_stack(tb)
        lines.append(f"    {_where(tb)}: {format_size(size)} in {count} block(s)")
        lines.extend(
            f"        {fr.function} at {fr.filename}:{fr.lineno}" for fr in stack.frames[:6]
        )
    tracer = sys.gettrace()
    if tracer is not None:
        lines.append(
            f"Note: a trace function is active ({type(tracer).__module__}, e.g. coverage): "
            "it allocates data the first time each line runs, attributed to the test; "
            "allow a few KiB for it or run memory tests without it."
        )
    return MemoryProblem("memory leaked", "\n".join(lines), "limit_leaks"), leaked
