"""Watch a process's memory live: current, peak, limit, level and a sparkline of recent RSS.

Watches this process or another one (--pid). Levels use the configured budget
(--max-memory, else the configuration memwarden resolves here: the effective
limit less 10%, the profile's thresholds and hysteresis). On a terminal the view
redraws in place; when stdout is not a terminal (or with --json) one JSON object
per sample is written per line. Stops after --count samples, when the watched
process exits (exit status 0), or on Ctrl-C.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from memwarden._units import format_size
from memwarden.cli import SIZE
from memwarden.config import load_config
from memwarden.exceptions import CommandError
from memwarden.monitoring import Level, MemoryMonitor, Sample
from memwarden.probes import rss

__all__ = ["command"]

_LEVEL_STYLE = {Level.OK: "green", Level.WARNING: "yellow", Level.CRITICAL: "bold red"}


class _ProcessGone(Exception):
    """The watched process exited."""


def _probe_for(pid: int) -> Callable[[], int]:
    """An RSS probe for ``pid``: the fast path for ourselves, psutil for another process."""
    if pid == os.getpid():
        return rss
    import psutil

    try:
        proc = psutil.Process(pid)
        proc.memory_info()
    except (psutil.NoSuchProcess, ValueError, OverflowError) as exc:
        raise CommandError(f"--pid {pid}: no such process", exit_code=1) from exc
    except psutil.AccessDenied as exc:
        raise CommandError(
            f"--pid {pid}: permission denied reading its memory (run as its user or root)",
            exit_code=1,
        ) from exc

    def probe() -> int:
        try:
            value = int(proc.memory_info().rss)
            # An exited child not yet reaped by its parent is a zombie with no memory.
            if value == 0 and proc.status() == psutil.STATUS_ZOMBIE:
                raise _ProcessGone(pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess) as exc:
            raise _ProcessGone(pid) from exc
        return value

    return probe


def _record(pid: int, mon: MemoryMonitor, sample: Sample) -> dict[str, Any]:
    st = mon.stats()
    cfg = mon.config
    return {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
        "pid": pid,
        "rss_bytes": sample.rss_bytes,
        "peak_rss_bytes": st.peak_rss_bytes,
        "limit_bytes": cfg.max_memory_bytes,
        "usage_ratio": round(sample.rss_bytes / cfg.max_memory_bytes, 6),
        "level": mon.level.monitor_name,
        "warning_bytes": cfg.warning_bytes,
        "critical_bytes": cfg.critical_bytes,
        "python_heap_bytes": sample.python_heap_bytes,
    }


def render(pid: int, mon: MemoryMonitor, *, width: int = 60) -> Any:
    """The rich renderable of the live view (a panel with the figures and a sparkline)."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from memwarden.report.terminal import sparkline

    st = mon.stats()
    cfg = mon.config
    level = mon.level
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    current = st.current_rss_bytes or 0
    table.add_row("current", f"{format_size(current)}  ({current / cfg.max_memory_bytes:.1%})")
    table.add_row("peak", format_size(st.peak_rss_bytes or 0))
    table.add_row(
        "limit",
        f"{format_size(cfg.max_memory_bytes)}  (warning {format_size(cfg.warning_bytes)}, "
        f"critical {format_size(cfg.critical_bytes)})",
    )
    table.add_row("level", Text(level.monitor_name, style=_LEVEL_STYLE[level]))
    hist = [s.rss_bytes for s in mon.history()]
    table.add_row("rss", Text(sparkline(hist[-width:], width), style=_LEVEL_STYLE[level]))
    if hist:
        table.add_row("", f"min {format_size(min(hist))} .. max {format_size(max(hist))}")
    return Panel(
        table,
        title=f"memwarden watch · pid {pid}",
        subtitle=f"every {cfg.monitoring_interval_s:g} s · {st.samples} samples",
        expand=False,
    )


@click.command(help=__doc__)
@click.option(
    "--pid",
    type=click.IntRange(min=1, max=2**31 - 1),
    default=None,
    help="Process to watch (default: this one).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.001, max=3600),
    default=1.0,
    show_default=True,
    help="Seconds between samples.",
)
@click.option("--json", "as_json", is_flag=True, help="Write JSON lines even on a terminal.")
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many samples (default: until the process exits or Ctrl-C).",
)
@click.option(
    "--max-memory",
    "max_memory_bytes",
    type=SIZE,
    default=None,
    help="Budget the levels are measured against, e.g. '2 GiB' (default: resolved config).",
)
@click.option(
    "--profile",
    type=click.Choice(["development", "testing", "production"]),
    default=None,
    help="Take thresholds and hysteresis from this profile.",
)
def command(
    *,
    pid: int | None,
    interval: float,
    as_json: bool,
    count: int | None,
    max_memory_bytes: int | None,
    profile: str | None,
) -> None:
    target = os.getpid() if pid is None else pid
    overrides: dict[str, Any] = {"monitoring_interval_s": interval, "history_size": 600}
    if max_memory_bytes is not None:
        overrides["max_memory_bytes"] = max_memory_bytes
    cfg = load_config(profile, **overrides)  # type: ignore[arg-type]
    probe = _probe_for(target)
    mon = MemoryMonitor(cfg, probe=probe)
    lines = as_json or not sys.stdout.isatty()
    try:
        if lines:
            _watch_lines(target, mon, interval, count)
        else:
            _watch_live(target, mon, interval, count)
    except _ProcessGone:
        click.echo(f"memwarden watch: process {target} exited", err=True)
    finally:
        mon.close()


def _ticks(interval: float, count: int | None) -> Any:
    """Yield once per interval (drift-free), ``count`` times or forever."""
    n = 0
    next_at = time.monotonic()
    while count is None or n < count:
        if n:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
        yield n
        n += 1
        next_at += interval


def _watch_lines(pid: int, mon: MemoryMonitor, interval: float, count: int | None) -> None:
    for _ in _ticks(interval, count):
        sample = mon.sample_now()
        click.echo(json.dumps(_record(pid, mon, sample)))
        sys.stdout.flush()


def _watch_live(pid: int, mon: MemoryMonitor, interval: float, count: int | None) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    width = max(10, min(120, console.width - 20))
    mon.sample_now()
    with Live(render(pid, mon, width=width), console=console, auto_refresh=False) as live:
        for n in _ticks(interval, count):
            if n:
                mon.sample_now()
            live.update(render(pid, mon, width=width), refresh=True)
