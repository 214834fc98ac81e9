"""IPython and Jupyter magics: a cell's peak, the memory it left, and the lines that allocated.

    %load_ext memwarden
    %memwarden data = load()            # line magic
    %%memwarden -r 3                    # cell magic, the cell run three times
    frame = build(data)
    %memwarden_footer on                # a one-line memory footer under every cell

The peak is the process's RSS high-water mark during the cell (reset before it with
``/proc/self/clear_refs``, so it is the cell's own), the change is RSS after minus before,
and the top lines and stacks come from the sampling profiler (started for the cell if it
was off, at a finer interval than the production default so short cells get samples).
Notebooks show a compact HTML table; terminals get text. With ``-r N`` the cell runs N
times and the largest peak is reported, as ``%memit`` does.
"""

from __future__ import annotations

import gc
import html
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from memwarden._units import format_size

__all__ = ["CellMemory", "load_ipython_extension", "measure"]

#: The sampling interval for cells when the profiler was not already running.
CELL_INTERVAL_BYTES = 64 * 1024


def _signed(n: int) -> str:
    return ("+" if n >= 0 else "-") + format_size(abs(n))


@dataclass(frozen=True)
class CellMemory:
    """What one ``%memwarden`` measurement saw.

    Attributes:
        peak_increment_bytes: the highest RSS during the cell minus the RSS before it
            (the largest over repeats).
        change_bytes: RSS after the (last) run minus before it: what the cell left.
        duration_s: wall time of one run (the median over repeats).
        repeats: how many times the cell ran.
        top_lines: ``(file:line, bytes allocated)``, largest first (sampled estimates).
        top_stacks: ``(frames outermost first, bytes)``, largest first.
        backend: the profiler's backend (``native`` or ``tracemalloc``), or None.
    """

    peak_increment_bytes: int
    change_bytes: int
    duration_s: float
    repeats: int
    top_lines: list[tuple[str, int]] = field(default_factory=list)
    top_stacks: list[tuple[list[str], int]] = field(default_factory=list)
    backend: str | None = None

    def summary(self) -> str:
        """One line: peak, change, time."""
        runs = f" (largest of {self.repeats} runs)" if self.repeats > 1 else ""
        return (
            f"memwarden: peak {_signed(self.peak_increment_bytes)}{runs}, "
            f"left {_signed(self.change_bytes)}, {self.duration_s:.3g} s"
        )

    def __str__(self) -> str:
        lines = [self.summary()]
        if self.top_lines:
            lines.append("  allocated most (sampled):")
            lines += [f"    {format_size(b):>10}  {where}" for where, b in self.top_lines]
        if self.top_stacks:
            lines.append("  top stack:")
            lines += [f"    {frame}" for frame in self.top_stacks[0][0][-8:]]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='text-align:right'>{html.escape(format_size(b))}</td>"
            f"<td><code>{html.escape(where)}</code></td></tr>"
            for where, b in self.top_lines
        )
        table = (
            "<table><tr><th>allocated</th><th>line</th></tr>" + rows + "</table>" if rows else ""
        )
        return f"<div class='memwarden'><b>{html.escape(self.summary())}</b>{table}</div>"


def _profiler() -> Any:
    """The sampling profiler when its native backend can run (the tracemalloc fallback has
    no allocations profile and would slow the cell down), else None."""
    from memwarden import profiler

    return profiler if profiler.native_available() else None


def _frame_text(frame: Any) -> str:
    filename = getattr(frame, "filename", "?")
    return f"{filename}:{getattr(frame, 'lineno', 0)} ({getattr(frame, 'function', '?')})"


def measure(run: Callable[[], object], *, repeat: int = 1, top: int = 5) -> CellMemory:
    """Run ``run()`` ``repeat`` times and measure it (the engine behind the magics)."""
    from memwarden.probes import peak_rss, reset_peak_rss, rss

    if repeat < 1:
        raise ValueError(f"repeat={repeat}: expected at least 1")
    prof = _profiler()
    started_here = False
    before_alloc = None
    if prof is not None:
        if not prof.is_running():
            prof.start(interval_bytes=CELL_INTERVAL_BYTES)
            started_here = True
        before_alloc = prof.snapshot("allocations")
    peaks: list[int] = []
    times: list[float] = []
    change = 0
    try:
        for _ in range(repeat):
            gc.collect()
            start = rss()
            reset_peak_rss()
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
            after = rss()
            peaks.append(max(peak_rss(), after) - start)
            change = after - start
        lines: list[tuple[str, int]] = []
        stacks: list[tuple[list[str], int]] = []
        backend = None
        if prof is not None and before_alloc is not None:
            backend = prof.backend()
            grown = prof.snapshot("allocations").diff(before_alloc)
            lines = [(e.key, e.size_bytes) for e in grown.top(by="line", n=top) if e.size_bytes > 0]
            stacks = [
                ([_frame_text(f) for f in reversed(e.frames)], e.size_bytes)
                for e in grown.top(by="stack", n=3)
                if e.size_bytes > 0
            ]
    finally:
        if started_here:
            prof.stop()
    return CellMemory(
        peak_increment_bytes=max(peaks),
        change_bytes=change,
        duration_s=statistics.median(times),
        repeats=repeat,
        top_lines=lines,
        top_stacks=stacks,
        backend=backend,
    )


def _parse(line: str) -> tuple[int, int, str]:
    """``-r N`` / ``-n N`` options, then the statement (for the line magic)."""
    words = line.split()
    repeat, top, i = 1, 5, 0
    while i < len(words) and words[i] in ("-r", "--repeat", "-n", "--top"):
        if i + 1 >= len(words) or not words[i + 1].isdigit():
            raise ValueError(f"{words[i]} needs a whole number (got {line!r})")
        if words[i] in ("-r", "--repeat"):
            repeat = int(words[i + 1])
        else:
            top = int(words[i + 1])
        i += 2
    rest = line.split(None, i)[i] if i < len(words) else ""
    return repeat, top, rest


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics on ``ipython`` (``%load_ext memwarden`` calls this)."""
    from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class

    @magics_class
    class MemwardenMagics(Magics):
        """``%memwarden`` / ``%%memwarden`` and ``%memwarden_footer``."""

        _footer: tuple[Callable[..., None], Callable[..., None]] | None = None

        def _runner(self, source: str) -> Callable[[], object]:
            shell = self.shell
            assert shell is not None  # magics are registered on a shell
            transformed = shell.transform_cell(source)  # type: ignore[no-untyped-call]
            filename = shell.compile.cache(transformed, shell.execution_count, raw_code=source)
            code = compile(transformed, filename, "exec")
            ns = shell.user_ns

            def run() -> object:
                exec(code, ns)  # noqa: S102 - running the user's own cell is the point
                return None

            return run

        @line_cell_magic
        def memwarden(self, line: str, cell: str | None = None) -> CellMemory | None:
            """Measure a statement (line) or a cell: peak, change left, top lines and stacks.

            Options: ``-r N`` run N times (report the largest peak), ``-n N`` top lines.
            """
            try:
                repeat, top, rest = _parse(line)
            except ValueError as exc:
                print(f"memwarden: {exc}")
                return None
            source = cell if cell is not None else rest
            if not source.strip():
                print("memwarden: nothing to measure (usage: %memwarden [-r N] statement)")
                return None
            return measure(self._runner(source), repeat=repeat, top=top)

        @line_magic
        def memwarden_footer(self, line: str) -> None:
            """``%memwarden_footer on|off``: print each cell's peak and change under it."""
            from memwarden.probes import peak_rss, reset_peak_rss, rss

            assert self.shell is not None
            events = self.shell.events
            want = line.strip().lower() in ("", "on", "1", "true")
            if self._footer is not None:
                old_pre, old_post = self._footer
                events.unregister("pre_run_cell", old_pre)
                events.unregister("post_run_cell", old_post)
                MemwardenMagics._footer = None
            if not want:
                return
            state: dict[str, float] = {}

            def pre(*_: Any) -> None:
                state["rss"] = rss()
                state["t0"] = time.perf_counter()
                reset_peak_rss()

            def post(*_: Any) -> None:
                if "rss" not in state:
                    return
                after = rss()
                peak = max(peak_rss(), after) - int(state["rss"])
                print(
                    f"memwarden: peak {_signed(peak)}, left {_signed(after - int(state['rss']))}, "
                    f"{time.perf_counter() - state['t0']:.3g} s"
                )

            events.register("pre_run_cell", pre)
            events.register("post_run_cell", post)
            MemwardenMagics._footer = (pre, post)

    ipython.register_magics(MemwardenMagics)
