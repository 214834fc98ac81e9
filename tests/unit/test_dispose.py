"""Tests of memwarden.dispose: disposable stacks, the resource manager and leak warnings."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator

import pytest

from memwarden.dispose import (
    AsyncDisposable,
    AsyncDisposableStack,
    Disposable,
    DisposableBase,
    DisposableStack,
    DisposalError,
    ResourceManager,
    configure_leak_detection,
    undisposed_count,
)
from memwarden.exceptions import (
    DisposedError,
    MemwardenError,
    PoolExhaustedError,
    RegistryFullError,
    UndisposedResourceWarning,
)


class Res:
    """A resource that records its disposal in a shared log."""

    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail
        self.count = 0

    def dispose(self) -> None:
        self.count += 1
        self.log.append(self.name)
        if self.fail:
            raise ValueError(self.name)


class Closable:
    """Something with close() only, like a file."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class AsyncRes:
    """An async resource recording its disposal."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def adispose(self) -> None:
        await asyncio.sleep(0)
        self.log.append(self.name)


@pytest.fixture(autouse=True)
def _default_leak_detection() -> Iterator[None]:
    configure_leak_detection(sample_rate=1, debug=False)
    yield
    configure_leak_detection(sample_rate=1, debug=False)


# --------------------------------------------------------------------------- protocols


def test_protocols_are_runtime_checkable() -> None:
    """Disposable and AsyncDisposable recognise objects by their methods."""
    log: list[str] = []
    assert isinstance(Res("a", log), Disposable)
    assert not isinstance(Closable(), Disposable)
    assert isinstance(AsyncRes("a", log), AsyncDisposable)
    assert isinstance(DisposableStack(), Disposable)
    assert isinstance(ResourceManager(), Disposable)


# --------------------------------------------------------------------------- DisposableStack


def test_stack_disposes_lifo_once() -> None:
    """Registrations run last-in first-out, and a second dispose() does nothing."""
    log: list[str] = []
    stack = DisposableStack()
    a = stack.use(Res("a", log))
    stack.defer(lambda: log.append("deferred"))
    stack.adopt("handle", lambda v: log.append(f"adopt:{v}"))
    c = Closable()
    assert stack.use(c) is c
    assert stack.pending == 4
    stack.dispose()
    stack.dispose()
    assert log == ["adopt:handle", "deferred", "a"]
    assert c.closed
    assert a.count == 1
    assert stack.disposed


def test_stack_use_returns_value_and_accepts_none() -> None:
    """use() returns its argument, and None is accepted and ignored (as in TC39)."""
    stack = DisposableStack()
    assert stack.use(None) is None
    assert stack.pending == 0


def test_stack_rejects_non_disposable() -> None:
    """use() of an object without dispose()/close() raises TypeError naming the type."""
    with pytest.raises(TypeError, match="int object is not disposable"):
        DisposableStack().use(3)


@pytest.mark.parametrize(
    "action",
    [
        lambda s: s.use(Closable()),
        lambda s: s.defer(lambda: None),
        lambda s: s.adopt(1, lambda v: None),
        lambda s: s.move(),
    ],
)
def test_stack_use_after_dispose_raises(action: object) -> None:
    """Every registration and move() after disposal raise DisposedError."""
    stack = DisposableStack()
    stack.dispose()
    with pytest.raises(DisposedError):
        action(stack)  # type: ignore[operator]


def test_stack_move_transfers_resources() -> None:
    """move() hands every registration to a new stack; the old one is disposed and empty."""
    log: list[str] = []
    stack = DisposableStack()
    stack.use(Res("a", log))
    stack.use(Res("b", log))
    moved = stack.move()
    assert stack.disposed
    stack.dispose()
    assert log == []
    assert not moved.disposed
    moved.dispose()
    assert log == ["b", "a"]


def test_stack_move_pattern_in_constructor() -> None:
    """The TC39 constructor pattern: on failure everything built so far is disposed."""
    log: list[str] = []

    def build(fail: bool) -> DisposableStack:
        with DisposableStack() as stack:
            stack.use(Res("a", log))
            if fail:
                raise OSError("second resource failed")
            stack.use(Res("b", log))
            return stack.move()

    with pytest.raises(OSError, match="second resource failed"):
        build(fail=True)
    assert log == ["a"]
    kept = build(fail=False)
    assert log == ["a"]
    kept.dispose()
    assert log == ["a", "b", "a"]


def test_stack_single_failure_raised_as_is_after_all_ran() -> None:
    """One failing disposer is re-raised unchanged and the others still ran."""
    log: list[str] = []
    stack = DisposableStack()
    stack.use(Res("a", log))
    stack.use(Res("b", log, fail=True))
    stack.use(Res("c", log))
    with pytest.raises(ValueError, match="b"):
        stack.dispose()
    assert log == ["c", "b", "a"]


def test_stack_several_failures_raised_together() -> None:
    """Several failures are raised as one DisposalError (an ExceptionGroup on 3.11+)."""
    log: list[str] = []
    stack = DisposableStack()
    stack.use(Res("a", log, fail=True))
    stack.defer(lambda: (_ for _ in ()).throw(KeyError("k")))
    stack.use(Res("c", log, fail=True))
    with pytest.raises(DisposalError) as info:
        stack.dispose()
    err = info.value
    assert isinstance(err, MemwardenError)
    assert [type(e) for e in err.exceptions] == [ValueError, KeyError, ValueError]
    assert log == ["c", "a"]
    if sys.version_info >= (3, 11):
        assert isinstance(err, ExceptionGroup)  # noqa: F821
        match, rest = err.split(KeyError)
        assert match is not None
        assert isinstance(match, DisposalError)
        assert rest is not None
        assert len(rest.exceptions) == 2


def test_stack_interrupt_wins_after_full_disposal() -> None:
    """A KeyboardInterrupt raised by a disposer propagates, after every disposer ran."""
    log: list[str] = []
    stack = DisposableStack()
    stack.use(Res("a", log))

    def interrupt() -> None:
        raise KeyboardInterrupt

    stack.defer(interrupt)
    stack.use(Res("c", log, fail=True))
    with pytest.raises(KeyboardInterrupt):
        stack.dispose()
    assert log == ["c", "a"]


def test_stack_context_manager_chains_body_error() -> None:
    """A disposal error raised on exit carries the body's exception as its context."""
    stack = DisposableStack()
    stack.use(Res("a", [], fail=True))
    with pytest.raises(ValueError, match="a") as info, stack:
        raise RuntimeError("body")
    assert isinstance(info.value.__context__, RuntimeError)
    assert stack.disposed


def test_stack_does_not_keep_resources_after_dispose() -> None:
    """After dispose() the stack no longer references its resources."""
    stack = DisposableStack()
    res = Res("a", [])
    ref = weakref.ref(res)
    stack.use(res)
    del res
    stack.dispose()
    gc.collect()
    assert ref() is None


# --------------------------------------------------------------------------- AsyncDisposableStack


def test_async_stack_awaits_lifo() -> None:
    """The async stack awaits async disposers and calls sync ones, LIFO, once."""
    log: list[str] = []

    async def main() -> AsyncDisposableStack:
        async with AsyncDisposableStack() as stack:
            stack.use(AsyncRes("async", log))
            stack.use(Res("sync", log))

            async def deferred() -> None:
                log.append("deferred")

            stack.defer(deferred)
            stack.adopt(7, lambda v: log.append(f"adopt:{v}"))
        await stack.adispose()
        return stack

    stack = asyncio.run(main())
    assert log == ["adopt:7", "deferred", "sync", "async"]
    assert stack.disposed
    with pytest.raises(DisposedError):
        stack.defer(lambda: None)


def test_async_stack_collects_failures_and_moves() -> None:
    """Async failures are raised together; move() transfers registrations."""
    log: list[str] = []

    async def boom() -> None:
        raise ValueError("x")

    async def main() -> None:
        stack = AsyncDisposableStack()
        stack.defer(boom)
        stack.use(Res("sync", log, fail=True))
        moved = stack.move()
        await stack.adispose()
        assert log == []
        with pytest.raises(DisposalError) as info:
            await moved.adispose()
        assert len(info.value.exceptions) == 2

    asyncio.run(main())
    assert log == ["sync"]


# --------------------------------------------------------------------------- ResourceManager


class FakeCache(dict[str, int]):
    """A dict standing in for any cache with clear()."""

    cleared = 0

    def clear(self) -> None:
        self.cleared += 1
        super().clear()


def test_resource_manager_releases_all_and_clears_caches() -> None:
    """dispose() releases every resource LIFO and clears each registered cache."""
    log: list[str] = []
    cache = FakeCache(a=1)
    manager = ResourceManager()
    manager.register_cache(cache)
    a = manager.track(Res("a", log))
    manager.track(Res("b", log))
    manager.track("raw", on_dispose=lambda v: log.append(f"cb:{v}"))
    assert a in manager
    assert len(manager) == 3
    manager.dispose()
    assert log == ["cb:raw", "b", "a"]
    assert cache.cleared == 1
    assert len(cache) == 0
    assert manager.resource_count == 0
    manager.dispose()
    assert log == ["cb:raw", "b", "a"]


def test_resource_manager_untrack_and_reuse() -> None:
    """untrack() forgets a resource without disposing it; the manager is reusable."""
    log: list[str] = []
    manager = ResourceManager()
    res = manager.track(Res("a", log))
    assert manager.untrack(res)
    assert not manager.untrack(res)
    manager.dispose()
    assert log == []
    manager.track(Res("b", log))
    manager.dispose()
    assert log == ["b"]
    assert manager.disposals == 2


def test_resource_manager_is_bounded() -> None:
    """Tracking beyond max_resources raises RegistryFullError (it is no pool)."""
    manager = ResourceManager(max_resources=2)
    manager.track(Closable())
    manager.track(Closable())
    with pytest.raises(RegistryFullError, match="max_resources=2") as info:
        manager.track(Closable())
    assert not isinstance(info.value, PoolExhaustedError)


def test_resource_manager_rejects_bad_inputs() -> None:
    """A cache without clear() and a non-disposable resource are refused with TypeError."""
    manager = ResourceManager()
    with pytest.raises(TypeError, match="clear"):
        manager.register_cache(object())
    with pytest.raises(TypeError, match="not disposable"):
        manager.track(object())


def test_resource_manager_collects_garbage_and_keeps_going() -> None:
    """With collect_garbage, cycles die at dispose(); failures do not stop the rest."""
    log: list[str] = []

    class Node:
        def __init__(self) -> None:
            self.me = self

    node = Node()
    ref = weakref.ref(node)
    manager = ResourceManager(collect_garbage=True)
    manager.track(node, on_dispose=lambda n: None)
    manager.track(Res("bad", log, fail=True))
    manager.track(Res("good", log))
    del node
    gc.disable()
    try:
        with pytest.raises(ValueError, match="bad"):
            manager.dispose()
        assert ref() is None
    finally:
        gc.enable()
    assert log == ["good", "bad"]


def test_resource_manager_close_refuses_tracking() -> None:
    """After close() (or the with block) track() raises DisposedError."""
    with ResourceManager() as manager:
        c = manager.track(Closable())
    assert c.closed
    with pytest.raises(DisposedError):
        manager.track(Closable())


# --------------------------------------------------------------------------- DisposableBase


class Conn(DisposableBase):
    """A DisposableBase subclass counting its cleanups."""

    __slots__ = ("cleanups",)

    def __init__(self) -> None:
        self.cleanups = 0

    def _dispose(self) -> None:
        self.cleanups += 1

    def query(self) -> str:
        self._check_not_disposed()
        return "ok"


def _leak_warnings(action: Callable[[], object]) -> list[str]:
    """Run ``action`` then a collection; return the UndisposedResourceWarning messages."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        action()
        gc.collect()
    return [str(w.message) for w in record if issubclass(w.category, UndisposedResourceWarning)]


def test_disposable_base_dispose_once_and_guard() -> None:
    """dispose() runs _dispose once; methods guarded by _check_not_disposed raise after it."""
    with Conn() as conn:
        assert conn.query() == "ok"
    conn.dispose()
    assert conn.cleanups == 1
    assert conn.disposed
    with pytest.raises(DisposedError, match="Conn"):
        conn.query()


def test_undisposed_instance_warns_with_class_name() -> None:
    """An instance collected without dispose() warns UndisposedResourceWarning naming its class."""
    before = undisposed_count()
    record = _leak_warnings(Conn)
    assert undisposed_count() == before + 1
    assert len(record) == 1
    assert "Conn object was garbage-collected without dispose()" in record[0]


def test_disposed_instance_does_not_warn() -> None:
    """A disposed instance is collected silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndisposedResourceWarning)
        conn = Conn()
        conn.dispose()
        del conn
        gc.collect()


def test_debug_mode_names_creation_site() -> None:
    """In debug mode the warning names the file and function that created the instance."""
    configure_leak_detection(debug=True)

    def make_and_forget() -> None:
        Conn()

    record = _leak_warnings(make_and_forget)
    assert len(record) == 1
    assert "make_and_forget" in record[0]
    assert "test_dispose.py" in record[0]


def test_sampling_watches_one_in_n() -> None:
    """With sample_rate=N only about 1 in N forgotten instances is reported; 0 reports none."""
    configure_leak_detection(sample_rate=4)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(40):
            Conn()
        gc.collect()
    hits = [w for w in record if issubclass(w.category, UndisposedResourceWarning)]
    assert len(hits) == 10
    configure_leak_detection(sample_rate=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(10):
            Conn()
        gc.collect()
    assert not [w for w in record if issubclass(w.category, UndisposedResourceWarning)]


def test_configure_rejects_negative_rate() -> None:
    """A negative sample rate is refused with a message naming it."""
    with pytest.raises(ValueError, match="sample_rate=-1"):
        configure_leak_detection(sample_rate=-1)


def test_undisposed_warning_is_hidden_by_default_and_shown_in_dev_mode() -> None:
    """Like CPython's unclosed-file warning, the leak warning shows under -X dev only."""
    code = (
        "import gc\n"
        "from memwarden.dispose import DisposableBase\n"
        "class Sock(DisposableBase): pass\n"
        "Sock(); gc.collect()\n"
    )
    quiet = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    dev = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "UndisposedResourceWarning" not in quiet.stderr
    assert "Sock object was garbage-collected without dispose()" in dev.stderr
