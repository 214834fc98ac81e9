"""Recycling decisions and the server-wide gate (real processes for the gate)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from memwarden.exceptions import ConfigurationError
from memwarden.integrations.recycle import RecycleGate, Recycler
from memwarden.pressure import Governor

MiB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Probe:
    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


def _recycler(tmp_path: Path, probe: Probe, **kw: object) -> Recycler:
    clock = Clock()
    kw.setdefault("governor", None)
    return Recycler(
        "100 MiB",
        gate=RecycleGate("t", lock_dir=tmp_path, cooldown_s=0),
        probe=probe,
        clock=clock,
        min_uptime_s=0,
        **kw,  # type: ignore[arg-type]
    )


def test_below_the_line_never_recycles(tmp_path: Path) -> None:
    """Under the line every unit answers no, and the gate is not taken."""
    r = _recycler(tmp_path, Probe(50 * MiB))
    assert [r.after_unit().recycle for _ in range(5)] == [False] * 5
    assert not r.gate.held
    assert r.units == 5


def test_over_the_line_recycles_once_and_stays_draining(tmp_path: Path) -> None:
    """Crossing the line decides to recycle, takes the gate, and the decision sticks."""
    probe = Probe(50 * MiB)
    r = _recycler(tmp_path, probe)
    assert not r.after_unit().recycle
    probe.value = 120 * MiB
    d = r.after_unit()
    assert d.recycle
    assert "over the recycle line" in d.reason
    assert r.draining
    assert r.gate.held
    probe.value = 10 * MiB
    assert r.after_unit().recycle


def test_relief_that_brings_rss_under_the_line_prevents_the_recycle(tmp_path: Path) -> None:
    """The governor's relief runs first; if it frees enough, the worker keeps serving."""
    probe = Probe(50 * MiB)
    gov = Governor(probe=probe, builtin_relievers=False)
    freed: list[int] = []

    def reliever() -> int:
        probe.value = 60 * MiB
        freed.append(1)
        return 60 * MiB

    gov.register_reliever(reliever, priority=10, name="test")
    r = _recycler(tmp_path, probe, governor=gov, stuck_after_s=None)
    r.after_unit()
    probe.value = 120 * MiB
    d = r.after_unit()
    assert freed == [1]
    assert not d.recycle
    assert d.rss_bytes == 60 * MiB


def test_a_worker_that_starts_above_the_line_raises_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A replacement born above the line is not recycled in a loop: its line is raised, logged."""
    probe = Probe(110 * MiB)
    r = _recycler(tmp_path, probe)
    assert not r.after_unit().recycle
    assert r.effective_line() == int(110 * MiB * 1.25)
    assert "recycling it would loop" in caplog.text
    probe.value = 140 * MiB
    assert r.after_unit().recycle


def test_young_workers_do_not_recycle(tmp_path: Path) -> None:
    """Below ``min_uptime_s`` the answer is no, with the reason."""
    clock = Clock()
    r = Recycler("10 MiB", gate=RecycleGate("y", lock_dir=tmp_path), probe=Probe(5 * MiB),
                 clock=clock, min_uptime_s=5, governor=None)  # fmt: skip
    r._probe = Probe(20 * MiB)  # type: ignore[assignment]
    d = r.after_unit()
    assert not d.recycle
    assert "up only" in d.reason
    clock.now += 6
    assert r.after_unit().recycle


def _hold(
    path: str, ready: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event
) -> None:
    gate = RecycleGate("shared", lock_dir=path, cooldown_s=0)
    assert gate.try_acquire()
    ready.set()
    release.wait(30)


def test_only_one_process_holds_the_gate_and_a_dead_holder_frees_it(tmp_path: Path) -> None:
    """The flock is server-wide: another process can't take it until the holder exits."""
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(30)
    mine = RecycleGate("shared", lock_dir=tmp_path, cooldown_s=0)
    assert not mine.try_acquire()
    release.set()
    holder.join(30)
    assert holder.exitcode == 0
    assert mine.try_acquire()


def test_the_cooldown_spans_processes(tmp_path: Path) -> None:
    """A recycle stamped a moment ago makes the next taker decline."""
    first = RecycleGate("cool", lock_dir=tmp_path, cooldown_s=60)
    assert first.try_acquire()
    first.release()
    assert not RecycleGate("cool", lock_dir=tmp_path, cooldown_s=60).try_acquire()
    assert RecycleGate("cool", lock_dir=tmp_path, cooldown_s=0).try_acquire()


def test_a_symlinked_lock_dir_is_refused(tmp_path: Path) -> None:
    """The gate never follows a planted symlink."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ConfigurationError, match="is a symlink"):
        RecycleGate("x", lock_dir=link).try_acquire()


def test_a_symlinked_lock_file_is_not_followed(tmp_path: Path) -> None:
    """A symlink where the lock file should be: the gate declines, the target is untouched."""
    target = tmp_path / "victim"
    target.write_text("keep")
    (tmp_path / "recycle-v.lock").symlink_to(target)
    assert not RecycleGate("v", lock_dir=tmp_path).try_acquire()
    assert target.read_text() == "keep"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory owned by another uid")
def test_a_foreign_lock_dir_is_refused(tmp_path: Path) -> None:
    """A shared directory owned by someone else is refused by name."""
    d = tmp_path / "theirs"
    d.mkdir()
    os.chown(d, 12345, 12345)
    with pytest.raises(ConfigurationError, match="owned by uid 12345"):
        RecycleGate("x", lock_dir=d).try_acquire()


@pytest.mark.parametrize("bad", ["", "a/b", ".hidden"])
def test_bad_gate_names_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        RecycleGate(bad)


def test_a_bad_line_names_the_value() -> None:
    with pytest.raises(ConfigurationError, match="lots"):
        Recycler("lots", governor=None)


def test_a_worker_over_the_line_pauses_until_its_turn(tmp_path: Path) -> None:
    """While another process holds the gate the worker waits (intake paused), then recycles."""
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(30)
    probe = Probe(5 * MiB)
    r = Recycler("10 MiB", gate=RecycleGate("shared", lock_dir=tmp_path, cooldown_s=0),
                 probe=probe, governor=None, min_uptime_s=0, wait_s=0.1)  # fmt: skip
    probe.value = 50 * MiB
    waited = r.after_unit()
    assert not waited.recycle
    assert waited.waiting  # over the line, not its turn: the caller keeps intake paused
    release.set()
    holder.join(30)
    r.wait_s = 30  # the holder is gone: the next wait ends with the gate taken
    assert r.after_unit().recycle
