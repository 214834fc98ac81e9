r"""The governor's watcher thread and the kernel notifications it waits on.

The watcher ``poll()``\s kernel event fds (a PSI trigger, cgroup v1
``memory.pressure_level`` and usage-threshold eventfds) with the sampling interval as
timeout; every wake-up feeds the governor (:meth:`Governor.note_kernel_event`, then one
evaluation). Relief never runs on this thread (it is handed to the relief worker), so
the watcher keeps evaluating levels even while a reliever is stuck.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from memwarden.levels import PressureLevel

if TYPE_CHECKING:
    from memwarden.pressure._governor import Governor

__all__ = ["Watcher"]

log = logging.getLogger("memwarden.pressure")


class Watcher:
    """The governor's thread: poll() on kernel event fds with a sampling timeout."""

    def __init__(self, gov: Governor) -> None:
        self._gov = weakref.ref(gov)
        self._interval_s = gov.interval_s
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._sources: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="memwarden-governor", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def mechanisms(self) -> list[str]:
        return [*(s.name for s in self._sources), "sampling"]

    def start(self) -> None:
        gov = self._gov()
        if gov is not None:
            self._sources = _open_sources(gov)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._close()

    def abandon(self) -> None:
        self._stop.set()
        self._close()

    def _close(self) -> None:
        for s in self._sources:
            with contextlib.suppress(Exception):
                s.close()
        self._sources = []
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _run(self) -> None:
        import select

        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        by_fd: dict[int, Any] = {}
        for s in self._sources:
            poller.register(s.fd, s.events)
            by_fd[s.fd] = s
        timeout_ms = max(1, int(self._interval_s * 1000))
        while not self._stop.is_set():
            try:
                ready = poller.poll(timeout_ms)
            except OSError:
                if self._stop.is_set():
                    return
                # Never let the watcher die: log, and carry on by sampling alone.
                log.exception("governor: poll() failed; continuing with sampling only")
                poller = select.poll()
                with contextlib.suppress(OSError, ValueError):
                    poller.register(self._wake_r, select.POLLIN)
                by_fd.clear()
                self._stop.wait(self._interval_s)
                continue
            gov = self._gov()
            if gov is None or self._stop.is_set():
                return
            try:
                for fd, revents in ready:
                    src = by_fd.get(fd)
                    if src is None:
                        continue
                    if revents & (select.POLLERR | select.POLLNVAL | select.POLLHUP):
                        # The cgroup went away or the trigger was torn down: stop polling it.
                        log.debug("governor: %s reported an error; no longer polled", src.name)
                        poller.unregister(fd)
                        del by_fd[fd]
                        continue
                    gov.note_kernel_event(src.consume())
                gov._tick()
            except Exception:
                log.exception("governor watcher step failed; continuing")
            del gov


# ---------------------------------------------------------------------------
# kernel notification sources


class _Source:
    """One kernel notification fd the watcher polls; ``consume`` maps an event to a level."""

    name = "source"

    def __init__(self, fd: int, events: int, level: PressureLevel, owned: tuple[int, ...]) -> None:
        self.fd = fd
        self.events = events
        self.level = level
        self._owned = owned
        self.fired = 0

    def consume(self) -> PressureLevel:
        """Acknowledge one notification; return the level it signals (NONE: re-evaluate)."""
        self.fired += 1
        return self.level

    def close(self) -> None:
        for fd in self._owned:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._owned = ()


class _PsiTrigger(_Source):
    """A PSI trigger: ``poll()`` reports POLLPRI when stall time exceeds the threshold."""

    name = "psi-trigger"


class _EventFd(_Source):
    """A cgroup v1 notification delivered through an eventfd (read to reset its counter)."""

    def __init__(self, name: str, efd: int, level: PressureLevel, owned: tuple[int, ...]) -> None:
        import select

        super().__init__(efd, select.POLLIN, level, owned)
        self.name = name

    def consume(self) -> PressureLevel:
        with contextlib.suppress(OSError):
            os.read(self.fd, 8)
        return super().consume()


def _open_psi_trigger(gov: Governor) -> _Source | None:
    """Write ``some <stall_us> <window_us>`` to the PSI file and keep it open for POLLPRI."""
    import select

    from memwarden.probes import pressure_files

    stall_us, window_us = gov.psi_trigger
    for path in pressure_files():
        # Unprivileged processes may only use windows that are multiples of 2 s.
        windows = [window_us] if window_us % 2_000_000 == 0 else [window_us, 2_000_000]
        for window in windows:
            stall = min(stall_us * window // window_us, window)
            try:
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                break
            try:
                os.write(fd, f"some {stall} {window}".encode() + b"\0")
            except OSError as exc:
                os.close(fd)
                log.debug("PSI trigger some %d %d on %s refused: %s", stall, window, path, exc)
                continue
            log.debug("PSI trigger some %d %d armed on %s", stall, window, path)
            src = _PsiTrigger(fd, select.POLLPRI, gov.psi_trigger_level, (fd,))
            src.name = f"psi-trigger({path})"
            return src
    return None


def _open_v1_sources(gov: Governor) -> list[_Source]:
    """cgroup v1: ``memory.pressure_level`` events and ``memory.usage_in_bytes`` thresholds."""
    from memwarden.probes import cgroup

    handle = cgroup()
    if handle is None or handle.version != 1 or not hasattr(os, "eventfd"):
        return []
    info = handle.info
    control = info.directory / "cgroup.event_control"
    out: list[_Source] = []

    def arm(name: str, target: str, arg: str, level: PressureLevel) -> None:
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            tfd = os.open(info.directory / target, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(efd)
            raise
        try:
            with open(control, "w") as fh:  # noqa: PTH123 - one write, then closed
                fh.write(f"{efd} {tfd} {arg}")
        except OSError:
            os.close(efd)
            os.close(tfd)
            raise
        out.append(_EventFd(name, efd, level, (efd, tfd)))

    try:
        arm("cgroup-v1-pressure(medium)", "memory.pressure_level", "medium", PressureLevel.MODERATE)
        arm("cgroup-v1-pressure(critical)", "memory.pressure_level", "critical", PressureLevel.HIGH)
    except OSError as exc:
        log.debug("cgroup v1 memory.pressure_level notifications unavailable: %s", exc)
    usage = handle.usage()
    if usage is not None and usage.limit_bytes is not None:
        # The kernel signals each crossing (either way) of each threshold at charge time.
        for label, at in gov._lines(usage.limit_bytes).as_dict().items():
            try:
                arm(
                    f"cgroup-v1-threshold({label})",
                    "memory.usage_in_bytes",
                    str(at),
                    PressureLevel.NONE,
                )
            except OSError as exc:
                log.debug("cgroup v1 usage threshold %s unavailable: %s", label, exc)
                break
    return out


def _open_sources(gov: Governor) -> list[_Source]:
    """Open the kernel notification sources the machine allows; sampling always runs too."""
    from memwarden._compat import IS_LINUX

    if not IS_LINUX or not gov.kernel_events:
        return []
    sources: list[_Source] = []
    if gov._use_psi:
        psi = _open_psi_trigger(gov)
        if psi is not None:
            sources.append(psi)
    if gov._use_cgroup:
        sources.extend(_open_v1_sources(gov))
    return sources
