"""gunicorn server hooks: graceful memory recycling for sync and gthread workers.

One line in ``gunicorn.conf.py`` (or ``-c python:memwarden.integrations.gunicorn``)::

    from memwarden.integrations.gunicorn import post_fork, post_request  # noqa: F401

``post_fork`` gives each worker a :class:`~memwarden.integrations.recycle.Recycler`
(line from ``MEMWARDEN_RECYCLE_LINE``, else the budget's critical line; the gate is
shared by the arbiter's workers); ``post_request`` asks it after every request and,
when the worker should recycle, sets ``worker.alive = False``: the worker finishes the
request in hand (gthread: every request in flight), stops accepting and exits, and the
arbiter starts a replacement — what ``max_requests`` does, but driven by memory. For
uvicorn's worker class, which does not call these hooks, wrap the ASGI app in
:class:`memwarden.integrations.asgi.MemwardenMiddleware` with ``recycle=True``.
"""

from __future__ import annotations

import os
from typing import Any

from memwarden.integrations.recycle import Recycler

__all__ = ["RECYCLE_LINE_ENV", "make_recycler", "post_fork", "post_request"]

#: Environment variable for the recycle line (a size such as ``"150 MiB"``).
RECYCLE_LINE_ENV = "MEMWARDEN_RECYCLE_LINE"


def make_recycler() -> Recycler:
    """A recycler for a server worker: the line from :data:`RECYCLE_LINE_ENV` or the budget."""
    line = os.environ.get(RECYCLE_LINE_ENV) or None
    return Recycler(line)


def post_fork(server: Any, worker: Any) -> None:
    """gunicorn ``post_fork`` hook: give the new worker its recycler."""
    worker.memwarden_recycler = make_recycler()


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """gunicorn ``post_request`` hook: recycle gracefully when memory stays over the line."""
    recycler: Recycler | None = getattr(worker, "memwarden_recycler", None)
    if recycler is None:
        recycler = worker.memwarden_recycler = make_recycler()
    decision = recycler.after_unit()
    if decision.recycle and worker.alive:
        worker.log.info("memwarden: recycling worker %s: %s", worker.pid, decision.reason)
        worker.alive = False
