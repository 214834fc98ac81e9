"""Graceful recycling: a worker that stays over its memory line after relief drains and exits.

The escalation a service needs is relieve → pause intake → recycle gracefully → never be
OOM-killed. :class:`Recycler` is the last step before the kernel's: after each unit of
work (a request, a task) the server integration calls :meth:`Recycler.after_unit`. When
the worker's RSS is over its *recycle line* even after the governor's relief has run, or
pressure has lasted ``stuck_after_s`` despite relief, the recycler takes the server-wide
*recycle gate* and answers "recycle": the integration then stops taking new work, lets
what is in flight finish and exits, so that the server's supervisor (gunicorn's arbiter,
uvicorn's process manager, Celery's pool, systemd) starts a fresh worker.

Only one worker of a server recycles at a time. The gate is an ``flock`` on a lock file
shared by the server's workers; the kernel releases it when the holder exits, crashed or
not, so a dead worker never blocks the others. A worker that takes the gate within
``cooldown_s`` of the previous recycle declines, so replacements have time to start.

A replacement that starts above the line would otherwise recycle after its first
request, forever: such a worker raises its own line to ``start_rss × start_headroom`` and
logs once that it did (the line is probably too low for the application's base size).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memwarden._files import runtime_dir, safe_directory
from memwarden._registry import DEFAULT, DefaultType, reset_after_fork
from memwarden._units import SizeLike, format_size, parse_size
from memwarden.exceptions import ConfigurationError, UnsafePathError
from memwarden.levels import PressureLevel

if TYPE_CHECKING:
    from memwarden.pressure import Governor

__all__ = ["RecycleDecision", "RecycleGate", "Recycler", "default_lock_dir"]

log = logging.getLogger("memwarden.integrations.recycle")

# The lock file holds the wall-clock time of the last recycle (a little-endian double),
# so the cooldown spans processes.
_STAMP = struct.Struct("<d")


def default_lock_dir() -> Path:
    """Where recycle gates live: the user's private runtime directory (see ``_files``)."""
    return runtime_dir()


class RecycleGate:
    """A server-wide "one recycle at a time" gate: an ``flock`` that dies with its holder.

    Args:
        name: the server's gate name; workers of one server must share it (the
            integrations default to the parent process id, the arbiter/supervisor).
        lock_dir: the directory for the lock file (private, created 0700).
        cooldown_s: refuse the gate within this many seconds of the last recycle.
        clock: wall-clock seconds (the stamp is shared across processes).
    """

    def __init__(
        self,
        name: str,
        *,
        lock_dir: str | os.PathLike[str] | None = None,
        cooldown_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not name or "/" in name or name.startswith("."):
            raise ConfigurationError(
                f"recycle gate name {name!r}: expected a plain file name", value=name
            )
        if not (isinstance(cooldown_s, int | float) and 0 <= cooldown_s <= 3600):
            raise ConfigurationError(
                f"cooldown_s={cooldown_s!r} (argument): expected seconds in [0, 3600]",
                value=cooldown_s,
            )
        self.name = name
        self.lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
        self.cooldown_s = float(cooldown_s)
        self._clock = clock
        self._fd: int | None = None
        self._lock = threading.Lock()
        reset_after_fork(self._after_fork)

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.lock_dir / f"recycle-{self.name}.lock"

    @property
    def held(self) -> bool:
        """Whether this process holds the gate."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the gate if no other worker holds it and the cooldown has passed.

        The gate is then held until this process exits (the kernel releases it), so
        a worker that takes it must go on to recycle.
        """
        with self._lock:
            if self._fd is not None:
                return True
            try:
                safe_directory(self.lock_dir, purpose="recycle lock directory", create=True)
            except UnsafePathError as exc:
                raise ConfigurationError(
                    str(exc), value=str(self.lock_dir), source="lock_dir"
                ) from exc
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(self.path, flags, 0o600)
            except OSError as exc:
                log.warning("recycle gate %s cannot be opened: %s", self.path, exc)
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            try:
                raw = os.pread(fd, _STAMP.size, 0)
                last = _STAMP.unpack(raw)[0] if len(raw) == _STAMP.size else 0.0
                now = self._clock()
                if 0 <= now - last < self.cooldown_s:
                    os.close(fd)  # closing the only descriptor drops the lock
                    return False
                os.pwrite(fd, _STAMP.pack(now), 0)
            except OSError as exc:
                os.close(fd)
                log.warning("recycle gate %s cannot be stamped: %s", self.path, exc)
                return False
            self._fd = fd
            return True

    def release(self) -> None:
        """Give the gate back (a worker that decided not to exit after all)."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _after_fork(self) -> None:
        # A forked child shares the parent's open file description, and with it the
        # lock: it must not think it holds the gate on its own.
        self._fd = None
        self._lock = threading.Lock()


@dataclass(frozen=True)
class RecycleDecision:
    """What :meth:`Recycler.after_unit` decided.

    Attributes:
        recycle: drain and exit now.
        reason: why (or why not), in words for the log.
        rss_bytes: the RSS the decision was made on.
        line_bytes: the recycle line in force for this worker.
    """

    recycle: bool
    reason: str
    rss_bytes: int
    line_bytes: int
    waiting: bool = False
    """Over the line but the gate is taken (or cooling down): intake should pause."""


_NO = "below the line"
_POLL_S = 0.02


class Recycler:
    """Decides, after each unit of work, whether this worker should recycle.

    Args:
        line: the recycle line (a size like ``"150 MiB"`` or bytes). Default: the
            budget's critical line (``critical_threshold × max_memory`` of the
            configuration, see :func:`memwarden.config.load_config`).
        gate: the server-wide gate; default a :class:`RecycleGate` named after the
            parent process (the server's master).
        governor: the governor whose relief runs before a recycle is considered, and whose
            stuck-pressure signal also triggers one; ``None`` for none. Default: the
            process-wide governor.
        probe: RSS in bytes (default :func:`memwarden.probes.rss`).
        clock: monotonic seconds.
        min_uptime_s: a worker younger than this never recycles.
        wait_s: how long a worker over the line pauses intake waiting for its turn.
        start_headroom: a worker that starts at or above its line raises the line to its
            starting RSS times this (and logs it), so it does not recycle in a loop.
        stuck_after_s: pressure that lasted this long despite relief recycles the worker
            even below the line; ``None`` to ignore. Default: the governor's own
            ``stuck_after_s``.

    Raises:
        ConfigurationError: a bad line or parameter.
    """

    def __init__(
        self,
        line: SizeLike | None = None,
        *,
        gate: RecycleGate | None = None,
        governor: Governor | DefaultType | None = DEFAULT,
        probe: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_uptime_s: float = 1.0,
        wait_s: float = 2.0,
        start_headroom: float = 1.25,
        stuck_after_s: float | None = -1.0,
    ) -> None:
        if line is None:
            from memwarden.config import load_config

            self.line_bytes = load_config().critical_bytes
            self.line_source = "the budget's critical line"
        else:
            self.line_bytes = parse_size(line, source="recycle line")
            self.line_source = "argument"
        if self.line_bytes <= 0:
            raise ConfigurationError(
                f"recycle line {line!r}: expected a positive size", value=line, source="line"
            )
        if not (isinstance(start_headroom, int | float) and 1.0 <= start_headroom <= 10.0):
            raise ConfigurationError(
                f"start_headroom={start_headroom!r} (argument): expected a factor in [1, 10]",
                value=start_headroom,
            )
        if probe is None:
            from memwarden.probes import rss

            probe = rss
        self._probe = probe
        self._clock = clock
        self._gov_arg = governor
        self._gate = gate if gate is not None else RecycleGate(f"ppid-{os.getppid()}")
        self.min_uptime_s = float(min_uptime_s)
        self.wait_s = float(wait_s)
        self._gov: Governor | None = None
        self._gov_resolved = False
        self.start_headroom = float(start_headroom)
        self._stuck_arg = stuck_after_s
        self._start_s = clock()
        self._effective_line: int | None = None
        self.effective_line()  # judged on the RSS the worker starts with
        self._decided: RecycleDecision | None = None
        self._lock = threading.Lock()
        self.units = 0

    # -- state ---------------------------------------------------------------

    @property
    def draining(self) -> bool:
        """Whether this worker has decided to recycle."""
        return self._decided is not None

    @property
    def gate(self) -> RecycleGate:
        """The server-wide gate."""
        return self._gate

    def _governor(self) -> Governor | None:
        from memwarden.pressure import resolve_governor

        return resolve_governor(self._gov_arg)

    def _cached_governor(self) -> Governor | None:
        if not self._gov_resolved:
            self._gov = self._governor()
            self._gov_resolved = True
        return self._gov

    def effective_line(self) -> int:
        """The line in force: the configured one, raised once for a worker that started above it."""
        if self._effective_line is None:
            start = self._probe()
            line = self.line_bytes
            if start >= line:
                line = int(start * self.start_headroom)
                log.warning(
                    "memwarden: worker pid %d starts at %s, above its recycle line of %s "
                    "(%s); recycling it would loop, so its line is raised to %s",
                    os.getpid(),
                    format_size(start),
                    format_size(self.line_bytes),
                    self.line_source,
                    format_size(line),
                )
            self._effective_line = line
        return self._effective_line

    def _stuck(self, gov: Governor | None) -> bool:
        if gov is None or self._stuck_arg is None:
            return False
        limit = gov.stuck_after_s if self._stuck_arg == -1.0 else float(self._stuck_arg)
        lasted = gov.stats().pressure_for_s
        return lasted is not None and lasted >= limit

    # -- the decision --------------------------------------------------------

    def after_unit(self, *, rss_bytes: int | None = None, wait: bool = True) -> RecycleDecision:
        """Call after each request or task; returns whether to drain and exit now.

        Cheap when under the line (one RSS read, about 2 µs, or none when the caller
        passes the ``rss_bytes`` it just read). Over it, the governor's relief runs
        first (at most once per ``relief_interval_s``, the governor's own rate limit)
        and the RSS is read again. A worker over the line whose turn has not come
        (another worker holds the gate, or it is cooling down) **pauses intake**: with
        ``wait`` it blocks here, taking no new work, for up to ``wait_s`` until the gate
        is free, so it does not grow while it waits. Async callers pass ``wait=False``
        and wait themselves while ``decision.waiting``.
        """
        decision = self._decide(rss_bytes, count=True)
        if wait and decision.waiting:
            deadline = time.monotonic() + self.wait_s
            while decision.waiting and time.monotonic() < deadline:
                time.sleep(_POLL_S)
                decision = self._decide(None, count=False)
        return decision

    def _decide(self, rss_bytes: int | None, *, count: bool) -> RecycleDecision:
        with self._lock:
            if count:
                self.units += 1
            if self._decided is not None:
                return self._decided
            line = self.effective_line()
            rss = self._probe() if rss_bytes is None else rss_bytes
            gov = self._governor() if rss >= line else None
            stuck = False
            if rss >= line and gov is not None:
                gov.relieve(reason="over the recycle line")
                rss = self._probe()
            if rss < line:
                gov = self._cached_governor()
                # Stuck pressure is looked at only under pressure: one attribute read.
                if (
                    gov is None
                    or gov.current_level < PressureLevel.MODERATE
                    or not self._stuck(gov)
                ):
                    return RecycleDecision(False, _NO, rss, line)
                stuck = True
            uptime = self._clock() - self._start_s
            if uptime < self.min_uptime_s:
                return RecycleDecision(
                    False, f"over the line but up only {uptime:.1f} s", rss, line
                )
            if not self._gate.try_acquire():
                return RecycleDecision(
                    False, "over the line; waiting for the recycle gate", rss, line, True
                )
            why = (
                "pressure lasted despite relief"
                if stuck
                else f"RSS {format_size(rss)} over the recycle line {format_size(line)} "
                "after relief"
            )
            self._decided = RecycleDecision(True, why, rss, line)
            log.warning(
                "memwarden: worker pid %d recycles gracefully after %d units: %s",
                os.getpid(),
                self.units,
                why,
            )
            return self._decided
