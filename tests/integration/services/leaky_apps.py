"""Small leaking applications the real-server tests serve (each request keeps LEAK_BYTES)."""

from __future__ import annotations

import os
from typing import Any

LEAK_BYTES = int(os.environ.get("LEAK_BYTES", str(256 * 1024)))
_kept: list[bytes] = []


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Keep LEAK_BYTES per request, answer 200 with the worker's pid."""
    _kept.append(os.urandom(16) * (LEAK_BYTES // 16))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI twin of :func:`wsgi_app`."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    _kept.append(os.urandom(16) * (LEAK_BYTES // 16))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


def governed_asgi() -> Any:
    """The ASGI app wrapped for recycling (uvicorn's ``--factory`` entry point)."""
    from memwarden.integrations.asgi import MemwardenMiddleware
    from memwarden.integrations.recycle import Recycler

    return MemwardenMiddleware(asgi_app, recycle=Recycler(os.environ["MEMWARDEN_RECYCLE_LINE"]))
