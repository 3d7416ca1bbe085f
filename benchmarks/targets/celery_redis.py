"""Celery on Redis db 8, natively and through unijob.

The native side is a plain Celery app (``native`` below) on the same broker, configured like the app
unijob builds (JSON only, queue ``default``, ten Redis priority lists, default priority 5, no
results), with plain ``@app.task`` no-op tasks:

- ``native_loop``: ``noop.delay(i)`` per job, what a Celery application does.
- ``native_bulk_paths``: Celery's two bulk paths, ``group(...).apply_async()`` (one round trip per
  message) and the same group published inside kombu's ``Producer.batch()`` (pipelined on Redis);
  bench_enqueue times both in every run and keeps the faster as ``native_bulk``.

The worker is the stock ``celery worker`` for both kinds, on the app ``unijob.adapters.celery_worker``
builds (every unijob job registered as a task) with the native counted task registered on it too
(``-A benchmarks.targets.celery_redis``: the module's ``app`` attribute), so that only the per-job
overhead differs. The native counted task acknowledges late, as unijob's tasks do (an early
acknowledgement lets a prefork worker fetch the next message while the task runs: a delivery
guarantee traded for speed, not an overhead). The command is the one docs/backends/celery.md
gives, ``--loglevel INFO`` included. Knobs (environment of the benchmark process):
``UNIJOB_BENCH_CELERY_POOL`` (prefork), ``UNIJOB_BENCH_CELERY_CONCURRENCY`` (2),
``UNIJOB_BENCH_CELERY_LOGLEVEL`` (INFO), ``UNIJOB_BENCH_CELERY_ACKS_LATE`` (1; 0 for Celery's
default early acknowledgement of the native task).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celery
import redis
from celery import group
from kombu import Connection

from benchmarks.jobs import count_one

URL = "redis://127.0.0.1:6379/8"
QUEUE = "default"
NOOP = "benchmarks.native.noop"
COUNTED = "benchmarks.native.counted"


def native_app(url: str, *, amqp: bool) -> celery.Celery:
    """A plain Celery app configured like the one unijob's adapter builds for ``url``."""
    app = celery.Celery("native", broker=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_default_queue=QUEUE,
        task_ignore_result=True,
        task_queue_max_priority=10 if amqp else None,
        task_default_priority=5,
        worker_prefetch_multiplier=1,
        broker_transport_options={} if amqp else {"priority_steps": list(range(10))},
        enable_utc=True,
        timezone="UTC",
    )
    return app


def noop(i: int) -> None:
    """The native no-op of the enqueue benchmark (never run)."""


def counted(i: int) -> None:
    """The native job of the worker benchmark: one INCR, like ``benchmarks.jobs.counted``."""
    count_one()


def register_native(app: celery.Celery) -> tuple[celery.Task, celery.Task]:
    """The native tasks, registered the plain Celery way (acks_late as unijob's tasks have it,
    unless UNIJOB_BENCH_CELERY_ACKS_LATE=0: Celery's default, acknowledging on receipt)."""
    acks_late = os.environ.get("UNIJOB_BENCH_CELERY_ACKS_LATE", "1") != "0"
    return app.task(name=NOOP)(noop), app.task(name=COUNTED, acks_late=acks_late)(counted)


def worker_app() -> celery.Celery:
    """The worker's app: unijob's, with the native tasks registered on it as well."""
    from unijob.adapters.celery_worker import worker_app as unijob_app

    app = unijob_app()
    register_native(app)
    return app


def _celery_script() -> str:
    beside = Path(sys.executable).with_name("celery")
    return str(beside) if beside.exists() else "celery"


class CeleryTarget:
    def __init__(self, name: str, url: str, module: str) -> None:
        self.name = name
        self.url = url
        self.module = module
        self.amqp = url.startswith("amqp")
        self.app = native_app(url, amqp=self.amqp)
        self.noop, self.counted = register_native(self.app)

    def configuration(self) -> dict[str, Any]:
        return {"adapter": "celery", "url": self.url}

    def worker_env(self) -> dict[str, str]:
        return {"UNIJOB_ADAPTER": "celery", "UNIJOB_URL": self.url}

    def flush(self) -> None:
        if self.amqp:
            connection = Connection(self.url)  # type: ignore[no-untyped-call]
            with connection, contextlib.suppress(*connection.channel_errors):  # not declared yet
                connection.channel().queue_purge(QUEUE)
        else:
            redis.Redis.from_url(self.url).flushdb()  # db 8 is the Celery benchmark's own

    def native_loop(self, n: int) -> None:
        delay = self.noop.delay
        for i in range(n):
            delay(i)

    def native_group(self, n: int) -> None:
        group(self.noop.s(i) for i in range(n)).apply_async()

    def native_group_batch(self, n: int) -> None:
        with self.app.producer_or_acquire() as producer, producer.batch():
            group(self.noop.s(i) for i in range(n)).apply_async(producer=producer)

    def native_bulk_paths(self) -> dict[str, Callable[[int], None]]:
        return {"group().apply_async()": self.native_group, "group in Producer.batch()": self.native_group_batch}

    def native_counted(self, n: int) -> None:
        # plain messages, as delay() sends them (a group's would carry a group id); not timed
        delay = self.counted.delay
        for i in range(n):
            delay(i)

    def worker_argv(self, unijob: bool) -> list[str]:
        # One command runs both kinds (unijob's app with the native tasks on it).
        pool = os.environ.get("UNIJOB_BENCH_CELERY_POOL", "prefork")
        concurrency = os.environ.get("UNIJOB_BENCH_CELERY_CONCURRENCY", "2")
        loglevel = os.environ.get("UNIJOB_BENCH_CELERY_LOGLEVEL", "INFO")
        return [
            _celery_script(), "-A", self.module, "worker", "--queues", QUEUE,
            "--pool", pool, "--concurrency", concurrency, "--loglevel", loglevel,
            "--hostname", f"bench-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
        ]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        return worker_app()
    raise AttributeError(name)


TARGET = CeleryTarget("celery-redis", URL, __name__)
