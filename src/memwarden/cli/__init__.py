"""The ``memwarden`` command line: one module per subcommand, errors mapped to exit codes here.

Each subcommand lives in ``memwarden.cli.<name>`` and exposes a click command
named ``command``; its docstring is its help. Modules load only when their
command runs (or when ``--help`` lists them), so ``memwarden info`` never imports
the report or lint machinery.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from memwarden._units import parse_size
from memwarden.exceptions import CommandError, ConfigurationError, MemwardenError

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "SIZE", "main", "run_main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Subcommand name -> module under memwarden.cli. Listed here so `--help` is stable.
COMMANDS: dict[str, str] = {
    "attach": "attach",
    "demo": "demo",
    "info": "info",
    "leaks": "leaks",
    "lint": "lint",
    "report": "report",
    "run": "run",
    "watch": "watch",
}


class _Size(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.3
    """A byte-size option value (``parse_size`` syntax); a bad one is a usage error naming it."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        hint = max(param.opts, key=len) if param is not None and param.opts else "argument"
        try:
            return parse_size(value, source=hint)
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param, param_hint=hint) from None


#: The click type of every size option (``--limit 512MiB``): converts to bytes.
SIZE = _Size()


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None:
            return None
        try:
            mod = importlib.import_module(f"memwarden.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"memwarden.cli.{module}":
                return None  # subcommand not built in this version
            raise
        command: click.Command = mod.command
        return command


def _version() -> str:
    from memwarden import __version__

    return __version__


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="memwarden")
def cli() -> None:
    """memwarden keeps Python programs inside their memory budget."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Every error becomes an exit code here, in one place: memwarden errors print
    their message and exit with their code (``CommandError.exit_code``, 1
    otherwise); usage errors exit 2; Ctrl-C exits 130.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result: Any = cli.main(args=args, prog_name="memwarden", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.Abort:
        click.echo("Aborted.", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except CommandError as exc:
        _error(exc)
        return exc.exit_code
    except ConfigurationError as exc:  # bad input (a size, a setting, a config file): usage
        _error(exc)
        return EXIT_USAGE
    except MemwardenError as exc:
        _error(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    return int(result) if isinstance(result, int) else EXIT_OK


def _error(exc: BaseException) -> None:
    # Messages quote values from files, traces and the environment: escape control
    # characters so none reaches the terminal raw.
    from memwarden.report.terminal import printable

    click.echo(f"memwarden: error: {printable(str(exc))}", err=True)


def run_main() -> None:
    """Console-script entry point."""
    sys.exit(main())
