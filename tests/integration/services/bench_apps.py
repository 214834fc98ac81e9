"""Hello-world WSGI apps for the services bench (bare and with the middleware)."""

from __future__ import annotations

from typing import Any

from memwarden.integrations.wsgi import MemwardenMiddleware


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer 200 "hello"."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


hello_governed = MemwardenMiddleware(hello)
