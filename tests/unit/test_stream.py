"""Unit tests for memwarden.stream: chunked reads, bounded lines, async variants, pipelines."""

from __future__ import annotations

import asyncio
import io
import mmap
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden.exceptions import ConfigurationError, MemwardenError
from memwarden.stream import (
    DEFAULT_CHUNK_BYTES,
    LineTooLongError,
    Pipeline,
    async_iter_lines,
    async_read_chunks,
    iter_lines,
    process_stream,
    read_chunks,
)


def _reference_lines(data: bytes, *, keepends: bool = False) -> list[bytes]:
    """Split on \\n, strip a \\r before it; a final line without newline counts."""
    parts = data.split(b"\n")
    tail = parts.pop()
    out = [p if keepends else p.removesuffix(b"\r") for p in parts]
    if keepends:
        out = [p + b"\n" for p in out]
    if tail:
        out.append(tail)
    return out


class _FakeHandle:
    def __init__(self, size: int, log: list[str]) -> None:
        self._buf = bytearray(size + 100)  # pools may round up to a size class
        self.view = memoryview(self._buf)
        self._log = log

    def release(self) -> None:
        self._log.append("release")


class _FakePool:
    """Records acquire/release calls, as a BufferPool would see them."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def acquire(self, size: int) -> _FakeHandle:
        self.log.append(f"acquire {size}")
        return _FakeHandle(size, self.log)


# ---------------------------------------------------------------------------
# read_chunks


def test_read_chunks_from_path_reassembles_the_file(tmp_path: Path) -> None:
    """Concatenating the chunks of a path gives the file's bytes back exactly."""
    data = bytes(range(256)) * 1000 + b"tail"
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    chunks = [bytes(c) for c in read_chunks(path, 4096)]
    assert b"".join(chunks) == data
    assert all(len(c) == 4096 for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= 4096


def test_read_chunks_reuses_one_buffer(tmp_path: Path) -> None:
    """Every chunk is a view into the same memory: no allocation per chunk."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10_000)
    addresses = set()
    for chunk in read_chunks(str(path), 1000):
        addresses.add(id(chunk.obj))
    assert len(addresses) == 1


def test_read_chunks_buffer_is_page_aligned_mmap(tmp_path: Path) -> None:
    """Without a pool, the buffer is an anonymous mmap (page aligned)."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    chunk = next(iter(read_chunks(path, 1 << 20)))
    assert isinstance(chunk.obj, mmap.mmap)


def test_yielded_view_is_released_on_next_iteration(tmp_path: Path) -> None:
    """A kept view fails loudly after the next iteration instead of showing new data."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 10 + b"b" * 10)
    it = read_chunks(path, 10)
    first = next(it)
    assert bytes(first) == b"a" * 10
    second = next(it)
    assert bytes(second) == b"b" * 10
    with pytest.raises(ValueError):
        bytes(first)


def test_read_chunks_from_file_object_keeps_it_open_and_starts_at_position() -> None:
    """A file object is read from its current position and not closed."""
    f = io.BytesIO(b"0123456789")
    f.seek(3)
    assert b"".join(bytes(c) for c in read_chunks(f, 4)) == b"3456789"
    assert not f.closed


def test_read_chunks_accepts_read_only_objects() -> None:
    """An object with read() but no readinto() is copied into the buffer."""

    class OnlyRead:
        def __init__(self) -> None:
            self._f = io.BytesIO(b"hello world")

        def read(self, n: int) -> bytes:
            return self._f.read(min(n, 3))

    assert b"".join(bytes(c) for c in read_chunks(OnlyRead(), 8)) == b"hello world"


def test_read_chunks_from_socket_pair() -> None:
    """A socket is read with recv_into until the peer closes."""
    a, b = socket.socketpair()
    payload = b"z" * 50_000

    def send() -> None:
        a.sendall(payload)
        a.close()

    t = threading.Thread(target=send)
    t.start()
    try:
        got = b"".join(bytes(c) for c in read_chunks(b, 8192))
    finally:
        t.join(5)
        b.close()
    assert got == payload


def test_read_chunks_with_pool_borrows_and_returns_the_buffer(tmp_path: Path) -> None:
    """With a pool, one buffer is acquired, trimmed to chunk_size, and released at the end."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"q" * 2500)
    pool = _FakePool()
    sizes = [len(c) for c in read_chunks(path, 1000, pool=pool)]
    assert sizes == [1000, 1000, 500]
    assert pool.log == ["acquire 1000", "release"]


def test_read_chunks_releases_pool_buffer_when_abandoned(tmp_path: Path) -> None:
    """Closing the iterator early still gives the buffer back."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"q" * 5000)
    pool = _FakePool()
    it = read_chunks(path, 1000, pool=pool)
    next(it)
    it.close()
    assert pool.log == ["acquire 1000", "release"]


def test_read_chunks_empty_file_yields_nothing(tmp_path: Path) -> None:
    """An empty file gives no chunks (never an empty one)."""
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert list(read_chunks(path)) == []


@pytest.mark.parametrize("bad", [0, -5, "lots", "0 MiB"])
def test_read_chunks_rejects_bad_chunk_size(bad: object) -> None:
    """A non-positive or unparsable chunk size is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="chunk_size"):
        next(iter(read_chunks(io.BytesIO(b"x"), bad)))  # type: ignore[arg-type]


def test_read_chunks_accepts_size_strings() -> None:
    """chunk_size may be a size string such as '2 KiB'."""
    sizes = [len(c) for c in read_chunks(io.BytesIO(b"x" * 5000), "2 KiB")]
    assert sizes == [2048, 2048, 904]


def test_read_chunks_rejects_text_stream() -> None:
    """A text-mode stream gets a clear error asking for binary mode."""
    with pytest.raises(ConfigurationError, match="binary"):
        next(iter(read_chunks(io.StringIO("abc"))))


def test_read_chunks_rejects_unreadable_source() -> None:
    """An object that cannot be read is rejected with its repr in the message."""
    with pytest.raises(ConfigurationError, match="expected a path"):
        next(iter(read_chunks(42)))


def test_default_chunk_size_is_a_power_of_two_mib_range() -> None:
    """The default chunk size lies in the swept 16 KiB - 4 MiB range."""
    assert 16 * 1024 <= DEFAULT_CHUNK_BYTES <= 4 * 1024 * 1024


# ---------------------------------------------------------------------------
# iter_lines


def test_iter_lines_handles_lf_crlf_and_final_line() -> None:
    """\\n and \\r\\n end lines; a final line without newline is yielded; lone \\r stays."""
    data = b"one\ntwo\r\nthree\rstill three\n\nlast"
    assert list(iter_lines(io.BytesIO(data), chunk_size=3)) == [
        "one",
        "two",
        "three\rstill three",
        "",
        "last",
    ]


def test_iter_lines_keepends() -> None:
    """keepends keeps each line's own terminator."""
    data = b"a\r\nb\nc"
    assert list(iter_lines(io.BytesIO(data), keepends=True, chunk_size=2)) == ["a\r\n", "b\n", "c"]


def test_iter_lines_crlf_split_across_chunks() -> None:
    """A \\r\\n whose halves land in different chunks still ends one line."""
    data = b"abc\r\ndef\r\n"
    for chunk_size in range(1, 8):
        assert list(iter_lines(io.BytesIO(data), chunk_size=chunk_size)) == ["abc", "def"]


def test_iter_lines_multibyte_utf8_split_across_chunks() -> None:
    """A UTF-8 character cut by a chunk boundary decodes correctly."""
    text = "héllo wörld ✓\nsecond ✓ line\n"
    for chunk_size in (1, 2, 3, 5):
        got = list(iter_lines(io.BytesIO(text.encode()), chunk_size=chunk_size))
        assert got == ["héllo wörld ✓", "second ✓ line"]


def test_iter_lines_too_long_line_raises_clear_error() -> None:
    """A line over max_line_bytes raises LineTooLongError naming the line and bound."""
    data = b"short\n" + b"x" * 5000 + b"\nafter\n"
    with pytest.raises(LineTooLongError, match="line 2") as info:
        list(iter_lines(io.BytesIO(data), max_line_bytes=1000, chunk_size=64))
    assert info.value.limit_bytes == 1000
    assert info.value.line_number == 2
    assert isinstance(info.value, MemwardenError)
    assert isinstance(info.value, ValueError)


def test_iter_lines_too_long_line_detected_before_reading_it_all() -> None:
    """The bound trips while the line is still being read, not after buffering it whole."""
    reads = []

    class Counting(io.BytesIO):
        def readinto(self, b):  # type: ignore[no-untyped-def,override]
            n = super().readinto(b)
            reads.append(n)
            return n

    data = b"y" * 1_000_000
    with pytest.raises(LineTooLongError):
        list(iter_lines(Counting(data), max_line_bytes=10_000, chunk_size=4096))
    assert sum(reads) < 20_000


def test_iter_lines_line_exactly_at_the_bound_is_allowed() -> None:
    """A line of exactly max_line_bytes (plus \\r\\n) passes; one byte more fails."""
    ok = b"x" * 100 + b"\r\n"
    assert list(iter_lines(io.BytesIO(ok), max_line_bytes=100, chunk_size=7)) == ["x" * 100]
    with pytest.raises(LineTooLongError):
        list(iter_lines(io.BytesIO(b"x" * 101 + b"\n"), max_line_bytes=100, chunk_size=7))
    with pytest.raises(LineTooLongError):
        list(iter_lines(io.BytesIO(b"x" * 101), max_line_bytes=100, chunk_size=7))


def test_iter_lines_decoding_errors_follow_errors_argument() -> None:
    """Invalid UTF-8 raises with errors='strict' and is replaced with errors='replace'."""
    data = b"ok\nbad \xff here\n"
    with pytest.raises(UnicodeDecodeError):
        list(iter_lines(io.BytesIO(data)))
    assert list(iter_lines(io.BytesIO(data), errors="replace")) == ["ok", "bad \ufffd here"]
    assert list(iter_lines(io.BytesIO(data), errors="ignore")) == ["ok", "bad  here"]


def test_iter_lines_rejects_unknown_encoding_and_handler() -> None:
    """Unknown encodings and error handlers are ConfigurationErrors naming them."""
    with pytest.raises(ConfigurationError, match="klingon"):
        list(iter_lines(io.BytesIO(b"a"), encoding="klingon"))
    with pytest.raises(ConfigurationError, match="shout"):
        list(iter_lines(io.BytesIO(b"a"), errors="shout"))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_iter_lines_wide_encodings(encoding: str) -> None:
    """UTF-16/32 (where \\n is not the byte 0x0A) are decoded incrementally."""
    text = "α\r\nβ line\n\ngamma"
    got = list(iter_lines(io.BytesIO(text.encode(encoding)), encoding=encoding, chunk_size=3))
    assert got == ["α", "β line", "", "gamma"]


def test_iter_lines_wide_encoding_bound() -> None:
    """The line bound also applies to UTF-16 input."""
    data = ("z" * 1000 + "\n").encode("utf-16-le")
    with pytest.raises(LineTooLongError):
        list(iter_lines(io.BytesIO(data), encoding="utf-16-le", max_line_bytes=100))


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"\xc3\xa9", b"\n", b"\r", b"\r\n", b"xyz"]), max_size=60),
    chunk_size=st.integers(min_value=1, max_value=17),
    keepends=st.booleans(),
)
def test_iter_lines_matches_reference_split(
    data: list[bytes], chunk_size: int, keepends: bool
) -> None:
    """For any chunking, iter_lines equals a whole-buffer split on \\n with \\r\\n stripped."""
    raw = b"".join(data)
    expected = [line.decode() for line in _reference_lines(raw, keepends=keepends)]
    got = list(iter_lines(io.BytesIO(raw), chunk_size=chunk_size, keepends=keepends))
    assert got == expected


# ---------------------------------------------------------------------------
# asyncio


def test_async_read_chunks_from_path(tmp_path: Path) -> None:
    """The async reader gives the same bytes as the file, via a worker thread."""
    data = b"0123456789" * 1000
    path = tmp_path / "f.bin"
    path.write_bytes(data)

    async def main() -> bytes:
        return b"".join([bytes(c) async for c in async_read_chunks(path, 777)])

    assert asyncio.run(main()) == data


def test_async_read_chunks_from_stream_reader() -> None:
    """An asyncio StreamReader is read natively."""

    async def main() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(b"abc" * 1000)
        reader.feed_eof()
        return b"".join([bytes(c) async for c in async_read_chunks(reader, 100)])

    assert asyncio.run(main()) == b"abc" * 1000


def test_async_read_chunks_from_nonblocking_socket() -> None:
    """A non-blocking socket is read with loop.sock_recv_into into the reused buffer."""

    async def main() -> tuple[bytes, int]:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        loop = asyncio.get_running_loop()
        payload = b"s" * 200_000

        async def send() -> None:
            await loop.sock_sendall(a, payload)
            a.close()

        task = asyncio.create_task(send())
        buffers = set()
        parts = []
        async for chunk in async_read_chunks(b, 4096):
            buffers.add(id(chunk.obj))
            parts.append(bytes(chunk))
        await task
        b.close()
        return b"".join(parts), len(buffers)

    got, n_buffers = asyncio.run(main())
    assert got == b"s" * 200_000
    assert n_buffers == 1


def test_async_read_chunks_rejects_blocking_socket() -> None:
    """A blocking socket under asyncio is refused with advice."""

    async def main() -> None:
        a, b = socket.socketpair()
        try:
            async for _ in async_read_chunks(b):
                pass
        finally:
            a.close()
            b.close()

    with pytest.raises(ConfigurationError, match="setblocking"):
        asyncio.run(main())


def test_async_iter_lines(tmp_path: Path) -> None:
    """async_iter_lines yields the same lines as iter_lines."""
    data = b"x\r\ny\n\nz"
    path = tmp_path / "f.txt"
    path.write_bytes(data)

    async def main() -> list[str]:
        return [line async for line in async_iter_lines(path, chunk_size=2)]

    assert asyncio.run(main()) == list(iter_lines(path, chunk_size=2)) == ["x", "y", "", "z"]


# ---------------------------------------------------------------------------
# process_stream


def test_process_stream_counts_and_calls_fn(tmp_path: Path) -> None:
    """process_stream calls fn per chunk and reports bytes and chunks."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"k" * 10_001)
    seen: list[int] = []
    ticks = iter([10.0, 12.5])
    stats = process_stream(
        path, lambda c: seen.append(len(c)), chunk_size=1000, clock=lambda: next(ticks)
    )
    assert stats.bytes_read == 10_001
    assert stats.chunks == 11
    assert seen == [1000] * 10 + [1]
    assert stats.elapsed_s == 2.5
    assert stats.bytes_per_s == pytest.approx(10_001 / 2.5)


def test_process_stream_with_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """progress=True draws a rich bar (to the console) and still processes every byte."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"k" * 50_000)
    total = []
    stats = process_stream(path, lambda c: total.append(len(c)), chunk_size=4096, progress=True)
    assert sum(total) == stats.bytes_read == 50_000
    out = capsys.readouterr()
    assert "reading" in out.err  # the bar goes to stderr, never into program output


# ---------------------------------------------------------------------------
# Pipeline


def test_pipeline_runs_stages_in_order() -> None:
    """Items pass through every stage in order."""
    pipe = Pipeline([lambda x: x + 1]).add(lambda x: x * 10, name="times10")
    assert list(pipe.run(range(50))) == [(i + 1) * 10 for i in range(50)]
    assert [s.items for s in pipe.stats.stages] == [50, 50]
    assert pipe.stats.stages[1].name == "times10"


def test_pipeline_backpressure_bounds_items_in_flight() -> None:
    """With a slow consumer, the producer stops pulling input: in-flight items stay bounded."""
    pulled = 0

    def source():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i

    pipe: Pipeline[int] = Pipeline([lambda x: x, lambda x: x], maxsize=2)
    it = pipe.run(source())
    assert next(it) == 0
    time.sleep(0.5)  # let the producer run as far as it can
    # 3 queues x 2 + one item held by each of 3 threads + the one consumed
    assert pulled <= 3 * 2 + 3 + 1
    assert pipe.stats.max_in_flight <= 3 * 2
    rest = list(it)
    assert rest == list(range(1, 10_000))


def test_pipeline_stage_error_is_reraised_and_threads_stop() -> None:
    """An exception in a stage surfaces from run() and all pipeline threads end."""

    def boom(x: int) -> int:
        if x == 7:
            raise KeyError("seven")
        return x

    before = threading.active_count()
    with pytest.raises(KeyError, match="seven"):
        list(Pipeline([boom]).run(range(100)))
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_pipeline_early_exit_stops_threads() -> None:
    """Leaving the loop early stops the producer and stages."""
    before = threading.active_count()
    it = Pipeline([lambda x: x], maxsize=1).run(iter(range(1_000_000)))
    assert next(it) == 0
    it.close()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_pipeline_input_error_is_reraised() -> None:
    """An error raised by the input iterable reaches the consumer."""

    def bad():  # type: ignore[no-untyped-def]
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(Pipeline([lambda x: x]).run(bad()))


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_pipeline_requires_bounded_queues(bad: object) -> None:
    """maxsize must be a positive int: an unbounded queue would defeat backpressure."""
    with pytest.raises(ConfigurationError, match="maxsize"):
        Pipeline(maxsize=bad)  # type: ignore[arg-type]


def test_pipeline_producer_pauses_under_memory_pressure() -> None:
    """With a governor at HIGH, the producer waits for relief before feeding items."""

    class Gov:
        def __init__(self) -> None:
            self.levels = [0, 2, 3, 0]
            self.waits: list[float | None] = []

        def level(self) -> int:
            return self.levels.pop(0) if self.levels else 0

        def wait_for_relief(self, timeout: float | None = None) -> None:
            self.waits.append(timeout)

    gov = Gov()
    pipe = Pipeline([lambda x: x], governor=gov, pressure_timeout_s=3.0)
    assert list(pipe.run(range(10))) == list(range(10))
    assert gov.waits == [3.0, 3.0]
    assert pipe.stats.pressure_waits == 2


def test_pipeline_rejects_a_governor_without_level() -> None:
    """A governor must offer level(); anything else is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="governor"):
        Pipeline(governor=object())


def test_iter_lines_too_long_line_inside_one_chunk() -> None:
    """A long line wholly inside one large chunk is caught with its right line number."""
    data = b"a\r\nb\n" + b"x" * 500 + b"\nafter\n"
    with pytest.raises(LineTooLongError, match="line 3") as info:
        list(iter_lines(io.BytesIO(data), max_line_bytes=100))
    assert info.value.seen_bytes == 500
    ok = b"y" * 100 + b"\r\n" + b"z\n"
    assert list(iter_lines(io.BytesIO(ok), max_line_bytes=100)) == ["y" * 100, "z"]


def test_line_too_long_error_lives_in_the_exception_tree() -> None:
    """``LineTooLongError`` is defined in memwarden.exceptions and re-exported from stream."""
    import memwarden.exceptions as exceptions
    import memwarden.stream as stream

    assert stream.LineTooLongError is exceptions.LineTooLongError
    assert exceptions.LineTooLongError.__module__ == "memwarden.exceptions"
    assert issubclass(exceptions.LineTooLongError, exceptions.MemwardenError)
    assert issubclass(exceptions.LineTooLongError, ValueError)
    assert "LineTooLongError" in exceptions.__all__


def test_a_non_blocking_source_without_data_is_an_io_condition() -> None:
    """An empty non-blocking pipe raises BlockingIOError (EAGAIN), not a ConfigurationError."""
    import errno
    import os

    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        with io.FileIO(r, "rb", closefd=False) as src:
            with pytest.raises(BlockingIOError) as info:
                list(read_chunks(src, 4096))
            assert info.value.errno == errno.EAGAIN
            assert not isinstance(info.value, ConfigurationError)
            assert "non-blocking" in str(info.value)
            os.write(w, b"ready\n")
            chunks = read_chunks(src, 4096)
            assert bytes(next(chunks)) == b"ready\n"
            with pytest.raises(BlockingIOError):
                next(chunks)  # drained again, writer still open
    finally:
        os.close(r)
        os.close(w)


def test_pipeline_governor_is_explicit() -> None:
    """Pipeline watches pressure only when asked: DEFAULT is the process-wide governor."""
    from memwarden.pressure import DEFAULT, governor

    assert Pipeline().governor is None
    assert Pipeline(governor=None).governor is None
    assert Pipeline(governor=DEFAULT).governor is governor()
    pipe = Pipeline([str], governor=DEFAULT)
    assert list(pipe.run(range(3))) == ["0", "1", "2"]
