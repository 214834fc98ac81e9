"""``memwarden lint``: report memory anti-patterns in Python files."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from memwarden.exceptions import CommandError

__all__ = ["command"]


def _project_root(start: Path) -> tuple[Path, Path | None]:
    """The directory of the nearest ``pyproject.toml`` at or above ``start`` (else ``start``)."""
    from memwarden.config import find_pyproject

    pyproject = find_pyproject(start)
    return (pyproject.parent if pyproject is not None else start), pyproject


@click.command(name="lint")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file instead of standard output.",
)
@click.option(
    "--select", multiple=True, help="Only these codes or prefixes (comma-separated, repeatable)."
)
@click.option("--ignore", multiple=True, help="Never report these codes or prefixes.")
@click.option("--exclude", multiple=True, help="Skip files matching this glob (repeatable).")
@click.option("--no-cache", is_flag=True, help="Check every file; do not read or write the cache.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Cache directory [default: .memwarden-cache/ in the project root].",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    help="Worker processes [default: all cores].",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="pyproject.toml to read [tool.memwarden.lint] from [default: the nearest one].",
)
@click.option(
    "--include-tests",
    is_flag=True,
    help="Also lint tests and fixtures (tests/, test_*.py, conftest.py …) below the paths.",
)
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Report only findings not listed in this baseline file.",
)
@click.option(
    "--write-baseline",
    "write_baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the current findings to this baseline file and exit 0.",
)
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line on standard error.")
@click.option("--explain", metavar="CODE", help="Explain a rule (why it leaks, bad and good code).")
@click.option("--list-rules", is_flag=True, help="List the rules and exit.")
def command(  # noqa: PLR0917 - click passes every option positionally
    paths: tuple[Path, ...],
    output_format: str,
    output: Path | None,
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    exclude: tuple[str, ...],
    no_cache: bool,
    cache_dir: Path | None,
    jobs: int | None,
    config_path: Path | None,
    include_tests: bool,
    baseline_path: Path | None,
    write_baseline: Path | None,
    exit_zero: bool,
    quiet: bool,
    explain: str | None,
    list_rules: bool,
) -> int:
    """Report memory anti-patterns in Python files (default: the current directory).

    Only files that changed since the last run are re-checked (cache in
    .memwarden-cache/ in the project root). Configure select/ignore/exclude in
    [tool.memwarden.lint] of pyproject.toml; see --explain CODE for each rule.

    \b
    Rules:
      MW101 cache-on-method        MW401 listener-not-removed
      MW102 unbounded-cache        MW501 unclosed-resource
      MW201 whole-file-read (info) MW601 logger-per-call
      MW301 deep-clone             MW000 unparsable
    Suppress one line:  # memwarden: ignore[MW101] reason   (every code: # memwarden: ignore)
    Adopt on a codebase: --write-baseline .memwarden-baseline.json, then
                         --baseline .memwarden-baseline.json shows only new findings.
    Tests and fixtures below the paths are skipped unless --include-tests.
    Exit status:        0 no findings, 1 findings, 2 usage error
    """
    from memwarden import __version__
    from memwarden._files import describe_os_error, write_output
    from memwarden.lint.config import load_lint_config
    from memwarden.lint.output import render, summary
    from memwarden.lint.rules import RULES
    from memwarden.lint.runner import Baseline, lint_paths

    if list_rules:
        for code, rule in RULES.items():
            click.echo(f"{code}  {rule.name:<22} {rule.severity:<8} {rule.summary}")
        return 0
    if explain is not None:
        rule_class = RULES.get(explain.strip().upper())
        if rule_class is None:
            raise CommandError(
                f"--explain {explain!r}: unknown rule; known: {', '.join(RULES)}", exit_code=2
            )
        click.echo(f"{rule_class.code} {rule_class.name} ({rule_class.severity})\n")
        click.echo(rule_class.explanation())
        return 0

    cwd = Path.cwd()
    root, pyproject = _project_root(cwd)
    # A ConfigurationError here or below reaches main(), which exits 2 (usage).
    base = load_lint_config(config_path or pyproject)
    config = base.merged(select=select, ignore=ignore, exclude=exclude, include_tests=include_tests)
    # --write-baseline records every current finding, so an existing baseline is not applied.
    use_baseline = baseline_path is not None and write_baseline is None
    baseline = Baseline.load(baseline_path) if use_baseline and baseline_path else None
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CommandError(f"no such file or directory: {', '.join(missing)}", exit_code=2)
    cache = None if no_cache else (cache_dir or root / ".memwarden-cache")
    started = time.perf_counter()
    result = lint_paths(
        [str(p) for p in paths] or [str(cwd)],
        config=config,
        cache_dir=cache,
        jobs=jobs,
        root=root,
        baseline=baseline,
    )
    if write_baseline is not None:
        try:
            Baseline.of(result.findings, result.root).write(write_baseline)
        except OSError as exc:
            raise CommandError(
                f"--write-baseline: {describe_os_error(exc, write_baseline)}", exit_code=2
            ) from exc
        if not quiet:
            click.echo(
                f"memwarden lint: wrote {len(result.findings)} finding(s) to {write_baseline}",
                err=True,
            )
        return 0
    text = render(result, output_format, __version__)
    if output is not None:
        try:
            write_output(output, text)
        except OSError as exc:
            raise CommandError(f"--output: {describe_os_error(exc, output)}", exit_code=2) from exc
    else:
        click.echo(text, nl=False)
    if not quiet:
        counts = summary(result)
        click.echo(
            f"memwarden lint: {counts['findings']} finding(s) in {counts['files']} file(s) "
            f"({counts['checked']} checked, {counts['cached']} from cache"
            + (f", {counts['baselined']} in the baseline" if counts["baselined"] else "")
            + ") "
            f"in {time.perf_counter() - started:.2f} s",
            err=True,
        )
    sys.stdout.flush()
    return 0 if exit_zero else result.exit_code
