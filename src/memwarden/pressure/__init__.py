"""The governor: one process-wide memory-pressure signal and the relief run under it.

The :class:`Governor` (also exported as :class:`PressureDetector`) turns memory facts
into a :class:`PressureLevel`. Each fact is one input (:mod:`._inputs`): usage against the
budget (RSS, or a monitor's samples), the cgroup's working set against the cgroup limit
(where page cache counts), PSI ``some avg10``, rising ``memory.events`` counts, and
kernel notifications (PSI triggers, cgroup v1 events) the watcher waits on. The level is
the highest input; pressure starts at ``pressure_threshold`` and ends only below
``release_threshold`` (see :mod:`memwarden.levels` for the one scale and its lines).

Under pressure the governor runs the registered relievers in priority order until the
level drops: caches shrink (:data:`PRIORITY_CACHE`), pools trim (:data:`PRIORITY_POOL`),
then ``gc.collect()`` (:data:`PRIORITY_GC`) and glibc ``malloc_trim(0)``
(:data:`PRIORITY_MALLOC_TRIM`). Each run is recorded. Producers wait with
:meth:`Governor.wait_for_relief`, whose timeout holds whatever relievers do.

Registering is cheap (no thread, no psutil): :func:`register_reliever` creates the
process-wide governor object lazily; watching starts only with :meth:`Governor.start`.
Components take ``governor=``: :data:`DEFAULT` (the process-wide governor, see
:func:`resolve_governor`) or None.
"""

from memwarden._registry import DEFAULT, MAX_SUBSCRIBERS, Subscription
from memwarden.levels import PressureLevel, Thresholds
from memwarden.pressure._governor import (
    DEFAULT_HISTORY_SIZE,
    Governor,
    GovernorStats,
    PressureDetector,
    SignalStats,
    _reset_default_for_tests,
    governor,
    register_reliever,
    resolve_governor,
    try_register_reliever,
)
from memwarden.pressure._relief import (
    MAX_RELIEVERS,
    PRIORITY_CACHE,
    PRIORITY_GC,
    PRIORITY_MALLOC_TRIM,
    PRIORITY_POOL,
    ReliefRegistration,
    ReliefRun,
    ReliefStep,
    malloc_trim,
)

PressureSubscription = Subscription
"""The old name of the handle :meth:`Governor.on_pressure` returns."""

__all__ = [
    "DEFAULT",
    "DEFAULT_HISTORY_SIZE",
    "MAX_RELIEVERS",
    "MAX_SUBSCRIBERS",
    "PRIORITY_CACHE",
    "PRIORITY_GC",
    "PRIORITY_MALLOC_TRIM",
    "PRIORITY_POOL",
    "Governor",
    "GovernorStats",
    "PressureDetector",
    "PressureLevel",
    "PressureSubscription",
    "ReliefRegistration",
    "ReliefRun",
    "ReliefStep",
    "SignalStats",
    "Subscription",
    "Thresholds",
    "_reset_default_for_tests",
    "governor",
    "malloc_trim",
    "register_reliever",
    "resolve_governor",
    "try_register_reliever",
]
