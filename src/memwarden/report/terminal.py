"""Render a trace summary for the terminal with rich (tables, no colour when ``NO_COLOR``).

Text from the profiled program (paths, code, operation names, labels, events) is
printed as plain text, never interpreted as rich markup, and with its control
characters escaped (:func:`printable`): a trace cannot clear the screen, set the
window title or forge lines on the terminal that reads it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from memwarden._units import format_size
from memwarden.report.summary import Summary, growth_verdict, site_label

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["SPARK", "cut_left", "printable", "render_terminal", "sparkline"]

SPARK = "▁▂▃▄▅▆▇█"

# C0 controls (ESC, CR, BEL, newline...), DEL, C1 controls (CSI U+009B, OSC U+009D)
# and the Unicode bidirectional overrides/isolates that reorder what the reader sees.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with control characters shown as ``\\xNN`` escapes, safe to write to a terminal.

    Escape sequences (``\\x1b[2J``), carriage returns and newlines from a trace, a
    file name or a label become visible text instead of acting on the terminal.
    """
    return _CONTROL.sub(_escape, text)


def cut_left(text: str, width: int) -> str:
    """Shorten ``text`` to ``width`` characters by dropping its start, as ``…/json/decoder.py:353``.

    The end of a path (the file name and line) is what tells sites apart, so it is kept.
    """
    if width <= 1 or len(text) <= width:
        return text if len(text) <= width else text[-width:]
    return "…" + text[-(width - 1) :]


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """A one-line bar chart of ``values`` squeezed (max per bucket) into ``width`` characters."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [
            max(values[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)])
            for i in range(width)
        ]
    lo, hi = min(values), max(values)
    span = hi - lo
    if span <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * len(SPARK)))] for v in values)


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def render_terminal(summary: Summary, console: Console, *, spark: Sequence[float] = ()) -> None:
    """Print ``summary`` to ``console``.

    Args:
        summary: what to print.
        console: a rich console (the CLI's stdout).
        spark: RSS values to draw as a sparkline under the headline.
    """
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("program", Text(printable(" ".join(summary.command) or summary.label)))
    head.add_row(
        "peak RSS",
        Text(f"{format_size(summary.peak_rss_bytes)} at {_fmt_s(summary.peak_t_s)}"),
    )
    head.add_row("duration", Text(_fmt_s(summary.duration_s)))
    head.add_row("mean RSS", Text(format_size(summary.mean_rss_bytes)))
    head.add_row("final RSS", Text(format_size(summary.final_rss_bytes)))
    head.add_row("samples", Text(f"{summary.samples} every {summary.interval_s:g} s"))
    if summary.max_processes > 1:
        head.add_row("processes", Text(f"up to {summary.max_processes}"))
    if summary.limit_bytes:
        head.add_row("limit", Text(format_size(summary.limit_bytes)))
    if summary.end_reason is not None:
        head.add_row("ended", Text(f"{summary.end_reason} (exit code {summary.exit_code})"))
    if spark:
        head.add_row("timeline", Text(sparkline(spark, 60)))
    if summary.growth is not None:
        text, kind = growth_verdict(summary)
        style = {"leak": "bold red", "grows": "yellow"}.get(kind, "green")
        head.add_row("growth", Text(text, style=style))
    console.print(Text(f"memwarden report: {printable(summary.label)}", style="bold"))
    console.print(head)
    for problem in summary.problems:
        console.print(Text(f"warning: {printable(problem)}", style="yellow"))

    for snap, title in ((summary.peak_sites, "near the peak"), (summary.exit_sites, "at exit")):
        if snap is None or not snap.sites:
            continue
        table = Table(
            title=f"Top allocation sites {title} (Python heap {format_size(snap.traced_bytes)} "
            f"at {snap.t_s:.2f} s)",
            title_justify="left",
        )
        table.add_column("size", justify="right")
        table.add_column("blocks", justify="right")
        # The site column is cut from the left by us (rich would cut the file name
        # and line off the right); the code column folds.
        where_width = max(20, console.width // 2 - 10)
        table.add_column("where", no_wrap=True, max_width=where_width)
        table.add_column("code", overflow="fold")
        for site in snap.sites[:10]:
            table.add_row(
                format_size(site.size_bytes),
                str(site.count),
                Text(cut_left(printable(site_label(site)), where_width)),
                Text(printable(site.code)),
            )
        console.print(table)

    _render_processes(summary, console)
    _render_routes(summary, console)

    if summary.operations:
        ops = Table(title="Operations (track())", title_justify="left")
        for col in ("operation", "count", "total", "mean", "max RSS Δ", "max peak RSS"):
            ops.add_column(col, justify="left" if col == "operation" else "right")
        for row in summary.operations[:20]:
            ops.add_row(
                Text(printable(row.name)),
                str(row.count),
                _fmt_s(row.total_s),
                _fmt_s(row.mean_s),
                format_size(row.max_rss_delta_bytes),
                format_size(row.max_peak_rss_bytes),
            )
        console.print(ops)
    for event in summary.events[:20]:
        console.print(Text(printable(f"{event.t_s:8.2f} s  {event.kind}: {event.message}")))


def _render_processes(summary: Summary, console: Console, *, processes: int = 4) -> None:
    """The top stacks of each profiled process at its peak (the largest processes first)."""
    from rich.text import Text

    shown = summary.processes[:processes]
    if not shown:
        return
    total = sum(p.total_bytes for p in summary.processes)
    console.print(
        Text(
            f"Where the Python heap was (sampling profile, {len(summary.processes)} process(es), "
            f"{format_size(total)} at their peaks):",
            style="bold",
        )
    )
    for proc in shown:
        console.print(
            Text(
                f"  pid {proc.pid} ({printable(proc.command or '?')}): "
                f"{format_size(proc.total_bytes)} at its {proc.when} ({proc.t_s:.2f} s)"
            )
        )
        for row in proc.stacks:
            err = f" ± {format_size(row.error_bytes)}" if row.error_bytes else ""
            console.print(Text(f"    {format_size(row.size_bytes)}{err}  {printable(row.where)}"))
            for frame in row.frames[:5]:
                console.print(Text(f"        {printable(str(frame))}", style="dim"))
    if len(summary.processes) > processes:
        console.print(Text(f"  … and {len(summary.processes) - processes} more process(es)"))


def _render_routes(summary: Summary, console: Console, *, n: int = 8) -> None:
    """The server routes whose requests grew memory most (from the WSGI/ASGI middleware)."""
    from rich.table import Table

    if not summary.routes:
        return
    table = Table(title="Routes that grew memory most (request RSS change, summed)")
    for col in ("route", "requests", "RSS change", "per request", "allocated", "under pressure"):
        table.add_column(col, justify="left" if col == "route" else "right")
    for r in summary.routes[:n]:
        per = r.rss_delta_sum_bytes / r.requests if r.requests else 0.0
        table.add_row(
            printable(r.route),
            str(r.requests),
            ("+" if r.rss_delta_sum_bytes >= 0 else "-") + format_size(abs(r.rss_delta_sum_bytes)),
            format_size(round(abs(per))),
            format_size(r.allocated_bytes) if r.allocated_bytes else "-",
            str(r.under_pressure),
        )
    console.print(table)
