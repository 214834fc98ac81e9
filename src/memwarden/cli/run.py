"""``memwarden run``: profile a program's memory and write a trace."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import TextIO

import click

from memwarden._units import format_size
from memwarden.cli import SIZE
from memwarden.exceptions import CommandError

__all__ = ["LiveLine", "command"]

EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126
#: The trace file cannot be created (missing directory, read-only, a planted name).
EXIT_OUTPUT = 2


class LiveLine:
    """One self-rewriting terminal line: current RSS, peak, a sparkline and elapsed time."""

    def __init__(self, stream: TextIO, *, every_s: float = 0.1, width: int = 30) -> None:
        self.stream = stream
        self.every_s = every_s
        self._history: deque[int] = deque(maxlen=width * 4)
        self._last = 0.0
        self._width = width
        self.shown = False

    def __call__(self, t_s: float, rss_bytes: int, peak_bytes: int) -> None:
        from memwarden.report.terminal import sparkline

        self._history.append(rss_bytes)
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        line = (
            f"memwarden  {format_size(rss_bytes):>10}  peak {format_size(peak_bytes):>10}  "
            f"{sparkline(list(self._history), self._width)}  {t_s:7.1f} s"
        )
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the line (before the program's last output or the summary)."""
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


_DUMP_BUDGET_SHARE = 0.85


def _heap_dump_child(
    argv: list[str], limit_bytes: int | None, *, wrapped: bool
) -> tuple[list[str], dict[str, str]]:
    """The child command and environment for ``--heap-dump-near-limit``.

    The child's governor takes 85% of ``--limit`` as its budget (CRITICAL then comes
    at about 82% of the limit, leaving room for the dump's own memory before memwarden
    stops the program) and :mod:`memwarden.heapwatch` dumps when it turns CRITICAL.
    """
    if limit_bytes is None:
        raise click.UsageError("--heap-dump-near-limit needs --limit")
    if argv[0] != sys.executable and not wrapped:
        raise click.UsageError("--heap-dump-near-limit needs a Python script or module (-m)")
    import memwarden

    src = str(Path(memwarden.__file__).resolve().parent.parent)
    old = os.environ.get("PYTHONPATH", "")
    env = {
        "PYTHONPATH": src + (os.pathsep + old if old else ""),
        "MEMWARDEN_MAX_MEMORY": str(int(limit_bytes * _DUMP_BUDGET_SHARE)),
        "MEMWARDEN_HEAP_DUMP_DIR": os.environ.get("MEMWARDEN_HEAP_DUMP_DIR") or str(Path.cwd()),
        "MEMWARDEN_HEAP_DUMP_SIGNAL": os.environ.get("MEMWARDEN_HEAP_DUMP_SIGNAL") or "1",
    }
    if wrapped:  # the trace bootstrap installs the dumps itself
        return argv, env
    return [sys.executable, "-m", "memwarden.heapwatch", *argv[1:]], env


def _default_output(name: str) -> Path:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name)[:40] or "run"
    return Path(f"memwarden-{stem}.{os.getpid()}.trace.jsonl")


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "-m", "module", is_flag=True, help="Run TARGET as a module (like python -m), with this Python."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trace file to write [default: ./memwarden-<name>.<pid>.trace.jsonl].",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.001, max=60.0),
    default=0.1,
    show_default=True,
    help="Seconds between samples of the process tree.",
)
@click.option(
    "--limit",
    "limit_bytes",
    type=SIZE,
    help="Stop the program when its tree's RSS exceeds this (e.g. 512MiB).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0.0, max=600.0),
    default=5.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL when the limit is exceeded.",
)
@click.option(
    "--profile/--no-profile",
    default=True,
    show_default=True,
    help="Python targets: sample the heap of every Python process of the run (the target and "
    "the Python children it starts or forks) with the native sampling profiler: top stacks "
    "at each process's peak and at exit, at a few percent of cost.",
)
@click.option(
    "--profile-interval",
    type=SIZE,
    default="512KiB",
    show_default=True,
    help="--profile: mean bytes allocated between two samples (smaller: finer and costlier).",
)
@click.option(
    "--python-heap",
    is_flag=True,
    help="Python targets: trace the heap exactly with tracemalloc (costly: often 10x slower "
    "and more memory); top allocation sites at the peak and at exit, plus track() spans. "
    "Replaces --profile.",
)
@click.option(
    "--spans",
    is_flag=True,
    help="Python targets: record track() operation spans without tracemalloc (cheaper).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1, max=200),
    default=20,
    show_default=True,
    help="How many allocation sites to keep per snapshot.",
)
@click.option(
    "--frames",
    type=click.IntRange(min=1, max=64),
    default=4,
    show_default=True,
    help="--python-heap: stack frames recorded per allocation (more finds your line behind "
    "deeper library calls, and costs more).",
)
@click.option(
    "--heap-dump-near-limit",
    "heap_dump",
    is_flag=True,
    help="Python targets under --limit: write a heap snapshot (.heapsnapshot, into "
    "$MEMWARDEN_HEAP_DUMP_DIR or the current directory) when memory pressure turns "
    "CRITICAL near the limit, and on SIGUSR2.",
)
@click.option(
    "--agent",
    is_flag=True,
    help="Python targets: start memwarden's agent in every Python process of the run, for "
    "`memwarden attach PID ...` (sets MEMWARDEN_AGENT=1; the start-up shim of the default "
    "profiling loads memwarden in each process).",
)
@click.option("--label", help="Name of this run in reports [default: the command].")
@click.option("-q", "--quiet", is_flag=True, help="No live line and no summary.")
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(  # noqa: PLR0917 - click passes options as arguments
    module: bool,
    output: Path | None,
    interval: float,
    limit_bytes: int | None,
    grace: float,
    profile: bool,
    profile_interval: int,
    python_heap: bool,
    spans: bool,
    top: int,
    frames: int,
    heap_dump: bool,
    agent: bool,
    label: str | None,
    quiet: bool,
    target: str,
    args: tuple[str, ...],
) -> int:
    """Run a program and record the memory of its whole process tree.

    \b
      memwarden run script.py [ARGS...]        a Python script, with this Python
      memwarden run -m package.module [ARGS...]
      memwarden run [OPTIONS] -- COMMAND [ARGS...]   any program

    The RSS of the program and all its children is sampled every --interval and
    written to a memwarden.trace/1 file as it comes; `memwarden report TRACE`
    summarizes it (add --html OUT for a chart). The program's exit code is
    passed through (128+N when signal N ended it); with --limit, a program
    stopped for exceeding it makes memwarden exit 3.
    """
    from memwarden.report import runner

    if limit_bytes is not None and limit_bytes <= 0:
        raise click.BadParameter("must be above zero", param_hint="--limit")

    bootstrap = python_heap or spans
    if module:
        argv = [sys.executable, "-m", target, *args]
    elif target.endswith((".py", ".pyw")):
        argv = [sys.executable, target, *args]
    else:
        argv = [target, *args]
    if bootstrap:
        try:
            argv = runner.bootstrap_command(argv)
        except ValueError as exc:
            raise CommandError(
                f"--python-heap/--spans need a Python script or module: {exc}", exit_code=2
            ) from None
    from memwarden.report.terminal import printable

    if heap_dump:
        argv, env_dump = _heap_dump_child(argv, limit_bytes, wrapped=bootstrap)
    trace_path = output or _default_output(target)
    t0 = (time.monotonic(), time.time())
    env = dict(os.environ, **env_dump) if heap_dump else dict(os.environ)
    if limit_bytes is not None:
        # A governed child budgets against the limit it runs under, so it relieves
        # pressure before the guard has to stop it; an explicit budget is kept.
        env.setdefault("MEMWARDEN_MAX_MEMORY", str(limit_bytes))
    if agent:
        env["MEMWARDEN_AGENT"] = "1"
    python_target = (
        module or target.endswith((".py", ".pyw")) or runner.is_python_executable(argv[0])
    )
    profiling = profile and python_target and not python_heap
    if profiling:
        if profile_interval <= 0:
            raise click.BadParameter("must be above zero", param_hint="--profile-interval")
        env = runner.profile_env(
            env,
            trace_path=trace_path,
            t0_monotonic=t0[0],
            t0_wall=t0[1],
            interval_bytes=profile_interval,
            frames=64,
        )
    if bootstrap:
        env = runner.bootstrap_env(
            env,
            trace_path=trace_path,
            t0_monotonic=t0[0],
            t0_wall=t0[1],
            heap=python_heap,
            spans=True,
            top=top,
            interval_s=interval,
            frames=frames,
        )
    live = LiveLine(sys.stderr) if (not quiet and sys.stderr.isatty()) else None

    def on_limit(message: str) -> None:
        if live is not None:
            live.clear()
        click.echo(f"memwarden: {message}", err=True)

    def on_warning(message: str) -> None:
        if live is not None:
            live.clear()
        click.echo(f"memwarden: warning: {printable(message)}", err=True)

    header = {
        "command": [*(["-m"] if module else []), target, *args],
        "label": label or " ".join([Path(target).name, *args])[:120],
        "python_heap": python_heap,
        "spans": bootstrap,
        "profile": profiling,
    }
    try:
        result = runner.run_program(
            argv,
            trace_path=trace_path,
            interval_s=interval,
            limit_bytes=limit_bytes,
            grace_s=grace,
            env=env,
            header=header,
            on_sample=live,
            on_limit=on_limit,
            t0=t0,
            exclusive_trace=output is None,
            on_warning=on_warning,
            adopt_orphans=True,
        )
    except runner.TraceOutputError as exc:
        hint = "; pass -o to choose another name" if output is None else ""
        raise CommandError(printable(f"{exc}{hint}"), exit_code=EXIT_OUTPUT) from exc
    except FileNotFoundError as exc:
        raise CommandError(
            printable(f"cannot run {argv[0]!r}: not found"), exit_code=EXIT_NOT_FOUND
        ) from exc
    except PermissionError as exc:
        raise CommandError(
            printable(f"cannot run {argv[0]!r}: {exc.strerror or exc}"), exit_code=EXIT_CANNOT_RUN
        ) from exc
    finally:
        if live is not None:
            live.clear()
    if result.reason == "limit":
        click.echo(
            printable(
                f"memwarden: stopped {target!r}: it exceeded --limit "
                f"{format_size(limit_bytes or 0)} (exit code {runner.EXIT_LIMIT})"
            ),
            err=True,
        )
    if not quiet:
        incomplete = " (incomplete: writing it failed)" if result.trace_error else ""
        click.echo(
            printable(
                f"memwarden: peak {format_size(result.peak_rss_bytes)} in "
                f"{result.duration_s:.2f} s, {result.samples} samples -> {trace_path}{incomplete}"
                f"  (memwarden report {trace_path})"
            ),
            err=True,
        )
    return result.exit_code
