"""The metrics exporter under a half-open connection flood, against prometheus_client's server."""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
import urllib.request
from typing import Any

FLOOD = 300
ROUNDS = 5
SCRAPES = 9


def _scrape(port: int) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        resp.read()
    return time.perf_counter() - started


def _one(kind: str, mon: Any) -> tuple[int, float, float]:
    from prometheus_client import CollectorRegistry, start_http_server

    from memwarden.integrations.prometheus import MemwardenCollector, expose

    before = threading.active_count()
    if kind == "memwarden":
        exporter = expose(0, monitor=mon)
        port = exporter.port
        stop = exporter.close
    else:
        reg = CollectorRegistry(auto_describe=False)
        reg.register(MemwardenCollector(mon))  # the same exposition, served by prometheus_client
        server, _ = start_http_server(0, addr="127.0.0.1", registry=reg)
        port = server.server_address[1]

        def stop() -> None:
            server.shutdown()
            server.server_close()

    try:
        idle = statistics.median(_scrape(port) for _ in range(SCRAPES))
        with contextlib.ExitStack() as stack:
            for i in range(FLOOD):
                s = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
                if i % 2:
                    s.sendall(b"GET /metr")  # a request that never ends
            time.sleep(0.5)
            threads = threading.active_count() - before
            flooded = statistics.median(_scrape(port) for _ in range(SCRAPES))
    finally:
        stop()
    return threads, idle, flooded


def run() -> str:
    from memwarden.monitoring import MemoryMonitor

    mon = MemoryMonitor()
    mon.sample_now()
    results: dict[str, list[tuple[int, float, float]]] = {"prometheus_client": [], "memwarden": []}
    for _ in range(ROUNDS):  # alternate A/B so machine noise hits both alike
        for kind, got in results.items():
            got.append(_one(kind, mon))
    mon.close()
    rows = []
    for kind, got in results.items():
        threads = statistics.median(t for t, _, _ in got)
        idle = statistics.median(i for _, i, _ in got) * 1000
        flooded = statistics.median(f for _, _, f in got) * 1000
        rows.append(f"| {kind} | {threads:.0f} | {idle:.2f} ms | {flooded:.2f} ms |")
    return "\n".join(
        [
            "## Metrics exporter under a half-open flood",
            "",
            f"`python bench/run.py exporter`: {FLOOD} connections opened to `/metrics` and held"
            " (half of them mid-request), then scrapes; the same collector served by"
            " prometheus_client's `start_http_server` and by memwarden's `expose()`."
            f" Medians of {ROUNDS} alternated rounds of {SCRAPES} scrapes.",
            "",
            "| server | threads added by the flood | scrape, idle | scrape, under the flood |",
            "|---|---|---|---|",
            *rows,
            "",
            "prometheus_client starts a thread per connection and never times one out;"
            " memwarden's server stays one thread (connections capped at 64, the oldest"
            " dropped for a new one, 10 s deadline each), so the host keeps its threads.",
            "",
        ]
    )


if __name__ == "__main__":
    print(run())
