"""Talk to the memwarden agent of a running process: snapshot, live profile, heap dump, relief.

COMMAND is one of: hello, snapshot, top, stacks, profile-start, profile-stop,
dump PATH, explain, relieve, history. The target must run an agent: start it with
``memwarden.agent.start()`` in the program, ``MEMWARDEN_AGENT=1`` in its environment
or ``memwarden run --agent``. Only the same user can attach (the socket is 0600 and
the agent checks the peer's uid). ``--inject`` starts an agent in a process that has
none by running two lines of Python in it through gdb (as memray's attach does: it
stops the process briefly, needs gdb and ptrace permission, and is for debugging, not
production). On Python 3.14 and later ``--inject`` uses ``sys.remote_exec`` (PEP 768)
instead, which needs no gdb.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from memwarden._units import format_size
from memwarden.exceptions import CommandError

__all__ = ["command"]

_COMMANDS: dict[str, tuple[str, dict[str, Any]]] = {
    "hello": ("hello", {}),
    "snapshot": ("snapshot", {}),
    "top": ("profile.top", {}),
    "stacks": ("profile.stacks", {}),
    "profile-start": ("profile.start", {}),
    "profile-stop": ("profile.stop", {}),
    "dump": ("heap.dump", {}),
    "explain": ("governor.explain", {}),
    "relieve": ("governor.relieve", {}),
    "history": ("monitor.history", {}),
}

_HOW_TO_ENABLE = (
    "no memwarden agent runs in process {pid}. Start one in the program with "
    "`memwarden.agent.start()`, run it with MEMWARDEN_AGENT=1 (or `memwarden run --agent`), "
    "or pass --inject to start one through gdb"
)


def _remote_exec(pid: int) -> bool:
    """Python >= 3.14: ask the target to start its agent (PEP 768); False where unavailable."""
    remote_exec = getattr(sys, "remote_exec", None)
    if remote_exec is None:
        return False
    import tempfile

    # The target runs the file at its next safe point; it must outlive that moment,
    # so it is left in the private runtime directory, not deleted at once.
    from memwarden._files import runtime_dir, safe_directory

    directory = safe_directory(runtime_dir(), purpose="agent directory", create=True)
    fd, script = tempfile.mkstemp(prefix=f"inject-{pid}-", suffix=".py", dir=directory)
    with os.fdopen(fd, "w") as fh:
        fh.write("import memwarden.agent\nmemwarden.agent.start()\n")
    try:
        remote_exec(pid, script)
    except (OSError, RuntimeError) as exc:
        raise CommandError(f"sys.remote_exec could not reach {pid}: {exc}", exit_code=1) from None
    return True


def _inject(pid: int, timeout_s: float = 30.0) -> None:
    """Start an agent in ``pid``: PEP 768 where Python has it, else through gdb."""
    if _remote_exec(pid):
        return
    gdb = shutil.which("gdb")
    if gdb is None:
        raise CommandError("--inject needs gdb (apt-get install gdb)", exit_code=1)
    code = "import memwarden.agent; memwarden.agent.start()"
    proc = subprocess.run(
        [gdb, "-batch", "-nx", "-p", str(pid),
         "-ex", "set confirm off",
         "-ex", "call (int) PyGILState_Ensure()",
         "-ex", f'call (int) PyRun_SimpleString("{code}")',
         "-ex", "call (void) PyGILState_Release($1)",
         "-ex", "detach", "-ex", "quit"],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise CommandError(
            f"gdb could not start the agent in {pid}: {proc.stderr.strip()[-500:]}", exit_code=1
        )


def _render(name: str, result: dict[str, Any]) -> str:
    if name == "snapshot":
        lines = [
            f"pid {result['pid']}: RSS {format_size(result['rss_bytes'])} "
            f"(peak {format_size(result['peak_rss_bytes'])}), level {result['level']}, "
            f"budget {format_size(result['budget_bytes'])}",
            f"limit {format_size(result['limit_bytes'])} ({result['limit_source']})",
            f"threads {result['threads']}, profiling {'on' if result['profiling'] else 'off'}",
        ]
        return "\n".join(lines)
    if name == "top":
        lines = [
            f"{result['kind']} heap, by {result['by']}: {format_size(result['total_bytes'])} "
            f"estimated from {result['samples']} samples"
        ]
        for e in result["top"]:
            lines.append(f"  {format_size(e['size_bytes']):>10}  {e['key']}")
        return "\n".join(lines)
    if name == "stacks":
        return "\n".join(result["collapsed"])
    if name == "explain":
        return str(result["explain"])
    if name == "relieve":
        return str(result["summary"])
    return json.dumps(result, indent=2, default=str)


@click.command()
@click.argument("pid", type=int)
@click.argument("what", metavar="COMMAND", type=click.Choice(sorted(_COMMANDS)))
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the agent's answer as JSON.")
@click.option("-n", "n", type=click.IntRange(1, 10_000), default=10, show_default=True,
              help="Entries for top, stacks, history.")  # fmt: skip
@click.option("--by", type=click.Choice(["line", "function", "file", "stack"]), default="line",
              show_default=True, help="Grouping for top.")  # fmt: skip
@click.option("--kind", type=click.Choice(["live", "allocations", "peak"]), default="live",
              show_default=True, help="Which profile for top and stacks.")  # fmt: skip
@click.option("--inject", is_flag=True, help="Start an agent through gdb if none runs.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the answer.")  # fmt: skip
def command(  # noqa: PLR0917 - click passes every option positionally
    pid: int,
    what: str,
    path: str | None,
    as_json: bool,
    n: int,
    by: str,
    kind: str,
    inject: bool,
    timeout: float,
) -> int:
    """Talk to the memwarden agent of process PID."""
    from memwarden.agent import AgentError, Client

    if pid <= 0:
        raise click.BadParameter(f"{pid}: expected a process id above 0", param_hint="PID")
    cmd, _ = _COMMANDS[what]
    args: dict[str, Any] = {}
    if what in ("top", "stacks"):
        args.update(n=n, kind=kind)
        if what == "top":
            args["by"] = by
    elif what == "history":
        args["n"] = n
    elif what == "dump":
        if not path:
            raise click.BadParameter("dump needs the PATH of a new file", param_hint="PATH")
        args["path"] = str(Path(path).absolute())
    try:
        client = Client(pid, timeout_s=timeout)
    except AgentError as exc:
        if exc.code != "not_running":
            raise CommandError(str(exc), exit_code=1) from None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise CommandError(f"no process {pid}", exit_code=1) from None
        except PermissionError:
            raise CommandError(f"process {pid} belongs to another user", exit_code=1) from None
        if not inject:
            raise CommandError(_HOW_TO_ENABLE.format(pid=pid), exit_code=1) from None
        _inject(pid)
        deadline = time.monotonic() + 10
        while True:
            try:
                client = Client(pid, timeout_s=timeout)
                break
            except AgentError:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"the injected agent of {pid} did not come up", exit_code=1
                    ) from None
                time.sleep(0.05)
    with client:
        try:
            result = client.request(cmd, **args)
        except AgentError as exc:
            raise CommandError(f"agent of {pid}: {exc} [{exc.code}]", exit_code=1) from None
    click.echo(json.dumps(result, indent=2, default=str) if as_json else _render(what, result))
    sys.stdout.flush()
    return 0
