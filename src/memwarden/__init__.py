"""memwarden keeps Python programs inside their memory budget.

Measure (``rss``, ``snapshot``, ``track``), monitor (``MemoryMonitor``), limit
(``memory_budget``, ``effective_limit``), relieve (``governor``), and the
playbook's patterns (pools, caches, streams, adaptive batches, disposal).

``import memwarden`` is cheap: names load from their modules on first use, and no
third-party package (psutil, click, rich, prometheus_client, …) is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> defining module. Keep sorted by name; every entry is in __all__.
_EXPORTS: dict[str, str] = {
    "CommandError": "memwarden.exceptions",
    "ConfigurationError": "memwarden.exceptions",
    "DisposedError": "memwarden.exceptions",
    "MemoryBudgetExceededError": "memwarden.exceptions",
    "MemoryConfig": "memwarden.config",
    "MemoryLimit": "memwarden.probes",
    "MemoryPressureWarning": "memwarden.exceptions",
    "MemwardenError": "memwarden.exceptions",
    "MemwardenWarning": "memwarden.exceptions",
    "PoolExhaustedError": "memwarden.exceptions",
    "PressureTimeoutError": "memwarden.exceptions",
    "TraceFormatError": "memwarden.exceptions",
    "UndisposedResourceWarning": "memwarden.exceptions",
    "available_memory": "memwarden.probes",
    "cgroup_usage": "memwarden.probes",
    "effective_limit": "memwarden.probes",
    "format_size": "memwarden._units",
    "load_config": "memwarden.config",
    "memory_events": "memwarden.probes",
    "parse_size": "memwarden._units",
    "pressure_stall": "memwarden.probes",
    "rss": "memwarden.probes",
}

# Curated public names: _EXPORTS plus __version__ (a test keeps them in step).
__all__ = [
    "CommandError",
    "ConfigurationError",
    "DisposedError",
    "MemoryBudgetExceededError",
    "MemoryConfig",
    "MemoryLimit",
    "MemoryPressureWarning",
    "MemwardenError",
    "MemwardenWarning",
    "PoolExhaustedError",
    "PressureTimeoutError",
    "TraceFormatError",
    "UndisposedResourceWarning",
    "__version__",
    "available_memory",
    "cgroup_usage",
    "effective_limit",
    "format_size",
    "load_config",
    "memory_events",
    "parse_size",
    "pressure_stall",
    "rss",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'memwarden' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from memwarden._units import format_size, parse_size
    from memwarden.config import MemoryConfig, load_config
    from memwarden.exceptions import (
        CommandError,
        ConfigurationError,
        DisposedError,
        MemoryBudgetExceededError,
        MemoryPressureWarning,
        MemwardenError,
        MemwardenWarning,
        PoolExhaustedError,
        PressureTimeoutError,
        TraceFormatError,
        UndisposedResourceWarning,
    )
    from memwarden.probes import (
        MemoryLimit,
        available_memory,
        cgroup_usage,
        effective_limit,
        memory_events,
        pressure_stall,
        rss,
    )
