"""Base-layer plumbing every registry shares: subscription handles, fork safety, ``DEFAULT``.

* :class:`Subscribers` is a bounded, thread-safe list of callbacks; :meth:`Subscribers.add`
  returns a :class:`Subscription`, the one handle type memwarden gives back for a
  registered callback (``active``, ``unsubscribe()``, usable as a context manager).
* :func:`reset_after_fork` registers a callback that runs in a forked child. Bound methods
  are held weakly, so an object that registers its own reset is never kept alive by it.
  One ``os.register_at_fork`` hook runs them all, in registration order, each guarded.
* :data:`DEFAULT` is the sentinel for ``governor=`` parameters: ``DEFAULT`` means the
  process-wide governor, ``None`` means none (see ``memwarden.pressure.resolve_governor``).
"""

from __future__ import annotations

import enum
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from types import MethodType, TracebackType
from typing import Any, Final, Generic, Literal, TypeVar

__all__ = [
    "DEFAULT",
    "MAX_SUBSCRIBERS",
    "Default",
    "DefaultType",
    "Subscribers",
    "Subscription",
    "reset_after_fork",
]

log = logging.getLogger("memwarden.registry")

#: One cap for every callback list (memwarden's contract: every registry is bounded).
MAX_SUBSCRIBERS: Final = 1024


class Default(enum.Enum):
    """The type of :data:`DEFAULT` (an enum, so ``Literal[Default.DEFAULT]`` types it)."""

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = Default.DEFAULT
"""Use the process-wide default (for ``governor=``: the process-wide governor)."""

DefaultType = Literal[Default.DEFAULT]
"""The annotation for a parameter that accepts :data:`DEFAULT`."""


# ---------------------------------------------------------------------------
# subscriptions


class Subscription:
    """A registered callback's handle: :meth:`unsubscribe` removes it (idempotent).

    ``close`` and ``dispose`` are the same call, and ``with sub:`` unsubscribes on exit.
    The handle holds its registry weakly: keeping a handle never keeps the registry's
    owner alive.
    """

    __slots__ = ("__weakref__", "_owner")

    def __init__(self, owner: Subscribers[Any] | None = None) -> None:
        self._owner: weakref.ref[Subscribers[Any]] | None = (
            weakref.ref(owner) if owner is not None else None
        )

    @property
    def active(self) -> bool:
        """True while the callback is registered (not unsubscribed, registry not cleared)."""
        owner = self._owner() if self._owner is not None else None
        return owner is not None and owner._holds(self)

    def unsubscribe(self) -> None:
        """Stop calling the callback; calling it again does nothing."""
        ref, self._owner = self._owner, None
        owner = ref() if ref is not None else None
        if owner is not None:
            owner._discard(self)

    close = unsubscribe
    dispose = unsubscribe

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'active' if self.active else 'inactive'}>"


CallbackT = TypeVar("CallbackT", bound=Callable[..., Any])


class Subscribers(Generic[CallbackT]):
    """A bounded list of callbacks that is safe to change while it is being called.

    :meth:`snapshot` returns an immutable tuple, so a caller iterates without a lock
    while others subscribe or unsubscribe.

    Args:
        what: names the list in errors, e.g. ``"MemoryMonitor.on_sample"``.
        limit: the most callbacks at once (:data:`MAX_SUBSCRIBERS`).
        error: the exception type raised when full (a ``MemwardenError`` subclass is usual;
            it is built as ``error(message)``).
    """

    __slots__ = ("__weakref__", "_entries", "_error", "_limit", "_lock", "what")

    def __init__(
        self,
        what: str,
        *,
        limit: int = MAX_SUBSCRIBERS,
        error: Callable[[str], Exception] | None = None,
    ) -> None:
        self.what = what
        self._limit = limit
        self._error = error
        self._lock = threading.Lock()
        self._entries: tuple[tuple[Subscription, CallbackT], ...] = ()
        reset_after_fork(self._after_fork)

    def add(self, callback: CallbackT) -> Subscription:
        """Register ``callback``; return its handle.

        Raises:
            TypeError: ``callback`` is not callable.
            MemwardenError: (or the configured ``error``) the list is full.
        """
        if not callable(callback):
            raise TypeError(f"{self.what}: callback must be callable, got {callback!r}")
        sub = Subscription(self)
        with self._lock:
            if len(self._entries) >= self._limit:
                msg = (
                    f"{self.what}: {len(self._entries)} subscriptions already "
                    f"(limit {self._limit}); unsubscribe handles you no longer need"
                )
                if self._error is not None:
                    raise self._error(msg)
                from memwarden.exceptions import MemwardenError

                raise MemwardenError(msg)
            self._entries = (*self._entries, (sub, callback))
        return sub

    def snapshot(self) -> tuple[CallbackT, ...]:
        """The callbacks registered now, in subscription order."""
        return tuple(cb for _, cb in self._entries)

    def clear(self) -> None:
        """Remove every callback (their handles become inactive)."""
        with self._lock:
            self._entries = ()

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def _holds(self, sub: Subscription) -> bool:
        return any(s is sub for s, _ in self._entries)

    def _discard(self, sub: Subscription) -> None:
        with self._lock:
            self._entries = tuple(e for e in self._entries if e[0] is not sub)

    def _after_fork(self) -> None:
        # Another thread may have held the lock at fork time; the entries stay.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Subscribers {self.what} n={len(self._entries)}>"


# ---------------------------------------------------------------------------
# fork safety

_fork_callbacks: dict[int, Callable[[], Callable[[], None] | None]] = {}
_fork_order = itertools.count()
_fork_lock = threading.Lock()


def reset_after_fork(callback: Callable[[], None]) -> Subscription:
    """Run ``callback()`` in every child this process forks (before the child's own code).

    A bound method is held through :class:`weakref.WeakMethod`, so an object may register
    its own reset method in ``__init__`` and still be collected; a plain function (or the
    method of an object that cannot be weakly referenced) is held strongly. Callbacks run
    in registration order (lower layers register first, as they are imported first); one
    that raises is logged and the others still run.

    Typical use: replace locks another thread may have held at fork time, forget threads
    (they do not exist in the child), reopen per-process files.

    Returns:
        A handle whose ``unsubscribe()`` stops the callback from running in later forks.
    """
    order = next(_fork_order)
    get: Callable[[], Callable[[], None] | None]
    try:
        weak = isinstance(callback, MethodType) and weakref.ref(callback.__self__) is not None
    except TypeError:  # an object without __weakref__: held strongly, like a function
        weak = False
    if weak:
        get = weakref.WeakMethod(callback, lambda _ref: _fork_callbacks.pop(order, None))
    else:

        def get() -> Callable[[], None]:
            return callback

    # dict assignment is atomic under the GIL; the lock orders concurrent registrations.
    with _fork_lock:
        _fork_callbacks[order] = get
    return _ForkSubscription(order)


class _ForkSubscription(Subscription):
    __slots__ = ("_order",)

    def __init__(self, order: int) -> None:
        super().__init__()
        self._order: int | None = order

    @property
    def active(self) -> bool:
        return self._order is not None and self._order in _fork_callbacks

    def unsubscribe(self) -> None:
        order, self._order = self._order, None
        if order is not None:
            _fork_callbacks.pop(order, None)

    close = unsubscribe
    dispose = unsubscribe


def _run_fork_callbacks() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()
    for order in sorted(_fork_callbacks):
        get = _fork_callbacks.get(order)
        fn = get() if get is not None else None
        if fn is None:
            continue
        try:
            fn()
        except Exception:  # one broken reset must not break the child
            log.exception("memwarden: after-fork reset %r failed in the child", fn)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_run_fork_callbacks)
