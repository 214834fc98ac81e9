"""Read memory facts about this process and its container; no policy lives here.

``rss()`` is the hot path: on Linux it ``pread``\\s a kept-open ``/proc/self/statm``
(reopened after ``fork``); elsewhere it falls back to psutil. The other probes read
cgroup v1/v2 limits and usage (resolving this process's own, possibly nested,
cgroup through ``/proc/self/cgroup`` and ``/proc/self/mountinfo``), resource
limits, physical memory and pressure-stall information. Every probe takes an
optional ``root`` so tests can point it at a fake ``/proc`` + ``/sys`` tree, and
none of them raises on an unreadable file: it falls back and says so in ``source``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from memwarden._compat import IS_LINUX
from memwarden._registry import reset_after_fork

__all__ = [
    "Cgroup",
    "CgroupInfo",
    "CgroupUsage",
    "MemoryEvents",
    "MemoryLimit",
    "PressureStall",
    "PressureStallLine",
    "available_memory",
    "cgroup",
    "cgroup_info",
    "cgroup_usage",
    "effective_limit",
    "memory_events",
    "peak_rss",
    "physical_memory",
    "pressure_files",
    "pressure_stall",
    "read_pressure_stall",
    "reset_peak_rss",
    "rss",
]

log = logging.getLogger("memwarden.probes")

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# cgroup v1 reports "no limit" as the largest page-aligned signed 64-bit value.
_V1_UNLIMITED_MIN = 2**62

# ---------------------------------------------------------------------------
# rss(): the hot path


class _StatmReader:
    """Keeps ``/proc/self/statm`` open and re-reads it with ``pread`` (no seek, no new fd)."""

    __slots__ = ("_fd", "_lock", "_pid", "path")

    def __init__(self, path: str = "/proc/self/statm") -> None:
        self.path = path
        self._fd = -1
        self._pid = -1
        self._lock = threading.Lock()

    def _open(self) -> int:
        with self._lock:
            pid = os.getpid()
            if self._fd < 0 or self._pid != pid:
                # After fork the inherited fd still reads the *child's* /proc/self
                # (it is resolved per read), but we reopen anyway so the fd is not
                # shared with the parent and closing one never breaks the other.
                old = self._fd
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                self._pid = pid
                if old >= 0:
                    with contextlib.suppress(OSError):
                        os.close(old)
            return self._fd

    def after_fork(self) -> None:
        self._pid = -1
        self._lock = threading.Lock()

    def read(self) -> tuple[int, int]:
        """Return ``(vms_bytes, rss_bytes)``.

        Raises:
            OSError: the file cannot be read.
            ValueError: it does not hold two positive page counts (not procfs).
        """
        fd = self._fd if self._pid == os.getpid() else self._open()
        data = os.pread(fd, 128, 0)
        fields = data.split(None, 2)
        if len(fields) < 2 or not (fields[0].isdigit() and fields[1].isdigit()):
            raise ValueError(f"{self.path} holds {data[:40]!r}, not page counts")
        size, resident = int(fields[0]), int(fields[1])
        if resident <= 0:
            raise ValueError(f"{self.path} reports {resident} resident pages")
        return size * PAGE_SIZE, resident * PAGE_SIZE


_statm: _StatmReader | None = _StatmReader() if IS_LINUX else None


def _statm_after_fork() -> None:
    if _statm is not None:
        _statm.after_fork()


reset_after_fork(_statm_after_fork)

# Where rss()/vms() read once /proc/self/statm failed: psutil, then getrusage. Each
# step down is logged once (a warning), never raised: probes must not break the host.
_fallback: Literal["psutil", "rusage"] = "psutil"


def _psutil_memory() -> tuple[int, int]:
    import psutil  # lazy: keeps `import memwarden` cheap

    info = psutil.Process().memory_info()
    return int(info.vms), int(info.rss)


def _rusage_memory() -> tuple[int, int]:
    # The last resort: the peak RSS, not the current one (an upper bound, never 0).
    rss_bytes = _maxrss_bytes()
    return rss_bytes, rss_bytes


def _maxrss_bytes() -> int:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss) * (1 if os.uname().sysname == "Darwin" else 1024)


def _statm_failed(reader: _StatmReader, exc: Exception) -> None:
    global _statm
    if _statm is reader:
        _statm = None
        log.warning(
            "memwarden: cannot read %s (%s); rss() falls back to psutil or getrusage",
            reader.path,
            exc,
        )


def _fallback_memory() -> tuple[int, int]:
    global _fallback
    if _fallback == "psutil":
        try:
            return _psutil_memory()
        except Exception as exc:  # ImportError, or psutil cannot read /proc either
            _fallback = "rusage"
            log.warning(
                "memwarden: psutil cannot measure memory (%s); rss() now reports the peak "
                "RSS from getrusage",
                exc,
            )
    return _rusage_memory()


def _memory() -> tuple[int, int]:
    reader = _statm
    if reader is not None:
        try:
            return reader.read()
        except (OSError, ValueError) as exc:
            _statm_failed(reader, exc)
    return _fallback_memory()


def rss() -> int:
    """Return the resident set size of this process in bytes (about 1 µs on Linux).

    Never raises: when ``/proc/self/statm`` is unreadable or not procfs, it falls back
    to psutil, then to getrusage's peak RSS, logging one warning for each step.
    """
    return _memory()[1]


def vms() -> int:
    """Return the virtual memory size of this process in bytes (fallbacks as :func:`rss`)."""
    return _memory()[0]


def peak_rss(*, root: str | os.PathLike[str] = "/") -> int:
    """Return the peak resident set size of this process in bytes (``VmHWM``)."""
    kib = _meminfo_kib(_read_text(Path(root, "proc/self/status")), "VmHWM:")
    if kib is not None:
        return kib * 1024
    return _maxrss_bytes()


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; True where supported.

    Linux >= 4.0 resets the high-water mark when ``5`` is written to
    ``/proc/self/clear_refs``; after that :func:`peak_rss` is the exact peak of
    what ran since, with no sampling thread. Other platforms return False.
    """
    if not IS_LINUX:
        return False
    try:
        with open("/proc/self/clear_refs", "w") as fh:  # noqa: PTH123 - a /proc control file
            fh.write("5")
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------
# small readers that never raise


def _meminfo_kib(text: str | None, key: str) -> int | None:
    """The ``kB`` number on the line starting with ``key`` (``MemTotal:``), or None."""
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith(key):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1])
            return None
    return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    """Read a cgroup number; ``max`` (v2) and v1's huge 'unlimited' become None."""
    text = _read_text(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max" or not text:
        return None
    try:
        value = int(text)
    except ValueError:
        log.debug("unexpected content in %s: %r", path, text[:40])
        return None
    if value >= _V1_UNLIMITED_MIN:
        return None
    return value


def _read_kv(path: Path) -> dict[str, int]:
    text = _read_text(path)
    out: dict[str, int] = {}
    if text is None:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


# ---------------------------------------------------------------------------
# cgroup discovery


@dataclass(frozen=True)
class CgroupInfo:
    """Where this process's memory cgroup lives.

    Attributes:
        version: 1 or 2.
        path: the cgroup path as ``/proc/self/cgroup`` names it (``/a/b``).
        directory: the directory of that cgroup in the mounted hierarchy.
        mount_point: where the hierarchy (or the part visible to us) is mounted.
    """

    version: Literal[1, 2]
    path: str
    directory: Path
    mount_point: Path

    def ancestors(self) -> Iterator[Path]:
        """The cgroup's directory, then each parent up to the mount point."""
        d = self.directory
        mount = self.mount_point
        while True:
            yield d
            if d == mount or mount not in d.parents:
                return
            d = d.parent


def _unescape_mount(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def _proc(root: Path, pid: int | None) -> Path:
    """``/proc/self`` of this process, or ``/proc/<pid>`` of another one."""
    return root / "proc" / ("self" if pid is None else str(pid))


def _mounts(root: Path, pid: int | None = None) -> list[tuple[str, str, str, str]]:
    """Return ``(fstype, mount_root, mount_point, super_options)`` for cgroup mounts."""
    text = _read_text(_proc(root, pid) / "mountinfo")
    out: list[tuple[str, str, str, str]] = []
    if not text:
        return out
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf = left.split()
        rf = right.split()
        if len(lf) < 5 or len(rf) < 3:
            continue
        fstype = rf[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        out.append((fstype, _unescape_mount(lf[3]), _unescape_mount(lf[4]), rf[2]))
    return out


def _under_root(root: Path, mount_point: str) -> Path:
    return root / mount_point.lstrip("/")


def _resolve(root: Path, mount_root: str, mount_point: str, cg_path: str) -> tuple[Path, Path]:
    """Map a cgroup path to a directory, accounting for a mount of a sub-tree (containers)."""
    mp = _under_root(root, mount_point)
    rel = cg_path
    if mount_root not in ("/", "") and (
        cg_path == mount_root or cg_path.startswith(mount_root + "/")
    ):
        rel = cg_path[len(mount_root) :]
    elif mount_root not in ("/", ""):
        # Inside a container the mount's root is our own cgroup and /proc/self/cgroup
        # may name a path the mount does not show: the mount point is our cgroup.
        return mp, mp
    directory = mp / rel.lstrip("/") if rel.strip("/") else mp
    if not directory.is_dir():
        # Namespaced cgroup paths ("/") or a path outside what is mounted: use the mount.
        return mp, mp
    return directory, mp


def cgroup_info(*, root: str | os.PathLike[str] = "/", pid: int | None = None) -> CgroupInfo | None:
    """Find this process's (or process ``pid``'s) memory cgroup (v1, else v2), or None."""
    r = Path(root)
    text = _read_text(_proc(r, pid) / "cgroup")
    if not text:
        return None
    v1_path: str | None = None
    v2_path: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    mounts = _mounts(r, pid)
    if v1_path is not None:
        for fstype, mroot, mpoint, opts in mounts:
            if fstype == "cgroup" and "memory" in opts.split(","):
                directory, mp = _resolve(r, mroot, mpoint, v1_path)
                return CgroupInfo(1, v1_path, directory, mp)
    if v2_path is not None:
        for fstype, mroot, mpoint, _opts in mounts:
            if fstype != "cgroup2":
                continue
            v2_mount = _under_root(r, mpoint)
            # In hybrid mode the v2 tree has no memory controller: skip it.
            enabled = _read_text(v2_mount / "cgroup.controllers")
            if enabled is None or "memory" not in enabled.split():
                continue
            directory, mp = _resolve(r, mroot, mpoint, v2_path)
            return CgroupInfo(2, v2_path, directory, mp)
    return None


@dataclass(frozen=True)
class MemoryLimit:
    """The tightest memory limit on this process and where it comes from.

    Attributes:
        limit_bytes: the limit in bytes.
        source: a human-readable origin, e.g. ``"cgroup v2 memory.max (/sys/fs/cgroup/app)"``.
        high_bytes: cgroup v2 ``memory.high`` (throttling, not a kill), when set.
        candidates: every limit found, as ``(source, limit_bytes)``.
    """

    limit_bytes: int
    source: str
    high_bytes: int | None = None
    candidates: tuple[tuple[str, int], ...] = ()


def physical_memory(*, root: str | os.PathLike[str] = "/") -> int:
    """Return the machine's physical memory in bytes."""
    kib = _meminfo_kib(_read_text(Path(root, "proc/meminfo")), "MemTotal:")
    if kib:
        return kib * 1024
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * PAGE_SIZE
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        import psutil

        return int(psutil.virtual_memory().total)


def _cgroup_limits(info: CgroupInfo) -> tuple[list[tuple[str, int]], int | None]:
    """Every limit up the ancestor chain, and the smallest v2 ``memory.high``."""
    found: list[tuple[str, int]] = []
    high: int | None = None
    name = "memory.limit_in_bytes" if info.version == 1 else "memory.max"
    for d in info.ancestors():
        value = _read_int(d / name)
        if value is not None and value > 0:
            found.append((f"cgroup v{info.version} {name} ({d})", value))
        if info.version == 2:
            h = _read_int(d / "memory.high")
            if h is not None and h > 0:
                high = h if high is None else min(high, h)
    return found, high


def _rlimits() -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for label, which in (("RLIMIT_AS", resource.RLIMIT_AS), ("RLIMIT_DATA", resource.RLIMIT_DATA)):
        try:
            soft, _hard = resource.getrlimit(which)
        except (ValueError, OSError):  # pragma: no cover
            continue
        if soft != resource.RLIM_INFINITY and soft > 0:
            found.append((f"{label} (setrlimit)", int(soft)))
    return found


def _rlimits_of(pid: int, root: Path) -> list[tuple[str, int]]:
    """RLIMIT_AS and RLIMIT_DATA of another process, from ``/proc/<pid>/limits``."""
    found: list[tuple[str, int]] = []
    text = _read_text(_proc(root, pid) / "limits") or ""
    for line in text.splitlines():
        for label, title in (("RLIMIT_AS", "Max address space"), ("RLIMIT_DATA", "Max data size")):
            if line.startswith(title):
                soft = line[len(title) :].split()[0]
                if soft.isdigit() and int(soft) > 0:
                    found.append((f"{label} (/proc/{pid}/limits)", int(soft)))
    return found


def effective_limit(*, root: str | os.PathLike[str] = "/", pid: int | None = None) -> MemoryLimit:
    """Return the tightest memory limit on this process (or on process ``pid``).

    The candidates are the cgroup memory limit of the process's cgroup and of each
    of its ancestors (schedulers such as Slurm set it on a parent), RLIMIT_AS,
    RLIMIT_DATA and physical memory; the smallest wins.
    """
    r = Path(root)
    candidates: list[tuple[str, int]] = []
    high: int | None = None
    info = cgroup_info(root=r, pid=pid)
    if info is not None:
        found, high = _cgroup_limits(info)
        candidates.extend(found)
    if pid is not None and pid != os.getpid():
        candidates.extend(_rlimits_of(pid, r))
    elif str(root) == "/":
        candidates.extend(_rlimits())
    ram = physical_memory(root=r)
    candidates.append(("physical memory (/proc/meminfo MemTotal)", ram))
    source, limit = min(candidates, key=lambda c: c[1])
    return MemoryLimit(limit, source, high, tuple(candidates))


# ---------------------------------------------------------------------------
# cgroup usage, events, pressure


@dataclass(frozen=True)
class CgroupUsage:
    """Memory charged to this process's cgroup.

    ``working_set_bytes`` is usage less inactive file pages: what Kubernetes evicts on.
    """

    usage_bytes: int
    working_set_bytes: int
    limit_bytes: int | None
    version: int
    directory: str


def cgroup_usage(*, root: str | os.PathLike[str] = "/") -> CgroupUsage | None:
    """Return the memory usage of this process's cgroup, or None outside one."""
    handle = cgroup(root=root)
    return handle.usage(max_age_s=0.0) if handle is not None else None


@dataclass(frozen=True)
class MemoryEvents:
    """Counts of memory limit events in this cgroup.

    From v2 ``memory.events``, or v1 ``memory.failcnt`` (as ``max``) and ``memory.oom_control``.
    """

    low: int = 0
    high: int = 0
    max: int = 0
    oom: int = 0
    oom_kill: int = 0
    under_oom: bool = False


def memory_events(*, root: str | os.PathLike[str] = "/") -> MemoryEvents | None:
    """Return this cgroup's memory event counts, or None outside a cgroup."""
    handle = cgroup(root=root)
    return handle.events() if handle is not None else None


@dataclass(frozen=True)
class PressureStallLine:
    """One line of a PSI file: percentages of time stalled over 10/60/300 s, and total µs."""

    avg10: float
    avg60: float
    avg300: float
    total_us: int


@dataclass(frozen=True)
class PressureStall:
    """Memory pressure-stall information: ``some`` (any task stalled) and ``full`` (all)."""

    some: PressureStallLine
    full: PressureStallLine | None
    source: str


def _parse_psi(text: str) -> tuple[PressureStallLine | None, PressureStallLine | None]:
    some = full = None
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        fields = dict(f.split("=", 1) for f in rest.split() if "=" in f)
        try:
            parsed = PressureStallLine(
                float(fields["avg10"]),
                float(fields["avg60"]),
                float(fields["avg300"]),
                int(fields["total"]),
            )
        except (KeyError, ValueError):
            continue
        if kind == "some":
            some = parsed
        elif kind == "full":
            full = parsed
    return some, full


def pressure_files(*, root: str | os.PathLike[str] = "/") -> tuple[Path, ...]:
    """Where memory PSI may be, best first: the v2 cgroup's ``memory.pressure``, the system's.

    Both accept PSI triggers (``some <stall_us> <window_us>``) on kernels that have them.
    """
    handle = cgroup(root=root)
    if handle is not None:
        return handle.pressure_files
    return (Path(root) / "proc/pressure/memory",)


def pressure_stall(*, root: str | os.PathLike[str] = "/") -> PressureStall | None:
    """Parse memory PSI: the cgroup's ``memory.pressure`` (v2) or ``/proc/pressure/memory``.

    Returns None where the kernel has no PSI (or it is disabled).
    """
    for p in pressure_files(root=root):
        found = read_pressure_stall(p)
        if found is not None:
            return found
    return None


def read_pressure_stall(path: Path) -> PressureStall | None:
    """Parse one PSI file (``memory.pressure`` or ``/proc/pressure/memory``); None if unusable."""
    text = _read_text(path)
    if not text:
        return None
    some, full = _parse_psi(text)
    return PressureStall(some, full, str(path)) if some is not None else None


# ---------------------------------------------------------------------------
# the resolved cgroup handle


class Cgroup:
    """This process's memory cgroup, found once: cheap reads of its files.

    Finding the cgroup parses ``/proc/self/cgroup`` and ``mountinfo`` (milliseconds); a
    handle keeps the result, so the governor's path from a kernel notification to a
    level reads two or three small files and nothing else. :func:`cgroup` returns the
    process's handle, resolved again in a forked child. Reads never raise: a file that
    cannot be read gives None (or no events).

    Attributes:
        info: where the cgroup lives (version, directory, mount point).
        pressure_files: PSI files, best first (see :func:`pressure_files`).
    """

    __slots__ = ("_ancestors", "_clock", "_limit", "_limit_read_s", "info", "pressure_files")

    def __init__(self, info: CgroupInfo, *, root: str | os.PathLike[str] = "/") -> None:
        self.info = info
        self._ancestors = tuple(info.ancestors())
        system_psi = Path(root) / "proc/pressure/memory"
        self.pressure_files: tuple[Path, ...] = (
            (info.directory / "memory.pressure", system_psi) if info.version == 2 else (system_psi,)
        )
        self._clock = time.monotonic
        self._limit: int | None = None
        self._limit_read_s: float | None = None

    @property
    def version(self) -> Literal[1, 2]:
        """1 or 2."""
        return self.info.version

    @property
    def directory(self) -> Path:
        """The cgroup's directory in the mounted hierarchy."""
        return self.info.directory

    def limit(self, *, max_age_s: float = 5.0) -> int | None:
        """The smallest memory limit on the cgroup or an ancestor, in bytes; None if unlimited.

        Limits can sit on any ancestor (schedulers set them on a parent) and change
        rarely, so the answer is kept for ``max_age_s`` seconds (0 reads again).
        """
        now = self._clock()
        if self._limit_read_s is None or now - self._limit_read_s >= max_age_s:
            name = "memory.limit_in_bytes" if self.info.version == 1 else "memory.max"
            limits = [_read_int(d / name) for d in self._ancestors]
            self._limit = min((x for x in limits if x), default=None)
            self._limit_read_s = now
        return self._limit

    def usage(self, *, max_age_s: float = 5.0) -> CgroupUsage | None:
        """Memory charged to the cgroup now, its working set and limit; None if unreadable.

        Args:
            max_age_s: how old the limit may be (see :meth:`limit`).
        """
        d = self.info.directory
        v1 = self.info.version == 1
        usage = _read_int(d / ("memory.usage_in_bytes" if v1 else "memory.current"))
        if usage is None:
            return None
        stat = _read_kv(d / "memory.stat")
        inactive = (
            stat.get("total_inactive_file", stat.get("inactive_file", 0))
            if v1
            else stat.get("inactive_file", 0)
        )
        return CgroupUsage(
            usage,
            max(0, usage - inactive),
            self.limit(max_age_s=max_age_s),
            self.info.version,
            str(d),
        )

    def events(self) -> MemoryEvents | None:
        """Memory event counts: v2 ``memory.events``, v1 ``failcnt`` and ``oom_control``."""
        d = self.info.directory
        if self.info.version == 2:
            kv = _read_kv(d / "memory.events")
            if not kv:
                return None
            return MemoryEvents(
                low=kv.get("low", 0),
                high=kv.get("high", 0),
                max=kv.get("max", 0),
                oom=kv.get("oom", 0),
                oom_kill=kv.get("oom_kill", 0),
            )
        failcnt = _read_int(d / "memory.failcnt")
        oom = _read_kv(d / "memory.oom_control")
        if failcnt is None and not oom:
            return None
        return MemoryEvents(
            max=failcnt or 0,
            oom_kill=oom.get("oom_kill", 0),
            under_oom=bool(oom.get("under_oom", 0)),
        )

    def pressure(self) -> PressureStall | None:
        """Memory PSI from the first readable of :attr:`pressure_files`."""
        for p in self.pressure_files:
            found = read_pressure_stall(p)
            if found is not None:
                return found
        return None

    def __repr__(self) -> str:
        return f"<Cgroup v{self.info.version} {self.info.directory}>"


_own_cgroup: tuple[Cgroup | None] | None = None  # (handle,) once resolved; None: not yet
_own_cgroup_lock = threading.Lock()


def cgroup(*, root: str | os.PathLike[str] = "/") -> Cgroup | None:
    """This process's memory cgroup handle, or None outside a memory cgroup.

    For the real root the handle is resolved once per process (again after fork);
    another ``root`` (a fake tree in tests) is resolved on every call.
    """
    global _own_cgroup
    if str(root) != "/":
        info = cgroup_info(root=root)
        return Cgroup(info, root=root) if info is not None else None
    found = _own_cgroup
    if found is None:
        with _own_cgroup_lock:
            if _own_cgroup is None:
                info = cgroup_info()
                _own_cgroup = (Cgroup(info) if info is not None else None,)
            found = _own_cgroup
    return found[0]


def _forget_cgroup_after_fork() -> None:
    # The child may be moved to another cgroup (a supervisor's job): resolve again.
    global _own_cgroup, _own_cgroup_lock
    _own_cgroup = None
    _own_cgroup_lock = threading.Lock()


reset_after_fork(_forget_cgroup_after_fork)


def available_memory(*, root: str | os.PathLike[str] = "/") -> int:
    """Bytes this process could still use: the machine's or the cgroup's headroom, if smaller."""
    r = Path(root)
    kib = _meminfo_kib(_read_text(r / "proc/meminfo"), "MemAvailable:")
    avail = None if kib is None else kib * 1024
    if avail is None:
        import psutil

        avail = int(psutil.virtual_memory().available)
    usage = cgroup_usage(root=r)
    if usage is not None and usage.limit_bytes is not None:
        avail = min(avail, max(0, usage.limit_bytes - usage.working_set_bytes))
    return avail
