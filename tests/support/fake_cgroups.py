"""Build fake ``/proc`` + ``/sys/fs/cgroup`` trees so limit discovery can be tested anywhere."""

from __future__ import annotations

from pathlib import Path

V1_UNLIMITED = "9223372036854771712"
GIB = 2**30
MIB = 2**20


class FakeRoot:
    """A directory laid out like ``/`` with just the files memwarden's probes read."""

    def __init__(
        self, root: Path, *, mem_total_kib: int = 16 * 2**20, mem_available_kib: int = 8 * 2**20
    ):
        self.root = root
        self.mountinfo: list[str] = []
        self.cgroup_lines: list[str] = []
        (root / "proc/self").mkdir(parents=True)
        (root / "proc/pressure").mkdir(parents=True)
        (root / "proc/meminfo").write_text(
            f"MemTotal:       {mem_total_kib} kB\nMemFree:  1 kB\n"
            f"MemAvailable:   {mem_available_kib} kB\n"
        )

    # -- layout -------------------------------------------------------------
    def mount_v1(self, mount_point: str = "/sys/fs/cgroup/memory", mount_root: str = "/") -> Path:
        n = len(self.mountinfo) + 30
        self.mountinfo.append(
            f"{n} 25 0:{n} {mount_root} {mount_point} rw,nosuid - cgroup cgroup rw,memory"
        )
        path = self.root / mount_point.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mount_v2(
        self, mount_point: str = "/sys/fs/cgroup", mount_root: str = "/", *, memory: bool = True
    ) -> Path:
        n = len(self.mountinfo) + 30
        self.mountinfo.append(
            f"{n} 25 0:{n} {mount_root} {mount_point} rw,nosuid - cgroup2 cgroup2 rw"
        )
        path = self.root / mount_point.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        (path / "cgroup.controllers").write_text("cpu io memory pids\n" if memory else "cpu pids\n")
        return path

    def add_other_mount(self, line: str) -> None:
        self.mountinfo.append(line)

    def in_cgroup(self, line: str) -> None:
        self.cgroup_lines.append(line)

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def psi(
        self, some10: float = 0.0, full10: float = 0.0, *, path: str = "/proc/pressure/memory"
    ) -> None:
        self.write(
            path,
            f"some avg10={some10:.2f} avg60=0.00 avg300=0.00 total=1234\n"
            f"full avg10={full10:.2f} avg60=0.00 avg300=0.00 total=99\n",
        )

    def finish(self) -> Path:
        (self.root / "proc/self/mountinfo").write_text("\n".join(self.mountinfo) + "\n")
        (self.root / "proc/self/cgroup").write_text("\n".join(self.cgroup_lines) + "\n")
        return self.root
