"""Tests of memwarden.dispose.EventEmitter: subscriptions, once, weak listeners, leak warning."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import warnings
import weakref
from collections.abc import Hashable
from typing import Any

import pytest

from memwarden.dispose import (
    Disposable,
    EventEmitter,
    MaxListenersExceededWarning,
    Subscription,
)
from memwarden.exceptions import DisposedError


class Widget:
    """An object whose bound method listens to events."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def handle(self, value: Any) -> None:
        self.seen.append(value)


def test_on_emit_calls_in_order_with_arguments() -> None:
    """emit() calls listeners in registration order with its arguments, and counts them."""
    emitter = EventEmitter()
    log: list[tuple[str, Any, Any]] = []
    emitter.on("data", lambda x, k=None: log.append(("first", x, k)))
    emitter.on("data", lambda x, k=None: log.append(("second", x, k)))
    assert emitter.emit("data", 1, k=2) == 2
    assert log == [("first", 1, 2), ("second", 1, 2)]
    assert emitter.emit("other") == 0


def test_subscription_is_disposable_and_idempotent() -> None:
    """Disposing a subscription removes exactly that listener; twice is harmless."""
    emitter = EventEmitter()
    calls: list[str] = []
    sub = emitter.on("e", lambda: calls.append("a"))
    emitter.on("e", lambda: calls.append("b"))
    assert isinstance(sub, Disposable)
    assert sub.active
    assert sub.event == "e"
    sub.dispose()
    sub.dispose()
    assert not sub.active
    emitter.emit("e")
    assert calls == ["b"]
    assert emitter.listener_count("e") == 1


def test_subscription_context_manager() -> None:
    """A subscription used as a context manager listens only inside the block."""
    emitter = EventEmitter()
    calls: list[int] = []
    with emitter.on("e", calls.append):
        emitter.emit("e", 1)
    emitter.emit("e", 2)
    assert calls == [1]


def test_once_fires_once_even_when_reentrant() -> None:
    """A once() listener is removed before its call, so a re-emit from inside does not rerun it."""
    emitter = EventEmitter()
    calls: list[int] = []

    def listener(n: int) -> None:
        calls.append(n)
        emitter.emit("e", n + 1)

    sub = emitter.once("e", listener)
    emitter.emit("e", 1)
    emitter.emit("e", 5)
    assert calls == [1]
    assert not sub.active
    assert emitter.listener_count("e") == 0


def test_once_under_concurrent_emits_runs_once() -> None:
    """Threads emitting at once still run a once() listener a single time."""
    for _ in range(20):
        emitter = EventEmitter()
        calls: list[int] = []
        emitter.once("e", lambda c=calls: c.append(1))
        barrier = threading.Barrier(4)

        def fire(emitter: EventEmitter = emitter, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(timeout=10)
            emitter.emit("e")

        threads = [threading.Thread(target=fire) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert calls == [1]


def test_off_removes_latest_matching_or_all() -> None:
    """off(event, fn) removes the most recent registration of fn; off(event) removes all."""
    emitter = EventEmitter()
    calls: list[str] = []

    def f() -> None:
        calls.append("f")

    emitter.on("e", f)
    emitter.on("e", f)
    emitter.on("e", lambda: calls.append("g"))
    assert emitter.off("e", f) == 1
    assert emitter.listener_count("e") == 2
    emitter.emit("e")
    assert calls == ["f", "g"]
    assert emitter.off("e", lambda: None) == 0
    assert emitter.off("e") == 2
    assert emitter.listener_count() == 0
    assert emitter.event_names() == []


def test_weak_bound_method_dropped_when_object_dies() -> None:
    """A weak listener does not keep its object alive and is removed once the object dies."""
    emitter = EventEmitter()
    widget = Widget()
    ref = weakref.ref(widget)
    sub = emitter.on("e", widget.handle, weak=True)
    emitter.emit("e", 1)
    assert widget.seen == [1]
    del widget
    gc.collect()
    assert ref() is None
    assert emitter.listener_count("e") == 0
    assert not sub.active
    assert emitter.emit("e", 2) == 0


def test_strong_bound_method_keeps_object_alive() -> None:
    """The default (strong) listener keeps its object alive: the leak weak=True avoids."""
    emitter = EventEmitter()
    widget = Widget()
    ref = weakref.ref(widget)
    emitter.on("e", widget.handle)
    del widget
    gc.collect()
    assert ref() is not None


def test_weak_listener_does_not_keep_emitter_alive() -> None:
    """A weak registration's callback holds the emitter weakly."""
    emitter = EventEmitter()
    widget = Widget()
    emitter.on("e", widget.handle, weak=True)
    ref = weakref.ref(emitter)
    gc.disable()
    try:
        del emitter
        assert ref() is None
    finally:
        gc.enable()
    del widget  # the dead emitter's callback must not fail
    gc.collect()


def test_weak_rejects_unreferenceable() -> None:
    """A listener that cannot be weakly referenced is refused with TypeError when weak=True."""

    class Slotted:
        __slots__ = ()

        def __call__(self) -> None: ...

    emitter = EventEmitter()
    with pytest.raises(TypeError, match="weak=False"):
        emitter.on("e", Slotted(), weak=True)
    assert emitter.listener_count("e") == 0


def test_max_listeners_warns_once_per_event() -> None:
    """Exceeding max_listeners warns once per event; 0 disables the check."""
    emitter = EventEmitter(max_listeners=2)
    emitter.on("e", lambda: None)
    emitter.on("e", lambda: None)
    with pytest.warns(MaxListenersExceededWarning, match="3 listeners added for event 'e'"):
        emitter.on("e", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emitter.on("e", lambda: None)
        unlimited = EventEmitter(max_listeners=0)
        for _ in range(50):
            unlimited.on("x", lambda: None)


def test_default_max_listeners_is_ten() -> None:
    """The default limit is Node's 10: the 11th listener warns."""
    emitter = EventEmitter()
    for _ in range(10):
        emitter.on("e", lambda: None)
    with pytest.warns(MaxListenersExceededWarning):
        emitter.on("e", lambda: None)


def test_listener_errors_are_reported_and_others_run(caplog: pytest.LogCaptureFixture) -> None:
    """A raising listener is logged (or passed to on_error) and later listeners still run."""
    emitter = EventEmitter()
    calls: list[str] = []

    def bad() -> None:
        raise ValueError("boom")

    emitter.on("e", bad)
    emitter.on("e", lambda: calls.append("after"))
    with caplog.at_level(logging.ERROR, logger="memwarden.dispose"):
        assert emitter.emit("e") == 2
    assert calls == ["after"]
    assert "listener for event 'e' raised" in caplog.text

    errors: list[tuple[Hashable, BaseException]] = []
    handled = EventEmitter(on_error=lambda ev, exc: errors.append((ev, exc)))
    handled.on("e", bad)
    handled.emit("e")
    assert errors[0][0] == "e"
    assert isinstance(errors[0][1], ValueError)


def test_listener_may_unsubscribe_during_emit() -> None:
    """Removing a listener while emitting does not skip or break the current emission."""
    emitter = EventEmitter()
    calls: list[str] = []
    subs: list[Subscription] = []

    def first() -> None:
        calls.append("first")
        subs[1].dispose()

    subs.append(emitter.on("e", first))
    subs.append(emitter.on("e", lambda: calls.append("second")))
    emitter.emit("e")
    emitter.emit("e")
    assert calls == ["first", "second", "first"]


def test_emit_async_awaits_coroutines() -> None:
    """emit_async() awaits coroutine listeners and calls plain ones."""
    emitter = EventEmitter()
    calls: list[str] = []

    async def coro(x: int) -> None:
        await asyncio.sleep(0)
        calls.append(f"async{x}")

    emitter.on("e", coro)
    emitter.on("e", lambda x: calls.append(f"sync{x}"))
    assert asyncio.run(emitter.emit_async("e", 1)) == 2
    assert calls == ["async1", "sync1"]


def test_dispose_removes_all_and_refuses_new() -> None:
    """Disposing the emitter drops every listener and on() then raises DisposedError."""
    with EventEmitter() as emitter:
        emitter.on("a", lambda: None)
        emitter.on("b", lambda: None)
        assert emitter.listener_count() == 2
    assert emitter.disposed
    assert emitter.listener_count() == 0
    with pytest.raises(DisposedError):
        emitter.on("a", lambda: None)


def test_remove_all_listeners_and_listeners() -> None:
    """listeners() lists live callables; remove_all_listeners() empties one event or all."""
    emitter = EventEmitter()

    def f() -> None: ...

    emitter.on("a", f)
    emitter.on("b", f)
    assert emitter.listeners("a") == [f]
    assert emitter.remove_all_listeners("a") == 1
    assert emitter.remove_all_listeners() == 1
    assert emitter.listener_count() == 0
