"""Per-request memory accounting shared by the WSGI and ASGI middleware.

A :class:`RequestMeter` records, per route template, the RSS change of each request and
whether it ran under pressure, and runs each request under a context tag of the sampling
profiler (when it runs), so the bytes allocated by a route's requests are attributed to
it even under concurrency; it asks its :class:`~memwarden.integrations.recycle.Recycler`
(if any) after each request whether the worker should recycle. Routes are bounded: past
``max_routes`` distinct templates, new ones are counted under ``"other"``. Histograms use
fixed buckets, so the meter's own memory is bounded by ``max_routes × buckets``.

Live meters are listed weakly in :func:`meters`, which the Prometheus collector and the
OpenTelemetry instruments read at collection time: the request path itself touches no
exporter and takes one short lock.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memwarden._registry import DEFAULT, DefaultType
from memwarden.exceptions import ConfigurationError
from memwarden.levels import PressureLevel

if TYPE_CHECKING:
    from memwarden.integrations.recycle import Recycler
    from memwarden.pressure import Governor

__all__ = ["BUCKETS_BYTES", "RequestMeter", "RouteStats", "meters"]

log = logging.getLogger("memwarden.integrations.requests")

#: Histogram bucket bounds (bytes) for the per-request RSS change.
BUCKETS_BYTES: tuple[int, ...] = (
    0,
    4 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
    256 << 20,
)

OTHER = "other"
#: The profiler's context tags of requests are ``request:<route label>``.
TAG_PREFIX = "request:"

_meters: weakref.WeakSet[RequestMeter] = weakref.WeakSet()


def meters() -> list[RequestMeter]:
    """The live request meters in this process (for exporters)."""
    return list(_meters)


@dataclass
class RouteStats:
    """Aggregates for one route template (mutable; read a copy from :meth:`RequestMeter.routes`).

    Attributes:
        route: the route template.
        requests: requests finished.
        under_pressure: requests that ended while the governor's level was MODERATE or worse.
        rss_delta_sum_bytes: summed RSS change (may be negative).
        rss_delta_buckets: cumulative-free bucket counts of positive RSS change
            (index ``i`` counts changes ``<= BUCKETS_BYTES[i]``; the last counts the rest).
    """

    route: str
    requests: int = 0
    under_pressure: int = 0
    rss_delta_sum_bytes: int = 0
    rss_delta_buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_BYTES) + 1))

    def copy(self) -> RouteStats:
        """An independent copy."""
        return RouteStats(
            self.route,
            self.requests,
            self.under_pressure,
            self.rss_delta_sum_bytes,
            list(self.rss_delta_buckets),
        )

    @property
    def mean_rss_delta_bytes(self) -> float:
        """Mean RSS change per request."""
        return self.rss_delta_sum_bytes / self.requests if self.requests else 0.0


class _Request:
    """One request in flight: its fallback route and the RSS it started from."""

    __slots__ = ("route", "rss_bytes")

    def __init__(self, route: str, rss_bytes: int) -> None:
        self.route = route
        self.rss_bytes = rss_bytes


class RequestMeter:
    """Per-route request accounting, with an optional recycler.

    Args:
        max_routes: distinct route labels kept; later ones count as ``"other"``.
        recycler: asked after each request whether to recycle (None: never).
        governor: read for "under pressure" (its last evaluated level, no new
            evaluation); None for none; :data:`~memwarden.pressure.DEFAULT` the
            process-wide governor.
        probe: RSS in bytes (default :func:`memwarden.probes.rss`).
        header: a response header to carry the request's RSS change (e.g.
            ``"X-Memwarden-Rss-Delta"``), for debugging; None for none.
    """

    def __init__(
        self,
        *,
        max_routes: int = 100,
        recycler: Recycler | None = None,
        governor: Governor | DefaultType | None = DEFAULT,
        probe: Callable[[], int] | None = None,
        header: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (isinstance(max_routes, int) and 1 <= max_routes <= 10_000):
            raise ConfigurationError(
                f"max_routes={max_routes!r} (argument): expected 1..10000", value=max_routes
            )
        if probe is None:
            from memwarden.probes import rss

            probe = rss
        self._probe = probe
        self.max_routes = max_routes
        self.recycler = recycler
        self._gov_arg = governor
        self.header = header
        self._clock = clock
        self._lock = threading.Lock()
        self._routes: dict[str, RouteStats] = {}
        self._last_rss: int | None = None
        self.last_decision_waiting = False
        from memwarden import profiler  # always importable; its extension is optional

        self._profiler: Any = profiler
        self._tags: set[str] = set()  # the profiler tags this meter's requests ran under
        self.recycles = 0
        self._trace = _TraceRoutes.from_environment()
        _meters.add(self)

    def _governor(self) -> Governor | None:
        if self._gov_arg is DEFAULT:
            from memwarden.pressure import resolve_governor

            self._gov_arg = resolve_governor(DEFAULT)  # the process-wide one, for good
        return self._gov_arg

    def _pressure(self) -> bool:
        gov = self._governor()
        return gov is not None and gov.current_level >= PressureLevel.MODERATE

    def begin(self, route: str = OTHER) -> _Request:
        """Start accounting one request (call :meth:`end` with the result when it is done).

        Reads no RSS: a request starts from the reading the previous request ended on
        (in a sync worker that is this request's own start; under concurrency RSS is
        the process's anyway). One RSS read a request, in :meth:`end`, halves the cost.
        """
        last = self._last_rss
        return _Request(route, self._probe() if last is None else last)

    def end(self, req: _Request, route: str | None = None, *, wait: bool = True) -> bool:
        """Finish a request; returns whether the worker should now recycle.

        Args:
            req: what :meth:`begin` returned.
            route: the route template, if it became known while the request ran.
            wait: let the recycler pause intake (block) while the worker waits for its
                turn to recycle; async servers pass False and wait themselves.
        """
        rss = self._probe()
        self._last_rss = rss
        delta = rss - req.rss_bytes
        pressure = self._pressure()
        name = route or req.route
        with self._lock:
            st = self._routes.get(name)
            if st is None:
                if len(self._routes) >= self.max_routes:
                    name = OTHER
                    st = self._routes.get(OTHER)
                if st is None:
                    st = self._routes[name] = RouteStats(name)
            st.requests += 1
            st.under_pressure += pressure
            st.rss_delta_sum_bytes += delta
            st.rss_delta_buckets[bisect.bisect_left(BUCKETS_BYTES, max(delta, 0))] += 1
        req.rss_bytes = delta  # the request's RSS change, for the debugging header
        if self._trace is not None:
            self._trace.maybe_write(self, rss)
        if self.recycler is not None:
            decision = self.recycler.after_unit(rss_bytes=rss, wait=wait)
            self.last_decision_waiting = decision.waiting
            if decision.recycle:
                self.recycles += 1
                return True
        return False

    @property
    def profiling(self) -> bool:
        """Whether the sampling profiler runs (requests then run under a context tag)."""
        return bool(self._profiler.is_running())

    @contextlib.contextmanager
    def tagged(self, route: Callable[[], str]) -> Iterator[None]:
        """Run the body under the profiler's context tag ``route()`` (no-op without profiling).

        The tag is the label known when the request starts (a framework's template is
        known only after routing): the method and first path segment, bounded like
        the route labels.
        """
        prof = self._profiler
        if not prof.is_running():
            yield
            return
        label = route()
        with self._lock:
            if label not in self._tags:
                if len(self._tags) >= self.max_routes:
                    label = OTHER
                self._tags.add(label)
        with prof.tag(f"{TAG_PREFIX}{label}"):
            yield

    def allocated_by_route(self) -> dict[str, int]:
        """Bytes the sampling profiler attributed to each route label since it started.

        Estimates from the profiler's samples (read at call time, e.g. at a scrape);
        empty when no request ran under a profiler tag.
        """
        prof = self._profiler
        with self._lock:
            tags = set(self._tags)
        if not tags:
            return {}
        try:
            # Readable after stop() too (at exit the profiler may stop before we write).
            snap = prof.snapshot("allocations")
        except Exception:  # no session, or a backend without an allocations profile
            return {}
        out: dict[str, int] = {}
        for tag, part in snap.by_tag().items():
            if tag is not None and tag.startswith(TAG_PREFIX) and tag[len(TAG_PREFIX) :] in tags:
                out[tag[len(TAG_PREFIX) :]] = part.total_bytes
        return out

    def routes(self) -> list[RouteStats]:
        """Copies of the per-route aggregates, most growth first."""
        with self._lock:
            out = [st.copy() for st in self._routes.values()]
        out.sort(key=lambda s: s.rss_delta_sum_bytes, reverse=True)
        return out


#: The per-route families :func:`prometheus_families` yields (name: kind and help).
REQUEST_METRICS: dict[str, str] = {
    "memwarden_request_rss_delta_bytes": "histogram{route}: RSS change over each request "
    "(negative changes count in the lowest bucket)",
    "memwarden_request_allocated_bytes_total": "counter{route}: bytes the sampling profiler "
    "attributed to the route's requests (estimates; present while profiling)",
    "memwarden_requests_under_pressure_total": "counter{route}: requests that ended under "
    "memory pressure",
    "memwarden_worker_recycles_total": "counter: graceful recycles this process decided",
}


def _histogram(name: str, routes: list[RouteStats], field_: str, sum_: str) -> Any:
    from prometheus_client.core import HistogramMetricFamily

    fam = HistogramMetricFamily(name, REQUEST_METRICS[name].split(": ", 1)[1], labels=["route"])
    for st in routes:
        counts = getattr(st, field_)
        cumulative, running = [], 0
        for bound, n in zip((*map(str, BUCKETS_BYTES), "+Inf"), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        fam.add_metric([st.route], cumulative, sum_value=getattr(st, sum_))
    return fam


def prometheus_families() -> Iterator[Any]:
    """The request meters' metric families (read by the Prometheus collector at scrape time)."""
    live = meters()
    if not live:
        return
    from prometheus_client.core import CounterMetricFamily

    routes = [st for m in live for st in m.routes()]
    yield _histogram(
        "memwarden_request_rss_delta_bytes", routes, "rss_delta_buckets", "rss_delta_sum_bytes"
    )
    allocated: dict[str, int] = {}
    for m in live:
        for route, n in m.allocated_by_route().items():
            allocated[route] = allocated.get(route, 0) + n
    if allocated:
        fam = CounterMetricFamily(
            "memwarden_request_allocated_bytes",
            REQUEST_METRICS["memwarden_request_allocated_bytes_total"].split(": ", 1)[1],
            labels=["route"],
        )
        for route, n in sorted(allocated.items()):
            fam.add_metric([route], n)
        yield fam
    pressure = CounterMetricFamily(
        "memwarden_requests_under_pressure",
        REQUEST_METRICS["memwarden_requests_under_pressure_total"].split(": ", 1)[1],
        labels=["route"],
    )
    for st in routes:
        pressure.add_metric([st.route], st.under_pressure)
    yield pressure
    yield CounterMetricFamily(
        "memwarden_worker_recycles",
        REQUEST_METRICS["memwarden_worker_recycles_total"].split(": ", 1)[1],
        value=sum(m.recycles for m in live),
    )


class _TraceRoutes:
    """Writes the meter's per-route figures into the ``memwarden run`` trace (when under it).

    A ``routes`` record at most every :attr:`EVERY_S` seconds (checked after a request,
    one clock read) and once at exit, so ``memwarden report`` can name the routes that
    grew most; appended with one ``O_APPEND`` write to the file the run engine created.
    """

    EVERY_S = 5.0

    def __init__(self, path: str, t0: float) -> None:
        self.path = path
        self.t0 = t0
        self.next_s = 0.0
        self._meter: weakref.ref[RequestMeter] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> _TraceRoutes | None:
        import os

        path = os.environ.get("MEMWARDEN_TRACE_FILE")
        t0 = os.environ.get("MEMWARDEN_TRACE_T0")
        if not path or not t0:
            return None
        try:
            return cls(path, float(t0))
        except ValueError:
            return None

    def maybe_write(self, meter: RequestMeter, rss_bytes: int) -> None:
        now = time.monotonic()
        if now < self.next_s:
            return
        with self._lock:
            if now < self.next_s:
                return
            self.next_s = now + self.EVERY_S
            if self._meter is None:
                import atexit

                self._meter = weakref.ref(meter)
                atexit.register(self.write_at_exit)
        self.write(meter)

    def write_at_exit(self) -> None:
        meter = self._meter() if self._meter is not None else None
        if meter is not None:
            self.write(meter)

    def write(self, meter: RequestMeter) -> None:
        import os

        from memwarden.report.trace import append_record

        allocated = meter.allocated_by_route()
        record = {
            "type": "routes",
            "pid": os.getpid(),
            "t_s": round(time.monotonic() - self.t0, 4),
            "routes": [
                {
                    "route": st.route,
                    "requests": st.requests,
                    "rss_delta_sum_bytes": st.rss_delta_sum_bytes,
                    "under_pressure": st.under_pressure,
                    "allocated_bytes": allocated.get(st.route, 0),
                }
                for st in meter.routes()
            ],
        }
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return  # the run's trace is gone or not ours: never fail a request over it
        try:
            append_record(fd, record)
        except (OSError, ValueError):
            log.debug("cannot write route figures to %s", self.path, exc_info=True)
        finally:
            os.close(fd)
