"""Prometheus exporter: real HTTP scrapes on 127.0.0.1, parsed with prometheus_client's parser."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client", reason="needs the 'prometheus' extra")

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import memwarden.monitoring as monitor_mod
from memwarden.config import MemoryConfig
from memwarden.exceptions import ConfigurationError
from memwarden.integrations.prometheus import METRICS, MemwardenCollector, expose, register
from memwarden.monitoring import Level, MemoryMonitor, track
from memwarden.probes import pressure_stall
from tests.support.monitoring import FakeProbe

MAX = 10 * 2**30


@pytest.fixture
def mon() -> Iterator[MemoryMonitor]:
    """A monitor driven to CRITICAL by a fake probe, with one tracked operation."""
    probe = FakeProbe(values=[100, int(8.5 * 2**30), int(9.5 * 2**30)])
    m = MemoryMonitor(MemoryConfig(max_memory_bytes=MAX), probe=probe)
    for _ in range(3):
        m.sample_now()
    with track("load", monitor=m):
        pass
    yield m
    m.close()


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """GET the URL and parse the exposition text into {sample name: [(labels, value)]}."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(
    metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    for lab, v in metrics[name]:
        if all(lab.get(k) == x for k, x in labels.items()):
            return v
    raise KeyError((name, labels))


def test_a_real_scrape_returns_the_metrics(mon: MemoryMonitor) -> None:
    """Scraping expose() over loopback HTTP returns the documented metrics with their values."""
    with expose(0, monitor=mon) as exporter:
        assert exporter.host == "127.0.0.1"
        assert exporter.port > 0
        m = scrape(exporter.url)
    for name in (
        "memwarden_rss_bytes",
        "memwarden_limit_bytes",
        "memwarden_usage_ratio",
        "memwarden_level",
        "memwarden_gc_collections_total",
        "memwarden_operation_peak_bytes",
        "memwarden_level_changes_total",
        "memwarden_warning_threshold_bytes",
        "memwarden_critical_threshold_bytes",
        "memwarden_effective_limit_bytes",
        "memwarden_monitor_samples_total",
    ):
        assert name in m, name
    assert value(m, "memwarden_limit_bytes") == MAX
    assert value(m, "memwarden_level") == Level.CRITICAL
    assert value(m, "memwarden_level_changes_total", level="critical") == 1
    assert value(m, "memwarden_level_changes_total", level="warning") == 1
    assert value(m, "memwarden_monitor_samples_total") == 3
    assert value(m, "memwarden_critical_threshold_bytes") == mon.config.critical_bytes
    assert value(m, "memwarden_operation_calls_total", operation="load") == 1
    assert value(m, "memwarden_operation_peak_bytes", operation="load") > 0
    rss_now = value(m, "memwarden_rss_bytes")
    assert rss_now > 2**20  # the real process, read at scrape time
    assert value(m, "memwarden_usage_ratio") == pytest.approx(rss_now / MAX, rel=0.05)
    gens = {lab["generation"] for lab, _ in m["memwarden_gc_collections_total"]}
    assert gens == {"0", "1", "2"}
    suffixes = ("", "_created", "_bucket", "_count", "_sum")  # counters and histograms
    assert set(m) <= {n + suffix for n in METRICS for suffix in suffixes} | set(METRICS), (
        "undocumented metric"
    )


def test_pressure_stall_metrics_follow_the_kernel() -> None:
    """PSI metrics appear exactly when the kernel exposes memory pressure."""
    reg = CollectorRegistry(auto_describe=False)
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=MAX))
    reg.register(MemwardenCollector(mon))
    fams = {f.name for f in text_string_to_metric_families(generate_latest(reg).decode())}
    psi = pressure_stall()
    assert ("memwarden_memory_pressure_ratio" in fams) == (psi is not None)
    if psi is not None:
        assert "memwarden_memory_pressure_stall_seconds" in fams
    mon.close()


def test_register_adds_to_an_existing_registry_without_threads(mon: MemoryMonitor) -> None:
    """register() puts the collector in a user's registry; scraping it starts no thread."""
    reg = CollectorRegistry()
    before = threading.active_count()
    collector = register(reg, monitor=mon)
    text = generate_latest(reg).decode()
    assert threading.active_count() == before
    assert "memwarden_level 3.0" in text  # CRITICAL on the shared scale
    reg.unregister(collector)
    assert "memwarden_level" not in generate_latest(reg).decode()


def test_without_a_monitor_the_default_one_is_reported(
    mon: MemoryMonitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collector made without a monitor reads the process-wide default."""
    monkeypatch.setattr(monitor_mod, "_default", mon)
    assert MemwardenCollector().monitor is mon


def test_python_heap_is_reported_only_while_tracing(mon: MemoryMonitor) -> None:
    """memwarden_python_heap_bytes appears while tracemalloc traces."""
    import tracemalloc

    reg = CollectorRegistry(auto_describe=False)
    reg.register(MemwardenCollector(mon))
    was = tracemalloc.is_tracing()
    if was:
        tracemalloc.stop()
    assert b"memwarden_python_heap_bytes" not in generate_latest(reg)
    tracemalloc.start()
    try:
        assert b"memwarden_python_heap_bytes" in generate_latest(reg)
    finally:
        if not was:
            tracemalloc.stop()


def test_close_releases_the_port(mon: MemoryMonitor) -> None:
    """After close() nothing listens on the port any more; close() is idempotent."""
    exporter = expose(0, monitor=mon)
    url = exporter.url
    assert scrape(url)
    exporter.close()
    exporter.close()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(url, timeout=2)


def test_bad_or_busy_ports_are_configuration_errors(mon: MemoryMonitor) -> None:
    """An out-of-range port or one already bound raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="70000"):
        expose(70000, monitor=mon)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(ConfigurationError, match=str(busy)):
            expose(busy, monitor=mon)


def test_every_documented_metric_is_in_the_monitoring_docs() -> None:
    """docs/monitoring.md lists every metric the collector can emit (the Grafana list)."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
    if not doc.exists():
        pytest.fail("docs/monitoring.md is missing")
    text = doc.read_text()
    missing = [name for name in METRICS if name not in text]
    assert not missing
