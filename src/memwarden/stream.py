"""Stream files, sockets and pipes in bounded memory: the playbook's streaming pattern.

``read_chunks`` reads with ``readinto`` into one reused, page-aligned buffer (or a
buffer borrowed from a pool), so a 100 GiB file costs one chunk of memory and no
allocation per chunk. ``iter_lines`` splits that stream into lines with a hard bound
on line length. ``async_read_chunks``/``async_iter_lines`` do the same under asyncio,
``process_stream`` drives a callback with an optional progress bar, and ``Pipeline``
chains stages over bounded queues across threads so a fast producer blocks instead
of filling memory (backpressure).

The anti-pattern this replaces is "synchronous file loading": ``data = f.read()``
holds the whole file (and often a decoded copy of it) at once.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import logging
import mmap
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Generic, Protocol, TypeGuard, TypeVar, Union, cast

from memwarden._registry import DEFAULT, DefaultType
from memwarden._units import SizeLike, parse_size
from memwarden.exceptions import (
    ConfigurationError,
    LineTooLongError,
    PressureTimeoutError,
)
from memwarden.levels import PressureLevel
from memwarden.typing import BufferHandle, PressureSource, SupportsAcquire

if TYPE_CHECKING:
    import socket

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_LINE_BYTES",
    "AsyncStreamSource",
    "LineTooLongError",
    "Pipeline",
    "PipelineStats",
    "StreamSource",
    "StreamStats",
    "SupportsAsyncRead",
    "SupportsRead",
    "SupportsReadinto",
    "async_iter_lines",
    "async_read_chunks",
    "iter_lines",
    "process_stream",
    "read_chunks",
]

log = logging.getLogger("memwarden.stream")

DEFAULT_CHUNK_BYTES = 1024 * 1024
"""1 MiB: chosen from a 16 KiB - 4 MiB sweep (warm and cold cache); see docs/streaming.md."""

_SPLIT_SLICE_BYTES = 32 * 1024

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
"""A line longer than 16 MiB is almost always a missing newline (binary or minified input)."""


class SupportsReadinto(Protocol):
    """A binary source read in place: ``readinto`` fills the view, returns the bytes read.

    Raw files, buffered files, ``io.BytesIO`` and sockets' ``recv_into`` have this shape;
    None means a non-blocking source had nothing ready.
    """

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class SupportsRead(Protocol):
    """A binary source read by copy: ``read(n)`` returns up to ``n`` bytes, empty at the end."""

    def read(self, size: int, /) -> bytes: ...


class SupportsAsyncRead(Protocol):
    """An asyncio byte stream, such as ``asyncio.StreamReader``."""

    async def read(self, n: int, /) -> bytes: ...


StreamSource = Union[
    str, "os.PathLike[str]", SupportsReadinto, SupportsRead, IO[bytes], "socket.socket"
]
"""A path, a binary file object (anything with ``readinto`` or ``read``) or a socket."""

AsyncStreamSource = StreamSource | SupportsAsyncRead
"""What the async readers take: a :data:`StreamSource` or an asyncio byte stream."""

T = TypeVar("T")
U = TypeVar("U")


# ---------------------------------------------------------------------------
# buffers and sources


def _chunk_bytes(chunk_size: SizeLike, *, name: str = "chunk_size") -> int:
    n = parse_size(chunk_size, source=name)
    if n <= 0:
        raise ConfigurationError(
            f"{name}={chunk_size!r}: expected a positive size such as '1 MiB'",
            value=chunk_size,
            source=name,
        )
    return n


class _Buffer:
    """One reusable buffer: pooled when a pool is given, else page-aligned anonymous memory.

    A plain ``bytearray`` of 256 KiB or more is placed by glibc 16 bytes into a page,
    and the kernel's copy to user space into a misaligned buffer is measurably slower
    on some CPUs; ``mmap`` memory always starts on a page boundary.
    """

    __slots__ = ("_handle", "_mmap", "view")

    def __init__(self, size: int, pool: SupportsAcquire | None) -> None:
        self._handle: BufferHandle | None = None
        self._mmap: mmap.mmap | None = None
        if pool is not None:
            if not callable(getattr(pool, "acquire", None)):
                raise ConfigurationError(
                    f"pool={pool!r}: expected a buffer pool with acquire(size)",
                    value=pool,
                    source="pool",
                )
            self._handle = pool.acquire(size)
            view = self._handle.view
            if len(view) < size:
                self._handle.release()
                raise ConfigurationError(
                    f"pool={pool!r} returned a {len(view)}-byte buffer for a {size}-byte request",
                    value=pool,
                    source="pool",
                )
            self.view = view[:size]
        else:
            self._mmap = mmap.mmap(-1, size)
            self.view = memoryview(self._mmap)

    def close(self) -> None:
        self.view.release()
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.release()
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                # The caller kept a view of a chunk (e.g. numpy.frombuffer); the mapping
                # is freed when that view dies instead.
                log.debug("stream buffer still exported at close; left to the garbage collector")
            self._mmap = None


def _is_path(source: object) -> TypeGuard[str | os.PathLike[str]]:
    return isinstance(source, (str, os.PathLike))


def _open_path(source: str | os.PathLike[str]) -> io.FileIO:
    f = io.FileIO(os.fspath(source), "rb")
    if hasattr(os, "posix_fadvise"):
        # Doubles the kernel's readahead window for a cold file; a no-op when cached.
        with contextlib.suppress(OSError):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return f


def _reader(source: Any) -> Callable[[memoryview], int | None]:
    """Return a ``readinto``-shaped function for ``source``."""
    if isinstance(source, io.TextIOBase):
        raise ConfigurationError(
            f"source={source!r} is a text stream; open it in binary mode ('rb')",
            value=source,
            source="source",
        )
    if _is_socket(source):
        return source.recv_into
    readinto = getattr(source, "readinto", None)
    if callable(readinto):
        return readinto  # type: ignore[no-any-return]
    recv_into = getattr(source, "recv_into", None)
    if callable(recv_into):
        return recv_into  # type: ignore[no-any-return]
    read = getattr(source, "read", None)
    if callable(read):

        def _copying_readinto(view: memoryview) -> int:
            data = read(len(view))
            if isinstance(data, str):
                raise ConfigurationError(
                    f"source={source!r} returned text; open it in binary mode ('rb')",
                    value=source,
                    source="source",
                )
            n = len(data)
            view[:n] = data
            return n

        return _copying_readinto
    raise ConfigurationError(
        f"source={source!r}: expected a path, a binary file object or a socket",
        value=source,
        source="source",
    )


def _not_ready(source: object, advice: str) -> BlockingIOError:
    """The error for a non-blocking source that had no data: a runtime I/O condition.

    The source itself is valid (it is no configuration error): it returned None from
    ``readinto``, as a non-blocking file does when nothing is ready, so the error is the
    one the OS layer uses for that, ``BlockingIOError`` (EAGAIN).
    """
    return BlockingIOError(
        errno.EAGAIN, f"source={source!r} is non-blocking and had no data ready; {advice}"
    )


def _total_bytes(source: Any) -> int | None:
    """Size of a regular file behind ``source`` (minus its position), else None."""
    try:
        if _is_path(source):
            st = Path(source).stat()
            return st.st_size if stat.S_ISREG(st.st_mode) else None
        fileno = source.fileno()
        st = os.fstat(fileno)
        if not stat.S_ISREG(st.st_mode):
            return None
        try:
            pos = int(source.tell())
        except (OSError, AttributeError, ValueError):
            pos = 0
        return max(0, st.st_size - pos)
    except (OSError, AttributeError, ValueError, TypeError):
        return None


# ---------------------------------------------------------------------------
# read_chunks


def read_chunks(
    source: StreamSource,
    chunk_size: SizeLike = DEFAULT_CHUNK_BYTES,
    *,
    pool: SupportsAcquire | None = None,
) -> Iterator[memoryview]:
    """Yield the bytes of ``source`` as memoryviews into one reused buffer.

    Each yielded view is valid **until the next iteration**: the next chunk is read
    into the same memory and the previous view is released (using it afterwards
    raises ``ValueError``). Copy it (``bytes(view)``) to keep it. A chunk holds up to
    ``chunk_size`` bytes; pipes and sockets may give shorter chunks; empty chunks are
    never yielded.

    Args:
        source: a path (opened and closed here), a binary file object (anything with
            ``readinto`` or ``read``), or a socket (``recv_into``). File objects and
            sockets are read from their current position and left open.
        chunk_size: bytes per read, an int or a size string such as ``"1 MiB"``.
        pool: a buffer pool (``acquire(size)`` returning a handle with ``view`` and
            ``release()``); the buffer is borrowed for the life of the iterator.

    Raises:
        ConfigurationError: ``chunk_size`` is not a positive size, or ``source`` is a
            text stream or not readable.
        BlockingIOError: a non-blocking source had no data ready (use
            :func:`async_read_chunks` for those).
    """
    size = _chunk_bytes(chunk_size)
    owned = _open_path(source) if _is_path(source) else None
    try:
        readinto = _reader(owned if owned is not None else source)
        buf = _Buffer(size, pool)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    view = buf.view
    try:
        while True:
            n = readinto(view)
            if n is None:
                raise _not_ready(source, "use async_read_chunks or a blocking source")
            if n <= 0:
                return
            chunk = view[:n]
            yield chunk
            with contextlib.suppress(BufferError):  # a consumer holds an export of it
                chunk.release()
    finally:
        buf.close()
        if owned is not None:
            owned.close()


# ---------------------------------------------------------------------------
# lines


def _ascii_compatible(encoding: str) -> bool:
    """True when ``\\n`` is the byte 0x0A and never part of a multibyte character."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ConfigurationError(
            f"encoding={encoding!r}: unknown encoding", value=encoding, source="encoding"
        ) from None
    if name.startswith(("utf-16", "utf-32", "utf_16", "utf_32")):
        return False
    try:
        return "a\n".encode(encoding) == b"a\n"
    except (UnicodeError, LookupError):
        return False


class _LineSplitter:
    """Turns a stream of byte chunks into decoded lines with a bound on line length.

    ASCII-compatible encodings (UTF-8, Latin-1, cp1252, ASCII...) are split on the
    byte ``\\n`` before decoding, which is exact because 0x0A never occurs inside a
    multibyte UTF-8 sequence; the bound is then exact in bytes. Other encodings
    (UTF-16/32) go through an incremental decoder and the bound is checked on the
    decoded text times the encoded width of ``\\n``.
    """

    def __init__(
        self, encoding: str, errors: str, max_line_bytes: int, keepends: bool, source: object
    ) -> None:
        self.encoding = encoding
        self.errors = errors
        self.max_line_bytes = max_line_bytes
        self.keepends = keepends
        self.source = source
        self.line_number = 0
        self._bytes_mode = _ascii_compatible(encoding)
        self._carry = bytearray()
        self._text_carry = ""
        if not self._bytes_mode:
            self._decoder = codecs.getincrementaldecoder(encoding)(errors)
            probe = "\n".encode(encoding)
            bom = len("".encode(encoding))
            self._unit = max(1, len(probe) - bom)

    def _too_long(self, seen_bytes: int) -> LineTooLongError:
        number = self.line_number + 1
        return LineTooLongError(
            f"line {number} of {self.source!r} is longer than max_line_bytes="
            f"{self.max_line_bytes} (read {seen_bytes} bytes without a newline); "
            "raise max_line_bytes or read the input with read_chunks",
            line_number=number,
            limit_bytes=self.max_line_bytes,
            seen_bytes=seen_bytes,
        )

    def _check_region(self, region: bytes) -> None:
        """Raise for the first line in ``region`` (complete lines) longer than the bound."""
        # Only reached when the region itself is longer than the bound: the common case
        # (1 MiB chunks, 16 MiB bound) never pays for this second split.
        limit = self.max_line_bytes
        for index, part in enumerate(region.split(b"\n")[:-1]):
            body = len(part) - (1 if part.endswith(b"\r") else 0)
            if body > limit:
                self.line_number += index
                raise self._too_long(body)

    def _lines(self, region: bytes) -> list[str]:
        """Decode and split ``region``, which holds whole lines (it ends with ``\\n``)."""
        if len(region) - 1 > self.max_line_bytes:
            self._check_region(region)
        text = region.decode(self.encoding, self.errors)
        lines = text.split("\n")
        lines.pop()  # the region ends with "\n": the last piece is empty
        if self.keepends:
            lines = [line + "\n" for line in lines]  # a "\r" before it is still in the line
        elif "\r" in text:
            lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        self.line_number += len(lines)
        return lines

    def feed(self, chunk: memoryview | bytes) -> Iterator[list[str]]:
        """Add the next chunk; yield the lines it completes, as lists (one per slice).

        Complete lines are decoded and split in C, a slice of about 32 KiB at a time:
        splitting before decoding is exact because 0x0A is never part of a multibyte
        character in an ASCII-compatible encoding, and slicing keeps the new strings
        in the CPU cache while the caller consumes them (splitting a whole 1 MiB chunk
        at once measured 2.5x slower than 32 KiB slices, which match ``for line in f``).
        """
        if not self._bytes_mode:
            yield self._feed_text(self._decoder.decode(chunk))
            return
        data = bytes(chunk)
        carry = self._carry
        last = data.rfind(b"\n")
        if last < 0:
            carry += data
            # +1 leaves room for the "\r" of a "\r\n" split across chunks
            if len(carry) > self.max_line_bytes + 1:
                raise self._too_long(len(carry))
            return
        start = 0
        if carry:
            first = data.find(b"\n")
            carry += data[: first + 1]
            region = bytes(carry)
            carry.clear()
            yield self._lines(region)
            start = first + 1
        while start <= last:
            stop = data.find(b"\n", min(start + _SPLIT_SLICE_BYTES, last)) + 1
            yield self._lines(data[start:stop])
            start = stop
        if last + 1 < len(data):
            carry += data[last + 1 :]
            if len(carry) > self.max_line_bytes + 1:
                raise self._too_long(len(carry))

    def _feed_text(self, text: str) -> list[str]:
        out: list[str] = []
        if not text:
            return out
        buf = self._text_carry + text
        parts = buf.split("\n")
        self._text_carry = parts.pop()
        for part in parts:
            if len(part) * self._unit > self.max_line_bytes + self._unit:
                raise self._too_long(len(part) * self._unit)
            self.line_number += 1
            if self.keepends:
                out.append(part + "\n")
            else:
                out.append(part[:-1] if part.endswith("\r") else part)
        if len(self._text_carry) * self._unit > self.max_line_bytes + self._unit:
            raise self._too_long(len(self._text_carry) * self._unit)
        return out

    def finish(self) -> list[str]:
        """Flush the final line that had no newline, if any."""
        if not self._bytes_mode:
            tail = self._decoder.decode(b"", final=True)
            out = self._feed_text(tail)
            if self._text_carry:
                self.line_number += 1
                out.append(self._text_carry)
                self._text_carry = ""
            return out
        if not self._carry:
            return []
        raw = bytes(self._carry)
        self._carry.clear()
        if len(raw) > self.max_line_bytes:
            raise self._too_long(len(raw))
        self.line_number += 1
        return [raw.decode(self.encoding, self.errors)]


def _line_args(encoding: str, errors: str, max_line_bytes: SizeLike) -> tuple[str, str, int]:
    limit = _chunk_bytes(max_line_bytes, name="max_line_bytes")
    try:
        codecs.lookup_error(errors)
    except LookupError:
        raise ConfigurationError(
            f"errors={errors!r}: unknown error handler (expected 'strict', 'replace', "
            "'ignore', 'surrogateescape', 'backslashreplace'...)",
            value=errors,
            source="errors",
        ) from None
    return encoding, errors, limit


def iter_lines(
    source: StreamSource,
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    max_line_bytes: SizeLike = DEFAULT_MAX_LINE_BYTES,
    keepends: bool = False,
    chunk_size: SizeLike = DEFAULT_CHUNK_BYTES,
    pool: SupportsAcquire | None = None,
) -> Iterator[str]:
    """Yield the decoded lines of ``source`` in memory bounded by chunk and line size.

    Lines end at ``\\n`` or ``\\r\\n`` (a lone ``\\r`` stays part of the line); the
    terminator is stripped unless ``keepends``. A final line without a newline is
    yielded too. Memory stays under about ``chunk_size`` x 2 + ``max_line_bytes``.

    Args:
        source: as for :func:`read_chunks`.
        encoding: the text encoding; UTF-16/32 are decoded incrementally.
        errors: the codec error handler (``"strict"``, ``"replace"``, ``"ignore"``...).
        max_line_bytes: the longest line allowed, in encoded bytes without its
            terminator (exact for ASCII-compatible encodings).
        keepends: keep ``\\n``/``\\r\\n`` on each line.
        chunk_size: bytes per read.
        pool: an optional buffer pool, as for :func:`read_chunks`.

    Raises:
        LineTooLongError: a line exceeds ``max_line_bytes``.
        UnicodeDecodeError: invalid input with ``errors="strict"``.
        ConfigurationError: an unknown encoding or error handler, or a bad size.
    """
    encoding, errors, limit = _line_args(encoding, errors, max_line_bytes)
    splitter = _LineSplitter(encoding, errors, limit, keepends, source)
    for chunk in read_chunks(source, chunk_size, pool=pool):
        for lines in splitter.feed(chunk):
            yield from lines
    yield from splitter.finish()


# ---------------------------------------------------------------------------
# asyncio


def _is_async_stream(source: object) -> bool:
    import inspect

    read = getattr(source, "read", None)
    return read is not None and inspect.iscoroutinefunction(read)


def _is_socket(source: object) -> TypeGuard[socket.socket]:
    # A socket can only exist once the socket module is imported: no need to import it.
    mod = sys.modules.get("socket")
    return mod is not None and isinstance(source, mod.socket)


async def async_read_chunks(
    source: AsyncStreamSource,
    chunk_size: SizeLike = DEFAULT_CHUNK_BYTES,
    *,
    pool: SupportsAcquire | None = None,
) -> AsyncIterator[memoryview]:
    """Asynchronously yield the bytes of ``source``, as :func:`read_chunks` does.

    Paths and file objects are read with ``readinto`` in a worker thread (file I/O
    has no readiness notification, so it must not run on the event loop). A
    non-blocking ``socket.socket`` is read natively with ``loop.sock_recv_into``
    into the reused buffer. An ``asyncio.StreamReader`` (or anything with an async
    ``read(n)``) is read natively too; it returns a new ``bytes`` per read, which is
    yielded as a view. As with the sync version, a view is valid until the next
    iteration.

    Raises:
        ConfigurationError: a bad ``chunk_size``, a text or unreadable source, or a
            blocking socket (call ``sock.setblocking(False)`` first).
        BlockingIOError: a non-blocking file object (not a socket) had no data ready.
    """
    import asyncio  # lazy: asyncio costs tens of milliseconds to import

    size = _chunk_bytes(chunk_size)
    if _is_async_stream(source):
        stream: Any = source
        while True:
            data = await stream.read(size)
            if not data:
                return
            yield memoryview(data)
    loop = asyncio.get_running_loop()
    if _is_socket(source):
        if source.gettimeout() != 0:
            raise ConfigurationError(
                f"source={source!r} is a blocking socket; call setblocking(False) to read "
                "it under asyncio",
                value=source,
                source="source",
            )
        sock = source
        buf = _Buffer(size, pool)
        try:
            while True:
                n = await loop.sock_recv_into(sock, buf.view)
                if n <= 0:
                    return
                chunk = buf.view[:n]
                yield chunk
                with contextlib.suppress(BufferError):
                    chunk.release()
        finally:
            buf.close()
        return
    owned = await asyncio.to_thread(_open_path, source) if _is_path(source) else None
    try:
        readinto = _reader(owned if owned is not None else source)
        buf = _Buffer(size, pool)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    try:
        while True:
            got = await asyncio.to_thread(readinto, buf.view)
            if got is None:
                raise _not_ready(source, "read it with a blocking file object")
            if got <= 0:
                return
            chunk = buf.view[:got]
            yield chunk
            with contextlib.suppress(BufferError):
                chunk.release()
    finally:
        buf.close()
        if owned is not None:
            owned.close()


async def async_iter_lines(
    source: AsyncStreamSource,
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    max_line_bytes: SizeLike = DEFAULT_MAX_LINE_BYTES,
    keepends: bool = False,
    chunk_size: SizeLike = DEFAULT_CHUNK_BYTES,
    pool: SupportsAcquire | None = None,
) -> AsyncIterator[str]:
    """Asynchronously yield decoded lines, with the same rules as :func:`iter_lines`."""
    encoding, errors, limit = _line_args(encoding, errors, max_line_bytes)
    splitter = _LineSplitter(encoding, errors, limit, keepends, source)
    async for chunk in async_read_chunks(source, chunk_size, pool=pool):
        for lines in splitter.feed(chunk):
            for line in lines:
                yield line
    for line in splitter.finish():
        yield line


# ---------------------------------------------------------------------------
# process_stream


@dataclass(frozen=True)
class StreamStats:
    """What :func:`process_stream` did."""

    bytes_read: int
    chunks: int
    elapsed_s: float

    @property
    def bytes_per_s(self) -> float:
        return self.bytes_read / self.elapsed_s if self.elapsed_s > 0 else 0.0


_PROGRESS_MIN_BYTES = 64 * 1024 * 1024


def process_stream(
    source: StreamSource,
    fn: Callable[[memoryview], object],
    *,
    chunk_size: SizeLike = DEFAULT_CHUNK_BYTES,
    progress: bool | None = False,
    total_bytes: int | None = None,
    description: str = "reading",
    pool: SupportsAcquire | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> StreamStats:
    """Call ``fn(chunk)`` for each chunk of ``source``, optionally with a progress bar.

    Args:
        source, chunk_size, pool: as for :func:`read_chunks`; ``fn`` must not keep
            the view past its return (copy it if needed).
        progress: ``True`` shows a rich progress bar on stderr; ``None`` shows one
            only for inputs of 64 MiB or more when stderr is a terminal.
        total_bytes: the input size for the bar; found by ``stat`` for regular files.
        description: the bar's label.
        clock: the clock used for ``elapsed_s`` (injectable for tests).

    Returns:
        A :class:`StreamStats` with bytes read, chunk count and elapsed time.
    """
    total = total_bytes if total_bytes is not None else _total_bytes(source)
    show = bool(progress)
    if progress is None:
        import sys

        show = sys.stderr.isatty() and total is not None and total >= _PROGRESS_MIN_BYTES
    start = clock()
    nbytes = chunks = 0
    if not show:
        for chunk in read_chunks(source, chunk_size, pool=pool):
            fn(chunk)
            nbytes += len(chunk)
            chunks += 1
        return StreamStats(nbytes, chunks, clock() - start)

    from rich.console import Console  # lazy: rich is heavy
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(description, total=total)
        pending = 0
        last = time.monotonic()
        for chunk in read_chunks(source, chunk_size, pool=pool):
            fn(chunk)
            n = len(chunk)
            nbytes += n
            chunks += 1
            pending += n
            now = time.monotonic()
            if now - last >= 0.1:  # rich redraws cost ~50 µs; do not pay it per chunk
                bar.update(task, advance=pending)
                pending = 0
                last = now
        bar.update(task, advance=pending)
    return StreamStats(nbytes, chunks, clock() - start)


# ---------------------------------------------------------------------------
# Pipeline


_END = object()


@dataclass
class StageStats:
    """Per-stage counters of a :class:`Pipeline` run."""

    name: str
    items: int = 0
    busy_s: float = 0.0
    blocked_s: float = 0.0
    """Time spent waiting for room in the next queue: the backpressure felt."""


@dataclass
class PipelineStats:
    """Counters of the last :meth:`Pipeline.run`."""

    produced: int = 0
    producer_blocked_s: float = 0.0
    """Time the producer waited for room in the first queue (backpressure)."""
    max_in_flight: int = 0
    """The most items seen queued between stages at once; bounded by the queue sizes."""
    pressure_waits: int = 0
    """Times the producer paused for memory pressure (with a ``governor``)."""
    pressure_wait_s: float = 0.0
    stages: list[StageStats] = field(default_factory=list)


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Pipeline(Generic[T]):
    """Stages over bounded queues across threads: a fast producer blocks, never buffers.

    Each stage runs in its own thread and reads from a ``queue.Queue(maxsize)``; when
    a downstream stage is slow its input queue fills, the upstream ``put`` blocks,
    and so on back to the producer, which stops pulling from the input iterable.
    Items in flight are therefore bounded by ``maxsize x (stages + 1)`` plus one per
    thread. Order is preserved. An exception in a stage stops the pipeline and is
    re-raised from :meth:`run`; leaving the iteration early stops every thread.

    With a ``governor`` (:data:`~memwarden.pressure.DEFAULT` for the process-wide one, a
    :class:`~memwarden.pressure.Governor`, or any :class:`~memwarden.typing.PressureSource`),
    the producer also pauses before each item while memory pressure is HIGH or worse, for
    at most ``pressure_timeout_s`` per pause: memory pressure, not only a slow stage,
    holds the input back. The default, ``None``, watches no pressure.

    Example::

        pipe = Pipeline(maxsize=4).add(parse).add(enrich, name="enrich")
        for record in pipe.run(iter_lines("big.jsonl")):
            store(record)
    """

    def __init__(
        self,
        stages: Iterable[Callable[[Any], T]] = (),
        *,
        maxsize: int = 8,
        governor: PressureSource | DefaultType | None = None,
        pressure_timeout_s: float = 60.0,
    ) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ConfigurationError(
                f"maxsize={maxsize!r}: expected a positive int (a queue without a bound "
                "would defeat backpressure)",
                value=maxsize,
                source="maxsize",
            )
        if governor is DEFAULT:
            from memwarden.pressure import governor as process_governor

            governor = process_governor()
        elif governor is not None and not callable(getattr(governor, "level", None)):
            raise ConfigurationError(
                f"governor={governor!r}: expected DEFAULT, None or an object with level() "
                "and wait_for_relief()",
                value=governor,
                source="governor",
            )
        self.maxsize = maxsize
        self.governor: PressureSource | None = governor
        self.pressure_timeout_s = pressure_timeout_s
        self._stages: list[tuple[str, Callable[[Any], Any]]] = []
        for fn in stages:
            self.add(fn)
        self.stats = PipelineStats()

    def add(self, fn: Callable[[T], U], *, name: str | None = None) -> Pipeline[U]:
        """Append a stage calling ``fn(item)``; returns the pipeline for chaining.

        The pipeline is changed in place and returned retyped: its output type is
        the new last stage's (``Pipeline[str].add(len)`` is a ``Pipeline[int]``), so
        keep using the returned pipeline, not an older annotated name for it.
        """
        if not callable(fn):
            raise ConfigurationError(f"stage {fn!r} is not callable", value=fn, source="stage")
        self._stages.append((str(name or getattr(fn, "__name__", f"stage{len(self._stages)}")), fn))
        return cast("Pipeline[U]", self)

    def run(self, items: Iterable[Any]) -> Iterator[T]:
        """Feed ``items`` through the stages and yield the results in order.

        The results have the pipeline's type parameter: the last stage's output type
        (the input items are not type-checked: the first stage's parameter is not
        tracked).

        Raises:
            Exception: whatever a stage (or the input iterable) raised, re-raised here.
        """
        return self._run(items)

    def _run(self, items: Iterable[Any]) -> Iterator[T]:
        stop = threading.Event()
        queues: list[queue.Queue[Any]] = [
            queue.Queue(self.maxsize) for _ in range(len(self._stages) + 1)
        ]
        stats = PipelineStats(stages=[StageStats(name) for name, _ in self._stages])
        self.stats = stats

        def put(q: queue.Queue[Any], item: Any) -> float:
            """Blocking put that gives up when stopping; returns the seconds blocked."""
            t0 = time.perf_counter()
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            return time.perf_counter() - t0

        def get(q: queue.Queue[Any]) -> Any:
            while not stop.is_set():
                try:
                    return q.get(timeout=0.05)
                except queue.Empty:
                    continue
            return _END

        def note_depth() -> None:
            depth = sum(q.qsize() for q in queues)
            stats.max_in_flight = max(stats.max_in_flight, depth)

        def relief() -> None:
            """Under HIGH pressure or worse, pause the producer until relief (bounded)."""
            gov = self.governor
            assert gov is not None  # produce() calls this only with a governor
            try:
                if PressureLevel(gov.level()) < PressureLevel.HIGH:
                    return
                t0 = time.perf_counter()
                gov.wait_for_relief(self.pressure_timeout_s)
            except PressureTimeoutError as exc:
                log.warning("pipeline producer: %s; continuing", exc)
                stats.pressure_waits += 1
                return
            except Exception:
                log.warning("pipeline producer: governor failed; not pausing", exc_info=True)
                return
            stats.pressure_waits += 1
            stats.pressure_wait_s += time.perf_counter() - t0

        def produce() -> None:
            try:
                for item in items:
                    if stop.is_set():
                        return
                    if self.governor is not None:
                        relief()
                    blocked = put(queues[0], item)
                    if blocked > 1e-4:
                        stats.producer_blocked_s += blocked
                    stats.produced += 1
                    note_depth()
                put(queues[0], _END)
            except BaseException as exc:  # forwarded to the consumer, re-raised there
                put(queues[0], _Failure(exc))

        def stage(index: int, fn: Callable[[Any], Any]) -> None:
            inq, outq, st = queues[index], queues[index + 1], stats.stages[index]
            while True:
                item = get(inq)
                if item is _END or isinstance(item, _Failure):
                    put(outq, item)
                    return
                t0 = time.perf_counter()
                try:
                    result = fn(item)
                except BaseException as exc:
                    put(outq, _Failure(exc))
                    return
                finally:
                    st.busy_s += time.perf_counter() - t0
                del item  # do not keep the last input alive while blocked on put
                st.items += 1
                blocked = put(outq, result)
                if blocked > 1e-4:
                    st.blocked_s += blocked
                del result

        threads = [threading.Thread(target=produce, name="memwarden-pipeline-producer")]
        threads += [
            threading.Thread(target=stage, args=(i, fn), name=f"memwarden-pipeline-{name}")
            for i, (name, fn) in enumerate(self._stages)
        ]
        for t in threads:
            t.daemon = True
            t.start()
        try:
            while True:
                item = get(queues[-1])
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
                del item
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=5.0)
                if t.is_alive():  # a stage is stuck inside user code; it is a daemon
                    log.warning("pipeline thread %s did not stop within 5 s", t.name)
