"""memwarden.profiler: estimates on workloads of known size, live vs allocations, peak, tags,
the Profile operations and its file formats, on the native backend and the tracemalloc fallback."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from memwarden import profiler
from memwarden.exceptions import ConfigurationError, TraceFormatError
from memwarden.profiler import Frame, Profile, ProfilerError, StackSample

native = pytest.mark.skipif(
    not profiler.native_available(),
    reason=f"the C extension is not built: {profiler.native_error()}",
)

MiB = 2**20
HERE = __file__


@pytest.fixture(autouse=True)
def _stopped() -> Iterator[None]:
    profiler.stop()
    yield
    profiler.stop()


def _line_bytes(profile: Profile, marker: str) -> int:
    """Estimated bytes attributed to the line of this file that carries ``# <marker>``."""
    lineno = _lineno(marker)
    return sum(e.size_bytes for e in profile.top("line", n=None) if e.key == f"{HERE}:{lineno}")


def _lineno(marker: str) -> int:
    with Path(HERE).open() as fh:
        for number, text in enumerate(fh, 1):
            if text.rstrip().endswith(f"# {marker}") and "_lineno(" not in text:
                return number
    raise AssertionError(marker)


def _big_blocks(n: int) -> list[bytearray]:
    return [bytearray(MiB) for _ in range(n)]  # big-blocks


def _small_objects(total: int) -> list[bytes]:
    return [bytes(100) for _ in range(total // 133)]  # small-objects


def _exact_small(objs: list[bytes]) -> int:
    # bytes(100) asks the allocator for 33 + 100 bytes; the list's own buffer is sized
    # by its growth pattern and allocated at the same line.
    return sum(sys.getsizeof(o) for o in objs) + sys.getsizeof(objs)


@native
def test_synthetic_workload_estimates_within_15_percent() -> None:
    """200 x 1 MiB at one line and 50 MiB of 133-byte objects at another: both within ±15 %."""
    profiler.start(interval_bytes=64 * 1024)
    big = _big_blocks(200)
    small = _small_objects(50 * MiB)
    live = profiler.snapshot("live")
    profiler.stop()
    exact_big = 200 * sys.getsizeof(bytearray(MiB)) + sys.getsizeof(big)
    assert _line_bytes(live, "big-blocks") == pytest.approx(exact_big, rel=0.15)
    assert _line_bytes(live, "small-objects") == pytest.approx(_exact_small(small), rel=0.15)
    top = live.top("line", n=2)
    assert [e.key for e in top] == [
        f"{HERE}:{_lineno('big-blocks')}",
        f"{HERE}:{_lineno('small-objects')}",
    ]
    assert all(e.samples > 100 for e in top)
    # The standard error is reported and consistent with the sample count.
    assert 0 < top[1].relative_error < 0.1


@native
def test_default_interval_large_blocks() -> None:
    """At the default 512 KiB, 200 x 1 MiB is within ±15 % and carries ~hundreds of samples."""
    profiler.start()
    big = _big_blocks(200)
    live = profiler.snapshot()
    assert live.interval_bytes == profiler.DEFAULT_INTERVAL_BYTES
    assert _line_bytes(live, "big-blocks") == pytest.approx(200 * MiB, rel=0.15)
    del big


@native
def test_live_and_allocations_after_frees_and_peak() -> None:
    """Freed blocks leave the live heap but stay in allocations; the peak keeps them."""
    # 32 KiB: ~640 samples for the 20 MiB of small objects, so ±15 % is ~4 standard errors.
    profiler.start(interval_bytes=32 * 1024)
    big = _big_blocks(100)
    del big
    small = _small_objects(20 * MiB)
    live = profiler.snapshot("live")
    allocs = profiler.snapshot("allocations")
    peak = profiler.peak()
    profiler.stop()
    assert _line_bytes(live, "big-blocks") < 2 * MiB
    assert _line_bytes(allocs, "big-blocks") == pytest.approx(100 * MiB, rel=0.15)
    assert _line_bytes(peak, "big-blocks") == pytest.approx(100 * MiB, rel=0.15)
    assert _line_bytes(live, "small-objects") == pytest.approx(_exact_small(small), rel=0.15)
    assert allocs.kind == "allocations"
    assert peak.kind == "peak"
    assert live.stats["frees_tracked"] > 50
    # After reset_peak the peak is the live heap now.
    profiler.reset_peak()
    assert _line_bytes(profiler.peak(), "big-blocks") < 2 * MiB


def _recurse(depth: int) -> bytearray:
    if depth == 0:
        return bytearray(4 * MiB)
    return _recurse(depth - 1)


@native
def test_stacks_are_recorded_innermost_first_and_truncated_at_max_frames() -> None:
    """A deep stack keeps its innermost max_frames frames and is marked truncated."""
    profiler.start(interval_bytes=1024, max_frames=10)
    keep = _recurse(40)
    live = profiler.snapshot()
    profiler.stop()
    deep = [s for s in live.stacks if s.frames[0].function == "_recurse" and s.size_bytes > MiB]
    assert deep
    assert len(deep[0].frames) == 10
    assert deep[0].truncated
    assert all(f.function == "_recurse" for f in deep[0].frames)
    assert len(keep) == 4 * MiB


@native
def test_top_groupings_and_frame_filter() -> None:
    """top() groups by line, function, file and stack; frame_filter picks the attributed frame."""
    profiler.start(interval_bytes=4096)
    big = _big_blocks(20)
    live = profiler.snapshot()
    profiler.stop()
    by_function = live.top("function", n=None)
    assert any(e.key == f"{HERE}:_big_blocks.<locals>.<listcomp>" for e in by_function) or any(
        e.key == f"{HERE}:_big_blocks" for e in by_function
    )
    files = {e.key for e in live.top("file", n=None)}
    assert HERE in files
    stacks = live.top("stack", n=3)
    assert "test_top_groupings_and_frame_filter" in stacks[0].key
    assert stacks[0].frames[0].filename == HERE
    # Attribute to the test's own frame rather than the helper's line.
    caller = live.top("function", n=1, frame_filter=lambda f: f.function.startswith("test_"))
    assert caller[0].key == f"{HERE}:test_top_groupings_and_frame_filter"
    assert caller[0].size_bytes == pytest.approx(20 * MiB, rel=0.15)
    with pytest.raises(ConfigurationError, match="by='bytes'"):
        live.top("bytes")  # type: ignore[arg-type]
    del big


@native
def test_diff_shows_growth_between_snapshots() -> None:
    """diff() subtracts per stack: the growth between two snapshots is the second batch."""
    profiler.start(interval_bytes=64 * 1024)
    first = _big_blocks(10)
    before = profiler.snapshot()
    second = _big_blocks(30)
    after = profiler.snapshot()
    profiler.stop()
    growth = after.diff(before)
    assert growth.kind == "diff"
    assert _line_bytes(growth, "big-blocks") == pytest.approx(30 * MiB, rel=0.15)
    assert len(first) + len(second) == 40


@native
def test_context_tags_under_threads() -> None:
    """Eight threads allocating and freeing under their own tags: each tag's live bytes."""
    profiler.start(interval_bytes=16 * 1024)
    kept: dict[int, list[bytearray]] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with profiler.tag(f"worker-{i}"):
                mine = []
                for k in range(200):
                    block = bytearray(64 * 1024 * (1 + i % 3))
                    if k % 2 == 0:
                        mine.append(block)
                    del block
                kept[i] = mine
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    live = profiler.snapshot()
    stats = profiler.stats()
    profiler.stop()
    assert errors == []
    tags = live.by_tag()
    for i in range(8):
        expected = sum(len(b) for b in kept[i])
        assert tags[f"worker-{i}"].total_bytes == pytest.approx(expected, rel=0.25)
    assert len({s.thread_id for s in live.stacks if s.tag is not None}) == 8
    assert stats["dropped_stacks"] == 0
    assert stats["dropped_live"] == 0
    assert profiler.current_tag() is None


@native
def test_context_tags_under_asyncio_tasks() -> None:
    """Interleaved asyncio tasks keep their own tags across awaits."""
    profiler.start(interval_bytes=16 * 1024)
    kept: list[bytearray] = []

    async def task(name: str, blocks: int) -> None:
        with profiler.tag(name):
            for _ in range(blocks):
                kept.append(bytearray(256 * 1024))
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(task("small", 20), task("large", 60))

    asyncio.run(main())
    live = profiler.snapshot()
    profiler.stop()
    tags = live.by_tag()
    assert tags["small"].total_bytes == pytest.approx(20 * 256 * 1024, rel=0.2)
    assert tags["large"].total_bytes == pytest.approx(60 * 256 * 1024, rel=0.2)


@native
def test_exceptions_inside_sampled_code_are_preserved() -> None:
    """Sampling inside except blocks and during unwinding leaves the exception state intact."""
    profiler.start(interval_bytes=1)  # every allocation is sampled

    def fail(n: int) -> None:
        junk = [str(i) * 10 for i in range(n)]
        raise KeyError(len(junk))

    seen = []
    for n in range(50):
        try:
            fail(n)
        except KeyError as exc:
            more = [bytearray(100) for _ in range(20)]
            seen.append((sys.exc_info()[1] is exc, exc.args, len(more)))
    assert seen == [(True, (n,), 20) for n in range(50)]
    with pytest.raises(ZeroDivisionError):
        _ = [bytearray(10) for _ in range(10)] and 1 / 0
    stats = profiler.stats()
    profiler.stop()
    assert stats["samples"] > 1000


@native
def test_allocation_without_the_gil_is_sampled_without_a_stack() -> None:
    """RAW allocations made without the GIL go under <no GIL>; freed ones leave the live heap."""
    import memwarden._sampler as sampler

    profiler.start(interval_bytes=64 * 1024)
    addresses = sampler._test_raw_alloc_nogil(64, MiB, True)
    sampler._test_raw_alloc_nogil(64, MiB, False)
    live = profiler.snapshot()
    allocs = profiler.snapshot("allocations")
    no_gil = [s for s in live.stacks if s.frames == (profiler.NO_GIL_FRAME,)]
    assert sum(s.size_bytes for s in no_gil) == pytest.approx(64 * MiB, rel=0.15)
    assert all(s.thread_id == 0 or s.tag is None for s in no_gil)
    assert sum(
        s.size_bytes for s in allocs.stacks if s.frames == (profiler.NO_GIL_FRAME,)
    ) == pytest.approx(128 * MiB, rel=0.15)
    sampler._test_raw_free(addresses)
    after = profiler.snapshot()
    assert sum(s.size_bytes for s in after.stacks if s.frames == (profiler.NO_GIL_FRAME,)) < MiB
    # A real GIL-free RAW allocation: zlib inflates with the GIL released.
    import zlib

    payload = zlib.compress(os.urandom(1 << 20))
    assert len(zlib.decompress(payload)) == 1 << 20
    assert profiler.stats()["samples_without_gil"] > 50
    profiler.stop()


@native
def test_start_stop_cycles_reset_the_tables() -> None:
    """Repeated start/stop: each start begins an empty profile; snapshots work after stop."""
    for _ in range(15):
        profiler.start(interval_bytes=32 * 1024)
        assert profiler.is_running()
        keep = _big_blocks(4)
        profiler.stop()
        assert not profiler.is_running()
        live = profiler.snapshot()
        assert _line_bytes(live, "big-blocks") == pytest.approx(4 * MiB, rel=0.3)
        assert live.stats["stacks"] < 200
        del keep
    profiler.start()
    with pytest.raises(ProfilerError, match="already running"):
        profiler.start()
    with pytest.raises(ProfilerError, match="before clear"):
        profiler.clear()
    profiler.stop()
    profiler.clear()
    with pytest.raises(ProfilerError, match="has not been started"):
        profiler.snapshot()
    with pytest.raises(ProfilerError, match="has not been started"):
        profiler.stats()


def test_bad_arguments_are_named() -> None:
    """start() names a bad interval, depth or backend."""
    with pytest.raises(ConfigurationError, match="interval_bytes"):
        profiler.start(interval_bytes="lots")
    with pytest.raises(ConfigurationError, match="max_frames=0"):
        profiler.start(max_frames=0)
    with pytest.raises(ConfigurationError, match="backend='gpu'"):
        profiler.start(backend="gpu")
    with pytest.raises(ConfigurationError, match="kind='heap'"):
        profiler.snapshot("heap")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be a str"), profiler.tag(3):  # type: ignore[arg-type]
        pass


def test_backend_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMWARDEN_PROFILER_BACKEND=tracemalloc forces the fallback; a bad value is named."""
    monkeypatch.setenv("MEMWARDEN_PROFILER_BACKEND", "tracemalloc")
    assert profiler.backend() == "tracemalloc"
    monkeypatch.setenv("MEMWARDEN_PROFILER_BACKEND", "bogus")
    with pytest.raises(ConfigurationError, match="MEMWARDEN_PROFILER_BACKEND"):
        profiler.start()


def test_tracemalloc_fallback_gives_the_same_profile_type() -> None:
    """The fallback is exact: Profile rows with zero variance; allocations are refused."""
    import tracemalloc

    was_tracing = tracemalloc.is_tracing()
    profiler.start(backend="tracemalloc", max_frames=8)
    assert profiler.backend() == "tracemalloc"
    big = _big_blocks(10)
    live = profiler.snapshot()
    assert live.backend == "tracemalloc"
    assert _line_bytes(live, "big-blocks") == pytest.approx(10 * MiB, rel=0.01)
    assert all(s.variance == 0 for s in live.stacks)
    with pytest.raises(ProfilerError, match="native backend"):
        profiler.snapshot("allocations")
    profiler.stop()
    assert tracemalloc.is_tracing() == was_tracing
    # Readable after stop.
    assert _line_bytes(profiler.snapshot(), "big-blocks") == pytest.approx(10 * MiB, rel=0.01)
    del big


def _sample_profile() -> Profile:
    a = Frame("/app/x.py", "load", 10)
    b = Frame("/app/x.py", "main", 3)
    c = Frame("/app/y;z.py", "parse", 7)
    return Profile(
        kind="live",
        backend="native",
        interval_bytes=1024,
        stacks=(
            StackSample((a, b), None, 11, 5000, 5, 1.0e6),
            StackSample((c, b), "req", 12, 3000, 3, 4.0e5),
            StackSample((a, b), "req", 12, 1000, 1, 1.0e5, truncated=True),
        ),
        stats={"samples": 9.0},
        time_s=1.5,
    )


def test_profile_round_trips_through_json() -> None:
    """to_dict/from_dict is lossless through JSON; a bad dict raises TraceFormatError."""
    p = _sample_profile()
    assert Profile.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert Profile.from_dict(json.loads(profiler.dumps(p))) == p
    with pytest.raises(TraceFormatError, match=r"trace\.jsonl: not a memwarden profile"):
        Profile.from_dict({"format": "x"}, source="trace.jsonl")
    broken = p.to_dict()
    broken["stacks"][0]["frames"] = [99]
    with pytest.raises(TraceFormatError, match="malformed"):
        Profile.from_dict(broken)


def test_profile_grouping_arithmetic() -> None:
    """top sums by key with errors in quadrature; by_tag, by_thread, merge and diff add up."""
    p = _sample_profile()
    rows = p.top("function", n=None, frame_filter=None)
    assert rows[0].key == "/app/x.py:load"
    assert rows[0].size_bytes == 6000
    assert rows[0].samples == 6
    assert rows[0].error_bytes == round((1.0e6 + 1.0e5) ** 0.5)
    assert p.by_tag()["req"].total_bytes == 4000
    assert p.by_thread()[11].total_bytes == 5000
    doubled = profiler.merge([p, p])
    assert doubled.total_bytes == 2 * p.total_bytes
    assert doubled.diff(p).total_bytes == p.total_bytes
    assert p.diff(p).stacks == ()


def test_collapsed_output_parses(tmp_path: Path) -> None:
    """Collapsed stacks: outermost first, ';'-separated, value last; ';' in names escaped."""
    p = _sample_profile()
    path = p.write_collapsed(tmp_path / "p.collapsed")
    lines = path.read_text().splitlines()
    parsed = {}
    for line in lines:
        stack, value = line.rsplit(" ", 1)
        parsed[stack] = int(value)
    assert parsed["main (/app/x.py:3);load (/app/x.py:10)"] == 6000
    assert parsed["main (/app/x.py:3);parse (/app/y,z.py:7)"] == 3000
    assert sum(parsed.values()) == p.total_bytes


def test_files_are_created_exclusively_and_never_through_symlinks(tmp_path: Path) -> None:
    """An existing file is not overwritten unless asked; a symlink is never followed."""
    p = _sample_profile()
    target = tmp_path / "out.pb.gz"
    p.write_pprof(target)
    with pytest.raises(FileExistsError):
        p.write_pprof(target)
    p.write_pprof(target, overwrite=True)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        p.write_collapsed(link, overwrite=True)
    with pytest.raises(FileExistsError):
        p.write_collapsed(link)
    assert victim.read_text() == "keep"


def test_pprof_encoding_is_a_valid_gzipped_protobuf() -> None:
    """The pprof bytes are gzip and start with the sample_type field; strings are present."""
    raw = gzip.decompress(_sample_profile().pprof_bytes())
    assert raw[0] == (1 << 3) | 2  # field 1 (sample_type), length-delimited
    for text in (b"inuse_space", b"bytes", b"/app/x.py", b"load", b"parse", b"req"):
        assert text in raw


def test_the_tracemalloc_fallback_goes_through_the_tracing_owner() -> None:
    """The fallback holds tracing like any other user: an outer user's peak survives it."""
    from memwarden import tracing

    outer = tracing.acquire(4, name="outer")
    try:
        block = bytearray(8 * 2**20)
        del block
        profiler.start(backend="tracemalloc", max_frames=4)
        profiler.reset_peak()
        profiler.stop()
        assert tracing.is_tracing()  # the outer user still holds it
        assert outer.peak_bytes() >= 8 * 2**20 - 4096  # less bookkeeping freed since its start
    finally:
        outer.release()
