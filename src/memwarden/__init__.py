"""memwarden keeps Python programs inside their memory budget.

Measure (``rss``, ``snapshot``, ``track``), monitor (``MemoryMonitor``), limit
(``memory_budget``, ``effective_limit``), relieve (``governor``), test
(``check_leaks`` and the pytest plugin) and the playbook's patterns (pools,
caches, streams, adaptive batches, disposal).

``import memwarden`` is cheap: names load from their modules on first use, and no
third-party package (psutil, click, rich, prometheus_client, …) is imported.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> defining module. Generated from one table; every entry is in __all__
# (tests/unit/test_import_cost.py checks they load).
_EXPORTS: dict[str, str] = {
    "AdaptiveBatchProcessor": "memwarden.batch",
    "AsyncDisposableStack": "memwarden.dispose",
    "BufferPool": "memwarden.pool",
    "CachedMethod": "memwarden.cache",
    "CommandError": "memwarden.exceptions",
    "ConfigurationError": "memwarden.exceptions",
    "DisposableBase": "memwarden.dispose",
    "DisposableStack": "memwarden.dispose",
    "DisposedError": "memwarden.exceptions",
    "EventEmitter": "memwarden.dispose",
    "Governor": "memwarden.pressure",
    "HeapSession": "memwarden.heap",
    "IncrementalEngine": "memwarden.incremental",
    "ItemTooLargeError": "memwarden.exceptions",
    "LRUCache": "memwarden.cache",
    "LeakDetector": "memwarden.leaks",
    "LeakReport": "memwarden.leaks",
    "Level": "memwarden.monitoring",
    "LineTooLongError": "memwarden.exceptions",
    "MemoryBudgetExceededError": "memwarden.exceptions",
    "MemoryConfig": "memwarden.config",
    "MemoryDelta": "memwarden.snapshots",
    "MemoryLimit": "memwarden.probes",
    "MemoryMonitor": "memwarden.monitoring",
    "MemoryPressureWarning": "memwarden.exceptions",
    "MemorySnapshot": "memwarden.snapshots",
    "MemwardenError": "memwarden.exceptions",
    "MemwardenWarning": "memwarden.exceptions",
    "ObjectPool": "memwarden.pool",
    "OperationStats": "memwarden.monitoring",
    "Pipeline": "memwarden.stream",
    "PoolExhaustedError": "memwarden.exceptions",
    "PressureDetector": "memwarden.pressure",
    "PressureLevel": "memwarden.pressure",
    "PressureTimeoutError": "memwarden.exceptions",
    "RegistryFullError": "memwarden.exceptions",
    "ResourceManager": "memwarden.dispose",
    "TraceFormatError": "memwarden.exceptions",
    "UndisposedResourceWarning": "memwarden.exceptions",
    "WeakCache": "memwarden.cache",
    "assert_collected": "memwarden.leaks",
    "assert_no_leaks": "memwarden.testing",
    "async_iter_lines": "memwarden.stream",
    "async_read_chunks": "memwarden.stream",
    "available_memory": "memwarden.probes",
    "cached": "memwarden.cache",
    "cached_method": "memwarden.cache",
    "cgroup_usage": "memwarden.probes",
    "check_leaks": "memwarden.leaks",
    "check_leaks_async": "memwarden.leaks",
    "effective_limit": "memwarden.probes",
    "format_size": "memwarden._units",
    "governor": "memwarden.pressure",
    "iter_lines": "memwarden.stream",
    "load_config": "memwarden.config",
    "memory_budget": "memwarden.budget",
    "memory_events": "memwarden.probes",
    "monitor": "memwarden.monitoring",
    "parse_size": "memwarden._units",
    "peak_rss": "memwarden.probes",
    "pressure_stall": "memwarden.probes",
    "process_limit": "memwarden.budget",
    "process_stream": "memwarden.stream",
    "read_chunks": "memwarden.stream",
    "register_reliever": "memwarden.pressure",
    "reset_peak_rss": "memwarden.probes",
    "rss": "memwarden.probes",
    "set_process_limit": "memwarden.budget",
    "sizeof": "memwarden.sizing",
    "snapshot": "memwarden.snapshots",
    "suspect_leak": "memwarden.leaks",
    "track": "memwarden.monitoring",
}

__all__ = [
    "AdaptiveBatchProcessor",
    "AsyncDisposableStack",
    "BufferPool",
    "CachedMethod",
    "CommandError",
    "ConfigurationError",
    "DisposableBase",
    "DisposableStack",
    "DisposedError",
    "EventEmitter",
    "Governor",
    "HeapSession",
    "IncrementalEngine",
    "ItemTooLargeError",
    "LRUCache",
    "LeakDetector",
    "LeakReport",
    "Level",
    "LineTooLongError",
    "MemoryBudgetExceededError",
    "MemoryConfig",
    "MemoryDelta",
    "MemoryLimit",
    "MemoryMonitor",
    "MemoryPressureWarning",
    "MemorySnapshot",
    "MemwardenError",
    "MemwardenWarning",
    "ObjectPool",
    "OperationStats",
    "Pipeline",
    "PoolExhaustedError",
    "PressureDetector",
    "PressureLevel",
    "PressureTimeoutError",
    "RegistryFullError",
    "ResourceManager",
    "TraceFormatError",
    "UndisposedResourceWarning",
    "WeakCache",
    "__version__",
    "assert_collected",
    "assert_no_leaks",
    "async_iter_lines",
    "async_read_chunks",
    "available_memory",
    "cached",
    "cached_method",
    "cgroup_usage",
    "check_leaks",
    "check_leaks_async",
    "effective_limit",
    "format_size",
    "governor",
    "iter_lines",
    "load_config",
    "memory_budget",
    "memory_events",
    "monitor",
    "parse_size",
    "peak_rss",
    "pressure_stall",
    "process_limit",
    "process_stream",
    "read_chunks",
    "register_reliever",
    "reset_peak_rss",
    "rss",
    "set_process_limit",
    "sizeof",
    "snapshot",
    "suspect_leak",
    "track",
]


if not TYPE_CHECKING:
    # Hidden from type checkers: a module-level __getattr__ returning Any would make a
    # misspelt `memwarden.rsss()` type-check. They see the explicit imports below.

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'memwarden' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext memwarden``: the ``%memwarden`` / ``%%memwarden`` magics (see docs/live.md)."""
    # Through importlib, as every export of this facade: the package imports no layer eagerly.
    importlib.import_module("memwarden.integrations.ipython").load_ipython_extension(ipython)


def _start_agent_from_environment() -> None:
    # Opt-in only (MEMWARDEN_AGENT=1): without it nothing is imported or started.
    import os

    if os.environ.get("MEMWARDEN_AGENT", "0") not in ("", "0"):
        importlib.import_module("memwarden.agent").start_from_environment()


_start_agent_from_environment()


# Module paths that moved, kept importable for one release with a DeprecationWarning:
# old dotted name -> the module that now defines its names. A module may not share its
# name with a function of the package (``memwarden.snapshot()``): importing a submodule
# rebinds the package attribute to the module. So the old path is no file here but an
# alias placed in sys.modules, which the import system returns as it is, without
# touching the package attribute: ``from memwarden.snapshot import MemorySnapshot``
# works and warns, and ``memwarden.snapshot`` stays the function in every import order.
_MOVED_MODULES: dict[str, str] = {
    "memwarden.monitor": "memwarden.monitoring",
    "memwarden.snapshot": "memwarden.snapshots",
}


def _moved_module(old: str, new: str) -> types.ModuleType:
    """A module object standing for ``old`` that forwards every name to ``new``, warning."""
    alias = types.ModuleType(old, f"Deprecated alias of {new}: import from {new} instead.")
    alias.__spec__ = ModuleSpec(old, None)

    def __getattr__(name: str) -> Any:
        if name.startswith("__") and name != "__all__":
            # Tools probe __path__, __file__, __wrapped__...: answer like a plain module.
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        what = "*" if name == "__all__" else name
        warnings.warn(
            f"{old} is deprecated and will be removed in the next release: "
            f"import {what} from {new} (or from memwarden) instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new), name)

    alias.__getattr__ = __getattr__  # type: ignore[method-assign]
    return alias


for _old, _new in _MOVED_MODULES.items():
    sys.modules.setdefault(_old, _moved_module(_old, _new))
del _old, _new


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from memwarden._units import (
        format_size as format_size,
    )
    from memwarden._units import (
        parse_size as parse_size,
    )
    from memwarden.batch import (
        AdaptiveBatchProcessor as AdaptiveBatchProcessor,
    )
    from memwarden.budget import (
        memory_budget as memory_budget,
    )
    from memwarden.budget import (
        process_limit as process_limit,
    )
    from memwarden.budget import (
        set_process_limit as set_process_limit,
    )
    from memwarden.cache import (
        CachedMethod as CachedMethod,
    )
    from memwarden.cache import (
        LRUCache as LRUCache,
    )
    from memwarden.cache import (
        WeakCache as WeakCache,
    )
    from memwarden.cache import (
        cached as cached,
    )
    from memwarden.cache import (
        cached_method as cached_method,
    )
    from memwarden.config import (
        MemoryConfig as MemoryConfig,
    )
    from memwarden.config import (
        load_config as load_config,
    )
    from memwarden.dispose import (
        AsyncDisposableStack as AsyncDisposableStack,
    )
    from memwarden.dispose import (
        DisposableBase as DisposableBase,
    )
    from memwarden.dispose import (
        DisposableStack as DisposableStack,
    )
    from memwarden.dispose import (
        EventEmitter as EventEmitter,
    )
    from memwarden.dispose import (
        ResourceManager as ResourceManager,
    )
    from memwarden.exceptions import (
        CommandError as CommandError,
    )
    from memwarden.exceptions import (
        ConfigurationError as ConfigurationError,
    )
    from memwarden.exceptions import (
        DisposedError as DisposedError,
    )
    from memwarden.exceptions import (
        ItemTooLargeError as ItemTooLargeError,
    )
    from memwarden.exceptions import (
        LineTooLongError as LineTooLongError,
    )
    from memwarden.exceptions import (
        MemoryBudgetExceededError as MemoryBudgetExceededError,
    )
    from memwarden.exceptions import (
        MemoryPressureWarning as MemoryPressureWarning,
    )
    from memwarden.exceptions import (
        MemwardenError as MemwardenError,
    )
    from memwarden.exceptions import (
        MemwardenWarning as MemwardenWarning,
    )
    from memwarden.exceptions import (
        PoolExhaustedError as PoolExhaustedError,
    )
    from memwarden.exceptions import (
        PressureTimeoutError as PressureTimeoutError,
    )
    from memwarden.exceptions import (
        RegistryFullError as RegistryFullError,
    )
    from memwarden.exceptions import (
        TraceFormatError as TraceFormatError,
    )
    from memwarden.exceptions import (
        UndisposedResourceWarning as UndisposedResourceWarning,
    )
    from memwarden.heap import (
        HeapSession as HeapSession,
    )
    from memwarden.incremental import (
        IncrementalEngine as IncrementalEngine,
    )
    from memwarden.leaks import (
        LeakDetector as LeakDetector,
    )
    from memwarden.leaks import (
        LeakReport as LeakReport,
    )
    from memwarden.leaks import (
        assert_collected as assert_collected,
    )
    from memwarden.leaks import (
        check_leaks as check_leaks,
    )
    from memwarden.leaks import (
        check_leaks_async as check_leaks_async,
    )
    from memwarden.leaks import (
        suspect_leak as suspect_leak,
    )
    from memwarden.monitoring import (
        Level as Level,
    )
    from memwarden.monitoring import (
        MemoryMonitor as MemoryMonitor,
    )
    from memwarden.monitoring import (
        OperationStats as OperationStats,
    )
    from memwarden.monitoring import (
        monitor as monitor,
    )
    from memwarden.monitoring import (
        track as track,
    )
    from memwarden.pool import (
        BufferPool as BufferPool,
    )
    from memwarden.pool import (
        ObjectPool as ObjectPool,
    )
    from memwarden.pressure import (
        Governor as Governor,
    )
    from memwarden.pressure import (
        PressureDetector as PressureDetector,
    )
    from memwarden.pressure import (
        PressureLevel as PressureLevel,
    )
    from memwarden.pressure import (
        governor as governor,
    )
    from memwarden.pressure import (
        register_reliever as register_reliever,
    )
    from memwarden.probes import (
        MemoryLimit as MemoryLimit,
    )
    from memwarden.probes import (
        available_memory as available_memory,
    )
    from memwarden.probes import (
        cgroup_usage as cgroup_usage,
    )
    from memwarden.probes import (
        effective_limit as effective_limit,
    )
    from memwarden.probes import (
        memory_events as memory_events,
    )
    from memwarden.probes import (
        peak_rss as peak_rss,
    )
    from memwarden.probes import (
        pressure_stall as pressure_stall,
    )
    from memwarden.probes import (
        reset_peak_rss as reset_peak_rss,
    )
    from memwarden.probes import (
        rss as rss,
    )
    from memwarden.sizing import (
        sizeof as sizeof,
    )
    from memwarden.snapshots import (
        MemoryDelta as MemoryDelta,
    )
    from memwarden.snapshots import (
        MemorySnapshot as MemorySnapshot,
    )
    from memwarden.snapshots import (
        snapshot as snapshot,
    )
    from memwarden.stream import (
        Pipeline as Pipeline,
    )
    from memwarden.stream import (
        async_iter_lines as async_iter_lines,
    )
    from memwarden.stream import (
        async_read_chunks as async_read_chunks,
    )
    from memwarden.stream import (
        iter_lines as iter_lines,
    )
    from memwarden.stream import (
        process_stream as process_stream,
    )
    from memwarden.stream import (
        read_chunks as read_chunks,
    )
    from memwarden.testing import (
        assert_no_leaks as assert_no_leaks,
    )
