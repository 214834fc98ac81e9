"""Memory budgets for blocks of code, and hard process limits around ``setrlimit``.

``memory_budget(limit)`` is a context manager and a decorator. In ``python`` mode it
measures the exact Python-heap peak of the block with tracemalloc (numpy reports its
buffers to tracemalloc, so they count); in ``rss`` mode it uses RSS, sampled by a
monitor or a small sampler of its own, plus the kernel's own peak (``VmHWM``) when
the block set a new one. A block over budget raises
:class:`~memwarden.exceptions.MemoryBudgetExceededError` (a ``MemoryError``) with its
peak, the limit and the top allocation sites, or warns with
:class:`~memwarden.exceptions.MemoryPressureWarning`. ``budget.check()`` lets a long
loop fail early.

``set_process_limit(limit)`` sets ``RLIMIT_DATA`` (heap and anonymous mmaps on Linux
>= 4.7) or ``RLIMIT_AS``; as a context manager it restores the previous limit, and
a ``MemoryError`` inside it is reported with the limit and the usage at failure.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import resource
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType, TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast

from memwarden import tracing
from memwarden._units import SizeLike, format_size, parse_size
from memwarden.exceptions import (
    ConfigurationError,
    MemoryBudgetExceededError,
    MemoryPressureWarning,
)

__all__ = [
    "MemoryBudget",
    "ProcessLimit",
    "memory_budget",
    "process_limit",
    "set_process_limit",
]

log = logging.getLogger("memwarden.budget")

P = ParamSpec("P")
R = TypeVar("R")

Mode = Literal["python", "rss"]
OnExceed = Literal["raise", "warn"]


class MemoryBudget:
    """A memory budget for a block (``with``) or for every call of a function (decorator).

    Use :func:`memory_budget` to make one. After the block, ``peak_bytes``,
    ``exceeded`` and ``top_sites`` describe what happened.

    Attributes:
        limit_bytes: the budget.
        mode: ``"python"`` (tracemalloc heap peak) or ``"rss"`` (resident set size).
        on_exceed: ``"raise"`` or ``"warn"``.
        name: shown in messages (the function's name, or ``file:line`` of the block).
        peak_bytes: the block's peak (above its start, unless ``absolute``), after exit.
        exceeded: whether the peak went over the limit.
        top_sites: ``(file:line, size_bytes)`` of the largest allocation sites, when known.
        duration_s: how long the block ran.
    """

    def __init__(
        self,
        limit_bytes: int,
        *,
        mode: Mode,
        on_exceed: OnExceed,
        name: str,
        absolute: bool,
        top: int,
        frames: int,
        interval_s: float,
        monitor: Any,
        limit_text: str | None = None,
    ) -> None:
        self.limit_bytes = limit_bytes
        # The limit as the user wrote it ("100 MB"), so messages name that, not 95.4 MiB.
        self.limit_text = limit_text or format_size(limit_bytes)
        self.mode: Mode = mode
        self.on_exceed: OnExceed = on_exceed
        self.name = name
        self.absolute = absolute
        self.top = top
        self.frames = frames
        self.interval_s = interval_s
        self.monitor = monitor
        self.peak_bytes = 0
        self.exceeded = False
        self.top_sites: list[tuple[str, int]] = []
        self.duration_s = 0.0
        self._active = False
        self._base_bytes = 0
        self._trace: tracing.TraceUser | None = None
        self._t0 = 0.0
        # Where the block's code is, to name its allocation sites when tracing was on
        # before it: (code object, first line of the block); None when the block
        # started tracing itself (then everything traced is the block's).
        self._region: tuple[CodeType, int] | None = None
        self._origin: CodeType | None = None  # the decorated function's code
        self._sampler: _RssSampler | None = None
        self._hwm0 = 0
        self._checked_sites: list[tuple[str, int]] = []

    def _fresh(self) -> MemoryBudget:
        return MemoryBudget(
            self.limit_bytes,
            mode=self.mode,
            on_exceed=self.on_exceed,
            name=self.name,
            absolute=self.absolute,
            top=self.top,
            frames=self.frames,
            interval_s=self.interval_s,
            monitor=self.monitor,
            limit_text=self.limit_text,
        )

    # -- measuring -------------------------------------------------------

    def current_peak_bytes(self) -> int:
        """The peak so far (inside the block), measured as at exit."""
        if not self._active:
            return self.peak_bytes
        if self.mode == "python":
            return 0 if self._trace is None else self._trace.peak_bytes()
        assert self._sampler is not None
        peak_abs = max(self._sampler.sample(), self._hwm_peak())
        return peak_abs if self.absolute else max(0, peak_abs - self._base_bytes)

    def _hwm_peak(self) -> int:
        """The kernel's peak RSS if the block raised it (exact), else 0."""
        from memwarden.probes import peak_rss

        hwm = peak_rss()
        return hwm if hwm > self._hwm0 else 0

    def check(self) -> None:
        """Fail early: raise (or warn, once) now if the peak so far is over the limit.

        Raises:
            MemoryBudgetExceededError: over budget and ``on_exceed="raise"``.
        """
        if not self._active:
            raise RuntimeError("MemoryBudget.check() called outside its block")
        peak = self.current_peak_bytes()
        if peak <= self.limit_bytes or self.exceeded:
            return
        self.peak_bytes = peak
        self.exceeded = True
        # The allocations are alive now: this is the best moment to name them.
        self.top_sites = self._sites_now(peak)
        self._checked_sites = self.top_sites
        self._report(where="check()")

    def _sites_now(self, peak_bytes: int) -> list[tuple[str, int]]:
        """The top allocation sites alive now: one snapshot, taken only when over budget.

        When the block started tracing, every trace is the block's. When tracing was
        already on (a user's session, the pytest plugin), no snapshot is taken on
        entry (it costs ~2 µs per traced allocation: 0.2 s with 86,000 traces),
        so the traces from before the block cannot be told apart exactly; the
        sites are then those whose traceback passes through the block's own
        lines (from the ``with`` line to the end of its function, or the decorated
        function). If none does (the block's frame is not among the traced frames,
        e.g. a library call with ``frames=1``), the largest sites overall are
        reported, which may include memory allocated before the block.
        """
        if not tracing.is_tracing():
            return []
        groups = tracing.group_traces(tracing.snapshot())
        # Sites under 1% of the peak are noise (imports, interned names) in a report.
        floor = max(1, peak_bytes // 100)
        region = _line_region(*self._region) if self._region is not None else None
        if region is not None:
            sites = _user_sites(groups, limit=self.top, min_bytes=floor, region=region)
            if sites:
                return sites
        return _user_sites(groups, limit=self.top, min_bytes=floor)

    def _block_region(self) -> tuple[CodeType, int] | None:
        """The block's code and first line: the decorated function, or the ``with``'s caller."""
        if self._origin is not None:
            return self._origin, self._origin.co_firstlineno
        frame: FrameType | None = sys._getframe(2)  # the caller of __enter__
        while frame is not None and frame.f_code.co_filename in _SKIP_FILES:
            frame = frame.f_back  # contextlib.ExitStack and the like
        return None if frame is None else (frame.f_code, frame.f_lineno)

    # -- the block -------------------------------------------------------

    def __enter__(self) -> MemoryBudget:
        if self._active:
            raise RuntimeError(
                f"memory_budget {self.name!r} is already active; a budget object measures "
                "one block at a time (as a decorator each call gets its own)"
            )
        self.peak_bytes = 0
        self.exceeded = False
        self.top_sites = []
        self._checked_sites = []
        if self.mode == "python":
            # The tracing owner starts tracemalloc if it is off and folds the peak
            # into every enclosing user before resetting it for this block.
            self._trace = tracing.acquire(self.frames, name=f"memory_budget {self.name}")
            # Nothing was traced before a block that started tracing; otherwise no
            # snapshot here (see _sites_now): just where the block is.
            started = self._trace.started
            self._region = self._block_region() if self.top and not started else None
        else:
            from memwarden.probes import peak_rss, rss

            self._hwm0 = peak_rss()
            self._base_bytes = rss()
            self._sampler = _RssSampler(self.interval_s, self.monitor)
            self._sampler.start()
        self._active = True
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.duration_s = time.perf_counter() - self._t0
        peak = self.current_peak_bytes()
        self._active = False
        after_sites: list[tuple[str, int]] = []
        if self.mode == "python":
            if peak > self.limit_bytes and self.top and not self._checked_sites:
                after_sites = self._sites_now(peak)
            if self._trace is not None:
                peak = max(peak, self._trace.release().peak_bytes)
                self._trace = None
            self._region = None
        else:
            assert self._sampler is not None
            self._sampler.stop()
            self._sampler = None
        self.peak_bytes = max(peak, self.peak_bytes)
        already = self.exceeded
        self.exceeded = self.peak_bytes > self.limit_bytes
        if not self.exceeded:
            return
        if not self._checked_sites:
            self.top_sites = after_sites
        if exc is not None:
            # Never hide the block's own error; say what the budget saw.
            if isinstance(exc, BaseException) and hasattr(exc, "add_note"):
                exc.add_note(self._message())
            return
        if not already:
            self._report(where="exit")

    def _message(self) -> str:
        what = "Python heap" if self.mode == "python" else "RSS"
        rel = "" if self.absolute or self.mode == "python" else " above its start"
        lines = [
            f"memory budget exceeded in {self.name}: {what} peaked at "
            f"{format_size(self.peak_bytes)}{rel}, over the limit of "
            f"{self.limit_text} ({self.mode} mode)"
        ]
        if self.top_sites:
            lines.append("top allocation sites:")
            lines.extend(f"  {where}: {format_size(size)}" for where, size in self.top_sites)
        elif self.mode == "python":
            lines.append(
                "(no allocation sites: the memory was freed before the block ended; "
                "call budget.check() inside the block to catch it alive)"
            )
        return "\n".join(lines)

    def _report(self, *, where: str) -> None:
        msg = self._message()
        if self.on_exceed == "warn":
            log.warning("%s", msg)
            warnings.warn(MemoryPressureWarning(msg), stacklevel=3)
            return
        raise MemoryBudgetExceededError(
            msg,
            peak_bytes=self.peak_bytes,
            limit_bytes=self.limit_bytes,
            top_sites=self.top_sites,
        )

    # -- decorator -------------------------------------------------------

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Budget every call of ``fn`` (sync or async) with a fresh copy of this budget."""
        name = self.name if not self.name.startswith("block at ") else fn.__qualname__
        origin: CodeType | None = getattr(inspect.unwrap(fn), "__code__", None)
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                b = self._fresh()
                b.name = name
                b._origin = origin
                with b:
                    return await afn(*args, **kwargs)

            return cast(Callable[P, R], awrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            b = self._fresh()
            b.name = name
            b._origin = origin
            with b:
                return fn(*args, **kwargs)

        return wrapper

    def __repr__(self) -> str:
        return (
            f"<MemoryBudget {self.name!r} limit={self.limit_text} mode={self.mode} "
            f"peak={format_size(self.peak_bytes)} exceeded={self.exceeded}>"
        )


_SKIP_FILES = frozenset({__file__, contextlib.__file__})


def _line_region(code: CodeType, start: int) -> tuple[str, int, int]:
    """``(file, first, last)`` lines of a block: from ``start`` to the end of ``code``.

    The end includes nested functions, comprehensions and lambdas written inside it.
    """
    last = start
    todo = [code]
    for _ in range(10_000):  # bounded: a code object has finitely many nested ones
        if not todo:
            break
        c = todo.pop()
        last = max([last, *(line for _s, _e, line in c.co_lines() if line is not None)])
        todo.extend(k for k in c.co_consts if isinstance(k, CodeType))
    return code.co_filename, start, last


def _in_region(frames: tuple[tuple[str, int], ...], region: tuple[str, int, int]) -> bool:
    filename, first, last = region
    return any(f == filename and first <= n <= last for f, n in frames)


def _user_sites(
    groups: list[tracing.TraceGroup],
    *,
    limit: int,
    min_bytes: int,
    region: tuple[str, int, int] | None = None,
) -> list[tuple[str, int]]:
    """Traced bytes per user-code ``file:line``, largest first.

    Each traceback is charged to its innermost frame in the user's code (not the
    standard library, site-packages or memwarden), so a numpy buffer names the line
    that called numpy; when no frame is the user's, the innermost frame is used.
    With ``region`` (``file, first, last`` lines), only traces allocated from those
    lines (anywhere in their traceback) are counted. The work is per distinct
    traceback, not per block: a heap of 300,000 live objects groups in well under
    a second.
    """
    if region is not None:
        groups = [g for g in groups if _in_region(g.frames, region)]
    sites = tracing.by_site(groups, drop_own=False)
    return [(s.where, s.size_bytes) for s in sites if s.size_bytes >= min_bytes][:limit]


class _RssSampler:
    """Tracks peak RSS: from a monitor's samples when one runs, else from its own thread."""

    def __init__(self, interval_s: float, monitor: Any) -> None:
        from memwarden.probes import rss

        self._rss = rss
        self._interval_s = interval_s
        self._monitor = monitor
        self._peak = rss()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sub: Any = None

    def sample(self) -> int:
        value = self._rss()
        self._peak = max(self._peak, value)
        return self._peak

    def _on_sample(self, s: Any) -> None:
        value = getattr(s, "rss_bytes", None)
        if isinstance(value, int):
            self._peak = max(self._peak, value)

    def start(self) -> None:
        mon = self._monitor
        if mon is not None and getattr(mon, "running", False):
            self._sub = mon.on_sample(self._on_sample)
            return
        self._thread = threading.Thread(target=self._run, name="memwarden-budget-rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.sample()
            except Exception:  # pragma: no cover - /proc vanished
                log.exception("RSS sampling failed; the budget relies on its end sample")
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sub is not None:
            fn = getattr(self._sub, "unsubscribe", None)
            if callable(fn):
                fn()
        self.sample()


def memory_budget(
    limit: SizeLike,
    *,
    mode: Mode = "python",
    on_exceed: OnExceed = "raise",
    name: str | None = None,
    absolute: bool = False,
    top: int = 10,
    frames: int = 8,
    interval_s: float = 0.005,
    monitor: Any = None,
) -> MemoryBudget:
    """A memory budget for a block or a function: ``with memory_budget("100 MiB"): ...``.

    Args:
        limit: bytes, or a size string such as ``"100 MiB"``.
        mode: ``"python"`` measures the block's exact Python-heap peak with tracemalloc
            (numpy buffers included); ``"rss"`` measures resident memory (everything,
            including C extensions that bypass tracemalloc), sampled every ``interval_s``
            or from ``monitor``'s samples, and exact when the block sets a new process peak.
        on_exceed: ``"raise"`` :class:`MemoryBudgetExceededError`, or ``"warn"`` with
            :class:`MemoryPressureWarning`.
        name: shown in messages; default the function's name or ``block at file:line``.
        absolute: ``rss`` mode only: compare the process's RSS itself with the limit,
            rather than its growth during the block.
        top: how many allocation sites to report (0: none, and no snapshots).
        frames: traceback depth when the budget starts tracemalloc (sites are charged to
            the innermost frame in your code, so a numpy buffer names your line).
        interval_s: ``rss`` mode sampling interval when no monitor is running.
        monitor: a running :class:`memwarden.monitoring.MemoryMonitor` to take RSS from.

    Returns:
        A :class:`MemoryBudget`, usable as ``with`` block or as a decorator.

    Raises:
        ConfigurationError: a bad limit, mode or option (the message names it).
    """
    limit_bytes = parse_size(limit, source="memory_budget(limit)")
    if limit_bytes <= 0:
        raise ConfigurationError(
            f"memory_budget(limit={limit!r}): expected a positive size like '100 MiB'",
            value=limit,
            source="argument",
        )
    if mode not in ("python", "rss"):
        raise ConfigurationError(
            f"memory_budget(mode={mode!r}): expected 'python' or 'rss'",
            value=mode,
            source="argument",
        )
    if on_exceed not in ("raise", "warn"):
        raise ConfigurationError(
            f"memory_budget(on_exceed={on_exceed!r}): expected 'raise' or 'warn'",
            value=on_exceed,
            source="argument",
        )
    if absolute and mode != "rss":
        raise ConfigurationError(
            "memory_budget(absolute=True) needs mode='rss': the Python heap has no absolute "
            "level comparable to a limit",
            value=absolute,
            source="argument",
        )
    if not (isinstance(interval_s, int | float) and 0 < interval_s <= 60):
        raise ConfigurationError(
            f"memory_budget(interval_s={interval_s!r}): expected seconds in (0, 60]",
            value=interval_s,
            source="argument",
        )
    if name is None:
        caller = sys._getframe(1)
        name = f"block at {Path(caller.f_code.co_filename).name}:{caller.f_lineno}"
    return MemoryBudget(
        limit_bytes,
        mode=mode,
        on_exceed=on_exceed,
        name=name,
        absolute=absolute,
        top=max(0, int(top)),
        frames=max(1, int(frames)),
        interval_s=float(interval_s),
        monitor=monitor,
        limit_text=limit.strip() if isinstance(limit, str) else None,
    )


# ---------------------------------------------------------------------------
# hard process limits

Kind = Literal["data", "as"]
_KINDS = {"data": ("RLIMIT_DATA", resource.RLIMIT_DATA), "as": ("RLIMIT_AS", resource.RLIMIT_AS)}


def _kind(kind: str) -> tuple[str, int]:
    try:
        return _KINDS[kind]
    except KeyError:
        raise ConfigurationError(
            f"kind={kind!r} (argument): expected 'data' (RLIMIT_DATA) or 'as' (RLIMIT_AS)",
            value=kind,
            source="argument",
        ) from None


def _vm_status() -> dict[str, int]:
    """``VmData``, ``VmSize`` and ``VmRSS`` in bytes from /proc/self/status (Linux)."""
    out: dict[str, int] = {}
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmData", "VmSize", "VmRSS"):
            parts = rest.split()
            if parts:
                out[key] = int(parts[0]) * 1024
    return out


def process_limit(kind: Kind = "data") -> int | None:
    """The soft limit of ``RLIMIT_DATA`` (``kind="data"``) or ``RLIMIT_AS``, or None if unlimited.

    Raises:
        ConfigurationError: an unknown ``kind``.
    """
    _label, which = _kind(kind)
    soft, _hard = resource.getrlimit(which)
    return None if soft == resource.RLIM_INFINITY else int(soft)


@dataclass
class ProcessLimit:
    """A process limit in force; as a context manager, restores the previous limit on exit.

    A ``MemoryError`` raised inside the ``with`` block gets a note with the limit and
    the usage at failure, and is logged.

    Attributes:
        kind: ``"data"`` or ``"as"``.
        limit_bytes: the soft limit set.
        previous: the soft limit before (None: unlimited).
    """

    kind: Kind
    limit_bytes: int
    previous: int | None
    _restored: bool = False

    @property
    def resource_name(self) -> str:
        """``RLIMIT_DATA`` or ``RLIMIT_AS``."""
        return _kind(self.kind)[0]

    def restore(self) -> None:
        """Put the previous soft limit back (idempotent)."""
        if self._restored:
            return
        _label, which = _kind(self.kind)
        _soft, hard = resource.getrlimit(which)
        prev = resource.RLIM_INFINITY if self.previous is None else self.previous
        if hard != resource.RLIM_INFINITY and (prev == resource.RLIM_INFINITY or prev > hard):
            prev = hard
        resource.setrlimit(which, (prev, hard))
        self._restored = True

    def describe(self) -> str:
        """The limit and current usage, in one line (used in MemoryError notes)."""
        st = _vm_status()
        used = st.get("VmData" if self.kind == "data" else "VmSize")
        usage = "" if used is None else f"; {('VmData' if self.kind == 'data' else 'VmSize')} "
        usage += "" if used is None else format_size(used)
        rss_part = "" if "VmRSS" not in st else f", VmRSS {format_size(st['VmRSS'])}"
        return (
            f"memwarden: {self.resource_name} soft limit {format_size(self.limit_bytes)} "
            f"(set_process_limit){usage}{rss_part} at failure"
        )

    def __enter__(self) -> ProcessLimit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, MemoryError):
            note = self.describe()
            exc.add_note(note)
            log.error("allocation failed under a hard limit: %s", note)
        self.restore()


def set_process_limit(limit: SizeLike, *, kind: Kind = "data") -> ProcessLimit:
    """Set a hard memory limit on this process with ``setrlimit`` (the soft limit).

    ``kind="data"`` (RLIMIT_DATA) counts the heap and anonymous mmaps on Linux >= 4.7,
    which is what Python and numpy allocate; ``kind="as"`` limits the whole address
    space (stricter: thread stacks and reserved arenas count too). Allocations over the
    limit then fail with ``MemoryError`` instead of the process being OOM-killed.

    Use as a context manager to restore the previous limit on exit::

        with set_process_limit("300 MiB"):
            work()

    Args:
        limit: bytes or a size string.
        kind: ``"data"`` or ``"as"``.

    Returns:
        The :class:`ProcessLimit` in force.

    Raises:
        ConfigurationError: the limit is above the hard limit (an unprivileged process
            cannot raise it) or below what the process already uses (every allocation
            would fail at once).
    """
    limit_bytes = parse_size(limit, source="set_process_limit(limit)")
    label, which = _kind(kind)
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and limit_bytes > hard:
        raise ConfigurationError(
            f"set_process_limit(limit={limit!r}): above the hard {label} of "
            f"{format_size(hard)}; only root can raise a hard limit",
            value=limit,
            source="argument",
        )
    used = _vm_status().get("VmData" if kind == "data" else "VmSize")
    if used is not None and limit_bytes <= used:
        raise ConfigurationError(
            f"set_process_limit(limit={limit!r}): {label} of {format_size(limit_bytes)} is "
            f"below what the process already uses ({'VmData' if kind == 'data' else 'VmSize'} "
            f"{format_size(used)}); every allocation would fail",
            value=limit,
            source="argument",
        )
    previous = None if soft == resource.RLIM_INFINITY else int(soft)
    resource.setrlimit(which, (limit_bytes, hard))
    log.info(
        "%s soft limit set to %s (was %s)",
        label,
        format_size(limit_bytes),
        "unlimited" if previous is None else format_size(previous),
    )
    return ProcessLimit(kind, limit_bytes, previous)
