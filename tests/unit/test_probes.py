"""Limit discovery, cgroup usage, events and PSI on fake trees, and rss() on the real process."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from memwarden import probes
from memwarden.probes import (
    PAGE_SIZE,
    available_memory,
    cgroup_info,
    cgroup_usage,
    effective_limit,
    memory_events,
    physical_memory,
    pressure_stall,
    rss,
)
from tests.support.fake_cgroups import GIB, MIB, V1_UNLIMITED, FakeRoot


@pytest.fixture
def fake(tmp_path: Path) -> FakeRoot:
    return FakeRoot(tmp_path)


# --------------------------------------------------------------------------- rss


def test_rss_matches_psutil_within_a_page() -> None:
    """rss() reads statm and agrees with psutil to within one page (measured back to back)."""
    best = min(abs(rss() - psutil.Process().memory_info().rss) for _ in range(20))
    assert best <= PAGE_SIZE


def test_rss_sees_new_memory() -> None:
    """Touching 64 MiB raises rss() by roughly that much."""
    before = rss()
    block = bytearray(64 * MIB)
    block[::PAGE_SIZE] = b"x" * len(block[::PAGE_SIZE])
    grown = rss() - before
    del block
    assert grown >= 60 * MIB


def test_rss_after_fork_reports_the_child() -> None:
    """A forked child reading rss() gets its own figure from a reopened statm, not the parent's."""
    code = (
        "import os, memwarden.probes as p\n"
        "p.rss()\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    b = bytearray(80 * 2**20); b[::4096] = b'x' * len(b[::4096])\n"
        "    os.write(w, str(p.rss()).encode()); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print(int(os.read(r, 64)) - p.rss())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 70 * MIB


def test_reset_peak_rss_gives_the_peak_of_what_ran_since() -> None:
    """After reset_peak_rss(), peak_rss() shows a later 48 MiB temporary, not an earlier 160 MiB."""
    code = (
        "import memwarden.probes as p\n"
        "def touch(n):\n"
        "    b = bytearray(n); b[::4096] = b'x' * len(b[::4096])\n"
        "touch(160 * 2**20)\n"
        "base = p.rss(); ok = p.reset_peak_rss()\n"
        "touch(48 * 2**20)\n"
        "print(ok, p.peak_rss() - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ok, grown = out.stdout.split()
    if ok != "True":
        pytest.skip("this kernel does not reset VmHWM through /proc/self/clear_refs")
    assert 44 * MIB <= int(grown) <= 100 * MIB


def test_peak_rss_is_at_least_rss() -> None:
    """VmHWM is never below the current RSS."""
    assert probes.peak_rss() >= rss() - PAGE_SIZE


# --------------------------------------------------------------------------- cgroup v1


def test_v1_nested_takes_the_smallest_limit_up_the_chain(fake: FakeRoot) -> None:
    """A limit set on a parent cgroup (as Slurm does) applies to a child with none."""
    mp = fake.mount_v1()
    fake.in_cgroup("4:memory:/slurm/job_7/step_0")
    fake.in_cgroup("0::/")
    fake.write("/sys/fs/cgroup/memory/slurm/memory.limit_in_bytes", V1_UNLIMITED)
    fake.write("/sys/fs/cgroup/memory/slurm/job_7/memory.limit_in_bytes", str(300 * MIB))
    fake.write("/sys/fs/cgroup/memory/slurm/job_7/step_0/memory.limit_in_bytes", V1_UNLIMITED)
    fake.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", V1_UNLIMITED)
    root = fake.finish()
    info = cgroup_info(root=root)
    assert info is not None
    assert info.version == 1
    assert info.directory == mp / "slurm/job_7/step_0"
    lim = effective_limit(root=root)
    assert lim.limit_bytes == 300 * MIB
    assert "cgroup v1 memory.limit_in_bytes" in lim.source
    assert "job_7" in lim.source


def test_v1_container_mount_of_own_cgroup(fake: FakeRoot) -> None:
    """Inside a container the mount's root is our cgroup: its files are at the mount point."""
    fake.mount_v1(mount_root="/docker/abc123")
    fake.in_cgroup("9:memory:/docker/abc123")
    fake.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", str(512 * MIB))
    root = fake.finish()
    info = cgroup_info(root=root)
    assert info is not None
    assert info.directory == root / "sys/fs/cgroup/memory"
    assert effective_limit(root=root).limit_bytes == 512 * MIB


def test_v1_unlimited_falls_back_to_physical_memory(fake: FakeRoot) -> None:
    """v1's 9223372036854771712 means no limit: physical memory is the limit."""
    fake.mount_v1()
    fake.in_cgroup("4:memory:/")
    fake.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", V1_UNLIMITED)
    root = fake.finish()
    lim = effective_limit(root=root)
    assert lim.limit_bytes == 16 * GIB
    assert lim.source.startswith("physical memory")


def test_v1_usage_working_set_and_events(fake: FakeRoot) -> None:
    """Working set is usage less inactive file pages; failcnt and oom_kill are read."""
    fake.mount_v1()
    fake.in_cgroup("4:memory:/app")
    fake.write("/sys/fs/cgroup/memory/app/memory.limit_in_bytes", str(GIB))
    fake.write("/sys/fs/cgroup/memory/app/memory.usage_in_bytes", str(600 * MIB))
    fake.write(
        "/sys/fs/cgroup/memory/app/memory.stat",
        f"cache 1\ntotal_inactive_file {100 * MIB}\ntotal_rss 5\n",
    )
    fake.write("/sys/fs/cgroup/memory/app/memory.failcnt", "17\n")
    fake.write(
        "/sys/fs/cgroup/memory/app/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    )
    root = fake.finish()
    usage = cgroup_usage(root=root)
    assert usage is not None
    assert usage.usage_bytes == 600 * MIB
    assert usage.working_set_bytes == 500 * MIB
    assert usage.limit_bytes == GIB
    events = memory_events(root=root)
    assert events is not None
    assert events.max == 17
    assert events.oom_kill == 2
    # headroom is the cgroup's (1 GiB - 500 MiB), below the machine's 8 GiB available
    assert available_memory(root=root) == GIB - 500 * MIB


# --------------------------------------------------------------------------- cgroup v2


def test_v2_nested_max_and_high(fake: FakeRoot) -> None:
    """v2 reads memory.max up the chain ('max' is unlimited) and reports memory.high apart."""
    fake.mount_v2()
    fake.in_cgroup("0::/user.slice/app.service")
    fake.write("/sys/fs/cgroup/user.slice/memory.max", f"{2 * GIB}\n")
    fake.write("/sys/fs/cgroup/user.slice/app.service/memory.max", "max\n")
    fake.write("/sys/fs/cgroup/user.slice/app.service/memory.high", f"{GIB}\n")
    root = fake.finish()
    lim = effective_limit(root=root)
    assert lim.limit_bytes == 2 * GIB
    assert "cgroup v2 memory.max" in lim.source
    assert "user.slice" in lim.source
    assert lim.high_bytes == GIB


def test_v2_usage_events_and_cgroup_psi(fake: FakeRoot) -> None:
    """v2 usage, memory.events and the cgroup's own memory.pressure are parsed."""
    fake.mount_v2()
    fake.in_cgroup("0::/app")
    fake.write("/sys/fs/cgroup/app/memory.max", str(GIB))
    fake.write("/sys/fs/cgroup/app/memory.current", str(700 * MIB))
    fake.write("/sys/fs/cgroup/app/memory.stat", f"anon 5\ninactive_file {200 * MIB}\n")
    fake.write("/sys/fs/cgroup/app/memory.events", "low 0\nhigh 4\nmax 9\noom 1\noom_kill 1\n")
    fake.psi(some10=12.5, full10=3.0, path="/sys/fs/cgroup/app/memory.pressure")
    root = fake.finish()
    usage = cgroup_usage(root=root)
    assert usage is not None
    assert usage.working_set_bytes == 500 * MIB
    events = memory_events(root=root)
    assert events is not None
    assert (events.high, events.max, events.oom_kill) == (4, 9, 1)
    psi = pressure_stall(root=root)
    assert psi is not None
    assert psi.some.avg10 == 12.5
    assert psi.full is not None
    assert psi.full.avg10 == 3.0
    assert psi.source.endswith("memory.pressure")


def test_hybrid_prefers_v1_memory_controller(fake: FakeRoot) -> None:
    """With v1 memory and a unified tree without the memory controller, v1 is used."""
    fake.mount_v1()
    fake.mount_v2("/sys/fs/cgroup/unified", memory=False)
    fake.in_cgroup("4:memory:/box")
    fake.in_cgroup("0::/box")
    fake.write("/sys/fs/cgroup/memory/box/memory.limit_in_bytes", str(256 * MIB))
    root = fake.finish()
    info = cgroup_info(root=root)
    assert info is not None
    assert info.version == 1
    assert effective_limit(root=root).limit_bytes == 256 * MIB


def test_hybrid_unified_without_memory_is_no_cgroup(fake: FakeRoot) -> None:
    """Only a unified tree without the memory controller: no memory cgroup, RAM is the limit."""
    fake.mount_v2("/sys/fs/cgroup/unified", memory=False)
    fake.in_cgroup("0::/box")
    root = fake.finish()
    assert cgroup_info(root=root) is None
    assert effective_limit(root=root).source.startswith("physical memory")
    assert cgroup_usage(root=root) is None
    assert memory_events(root=root) is None


def test_mountinfo_escaped_spaces(fake: FakeRoot) -> None:
    """A mount point with a space (escaped as \\040 in mountinfo) is resolved."""
    fake.mount_v1(mount_point="/sys/fs/cgroup/mem\\040ory")
    (fake.root / "sys/fs/cgroup/mem ory").mkdir(parents=True)
    fake.in_cgroup("4:memory:/")
    fake.write("/sys/fs/cgroup/mem ory/memory.limit_in_bytes", str(100 * MIB))
    root = fake.finish()
    assert effective_limit(root=root).limit_bytes == 100 * MIB


@pytest.mark.parametrize("content", ["", "garbage\n", "0\n", "-1\n", "max\n"])
def test_unusable_limit_values_are_ignored(fake: FakeRoot, content: str) -> None:
    """Empty, garbage, 0, -1 and 'max' limits are not limits; discovery never raises."""
    fake.mount_v2()
    fake.in_cgroup("0::/app")
    fake.write("/sys/fs/cgroup/app/memory.max", content)
    root = fake.finish()
    assert effective_limit(root=root).source.startswith("physical memory")


def test_unreadable_files_fall_back(fake: FakeRoot) -> None:
    """A limit 'file' that cannot be read (here a directory) is skipped, never raised."""
    fake.mount_v1()
    fake.in_cgroup("4:memory:/app")
    (fake.root / "sys/fs/cgroup/memory/app/memory.limit_in_bytes").mkdir(parents=True)
    fake.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", str(3 * GIB))
    root = fake.finish()
    lim = effective_limit(root=root)
    assert lim.limit_bytes == 3 * GIB
    assert cgroup_usage(root=root) is None


def test_no_proc_at_all(tmp_path: Path) -> None:
    """Without /proc files every probe degrades: no cgroup, no PSI, RAM from sysconf."""
    assert cgroup_info(root=tmp_path) is None
    assert pressure_stall(root=tmp_path) is None
    assert physical_memory(root=tmp_path) > 0
    assert effective_limit(root=tmp_path).limit_bytes > 0


def test_malformed_cgroup_and_mountinfo_lines_are_skipped(fake: FakeRoot) -> None:
    """Lines with too few fields are skipped rather than crashing discovery."""
    fake.mount_v1()
    fake.add_other_mount("garbage without separator")
    fake.add_other_mount("1 2 - cgroup")
    fake.in_cgroup("not-a-cgroup-line")
    fake.in_cgroup("4:memory:/x")
    fake.write("/sys/fs/cgroup/memory/x/memory.limit_in_bytes", str(GIB))
    root = fake.finish()
    assert effective_limit(root=root).limit_bytes == GIB


def test_psi_system_file_and_absence(fake: FakeRoot) -> None:
    """/proc/pressure/memory is parsed; a missing or malformed file gives None."""
    root = fake.finish()
    assert pressure_stall(root=root) is None
    fake.write("/proc/pressure/memory", "some nonsense\n")
    assert pressure_stall(root=root) is None
    fake.psi(some10=40.0)
    psi = pressure_stall(root=root)
    assert psi is not None
    assert psi.some.avg10 == 40.0
    assert psi.some.total_us == 1234


# --------------------------------------------------------------------------- real machine


def test_effective_limit_on_this_machine() -> None:
    """The real limit is positive, at most physical memory, and names its source."""
    lim = effective_limit()
    assert 0 < lim.limit_bytes <= physical_memory()
    assert lim.source
    assert any(src == lim.source for src, _ in lim.candidates)


def test_rlimit_data_is_a_candidate() -> None:
    """A child with RLIMIT_DATA set reports it as the effective limit when it is the tightest."""
    code = (
        "import resource, memwarden.probes as p\n"
        "resource.setrlimit(resource.RLIMIT_DATA, (400 * 2**20, resource.RLIM_INFINITY))\n"
        "l = p.effective_limit(); print(l.limit_bytes, l.source)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    value, source = out.stdout.split(" ", 1)
    assert int(value) == 400 * MIB
    assert "RLIMIT_DATA" in source


def test_real_psi_when_the_kernel_has_it() -> None:
    """Where /proc/pressure/memory exists, pressure_stall() parses it."""
    if not Path("/proc/pressure/memory").exists():
        pytest.skip("this kernel has no PSI (/proc/pressure/memory absent)")
    psi = pressure_stall()
    assert psi is not None
    assert psi.some.avg10 >= 0


def test_getrlimit_constants_exist() -> None:
    """The rlimits limit discovery reads exist on this platform."""
    assert resource.RLIMIT_AS >= 0
    assert resource.RLIMIT_DATA >= 0


# --------------------------------------------------------------------------- broken /proc


@pytest.mark.parametrize("content", [b"", b"garbage here\n", b"12\n", b"-1 -1 0\n", b"0 0 0\n"])
def test_rss_falls_back_when_statm_is_empty_or_garbage(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    content: bytes,
) -> None:
    """A statm that is empty or not page counts (no procfs) gives psutil's RSS and one warning."""
    statm = tmp_path / "statm"
    statm.write_bytes(content)
    monkeypatch.setattr(probes, "_statm", probes._StatmReader(str(statm)))
    monkeypatch.setattr(probes, "_fallback", "psutil")
    with caplog.at_level("WARNING", logger="memwarden.probes"):
        first = rss()
        second = rss()
        assert probes.vms() > 0
    expected = psutil.Process().memory_info().rss
    assert abs(first - expected) < 64 * MIB
    assert second > 0
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert str(statm) in warnings[0].getMessage()


def test_rss_falls_back_to_getrusage_when_psutil_fails_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With /proc unusable for psutil as well, rss() reports getrusage's peak, never raises."""

    def broken() -> tuple[int, int]:
        raise psutil.AccessDenied()

    monkeypatch.setattr(probes, "_statm", probes._StatmReader(str(tmp_path / "missing")))
    monkeypatch.setattr(probes, "_psutil_memory", broken)
    monkeypatch.setattr(probes, "_fallback", "psutil")
    with caplog.at_level("WARNING", logger="memwarden.probes"):
        values = [rss() for _ in range(3)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert all(v > 0 for v in values)
    assert values[-1] <= peak + 64 * MIB
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2


def test_track_and_the_governor_survive_a_broken_statm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """track() and the governor measure through the fallback instead of raising."""
    from memwarden.config import MemoryConfig
    from memwarden.monitoring import MemoryMonitor, track
    from memwarden.pressure import Governor

    statm = tmp_path / "statm"
    statm.write_bytes(b"not procfs\n")
    monkeypatch.setattr(probes, "_statm", probes._StatmReader(str(statm)))
    cfg = MemoryConfig(max_memory_bytes=1 << 40)
    with MemoryMonitor(cfg) as mon, track("op", monitor=mon) as op:
        _ = bytearray(1024)
    assert op.last is not None
    assert op.last.peak_rss_bytes > 0
    gov = Governor(cfg, psi=False, cgroup=False, builtin_relievers=False)
    assert gov.level() >= 0


def test_peak_and_physical_memory_tolerate_garbage(fake: FakeRoot) -> None:
    """Garbage VmHWM / MemTotal / MemAvailable lines fall back instead of raising."""
    fake.write("/proc/self/status", "VmHWM:\tlots kB\n")
    fake.write("/proc/meminfo", "MemTotal: ? kB\nMemAvailable: x kB\n")
    root = fake.finish()
    assert probes.peak_rss(root=root) > 0
    assert physical_memory(root=root) > 0
    assert available_memory(root=root) > 0


# --------------------------------------------------------------------------- the cgroup handle


def test_cgroup_handle_reads_usage_events_limit_and_pressure(fake: FakeRoot) -> None:
    """One resolved handle reads usage, events, the (cached) limit and its PSI file."""
    fake.mount_v2()
    fake.in_cgroup("0::/app")
    fake.write("/sys/fs/cgroup/app/memory.max", str(GIB))
    fake.write("/sys/fs/cgroup/app/memory.current", str(700 * MIB))
    fake.write("/sys/fs/cgroup/app/memory.stat", f"inactive_file {200 * MIB}\n")
    fake.write("/sys/fs/cgroup/app/memory.events", "high 4\nmax 9\noom 1\noom_kill 1\n")
    fake.psi(some10=12.5, full10=3.0, path="/sys/fs/cgroup/app/memory.pressure")
    root = fake.finish()
    handle = probes.cgroup(root=root)
    assert handle is not None
    assert handle.version == 2
    assert handle.pressure_files[0] == Path(root) / "sys/fs/cgroup/app/memory.pressure"
    usage = handle.usage()
    assert usage is not None
    assert (usage.working_set_bytes, usage.limit_bytes) == (500 * MIB, GIB)
    events = handle.events()
    assert events is not None
    assert (events.high, events.max, events.oom, events.oom_kill) == (4, 9, 1, 1)
    psi = handle.pressure()
    assert psi is not None
    assert psi.some.avg10 == 12.5
    # the limit is kept for max_age_s: a change shows only when asked fresh
    fake.write("/sys/fs/cgroup/app/memory.max", str(2 * GIB))
    assert handle.limit() == GIB
    assert handle.limit(max_age_s=0) == 2 * GIB
    assert probes.pressure_files(root=root) == handle.pressure_files


def test_the_process_cgroup_handle_is_resolved_once() -> None:
    """cgroup() for the real root returns the same handle (or None) on every call."""
    assert probes.cgroup() is probes.cgroup()
    outside = probes.pressure_files(root="/nonexistent-root")
    assert outside == (Path("/nonexistent-root/proc/pressure/memory"),)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_cgroup_handle_is_resolved_again_in_a_forked_child() -> None:
    """A child forgets the parent's resolved handle and finds its own on first use."""
    probes.cgroup()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            forgot = probes._own_cgroup is None
            again = probes.cgroup() is probes.cgroup()
            os.write(w, b"1" if forgot and again else b"0")
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as fh:
        assert fh.read() == b"1"
