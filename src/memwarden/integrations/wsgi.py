"""WSGI middleware: per-route request memory, and graceful recycling of the worker.

    from memwarden.integrations.wsgi import MemwardenMiddleware
    app = MemwardenMiddleware(app, recycle=True)

Each request is timed by RSS (its change), attributed by the sampling profiler's context
tag (when the profiler runs) and counted per *route template*: the framework helpers set
``environ["memwarden.route"]`` (Flask: :func:`init_flask`; Django:
:class:`DjangoMiddleware`); otherwise the method and first path segment stand in, and past
``max_routes`` labels everything counts as ``"other"`` (bounded cardinality).

With ``recycle=True`` (or a :class:`~memwarden.integrations.recycle.Recycler`), a worker
over its recycle line after relief sends itself ``SIGTERM`` once the response is
finished: gunicorn's sync and gthread workers treat that as a graceful stop (no new
connections, in-flight requests finish, the arbiter starts a replacement).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from memwarden.integrations._requests import OTHER, RequestMeter
from memwarden.integrations.recycle import Recycler

__all__ = ["DjangoMiddleware", "MemwardenMiddleware", "default_route", "init_flask"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

ROUTE_KEY = "memwarden.route"


def default_route(environ: Environ) -> str:
    """``environ["memwarden.route"]`` if a framework helper set it, else ``METHOD /first``."""
    route = environ.get(ROUTE_KEY)
    if isinstance(route, str):
        return route
    path = environ.get("PATH_INFO") or "/"
    first = path.split("/", 2)[1] if path.startswith("/") else ""
    return f"{environ.get('REQUEST_METHOD', 'GET')} /{first}" if first else OTHER


def _stop_gracefully() -> None:
    # gunicorn workers (sync, gthread) and uvicorn stop accepting and drain on SIGTERM.
    os.kill(os.getpid(), signal.SIGTERM)


class _Closing:
    """The response iterable, accounting the request when the server closes it."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class MemwardenMiddleware:
    """Wrap a WSGI app with per-route memory accounting and optional recycling.

    Args:
        app: the WSGI application.
        route: maps the environ to a route template (called after the app ran, so
            framework helpers can fill it in); default :func:`default_route`.
        recycle: ``True`` for a default :class:`Recycler`, a recycler, or False.
        header: add the request's RSS change in this response header (debugging).
        meter: share a :class:`RequestMeter` (default: a new one).
        on_recycle: called instead of sending ``SIGTERM`` to this process (for servers
            that stop differently).
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        route: Callable[[Environ], str] = default_route,
        recycle: bool | Recycler = False,
        header: str | None = None,
        meter: RequestMeter | None = None,
        on_recycle: Callable[[], None] = _stop_gracefully,
    ) -> None:
        self.app = app
        self._route = route
        recycler = Recycler() if recycle is True else (recycle or None)
        self.meter = meter if meter is not None else RequestMeter(recycler=recycler, header=header)
        if meter is not None and recycler is not None:
            meter.recycler = recycler
        self._on_recycle = on_recycle

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        meter = self.meter
        req = meter.begin()
        header = meter.header

        def finish() -> None:
            if meter.end(req, self._route(environ)):
                self._on_recycle()

        if header is not None:
            inner_start = start_response

            def start_response(
                status: str, headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Any:
                # The RSS change so far: the body may still allocate while it streams.
                headers.append((header, str(meter._probe() - req.rss_bytes)))
                return inner_start(status, headers, exc_info)

        try:
            if meter.profiling:
                with meter.tagged(lambda: default_route(environ)):
                    body = self.app(environ, start_response)
            else:
                body = self.app(environ, start_response)
        except BaseException:
            finish()
            raise
        return _Closing(body, finish)


def init_flask(flask_app: Any, **kwargs: Any) -> MemwardenMiddleware:
    """Install the middleware on a Flask app, with Flask's URL rules as route templates.

    Returns the middleware (``flask_app.wsgi_app`` is replaced by it).
    """

    def note_route() -> None:
        from flask import request

        rule = request.url_rule
        if rule is not None:
            request.environ[ROUTE_KEY] = f"{request.method} {rule.rule}"

    flask_app.before_request(note_route)
    mw = MemwardenMiddleware(flask_app.wsgi_app, **kwargs)
    flask_app.wsgi_app = mw
    return mw


class DjangoMiddleware:
    """Django middleware (``MIDDLEWARE = ["memwarden.integrations.wsgi.DjangoMiddleware", ...]``).

    Route templates come from ``request.resolver_match.route``. Recycling is for the
    WSGI server's workers; configure it on :class:`MemwardenMiddleware` or the gunicorn
    hooks instead.
    """

    meter: RequestMeter | None = None

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        if DjangoMiddleware.meter is None:
            DjangoMiddleware.meter = RequestMeter()

    def __call__(self, request: Any) -> Any:
        meter = DjangoMiddleware.meter
        assert meter is not None
        req = meter.begin()
        try:
            return self.get_response(request)
        finally:
            match = getattr(request, "resolver_match", None)
            route = getattr(match, "route", None) if match is not None else None
            meter.end(req, f"{request.method} /{route}" if route else default_route(request.META))
