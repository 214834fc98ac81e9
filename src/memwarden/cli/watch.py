"""Watch a process's memory live: current, peak, limit, level and a sparkline of recent RSS.

Watches this process or another one (--pid), alone or with its descendants (--tree).
When the target runs a memwarden agent (``MEMWARDEN_AGENT=1``), its own budget, its
governor's level and its top allocation sites (while it profiles) are shown; otherwise
the budget is the target's own effective limit (its cgroup from /proc/PID/cgroup, its
rlimits from /proc/PID/limits) less 10%. --max-memory overrides either. On a terminal the view
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


def _probe_for(pid: int, *, tree: bool = False) -> Callable[[], int]:
    """An RSS probe for ``pid`` (and its descendants with ``tree``).

    The fast path for ourselves, psutil for another process.
    """
    if pid == os.getpid() and not tree:
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
        if tree:
            for child in proc.children(recursive=True):
                try:
                    value += int(child.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue  # a child that just exited or is not ours to read
        return value

    return probe


class _Target:
    """What is known about the watched process beyond its RSS (from its agent, or /proc)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.client: Any = None
        self.snapshot: dict[str, Any] = {}
        self.top: list[tuple[str, int]] = []
        self.limit_source = ""
        if pid == os.getpid():
            return
        from memwarden.agent import AgentError, Client

        try:
            self.client = Client(pid, timeout_s=5)
        except AgentError:
            self.client = None

    @property
    def via(self) -> str:
        return "agent" if self.client is not None else "proc"

    def refresh(self, n: int) -> None:
        """Ask the agent for its figures (and every fifth time its top sites)."""
        if self.client is None:
            return
        from memwarden.agent import AgentError

        try:
            self.snapshot = self.client.request("snapshot")
            if n % 5 == 0 and self.snapshot.get("profiling"):
                top = self.client.request("profile.top", n=5, kind="live")["top"]
                self.top = [(e["key"], int(e["size_bytes"])) for e in top]
        except AgentError:
            self.client = None  # the agent went away: carry on from /proc

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _record(
    pid: int, mon: MemoryMonitor, sample: Sample, target: _Target | None = None
) -> dict[str, Any]:
    st = mon.stats()
    cfg = mon.config
    extra: dict[str, Any] = {}
    if target is not None:
        extra = {
            "via": target.via,
            "limit_source": target.limit_source,
            "target_level": target.snapshot.get("level"),
            "top": [{"where": w, "size_bytes": b} for w, b in target.top],
        }
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
        **extra,
    }


def render(pid: int, mon: MemoryMonitor, *, width: int = 60, target: _Target | None = None) -> Any:
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
    if target is not None and target.snapshot:
        table.add_row("its governor", f"{target.snapshot.get('level')} (from its agent)")
    if target is not None and target.limit_source:
        table.add_row("limit from", target.limit_source)
    if target is not None:
        for where, size in target.top:
            table.add_row("top", f"{format_size(size):>10}  {where}")
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
@click.option("--tree", is_flag=True, help="Count the process's descendants too.")
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
    tree: bool,
    count: int | None,
    max_memory_bytes: int | None,
    profile: str | None,
) -> None:
    target = os.getpid() if pid is None else pid
    overrides: dict[str, Any] = {"monitoring_interval_s": interval, "history_size": 600}
    probe = _probe_for(target, tree=tree)
    info = _Target(target)
    info.refresh(0)
    if max_memory_bytes is not None:
        overrides["max_memory_bytes"] = max_memory_bytes
    elif info.snapshot.get("budget_bytes"):
        overrides["max_memory_bytes"] = int(info.snapshot["budget_bytes"])
        info.limit_source = "the target's own budget (its agent)"
    elif target != os.getpid():
        from memwarden.probes import effective_limit

        lim = effective_limit(pid=target)
        overrides["max_memory_bytes"] = int(lim.limit_bytes * 0.9)
        info.limit_source = f"90% of {format_size(lim.limit_bytes)}: {lim.source}"
    cfg = load_config(profile, **overrides)  # type: ignore[arg-type]
    mon = MemoryMonitor(cfg, probe=probe)
    lines = as_json or not sys.stdout.isatty()
    try:
        if lines:
            _watch_lines(target, mon, interval, count, info)
        else:
            _watch_live(target, mon, interval, count, info)
    except _ProcessGone:
        click.echo(f"memwarden watch: process {target} exited", err=True)
    finally:
        mon.close()
        info.close()


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


def _watch_lines(
    pid: int, mon: MemoryMonitor, interval: float, count: int | None, target: _Target
) -> None:
    for n in _ticks(interval, count):
        sample = mon.sample_now()
        if n:
            target.refresh(n)
        click.echo(json.dumps(_record(pid, mon, sample, target)))
        sys.stdout.flush()


def _watch_live(
    pid: int, mon: MemoryMonitor, interval: float, count: int | None, target: _Target
) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    width = max(10, min(120, console.width - 20))
    mon.sample_now()
    view = render(pid, mon, width=width, target=target)
    with Live(view, console=console, auto_refresh=False) as live:
        for n in _ticks(interval, count):
            if n:
                mon.sample_now()
                target.refresh(n)
            live.update(render(pid, mon, width=width, target=target), refresh=True)
