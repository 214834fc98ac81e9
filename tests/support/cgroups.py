"""Run child processes under a real memory limit: a fresh cgroup where the machine permits.

Used by the integration tests that must prove behaviour against the kernel's own
limit (limit discovery, the governor's survival test, adaptive batching). A
cgroup is created below this process's own memory cgroup (v1 ``memory`` or v2
with the memory controller delegated), given the limit, and removed afterwards.
Where that is not possible (not root, read-only hierarchy, no controller),
:func:`cgroup_unavailable_reason` says why and :func:`rlimit_preexec` offers
RLIMIT_DATA as the fallback limit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memwarden.probes import cgroup_info


@dataclass
class MemoryCgroup:
    """A memory cgroup made for one test."""

    path: Path
    version: int
    limit_bytes: int

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def preexec(self) -> Callable[[], None]:
        """A ``preexec_fn`` that moves the child into this cgroup before it runs."""
        procs = str(self.procs_file)

        def _enter() -> None:
            with open(procs, "w") as fh:  # noqa: PTH123 - runs between fork and exec
                fh.write(str(os.getpid()))

        return _enter

    def events(self) -> dict[str, int]:
        """OOM kills and limit hits seen by this cgroup."""
        out: dict[str, int] = {}
        if self.version == 1:
            for line in (self.path / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                out[key] = int(value)
            out["failcnt"] = int((self.path / "memory.failcnt").read_text())
            out["max_usage_in_bytes"] = int((self.path / "memory.max_usage_in_bytes").read_text())
        else:
            for line in (self.path / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                out[key] = int(value)
            peak = self.path / "memory.peak"
            if peak.exists():
                out["max_usage_in_bytes"] = int(peak.read_text())
        return out

    def run(
        self, argv: Sequence[str], *, timeout: float = 120, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the cgroup and wait for it (bounded by ``timeout``)."""
        return subprocess.run(
            list(argv),
            preexec_fn=self.preexec(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )


def _parent_dir() -> tuple[Path, int] | None:
    info = cgroup_info()
    if info is None:
        return None
    return info.directory, info.version


def cgroup_unavailable_reason() -> str | None:
    """None when a child memory cgroup can be made here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "creating a memory cgroup needs root"
    parent = _parent_dir()
    if parent is None:
        return (
            "this process is in no memory cgroup (no cgroup v1 memory controller or v2 with memory)"
        )
    directory, version = parent
    if not os.access(directory, os.W_OK):
        return f"the memory cgroup {directory} is not writable"
    if version == 2:
        controllers = (
            (directory / "cgroup.subtree_control").read_text().split()
            if (directory / "cgroup.subtree_control").exists()
            else []
        )
        if "memory" not in controllers:
            return f"cgroup v2 at {directory} does not delegate the memory controller to children"
    return None


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int, *, name: str = "memwarden-test") -> Iterator[MemoryCgroup]:
    """Create a child memory cgroup with ``limit_bytes`` and remove it afterwards."""
    reason = cgroup_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    parent = _parent_dir()
    assert parent is not None
    directory, version = parent
    path = directory / f"{name}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        if version == 1:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            # No swap here, but keep memsw in step where it exists so swap cannot hide usage.
            memsw = path / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                with contextlib.suppress(OSError):
                    memsw.write_text(str(limit_bytes))
        else:
            (path / "memory.max").write_text(str(limit_bytes))
            swap = path / "memory.swap.max"
            if swap.exists():
                with contextlib.suppress(OSError):
                    swap.write_text("0")
        yield MemoryCgroup(path, version, limit_bytes)
    finally:
        _remove(path)


def _remove(path: Path) -> None:
    procs = path / "cgroup.procs"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            pids = [int(p) for p in procs.read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.05)


def rlimit_preexec(limit_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn`` that sets RLIMIT_DATA (heap and anonymous mmaps on Linux >= 4.7)."""

    def _limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    return _limit
