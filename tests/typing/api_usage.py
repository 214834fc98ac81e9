"""memwarden's public API used as a user would, checked by ``mypy --strict`` from the user's side.

Like structlog's ``tests/typing/``: every public name is reached through ``import
memwarden`` (the lazy top-level exports) or an integration module, with precise
annotations, and ``assert_type`` where the type a user gets matters. The file is
also run as a script (``tests/unit/test_typing_usage.py``), so every line here must
work; it touches only temporary files and restores what it changes.

Not named ``test_*``: pytest does not collect it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path

import memwarden
from memwarden.integrations.prometheus import MemwardenCollector

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # pragma: no cover - Python 3.10
    from typing_extensions import assert_type

# --------------------------------------------------------------------------- measure


def measure() -> None:
    """Probes, snapshots and configuration."""
    # The process-wide monitor: memwarden.monitor is the function (its module is
    # memwarden.monitoring, so no import rebinds the name).
    mon: memwarden.MemoryMonitor = memwarden.monitor()
    assert_type(mon.level, memwarden.Level)

    n: int = memwarden.rss()
    assert_type(memwarden.rss(), int)
    assert n > 0
    assert_type(memwarden.peak_rss(), int)
    assert_type(memwarden.available_memory(), int)
    assert_type(memwarden.parse_size("1.5 GiB"), int)
    assert_type(memwarden.format_size(1536), str)
    assert memwarden.parse_size("1 KiB") == 1024

    limit: memwarden.MemoryLimit = memwarden.effective_limit()
    limit_bytes: int = limit.limit_bytes
    source: str = limit.source
    assert limit_bytes > 0
    assert source
    assert_type(memwarden.process_limit(), int | None)
    usage = memwarden.cgroup_usage()
    if usage is not None:
        assert usage.usage_bytes >= 0
    events = memwarden.memory_events()
    if events is not None:
        assert events.oom_kill >= 0
    stall = memwarden.pressure_stall()
    if stall is not None:
        assert stall.source

    cfg: memwarden.MemoryConfig = memwarden.load_config(profile="testing", pyproject=False)
    assert_type(cfg.max_memory_bytes, int)
    assert_type(cfg.warning_bytes, int)
    assert_type(cfg.monitoring_interval_s, float)
    assert_type(cfg.gc_interval_s, float | None)
    smaller: memwarden.MemoryConfig = cfg.with_(history_size=10)
    assert smaller.history_size == 10

    before: memwarden.MemorySnapshot = memwarden.snapshot(label="start")
    data = [bytes(100) for _ in range(100)]
    after = memwarden.snapshot()
    delta: memwarden.MemoryDelta = memwarden.MemoryDelta.between(before, after)
    assert_type(delta.rss_bytes, int)
    assert_type(before.python_heap_bytes, int | None)
    text: str = delta.summary()
    assert text
    assert_type(memwarden.sizeof(data), int)
    assert memwarden.sizeof(data) > 100 * 100
    del data

    with memwarden.HeapSession() as heap:
        kept = [bytearray(1000) for _ in range(10)]
    assert_type(heap, memwarden.HeapSession)
    assert_type(heap.peak_bytes, int)
    assert heap.peak_bytes >= 10_000
    del kept


# --------------------------------------------------------------------------- monitor and track


def monitor_and_track() -> None:
    """A private monitor, ``track`` as a block and as decorators that keep signatures."""
    cfg = memwarden.MemoryConfig(max_memory_bytes=memwarden.parse_size("64 GiB"))
    mon = memwarden.MemoryMonitor(cfg, probe=memwarden.rss)
    try:
        sample = mon.sample_now()
        rss_bytes: int = sample.rss_bytes
        assert rss_bytes > 0
        level: memwarden.Level = mon.level
        assert level is memwarden.Level.OK

        with memwarden.track("load", monitor=mon) as op:
            assert_type(op, memwarden.track)
            payload = bytes(4096)
        stats = op.last
        assert_type(stats, memwarden.OperationStats | None)
        assert stats is not None
        assert_type(stats.rss_delta_bytes, int)
        assert_type(stats.python_heap_delta_bytes, int | None)
        del payload

        @memwarden.track("parse", monitor=mon)
        def parse(text: str, *, base: int = 10) -> int:
            return int(text, base)

        assert_type(parse("ff", base=16), int)
        assert parse("ff", base=16) == 255

        @memwarden.track("fetch", precise=True, monitor=mon)
        async def fetch(n: int) -> list[int]:
            return list(range(n))

        async def fetch_all() -> list[int]:
            got = await fetch(3)
            assert_type(got, list[int])
            return got

        assert asyncio.run(fetch_all()) == [0, 1, 2]
        # The decorated async def is still a coroutine function: asyncio.run takes it.
        assert_type(asyncio.run(fetch(2)), list[int])
        ops: dict[str, object] = dict(mon.operations())
        assert {"load", "parse", "fetch"} <= set(ops)
    finally:
        mon.close()


# --------------------------------------------------------------------------- budgets and governor


def budgets_and_governor() -> None:
    """``memory_budget`` as a block and as a decorator; the governor and relievers."""
    with memwarden.memory_budget("64 MiB", name="block") as budget:
        chunk = bytes(1024)
    assert_type(budget.peak_bytes, int)
    exceeded: bool = budget.exceeded
    assert not exceeded
    del chunk

    @memwarden.memory_budget("64 MiB")
    def build(rows: int, label: str = "x") -> dict[str, int]:
        return {label: rows}

    assert_type(build(3), dict[str, int])
    assert_type(build(3, label="y"), dict[str, int])

    @memwarden.memory_budget("64 MiB", mode="rss", on_exceed="warn")
    async def abuild(rows: int) -> list[bytes]:
        return [b""] * rows

    assert_type(asyncio.run(abuild(2)), list[bytes])

    cfg = memwarden.load_config(profile="testing", pyproject=False)
    gov = memwarden.Governor(cfg, probe=lambda: 1024, builtin_relievers=False)
    try:
        freed: list[int] = []

        def drop_caches() -> int:
            freed.append(1)
            return 0

        reg = gov.register_reliever(drop_caches, priority=10, name="caches")
        run = gov.relieve(reason="example")
        assert_type(run.freed_bytes, int)
        assert freed == [1]
        level: memwarden.PressureLevel = gov.level()
        assert level is memwarden.PressureLevel.NONE
        under: bool = gov.is_under_pressure()
        assert not under
        reg.unregister()
    finally:
        gov.close()

    shared: memwarden.Governor = memwarden.governor()
    assert_type(shared.level(), memwarden.PressureLevel)
    detector: memwarden.PressureDetector | None = None
    assert detector is None


# --------------------------------------------------------------------------- caches


def caches() -> None:
    """Caches are typed mappings; ``cached`` functions keep their result type."""
    lru: memwarden.LRUCache[str, bytes] = memwarden.LRUCache(128, max_bytes="1 MiB")
    mapping: MutableMapping[str, bytes] = lru
    mapping["a"] = b"alpha"
    value: bytes | None = lru.get("a")
    assert value == b"alpha"
    assert_type(lru["a"], bytes)
    assert_type(lru.shrink(0.5), int)
    assert_type(lru.currsize, int)
    assert_type(len(lru), int)
    for key, val in lru.items():
        assert_type(key, str)
        assert_type(val, bytes)

    class Blob:
        def __init__(self, data: bytes) -> None:
            self.data = data

    weak: memwarden.WeakCache[str, Blob] = memwarden.WeakCache()
    blob = Blob(b"x")
    weak["b"] = blob
    assert_type(weak["b"], Blob)
    assert weak["b"] is blob

    @memwarden.cached
    def square(n: int) -> int:
        return n * n

    assert_type(square(4), int)

    @memwarden.cached(memwarden.LRUCache(maxsize=16))
    def greet(name: str) -> str:
        return "hi " + name

    assert_type(greet("ann"), str)
    assert square(4) == 16
    assert greet("ann") == "hi ann"
    with contextlib.suppress(TypeError):  # the parameters are kept: a wrong one is an error
        square("four")  # type: ignore[arg-type]

    @memwarden.cached
    async def double(n: int) -> int:
        return 2 * n

    assert_type(asyncio.run(double(2)), int)

    # Lookups are typed like MutableMapping's.
    assert_type(lru.get("a"), bytes | None)
    assert_type(lru.get("zz", b""), bytes)
    assert_type(lru.peek("a"), bytes | None)
    assert_type(lru.pop("zz", None), bytes | None)
    assert_type(weak.get("b"), Blob | None)

    class Repo:
        @memwarden.cached_method(maxsize=8)
        def load(self, key: str) -> bytes:
            return key.encode()

        @memwarden.cached_method
        def size(self, key: str, *, extra: int = 0) -> int:
            return len(key) + extra

    repo = Repo()
    assert_type(repo.load("k"), bytes)
    assert_type(repo.size("k", extra=1), int)
    assert repo.load("k") == b"k"
    assert repo.size("abc", extra=1) == 4
    # Through the class: the cache controls, typed.
    assert_type(Repo.load.stats().hits, int)
    assert Repo.load.stats().misses >= 1
    assert Repo.load.cache_for(repo) is not None
    assert_type(Repo.load.shrink(0.5), int)
    Repo.load.cache_clear(repo)
    assert_type(Repo.load(repo, "k"), bytes)
    with contextlib.suppress(AttributeError):  # the parameters are kept: 1 is no str
        repo.load(1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- pools and disposal


def pools_and_disposal() -> None:
    """Buffer and object pools, disposal stacks, event emitters."""
    with memwarden.BufferPool(max_bytes="1 MiB", register=False) as pool:
        with pool.acquire(4096) as view:
            assert_type(view, memoryview)
            view[:5] = b"hello"
        handle = pool.acquire(100)
        assert_type(handle.view, memoryview)
        assert_type(handle.capacity, int)
        handle.release()
        assert_type(pool.trim(), int)

    objects: memwarden.ObjectPool[bytearray] = memwarden.ObjectPool(
        lambda: bytearray(64), reset=lambda b: b.__setitem__(0, 0), max_size=4, register=False
    )
    with objects.acquire() as buf:
        assert_type(buf, bytearray)
        buf[0] = 1
    loan = objects.acquire()
    assert_type(loan.value, bytearray)
    objects.release(loan)
    objects.close()

    from memwarden.pressure import DEFAULT

    # governor= takes DEFAULT (the process-wide governor), None, or a Governor.
    for where in (DEFAULT, None, memwarden.governor()):
        memwarden.BufferPool(max_bytes="1 MiB", governor=where).close()

    closed: list[str] = []

    class Conn(memwarden.DisposableBase):
        def _dispose(self) -> None:
            closed.append("conn")

    with memwarden.DisposableStack() as stack:
        conn: Conn = stack.use(Conn())
        assert not conn.disposed
        data = stack.adopt(bytearray(8), lambda b: closed.append(f"{len(b)} bytes"))
        assert_type(data, bytearray)
        stack.defer(lambda: closed.append("deferred"))
    assert closed == ["deferred", "8 bytes", "conn"]

    class Named(memwarden.DisposableBase):
        def __init__(self, name: str) -> None:
            self.name = name

    named = Named("n")
    assert_type(named, Named)  # a subclass instance is itself, not Any
    assert_type(named.name, str)
    named.dispose()

    manager = memwarden.ResourceManager()
    tracked: Conn = manager.track(Conn())
    manager.dispose()
    assert tracked.disposed

    emitter = memwarden.EventEmitter(max_listeners=5)
    got: list[int] = []

    def on_data(n: int) -> None:
        got.append(n)

    with emitter.on("data", on_data):
        called: int = emitter.emit("data", 7)
        assert called == 1
    emitter.once("data", on_data)
    emitter.emit("data", 8)
    emitter.emit("data", 9)
    assert got == [7, 8]
    emitter.dispose()


# --------------------------------------------------------------------------- streams, batches


def streams_and_batches(tmp: Path) -> None:
    """Chunks are memoryviews, lines are str; batch processors keep their item types."""
    path = tmp / "data.txt"
    path.write_bytes(b"one\ntwo\nthree\n")

    chunks: Iterator[memoryview] = memwarden.read_chunks(path, "4 KiB")
    total = 0
    for chunk in chunks:
        assert_type(chunk, memoryview)
        total += len(chunk)
    assert total == path.stat().st_size

    lines: list[str] = list(memwarden.iter_lines(path))
    assert lines == ["one", "two", "three"]

    stats = memwarden.process_stream(path, lambda c: len(c), chunk_size=4)
    assert_type(stats.bytes_read, int)
    assert stats.bytes_read == path.stat().st_size

    async def read_async() -> list[str]:
        agen: AsyncIterator[str] = memwarden.async_iter_lines(path)
        out = [line async for line in agen]
        async for chunk in memwarden.async_read_chunks(path):
            assert_type(chunk, memoryview)
        return out

    assert asyncio.run(read_async()) == lines

    def parse(batch: list[str]) -> list[int]:
        return [len(s) for s in batch]

    proc: memwarden.AdaptiveBatchProcessor[str, int] = memwarden.AdaptiveBatchProcessor(
        parse, max_memory="256 MiB", max_batch=2, governor=None
    )
    sizes = proc.run(["a", "bb", "ccc"])
    assert_type(sizes, Iterator[int])
    assert list(sizes) == [1, 2, 3]
    assert_type(proc.run_all(["dddd"]), list[int])

    inferred = memwarden.AdaptiveBatchProcessor(parse, max_memory="256 MiB", governor=None)
    assert_type(inferred, memwarden.AdaptiveBatchProcessor[str, int])

    # A Governor is a memwarden.typing.PressureSource.
    watched: memwarden.Pipeline[str] = memwarden.Pipeline(maxsize=2, governor=memwarden.governor())
    assert watched.governor is memwarden.governor()

    pipe: memwarden.Pipeline[str] = memwarden.Pipeline(maxsize=2)
    pipe.add(str.upper)
    assert list(pipe.run(["a", "b"])) == ["A", "B"]

    # The output type follows the last stage added.
    lengths = memwarden.Pipeline(maxsize=2).add(str.upper).add(len, name="len")
    assert_type(lengths, memwarden.Pipeline[int])
    assert_type(lengths.run(["a"]), Iterator[int])
    assert list(lengths.run(["a", "bb"])) == [1, 2]
    doubled = memwarden.Pipeline([len]).add(lambda n: n * 2)
    assert_type(doubled.run(["abc"]), Iterator[int])
    assert list(doubled.run(["abc"])) == [6]

    def count(key: str, data: bytes) -> int:
        return len(data)

    with memwarden.IncrementalEngine(count, jobs=1, register=False) as engine:
        assert_type(engine, memwarden.IncrementalEngine[int])
        report = engine.run([path])
        assert_type(report.results, dict[str, int])
        one: int = engine.get(path)
        assert one == path.stat().st_size


# --------------------------------------------------------------------------- leaks and metrics


def _no_leak() -> None:
    rows = [bytes(10) for _ in range(10)]
    del rows


async def _no_leak_async() -> None:
    await asyncio.sleep(0)


def leaks_and_metrics() -> None:
    """``check_leaks`` returns a ``LeakReport``; the Prometheus collector reads a monitor."""
    report: memwarden.LeakReport = memwarden.check_leaks(
        _no_leak, rounds=4, calls_per_round=10, warmup=0
    )
    assert_type(report.leaked, bool)
    assert_type(report.growth_per_call_bytes, float)
    summary: str = report.summary()
    assert summary

    areport = asyncio.run(
        memwarden.check_leaks_async(_no_leak_async, rounds=4, calls_per_round=5, warmup=0)
    )
    assert_type(areport, memwarden.LeakReport)

    with memwarden.LeakDetector() as detector:
        detector.snapshot("before")
        detector.snapshot("after")
        assert_type(detector.detect_leaks(), memwarden.LeakReport)

    class Session:
        pass

    memwarden.assert_collected(Session())

    try:
        import prometheus_client  # noqa: F401  (the 'prometheus' extra)
    except ImportError:
        return
    mon = memwarden.MemoryMonitor(memwarden.MemoryConfig(max_memory_bytes=1 << 36))
    try:
        mon.sample_now()
        collector = MemwardenCollector(mon)
        assert_type(collector.monitor, memwarden.MemoryMonitor)
        names = {family.name for family in collector.collect()}
        assert "memwarden_rss_bytes" in names
    finally:
        mon.close()


# --------------------------------------------------------------------------- errors


def errors() -> None:
    """The error tree is what ``except`` clauses see."""
    caught: memwarden.ConfigurationError | None = None
    try:
        memwarden.parse_size("lots")
    except memwarden.ConfigurationError as exc:
        caught = exc
    assert isinstance(caught, ValueError)
    assert isinstance(caught, memwarden.MemwardenError)
    err: MemoryError = memwarden.MemoryBudgetExceededError("over", peak_bytes=2, limit_bytes=1)
    assert isinstance(err, memwarden.MemwardenError)
    timeout: TimeoutError = memwarden.PressureTimeoutError("waited")
    assert isinstance(timeout, memwarden.MemwardenError)
    warning: type[UserWarning] = memwarden.MemoryPressureWarning
    assert issubclass(warning, memwarden.MemwardenWarning)
    resource_warning: type[ResourceWarning] = memwarden.UndisposedResourceWarning
    assert issubclass(resource_warning, memwarden.MemwardenWarning)
    disposed: RuntimeError = memwarden.DisposedError("gone")
    exhausted: memwarden.MemwardenError = memwarden.PoolExhaustedError("empty")
    assert disposed
    assert exhausted
    version: str = memwarden.__version__
    assert version


def _rejected_calls() -> None:
    """Calls mypy must reject: the decorators keep the signatures (never run)."""

    @memwarden.track("t")
    def tracked(n: int) -> int:
        return n

    @memwarden.memory_budget("1 MiB")
    def budgeted(n: int) -> int:
        return n

    # Each ignore is needed only while the signature survives: with --strict
    # (warn_unused_ignores) an erased signature makes the ignore itself an error.
    tracked("1")  # type: ignore[arg-type]
    budgeted("1")  # type: ignore[arg-type]
    budgeted(1, 2)  # type: ignore[call-arg]
    memwarden.rss(1)  # type: ignore[call-arg]
    memwarden.LRUCache[str, bytes](8)["k"] = "text"  # type: ignore[assignment]
    memwarden.ObjectPool(bytearray, max_size=1).acquire().value.upper(1)  # type: ignore[call-arg]


def main() -> None:
    """Run every section."""
    measure()
    monitor_and_track()
    budgets_and_governor()
    caches()
    pools_and_disposal()
    with tempfile.TemporaryDirectory(prefix="memwarden-typing-") as tmp:
        streams_and_batches(Path(tmp))
    leaks_and_metrics()
    errors()


if __name__ == "__main__":
    main()
