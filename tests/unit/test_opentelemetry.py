"""OpenTelemetry instruments, read through the SDK's InMemoryMetricReader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the 'otel' extra")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import memwarden.monitoring as monitor_mod
from memwarden.config import MemoryConfig
from memwarden.integrations.opentelemetry import INSTRUMENTS, instrument
from memwarden.monitoring import Level, MemoryMonitor, track
from tests.support.monitoring import FakeProbe

MAX = 10 * 2**30


@pytest.fixture
def mon() -> Iterator[MemoryMonitor]:
    """A monitor brought to WARNING then CRITICAL by a fake probe, with one operation."""
    probe = FakeProbe(values=[int(8.5 * 2**30), int(9.5 * 2**30)])
    m = MemoryMonitor(MemoryConfig(max_memory_bytes=MAX), probe=probe)
    m.sample_now()
    m.sample_now()
    with track("load", monitor=m):
        pass
    yield m
    m.close()


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    """name -> metric, from one collection."""
    data = reader.get_metrics_data()
    out: dict[str, Any] = {}
    if data is None:  # nothing observed at all
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "memwarden"
            for metric in sm.metrics:
                out[metric.name] = metric
    return out


def points(metric: Any) -> list[tuple[dict[str, Any], float]]:
    return [(dict(p.attributes or {}), p.value) for p in metric.data.data_points]


def test_semantic_convention_and_memwarden_instruments_report(mon: MemoryMonitor) -> None:
    """One collection reports process.memory.usage, gc counters, budget, level and operations."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        inst = instrument(provider, monitor=mon)
        metrics = collect(reader)
    finally:
        provider.shutdown()
    assert set(inst.instruments) == set(INSTRUMENTS)
    rss = points(metrics["process.memory.usage"])
    assert rss[0][1] > 2**20
    assert metrics["process.memory.usage"].unit == "By"
    assert points(metrics["memwarden.memory.limit"]) == [({}, MAX)]
    assert points(metrics["memwarden.monitor.level"]) == [({}, int(Level.CRITICAL))]
    changes = {
        a["memwarden.level"]: v for a, v in points(metrics["memwarden.monitor.level_changes"])
    }
    assert changes == {"ok": 0, "warning": 1, "critical": 1}
    assert points(metrics["memwarden.operation.calls"]) == [({"memwarden.operation": "load"}, 1)]
    assert points(metrics["memwarden.memory.peak"]) == [({}, int(9.5 * 2**30))]
    gens = {a["cpython.gc.generation"] for a, _ in points(metrics["cpython.gc.collections"])}
    assert gens == {0, 1, 2}
    assert metrics["cpython.gc.collections"].data.is_monotonic
    util = points(metrics["memwarden.memory.utilization"])[0][1]
    assert 0 < util < 1
    source = points(metrics["memwarden.memory.effective_limit"])[0][0]["memwarden.limit.source"]
    assert source


def test_closing_stops_the_observations(mon: MemoryMonitor) -> None:
    """After close() the instruments observe nothing more."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        inst = instrument(provider, monitor=mon)
        assert "process.memory.usage" in collect(reader)
        inst.close()
        after = collect(reader)
    finally:
        provider.shutdown()
    assert all(not points(m) for m in after.values())


def test_a_failing_source_is_logged_not_raised(
    mon: MemoryMonitor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe raising inside a callback is logged; the other instruments still report."""
    import memwarden.probes

    def broken() -> int:
        raise OSError("statm gone")

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        instrument(provider, monitor=mon)
        monkeypatch.setattr(memwarden.probes, "vms", broken)
        metrics = collect(reader)
    finally:
        provider.shutdown()
    assert "memwarden.memory.limit" in metrics
    virtual = metrics.get("process.memory.virtual")
    assert virtual is None or not points(virtual)
    assert any("statm gone" in (r.exc_text or "") for r in caplog.records)


def test_the_default_monitor_is_observed_when_none_is_given(
    mon: MemoryMonitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """instrument() without a monitor observes the process-wide default."""
    monkeypatch.setattr(monitor_mod, "_default", mon)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        inst = instrument(provider)
        assert inst.monitor is mon
        metrics = collect(reader)
    finally:
        provider.shutdown()
    assert points(metrics["memwarden.monitor.level"]) == [({}, int(Level.CRITICAL))]


def test_request_meters_report_per_route(mon: MemoryMonitor) -> None:
    """The middleware's per-route figures reach OpenTelemetry with an ``http.route`` attribute."""
    from memwarden.integrations._requests import RequestMeter

    value = [10 * 2**20]

    def probe() -> int:
        return value[0]

    meter = RequestMeter(probe=probe, governor=None)
    for _ in range(3):
        req = meter.begin()
        value[0] += 2**20
        meter.end(req, "GET /otel")
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        instrument(provider, monitor=mon)
        metrics = collect(reader)
    finally:
        provider.shutdown()
    count = {a["http.route"]: v for a, v in points(metrics["memwarden.request.count"])}
    delta = {a["http.route"]: v for a, v in points(metrics["memwarden.request.rss_delta"])}
    assert count["GET /otel"] == 3
    assert delta["GET /otel"] == 3 * 2**20
    del meter
