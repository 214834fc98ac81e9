"""Workloads for the Dask integration tests and bench (importable by worker processes)."""

from __future__ import annotations

import time

MIB = 2**20


def heavy_batch(items: list[int], per_item_bytes: int = 8 * MIB, hold_s: float = 0.0) -> list[int]:
    """Process a batch as one block (as a frame or array would): memory grows with batch size.

    ``hold_s`` keeps the block that long, so a watchdog polling every 100 ms (Dask's
    nanny) surely sees the peak.
    """
    block = bytearray(per_item_bytes * len(items))
    step = 4096
    block[::step] = b"\x01" * len(block[::step])  # touch every page: real RSS
    if hold_s:
        time.sleep(hold_s)
    touched = sum(block[::step])
    del block
    if touched != -(-len(items) * per_item_bytes // step):
        raise AssertionError("the block was not fully touched")
    return [i * 3 for i in items]


def heavy_batch_serial(items: list[int]) -> list[int]:
    """The serial reference for heavy_batch's results."""
    return heavy_batch(items, per_item_bytes=4096)


def light_item(i: int) -> int:
    """A cheap per-item function."""
    return i * i
