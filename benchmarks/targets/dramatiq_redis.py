"""Dramatiq on Redis db 10, natively and through unijob.

The native side is plain Dramatiq code: a ``RedisBroker`` with Dramatiq's default middleware (what
unijob's adapter builds too) and plain ``@dramatiq.actor`` no-op actors on it:

- ``native_loop``: ``noop.send(i)`` per job, what a Dramatiq application does.
- ``native_bulk_paths``: ``dramatiq.group([noop.message(i) ...]).run()``, Dramatiq's only bulk API (one
  enqueue script call per message).

The worker is the stock ``dramatiq`` command for both kinds, on the broker
``unijob.adapters.dramatiq_worker`` builds (every unijob job declared as an actor) with the native
counted actor declared on it too (``benchmarks.targets.dramatiq_redis:worker_setup``), so that only
the per-job overhead differs. ``UNIJOB_BENCH_DRAMATIQ_THREADS`` (default 2) threads in one process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq import Actor, Broker

from benchmarks.jobs import count_one

URL = "redis://127.0.0.1:6379/10"
QUEUE = "default"
NOOP = "benchmarks.native.noop"
COUNTED = "benchmarks.native.counted"
CHUNK = 1000


def noop(i: int) -> None:
    """The native no-op of the enqueue benchmark (never run)."""


def counted(i: int) -> None:
    """The native job of the worker benchmark: one INCR, like ``benchmarks.jobs.counted``."""
    count_one()


def declare_native(broker: Broker) -> tuple[Actor[Any, Any], Actor[Any, Any]]:
    """The native actors, declared the plain Dramatiq way on ``broker``."""
    actors = []
    for name, function in ((NOOP, noop), (COUNTED, counted)):
        if name in broker.actors:
            actors.append(broker.get_actor(name))
        else:
            actors.append(dramatiq.actor(function, actor_name=name, queue_name=QUEUE, broker=broker))
    return actors[0], actors[1]


def worker_setup() -> None:
    """The worker's broker (``dramatiq benchmarks.targets.dramatiq_redis:worker_setup``): unijob's,
    which becomes Dramatiq's global broker, with the native actors declared on it as well."""
    from unijob.adapters import dramatiq_worker

    declare_native(dramatiq_worker.setup())  # the unijob actors, on the broker that becomes Dramatiq's


def _dramatiq_script() -> str:
    beside = Path(sys.executable).with_name("dramatiq")
    return str(beside) if beside.exists() else "dramatiq"


class DramatiqTarget:
    def __init__(self, name: str, url: str, module: str) -> None:
        self.name = name
        self.url = url
        self.module = module
        self._broker: Broker | None = None
        self._actors: tuple[Actor[Any, Any], Actor[Any, Any]] | None = None

    def native_broker(self) -> Broker:
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=self.url)

    @property
    def actors(self) -> tuple[Actor[Any, Any], Actor[Any, Any]]:
        if self._actors is None:
            self._broker = self.native_broker()
            self._actors = declare_native(self._broker)
        return self._actors

    def configuration(self) -> dict[str, Any]:
        return {"adapter": "dramatiq", "url": self.url}

    def worker_env(self) -> dict[str, str]:
        return {"UNIJOB_ADAPTER": "dramatiq", "UNIJOB_URL": self.url}

    def flush(self) -> None:
        redis.Redis.from_url(self.url).flushdb()  # db 10 is the Dramatiq benchmark's own

    def native_loop(self, n: int) -> None:
        send = self.actors[0].send
        for i in range(n):
            send(i)

    def native_bulk_paths(self) -> dict[str, Callable[[int], None]]:
        return {"group().run()": self.native_group}

    def native_group(self, n: int) -> None:
        noop_actor = self.actors[0]
        dramatiq.group([noop_actor.message(i) for i in range(n)], broker=self._broker).run()

    def native_counted(self, n: int) -> None:
        counted_actor = self.actors[1]
        for start in range(0, n, CHUNK):
            dramatiq.group([counted_actor.message(i) for i in range(start, min(n, start + CHUNK))], broker=self._broker).run()

    def worker_argv(self, unijob: bool) -> list[str]:
        # One command runs both kinds (unijob's broker with the native actors on it).
        threads = os.environ.get("UNIJOB_BENCH_DRAMATIQ_THREADS", "2")
        return [_dramatiq_script(), f"{self.module}:worker_setup", "--processes", "1", "--threads", threads]


TARGET = DramatiqTarget("dramatiq-redis", URL, __name__)
