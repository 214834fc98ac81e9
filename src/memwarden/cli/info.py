"""Show this process's memory facts: the effective limit and its source, RSS, cgroup, PSI, config.

Prints the limit memwarden will enforce (the tightest of the cgroup chain,
RLIMIT_AS/RLIMIT_DATA and physical memory) with every candidate it considered,
the cgroup version and path, memory pressure-stall figures where the kernel has
them, the heap profiler backend (native sampler or the tracemalloc fallback), and the
resolved configuration with the source of each value
(argument > MEMWARDEN_* environment > [tool.memwarden] in pyproject.toml > profile).
"""

from __future__ import annotations

import json
from typing import Any

import click

from memwarden._units import format_size
from memwarden.config import load_config
from memwarden.probes import (
    available_memory,
    cgroup_info,
    cgroup_usage,
    effective_limit,
    memory_events,
    peak_rss,
    pressure_stall,
    rss,
)


def gather(profile: str | None = None) -> dict[str, Any]:
    """Collect everything ``memwarden info`` shows, as JSON-ready data."""
    lim = effective_limit()
    info = cgroup_info()
    usage = cgroup_usage()
    events = memory_events()
    psi = pressure_stall()
    cfg = load_config(profile)  # type: ignore[arg-type]
    return {
        "limit": {
            "limit_bytes": lim.limit_bytes,
            "source": lim.source,
            "high_bytes": lim.high_bytes,
            "candidates": [{"source": s, "limit_bytes": v} for s, v in lim.candidates],
        },
        "process": {"rss_bytes": rss(), "peak_rss_bytes": peak_rss()},
        "available_bytes": available_memory(),
        "cgroup": None
        if info is None
        else {
            "version": info.version,
            "path": info.path,
            "directory": str(info.directory),
            "usage_bytes": usage.usage_bytes if usage else None,
            "working_set_bytes": usage.working_set_bytes if usage else None,
            "events": None if events is None else vars(events),
        },
        "psi": None
        if psi is None
        else {
            "source": psi.source,
            "some": vars(psi.some),
            "full": None if psi.full is None else vars(psi.full),
        },
        "profiler": _profiler_info(),
        "config": cfg.to_dict(),
    }


def _profiler_info() -> dict[str, Any]:
    from memwarden import profiler

    return {
        "backend": profiler.backend(),
        "native_available": profiler.native_available(),
        "native_error": profiler.native_error(),
        "default_interval_bytes": profiler.DEFAULT_INTERVAL_BYTES,
    }


def _fmt(value: Any, key: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and key.endswith("_bytes"):
        return f"{format_size(value)} ({value:,} B)"
    if isinstance(value, float) and key.endswith("threshold"):
        return f"{value:g}"
    return str(value)


def _render(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    lim = data["limit"]
    console.print(
        f"[bold]Effective limit[/bold] {format_size(lim['limit_bytes'])} "
        f"from [cyan]{lim['source']}[/cyan]"
    )
    if lim["high_bytes"]:
        console.print(f"  cgroup memory.high {format_size(lim['high_bytes'])} (throttling)")
    for cand in lim["candidates"]:
        console.print(f"  candidate {format_size(cand['limit_bytes']):>10}  {cand['source']}")
    proc = data["process"]
    console.print(
        f"[bold]RSS[/bold] {format_size(proc['rss_bytes'])} (peak "
        f"{format_size(proc['peak_rss_bytes'])}); available {format_size(data['available_bytes'])}"
    )
    cg = data["cgroup"]
    if cg is None:
        console.print("[bold]cgroup[/bold] none with a memory controller")
    else:
        console.print(f"[bold]cgroup[/bold] v{cg['version']} {cg['path']}  ({cg['directory']})")
        if cg["usage_bytes"] is not None:
            console.print(
                f"  usage {format_size(cg['usage_bytes'])}, working set "
                f"{format_size(cg['working_set_bytes'])}"
            )
        if cg["events"]:
            console.print("  events " + ", ".join(f"{k}={v}" for k, v in cg["events"].items()))
    psi = data["psi"]
    if psi is None:
        console.print("[bold]PSI[/bold] not available on this kernel")
    else:
        some = psi["some"]
        console.print(
            f"[bold]PSI[/bold] some avg10={some['avg10']:.2f}% avg60={some['avg60']:.2f}% "
            f"avg300={some['avg300']:.2f}% ({psi['source']})"
        )
    prof = data["profiler"]
    if prof["backend"] == "native":
        console.print(
            f"[bold]Profiler[/bold] native sampler (every "
            f"{format_size(prof['default_interval_bytes'])} on average)"
        )
    else:
        why = f": {prof['native_error']}" if prof["native_error"] else ""
        console.print(f"[bold]Profiler[/bold] tracemalloc fallback (exact, slow){why}")
    table = Table(title="Configuration", title_justify="left")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source", style="cyan")
    for key, item in data["config"].items():
        table.add_row(key, _fmt(item["value"], key), item["source"])
    console.print(table)


@click.command(help=__doc__)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--profile",
    type=click.Choice(["development", "testing", "production"]),
    default=None,
    help="Resolve the configuration for this profile.",
)
def command(as_json: bool, profile: str | None) -> None:
    data = gather(profile)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        _render(data)
