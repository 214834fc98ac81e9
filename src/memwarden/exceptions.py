"""The exception and warning tree every memwarden module raises from (all of it, here).

Each error subclasses the builtin a caller would already catch (``ValueError``,
``MemoryError``, ``TimeoutError``, ``RuntimeError``) so memwarden can be adopted
without rewriting ``except`` clauses, and each is raised only for what its name
says: ``ConfigurationError`` for a bad argument or setting (never for a runtime
condition), ``PoolExhaustedError`` for a pool's lending bound, ``RegistryFullError``
for a bounded registry that is full.

::

    MemwardenError(Exception)
    ├── ConfigurationError(ValueError)
    ├── MemoryBudgetExceededError(MemoryError)
    ├── PressureTimeoutError(TimeoutError)
    ├── PoolExhaustedError
    ├── RegistryFullError
    ├── DisposedError(RuntimeError)
    ├── DisposalError(ExceptionGroup)      (Python 3.11+; a plain MemwardenError on 3.10)
    ├── ItemTooLargeError(ValueError)
    ├── LineTooLongError(ValueError)
    ├── TraceFormatError(ValueError)
    └── CommandError                       (carries exit_code; CLI only)
    MemwardenWarning(UserWarning)
    ├── MemoryPressureWarning
    ├── UndisposedResourceWarning(ResourceWarning)
    └── MaxListenersExceededWarning
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CommandError",
    "ConfigurationError",
    "DisposalError",
    "DisposedError",
    "ItemTooLargeError",
    "LineTooLongError",
    "MaxListenersExceededWarning",
    "MemoryBudgetExceededError",
    "MemoryPressureWarning",
    "MemwardenError",
    "MemwardenWarning",
    "PoolExhaustedError",
    "PressureTimeoutError",
    "RegistryFullError",
    "TraceFormatError",
    "UndisposedResourceWarning",
    "UnsafePathError",
]


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Unpickle a memwarden error without calling ``__init__`` (see ``__reduce__``)."""
    try:
        err = cls.__new__(cls, *args)
    except TypeError:
        # `cls.__new__` can resolve to a builtin base's __new__ (MemoryError's) that
        # CPython refuses for this subclass; its own inherited slot is BaseException's.
        err = BaseException.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class MemwardenError(Exception):
    """Base class of every error memwarden raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickling calls cls(*self.args), which fails for errors whose
        # __init__ takes required keyword arguments (peak_bytes=, limit_bytes=, ...):
        # rebuild from args and the attributes instead, so errors cross process
        # boundaries (multiprocessing, Dask, pytest-xdist) intact.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class ConfigurationError(MemwardenError, ValueError):
    """A size, threshold, path or setting is invalid; the message names the value and its source."""

    def __init__(self, message: str, *, value: object = None, source: str | None = None) -> None:
        super().__init__(message)
        self.value = value
        self.source = source


class MemoryBudgetExceededError(MemwardenError, MemoryError):
    """A block of code used more memory than its budget allowed.

    Attributes:
        peak_bytes: the peak measured inside the block.
        limit_bytes: the budget.
        top_sites: ``(where, size_bytes)`` pairs of the largest allocation sites, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        peak_bytes: int,
        limit_bytes: int,
        top_sites: Sequence[tuple[str, int]] = (),
    ) -> None:
        super().__init__(message)
        self.peak_bytes = peak_bytes
        self.limit_bytes = limit_bytes
        self.top_sites = list(top_sites)


class PressureTimeoutError(MemwardenError, TimeoutError):
    """Memory pressure did not end within the time allowed."""

    def __init__(self, message: str, *, waited_s: float = 0.0, level: Any = None) -> None:
        super().__init__(message)
        self.waited_s = waited_s
        self.level = level


class PoolExhaustedError(MemwardenError):
    """A pool cannot hand out another resource without breaking its bound."""


class RegistryFullError(MemwardenError):
    """A bounded registry (tracked resources, callbacks) is full.

    Every registry in memwarden has a bound, because one that only grows is itself a
    leak; reaching it usually means registrations are added and never removed.
    """


class DisposedError(MemwardenError, RuntimeError):
    """An object was used after ``dispose()``."""


if sys.version_info >= (3, 11):

    class DisposalError(ExceptionGroup, MemwardenError):  # noqa: F821
        """Several disposers failed; ``exceptions`` holds every failure, in disposal order.

        On Python 3.11+ this is an ``ExceptionGroup`` (so ``except*`` works) and a
        ``MemwardenError``. Raised by ``memwarden.dispose`` (which re-exports it).
        """

        def derive(self, excs: Sequence[Exception]) -> DisposalError:  # type: ignore[override]
            return DisposalError(self.message, excs)

else:  # pragma: no cover - exercised on 3.10 only

    class DisposalError(MemwardenError):
        """Several disposers failed; ``exceptions`` holds every failure, in disposal order."""

        def __init__(self, message: str, exceptions: Sequence[BaseException]) -> None:
            super().__init__(f"{message} ({len(exceptions)} sub-exceptions)")
            self.message = message
            self.exceptions = tuple(exceptions)


class ItemTooLargeError(MemwardenError, ValueError):
    """A value is larger than the cache's whole byte bound, so it cannot be stored.

    A ``ValueError``, as cachetools raises, so ``cached`` and existing code that
    catches "value too large" keep working. Raised by ``memwarden.cache`` (which
    re-exports it).

    Attributes:
        size_bytes: the value's size.
        max_bytes: the cache's bound.
    """

    def __init__(self, message: str, *, size_bytes: int, max_bytes: int) -> None:
        super().__init__(message)
        self.size_bytes = size_bytes
        self.max_bytes = max_bytes


class LineTooLongError(MemwardenError, ValueError):
    """A line is longer than ``max_line_bytes``; raised instead of growing without bound.

    Raised by ``memwarden.stream`` (which re-exports it).

    Attributes:
        line_number: the 1-based number of the offending line.
        limit_bytes: the bound that was exceeded.
        seen_bytes: how many bytes of the line had been read when the bound was hit.
    """

    def __init__(
        self, message: str, *, line_number: int, limit_bytes: int, seen_bytes: int
    ) -> None:
        super().__init__(message)
        self.line_number = line_number
        self.limit_bytes = limit_bytes
        self.seen_bytes = seen_bytes


class TraceFormatError(MemwardenError, ValueError):
    """A trace file is not a readable ``memwarden.trace/1`` file; the message names the line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class UnsafePathError(MemwardenError, OSError):
    """memwarden refused a path it would write: a planted symlink, a file or shared
    directory owned by another user, or a directory anyone may write to."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class CommandError(MemwardenError):
    """A CLI command failed; carries the process exit code (CLI only)."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class MemwardenWarning(UserWarning):
    """Base class of memwarden's warnings."""


class MemoryPressureWarning(MemwardenWarning):
    """Memory use crossed a warning threshold or a budget in ``warn`` mode."""


class UndisposedResourceWarning(MemwardenWarning, ResourceWarning):
    """A disposable resource was garbage-collected without ``dispose()``."""


class MaxListenersExceededWarning(MemwardenWarning):
    """More listeners than ``max_listeners`` were added for one event: likely a listener leak.

    Warned by ``memwarden.dispose.EventEmitter`` (which re-exports it).
    """
