"""``memwarden demo``: the naive and the memwarden version of one job, profiled side by side."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from memwarden._units import format_size
from memwarden.cli import SIZE
from memwarden.exceptions import CommandError

__all__ = ["command"]


@click.command()
@click.option(
    "--size",
    "size_bytes",
    type=SIZE,
    default="100MB",
    show_default=True,
    help="Size of the synthetic access log (e.g. 200MB).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the synthetic log.")
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("memwarden-demo.html"),
    show_default=True,
    help="Where to write the HTML report.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the log, traces and results here [default: a temporary directory].",
)
@click.option(
    "--no-service",
    is_flag=True,
    help="Skip part two (the caching service under a hard limit, ungoverned and governed).",
)
@click.option(
    "--sequential",
    is_flag=True,
    help="Run the variants one after the other (steadier times) instead of in parallel.",
)
def command(  # noqa: PLR0917 - click passes every option positionally
    size_bytes: int,
    seed: int,
    html_out: Path,
    workdir: Path | None,
    no_service: bool,
    sequential: bool,
) -> int:
    """Profile a naive and a memwarden log analysis and compare them.

    Generates a synthetic access log, analyses it twice under `memwarden run` —
    naively (whole-file read, every record kept, a deep clone, an unbounded
    cache) and the memwarden way (streaming, pooled buffers, a bounded cache,
    adaptive batches, track() spans) — then prints peak RSS, time and whether
    the results are equal. Part two runs a service that caches every response under
    one hard limit (a memory cgroup as root, else RLIMIT_DATA): ungoverned it is killed
    or fails, governed by memwarden it finishes. The HTML report shows every timeline.
    """
    from rich.console import Console
    from rich.table import Table

    from memwarden.report.demo import run_demo

    if not 10**5 <= size_bytes <= 10**11:
        raise click.BadParameter(
            f"{format_size(size_bytes)}: choose between 100KB and 100GB", param_hint="--size"
        )
    console = Console(file=sys.stdout, highlight=False)
    html_path: Path | None = html_out
    if importlib.util.find_spec("matplotlib") is None:
        console.print(
            "memwarden demo: matplotlib is not installed, so no HTML report "
            "(pip install 'memwarden[report]')",
            markup=False,
        )
        html_path = None
    demo = run_demo(
        size_bytes=size_bytes,
        seed=seed,
        html_path=html_path,
        workdir=workdir,
        keep=workdir is not None,
        parallel=not sequential,
        service=not no_service,
        progress=lambda msg: console.print(f"[dim]memwarden demo:[/] {msg}", markup=True),
    )
    naive, mw = demo.variants["naive"], demo.variants["memwarden"]
    table = Table(title=f"{demo.log_bytes / 1e6:.0f} MB log, {demo.log_lines:,} lines")
    for col in ("version", "peak RSS", "time", "exit", "result"):
        table.add_column(col, justify="left" if col in ("version", "result") else "right")
    for v in (naive, mw):
        table.add_row(
            v.name,
            format_size(v.run.peak_rss_bytes),
            f"{v.run.duration_s:.1f} s",
            str(v.run.exit_code),
            "equal" if demo.results_equal else ("differs" if v.ok else "failed"),
        )
    console.print(table)
    if naive.run.peak_rss_bytes:
        ratio = mw.run.peak_rss_bytes / naive.run.peak_rss_bytes
        console.print(
            f"memwarden version peak: {ratio:.1%} of the naive one "
            f"({naive.run.peak_rss_bytes / max(1, mw.run.peak_rss_bytes):.0f}x less), "
            f"results {'equal' if demo.results_equal else 'NOT equal'}."
        )
    for name, how in sorted(mw.components.items()):
        console.print(f"  {name}: {how}", markup=False)
    svc = demo.service
    if svc is not None:
        table = Table(title=f"part two: a caching service under {svc.how}")
        for col in ("service", "outcome", "requests", "peak RSS", "relief runs"):
            table.add_column(col, justify="left" if col in ("service", "outcome") else "right")
        for mode, (run, result) in svc.runs.items():
            table.add_row(
                mode,
                svc.outcome(mode),
                str(result["requests_done"]) if result else "-",
                format_size(run.peak_rss_bytes),
                str(result.get("relief_runs", "-")) if result else "-",
            )
        console.print(table)
    if demo.html_path is not None:
        console.print(f"report: {demo.html_path}", markup=False)
    if svc is not None and svc.outcome("governed") != "finished":
        raise CommandError("the governed service did not finish under the limit", exit_code=1)
    if not demo.results_equal:
        raise CommandError("the two versions disagree or one failed; see above", exit_code=1)
    return 0
