"""Write heap snapshots when they matter: as pressure turns CRITICAL, and on demand by signal.

Like Node's ``--heapsnapshot-near-heap-limit``: a :class:`HeapDumper` subscribed to
the governor writes one V8 ``.heapsnapshot`` (see :mod:`memwarden.heapdump`) each
time the pressure level rises to CRITICAL, at most ``max_count`` per process, only
when the directory's disk has room for it, each to a new file created exclusively.
The process keeps running: the dump runs on its own thread, with the GIL released
between slices of the walk.

Enabled from the environment (read here, by :func:`install_from_env`, which
``memwarden run --heap-dump-near-limit`` and ``python -m memwarden.heapwatch``
call):

- ``MEMWARDEN_HEAP_DUMP_DIR``: the directory for snapshots (enables the feature);
- ``MEMWARDEN_HEAP_DUMP_MAX``: snapshots per process, default 1;
- ``MEMWARDEN_HEAP_DUMP_SIGNAL``: ``1`` (or a signal name such as ``SIGUSR2``) to
  also dump whenever the process receives that signal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from memwarden import heapdump
from memwarden.exceptions import ConfigurationError
from memwarden.pressure import Governor, PressureLevel, PressureSubscription, governor

__all__ = ["ENV_DIR", "ENV_MAX", "ENV_SIGNAL", "HeapDumper", "enable", "install_from_env"]

log = logging.getLogger("memwarden.heapwatch")

ENV_DIR = "MEMWARDEN_HEAP_DUMP_DIR"
ENV_MAX = "MEMWARDEN_HEAP_DUMP_MAX"
ENV_SIGNAL = "MEMWARDEN_HEAP_DUMP_SIGNAL"
_MAX_COUNT_CAP = 1000


class HeapDumper:
    """Writes numbered snapshots ``memwarden-<pid>-<n>.heapsnapshot`` into a directory.

    Args:
        directory: where snapshots go (must exist).
        max_count: at most this many per process; later requests are skipped.
        min_free_bytes: refuse to dump when the disk would keep less than this free
            after the dump (default 64 MiB).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_count: int = 1,
        min_free_bytes: int = 64 << 20,
    ) -> None:
        if not (isinstance(max_count, int) and 1 <= max_count <= _MAX_COUNT_CAP):
            raise ConfigurationError(
                f"max_count={max_count!r} (argument): expected 1 to {_MAX_COUNT_CAP}",
                value=max_count,
                source="argument",
            )
        self.directory = Path(directory)
        self.max_count = max_count
        self.min_free_bytes = min_free_bytes
        self.written: list[Path] = []
        self.skipped: list[str] = []
        self._requests = 0
        self._lock = threading.Lock()
        self._busy = False
        self._subscription: PressureSubscription | None = None
        self._pid = os.getpid()

    # -- writing -------------------------------------------------------------

    def room_for_dump(self) -> bool:
        """Whether the disk has room for a snapshot now (the file and its temporaries)."""
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            return False
        # The two temporary arrays and the final file coexist until the end: twice.
        return free - 2 * heapdump.estimate_dump_bytes() >= self.min_free_bytes

    def dump(self, reason: str = "request") -> Path | None:
        """Write one snapshot now unless the count is used up or the disk is short.

        Returns:
            The snapshot's path, or None when skipped (the reason is logged and kept
            in :attr:`skipped`).
        """
        with self._lock:
            if self._busy:
                return self._skip(f"{reason}: a dump is already being written")
            if self._pid != os.getpid():  # forked: the child starts its own count
                self._pid, self.written, self._requests = os.getpid(), [], 0
            if self._requests >= self.max_count:
                return self._skip(f"{reason}: {self.max_count} snapshot(s) already written")
            if not self.room_for_dump():
                return self._skip(f"{reason}: not enough free disk space in {self.directory}")
            self._requests += 1
            self._busy = True
            n = self._requests
        try:
            for attempt in range(100):
                suffix = f"-{attempt}" if attempt else ""
                path = self.directory / f"memwarden-{os.getpid()}-{n}{suffix}.heapsnapshot"
                try:
                    stats = heapdump.dump(path)
                except FileExistsError:
                    continue  # a name taken (or planted) already: never overwritten
                log.warning(
                    "heap snapshot (%s) written to %s: %d nodes in %.1f s",
                    reason,
                    path,
                    stats.node_count,
                    stats.duration_s,
                )
                with self._lock:
                    self.written.append(path)
                return path
            return self._skip(f"{reason}: no free snapshot name in {self.directory}")
        except OSError as exc:
            return self._skip(f"{reason}: cannot write a snapshot: {exc}")
        finally:
            with self._lock:
                self._busy = False

    def _skip(self, why: str) -> Path | None:
        log.warning("heap snapshot skipped (%s)", why)
        if len(self.skipped) < 100:
            self.skipped.append(why)
        return None

    def dump_in_background(self, reason: str) -> threading.Thread:
        """Start :meth:`dump` on a daemon thread (the governor's thread must not block)."""
        t = threading.Thread(
            target=self.dump, args=(reason,), name="memwarden-heapdump", daemon=True
        )
        t.start()
        return t

    # -- triggers ------------------------------------------------------------

    def attach(self, gov: Governor | None = None) -> PressureSubscription:
        """Dump each time ``gov``'s level rises to CRITICAL (default: the process governor)."""
        g = gov if gov is not None else governor()

        def on_level(old: PressureLevel, new: PressureLevel) -> None:
            if new >= PressureLevel.CRITICAL > old:
                self.dump_in_background("pressure CRITICAL")

        self._subscription = g.on_pressure(on_level)
        return self._subscription

    def detach(self) -> None:
        """Stop dumping on pressure."""
        if self._subscription is not None:
            self._subscription.unsubscribe()
            self._subscription = None

    def install_signal(self, signum: int = signal.SIGUSR2) -> None:
        """Dump whenever the process receives ``signum`` (main thread only, as signals are)."""

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            self.dump_in_background(f"signal {signal.Signals(_signum).name}")

        signal.signal(signum, on_signal)


def enable(
    directory: str | os.PathLike[str],
    *,
    max_count: int = 1,
    gov: Governor | None = None,
    on_signal: int | None = None,
    start: bool = True,
) -> HeapDumper:
    """Dump a snapshot into ``directory`` when pressure turns CRITICAL (and on ``on_signal``).

    Args:
        directory: where snapshots go; created if missing.
        max_count: snapshots per process.
        gov: the governor to watch (default the process-wide one).
        on_signal: also dump on this signal (e.g. ``signal.SIGUSR2``).
        start: start the governor's watcher thread if it is not running.

    Raises:
        ConfigurationError: ``directory`` cannot be used.
    """
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"heap dump directory {str(d)!r}: {exc.strerror or exc}",
            value=str(d),
            source="argument",
        ) from None
    dumper = HeapDumper(d, max_count=max_count)
    g = gov if gov is not None else governor()
    dumper.attach(g)
    if on_signal is not None:
        dumper.install_signal(on_signal)
    if start:
        with contextlib.suppress(Exception):
            g.start()
    return dumper


def _parse_signal(value: str, source: str) -> int | None:
    v = value.strip()
    if v.lower() in ("", "0", "false", "no", "off"):
        return None
    if v.lower() in ("1", "true", "yes", "on"):
        return int(signal.SIGUSR2)
    name = v.upper() if v.upper().startswith("SIG") else "SIG" + v.upper()
    sig = getattr(signal.Signals, name, None)
    if sig is None:
        raise ConfigurationError(
            f"{source}={value!r} (environment): expected 1 or a signal name like SIGUSR2",
            value=value,
            source="environment",
        )
    return int(sig)


def _pyproject_settings(pyproject: str | os.PathLike[str] | bool | None) -> dict[str, str]:
    """``[tool.memwarden.heap]`` ``dump_dir``/``dump_max``/``dump_signal`` as variables."""
    if pyproject is False:
        return {}
    from memwarden.config import find_pyproject, read_tool_table

    path = find_pyproject() if pyproject in (None, True) else Path(pyproject)  # type: ignore[arg-type]
    if path is None or not path.exists():
        return {}
    table = read_tool_table(path).get("heap", {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: [tool.memwarden.heap] must be a table", source=str(path))
    out = {}
    for key, var in (("dump_dir", ENV_DIR), ("dump_max", ENV_MAX), ("dump_signal", ENV_SIGNAL)):
        if key in table:
            value = table[key]
            out[var] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    unknown = set(table) - {"dump_dir", "dump_max", "dump_signal"}
    if unknown:
        raise ConfigurationError(
            f"{path}: [tool.memwarden.heap] unknown setting(s) {sorted(unknown)}; "
            "known: dump_dir, dump_max, dump_signal",
            source=str(path),
        )
    return out


def install_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    gov: Governor | None = None,
    pyproject: str | os.PathLike[str] | bool | None = None,
) -> HeapDumper | None:
    """Enable dumps as ``MEMWARDEN_HEAP_DUMP_*`` (or ``[tool.memwarden.heap]``) ask.

    The environment wins over the nearest ``pyproject.toml``'s ``[tool.memwarden.heap]``
    table (``dump_dir``, ``dump_max``, ``dump_signal``); ``pyproject=False`` skips it.

    Returns:
        The dumper, or None when no directory is set.

    Raises:
        ConfigurationError: a setting has a bad value (named in the message).
    """
    env = dict(_pyproject_settings(pyproject))
    env.update(os.environ if environ is None else environ)
    directory = env.get(ENV_DIR, "").strip()
    if not directory:
        return None
    raw_max = env.get(ENV_MAX, "1").strip() or "1"
    try:
        max_count = int(raw_max)
        if not 1 <= max_count <= _MAX_COUNT_CAP:
            raise ValueError(raw_max)
    except ValueError:
        raise ConfigurationError(
            f"{ENV_MAX}={raw_max!r} (environment): expected a count from 1 to {_MAX_COUNT_CAP}",
            value=raw_max,
            source="environment",
        ) from None
    signum = _parse_signal(env.get(ENV_SIGNAL, ""), ENV_SIGNAL)
    if signum is not None and threading.current_thread() is not threading.main_thread():
        log.warning("%s ignored: signals can only be installed from the main thread", ENV_SIGNAL)
        signum = None
    return enable(directory, max_count=max_count, gov=gov, on_signal=signum)


def _run_as_main(args: list[str]) -> None:
    """Run ``[-m] TARGET ARGS`` as ``__main__`` in a module that stays in ``sys.modules``."""
    import builtins
    import importlib.util
    import types

    module = args[0] == "-m"
    target = args[1] if module else args[0]
    if module:
        spec = importlib.util.find_spec(target)
        if spec is None or spec.loader is None:
            sys.exit(f"memwarden: no module named {target!r}")
        if spec.submodule_search_locations is not None:  # a package: run its __main__
            spec = importlib.util.find_spec(target + ".__main__")
            if spec is None:
                sys.exit(f"memwarden: {target!r} is a package without __main__")
        get_code = getattr(spec.loader, "get_code", None)
        code = get_code(spec.name) if get_code is not None else None
        if code is None:
            sys.exit(f"memwarden: cannot read the code of module {target!r}")
        filename = spec.origin or target
        sys.path.insert(0, str(Path.cwd()))
    else:
        filename = str(Path(target).resolve())
        code = compile(Path(target).read_bytes(), filename, "exec")
        sys.path.insert(0, str(Path(filename).parent))
    main_module = types.ModuleType("__main__")
    main_module.__file__ = filename
    main_module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main_module
    sys.argv = [filename, *args[2 if module else 1 :]]
    exec(code, main_module.__dict__)  # noqa: S102 - running the user's program is the job


def main(argv: list[str] | None = None) -> None:
    """``python -m memwarden.heapwatch [--dump-at-exit PATH] [-m] TARGET [ARGS...]``.

    Runs a program with the ``MEMWARDEN_HEAP_DUMP_*`` dumps on; with
    ``--dump-at-exit`` also writes a snapshot to PATH when the program ends.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    at_exit: str | None = None
    if len(args) >= 2 and args[0] == "--dump-at-exit":
        at_exit, args = args[1], args[2:]
    if not args or args == ["-m"]:
        sys.exit("usage: python -m memwarden.heapwatch [--dump-at-exit PATH] [-m] TARGET [ARGS...]")
    install_from_env()
    code: object = 0
    try:
        _run_as_main(args)
    except SystemExit as exc:
        code = exc.code
    finally:
        if at_exit is not None:
            heapdump.dump(at_exit)
    sys.exit(code)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
