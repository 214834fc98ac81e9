"""Tests for memwarden._registry: subscription handles, fork resets and the DEFAULT sentinel."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable

import pytest

from memwarden._registry import (
    DEFAULT,
    MAX_SUBSCRIBERS,
    Default,
    Subscribers,
    Subscription,
    reset_after_fork,
)
from memwarden.exceptions import ConfigurationError, MemwardenError

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_add_snapshot_unsubscribe_and_idempotence() -> None:
    """A handle is active until unsubscribed; unsubscribing twice does nothing."""
    subs: Subscribers[Callable[[], None]] = Subscribers("test.on_x")

    def a() -> None: ...
    def b() -> None: ...

    sa, sb = subs.add(a), subs.add(b)
    assert subs.snapshot() == (a, b)
    assert sa.active
    assert sb.active
    assert len(subs) == 2
    sa.unsubscribe()
    sa.unsubscribe()
    assert not sa.active
    assert subs.snapshot() == (b,)
    with sb:
        pass
    assert not sb.active
    assert not subs


def test_clear_makes_every_handle_inactive() -> None:
    """Clearing the list (an owner closing) is visible through the handles."""
    subs: Subscribers[Callable[[], None]] = Subscribers("test.on_x")
    handle = subs.add(lambda: None)
    subs.clear()
    assert not handle.active
    handle.unsubscribe()  # still harmless


def test_the_list_is_bounded_and_the_error_is_configurable() -> None:
    """Past the limit ``add`` raises the configured error naming the list."""
    subs: Subscribers[Callable[[], None]] = Subscribers("test.on_x", limit=3)
    for _ in range(3):
        subs.add(lambda: None)
    with pytest.raises(MemwardenError, match=r"test\.on_x.*limit 3"):
        subs.add(lambda: None)
    custom: Subscribers[Callable[[], None]] = Subscribers(
        "test.on_y", limit=0, error=lambda m: ConfigurationError(m, source="argument")
    )
    with pytest.raises(ConfigurationError, match="unsubscribe"):
        custom.add(lambda: None)
    assert MAX_SUBSCRIBERS == 1024


def test_a_non_callable_is_a_type_error() -> None:
    """Registering something that cannot be called fails at once, not at call time."""
    subs: Subscribers[Callable[[], None]] = Subscribers("test.on_x")
    with pytest.raises(TypeError, match="callable"):
        subs.add(42)  # type: ignore[arg-type]


def test_a_handle_does_not_keep_its_registry_alive() -> None:
    """Handles hold the registry weakly; once it is gone they are inactive and harmless."""
    subs: Subscribers[Callable[[], None]] = Subscribers("test.on_x")
    handle = subs.add(lambda: None)
    del subs
    gc.collect()
    assert not handle.active
    handle.unsubscribe()


def test_snapshot_is_safe_while_others_subscribe() -> None:
    """Iterating a snapshot while another thread subscribes never raises."""
    subs: Subscribers[Callable[[], None]] = Subscribers("test.on_x")
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            subs.add(lambda: None).unsubscribe()

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(2000):
            for cb in subs.snapshot():
                cb()
    finally:
        stop.set()
        t.join()
    assert len(subs) == 0


def test_default_sentinel_is_an_enum_member_with_a_short_repr() -> None:
    """DEFAULT is the single member of Default, so ``Literal[Default.DEFAULT]`` types it."""
    assert DEFAULT is Default.DEFAULT
    assert list(Default) == [DEFAULT]
    assert repr(DEFAULT) == "DEFAULT"


class _Resettable:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handle = reset_after_fork(self._after_fork)

    def _after_fork(self) -> None:
        self.lock = threading.Lock()


def test_a_bound_method_does_not_keep_its_object_alive() -> None:
    """reset_after_fork holds bound methods weakly: the object is collected, the entry goes."""
    obj = _Resettable()
    handle = obj.handle
    assert handle.active
    del obj
    gc.collect()
    assert not handle.active


@needs_fork
def test_resets_run_in_the_child_in_order_and_a_failing_one_is_isolated() -> None:
    """A lock held at fork time is replaced in the child; a raising reset does not stop the rest."""
    obj = _Resettable()
    calls: list[str] = []

    def boom() -> None:
        calls.append("boom")
        raise RuntimeError("broken reset")

    def last() -> None:
        calls.append("last")

    h1, h2 = reset_after_fork(boom), reset_after_fork(last)
    removed = reset_after_fork(lambda: calls.append("removed"))
    removed.unsubscribe()
    assert not removed.active
    obj.lock.acquire()  # as if another thread held it at fork time
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            ok = obj.lock.acquire(timeout=1) and calls == ["boom", "last"]
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        verdict = os.read(r, 1)
        os.close(r)
        os.waitpid(pid, 0)
    finally:
        obj.lock.release()
        h1.unsubscribe()
        h2.unsubscribe()
    assert verdict == b"1"
    assert calls == []  # nothing ran in the parent


def test_subscription_without_registry_is_inactive() -> None:
    """A bare handle (no registry) reports inactive and unsubscribes harmlessly."""
    sub = Subscription()
    assert not sub.active
    sub.close()
    assert "inactive" in repr(sub)


def test_every_registry_hands_out_the_one_subscription_type() -> None:
    """The governor's, the monitor's and EventEmitter's handles are all _registry.Subscription."""
    from memwarden._registry import Subscription
    from memwarden.dispose import EventEmitter
    from memwarden.monitoring import MemoryMonitor
    from memwarden.pressure import Governor

    emitter = EventEmitter()
    listener = emitter.on("x", lambda *a: None)
    gov = Governor(probe=lambda: 1, builtin_relievers=False)
    mon = MemoryMonitor(probe=lambda: 1)
    try:
        handles = [listener, gov.on_pressure(lambda old, new: None), mon.on_sample(lambda s: None)]
        assert all(isinstance(h, Subscription) for h in handles)
        with listener:
            assert listener.active
        assert not listener.active  # leaving ``with`` removed it
    finally:
        mon.close()
