"""OpenTelemetry metrics: observable instruments read at collection time from a monitor.

Uses the OpenTelemetry semantic-convention names where they exist
(``process.memory.usage``, ``process.memory.virtual``, ``cpython.gc.*``) and
``memwarden.*`` names for the rest (budget, level, operations, pressure). Nothing
runs between collections: every instrument is observable, so the SDK's reader
or exporter decides when memwarden is read. Needs the ``otel`` extra.

    from memwarden.integrations.opentelemetry import instrument
    instrument()                     # the global MeterProvider, the default monitor
"""

from __future__ import annotations

import gc
import logging
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

from memwarden import probes
from memwarden.monitoring import MONITOR_LEVELS, MemoryMonitor
from memwarden.monitoring import monitor as default_monitor

__all__ = ["INSTRUMENTS", "Instrumentation", "instrument"]

log = logging.getLogger("memwarden.integrations.opentelemetry")

SCOPE = "memwarden"

#: name -> (kind, unit, description). Kinds: gauge, counter, updowncounter (all observable).
INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    # semantic conventions (process.*, cpython.*)
    "process.memory.usage": ("updowncounter", "By", "The amount of physical memory in use (RSS)."),
    "process.memory.virtual": ("updowncounter", "By", "The amount of committed virtual memory."),
    "cpython.gc.collections": (
        "counter",
        "{collection}",
        "The number of times a generation was collected since interpreter start.",
    ),
    "cpython.gc.collected_objects": (
        "counter",
        "{object}",
        "The total number of objects collected inside a generation since interpreter start.",
    ),
    "cpython.gc.uncollectable_objects": (
        "counter",
        "{object}",
        "The total number of objects found uncollectable inside a generation.",
    ),
    # memwarden's own
    "memwarden.memory.limit": ("updowncounter", "By", "The memory budget (max_memory)."),
    "memwarden.memory.effective_limit": (
        "updowncounter",
        "By",
        "The tightest limit found: cgroup, rlimit or physical memory.",
    ),
    "memwarden.memory.utilization": ("gauge", "1", "RSS as a fraction of the memory budget."),
    "memwarden.memory.peak": ("gauge", "By", "The highest RSS the monitor has sampled."),
    "memwarden.monitor.level": ("gauge", "{level}", "Monitor level: 0 OK, 1 WARNING, 3 CRITICAL."),
    "memwarden.monitor.level_changes": (
        "counter",
        "{change}",
        "Times the monitor entered each level.",
    ),
    "memwarden.monitor.samples": ("counter", "{sample}", "Samples taken by the monitor."),
    "memwarden.python.heap.usage": ("updowncounter", "By", "Bytes traced by tracemalloc."),
    "memwarden.operation.calls": ("counter", "{call}", "Finished track() blocks per operation."),
    "memwarden.operation.peak": ("gauge", "By", "Highest RSS peak of a track() block."),
    "memwarden.memory.pressure.stall.time": (
        "counter",
        "s",
        "Total time tasks stalled waiting for memory (PSI).",
    ),
    # per-route request memory, from the WSGI/ASGI middleware (docs/services.md)
    "memwarden.request.count": ("counter", "{request}", "Requests finished per route."),
    "memwarden.request.rss_delta": (
        "updowncounter",
        "By",
        "Summed RSS change of the requests of each route.",
    ),
    "memwarden.request.under_pressure": (
        "counter",
        "{request}",
        "Requests of each route that ended under memory pressure.",
    ),
    "memwarden.worker.recycles": ("counter", "{recycle}", "Graceful recycles this worker decided."),
}


class Instrumentation:
    """The instruments created by :func:`instrument`; ``close()`` makes them report nothing.

    (The OpenTelemetry API cannot remove an instrument from a meter; closing stops
    the callbacks from observing, so the series simply end.)
    """

    def __init__(self, monitor: MemoryMonitor | None) -> None:
        self._monitor = monitor
        self.instruments: dict[str, Any] = {}
        self.closed = False

    @property
    def monitor(self) -> MemoryMonitor:
        """The monitor observed (the process-wide default unless one was given)."""
        return self._monitor if self._monitor is not None else default_monitor()

    def close(self) -> None:
        """Stop observing (idempotent)."""
        self.closed = True

    # Each callback returns a list of Observations; errors are logged, never raised
    # into the SDK's collection thread.
    def _wrap(self, fn: Callable[[], Iterable[tuple[float, dict[str, Any]]]]) -> Callable[..., Any]:
        from opentelemetry.metrics import Observation

        def callback(_options: Any) -> list[Any]:
            if self.closed:
                return []
            try:
                return [Observation(v, attrs or None) for v, attrs in fn()]
            except Exception:
                log.warning(
                    "memwarden OpenTelemetry callback %s failed", fn.__name__, exc_info=True
                )
                return []

        return callback

    # -- observations

    def _rss(self) -> Iterable[tuple[float, dict[str, Any]]]:
        return [(probes.rss(), {})]

    def _vms(self) -> Iterable[tuple[float, dict[str, Any]]]:
        return [(probes.vms(), {})]

    def _gc(self, key: str) -> Callable[[], Iterable[tuple[float, dict[str, Any]]]]:
        def gc_stats() -> Iterable[tuple[float, dict[str, Any]]]:
            return [
                (s.get(key, 0), {"cpython.gc.generation": gen})
                for gen, s in enumerate(gc.get_stats())
            ]

        gc_stats.__name__ = f"gc_{key}"
        return gc_stats

    def _limit(self) -> Iterable[tuple[float, dict[str, Any]]]:
        return [(self.monitor.config.max_memory_bytes, {})]

    def _effective_limit(self) -> Iterable[tuple[float, dict[str, Any]]]:
        lim = probes.effective_limit()
        return [(lim.limit_bytes, {"memwarden.limit.source": lim.source})]

    def _utilization(self) -> Iterable[tuple[float, dict[str, Any]]]:
        return [(probes.rss() / self.monitor.config.max_memory_bytes, {})]

    def _peak(self) -> Iterable[tuple[float, dict[str, Any]]]:
        peak = self.monitor.stats().peak_rss_bytes
        return [] if peak is None else [(peak, {})]

    def _level(self) -> Iterable[tuple[float, dict[str, Any]]]:
        return [(int(self.monitor.level), {})]

    def _level_changes(self) -> Iterable[tuple[float, dict[str, Any]]]:
        changes = self.monitor.stats().level_changes
        return [
            (changes.get(lvl, 0), {"memwarden.level": lvl.monitor_name.lower()})
            for lvl in MONITOR_LEVELS
        ]

    def _samples(self) -> Iterable[tuple[float, dict[str, Any]]]:
        return [(self.monitor.stats().samples, {})]

    def _heap(self) -> Iterable[tuple[float, dict[str, Any]]]:
        if not tracemalloc.is_tracing():
            return []
        return [(tracemalloc.get_traced_memory()[0], {})]

    def _op(self, field: str) -> Callable[[], Iterable[tuple[float, dict[str, Any]]]]:
        def op_stats() -> Iterable[tuple[float, dict[str, Any]]]:
            return [
                (getattr(agg, field), {"memwarden.operation": name})
                for name, agg in sorted(self.monitor.operations().items())
            ]

        op_stats.__name__ = f"op_{field}"
        return op_stats

    def _route(self, field: str) -> Callable[[], Iterable[tuple[float, dict[str, Any]]]]:
        def route_stats() -> Iterable[tuple[float, dict[str, Any]]]:
            from memwarden.integrations._requests import meters

            return [
                (getattr(st, field), {"http.route": st.route})
                for meter in meters()
                for st in meter.routes()
            ]

        route_stats.__name__ = f"route_{field}"
        return route_stats

    def _recycles(self) -> Iterable[tuple[float, dict[str, Any]]]:
        from memwarden.integrations._requests import meters

        return [(sum(m.recycles for m in meters()), {})]

    def _psi(self) -> Iterable[tuple[float, dict[str, Any]]]:
        psi = probes.pressure_stall()
        if psi is None:
            return []
        out = [(psi.some.total_us / 1e6, {"memwarden.pressure.kind": "some"})]
        if psi.full is not None:
            out.append((psi.full.total_us / 1e6, {"memwarden.pressure.kind": "full"}))
        return out


def instrument(
    meter_provider: Any = None, *, monitor: MemoryMonitor | None = None
) -> Instrumentation:
    """Create memwarden's observable instruments on a meter.

    Args:
        meter_provider: an OpenTelemetry ``MeterProvider`` (default: the global one).
        monitor: the monitor to observe (default: the process-wide one, created at
            the first collection, not here).

    Returns:
        The :class:`Instrumentation`; its ``instruments`` maps names to instruments.
    """
    from opentelemetry import metrics

    from memwarden import __version__

    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    meter = provider.get_meter(SCOPE, __version__)
    inst = Instrumentation(monitor)
    sources: dict[str, Callable[[], Iterable[tuple[float, dict[str, Any]]]]] = {
        "process.memory.usage": inst._rss,
        "process.memory.virtual": inst._vms,
        "cpython.gc.collections": inst._gc("collections"),
        "cpython.gc.collected_objects": inst._gc("collected"),
        "cpython.gc.uncollectable_objects": inst._gc("uncollectable"),
        "memwarden.memory.limit": inst._limit,
        "memwarden.memory.effective_limit": inst._effective_limit,
        "memwarden.memory.utilization": inst._utilization,
        "memwarden.memory.peak": inst._peak,
        "memwarden.monitor.level": inst._level,
        "memwarden.monitor.level_changes": inst._level_changes,
        "memwarden.monitor.samples": inst._samples,
        "memwarden.python.heap.usage": inst._heap,
        "memwarden.operation.calls": inst._op("count"),
        "memwarden.operation.peak": inst._op("max_peak_rss_bytes"),
        "memwarden.memory.pressure.stall.time": inst._psi,
        "memwarden.request.count": inst._route("requests"),
        "memwarden.request.rss_delta": inst._route("rss_delta_sum_bytes"),
        "memwarden.request.under_pressure": inst._route("under_pressure"),
        "memwarden.worker.recycles": inst._recycles,
    }
    factories = {
        "gauge": meter.create_observable_gauge,
        "counter": meter.create_observable_counter,
        "updowncounter": meter.create_observable_up_down_counter,
    }
    for name, (kind, unit, description) in INSTRUMENTS.items():
        inst.instruments[name] = factories[kind](
            name, callbacks=[inst._wrap(sources[name])], unit=unit, description=description
        )
    return inst
