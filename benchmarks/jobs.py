"""The no-op jobs the benchmarks run: unijob's here, each backend's native one in its target module.

Both kinds do the same work (one Redis INCR), so a worker benchmark compares only the overhead.
"""

from __future__ import annotations

import os

import redis

import unijob

COUNTER_URL = os.environ.get("UNIJOB_BENCH_COUNTER_URL", "redis://127.0.0.1:6379/14")
COUNTER_KEY = "unijob-bench:done"
_client: redis.Redis | None = None


def counter() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(COUNTER_URL)
    return _client


def count_one() -> None:
    counter().incr(COUNTER_KEY)


@unijob.job
def noop(i: int) -> None:
    """Enqueue benchmarks: never run."""


@unijob.job
def counted(i: int) -> None:
    """Worker benchmarks: one INCR, like the native counterpart."""
    count_one()
