"""Dask integration: governed workers and distributed adaptive batching (extra ``dask``).

- :class:`MemwardenWorkerPlugin` gives every worker a memwarden monitor and
  governor whose budget is the worker's own ``memory_limit``, with the gc and
  ``malloc_trim`` relievers (the fix Dask's docs recommend by hand for
  "unmanaged memory"), and publishes memwarden's metrics on the worker's own
  Prometheus endpoint (``/metrics`` of its HTTP server).
- :func:`worker_stats` / :func:`stats_table` collect per-worker figures through
  ``client.run``: RSS, limit, level, reliefs run, and leak suspicion from the
  growth slope of the worker's RSS.
- :func:`adaptive_map` maps a function over a stream of items in batches whose
  size follows the measured memory per item and each worker's headroom, pauses
  submission while workers are under pressure (or paused by Dask), splits a
  batch that fails with ``MemoryError`` (or kills its worker), and yields the
  results in input order.

The same code runs on a multi-machine cluster: nothing here assumes the
workers share the client's machine. This module imports ``distributed``; it is
only imported when used (``pip install 'memwarden[dask]'``).
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from distributed import WorkerPlugin

from memwarden._registry import reset_after_fork
from memwarden._units import format_size
from memwarden.batch import BatchSizer
from memwarden.exceptions import ConfigurationError, PressureTimeoutError
from memwarden.probes import effective_limit, peak_rss, reset_peak_rss, rss

if TYPE_CHECKING:
    from memwarden.monitoring import MemoryMonitor
    from memwarden.pressure import Governor

__all__ = [
    "AdaptiveMapStats",
    "MemwardenWorkerPlugin",
    "WorkerMemoryStats",
    "adaptive_map",
    "stats_table",
    "worker_stats",
]

log = logging.getLogger("memwarden.integrations.dask")

T = TypeVar("T")

# ---------------------------------------------------------------------------
# worker side


@dataclass
class _WorkerState:
    """What the plugin keeps on one worker (one per worker process; replaced on re-setup)."""

    address: str
    limit_bytes: int
    monitor: MemoryMonitor
    governor: Governor
    collectors: list[Any] = field(default_factory=list)


# Worker address -> state, in the worker's process. A process normally holds one
# worker; in-process clusters (tests) hold a few. Teardown removes the entry.
_STATES: dict[str, _WorkerState] = {}
_STATES_LOCK = threading.Lock()


def _new_states_lock() -> None:
    # A process forked from a worker (multiprocessing inside a task) must not inherit a
    # lock that another thread of the worker held at fork time.
    global _STATES_LOCK
    _STATES_LOCK = threading.Lock()


reset_after_fork(_new_states_lock)


def _worker_limit(worker: Any) -> int:
    manager = getattr(worker, "memory_manager", None)
    limit = getattr(manager, "memory_limit", None) or getattr(worker, "memory_limit", None)
    if limit:
        return int(limit)
    return effective_limit().limit_bytes


class _GovernorCollector:
    """Prometheus collector for a worker's governor (MemwardenCollector reports the monitor)."""

    def __init__(self, governor: Governor) -> None:
        self._governor = governor

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily(
            "memwarden_pressure_level",
            "Governor pressure: 0 NONE, 1 MODERATE, 2 HIGH, 3 CRITICAL.",
            value=int(self._governor.level()),
        )
        yield CounterMetricFamily(
            "memwarden_reliefs",
            "Relief runs by the governor on this process.",
            value=len(self._governor.history()),
        )


class MemwardenWorkerPlugin(WorkerPlugin):
    """A ``distributed.WorkerPlugin`` that governs each worker's memory.

    Register it once: ``client.register_plugin(MemwardenWorkerPlugin())``; it is
    set up on every current and future worker.

    Args:
        monitoring_interval_s: the monitor's sampling interval on each worker.
        warning_threshold: fraction of the worker's ``memory_limit`` for WARNING.
        critical_threshold: fraction for CRITICAL.
        pressure_threshold: fraction at which the governor starts relief. Keep
            it below Dask's own ``pause`` fraction (0.8) so memwarden relieves
            before Dask pauses the worker.
        release_threshold: fraction below which pressure ends.
        prometheus: publish memwarden's metrics on the worker's ``/metrics``.
    """

    name = "memwarden"
    idempotent = True

    def __init__(
        self,
        *,
        monitoring_interval_s: float = 0.1,
        warning_threshold: float = 0.6,
        critical_threshold: float = 0.75,
        pressure_threshold: float = 0.7,
        release_threshold: float = 0.6,
        prometheus: bool = True,
    ) -> None:
        self.monitoring_interval_s = monitoring_interval_s
        self.warning_threshold = warning_threshold
        self.critical_threshold = critical_threshold
        self.pressure_threshold = pressure_threshold
        self.release_threshold = release_threshold
        self.prometheus = prometheus

    def _config(self, limit_bytes: int) -> Any:
        from memwarden.config import MemoryConfig

        return MemoryConfig(
            max_memory_bytes=limit_bytes,
            warning_threshold=self.warning_threshold,
            critical_threshold=self.critical_threshold,
            pressure_threshold=self.pressure_threshold,
            release_threshold=self.release_threshold,
            monitoring_interval_s=self.monitoring_interval_s,
            history_size=4096,
            sources={"max_memory_bytes": "dask worker memory_limit"},
        )

    def setup(self, worker: Any) -> None:
        """Start the monitor and governor on ``worker`` (called by Dask)."""
        from memwarden.monitoring import MemoryMonitor
        from memwarden.pressure import Governor

        limit = _worker_limit(worker)
        config = self._config(limit)
        mon = MemoryMonitor(config).start()
        gov = Governor(config, monitor=mon).start()
        state = _WorkerState(worker.address, limit, mon, gov)
        if self.prometheus:
            # Dask's worker serves prometheus_client's global REGISTRY at /metrics, so
            # registering there publishes beside Dask's own dask_worker_* series.
            try:
                import prometheus_client

                from memwarden.integrations.prometheus import MemwardenCollector

                collectors: list[Any] = [MemwardenCollector(mon), _GovernorCollector(gov)]
                for c in collectors:
                    prometheus_client.REGISTRY.register(c)
                state.collectors = collectors
            except (ImportError, ValueError) as exc:  # duplicate names in an in-process cluster
                log.warning("memwarden metrics not published on %s: %s", worker.address, exc)
        with _STATES_LOCK:
            old = _STATES.pop(worker.address, None)
            _STATES[worker.address] = state
        if old is not None:
            _stop_state(old)
        log.info(
            "memwarden governs dask worker %s with a budget of %s",
            worker.address,
            format_size(limit),
        )

    def teardown(self, worker: Any) -> None:
        """Stop the monitor and governor and withdraw the metrics (called by Dask)."""
        with _STATES_LOCK:
            state = _STATES.pop(worker.address, None)
        if state is not None:
            _stop_state(state)


def _stop_state(state: _WorkerState) -> None:
    for collector in state.collectors:
        try:
            import prometheus_client

            prometheus_client.REGISTRY.unregister(collector)
        except (ImportError, KeyError):
            pass
    for part in (state.governor, state.monitor):
        try:
            part.close()
        except Exception:
            log.exception("closing %r on worker %s failed", part, state.address)


def _state_for(dask_worker: Any | None) -> _WorkerState | None:
    if dask_worker is None:
        return None
    with _STATES_LOCK:
        return _STATES.get(dask_worker.address)


@dataclass(frozen=True)
class WorkerMemoryStats:
    """One worker's memory as memwarden sees it.

    Attributes:
        address: the worker's address.
        rss_bytes: its process RSS.
        limit_bytes: its ``memory_limit`` (memwarden's budget there).
        level: monitor level (OK/WARNING/CRITICAL), or ``unknown`` without the plugin.
        pressure: governor level (NONE/MODERATE/HIGH/CRITICAL).
        reliefs: relief runs so far.
        leak_suspected: the RSS grows steadily (Theil–Sen slope and Mann–Kendall
            test over the monitor's history), None without the plugin.
        growth_bytes_per_s: the slope.
        status: Dask's worker status (running, paused, …).
        under_pressure: the worker takes no new batches (governor pressure, paused by
            Dask, or above 80% of its limit without the plugin).
        governed: the plugin runs on the worker.
    """

    address: str
    rss_bytes: int
    limit_bytes: int
    level: str
    pressure: str
    reliefs: int
    leak_suspected: bool | None
    growth_bytes_per_s: float | None
    status: str
    under_pressure: bool
    governed: bool


@dataclass(frozen=True)
class _BatchReport:
    """What a finished batch sends back with its results (``_run_batch``)."""

    worker: WorkerMemoryStats
    before_bytes: int
    peak_bytes: int
    items: int
    elapsed_s: float


def _worker_report(dask_worker: Any = None, *, detail: bool = True) -> WorkerMemoryStats:
    """Run on a worker (through ``client.run``): its memory figures.

    ``detail=False`` skips the leak trend (a Theil–Sen fit over the monitor's history,
    milliseconds of pure Python): batches report after every run and need only the
    figures that size the next one.
    """
    state = _state_for(dask_worker)
    current = rss()
    status = str(getattr(getattr(dask_worker, "status", None), "name", "unknown"))
    address = str(getattr(dask_worker, "address", "local"))
    if state is None:
        limit = (
            _worker_limit(dask_worker) if dask_worker is not None else effective_limit().limit_bytes
        )
        return WorkerMemoryStats(
            address=address,
            rss_bytes=current,
            limit_bytes=limit,
            level="unknown",
            pressure="unknown",
            under_pressure=current > 0.8 * limit or status == "paused",
            reliefs=0,
            leak_suspected=None,
            growth_bytes_per_s=None,
            status=status,
            governed=False,
        )
    growth = state.monitor.growth(noise_floor_bytes=0.05 * state.limit_bytes) if detail else None
    return WorkerMemoryStats(
        address=address,
        rss_bytes=current,
        limit_bytes=state.limit_bytes,
        level=state.monitor.level.monitor_name,
        pressure=state.governor.level().name,
        under_pressure=bool(state.governor.is_under_pressure()) or status == "paused",
        reliefs=len(state.governor.history()),
        leak_suspected=None if growth is None else bool(growth.growing),
        growth_bytes_per_s=None if growth is None else float(growth.slope),
        status=status,
        governed=True,
    )


def worker_stats(client: Any) -> list[WorkerMemoryStats]:
    """Collect :class:`WorkerMemoryStats` from every worker (``client.run``)."""
    raw: dict[str, WorkerMemoryStats] = client.run(_worker_report)
    return [dataclasses.replace(stats, address=addr) for addr, stats in sorted(raw.items())]


def stats_table(client: Any) -> str:
    """A text table of :func:`worker_stats`: worker, RSS, limit, level, reliefs, leak suspicion."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="memwarden on dask workers", title_justify="left")
    for col in ("worker", "rss", "limit", "use", "level", "pressure", "reliefs", "leak?", "status"):
        table.add_column(col)
    for s in worker_stats(client):
        leak = "?" if s.leak_suspected is None else ("yes" if s.leak_suspected else "no")
        table.add_row(
            s.address,
            format_size(s.rss_bytes),
            format_size(s.limit_bytes),
            f"{s.rss_bytes / s.limit_bytes:.0%}" if s.limit_bytes else "-",
            s.level,
            s.pressure,
            str(s.reliefs),
            leak,
            s.status,
        )
    console = Console(width=120, force_terminal=False, color_system=None)
    with console.capture() as captured:
        console.print(table)
    return captured.get()


# ---------------------------------------------------------------------------
# adaptive_map


def _run_batch(
    fn: Callable[..., Any], batch: Sequence[Any], batched: bool
) -> tuple[list[Any], _BatchReport]:
    """Run one batch on a worker and measure it (executed by Dask on the worker)."""
    from distributed import get_worker

    worker = get_worker()
    before = rss()
    # The exact peak of the batch: reset VmHWM now and read it after (Linux); where
    # that is unsupported, sample RSS after each item. The reset is process-wide,
    # so with several threads running batches at once the peak covers them all:
    # an over-estimate, which only makes batches smaller.
    exact = reset_peak_rss()
    peak = before
    start = time.perf_counter()
    if batched:
        out = list(fn(list(batch)))
        if len(out) != len(batch):
            raise ValueError(
                f"adaptive_map(batched=True): fn returned {len(out)} results for {len(batch)} items"
            )
    else:
        out = []
        for item in batch:
            out.append(fn(item))
            if not exact:
                peak = max(rss(), peak)
    peak = max(peak, peak_rss() if exact else rss())
    elapsed = time.perf_counter() - start
    report = _BatchReport(
        worker=_worker_report(worker, detail=False),
        before_bytes=before,
        peak_bytes=peak,
        items=len(batch),
        elapsed_s=elapsed,
    )
    return out, report


def _probe(dask_worker: Any = None) -> WorkerMemoryStats:
    """Run on a worker: collect garbage if it is under pressure, then report."""
    report = _worker_report(dask_worker, detail=False)
    if report.under_pressure:
        state = _state_for(dask_worker)
        if state is not None:
            state.governor.relieve(reason="adaptive_map backpressure")
        else:
            gc.collect()
        report = _worker_report(dask_worker, detail=False)
    return report


@dataclass
class AdaptiveMapStats:
    """What :func:`adaptive_map` did.

    Attributes:
        items: results yielded.
        batches: batches that completed.
        batch_sizes: size of each submitted batch, in submission order (bounded
            to the last 10,000).
        retries: batches split and resubmitted after a ``MemoryError`` or a lost worker.
        worker_losses: submissions that failed because their worker died.
        pauses: times submission paused for worker pressure.
        paused_s: total time spent paused.
        per_item_bytes: the final estimate of memory per item.
        elapsed_s: wall time.
    """

    items: int = 0
    batches: int = 0
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))
    retries: int = 0
    worker_losses: int = 0
    pauses: int = 0
    paused_s: float = 0.0
    per_item_bytes: float = 0.0
    elapsed_s: float = 0.0

    @property
    def items_per_s(self) -> float:
        """Throughput."""
        return self.items / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """One line a person can read."""
        sizes = list(self.batch_sizes)
        span = f"{min(sizes)}..{max(sizes)}" if sizes else "-"
        return (
            f"{self.items} items in {self.batches} batches (sizes {span}), "
            f"{self.retries} retries, {self.worker_losses} lost workers, {self.pauses} pauses "
            f"({self.paused_s:.1f} s), {format_size(int(self.per_item_bytes))}/item, "
            f"{self.items_per_s:.1f} items/s"
        )


class _Sizer:
    """Batch sizes for the cluster: :class:`memwarden.batch.BatchSizer`'s rule on worker headroom.

    The per-item cost is learned from each finished batch's report (its peak over its
    starting memory on the worker that ran it); the room is the smallest headroom
    under ``target_usage`` among the workers not under pressure, so a batch fits on
    whichever of them runs it.
    """

    def __init__(self, *, initial: int, minimum: int, maximum: int, target_usage: float) -> None:
        self.policy = BatchSizer(
            initial=initial, minimum=minimum, maximum=maximum, increase=max(1, initial // 2)
        )
        self.target_usage = target_usage
        self.headroom_bytes: dict[str, int] = {}
        self.under_pressure: dict[str, bool] = {}

    def observe(self, report: _BatchReport) -> None:
        """Learn from a finished batch's report, and grow (or cut) the size."""
        items = max(1, report.items)
        used = max(0, report.peak_bytes - report.before_bytes)
        self.policy.observe(items, used)
        self.observe_worker(report.worker.address, report.worker, base_bytes=report.before_bytes)
        self.policy.next_size(items, self.room())

    def observe_worker(self, address: str, stats: WorkerMemoryStats, *, base_bytes: int) -> None:
        """Record a worker's headroom; workers under pressure take no new work."""
        self.under_pressure[address] = stats.under_pressure
        budget = int(stats.limit_bytes * self.target_usage)
        self.headroom_bytes[address] = budget - base_bytes

    def failed(self, n: int) -> int:
        """A batch of ``n`` failed for memory: the size its halves are retried at."""
        return self.policy.failed(n)

    @property
    def per_item_bytes(self) -> float:
        return self.policy.estimate or 0.0

    @property
    def all_under_pressure(self) -> bool:
        return bool(self.under_pressure) and all(self.under_pressure.values())

    @property
    def relieved_workers(self) -> list[str]:
        """The workers last seen out of pressure (where new batches go)."""
        return sorted(a for a, p in self.under_pressure.items() if not p)

    def room(self) -> int | None:
        """The smallest headroom among workers not under pressure (None: none known)."""
        usable = [h for a, h in self.headroom_bytes.items() if not self.under_pressure.get(a)]
        return min(usable) if usable else None

    def next_size(self) -> int:
        """The size of the next batch to submit: the learned size, cut to what fits now."""
        return self.policy.fit(self.room())


class _Pending(Generic[T]):
    __slots__ = ("batch", "start")

    def __init__(self, start: int, batch: list[T]) -> None:
        self.start = start
        self.batch = batch


# How often adaptive_map re-reads every worker's memory (batch reports refresh busy ones).
_REFRESH_S = 2.0


def _is_memory_failure(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return name in ("KilledWorker", "FutureCancelledError", "CommClosedError")


def adaptive_map(
    client: Any,
    fn: Callable[..., Any],
    items: Iterable[T],
    *,
    batched: bool = False,
    initial_batch: int = 4,
    min_batch: int = 1,
    max_batch: int = 10_000,
    target_usage: float = 0.6,
    max_in_flight: int | None = None,
    pressure_timeout_s: float | None = 300.0,
    poll_s: float = 0.2,
    max_retries: int = 32,
    stats: AdaptiveMapStats | None = None,
) -> Iterator[Any]:
    """Map ``fn`` over ``items`` on a Dask cluster in memory-adaptive batches.

    The input is consumed lazily (a generator is never materialised: at most
    ``max_in_flight`` batches are held), results come back in input order.

    Args:
        client: a ``distributed.Client``.
        fn: called per item (``fn(item)``), or per batch with ``batched=True``
            (``fn(list_of_items) -> list_of_results``, as when a batch is
            processed as one array or frame).
        items: any iterable.
        initial_batch: the first batches' size, before any measurement.
        min_batch: the smallest batch; a ``MemoryError`` at this size is re-raised.
        max_batch: the largest batch.
        target_usage: the fraction of each worker's ``memory_limit`` a batch may
            bring it to. Keep it below Dask's ``pause`` fraction (0.8).
        max_in_flight: batches submitted at once (default: twice the worker threads).
        pressure_timeout_s: how long to wait for workers under pressure before
            raising ``PressureTimeoutError``; None waits forever.
        poll_s: how often to ask paused workers for relief.
        max_retries: split-and-retry attempts before giving up.
        stats: an :class:`AdaptiveMapStats` to fill (pass one to read it after).

    Yields:
        ``fn``'s results, in input order.

    Raises:
        MemoryError: a batch of ``min_batch`` items still failed for memory.
        PressureTimeoutError: workers stayed under pressure past the timeout.
    """
    from distributed import wait

    if not 0 < target_usage < 1:
        raise ConfigurationError(
            f"target_usage={target_usage!r} (argument): expected a fraction in (0, 1)",
            value=target_usage,
            source="argument",
        )
    if not 1 <= min_batch <= initial_batch <= max_batch:
        raise ConfigurationError(
            f"batch sizes min_batch={min_batch}, initial_batch={initial_batch}, "
            f"max_batch={max_batch} (argument): expected 1 <= min <= initial <= max",
            value=(min_batch, initial_batch, max_batch),
            source="argument",
        )
    st = stats if stats is not None else AdaptiveMapStats()
    started = time.monotonic()
    if max_in_flight is None:
        # Two batches per worker thread: one running, one queued on the worker so it
        # never idles for a round trip. A queued batch holds no memory until it runs.
        threads = client.nthreads()
        max_in_flight = 2 * max(1, sum(threads.values()) if threads else 1)
    sizer = _Sizer(
        initial=initial_batch, minimum=min_batch, maximum=max_batch, target_usage=target_usage
    )
    source = iter(items)
    retry: deque[_Pending[T]] = deque()
    pending: dict[Any, _Pending[T]] = {}
    done: dict[int, list[Any]] = {}
    next_index = 0  # next input position to read
    next_out = 0  # next result position to yield
    exhausted = False
    last_refresh = 0.0

    def refresh() -> None:
        nonlocal last_refresh
        for addr, rep in client.run(_worker_report, detail=False).items():
            sizer.observe_worker(addr, rep, base_bytes=rep.rss_bytes)
        last_refresh = time.monotonic()

    def take() -> _Pending[T] | None:
        nonlocal next_index, exhausted
        if retry:
            return retry.popleft()
        if exhausted:
            return None
        batch = list(itertools.islice(source, sizer.next_size()))
        if not batch:
            exhausted = True
            return None
        pend = _Pending(next_index, batch)
        next_index += len(batch)
        return pend

    def wait_for_workers() -> None:
        # Every worker is under pressure: ask them for relief and wait until one has room.
        t0 = time.monotonic()
        st.pauses += 1
        while True:
            reports = client.run(_probe)
            for addr, rep in reports.items():
                sizer.observe_worker(addr, rep, base_bytes=rep.rss_bytes)
            if not sizer.all_under_pressure:
                break
            waited = time.monotonic() - t0
            if pressure_timeout_s is not None and waited > pressure_timeout_s:
                st.paused_s += waited
                raise PressureTimeoutError(
                    f"dask workers stayed under memory pressure for {waited:.1f} s "
                    f"(pressure_timeout_s={pressure_timeout_s})",
                    waited_s=waited,
                )
            time.sleep(poll_s)
        st.paused_s += time.monotonic() - t0

    try:
        refresh()
        while True:
            if time.monotonic() - last_refresh > _REFRESH_S:
                refresh()
            if sizer.all_under_pressure and not pending:
                wait_for_workers()
            # Batches held = running + finished out of order (waiting for an earlier one to
            # be yielded): both count against max_in_flight, or a straggler lets finished
            # results pile up. Retries are always let through: they are earlier positions,
            # the ones the held results wait for.
            while (
                not sizer.all_under_pressure
                and len(pending) < max_in_flight
                and (retry or len(pending) + len(done) < max_in_flight)
            ):
                pend = take()
                if pend is None:
                    break
                # Only to workers out of pressure: the scheduler may otherwise queue a batch
                # on a worker Dask has paused, where it waits until that worker recovers.
                fut = client.submit(
                    _run_batch,
                    fn,
                    pend.batch,
                    batched,
                    pure=False,
                    workers=sizer.relieved_workers or None,
                    allow_other_workers=not sizer.relieved_workers,
                )
                pending[fut] = pend
                st.batch_sizes.append(len(pend.batch))
            if not pending:
                if retry or not exhausted:
                    continue
                break
            finished, _ = wait(list(pending), return_when="FIRST_COMPLETED")  # type: ignore[no-untyped-call]
            for fut in finished:
                pend = pending.pop(fut)
                exc = fut.exception()
                if exc is None:
                    out, report = fut.result()
                    sizer.observe(report)
                    st.per_item_bytes = sizer.per_item_bytes
                    st.batches += 1
                    done[pend.start] = out
                    continue
                if not _is_memory_failure(exc):
                    raise exc
                if not isinstance(exc, MemoryError):  # KilledWorker & co: the worker died
                    st.worker_losses += 1
                st.retries += 1
                if len(pend.batch) <= min_batch or st.retries > max_retries:
                    raise MemoryError(
                        f"adaptive_map: a batch of {len(pend.batch)} item(s) starting at input "
                        f"#{pend.start} failed for memory ({type(exc).__name__}: {exc}) "
                        f"after {st.retries} retries"
                    ) from exc
                # Split and retry: the halves go first, and no later batch grows back
                # to the size that failed.
                half = max(min_batch, len(pend.batch) // 2)
                sizer.failed(len(pend.batch))
                retry.appendleft(_Pending(pend.start + half, pend.batch[half:]))
                retry.appendleft(_Pending(pend.start, pend.batch[:half]))
                refresh()
            while next_out in done:
                out = done.pop(next_out)
                next_out += len(out)
                st.items += len(out)
                yield from out
    finally:
        for fut in pending:
            fut.cancel()
        st.elapsed_s = time.monotonic() - started
