"""Heap snapshots: memwarden heap dump|top|why|diff.

\b
  memwarden heap dump [-o OUT] [-m] TARGET [ARGS...]   run a program, snapshot its heap at the end
  memwarden heap top SNAPSHOT                         retained size by type and by module
  memwarden heap why SNAPSHOT TYPE|ID                 shortest retainer paths from the roots
  memwarden heap diff A B [C]                         objects new in B (and alive in C), by type

Snapshots are V8 .heapsnapshot files: Chrome DevTools (Memory tab, Load) and
memlab read them too.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from memwarden._units import format_size
from memwarden.exceptions import CommandError

__all__ = ["command"]


@click.group("heap")
def command() -> None:
    """Heap snapshots: memwarden heap dump|top|why|diff.

    \b
      memwarden heap dump [-o OUT] [-m] TARGET [ARGS...]  snapshot a program's heap at its end
      memwarden heap top SNAPSHOT                        retained size by type and by module
      memwarden heap why SNAPSHOT TYPE|ID                shortest retainer paths from the roots
      memwarden heap diff A B [C]                        objects new in B (and alive in C)

    Snapshots are V8 .heapsnapshot files that Chrome DevTools and memlab read too.
    """


def _load(path: str) -> Any:
    from memwarden import heapgraph

    try:
        return heapgraph.load(path)
    except OSError as exc:
        raise CommandError(f"cannot read {path!r}: {exc.strerror or exc}", exit_code=2) from None


@command.command("dump", context_settings={"ignore_unknown_options": True})
@click.option("-m", "module", is_flag=True, help="Run TARGET as a module (like python -m).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Snapshot to create [default: ./memwarden-<name>.<pid>.heapsnapshot].",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dump_command(
    module: bool, output: Path | None, as_json: bool, target: str, args: tuple[str, ...]
) -> int:
    """Run a Python script or module and snapshot its heap when it ends.

    The program runs in a child Python as its ``__main__``; when it returns (or
    calls sys.exit) its objects are written as a new .heapsnapshot file.
    """
    if output is None:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(target).name)[:40]
        output = Path(f"memwarden-{stem or 'run'}.{os.getpid()}.heapsnapshot")
    if output.exists() or output.is_symlink():
        raise CommandError(
            f"{output}: exists; heap snapshots are written to new files", exit_code=2
        )
    src = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = [sys.executable, "-m", "memwarden.heapwatch", "--dump-at-exit", str(output)]
    argv += [*(["-m"] if module else []), target, *args]
    proc = subprocess.run(argv, env=env, check=False)
    if not output.exists():
        raise CommandError(
            f"{target}: no snapshot written (exit code {proc.returncode})", exit_code=1
        )
    size = output.stat().st_size
    if as_json:
        click.echo(
            json.dumps({"path": str(output), "size_bytes": size, "exit_code": proc.returncode})
        )
    else:
        click.echo(f"memwarden: heap snapshot {output} ({format_size(size)})", err=True)
    return proc.returncode


def _table(rows: list[Any], title: str) -> list[str]:
    out = [title, f"  {'retained':>10}  {'self':>10}  {'count':>8}  name"]
    out += [
        f"  {format_size(r.retained_bytes):>10}  {format_size(r.self_bytes):>10}  "
        f"{r.count:>8}  {r.name}"
        for r in rows
    ]
    return out


def _html(path: str, types: list[Any], modules: list[Any]) -> str:
    def rows(items: list[Any]) -> str:
        top = max((r.retained_bytes for r in items), default=1) or 1
        return "".join(
            f"<tr><td>{html.escape(r.name)}</td><td class=n>{format_size(r.retained_bytes)}</td>"
            f"<td class=n>{format_size(r.self_bytes)}</td><td class=n>{r.count}</td>"
            f"<td><div class=bar style='width:{100 * r.retained_bytes // top}%'></div></td></tr>"
            for r in items
        )

    head = "<tr><th>name</th><th>retained</th><th>self</th><th>count</th><th></th></tr>"
    return (
        "<!doctype html><meta charset=utf-8><title>memwarden heap top</title><style>"
        "body{font:14px system-ui,sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;margin-bottom:24px;width:100%}"
        "td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}"
        ".n{text-align:right;font-variant-numeric:tabular-nums}td:last-child{width:30%}"
        ".bar{background:#4a7fd0;height:10px;border-radius:2px}</style>"
        f"<h2>memwarden heap top: {html.escape(Path(path).name)}</h2>"
        f"<h3>By type</h3><table>{head}{rows(types)}</table>"
        f"<h3>By module</h3><table>{head}{rows(modules)}</table>"
    )


@command.command("top")
@click.argument("snapshot", type=click.Path(dir_okay=False))
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write an HTML view.",
)
def top_command(snapshot: str, limit: int, as_json: bool, html_out: Path | None) -> int:
    """Retained size by type and by module, from the snapshot's dominator tree."""
    g = _load(snapshot)
    types, modules = g.by_type(limit=limit), g.by_module(limit=limit)
    if html_out is not None:
        from memwarden._files import write_output

        write_output(html_out, _html(snapshot, types, modules))
    if as_json:
        data = {
            "snapshot": snapshot,
            "nodes": g.node_count,
            "total_bytes": sum(g.self_sizes),
            "types": [t.to_dict() for t in types],
            "modules": [m.to_dict() for m in modules],
        }
        click.echo(json.dumps(data, indent=2))
        return 0
    click.echo(f"{snapshot}: {g.node_count} nodes, {format_size(sum(g.self_sizes))}")
    click.echo("\n".join(_table(types, "By type:")))
    click.echo("\n".join(_table(modules, "By module:")))
    return 0


@command.command("why")
@click.argument("snapshot", type=click.Path(dir_okay=False))
@click.argument("selector", metavar="TYPE|ID")
@click.option("-n", "--max-paths", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def why_command(snapshot: str, selector: str, max_paths: int, as_json: bool) -> int:
    """Shortest retainer paths from the roots to objects of TYPE (largest first) or node ID.

    Exit status 1 when nothing matches.
    """
    g = _load(snapshot)
    found = g.find(selector)
    paths = g.paths(found, max_paths=max_paths)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "selector": selector,
                    "matches": len(found),
                    "paths": [p.to_dict() for p in paths],
                },
                indent=2,
            )
        )
    else:
        if not found:
            click.echo(f"no object matches {selector!r} in {snapshot}", err=True)
        for p in paths:
            click.echo(f"{p.type_name} @{p.node_id} retains {format_size(p.retained_bytes)}:")
            click.echo(f"  {p.label}")
        if found and not paths:
            click.echo(f"{len(found)} match(es), none reachable from the roots", err=True)
    return 0 if found else 1


@command.command("diff")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.argument("c", type=click.Path(dir_okay=False), required=False)
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def diff_command(a: str, b: str, c: str | None, limit: int, as_json: bool) -> int:
    """Objects new in B (and, given C, still alive in C), by type, with retainer paths.

    The three-snapshot technique: A after warm-up, B after the suspect action,
    C after repeating it. Objects are matched across snapshots by type and
    shortest retainer path.
    """
    from memwarden import heapgraph

    d = heapgraph.diff(_load(a), _load(b), _load(c) if c else None, limit=limit)
    if as_json:
        click.echo(json.dumps(d.to_dict(), indent=2))
        return 0
    click.echo("\n".join(_table(d.types, f"New in {b}" + (f" and alive in {c}:" if c else ":"))))
    if d.paths:
        click.echo("Retained through:")
        for p in d.paths:
            click.echo(f"  {p.type_name} ({format_size(p.retained_bytes)}): {p.label}")
    return 0
