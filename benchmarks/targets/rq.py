"""RQ on Redis db 9, natively and through unijob, both with RQ's JSON serializer.

Native jobs are the plain functions below, enqueued by reference (``Queue.enqueue``) so RQ stores
their dotted path; a plain ``rq worker --serializer json`` imports them (PYTHONPATH = repo root),
preloaded through ``--config`` (this module's upper-case names are none of RQ's settings).
unijob's jobs need unijob's worker and job classes (the job class refuses unregistered functions),
so the two worker commands differ only in ``--worker-class``/``--job-class`` (and the native
one's ``--config``).

The worker class is RQ's default forking ``Worker`` for both, as ``unijob worker`` runs it;
``UNIJOB_BENCH_RQ_WORKER=simple`` compares both on the non-forking ``SimpleWorker`` instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from rq.queue import Queue
from rq.serializers import JSONSerializer

from benchmarks.jobs import count_one

URL = "redis://127.0.0.1:6379/9"
QUEUE = "default"
CHUNK = 1000


def noop(i: int) -> None:
    """The native no-op of the enqueue benchmark (never run)."""


def counted(i: int) -> None:
    """The native job of the worker benchmark: one INCR, like ``benchmarks.jobs.counted``."""
    count_one()


def _rq_script() -> str:
    beside = Path(sys.executable).with_name("rq")
    return str(beside) if beside.exists() else "rq"


class RQTarget:
    name = "rq"

    def __init__(self) -> None:
        self._redis: redis.Redis | None = None
        self._queue: Queue | None = None

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            self._redis = redis.Redis.from_url(URL)
            self._queue = Queue(QUEUE, connection=self._redis, serializer=JSONSerializer)
        return self._queue

    def configuration(self) -> dict[str, Any]:
        return {"adapter": "rq", "url": URL}

    def worker_env(self) -> dict[str, str]:
        return {"UNIJOB_ADAPTER": "rq", "UNIJOB_URL": URL}

    def flush(self) -> None:
        # db 9 is the RQ benchmark's own; ASYNC: freeing a million jobs outlasts the socket timeout
        self.queue.connection.flushdb(asynchronous=True)

    def native_loop(self, n: int) -> None:
        enqueue = self.queue.enqueue
        for i in range(n):
            enqueue(noop, i)

    def native_bulk_paths(self) -> dict[str, Callable[[int], None]]:
        return {"enqueue_many()": self.native_enqueue_many}

    def native_enqueue_many(self, n: int) -> None:
        # RQ's bulk path as its docs show it: prepare_data per job, then one enqueue_many call
        # (one MULTI/EXEC pipeline) for the whole list.
        prepare = Queue.prepare_data
        self.queue.enqueue_many([prepare(noop, (i,)) for i in range(n)])

    def native_counted(self, n: int) -> None:
        prepare = Queue.prepare_data
        for start in range(0, n, CHUNK):
            self.queue.enqueue_many([prepare(counted, (i,)) for i in range(start, min(n, start + CHUNK))])

    def worker_argv(self, unijob: bool) -> list[str]:
        simple = os.environ.get("UNIJOB_BENCH_RQ_WORKER", "fork") == "simple"
        if unijob:
            classes = [
                "--worker-class",
                f"unijob.adapters.rq_worker.{'SimpleWorker' if simple else 'Worker'}",
                "--job-class",
                "unijob.adapters.rq_worker.Job",
            ]
        else:
            # -c (RQ's settings module) imports this module in the worker's main process, as
            # unijob's worker class imports the job modules: the forked work horses inherit it
            # instead of importing it (and unijob, through benchmarks.jobs) for every job.
            classes = ["--worker-class", f"rq.worker.{'SimpleWorker' if simple else 'Worker'}", "--config", __name__]
        return [_rq_script(), "worker", "--with-scheduler", "--url", URL, *classes, "--serializer", "json", QUEUE]


TARGET = RQTarget()
