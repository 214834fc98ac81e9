"""Governor hardening: relievers that block or re-enter, stuck relief, relief per episode."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from memwarden.config import MemoryConfig
from memwarden.exceptions import MemwardenError, PressureTimeoutError
from memwarden.pressure import PRIORITY_CACHE, Governor, PressureLevel

BUDGET = 1000


class Usage:
    """A fake probe whose value the test sets."""

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def run_in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``fn`` on a daemon thread (so a hang fails the test instead of hanging it)."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, errors


def make(usage: Usage, **kw: object) -> Governor:
    kw.setdefault("builtin_relievers", False)
    kw.setdefault("kernel_events", False)
    return Governor(MemoryConfig(max_memory_bytes=BUDGET), probe=usage, **kw)  # type: ignore[arg-type]


def test_wait_for_relief_times_out_even_when_a_reliever_blocks() -> None:
    """A reliever that never returns cannot stop wait_for_relief(timeout=1) from raising."""
    usage = Usage(950)
    gov = make(usage)
    release = threading.Event()
    entered = threading.Event()

    def blocking() -> None:
        entered.set()
        release.wait(30)

    gov.register_reliever(blocking, priority=PRIORITY_CACHE, name="blocking")
    try:
        t, errors = run_in_thread(lambda: gov.wait_for_relief(timeout=1.0, poll_s=0.05))
        t.join(15)
        assert not t.is_alive(), "wait_for_relief(timeout=1) hung in a blocking reliever"
        assert entered.is_set()
        assert len(errors) == 1
        assert isinstance(errors[0], PressureTimeoutError)
        assert errors[0].waited_s >= 1.0
    finally:
        release.set()
        gov.stop()


@pytest.mark.parametrize("call", ["relieve", "wait_for_relief"])
def test_a_reliever_calling_back_into_the_governor_is_refused_not_deadlocked(
    call: str, caplog: pytest.LogCaptureFixture
) -> None:
    """relieve()/wait_for_relief() from inside a reliever raise at once; the run goes on."""
    usage = Usage(950)
    gov = make(usage)
    seen: list[BaseException] = []

    def reentrant() -> int:
        try:
            if call == "relieve":
                gov.relieve()
            else:
                gov.wait_for_relief(timeout=5)
        except MemwardenError as exc:
            seen.append(exc)
        usage.value = 100
        return 850

    gov.register_reliever(reentrant, priority=PRIORITY_CACHE, name="reentrant")
    with caplog.at_level(logging.ERROR, logger="memwarden.pressure"):
        t, errors = run_in_thread(gov.relieve)
        t.join(15)
    assert not t.is_alive(), f"{call}() from inside a reliever deadlocked"
    assert errors == []
    assert len(seen) == 1
    assert "inside reliever 'reentrant'" in str(seen[0])
    assert gov.history()[-1].level_after is PressureLevel.NONE


def test_a_reentrant_call_from_the_relief_thread_is_refused_too() -> None:
    """The same refusal holds when relief runs on the governor's own relief thread."""
    usage = Usage(950)
    gov = make(usage)
    seen: list[BaseException] = []

    def reentrant() -> None:
        try:
            gov.relieve()
        except MemwardenError as exc:
            seen.append(exc)
        usage.value = 100

    gov.register_reliever(reentrant, priority=PRIORITY_CACHE, name="reentrant")
    t, errors = run_in_thread(lambda: gov.wait_for_relief(timeout=10, poll_s=0.01))
    t.join(15)
    assert not t.is_alive()
    assert errors == []
    assert len(seen) == 1
    gov.stop()


def test_a_stuck_reliever_is_logged_and_the_watcher_keeps_evaluating(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While a reliever blocks, levels still follow usage, the stall is logged, stop() works."""
    usage = Usage(100)
    gov = make(usage, interval_s=0.01, auto_relieve=True, reliever_timeout_s=0.2)
    release = threading.Event()
    entered = threading.Event()

    def stuck() -> None:
        entered.set()
        release.wait(30)

    gov.register_reliever(stuck, priority=PRIORITY_CACHE, name="stuck")
    try:
        with caplog.at_level(logging.WARNING, logger="memwarden.pressure"):
            gov.start()
            usage.value = 950
            assert entered.wait(10)
            assert wait_until(lambda: "'stuck' has run for" in caplog.text)
            usage.value = 100  # the reliever is still blocked: the watcher must see this
            assert wait_until(lambda: gov.current_level is PressureLevel.NONE)
            assert gov.stats().stuck_relievers == 1
        t, errors = run_in_thread(gov.stop)
        t.join(15)
        assert not t.is_alive(), "stop() hung behind a stuck reliever"
        assert errors == []
        assert not gov.watching
    finally:
        release.set()
        gov.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_every_pressure_episode_gets_relief_even_soon_after_the_last() -> None:
    """Bursts 0.7 s apart (relief_interval_s=1) each get relief: the rate limit is per episode."""
    usage = Usage(100)
    clock = FakeClock()
    gov = make(usage, clock=clock, interval_s=0.01, auto_relieve=True, relief_interval_s=1.0)

    def shrink() -> int:
        usage.value = 100
        return 800

    gov.register_reliever(shrink, priority=PRIORITY_CACHE, name="cache")
    with gov:
        for burst in range(3):
            clock.now = 0.7 * burst
            usage.value = 900
            assert wait_until(lambda b=burst: len(gov.history()) == b + 1), (
                f"burst {burst} at t={clock.now} got no relief"
            )
            assert wait_until(lambda: gov.current_level is PressureLevel.NONE)
    assert gov.stats().pressure_episodes == 3
