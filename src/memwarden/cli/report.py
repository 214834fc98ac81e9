"""``memwarden report``: summarize traces in the terminal, as JSON, or as an HTML report."""

from __future__ import annotations

import errno
import json
import stat
import sys
import warnings
from pathlib import Path

import click

from memwarden.exceptions import CommandError, MemwardenWarning, TraceFormatError

__all__ = ["command"]


@click.command()
@click.argument("traces", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a single-file HTML report (chart, sites, operations) here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option(
    "--strict", is_flag=True, help="Refuse a damaged trace instead of reading up to the damage."
)
@click.option("--title", help="Title of the HTML report.")
def command(
    traces: tuple[Path, ...], html_out: Path | None, as_json: bool, strict: bool, title: str | None
) -> int:
    """Summarize memwarden.trace/1 files written by `memwarden run`.

    Prints the peak and when it happened, duration, mean, the growth slope with
    a leak suspicion when memory grows steadily, the top allocation sites and
    the track() operations. Several traces are compared side by side in the
    HTML report.
    """
    from memwarden.report.summary import summarize
    from memwarden.report.terminal import printable
    from memwarden.report.trace import read_trace

    loaded = []
    for path in traces:
        _check_readable(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MemwardenWarning)
            try:
                trace = read_trace(path, strict=strict)
            except TraceFormatError as exc:
                raise CommandError(printable(str(exc)), exit_code=1) from None
            except OSError as exc:
                raise CommandError(
                    printable(f"cannot read {path}: {exc.strerror or exc}"), exit_code=1
                ) from None
        for w in caught:
            click.echo(f"memwarden: warning: {printable(str(w.message))}", err=True)
        loaded.append(trace)

    if as_json:
        out = [summarize(t).to_dict() for t in loaded]
        # to_dict() has no NaN/Infinity; allow_nan=False keeps that a promise.
        click.echo(json.dumps(out[0] if len(out) == 1 else out, indent=2, allow_nan=False))
    else:
        from rich.console import Console

        from memwarden.report.terminal import render_terminal

        console = Console(file=sys.stdout, highlight=False)
        for trace in loaded:
            render_terminal(summarize(trace), console, spark=[s.rss_bytes for s in trace.samples])
            console.print()
    if html_out is not None:
        from memwarden.report.html import render_html

        try:
            page = render_html(loaded, title=title)
        except ModuleNotFoundError as exc:
            raise CommandError(
                f"the HTML report draws its chart with matplotlib ({exc}); "
                "install it with: pip install 'memwarden[report]'",
                exit_code=1,
            ) from None
        from memwarden._files import describe_os_error, write_output

        try:
            write_output(html_out, page)
        except OSError as exc:
            raise CommandError(printable(describe_os_error(exc, html_out)), exit_code=2) from None
        click.echo(printable(f"memwarden: wrote {html_out}"), err=True)
    return 0


def _check_readable(path: Path) -> None:
    """Refuse a trace argument that is missing, a loop or not a file, with the reason."""
    from memwarden.report.terminal import printable

    try:
        st = path.stat()
    except FileNotFoundError:
        raise CommandError(printable(f"no such trace file: {path}"), exit_code=2) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            reason = "a symlink loop (too many levels of symbolic links)"
        else:
            reason = exc.strerror or str(exc)
        raise CommandError(printable(f"cannot read {path}: {reason}"), exit_code=2) from None
    if stat.S_ISDIR(st.st_mode):
        raise CommandError(printable(f"{path}: is a directory, not a trace"), exit_code=2)
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        raise CommandError(printable(f"{path}: not a regular file"), exit_code=2)
