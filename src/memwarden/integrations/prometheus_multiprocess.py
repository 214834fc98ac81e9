"""Prometheus metrics that stay correct when a service runs several worker processes.

Under gunicorn, uWSGI or a ``multiprocessing`` pool, each scrape of ``/metrics``
reaches one worker, so a collector read at scrape time (as
:class:`~memwarden.integrations.prometheus.MemwardenCollector` is) reports
whichever process answered. prometheus_client's multiprocess mode fixes that:
each process writes its values to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` and the exporter aggregates every file at scrape
time. This module publishes memwarden's figures that way:

- in every worker process: :func:`publish` (after the monitor exists) updates
  multiprocess gauges on each monitor sample;
- in the process that serves ``/metrics``: :func:`multiprocess_registry` /
  :func:`expose_multiprocess`;
- when a worker exits: :func:`mark_process_dead` (gunicorn's ``child_exit`` hook).

``PROMETHEUS_MULTIPROC_DIR`` must be set before ``prometheus_client`` is first
imported in the worker processes (prometheus_client decides at import time).

gunicorn ``gunicorn.conf.py``::

    import os
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/memwarden-metrics")

    def post_fork(server, worker):
        from memwarden.integrations.prometheus_multiprocess import publish
        publish()

    def child_exit(server, worker):
        from memwarden.integrations.prometheus_multiprocess import mark_process_dead
        mark_process_dead(worker.pid)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from memwarden.exceptions import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from memwarden.monitoring import MemoryMonitor, Sample, Subscription

__all__ = [
    "MultiprocessPublisher",
    "expose_multiprocess",
    "mark_process_dead",
    "multiprocess_registry",
    "publish",
]

ENV = "PROMETHEUS_MULTIPROC_DIR"


def _directory(path: str | os.PathLike[str] | None) -> str:
    value = os.fspath(path) if path is not None else os.environ.get(ENV)
    source = "argument" if path is not None else "environment"
    if not value:
        raise ConfigurationError(
            f"{ENV} is not set (environment): multiprocess metrics need a shared directory, "
            f"e.g. {ENV}=/tmp/memwarden-metrics, set before prometheus_client is imported",
            source="environment",
        )
    if not Path(value).is_dir():
        raise ConfigurationError(
            f"{ENV}={value!r} ({source}): not a directory", value=value, source=source
        )
    from memwarden._files import safe_directory
    from memwarden.exceptions import UnsafePathError

    try:
        # Every process writes and the exporter reads these files: a directory another
        # user owns or can write could feed the exporter forged series or swap files.
        safe_directory(value, purpose=f"{ENV} ({source})")
    except UnsafePathError as exc:
        raise ConfigurationError(str(exc), value=value, source=source) from None
    return value


# attribute -> (metric name, help, multiprocess mode): how the exporter aggregates the
# live processes' values.
_Mode = Literal["liveall", "livesum", "livemax"]

_GAUGES: dict[str, tuple[str, str, _Mode]] = {
    "rss": ("memwarden_rss_bytes", "Resident set size of each live process.", "liveall"),
    "rss_sum": (
        "memwarden_rss_sum_bytes",
        "Total resident set size of the live processes.",
        "livesum",
    ),
    "rss_max": (
        "memwarden_rss_max_bytes",
        "Largest resident set size of any live process.",
        "livemax",
    ),
    "usage": ("memwarden_usage_ratio", "Highest RSS / limit of any live process.", "livemax"),
    "level": (
        "memwarden_level",
        "Worst monitor level of any live process: 0 OK, 1 WARNING, 3 CRITICAL.",
        "livemax",
    ),
    "limit": ("memwarden_limit_bytes", "Memory budget of each live process.", "liveall"),
}


class MultiprocessPublisher:
    """Writes one process's memory figures to prometheus_client's multiprocess files.

    Series (aggregated across live processes by the exporter):

    - ``memwarden_rss_bytes{pid}``: each live process's RSS (``liveall``);
    - ``memwarden_rss_sum_bytes``: the service's total RSS (``livesum``);
    - ``memwarden_rss_max_bytes``: the largest process (``livemax``);
    - ``memwarden_usage_ratio``: the highest RSS / limit of any process (``livemax``);
    - ``memwarden_level``: the worst monitor level of any process (``livemax``);
    - ``memwarden_limit_bytes{pid}``: each process's budget (``liveall``);
    - ``memwarden_level_changes_total{level}``: summed over processes (a counter).

    Args:
        monitor: the process's monitor (default: the process-wide one, started).
    """

    def __init__(self, monitor: MemoryMonitor | None = None) -> None:
        _directory(None)
        from prometheus_client import Counter, Gauge
        from prometheus_client import values as pc_values

        # prometheus_client picks its value class once, at import: mmap-backed files
        # only when PROMETHEUS_MULTIPROC_DIR was already set then.
        if getattr(pc_values.ValueClass, "__name__", "") != "MmapedValue":
            raise ConfigurationError(
                f"{ENV} was set after prometheus_client was imported in this process "
                "(environment): set it before the first import, e.g. in the service's config",
                source="environment",
            )
        if monitor is None:
            from memwarden.monitoring import monitor as default_monitor

            monitor = default_monitor()
        self.monitor = monitor
        # registry=None: multiprocess values go to the files, not to an in-process registry.
        self._g = {
            attr: Gauge(name, doc, multiprocess_mode=mode, registry=None)
            for attr, (name, doc, mode) in _GAUGES.items()
        }
        self._level_changes = Counter(
            "memwarden_level_changes",
            "Times a process's monitor entered each level.",
            ["level"],
            registry=None,
        )
        self._lock = threading.Lock()
        self._subs: list[Subscription] = [
            monitor.on_sample(self._on_sample),
            monitor.on_level_change(self._on_level_change),
        ]
        monitor.sample_now()  # runs _on_sample: the files hold figures from the start

    def _on_sample(self, sample: Sample) -> None:
        limit = self.monitor.config.max_memory_bytes
        with self._lock:
            g = self._g
            for attr in ("rss", "rss_sum", "rss_max"):
                g[attr].set(sample.rss_bytes)
            g["usage"].set(sample.rss_bytes / limit)
            g["level"].set(int(self.monitor.level))
            g["limit"].set(limit)

    def _on_level_change(self, old: Any, new: Any, sample: Sample) -> None:
        self._level_changes.labels(level=new.monitor_name).inc()
        self._g["level"].set(int(new))

    def close(self) -> None:
        """Stop updating (the values stay until the process is marked dead)."""
        for sub in self._subs:
            sub.unsubscribe()
        self._subs.clear()


_PUBLISHER: MultiprocessPublisher | None = None
_PUBLISHER_LOCK = threading.Lock()


def publish(monitor: MemoryMonitor | None = None) -> MultiprocessPublisher:
    """Start publishing this process's figures (once per process; later calls return it)."""
    global _PUBLISHER
    with _PUBLISHER_LOCK:
        if _PUBLISHER is not None and monitor is not None and monitor is not _PUBLISHER.monitor:
            _PUBLISHER.close()  # a new monitor replaces the old one's subscriptions
            _PUBLISHER = None
        if _PUBLISHER is None:
            _PUBLISHER = MultiprocessPublisher(monitor)
        return _PUBLISHER


def _forget_after_fork() -> None:
    global _PUBLISHER
    _PUBLISHER = None


os.register_at_fork(after_in_child=_forget_after_fork)


def multiprocess_registry(path: str | os.PathLike[str] | None = None) -> CollectorRegistry:
    """A registry that aggregates every process's files in ``path`` (default the env var)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_directory(path))  # type: ignore[no-untyped-call]
    return registry


def expose_multiprocess(
    port: int = 9464,
    addr: str = "127.0.0.1",
    *,
    path: str | os.PathLike[str] | None = None,
    max_connections: int = 64,
    timeout_s: float = 10.0,
) -> Any:
    """Serve the aggregated metrics at ``http://addr:port/metrics``; return ``(server, thread)``.

    The same bounded one-thread server as :func:`~memwarden.integrations.prometheus.expose`
    (``server.shutdown(); server.server_close()`` stops it); a non-loopback ``addr``
    is logged at WARNING.
    """
    from memwarden.integrations.prometheus import check_port, serve

    check_port(port)
    server = serve(
        multiprocess_registry(path),
        port,
        addr,
        max_connections=max_connections,
        timeout_s=timeout_s,
    )
    return server, server.thread


def mark_process_dead(pid: int, path: str | os.PathLike[str] | None = None) -> None:
    """Drop an exited process's live gauges (call from gunicorn's ``child_exit``)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, _directory(path))  # type: ignore[no-untyped-call]
