"""Prometheus exporter: a collector read at scrape time, and ``expose()`` to serve it over HTTP.

The collector adds no thread and no timer: each scrape reads the monitor's state
(level, peak, per-operation aggregates, level changes), a fresh ``rss()``, the
configured budget and effective limit, CPython's gc counters, the cgroup's usage
and OOM events, and memory pressure-stall information where the kernel has it.
Metric names follow Prometheus conventions (base units, ``_total`` counters,
``_bytes``/``_seconds``/``_ratio`` suffixes). Needs the ``prometheus`` extra.

    from memwarden.integrations.prometheus import expose
    exporter = expose(9464)          # http://127.0.0.1:9464/metrics

``expose()`` serves from one thread with bounded connections and timeouts
(:mod:`memwarden.integrations._http`), not prometheus_client's thread per
connection: slow or half-open clients cannot exhaust the host's threads.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from memwarden import probes
from memwarden.exceptions import ConfigurationError
from memwarden.integrations._requests import REQUEST_METRICS
from memwarden.monitoring import MONITOR_LEVELS, MemoryMonitor
from memwarden.monitoring import monitor as default_monitor

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from memwarden.integrations._http import MetricsServer

__all__ = ["Exporter", "MemwardenCollector", "expose", "register"]

log = logging.getLogger("memwarden.integrations.prometheus")

#: Every metric family the collector can emit (the ones marked "when present" may be absent).
METRICS: dict[str, str] = {
    "memwarden_rss_bytes": "gauge: resident set size of the process, read at scrape time",
    **REQUEST_METRICS,
    "memwarden_peak_rss_bytes": "gauge: highest RSS the monitor has sampled",
    "memwarden_limit_bytes": "gauge: the memory budget (max_memory) levels are measured against",
    "memwarden_effective_limit_bytes": "gauge{source}: the tightest limit found "
    "(cgroup, rlimit or physical RAM)",
    "memwarden_warning_threshold_bytes": "gauge: usage at which the level becomes WARNING",
    "memwarden_critical_threshold_bytes": "gauge: usage at which the level becomes CRITICAL",
    "memwarden_usage_ratio": "gauge: rss / limit",
    "memwarden_level": "gauge: monitor level, 0 OK, 1 WARNING, 3 CRITICAL",
    "memwarden_level_changes_total": "counter{level}: times the monitor entered each level",
    "memwarden_time_in_level_seconds_total": "counter{level}: seconds spent in each level",
    "memwarden_python_heap_bytes": "gauge: bytes traced by tracemalloc (when tracing)",
    "memwarden_gc_collections_total": "counter{generation}: CPython gc collections",
    "memwarden_gc_collected_objects_total": "counter{generation}: objects gc collected",
    "memwarden_gc_uncollectable_objects_total": "counter{generation}: uncollectable objects",
    "memwarden_gc_objects": "gauge{generation}: objects currently tracked by gc",
    "memwarden_operation_calls_total": "counter{operation}: finished track() blocks",
    "memwarden_operation_peak_bytes": "gauge{operation}: highest RSS peak of a track() block",
    "memwarden_operation_rss_delta_max_bytes": "gauge{operation}: largest RSS growth of a block",
    "memwarden_operation_duration_seconds_total": "counter{operation}: summed block durations",
    "memwarden_monitor_samples_total": "counter: samples the monitor has taken",
    "memwarden_monitor_overhead_ratio": "gauge: share of wall time the sampler spends sampling",
    "memwarden_monitor_errors_total": "counter: probe and handler errors caught by the monitor",
    "memwarden_cgroup_usage_bytes": "gauge: the cgroup's memory usage (when in a cgroup)",
    "memwarden_cgroup_working_set_bytes": "gauge: cgroup usage less inactive file cache",
    "memwarden_cgroup_oom_kills_total": "counter: OOM kills in the cgroup (when reported)",
    "memwarden_memory_pressure_ratio": "gauge{kind,window}: share of time stalled on memory "
    "(PSI avg10/avg60/avg300, when present)",
    "memwarden_memory_pressure_stall_seconds_total": "counter{kind}: total time stalled on memory "
    "(PSI, when present)",
}


def _help(name: str) -> str:
    return METRICS[name].split(": ", 1)[1]


def _gauge(name: str, value: float | None = None, labels: list[str] | None = None) -> Any:
    """A gauge family named ``name`` (a :data:`METRICS` key), with its help text."""
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, _help(name), value=value, labels=labels)


def _counter(name: str, value: float | None = None, labels: list[str] | None = None) -> Any:
    """A counter family exposed as ``name`` (a :data:`METRICS` key ending in ``_total``)."""
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(name.removesuffix("_total"), _help(name), value=value, labels=labels)


class MemwardenCollector:
    """A ``prometheus_client`` collector reading memwarden's state at each scrape.

    Args:
        monitor: the monitor to report; default the process-wide :func:`memwarden.monitor`
            (created and started on the first scrape, not before).
        probe: the RSS probe read at scrape time (default :func:`memwarden.probes.rss`).
    """

    def __init__(
        self, monitor: MemoryMonitor | None = None, *, probe: Callable[[], int] | None = None
    ) -> None:
        self._monitor = monitor
        self._probe = probe or probes.rss

    @property
    def monitor(self) -> MemoryMonitor:
        """The monitor reported (the default one unless given)."""
        return self._monitor if self._monitor is not None else default_monitor()

    def describe(self) -> list[Any]:
        """Nothing: keeps registration from running a scrape."""
        return []

    def collect(self) -> Iterator[Any]:
        """Yield every metric family (called by the registry at scrape time)."""
        mon = self.monitor
        cfg = mon.config
        st = mon.stats()
        current = int(self._probe())
        yield _gauge("memwarden_rss_bytes", current)
        from memwarden.integrations._requests import prometheus_families

        yield from prometheus_families()  # per-route request memory, when middleware runs
        yield _gauge("memwarden_peak_rss_bytes", max(current, st.peak_rss_bytes or 0))
        yield _gauge("memwarden_limit_bytes", cfg.max_memory_bytes)
        yield _gauge("memwarden_warning_threshold_bytes", cfg.warning_bytes)
        yield _gauge("memwarden_critical_threshold_bytes", cfg.critical_bytes)
        yield _gauge("memwarden_usage_ratio", current / cfg.max_memory_bytes)
        yield _gauge("memwarden_level", int(st.level))
        changes = _counter("memwarden_level_changes_total", labels=["level"])
        in_level = _counter("memwarden_time_in_level_seconds_total", labels=["level"])
        for lvl in MONITOR_LEVELS:
            changes.add_metric([lvl.monitor_name.lower()], st.level_changes.get(lvl, 0))
            in_level.add_metric([lvl.monitor_name.lower()], st.time_in_level_s.get(lvl, 0.0))
        yield changes
        yield in_level
        if tracemalloc.is_tracing():
            yield _gauge("memwarden_python_heap_bytes", tracemalloc.get_traced_memory()[0])
        yield from self._gc()
        yield from self._operations(mon)
        yield _counter("memwarden_monitor_samples_total", st.samples)
        yield _gauge("memwarden_monitor_overhead_ratio", st.overhead_ratio)
        yield _counter("memwarden_monitor_errors_total", st.handler_errors)
        yield from self._system()

    @staticmethod
    def _gc() -> Iterator[Any]:
        fams = {
            key: _counter(f"memwarden_gc_{name}_total", labels=["generation"])
            for key, name in (
                ("collections", "collections"),
                ("collected", "collected_objects"),
                ("uncollectable", "uncollectable_objects"),
            )
        }
        for gen, stats in enumerate(gc.get_stats()):
            for key, fam in fams.items():
                fam.add_metric([str(gen)], stats.get(key, 0))
        yield from fams.values()
        objects = _gauge("memwarden_gc_objects", labels=["generation"])
        for gen, count in enumerate(gc.get_count()):
            objects.add_metric([str(gen)], count)
        yield objects

    @staticmethod
    def _operations(mon: MemoryMonitor) -> Iterator[Any]:
        ops = mon.operations()
        if not ops:
            return
        calls = _counter("memwarden_operation_calls_total", labels=["operation"])
        peak = _gauge("memwarden_operation_peak_bytes", labels=["operation"])
        delta = _gauge("memwarden_operation_rss_delta_max_bytes", labels=["operation"])
        duration = _counter("memwarden_operation_duration_seconds_total", labels=["operation"])
        for name, agg in sorted(ops.items()):
            calls.add_metric([name], agg.count)
            peak.add_metric([name], agg.max_peak_rss_bytes)
            delta.add_metric([name], agg.max_rss_delta_bytes)
            duration.add_metric([name], agg.total_duration_s)
        yield from (calls, peak, delta, duration)

    @staticmethod
    def _system() -> Iterator[Any]:
        # Each source is optional and read from files: one failing must not fail the scrape.
        try:
            lim = probes.effective_limit()
        except Exception:  # pragma: no cover - effective_limit falls back itself
            log.debug("effective_limit failed during a scrape", exc_info=True)
        else:
            g = _gauge("memwarden_effective_limit_bytes", labels=["source"])
            g.add_metric([lim.source], lim.limit_bytes)
            yield g
        try:
            usage = probes.cgroup_usage()
            events = probes.memory_events()
            psi = probes.pressure_stall()
        except Exception:  # pragma: no cover - the probes never raise by contract
            log.debug("cgroup/PSI probes failed during a scrape", exc_info=True)
            return
        if usage is not None:
            yield _gauge("memwarden_cgroup_usage_bytes", usage.usage_bytes)
            yield _gauge("memwarden_cgroup_working_set_bytes", usage.working_set_bytes)
        if events is not None:
            yield _counter("memwarden_cgroup_oom_kills_total", events.oom_kill)
        if psi is not None:
            ratio = _gauge("memwarden_memory_pressure_ratio", labels=["kind", "window"])
            total = _counter("memwarden_memory_pressure_stall_seconds_total", labels=["kind"])
            for kind, line in (("some", psi.some), ("full", psi.full)):
                if line is None:
                    continue
                for window, pct in (
                    ("10s", line.avg10),
                    ("60s", line.avg60),
                    ("300s", line.avg300),
                ):
                    ratio.add_metric([kind, window], pct / 100)
                total.add_metric([kind], line.total_us / 1e6)
            yield ratio
            yield total


def register(
    registry: CollectorRegistry | None = None, *, monitor: MemoryMonitor | None = None
) -> MemwardenCollector:
    """Register a :class:`MemwardenCollector` on ``registry`` (default the global REGISTRY).

    Returns:
        The collector (``registry.unregister(collector)`` removes it).
    """
    from prometheus_client import REGISTRY

    collector = MemwardenCollector(monitor)
    (registry if registry is not None else REGISTRY).register(collector)
    return collector


class Exporter:
    """A running metrics HTTP server; ``close()`` (or leaving ``with``) stops it."""

    def __init__(
        self,
        server: Any,
        thread: threading.Thread,
        registry: CollectorRegistry,
        collector: MemwardenCollector | None = None,
    ) -> None:
        self._server = server
        self._thread = thread
        self.registry = registry
        self.collector = collector
        host, port = server.server_address[:2]
        self.host: str = host
        self.port: int = port

    @property
    def url(self) -> str:
        """The scrape URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._thread.join(timeout=5)
        if self.collector is not None:
            # A caller's registry (the global one) must not keep serving our collector.
            with contextlib.suppress(KeyError):
                self.registry.unregister(self.collector)
            self.collector = None

    def __enter__(self) -> Exporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_port(port: object) -> int:
    """``port`` as a TCP port number, or a ConfigurationError naming it."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigurationError(
            f"port={port!r} (argument): expected a TCP port in 0..65535", value=port
        )
    return port


def is_loopback(addr: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    import ipaddress

    if addr.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(addr.strip("[]"))
    except ValueError:
        return False  # a host name: it may resolve to anything
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def serve(
    registry: CollectorRegistry, port: int, addr: str, *, max_connections: int, timeout_s: float
) -> MetricsServer:
    """Start a bounded :class:`~memwarden.integrations._http.MetricsServer` for ``registry``.

    Warns (WARNING) when ``addr`` is not loopback: the metrics then reach the network.

    Raises:
        ConfigurationError: the address cannot be bound.
    """
    from memwarden.integrations._http import MetricsServer

    try:
        server = MetricsServer(
            registry, addr, port, max_connections=max_connections, timeout_s=timeout_s
        )
    except OSError as exc:
        raise ConfigurationError(
            f"port={port!r}, addr={addr!r} (argument): cannot serve metrics: {exc}",
            value=port,
            source="argument",
        ) from exc
    if not is_loopback(addr):
        log.warning(
            "serving memwarden metrics on %s, which is not a loopback address: anyone who "
            "can reach it reads this process's memory figures (bind 127.0.0.1 and scrape "
            "locally, or restrict it with a firewall)",
            addr,
        )
    return server


def expose(
    port: int = 9464,
    addr: str = "127.0.0.1",
    *,
    monitor: MemoryMonitor | None = None,
    registry: CollectorRegistry | None = None,
    max_connections: int = 64,
    timeout_s: float = 10.0,
) -> Exporter:
    """Serve memwarden's metrics at ``http://addr:port/metrics``.

    The server runs in one thread whatever the number of clients: at most
    ``max_connections`` are held (the oldest is dropped for a new one) and each
    must finish within ``timeout_s``. The body is prometheus_client's exposition
    (text, or OpenMetrics when the scraper asks).

    Args:
        port: TCP port; 0 picks a free one (read it from ``Exporter.port``).
        addr: the address to bind; loopback by default; another address is logged
            at WARNING (use ``"0.0.0.0"`` deliberately).
        monitor: the monitor to report (default: the process-wide one).
        registry: serve this registry with the collector added (default: a new registry
            holding only memwarden's metrics). ``close()`` removes the collector again.
        max_connections: connections held at once.
        timeout_s: seconds a client may take for one scrape.

    Raises:
        ConfigurationError: ``port`` is not in 0..65535, or it cannot be bound; the
            collector is then not left registered.
    """
    check_port(port)
    from prometheus_client import CollectorRegistry

    reg = registry if registry is not None else CollectorRegistry(auto_describe=False)
    collector = MemwardenCollector(monitor)
    reg.register(collector)
    try:
        server = serve(reg, port, addr, max_connections=max_connections, timeout_s=timeout_s)
    except BaseException:
        # A failed expose() must leave the registry as it found it: otherwise a retry
        # registers a second collector and every metric is served twice.
        reg.unregister(collector)
        raise
    exporter = Exporter(server, server.thread, reg, collector)
    log.info("serving memwarden metrics at %s", exporter.url)
    return exporter
