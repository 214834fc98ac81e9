"""Check an importable zero-argument callable for memory leaks: memwarden leaks MODULE:FUNCTION.

Calls the function in rounds with garbage collection between them and judges
growth of the Python heap, the C heap and RSS with robust statistics (see
docs/leaks.md); a coroutine function is awaited in a fresh event loop and a
generator function is run to exhaustion on every call (its body is what is judged).
Exit status: 0 no leak, 1 leak found, 2 bad target or options (cannot be imported,
not callable, an async generator), 3 the target failed when called (it raised or
called ``sys.exit``: no verdict). The current directory is importable, as with
``python -m``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import importlib
import inspect
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from memwarden.exceptions import CommandError, ConfigurationError

#: Exit status when the target itself failed (raised, or called sys.exit): no verdict.
EXIT_TARGET_FAILED = 3
EXIT_BAD_TARGET = 2


def _printable(text: str) -> str:
    from memwarden.report.terminal import printable

    return printable(text)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else "its source"
        return f"has a syntax error at {where}: {exc.msg}"
    text = str(exc)
    return f"raised {type(exc).__name__}" + (f": {text}" if text else "")


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
    if module_name.startswith("."):
        raise CommandError(
            _printable(
                f"target {target!r}: relative module names cannot be imported from the "
                "command line; name it from a directory on the path, e.g. mypkg.handlers:handle"
            ),
            exit_code=EXIT_BAD_TARGET,
        )
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # as `python -m` does: the current directory is importable
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(
            _printable(f"target {target!r}: cannot import {module_name!r}: {exc}"),
            exit_code=EXIT_BAD_TARGET,
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SyntaxError, RuntimeError, sys.exit() at import time...
        raise CommandError(
            _printable(
                f"target {target!r}: importing {module_name!r} failed: the module {_describe(exc)}"
            ),
            exit_code=EXIT_BAD_TARGET,
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
    if inspect.isasyncgenfunction(obj):
        raise CommandError(
            f"target {target!r}: an async generator function cannot be checked; wrap it in "
            "a coroutine function that consumes it",
            exit_code=EXIT_BAD_TARGET,
        )
    fn: Callable[[], object] = obj
    return fn


def _exhausting(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with a returned generator run to exhaustion (otherwise its body never runs)."""

    @functools.wraps(fn)
    def call() -> object:
        result = fn()
        if inspect.isgenerator(result):
            collections.deque(result, maxlen=0)
            return None
        return result

    return call


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

    Exit status 0 when it does not leak, 1 when it does, 2 for a bad target or
    option, 3 when the target failed when called (raised or called sys.exit).
    """
    fn = resolve(target)
    from memwarden.leaks import check_leaks, check_leaks_async

    try:
        if inspect.iscoroutinefunction(fn):
            afn: Callable[[], Awaitable[object]] = fn
            report = asyncio.run(
                check_leaks_async(
                    afn, rounds=rounds, calls_per_round=calls_per_round, warmup=warmup
                )
            )
        else:
            report = check_leaks(
                _exhausting(fn), rounds=rounds, calls_per_round=calls_per_round, warmup=warmup
            )
    except ConfigurationError:  # bad options: main() reports it as a usage error
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the target failed (or exited): no verdict, never "no leak"
        raise CommandError(
            _printable(f"{target} {_describe(exc)}; no verdict"),
            exit_code=EXIT_TARGET_FAILED,
        ) from exc
    if as_json:
        data = report.to_dict()
        data["target"] = target
        click.echo(json.dumps(data, indent=2))
    else:
        # Names and paths in the summary come from the target: escape them line by line.
        click.echo("\n".join(_printable(line) for line in report.summary().splitlines()))
    return 1 if report.leaked else 0
