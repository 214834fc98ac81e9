"""WSGI/ASGI middleware: per-route accounting, bounded labels, recycling hook, exporters."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from memwarden.integrations._requests import OTHER, RequestMeter, prometheus_families
from memwarden.integrations.asgi import MemwardenMiddleware as AsgiMiddleware
from memwarden.integrations.asgi import route_of_scope
from memwarden.integrations.recycle import RecycleGate, Recycler
from memwarden.integrations.wsgi import MemwardenMiddleware, default_route

MiB = 1 << 20


class Probe:
    def __init__(self) -> None:
        self.value = 10 * MiB

    def __call__(self) -> int:
        return self.value


def _wsgi_app(probe: Probe, grow: int) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        probe.value += grow
        start_response("200 OK", [])
        return [b"ok"]

    return app


def _call(app: Any, path: str, method: str = "GET") -> tuple[list[bytes], list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen.extend(headers)

    body = app({"REQUEST_METHOD": method, "PATH_INFO": path}, start_response)
    out = list(body)
    body.close()
    return out, seen


def test_wsgi_records_rss_change_per_route() -> None:
    """Each request's RSS change lands in its route's histogram and sum."""
    probe = Probe()
    meter = RequestMeter(probe=probe, governor=None)
    mw = MemwardenMiddleware(_wsgi_app(probe, 3 * MiB), meter=meter)
    for _ in range(4):
        _call(mw, "/users/1")
    _call(mw, "/health")
    routes = {r.route: r for r in meter.routes()}
    assert routes["GET /users"].requests == 4
    assert routes["GET /users"].rss_delta_sum_bytes == 12 * MiB
    assert routes["GET /health"].requests == 1
    assert sum(routes["GET /users"].rss_delta_buckets) == 4
    assert meter.routes()[0].route == "GET /users"  # most growth first


def test_route_labels_are_bounded() -> None:
    """Past ``max_routes`` distinct templates, requests count as "other"."""
    probe = Probe()
    meter = RequestMeter(probe=probe, governor=None, max_routes=3)
    mw = MemwardenMiddleware(_wsgi_app(probe, 0), meter=meter)
    for i in range(50):
        _call(mw, f"/r{i}/x")
    routes = {r.route: r.requests for r in meter.routes()}
    assert len(routes) == 4
    assert routes[OTHER] == 47


def test_framework_route_templates_win_over_the_path() -> None:
    """A helper-set ``memwarden.route`` is the label; raw ids never become labels."""
    assert (
        default_route({"memwarden.route": "GET /users/<id>", "PATH_INFO": "/users/7"})
        == "GET /users/<id>"
    )
    assert default_route({"REQUEST_METHOD": "POST", "PATH_INFO": "/"}) == OTHER


def test_debug_header_carries_the_rss_change() -> None:
    probe = Probe()
    mw = MemwardenMiddleware(
        _wsgi_app(probe, 2 * MiB), meter=RequestMeter(probe=probe, governor=None, header="X-Rss")
    )
    _, headers = _call(mw, "/a")
    assert ("X-Rss", str(2 * MiB)) in headers


def test_a_failing_app_is_still_accounted() -> None:
    """An exception in the app propagates, and the request still counts."""
    meter = RequestMeter(governor=None)

    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    mw = MemwardenMiddleware(broken, meter=meter)
    with pytest.raises(RuntimeError, match="boom"):
        _call(mw, "/x")
    assert meter.routes()[0].requests == 1


def test_wsgi_recycles_after_the_response_when_over_the_line(tmp_path: Path) -> None:
    """Over the line, the recycle hook runs once the body is closed, not before."""
    probe = Probe()
    recycler = Recycler("50 MiB", gate=RecycleGate("w", lock_dir=tmp_path, cooldown_s=0),
                        probe=probe, governor=None, min_uptime_s=0)  # fmt: skip
    calls: list[str] = []
    mw = MemwardenMiddleware(_wsgi_app(probe, 30 * MiB), recycle=recycler,
                             meter=RequestMeter(probe=probe, governor=None),
                             on_recycle=lambda: calls.append("recycle"))  # fmt: skip
    _call(mw, "/a")
    assert calls == []
    _call(mw, "/a")
    assert calls == ["recycle"]
    assert mw.meter.recycles == 1


def test_flask_helper_labels_by_url_rule() -> None:
    """Flask's URL rule (not the raw path) becomes the route label."""
    flask = pytest.importorskip("flask")
    app = flask.Flask("t")

    @app.route("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return str(item_id)

    from memwarden.integrations.wsgi import init_flask

    mw = init_flask(app)
    client = app.test_client()
    assert client.get("/items/5", buffered=True).status_code == 200
    assert client.get("/items/6", buffered=True).status_code == 200
    assert [r.route for r in mw.meter.routes()] == ["GET /items/<int:item_id>"]


def test_asgi_attributes_concurrent_requests_per_route() -> None:
    """Concurrent asyncio requests are each counted under their own route."""
    probe = Probe()
    meter = RequestMeter(probe=probe, governor=None)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = AsgiMiddleware(app, meter=meter)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def main() -> None:
        await asyncio.gather(*(
            mw({"type": "http", "method": "GET", "path": f"/p{i % 3}/x"}, receive, send)
            for i in range(30)
        ))  # fmt: skip

    asyncio.run(main())
    assert {r.route: r.requests for r in meter.routes()} == {
        "GET /p0": 10,
        "GET /p1": 10,
        "GET /p2": 10,
    }
    assert sum(1 for m in sent if m["type"] == "http.response.start") == 30


@pytest.mark.skipif(importlib.util.find_spec("starlette") is None, reason="starlette not installed")
def test_starlette_route_templates() -> None:
    """Under Starlette the matched route's template is the label."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def user(request: Any) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["uid"])

    app = Starlette(routes=[Route("/users/{uid}", user)])
    meter = RequestMeter(governor=None)
    app.add_middleware(AsgiMiddleware, meter=meter)
    with TestClient(app) as client:
        assert client.get("/users/1").text == "1"
        assert client.get("/users/2").status_code == 200
    assert [r.route for r in meter.routes()] == ["GET /users/{uid}"]


def test_route_of_scope_falls_back_to_the_first_segment() -> None:
    assert route_of_scope({"method": "PUT", "path": "/a/b/c"}) == "PUT /a"
    assert route_of_scope({"method": "GET", "path": "/", "memwarden.route": "x"}) == "x"


def test_prometheus_families_expose_the_histograms() -> None:
    """The collector's request families are real histograms with cumulative buckets."""
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, generate_latest

    probe = Probe()
    meter = RequestMeter(probe=probe, governor=None)
    mw = MemwardenMiddleware(_wsgi_app(probe, 2 * MiB), meter=meter)
    for _ in range(3):
        _call(mw, "/prom")

    class Collector:
        def collect(self) -> Any:
            return prometheus_families()

    reg = CollectorRegistry()
    reg.register(Collector())  # type: ignore[arg-type]
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(reg).decode()
    samples = {
        (s.name, s.labels.get("le"), s.labels.get("route")): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    prom = "GET /prom"
    assert samples[("memwarden_request_rss_delta_bytes_bucket", "1048576", prom)] == 0
    assert samples[("memwarden_request_rss_delta_bytes_bucket", "4194304", prom)] == 3
    assert samples[("memwarden_request_rss_delta_bytes_sum", None, prom)] == 6 * MiB
    assert ("memwarden_worker_recycles_total", None, None) in samples
    del meter, mw


def test_allocations_are_attributed_per_route_by_the_profilers_tags() -> None:
    """With the sampling profiler running, each route's requests' allocations are its own."""
    from memwarden import profiler

    if profiler.is_running():
        pytest.skip("the profiler is already running in this process")
    kept: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        size = 4 * MiB if environ["PATH_INFO"].startswith("/big") else 16 * 1024
        kept.append(bytes(size))
        start_response("200 OK", [])
        return [b"ok"]

    meter = RequestMeter(governor=None)
    mw = MemwardenMiddleware(app, meter=meter)
    profiler.start(interval_bytes=64 * 1024)
    try:
        for i in range(20):
            _call(mw, f"/big/{i}")
            _call(mw, f"/small/{i}")
        allocated = meter.allocated_by_route()
    finally:
        profiler.stop()
    assert allocated["GET /big"] == pytest.approx(80 * MiB, rel=0.25)
    assert allocated.get("GET /small", 0) < 4 * MiB
