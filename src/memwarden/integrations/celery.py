"""Celery: graceful memory recycling for the prefork, threads and solo pools.

One line where the Celery app is made::

    memwarden.integrations.celery.install(app)   # line: MEMWARDEN_RECYCLE_LINE, else the budget

It replaces ``worker_max_memory_per_child``, keeping what it does well and fixing what
users trip over:

- **prefork**: each pool process gets a :class:`~memwarden.integrations.recycle.Recycler`
  when it starts. After every task the governor's relief runs if the process is over its
  line; the process then leaves between tasks through billiard's own recycling path
  (the pool's ``max_memory_per_child`` check, so no task is ever cut short) and the pool
  forks a replacement. A replacement that *starts* above the line gets a raised line
  instead of being recycled after every task (logged once). billiard judges the
  process's peak RSS (``ru_maxrss``), as ``worker_max_memory_per_child`` does; pool
  processes recycle independently of each other.
- **threads and solo**: the worker process itself is over its line after relief: it
  takes the recycle gate (one worker of a host's group at a time) and starts Celery's
  *warm shutdown* (``SIGTERM``): tasks in progress finish, reserved ones go back to the
  broker, and the worker exits for its supervisor (systemd, Kubernetes, ``celery multi``)
  to restart.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from memwarden.integrations.recycle import RecycleGate, Recycler

__all__ = ["install"]

log = logging.getLogger("memwarden.integrations.celery")

RECYCLE_LINE_ENV = "MEMWARDEN_RECYCLE_LINE"


class _State:
    """What one process of a Celery worker knows (reset in every pool process)."""

    recycler: Recycler | None = None
    pool_child = False
    line: Any = None
    gate_name: str | None = None


def _make_recycler() -> Recycler:
    line = _State.line if _State.line is not None else (os.environ.get(RECYCLE_LINE_ENV) or None)
    gate = RecycleGate(_State.gate_name) if _State.gate_name else None
    return Recycler(line, gate=gate)


def _on_process_init(**_: Any) -> None:
    """A pool process starts: in a prefork child, arm billiard's per-task check with our line.

    The solo pool sends this signal in the worker's own process too; there the worker
    recycles by warm shutdown instead (see :func:`_on_task_postrun`).
    """
    try:
        from billiard.pool import Worker
        from billiard.process import current_process
    except ImportError:  # pragma: no cover - Celery always brings billiard
        return
    worker = getattr(current_process(), "_target", None)  # the pool's Worker: workloop() next
    if not isinstance(worker, Worker):
        return
    _State.pool_child = True
    recycler = _State.recycler = _make_recycler()
    worker.max_memory_per_child = max(1, recycler.effective_line() // 1024)


def _on_task_postrun(**_: Any) -> None:
    """After each task: relief in pool processes, warm shutdown for threads/solo workers."""
    recycler = _State.recycler
    if recycler is None:
        recycler = _State.recycler = _make_recycler()
    if _State.pool_child:
        # billiard checks the peak right after this; relief first lowers what follows.
        rss = recycler._probe()
        if rss >= recycler.effective_line():
            gov = recycler._governor()
            if gov is not None:
                gov.relieve(reason="over the recycle line")
        return
    decision = recycler.after_unit()
    if decision.recycle:
        log.warning("memwarden: warm shutdown of worker %d: %s", os.getpid(), decision.reason)
        os.kill(os.getpid(), signal.SIGTERM)


def install(app: Any, *, line: Any = None, gate_name: str | None = None) -> None:
    """Connect memwarden's recycling to the Celery ``app``'s worker signals.

    Args:
        app: the Celery application (its worker signals are process-wide; ``app`` is
            taken so the call reads naturally where the app is configured).
        line: the recycle line (a size); default ``MEMWARDEN_RECYCLE_LINE``, else the
            budget's critical line.
        gate_name: the recycle gate shared by threads/solo workers on this host that
            must not recycle together (default: per parent process).
    """
    from celery import signals

    del app
    _State.line = line
    _State.gate_name = gate_name
    signals.worker_process_init.connect(_on_process_init, weak=False)
    signals.task_postrun.connect(_on_task_postrun, weak=False)
