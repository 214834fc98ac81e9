"""ASGI middleware: per-route request memory under asyncio concurrency, and graceful recycling.

    from memwarden.integrations.asgi import MemwardenMiddleware
    app = MemwardenMiddleware(app, recycle=True)          # any ASGI app
    starlette_app.add_middleware(MemwardenMiddleware)       # Starlette / FastAPI

Route templates come from ``scope["route"]`` (Starlette and FastAPI set it to the
matched route, whose ``path`` is the template) or ``scope["memwarden.route"]``; otherwise
the method and first path segment stand in, bounded by ``max_routes``. Each request runs
under the sampling profiler's context tag (a :mod:`contextvars` variable, so concurrent
requests on one event loop are attributed apart).

With ``recycle=True``, a worker over its recycle line after relief sends itself
``SIGTERM`` when the response is complete: uvicorn (alone or as gunicorn's worker class)
then stops accepting, finishes the requests in flight and exits, and its process manager
starts a replacement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from memwarden.integrations._requests import OTHER, RequestMeter
from memwarden.integrations.recycle import Recycler
from memwarden.integrations.wsgi import _stop_gracefully

__all__ = ["MemwardenMiddleware", "route_of_scope"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def route_of_scope(scope: Scope) -> str:
    """The route template of a finished request's scope (see the module docstring)."""
    method = scope.get("method", "GET")
    route = scope.get("route")
    path_format = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(path_format, str):
        return f"{method} {path_format}"
    named = scope.get("memwarden.route")
    if isinstance(named, str):
        return named
    path = scope.get("path") or "/"
    first = path.split("/", 2)[1] if path.startswith("/") else ""
    return f"{method} /{first}" if first else OTHER


class MemwardenMiddleware:
    """Wrap an ASGI app with per-route memory accounting and optional recycling.

    Args:
        app: the ASGI application.
        recycle: ``True`` for a default :class:`Recycler`, a recycler, or False.
        header: add the request's RSS change (at response start) in this header.
        meter: share a :class:`RequestMeter` (default: a new one).
        on_recycle: called instead of sending ``SIGTERM`` to this process.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        recycle: bool | Recycler = False,
        header: str | None = None,
        meter: RequestMeter | None = None,
        on_recycle: Callable[[], None] = _stop_gracefully,
    ) -> None:
        self.app = app
        recycler = Recycler() if recycle is True else (recycle or None)
        self.meter = meter if meter is not None else RequestMeter(recycler=recycler, header=header)
        if meter is not None and recycler is not None:
            meter.recycler = recycler
        self._on_recycle = on_recycle
        self._header = header.lower().encode("latin-1") if header else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        meter = self.meter
        req = meter.begin()
        header = self._header
        send_inner = send
        if header is not None:

            async def send_with_header(message: Message) -> None:
                if message.get("type") == "http.response.start":
                    delta = str(meter._probe() - req.rss_bytes).encode("latin-1")
                    message["headers"] = [*message.get("headers", ()), (header, delta)]
                await send(message)

            send_inner = send_with_header
        try:
            if meter.profiling:
                with meter.tagged(lambda: route_of_scope(scope)):
                    await self.app(scope, receive, send_inner)
            else:
                await self.app(scope, receive, send_inner)
        finally:
            recycle = meter.end(req, route_of_scope(scope), wait=False)
            recycler = meter.recycler
            if not recycle and recycler is not None and meter.last_decision_waiting:
                # Over the line, not our turn yet: pause this worker's intake without
                # blocking the event loop, until the gate is ours or wait_s has passed.
                import asyncio
                import time

                deadline = time.monotonic() + recycler.wait_s
                decision = recycler.after_unit(wait=False)
                while decision.waiting and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                    decision = recycler.after_unit(wait=False)
                recycle = decision.recycle
            if recycle:
                self._on_recycle()
