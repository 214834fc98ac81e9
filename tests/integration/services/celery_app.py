"""A Celery app whose tasks leak, for the real-broker recycling test."""

from __future__ import annotations

import os

from celery import Celery

import memwarden.integrations.celery

URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LEAK_BYTES = int(os.environ.get("LEAK_BYTES", str(512 * 1024)))

app = Celery("leaky", broker=URL, backend=URL)
app.conf.update(worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True)
if os.environ.get("MEMWARDEN_RECYCLE_LINE"):
    memwarden.integrations.celery.install(app)

_kept: list[bytes] = []


@app.task(name="leak")
def leak(i: int) -> int:
    """Keep LEAK_BYTES, record that task ``i`` ran in this process."""
    import redis

    _kept.append(os.urandom(16) * (LEAK_BYTES // 16))
    redis.Redis.from_url(URL).rpush("ran", f"{i}:{os.getpid()}")
    return i
