"""memwarden's own long-running paths, checked for leaks with memwarden's own leak detector.

DESIGN.md's contract: "memwarden's own memory is tested with its own leak detector".
Each test drives one component's steady-state path (the path a long-running program
takes millions of times) under :func:`memwarden.leaks.check_leaks` and asserts that
nothing grows.

How the settings were chosen. ``check_leaks`` clears tracemalloc's traces at its
baseline, so its Python-heap signal is "live memory allocated during the measured
rounds": a bounded structure whose turnover is slower than one round (a 1000-entry
cache refilled at 200 entries a round) reads as growth until all its old entries were
replaced. Every bound below is therefore smaller than one round's churn, and the
warm-up is long enough to fill it first. ``test_control_detects_a_small_leak``
proves that the same settings catch a leak of one small object per call, so a pass
here means something.

Logging from memwarden is silenced during each check: pytest's log capture keeps
every record it sees, which would read as a leak of the host's handler, not ours.
"""

from __future__ import annotations

import collections
import io
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from memwarden import pressure
from memwarden.batch import AdaptiveBatchProcessor
from memwarden.budget import memory_budget
from memwarden.cache import LRUCache, TTLCache, cached
from memwarden.config import MemoryConfig
from memwarden.dispose import DisposableStack, EventEmitter
from memwarden.incremental import IncrementalEngine
from memwarden.leaks import LeakReport, check_leaks
from memwarden.monitoring import MemoryMonitor, track
from memwarden.pool import BufferPool, ObjectPool
from memwarden.pressure import PRIORITY_CACHE, Governor, PressureLevel
from memwarden.probes import rss
from memwarden.snapshots import MemoryDelta, snapshot
from memwarden.stream import iter_lines, read_chunks

#: Measured rounds: with 6 rounds a leak must grow in all 6 (the detector forgives one
#: quiet round only from 8 on), and a strictly increasing series has p = 1/7! < 0.01.
ROUNDS = 6
GiB = 2**30

# About 25 checks of 7 measurements each (a full gc and a walk of every object per
# measurement): ~20 s on an idle 2-core machine, more under load.
# Coverage's tracer allocates per new line and keeps one tracer per started thread, so
# leak checks of memwarden itself run untraced: `make test` runs `-m untraced` without --cov.
pytestmark = [pytest.mark.slow, pytest.mark.untraced]


def assert_no_leak(
    fn: Callable[[], object], *, calls: int, warmup: int = 2, rounds: int = ROUNDS
) -> LeakReport:
    """Run ``check_leaks`` on ``fn`` and fail with the detector's summary if it leaked."""
    report = check_leaks(fn, rounds=rounds, calls_per_round=calls, warmup=warmup)
    assert report.calls_per_round == calls
    assert not report.leaked, report.summary()
    return report


@pytest.fixture(scope="module", autouse=True)
def _probe_fds_open() -> None:
    """Open the probes' kept-open files before any test counts file descriptors.

    The first ``rss()`` in a process opens ``/proc/self/statm`` and keeps it open (by
    design); a test that snapshots its open fds before that first read, when run alone
    (``-k batch``), would count it as a leaked descriptor.
    """
    assert rss() > 0


@pytest.fixture(autouse=True)
def _quiet_memwarden_logs() -> Iterator[None]:
    """Keep memwarden's log records out of pytest's capture while checking."""
    logger = logging.getLogger("memwarden")
    old = logger.level
    logger.setLevel(logging.CRITICAL + 10)
    try:
        yield
    finally:
        logger.setLevel(old)


def _config(**changes: object) -> MemoryConfig:
    base = MemoryConfig(max_memory_bytes=64 * GiB, monitoring_interval_s=3600.0, history_size=64)
    return base.with_(**changes) if changes else base


def _open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


# --------------------------------------------------------------------------- control

_HOARD: collections.deque[tuple[int, str]] = collections.deque()


def test_control_detects_a_small_leak() -> None:
    """The settings used in this file catch a history that keeps one small tuple per call."""
    counter = itertools.count()

    def unbounded_history() -> None:
        _HOARD.append((next(counter), "x"))

    try:
        report = check_leaks(unbounded_history, rounds=ROUNDS, calls_per_round=200, warmup=2)
    finally:
        _HOARD.clear()
    assert report.leaked, report.summary()
    assert report.kind == "python"


# --------------------------------------------------------------------------- policy


def test_monitor_sampling_with_a_wrapping_history_does_not_leak() -> None:
    """``sample_now()`` in a loop, with a subscriber, wraps the 64-sample ring many times over."""
    mon = MemoryMonitor(_config())
    seen = [0]

    def on_sample(_sample: object) -> None:
        seen[0] += 1

    sub = mon.on_sample(on_sample)
    try:
        assert_no_leak(mon.sample_now, calls=100)
        stats = mon.stats()
        assert stats.samples > 10 * mon.config.history_size
        assert len(mon.history()) == mon.config.history_size
        assert seen[0] == stats.samples
    finally:
        sub.unsubscribe()
        mon.close()


def test_running_sampler_thread_does_not_leak() -> None:
    """A started monitor sampling every 2 ms on its own thread wraps its ring without growing."""
    mon = MemoryMonitor(_config(monitoring_interval_s=0.002))
    mon.start()
    try:
        assert_no_leak(lambda: time.sleep(0.002), calls=30)
        assert mon.running
        assert mon.stats().samples > 2 * mon.config.history_size
    finally:
        mon.close()
    assert not mon.running


def test_monitor_lifecycle_does_not_leak() -> None:
    """Monitors started and closed per call leave no thread, subscription or registry entry."""
    threads = threading.active_count()

    def lifecycle() -> None:
        with MemoryMonitor(_config(monitoring_interval_s=0.05)) as mon:
            mon.on_sample(lambda _s: None)
            mon.sample_now()

    assert_no_leak(lifecycle, calls=20)
    assert threading.active_count() == threads


def test_monitor_level_flapping_does_not_leak() -> None:
    """Samples alternating OK/CRITICAL change the level every time without growing anything."""
    values = itertools.cycle([1 * GiB, 63 * GiB])
    mon = MemoryMonitor(_config(), probe=lambda: next(values))
    changes = [0]

    def on_change(_old: object, _new: object, _sample: object) -> None:
        changes[0] += 1

    sub = mon.on_level_change(on_change)
    try:
        assert_no_leak(mon.sample_now, calls=100)
        assert changes[0] > 700
    finally:
        sub.unsubscribe()
        mon.close()


def test_monitor_subscribe_unsubscribe_does_not_leak() -> None:
    """Subscribing and unsubscribing a handler per call leaves the subscriber lists as they were."""
    mon = MemoryMonitor(_config())

    def churn() -> None:
        sub = mon.on_operation(lambda _stats: None)
        sub.unsubscribe()

    try:
        assert_no_leak(churn, calls=100)
    finally:
        mon.close()


@pytest.mark.parametrize("precise", [False, True], ids=["default", "precise"])
def test_track_blocks_do_not_leak(precise: bool) -> None:
    """``with track(...)`` blocks and a ``@track`` function aggregate into per-name stats."""
    mon = MemoryMonitor(_config())
    mon.sample_now()

    @track("self-leaks-decorated", precise=precise, monitor=mon)
    def work() -> int:
        return sum(range(10))

    def block() -> None:
        with track("self-leaks-block", precise=precise, monitor=mon):
            bytes(256)
        work()

    try:
        assert_no_leak(block, calls=60)
        ops = mon.operations()
        assert ops["self-leaks-block"].count > 400
        assert ops["self-leaks-decorated"].count == ops["self-leaks-block"].count
    finally:
        mon.close()


def _governor() -> Governor:
    """A governor on a fixed probe (no pressure), with a history of 8 relief runs."""
    return Governor(
        _config(),
        probe=lambda: 1 * GiB,
        psi=False,
        cgroup=False,
        builtin_relievers=False,
        history_size=8,
    )


class _Shrinkable:
    """A cache-like object whose bound ``shrink`` the governor holds weakly."""

    def __init__(self) -> None:
        self.calls = 0

    def shrink(self) -> int:
        self.calls += 1
        return 0


def test_governor_relieve_and_level_do_not_leak() -> None:
    """``relieve()`` and ``level()`` with relievers coming and going keep a bounded history."""
    gov = _governor()
    keeper = _Shrinkable()
    gov.register_reliever(keeper.shrink, priority=PRIORITY_CACHE, name="keeper")
    gov.register_reliever(lambda: None, priority=PRIORITY_CACHE + 1, name="function")

    def cycle() -> None:
        temp = _Shrinkable()
        reg = gov.register_reliever(temp.shrink, priority=PRIORITY_CACHE)
        gov.relieve(reason="self-leaks")
        assert gov.level() is PressureLevel.NONE
        reg.unregister()
        # a reliever whose object dies without unregistering lapses on its own
        gone = _Shrinkable()
        gov.register_reliever(gone.shrink, priority=PRIORITY_CACHE)
        del gone

    try:
        assert_no_leak(cycle, calls=60)
        assert keeper.calls > 400
        assert len(gov.history()) == 8
        assert len(gov.relievers()) == 2
    finally:
        gov.close()


def test_real_governor_level_does_not_leak() -> None:
    """``level()`` on a governor reading the real RSS, cgroup files and PSI stays flat."""
    gov = Governor(_config(), history_size=8)
    try:
        assert_no_leak(gov.level, calls=100)
    finally:
        gov.close()


@pytest.mark.parametrize("mode", ["python", "rss"])
def test_memory_budget_blocks_do_not_leak(mode: Literal["python", "rss"]) -> None:
    """``with memory_budget(...)`` blocks and a budgeted function leave no state behind."""
    budget = memory_budget("64 MiB", mode=mode, name="self-leaks")

    @memory_budget("64 MiB", mode=mode)
    def work() -> bytes:
        return bytes(1024)

    def block() -> None:
        with budget:
            bytes(1024)
        work()

    # rss mode starts a sampler thread per block: fewer, slower calls
    assert_no_leak(block, calls=20 if mode == "python" else 10)
    assert not budget.exceeded


def test_snapshot_does_not_leak() -> None:
    """``snapshot()`` and the delta between two snapshots allocate nothing lasting."""

    def take() -> None:
        before = snapshot(label="self-leaks")
        after = snapshot()
        assert MemoryDelta.between(before, after).summary()

    assert_no_leak(take, calls=40)


# --------------------------------------------------------------------------- patterns


@pytest.mark.parametrize(
    "make",
    [
        lambda: LRUCache[str, bytes](32, register=False),
        lambda: LRUCache[str, bytes](max_bytes="8 KiB", register=False),
        lambda: TTLCache[str, bytes](32, 3600.0, register=False),
        lambda: LRUCache[str, bytes](32),
    ],
    ids=["count", "bytes", "ttl", "registered"],
)
def test_lru_cache_churn_does_not_leak(make: Callable[[], LRUCache[str, bytes]]) -> None:
    """Set/get/evict past the bound, with ``shrink`` now and then, keeps the cache at its bound."""
    cache = make()
    evicted = [0]
    counter = itertools.count()

    def churn() -> None:
        i = next(counter)
        key = f"k{i % 97}"
        cache[key] = b"v" * 200
        cache.get(key)
        cache.get(f"missing{i % 5}")
        if i % 64 == 0:
            evicted[0] += cache.shrink(0.5)

    assert_no_leak(churn, calls=150)
    assert len(cache) <= 40
    assert cache.stats().evictions > 500
    assert evicted[0] > 0


def test_cached_function_churn_does_not_leak() -> None:
    """A ``@cached`` function called with ever-new arguments stays at its cache's bound."""
    counter = itertools.count()

    @cached(LRUCache(32, register=False))
    def square(n: int) -> int:
        return n * n

    assert_no_leak(lambda: square(next(counter)), calls=150)


def test_short_lived_registered_components_do_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches and pools made and dropped per call die, and their dead registrations are pruned.

    An unclosed cache or pool leaves a dead registration in the process-wide governor
    until the registry reaches ``MAX_RELIEVERS`` (10 000, about 730 bytes each), then
    they are pruned. The bound is lowered to 64 above the live registrations here so
    that the detector sees several prune cycles in its window.
    """
    live = len(pressure.governor().relievers())
    monkeypatch.setattr(pressure, "MAX_RELIEVERS", live + 64)

    def make_and_drop() -> None:
        cache: LRUCache[int, int] = LRUCache(8)
        cache[1] = 1
        pool = ObjectPool(bytearray, max_size=2)
        pool.acquire().release()
        buffers = BufferPool(max_bytes="64 KiB")
        buffers.acquire(100).release()
        refs: list[weakref.ref[object]] = [
            weakref.ref(cache),
            weakref.ref(pool),
            weakref.ref(buffers),
        ]
        del cache, pool, buffers
        assert [r() for r in refs] == [None, None, None]

    assert_no_leak(make_and_drop, calls=80)
    assert len(pressure.governor()._relievers._registrations) <= live + 64


def test_buffer_pool_churn_does_not_leak() -> None:
    """Acquire/release of pooled and oversized buffers reuses memory and unmaps the rest."""
    pool = BufferPool(max_bytes="256 KiB", size_classes=[4096, 16384], name="self-leaks")
    counter = itertools.count()
    fds = _open_fds()

    def churn() -> None:
        i = next(counter)
        with pool.acquire(1000 + (i % 3) * 5000) as view:
            view[:4] = b"abcd"
        handle = pool.acquire(4096)
        handle.release()
        if i % 16 == 0:
            with pool.acquire(40_000) as big:  # larger than every class: dedicated buffer
                big[-1:] = b"z"
        if i % 100 == 0:
            pool.shrink(0.5)

    try:
        assert_no_leak(churn, calls=100)
        stats = pool.stats()
        assert stats.hits > 500
    finally:
        pool.close()
    assert _open_fds() == fds


def test_object_pool_churn_does_not_leak() -> None:
    """Acquire/release (by handle, by ``with`` and by value) keeps at most ``max_size`` idle."""
    pool: ObjectPool[bytearray] = ObjectPool(
        lambda: bytearray(512), reset=lambda b: b.__setitem__(0, 0), max_size=4
    )

    def churn() -> None:
        with pool.acquire() as buf:
            buf[0] = 1
        h1, h2 = pool.acquire(), pool.acquire()
        pool.release(h1.value)
        h2.release()

    try:
        assert_no_leak(churn, calls=150)
        assert pool.stats().hits > 500
    finally:
        pool.close()


def test_event_emitter_on_off_once_does_not_leak() -> None:
    """``on``/``off``, ``once`` fired by ``emit``, and weak listeners leave no listener behind."""
    emitter = EventEmitter()
    counter = itertools.count()
    fired = [0]

    class Listener:
        def handle(self, *_args: object) -> None:
            fired[0] += 1

    def listener(*_args: object) -> None:
        fired[0] += 1

    def churn() -> None:
        i = next(counter)
        emitter.on("data", listener)
        emitter.emit("data", i)
        emitter.off("data", listener)
        emitter.once(f"request-{i}", listener)
        emitter.emit(f"request-{i}", i)
        with emitter.on("tick", listener):
            emitter.emit("tick")
        weak_target = Listener()
        emitter.on("weak", weak_target.handle, weak=True)
        emitter.emit("weak")
        del weak_target  # its listener lapses with it

    try:
        assert_no_leak(churn, calls=100)
        assert fired[0] > 4 * 700
        assert emitter.event_names() == []
    finally:
        emitter.dispose()


def test_disposable_stack_use_dispose_does_not_leak() -> None:
    """``use``/``adopt``/``defer`` then dispose (and ``move``) run and drop every registration."""
    disposed = [0]

    def count() -> None:
        disposed[0] += 1

    def cycle() -> None:
        with DisposableStack() as stack:
            stack.use(io.BytesIO(b"x" * 64))
            stack.adopt(bytearray(64), lambda _b: count())
            stack.defer(count)
        other = DisposableStack()
        other.defer(count)
        other.move().dispose()
        other.dispose()

    assert_no_leak(cycle, calls=150)
    assert disposed[0] > 3 * 1000


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    """A file of 400 short lines (8.8 KB): several chunks of 4 KiB."""
    path = tmp_path / "lines.txt"
    path.write_bytes(b"".join(b"line %05d of the file\n" % i for i in range(400)))
    return path


def test_read_chunks_and_iter_lines_do_not_leak(text_file: Path) -> None:
    """Streaming a small file by chunks (plain, pooled) and by lines closes and frees everything."""
    size = text_file.stat().st_size
    pool = BufferPool(max_bytes="64 KiB", register=False)
    fds = _open_fds()

    def stream() -> None:
        assert sum(len(c) for c in read_chunks(text_file, 4096)) == size
        assert sum(len(c) for c in read_chunks(text_file, "8 KiB", pool=pool)) == size
        n = 0
        for _line in iter_lines(text_file, chunk_size=4096):
            n += 1
        assert n == 400
        with text_file.open("rb") as f:
            assert sum(1 for _ in iter_lines(f, chunk_size=1024, pool=pool)) == 400

    try:
        assert_no_leak(stream, calls=6)
    finally:
        pool.close()
    assert _open_fds() == fds


def _double(batch: list[int]) -> list[int]:
    return [x * 2 for x in batch]


@pytest.mark.parametrize("measure", ["rss", "peak"])
def test_adaptive_batch_processor_per_run_does_not_leak(measure: Literal["rss", "peak"]) -> None:
    """A processor made per call and ``run()`` over a small list leaves nothing, not even an fd."""
    gov = _governor()
    items = list(range(100))
    fds = _open_fds()

    def run() -> None:
        proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
            _double,
            max_memory="1 GiB",
            max_batch=16,
            governor=gov,
            measure=measure,
        )
        assert sum(proc.run(items)) == 9900

    try:
        assert_no_leak(run, calls=6)
    finally:
        gov.close()
    assert _open_fds() == fds


def test_adaptive_batch_processor_reused_does_not_leak() -> None:
    """One processor run many times keeps only its bounded size history.

    ``stats.sizes`` keeps the last 512 batch sizes (about 56 KB once full); the
    detector can only see a bounded history as flat once a whole history turns over
    within one round, so this test gives it a 64-entry history of the same kind.
    """
    gov = _governor()
    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        _double, max_memory="1 GiB", max_batch=16, governor=gov, measure="rss"
    )
    assert proc.stats.sizes.maxlen is not None
    proc.stats.sizes = collections.deque(maxlen=64)
    items = list(range(200))

    def run() -> None:
        assert sum(proc.run(items)) == 39800

    try:
        assert_no_leak(run, calls=10)
        assert proc.stats.batches > 64 * 2
        assert len(proc.stats.sizes) == 64
    finally:
        gov.close()


def _count_bytes(_key: str, data: bytes) -> int:
    return len(data)


def test_incremental_engine_recompute_does_not_leak(tmp_path: Path) -> None:
    """Runs over one unchanged and one changed input keep one result per input in memory."""
    stable = tmp_path / "stable.txt"
    stable.write_bytes(b"s" * 100)
    changing = tmp_path / "changing.txt"
    counter = itertools.count()
    engine: IncrementalEngine[int] = IncrementalEngine(
        _count_bytes, cache_dir=tmp_path / "cache", jobs=1
    )

    def recompute() -> None:
        i = next(counter)
        changing.write_bytes(b"c" * (i % 50 + 1))
        report = engine.run([stable, changing])
        assert report.results[str(changing)] == i % 50 + 1
        assert report.results[str(stable)] == 100
        assert engine.get(stable) == 100

    try:
        assert_no_leak(recompute, calls=10)
        assert len(engine) == 2
        assert engine.stats.computed > 10 * ROUNDS
    finally:
        engine.close()


# --------------------------------------------------------------------------- fronts


def test_prometheus_collect_does_not_leak() -> None:
    """Each scrape's ``collect()`` builds its metric families afresh and keeps none."""
    pytest.importorskip("prometheus_client", reason="needs the 'prometheus' extra")
    from memwarden.integrations.prometheus import MemwardenCollector

    mon = MemoryMonitor(_config())
    mon.sample_now()
    with track("self-leaks-scrape", monitor=mon):
        pass
    collector = MemwardenCollector(mon)

    def scrape() -> None:
        families = list(collector.collect())
        assert len(families) > 10

    try:
        # a scrape reads /proc and the cgroup files: a few calls a round suffice
        assert_no_leak(scrape, calls=5, warmup=1)
    finally:
        mon.close()
