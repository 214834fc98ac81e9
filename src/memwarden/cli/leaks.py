"""Check an importable zero-argument callable for memory leaks: memwarden leaks MODULE:FUNCTION.

Calls the function in rounds with garbage collection between them and judges
growth of the Python heap, the C heap and RSS with robust statistics (see
docs/leaks.md); a coroutine function is awaited in a fresh event loop.
Exit status: 0 no leak, 1 leak found, 2 bad target or options.
The current directory is importable, as with ``python -m``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from memwarden.exceptions import CommandError, ConfigurationError


def resolve(target: str) -> Callable[[], object]:
    """Import ``module:attr.path`` and return the callable it names.

    Raises:
        CommandError: (exit 2) the target is malformed, missing or not callable.
    """
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise CommandError(
            f"target {target!r}: expected MODULE:FUNCTION, e.g. myapp.handlers:handle",
            exit_code=2,
        )
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # as `python -m` does: the current directory is importable
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(
            f"target {target!r}: cannot import {module_name!r}: {exc}", exit_code=2
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise CommandError(
                f"target {target!r}: {module_name!r} has no attribute {attr_path!r}", exit_code=2
            ) from exc
    if not callable(obj):
        raise CommandError(f"target {target!r}: {type(obj).__name__} is not callable", exit_code=2)
    fn: Callable[[], object] = obj
    return fn


@click.command("leaks")
@click.argument("target", metavar="MODULE:FUNCTION")
@click.option("--rounds", type=int, default=8, show_default=True, help="Measured rounds (>= 4).")
@click.option(
    "--calls-per-round",
    type=int,
    default=None,
    help="Calls per round [default: calibrated to about 60 ms per round].",
)
@click.option("--warmup", type=int, default=2, show_default=True, help="Rounds before measuring.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(
    target: str, rounds: int, calls_per_round: int | None, warmup: int, as_json: bool
) -> int:
    """Check an importable zero-argument callable for memory leaks: memwarden leaks MODULE:FUNCTION.

    Exit status 0 when it does not leak, 1 when it does, 2 for a bad target or option.
    """
    fn = resolve(target)
    from memwarden.leaks import check_leaks, check_leaks_async

    try:
        if inspect.iscoroutinefunction(fn):
            report = asyncio.run(
                check_leaks_async(fn, rounds=rounds, calls_per_round=calls_per_round, warmup=warmup)
            )
        else:
            report = check_leaks(fn, rounds=rounds, calls_per_round=calls_per_round, warmup=warmup)
    except ConfigurationError:  # bad options: main() reports it as a usage error
        raise
    except Exception as exc:  # the user's function failed: say so, do not dump our stack
        raise CommandError(f"{target} raised {type(exc).__name__}: {exc}", exit_code=1) from exc
    if as_json:
        data = report.to_dict()
        data["target"] = target
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(report.summary())
    return 1 if report.leaked else 0
