"""The Dask integration on a real LocalCluster: governed workers, metrics, adaptive_map."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed")

import dask
from distributed import Client, LocalCluster

from memwarden.exceptions import ConfigurationError
from memwarden.integrations.dask import (
    AdaptiveMapStats,
    MemwardenWorkerPlugin,
    adaptive_map,
    stats_table,
    worker_stats,
)
from tests.support.dask_workload import MIB, heavy_batch, light_item

pytestmark = [pytest.mark.dask, pytest.mark.slow]

LIMIT = 400 * MIB


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes with 400 MiB each, memwarden's plugin registered."""
    settings = {
        # A task whose worker dies fails at once instead of being retried on the next worker.
        "distributed.scheduler.allowed-failures": 0,
        "distributed.worker.memory.spill": False,
        "distributed.worker.memory.target": False,
    }
    with (
        dask.config.set(settings),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=LIMIT,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as c,
    ):
        c.register_plugin(MemwardenWorkerPlugin())
        yield c


def _pids(c: Client) -> dict[str, int]:
    return c.run(os.getpid)


def test_plugin_governs_each_worker(client: Client) -> None:
    """Every worker reports memwarden stats with its own 400 MiB memory_limit as the budget."""
    stats = worker_stats(client)
    assert len(stats) == 2
    for s in stats:
        assert s.governed
        assert s.limit_bytes == LIMIT
        assert 0 < s.rss_bytes < LIMIT
        assert s.level in ("OK", "WARNING", "CRITICAL")
        assert s.pressure in ("NONE", "MODERATE", "HIGH", "CRITICAL")
    table = stats_table(client)
    for s in stats:
        assert s.address in table
    assert "400.0 MiB" in table


def test_worker_metrics_endpoint_shows_memwarden_series(client: Client) -> None:
    """A real scrape of each worker's /metrics contains memwarden's gauges beside Dask's own."""
    from prometheus_client.parser import text_string_to_metric_families

    workers = client.scheduler_info()["workers"]
    assert workers
    for info in workers.values():
        port = info["services"]["dashboard"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(body)}
        assert "memwarden_limit_bytes" in families
        assert families["memwarden_limit_bytes"].samples[0].value == LIMIT
        assert families["memwarden_rss_bytes"].samples[0].value > 0
        assert "dask_worker_tasks" in families  # Dask's own metrics still served


def test_adaptive_map_completes_without_restarts_and_in_order(client: Client) -> None:
    """adaptive_map over 8 MiB per item matches a serial run, with no worker restart."""
    before = _pids(client)
    stats = AdaptiveMapStats()
    results = list(adaptive_map(client, heavy_batch, range(200), batched=True, stats=stats))
    assert results == heavy_batch(list(range(200)), per_item_bytes=4096)
    assert _pids(client) == before, "a worker was restarted"
    assert stats.worker_losses == 0
    assert stats.items == 200
    # The learned per-item memory is the real 8 MiB, and batches stay below what 400 MiB holds.
    assert 6 * MIB <= stats.per_item_bytes <= 12 * MIB
    assert max(stats.batch_sizes) * 8 * MIB < LIMIT


def test_fixed_batches_of_the_same_workload_kill_workers(client: Client) -> None:
    """The same workload in fixed batches of 50 (400 MiB each) gets its worker restarted."""
    before = _pids(client)
    fut = client.submit(heavy_batch, list(range(50)), hold_s=1.0, pure=False)
    # KilledWorker's module differs between versions: match it by name.
    with pytest.raises(Exception) as info:
        fut.result(timeout=120)
    assert type(info.value).__name__ == "KilledWorker"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            after = _pids(client)
        except Exception:  # workers may still be restarting
            after = {}
        if len(after) == 2:
            break
        time.sleep(0.5)
    assert set(after.values()) != set(before.values()), "no worker was restarted"


def test_generator_input_is_never_materialised(client: Client) -> None:
    """Items are pulled lazily: at most the in-flight batches are held ahead of the results."""
    pulled = 0
    ahead: list[int] = []

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(400):
            pulled += 1
            yield i

    out = []
    for value in adaptive_map(client, light_item, items(), max_batch=16, initial_batch=4):
        out.append(value)
        ahead.append(pulled - len(out))
    assert out == [light_item(i) for i in range(400)]
    # The batch being yielded plus max_in_flight (2 per thread x 2 workers) batches in flight.
    assert max(ahead) <= (4 + 1) * 16


def _fails_above_three(batch: list[int]) -> list[int]:
    if len(batch) > 3:
        raise MemoryError(f"batch of {len(batch)} does not fit")
    return [x + 1 for x in batch]


def test_memory_error_batches_are_split_and_retried(client: Client) -> None:
    """A batch failing with MemoryError is halved and retried until it fits; order is kept."""
    stats = AdaptiveMapStats()
    out = list(
        adaptive_map(
            client,
            _fails_above_three,
            range(40),
            batched=True,
            initial_batch=16,
            max_batch=16,
            stats=stats,
        )
    )
    assert out == [x + 1 for x in range(40)]
    assert stats.retries >= 2


def _always_fails(batch: list[int]) -> list[int]:
    raise MemoryError("never fits")


def test_memory_error_at_min_batch_is_raised(client: Client) -> None:
    """When even min_batch fails, MemoryError is raised with the input position."""
    with pytest.raises(
        MemoryError, match=r"a batch of 1 item\(s\) starting at input #[0-3] failed"
    ):
        list(adaptive_map(client, _always_fails, range(4), batched=True, initial_batch=2))


def _hold_ballast(size: int, dask_worker: Any = None) -> int:
    import memwarden.integrations.dask as mod

    block = bytearray(size)
    block[::4096] = b"\x01" * len(block[::4096])
    mod._TEST_BALLAST = block  # type: ignore[attr-defined]
    return len(block)


def _drop_ballast(dask_worker: Any = None) -> None:
    import memwarden.integrations.dask as mod

    mod.__dict__.pop("_TEST_BALLAST", None)


def test_submission_pauses_while_every_worker_is_under_pressure(client: Client) -> None:
    """With both workers held at ~85% of their limit, adaptive_map waits until one is released."""
    client.run(_hold_ballast, 270 * MIB)
    assert all(s.under_pressure for s in worker_stats(client))
    addr = sorted(client.scheduler_info()["workers"])[0]
    release = threading.Timer(1.5, lambda: client.run(_drop_ballast, workers=[addr]))
    release.start()
    try:
        stats = AdaptiveMapStats()
        # The first batch's report carries the pressure; submission then pauses.
        out = list(adaptive_map(client, light_item, range(30), stats=stats, poll_s=0.1))
    finally:
        release.join()
        client.run(_drop_ballast)
    assert out == [light_item(i) for i in range(30)]
    assert stats.pauses >= 1
    assert stats.paused_s >= 1.0


def test_one_worker_under_pressure_does_not_pause(client: Client) -> None:
    """With one worker under pressure the other takes the work: no pause, same results."""
    addr = sorted(client.scheduler_info()["workers"])[0]
    client.run(_hold_ballast, 270 * MIB, workers=[addr])
    try:
        stats = AdaptiveMapStats()
        out = list(adaptive_map(client, light_item, range(30), stats=stats))
    finally:
        client.run(_drop_ballast)
    assert out == [light_item(i) for i in range(30)]
    assert stats.pauses == 0


def test_bad_arguments_are_configuration_errors(client: Client) -> None:
    """Bad target_usage and batch bounds are refused before anything is submitted."""
    with pytest.raises(ConfigurationError, match="target_usage"):
        list(adaptive_map(client, light_item, range(3), target_usage=1.5))
    with pytest.raises(ConfigurationError, match="min_batch"):
        list(adaptive_map(client, light_item, range(3), min_batch=5, initial_batch=2))
