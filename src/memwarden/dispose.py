"""Explicit disposal: protocols, TC39-style disposable stacks, a resource manager, leak warnings
for forgotten resources, and an event emitter whose subscriptions are themselves disposable.

The playbook's "Resource Disposal Pattern" and its "event listeners not removed" anti-pattern.
``DisposableStack`` follows the semantics of the TC39 explicit-resource-management proposal
(``use``/``adopt``/``defer``/``move``, LIFO, idempotent, use after dispose raises), with Python
spelling: failures of several disposers are raised together as an ``ExceptionGroup``
(``DisposalError``, which is also a ``MemwardenError``).
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
import warnings
import weakref
from collections.abc import Callable, Hashable, Iterator
from types import MethodType, TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable

from memwarden import _registry
from memwarden._leaktrack import creation_site
from memwarden.exceptions import (
    DisposalError,
    DisposedError,
    MaxListenersExceededWarning,
    RegistryFullError,
    UndisposedResourceWarning,
)

__all__ = [
    "AsyncDisposable",
    "AsyncDisposableStack",
    "Disposable",
    "DisposableBase",
    "DisposableStack",
    "DisposalError",
    "EventEmitter",
    "MaxListenersExceededWarning",
    "ResourceManager",
    "Subscription",
    "configure_leak_detection",
    "undisposed_count",
]

logger = logging.getLogger("memwarden.dispose")

T = TypeVar("T")
_Self = TypeVar("_Self")
_D = TypeVar("_D", bound="DisposableBase")


@runtime_checkable
class Disposable(Protocol):
    """Something that releases what it holds when ``dispose()`` is called (idempotent)."""

    def dispose(self) -> None:
        """Release the resources held; calling it again does nothing."""
        ...


@runtime_checkable
class AsyncDisposable(Protocol):
    """The awaitable counterpart of ``Disposable``."""

    async def adispose(self) -> None:
        """Release the resources held; awaiting it again does nothing."""
        ...


def _raise_collected(errors: list[BaseException], what: str) -> None:
    """Raise what disposal collected: nothing, the single error, or all of them together."""
    if not errors:
        return
    # An interrupt (KeyboardInterrupt, SystemExit) wins: everything else was still disposed.
    for exc in errors:
        if not isinstance(exc, Exception):
            raise exc
    if len(errors) == 1:
        raise errors[0]
    raise DisposalError(f"{len(errors)} errors while disposing {what}", errors)  # type: ignore[arg-type]


def _disposer_for(value: object) -> Callable[[], object]:
    """The bound method that disposes ``value``: ``dispose()``, else ``close()``."""
    for name in ("dispose", "close"):
        method = getattr(value, name, None)
        if callable(method):
            return method  # type: ignore[no-any-return]
    raise TypeError(
        f"{type(value).__name__} object is not disposable: it has neither dispose() nor close()"
    )


def _async_disposer_for(value: object) -> Callable[[], object]:
    for name in ("adispose", "aclose", "dispose", "close"):
        method = getattr(value, name, None)
        if callable(method):
            return method  # type: ignore[no-any-return]
    raise TypeError(
        f"{type(value).__name__} object is not disposable: it has none of "
        "adispose(), aclose(), dispose(), close()"
    )


# --------------------------------------------------------------------------- stacks


class _StackBase:
    """State shared by the sync and async stacks: a LIFO list of zero-argument callbacks."""

    __slots__ = ("__weakref__", "_callbacks", "_disposed", "_lock")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], object]] = []
        self._disposed = False
        self._lock = threading.Lock()

    @property
    def disposed(self) -> bool:
        """True once ``dispose()`` ran or ``move()`` took the resources away."""
        return self._disposed

    @property
    def pending(self) -> int:
        """How many registrations are waiting for disposal."""
        return len(self._callbacks)

    def adopt(self, value: T, on_dispose: Callable[[T], object]) -> T:
        """Register ``on_dispose(value)`` to run at disposal and return ``value``.

        On an ``AsyncDisposableStack`` ``on_dispose`` may be async: its result is awaited.
        """
        if not callable(on_dispose):
            raise TypeError(f"on_dispose must be callable, got {on_dispose!r}")
        self._push(lambda: on_dispose(value))
        return value

    def defer(self, fn: Callable[[], object]) -> None:
        """Register ``fn()`` to run at disposal (on an async stack, awaited if async)."""
        if not callable(fn):
            raise TypeError(f"defer() needs a callable, got {fn!r}")
        self._push(fn)

    def _push(self, callback: Callable[[], object]) -> None:
        with self._lock:
            if self._disposed:
                raise DisposedError(f"{type(self).__name__} is already disposed")
            self._callbacks.append(callback)

    def _take_all(self) -> list[Callable[[], object]] | None:
        """Mark disposed and hand back the callbacks, or None if already disposed."""
        with self._lock:
            if self._disposed:
                return None
            self._disposed = True
            callbacks, self._callbacks = self._callbacks, []
        return callbacks

    def _move_into(self, other: _StackBase) -> None:
        with self._lock:
            if self._disposed:
                raise DisposedError(f"{type(self).__name__} is already disposed")
            self._disposed = True
            other._callbacks, self._callbacks = self._callbacks, []

    def __repr__(self) -> str:
        state = "disposed" if self._disposed else f"{len(self._callbacks)} resources"
        return f"<{type(self).__name__} {state}>"


class DisposableStack(_StackBase):
    """Collects resources and disposes them in reverse order, once.

    Semantics of the TC39 ``DisposableStack``: ``use``/``adopt``/``defer`` register,
    ``dispose()`` runs the registrations last-in first-out and is idempotent, every
    registration after disposal raises ``DisposedError``, and ``move()`` hands the
    registrations to a fresh stack (so a constructor can build several resources and
    keep them only if all succeed). Failures do not stop disposal: a single failure is
    re-raised as is, several are raised together as ``DisposalError`` (an
    ``ExceptionGroup`` on Python 3.11+).

    Example::

        with DisposableStack() as stack:
            f = stack.use(open(path, "rb"))
            stack.defer(lambda: print("done"))
    """

    __slots__ = ()

    def use(self, value: T) -> T:
        """Register ``value`` (with ``dispose()`` or ``close()``) and return it; None is allowed.

        Raises:
            TypeError: ``value`` has neither ``dispose()`` nor ``close()``.
            DisposedError: the stack is already disposed.
        """
        if value is None:
            return value
        self._push(_disposer_for(value))
        return value

    def move(self) -> DisposableStack:
        """Return a new stack holding every registration; this stack becomes disposed.

        Raises:
            DisposedError: the stack is already disposed.
        """
        other = DisposableStack()
        self._move_into(other)
        return other

    def dispose(self) -> None:
        """Run every registration in reverse order; idempotent.

        Raises:
            DisposalError: several registrations failed (all of them ran).
            Exception: the one registration that failed, when only one did.
        """
        callbacks = self._take_all()
        if not callbacks:
            return
        errors: list[BaseException] = []
        for callback in reversed(callbacks):
            try:
                callback()
            except BaseException as exc:  # every disposer runs; errors are raised together
                errors.append(exc)
        _raise_collected(errors, "a DisposableStack")

    close = dispose

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A disposal error raised here carries the body's exception as __context__,
        # the Python spelling of TC39's SuppressedError.
        self.dispose()


class AsyncDisposableStack(_StackBase):
    """The ``async`` twin of ``DisposableStack``: disposers may be coroutines.

    ``use()`` prefers ``adispose()``, then ``aclose()``, ``dispose()``, ``close()``; any
    registered callback whose result is awaitable is awaited. Use ``async with`` or
    ``await stack.adispose()``.
    """

    __slots__ = ()

    def use(self, value: T) -> T:
        """Register ``value`` (async or sync disposable, or closable) and return it."""
        if value is None:
            return value
        self._push(_async_disposer_for(value))
        return value

    def move(self) -> AsyncDisposableStack:
        """Return a new stack holding every registration; this stack becomes disposed."""
        other = AsyncDisposableStack()
        self._move_into(other)
        return other

    async def adispose(self) -> None:
        """Run (and await) every registration in reverse order; idempotent.

        Raises:
            DisposalError: several registrations failed (all of them ran).
            Exception: the one registration that failed, when only one did.
        """
        callbacks = self._take_all()
        if not callbacks:
            return
        errors: list[BaseException] = []
        for callback in reversed(callbacks):
            try:
                result = callback()
                if hasattr(result, "__await__"):
                    await result
            except BaseException as exc:  # every disposer runs; errors are raised together
                errors.append(exc)
        _raise_collected(errors, "an AsyncDisposableStack")

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.adispose()


# --------------------------------------------------------------------------- resource manager


class ResourceManager:
    """The playbook's ``ResourceManager``: tracks resources, disposes them all, clears caches.

    ``track()`` registers anything with ``dispose()``/``close()`` (or a callback through
    ``on_dispose=``), ``register_cache()`` anything with ``clear()``; ``dispose()``
    releases the resources last-in first-out, clears the caches, and runs
    ``gc.collect()`` when ``collect_garbage=True``. The manager can be reused after
    ``dispose()`` (unlike a ``DisposableStack``); ``close()`` disposes and retires it.

    Args:
        collect_garbage: run ``gc.collect()`` at the end of each ``dispose()``.
        max_resources: bound on tracked resources; ``track()`` beyond it raises
            ``RegistryFullError`` (a manager that only grows is itself a leak).
    """

    def __init__(self, *, collect_garbage: bool = False, max_resources: int = 65_536) -> None:
        if max_resources < 1:
            raise ValueError(f"max_resources={max_resources!r}: expected at least 1")
        self.collect_garbage = collect_garbage
        self.max_resources = max_resources
        # id(resource) -> (resource, disposer); dicts keep insertion order, so reversed()
        # is LIFO, and untrack() is O(1).
        self._resources: dict[int, tuple[object, Callable[[], object]]] = {}
        self._caches: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.disposals = 0

    def track(self, resource: T, *, on_dispose: Callable[[T], object] | None = None) -> T:
        """Track ``resource`` until ``dispose()``; return it.

        Raises:
            TypeError: no ``on_dispose`` and the resource has neither ``dispose()`` nor ``close()``.
            RegistryFullError: ``max_resources`` are tracked already.
            DisposedError: the manager was closed.
        """
        if on_dispose is None:
            disposer = _disposer_for(resource)
        else:
            callback = on_dispose
            disposer = lambda: callback(resource)  # noqa: E731
        with self._lock:
            if self._closed:
                raise DisposedError("ResourceManager is closed")
            if id(resource) not in self._resources and len(self._resources) >= self.max_resources:
                raise RegistryFullError(
                    f"ResourceManager already tracks max_resources={self.max_resources} "
                    "resources; dispose() or untrack() some"
                )
            self._resources[id(resource)] = (resource, disposer)
        return resource

    def untrack(self, resource: object) -> bool:
        """Stop tracking ``resource`` without disposing it; return whether it was tracked."""
        with self._lock:
            return self._resources.pop(id(resource), None) is not None

    def register_cache(self, cache: Any) -> None:
        """Clear ``cache`` (anything with ``clear()``) at every ``dispose()``."""
        if not callable(getattr(cache, "clear", None)):
            raise TypeError(f"{type(cache).__name__} object has no clear() method")
        with self._lock:
            self._caches[id(cache)] = cache

    def unregister_cache(self, cache: Any) -> bool:
        """Forget ``cache``; return whether it was registered."""
        with self._lock:
            return self._caches.pop(id(cache), None) is not None

    @property
    def resource_count(self) -> int:
        """How many resources are tracked now."""
        return len(self._resources)

    def __len__(self) -> int:
        return len(self._resources)

    def __contains__(self, resource: object) -> bool:
        entry = self._resources.get(id(resource))
        return entry is not None and entry[0] is resource

    def dispose(self) -> None:
        """Release every tracked resource (LIFO), clear registered caches, maybe collect.

        Every resource is released and every cache cleared even when some fail.

        Raises:
            DisposalError: several releases failed; a single failure is raised as is.
        """
        with self._lock:
            entries = list(self._resources.values())
            self._resources.clear()
            caches = list(self._caches.values())
        errors: list[BaseException] = []
        while entries:
            # pop() so that no local keeps a released resource alive during gc.collect()
            disposer = entries.pop()[1]
            try:
                disposer()
            except BaseException as exc:  # every resource is released; errors raised together
                errors.append(exc)
            del disposer
        for cache in caches:
            try:
                cache.clear()
            except BaseException as exc:
                errors.append(exc)
        if self.collect_garbage:
            gc.collect()
        self.disposals += 1
        _raise_collected(errors, "a ResourceManager")

    def close(self) -> None:
        """Dispose and refuse further ``track()`` calls."""
        with self._lock:
            self._closed = True
        self.dispose()

    def __enter__(self) -> ResourceManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ResourceManager {len(self._resources)} resources, {len(self._caches)} caches>"


# --------------------------------------------------------------------------- leak warnings

_leak_sample_rate = 1
_leak_debug = False
_leak_counter = itertools.count()
_leaks_reported = 0


def configure_leak_detection(*, sample_rate: int | None = None, debug: bool | None = None) -> None:
    """Set how ``DisposableBase`` watches for instances collected without ``dispose()``.

    Args:
        sample_rate: watch 1 instance in ``sample_rate`` (1: every instance, the default;
            0: none). Watching costs a ``weakref.finalize`` per watched instance.
        debug: watch every instance and record where each was created, named in the warning.
    """
    global _leak_sample_rate, _leak_debug
    if sample_rate is not None:
        if sample_rate < 0:
            raise ValueError(f"sample_rate={sample_rate!r}: expected 0 (off) or a positive 1-in-N")
        _leak_sample_rate = sample_rate
    if debug is not None:
        _leak_debug = debug


def undisposed_count() -> int:
    """How many ``DisposableBase`` instances were reported collected without ``dispose()``.

    A process-wide counter (sampled like the warnings), for tests and health checks that
    want a number rather than a warning.
    """
    return _leaks_reported


def _report_undisposed(class_name: str, site: str | None) -> None:
    global _leaks_reported
    _leaks_reported += 1
    where = f"; created at:\n{site}" if site else " (enable debug mode to see where it was created)"
    warnings.warn(
        f"{class_name} object was garbage-collected without dispose(){where}",
        UndisposedResourceWarning,
        stacklevel=2,
    )


class DisposableBase:
    """Base class of resources that must be disposed; warns when one is forgotten.

    Subclasses put their cleanup in ``_dispose()``; ``dispose()`` runs it once (idempotent),
    and ``_check_not_disposed()`` raises ``DisposedError`` in methods that need a live object.
    An instance garbage-collected without ``dispose()`` emits ``UndisposedResourceWarning``
    (a ``ResourceWarning``, hidden by default like CPython's unclosed-file warning; shown
    under ``python -W default``, ``-X dev`` and pytest) naming its class and, in debug mode
    (``configure_leak_detection(debug=True)``), where it was created. The watch is set up
    in ``__new__``, so subclasses need not call ``super().__init__()``.

    Subclasses may define ``__slots__``.
    """

    __slots__ = ("__weakref__", "_mw_disposed", "_mw_finalizer")
    _mw_disposed: bool
    _mw_finalizer: weakref.finalize[Any, Any] | None

    def __new__(cls: type[_D], *args: Any, **kwargs: Any) -> _D:
        # -> _D, bound to this class (Python 3.10 has no typing.Self, and
        # typing_extensions is not a dependency): Conn() is a Conn to type checkers.
        self = super().__new__(cls)
        self._mw_disposed = False
        self._mw_finalizer = None
        rate = _leak_sample_rate
        if _leak_debug or (rate and next(_leak_counter) % rate == 0):
            site = creation_site() if _leak_debug else None
            fin = weakref.finalize(self, _report_undisposed, cls.__qualname__, site)
            fin.atexit = False  # interpreter shutdown is not a leak
            self._mw_finalizer = fin
        return self

    @property
    def disposed(self) -> bool:
        """True once ``dispose()`` has run."""
        return self._mw_disposed

    def _check_not_disposed(self) -> None:
        """Raise ``DisposedError`` if ``dispose()`` has run."""
        if self._mw_disposed:
            raise DisposedError(f"{type(self).__name__} object is disposed")

    def _dispose(self) -> None:
        """Release what the instance holds; override in subclasses (runs at most once)."""

    def dispose(self) -> None:
        """Release the instance's resources; later calls do nothing."""
        if self._mw_disposed:
            return
        self._mw_disposed = True
        fin = self._mw_finalizer
        if fin is not None:
            fin.detach()
            self._mw_finalizer = None
        self._dispose()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()


# --------------------------------------------------------------------------- events


class _Listener:
    """One registration: a strong or weak reference to the callable, and its options."""

    __slots__ = ("__weakref__", "event", "once", "ref", "strong")

    def __init__(self, event: Hashable, strong: Callable[..., Any] | None, once: bool) -> None:
        self.event = event
        self.strong = strong
        self.ref: Callable[[], Callable[..., Any] | None] | None = None
        self.once = once

    def target(self) -> Callable[..., Any] | None:
        if self.strong is not None:
            return self.strong
        return self.ref() if self.ref is not None else None


class Subscription(_registry.Subscription):
    """What ``EventEmitter.on()`` returns: ``dispose()`` (or ``with``) removes the listener.

    The one subscription handle type of memwarden (:class:`memwarden._registry.Subscription`),
    here bound to an emitter's listener table instead of a callback list.
    """

    __slots__ = ("_emitter", "_listener")

    def __init__(self, emitter: EventEmitter, listener: _Listener) -> None:
        super().__init__(None)
        self._emitter: EventEmitter | None = emitter
        self._listener = listener

    @property
    def event(self) -> Hashable:
        """The event this subscription listens to."""
        return self._listener.event

    @property
    def active(self) -> bool:
        """True while the listener is registered (not disposed, not fired-once, not dead)."""
        emitter = self._emitter
        return emitter is not None and emitter._has(self._listener)

    def dispose(self) -> None:
        """Remove the listener; idempotent."""
        emitter, self._emitter = self._emitter, None
        if emitter is not None:
            emitter._remove(self._listener)

    unsubscribe = dispose
    close = dispose

    def __repr__(self) -> str:
        return f"<Subscription {self._listener.event!r} {'active' if self.active else 'inactive'}>"


class EventEmitter:
    """Node-style events whose listeners are easy to remove and may be held weakly.

    ``on()`` returns a ``Subscription`` (disposable); ``weak=True`` holds the listener
    through a weak reference (``WeakMethod`` for bound methods), so a listener never keeps
    its object alive and is dropped when the object dies. Adding more than
    ``max_listeners`` listeners to one event warns ``MaxListenersExceededWarning`` once per
    event (0 disables the check), as Node does. Listener exceptions are passed to
    ``on_error`` (default: logged) and never stop the other listeners. Thread-safe: emit
    iterates over an immutable snapshot, so listeners may subscribe and unsubscribe freely.

    Args:
        max_listeners: per-event count above which adding a listener warns (Node: 10).
        on_error: called as ``on_error(event, exc)`` when a listener raises.
    """

    def __init__(
        self,
        *,
        max_listeners: int = 10,
        on_error: Callable[[Hashable, BaseException], object] | None = None,
    ) -> None:
        if max_listeners < 0:
            raise ValueError(f"max_listeners={max_listeners!r}: expected 0 (no limit) or more")
        self.max_listeners = max_listeners
        self.on_error = on_error
        self._listeners: dict[Hashable, tuple[_Listener, ...]] = {}
        self._warned: set[Hashable] = set()
        self._lock = threading.RLock()
        self._disposed = False

    # -- registration

    def on(self, event: Hashable, fn: Callable[..., Any], *, weak: bool = False) -> Subscription:
        """Call ``fn(*args, **kwargs)`` on every ``emit(event, ...)``; return the subscription.

        Args:
            event: any hashable event name.
            fn: the listener.
            weak: hold ``fn`` weakly (a bound method through ``WeakMethod``); the listener
                is removed when its object is collected. A lambda or local function held
                weakly dies at once: keep a reference to it.

        Raises:
            DisposedError: the emitter was disposed.
            TypeError: ``fn`` is not callable or cannot be weakly referenced.
        """
        return self._add(event, fn, weak=weak, once=False)

    add_listener = on

    def once(self, event: Hashable, fn: Callable[..., Any], *, weak: bool = False) -> Subscription:
        """Like ``on()``, but the listener is removed before its first call."""
        return self._add(event, fn, weak=weak, once=True)

    def _add(
        self, event: Hashable, fn: Callable[..., Any], *, weak: bool, once: bool
    ) -> Subscription:
        if not callable(fn):
            raise TypeError(f"listener must be callable, got {fn!r}")
        listener = _Listener(event, None if weak else fn, once)
        if weak:
            # The callback holds the emitter and the registration weakly: a dead listener
            # must not keep either alive.
            listener_ref = weakref.ref(listener)
            emitter_ref = weakref.ref(self)

            def _dead(_: object) -> None:
                entry, emitter = listener_ref(), emitter_ref()
                if entry is not None and emitter is not None:
                    emitter._remove(entry)

            try:
                if isinstance(fn, MethodType):
                    listener.ref = weakref.WeakMethod(fn, _dead)
                else:
                    listener.ref = weakref.ref(fn, _dead)
            except TypeError as exc:
                raise TypeError(f"listener {fn!r} cannot be held weakly; pass weak=False") from exc
        with self._lock:
            if self._disposed:
                raise DisposedError("EventEmitter is disposed")
            current = self._listeners.get(event, ())
            self._listeners[event] = (*current, listener)
            count = len(current) + 1
            warn = bool(self.max_listeners) and count > self.max_listeners
            if warn:
                if event in self._warned:
                    warn = False
                else:
                    self._warned.add(event)
        if warn:
            warnings.warn(
                f"possible listener leak: {count} listeners added for event {event!r} "
                f"(max_listeners={self.max_listeners}); remove listeners with off() or "
                "Subscription.dispose(), or raise max_listeners",
                MaxListenersExceededWarning,
                stacklevel=3,
            )
        return Subscription(self, listener)

    def off(self, event: Hashable, fn: Callable[..., Any] | None = None) -> int:
        """Remove listeners of ``event``: the most recent registration of ``fn``, or all.

        Returns:
            The number of listeners removed.
        """
        with self._lock:
            current = self._listeners.get(event, ())
            if fn is None:
                self._listeners.pop(event, None)
                self._warned.discard(event)
                return len(current)
            for i in range(len(current) - 1, -1, -1):
                if current[i].target() == fn:
                    self._set(event, current[:i] + current[i + 1 :])
                    return 1
        return 0

    remove_listener = off

    def remove_all_listeners(self, event: Hashable | None = None) -> int:
        """Remove every listener (of ``event``, or of all events); return how many."""
        with self._lock:
            if event is not None:
                return self.off(event)
            removed = sum(len(v) for v in self._listeners.values())
            self._listeners.clear()
            self._warned.clear()
            return removed

    def _set(self, event: Hashable, listeners: tuple[_Listener, ...]) -> None:
        if listeners:
            self._listeners[event] = listeners
        else:
            self._listeners.pop(event, None)
        if self.max_listeners and len(listeners) <= self.max_listeners:
            self._warned.discard(event)

    def _remove(self, listener: _Listener) -> bool:
        with self._lock:
            current = self._listeners.get(listener.event, ())
            if listener not in current:
                return False
            self._set(listener.event, tuple(x for x in current if x is not listener))
            return True

    def _has(self, listener: _Listener) -> bool:
        return listener in self._listeners.get(listener.event, ()) and listener.target() is not None

    # -- emission

    def _due(self, event: Hashable) -> Iterator[Callable[..., Any]]:
        for listener in self._listeners.get(event, ()):
            if listener.once and not self._remove(listener):
                continue  # another thread fired it first
            fn = listener.target()
            if fn is None:
                self._remove(listener)
                continue
            yield fn

    def _failed(self, event: Hashable, exc: BaseException) -> None:
        if self.on_error is None:
            logger.error("listener for event %r raised", event, exc_info=exc)
            return
        try:
            self.on_error(event, exc)
        except Exception:  # a failing error handler must not crash the emitter either
            logger.exception("on_error handler raised for event %r", event)

    def emit(self, event: Hashable, *args: Any, **kwargs: Any) -> int:
        """Call the listeners of ``event`` in registration order; return how many were called.

        A listener that raises is reported to ``on_error`` (or logged) and the others still run.
        """
        called = 0
        for fn in self._due(event):
            called += 1
            try:
                fn(*args, **kwargs)
            except Exception as exc:
                self._failed(event, exc)
        return called

    async def emit_async(self, event: Hashable, *args: Any, **kwargs: Any) -> int:
        """Like ``emit()``, awaiting listeners that return awaitables, one after the other."""
        called = 0
        for fn in self._due(event):
            called += 1
            try:
                result = fn(*args, **kwargs)
                if hasattr(result, "__await__"):
                    await result
            except Exception as exc:
                self._failed(event, exc)
        return called

    # -- introspection

    def listener_count(self, event: Hashable | None = None) -> int:
        """Live listeners of ``event``, or of every event when None."""
        if event is None:
            groups: list[tuple[_Listener, ...]] = list(self._listeners.values())
        else:
            groups = [self._listeners.get(event, ())]
        return sum(1 for group in groups for x in group if x.target() is not None)

    def listeners(self, event: Hashable) -> list[Callable[..., Any]]:
        """The live listeners of ``event``, in call order."""
        out = [x.target() for x in self._listeners.get(event, ())]
        return [fn for fn in out if fn is not None]

    def event_names(self) -> list[Hashable]:
        """Events that have at least one listener."""
        return list(self._listeners)

    # -- disposal

    @property
    def disposed(self) -> bool:
        """True once ``dispose()`` ran."""
        return self._disposed

    def dispose(self) -> None:
        """Remove every listener and refuse new ones; idempotent."""
        with self._lock:
            self._disposed = True
            self._listeners.clear()
            self._warned.clear()

    def __enter__(self) -> EventEmitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()

    def __repr__(self) -> str:
        return f"<EventEmitter {len(self._listeners)} events, {self.listener_count()} listeners>"
