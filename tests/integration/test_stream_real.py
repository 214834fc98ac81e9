"""Streaming against real files, pipes and sockets, with peak RSS measured in fresh processes."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from memwarden.stream import Pipeline, iter_lines, process_stream, read_chunks

MiB = 1024 * 1024
_PIPE_CHILD = "import sys; [sys.stdout.buffer.write(b'p' * 7000) for _ in range(300)]"

_PEAK_CHILD = r"""
import json, sys
from memwarden.probes import peak_rss, rss
from memwarden.stream import read_chunks, iter_lines
mode, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = rss()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset VmHWM: measure only what reading the file costs
total = 0
if mode == "chunks":
    for view in read_chunks(path, chunk):
        total += len(view)
elif mode == "lines":
    for line in iter_lines(path, chunk_size=chunk):
        total += len(line) + 1
else:
    with open(path, "rb") as f:
        data = f.read()
    total = len(data)
print(json.dumps({"total": total, "growth": peak_rss() - start}))
"""


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 MiB file of text lines (deleted with the tmp dir)."""
    path = tmp_path_factory.mktemp("stream") / "big.txt"
    line = b"x" * 1023 + b"\n"
    with path.open("wb") as f:
        block = line * 1024  # 1 MiB
        for _ in range(64):
            f.write(block)
    return path


def _child_peak(mode: str, path: Path, chunk: int) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, mode, str(path), str(chunk)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("chunk", [64 * 1024, MiB, 4 * MiB])
def test_read_chunks_peak_rss_growth_is_bounded_by_chunk_size(big_file: Path, chunk: int) -> None:
    """Reading 64 MiB in chunks grows peak RSS by at most 2 x chunk_size + 4 MiB."""
    out = _child_peak("chunks", big_file, chunk)
    assert out["total"] == 64 * MiB
    assert out["growth"] <= 2 * chunk + 4 * MiB


def test_naive_read_grows_by_the_file_size(big_file: Path) -> None:
    """The anti-pattern, for contrast: f.read() grows peak RSS by the whole file."""
    out = _child_peak("naive", big_file, 0)
    assert out["total"] == 64 * MiB
    assert out["growth"] >= 60 * MiB


def test_iter_lines_peak_rss_is_bounded(big_file: Path) -> None:
    """Iterating 64 MiB of lines keeps peak RSS growth to a few chunks."""
    out = _child_peak("lines", big_file, MiB)
    assert out["total"] == 64 * MiB
    assert out["growth"] <= 4 * MiB + 4 * MiB


def test_read_chunks_from_a_real_pipe() -> None:
    """A subprocess's stdout pipe is streamed to its end (short reads included)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _PIPE_CHILD],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        total = sum(len(c) for c in read_chunks(proc.stdout, 64 * 1024))
    finally:
        proc.stdout.close()
        proc.wait(timeout=30)
    assert total == 7000 * 300


def test_iter_lines_over_a_loopback_tcp_socket() -> None:
    """Lines sent over TCP on 127.0.0.1 arrive complete whatever the segment boundaries."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    lines = [f"line {i} " + "é" * (i % 50) for i in range(5000)]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall("\r\n".join(lines).encode())

    t = threading.Thread(target=serve)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            got = list(iter_lines(client, chunk_size=1000))
    finally:
        t.join(30)
        server.close()
    assert got == lines


def test_process_stream_and_pipeline_over_a_real_file(big_file: Path) -> None:
    """process_stream sees every byte; a Pipeline over its lines keeps order and counts."""
    digest = 0

    def fold(view: memoryview) -> None:
        nonlocal digest
        digest += bytes(view).count(b"\n")

    stats = process_stream(big_file, fold)
    assert stats.bytes_read == 64 * MiB
    assert digest == 64 * 1024
    pipe = Pipeline([len, lambda n: n * 2], maxsize=4)
    total = sum(pipe.run(itertools.islice(iter_lines(big_file), 8192)))
    assert total == 8192 * 1023 * 2
    assert pipe.stats.max_in_flight <= 3 * 4


def test_read_chunks_with_a_real_buffer_pool(tmp_path: Path) -> None:
    """With memwarden's BufferPool, the chunk buffer is borrowed and given back."""
    pool_mod = pytest.importorskip("memwarden.pool", reason="memwarden.pool not present yet")
    pool = pool_mod.BufferPool(max_bytes=8 * MiB)
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 * MiB + 5))
    got = b"".join(bytes(c) for c in read_chunks(path, MiB, pool=pool))
    assert got == path.read_bytes()
    handle = pool.acquire(MiB)  # the buffer went back: the pool can lend it again
    handle.release()
