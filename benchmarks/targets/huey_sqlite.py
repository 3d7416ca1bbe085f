"""Huey on a SQLite file (unijob's embedded default), run by the stock ``huey_consumer``.

The native side is plain Huey code on the same file and the same Huey queue (``unijob``):

- ``native_loop`` calls a ``@huey.task()`` function once per job, on a ``SqliteHuey`` with Huey's
  defaults (pickle): what a Huey application does.
- ``native_bulk_paths``: ``task.map(range(n))``, Huey's only bulk API, which is a per-job loop too.
- ``native_counted`` (worker benchmark) sends a plain ``@huey.task()`` that calls
  ``benchmarks.jobs.count_one()``. The one consumer that drains both kinds reads JSON only (unijob's
  consumer never unpickles), so this instance serializes with unijob's ``JsonSerializer``: the same
  bytes a native task would carry, minus pickle.

The worker is the stock consumer on the instance ``consumer`` below: the one
``unijob.adapters.huey_worker`` builds (every unijob job registered as a Huey task) with the native
counted task registered on it too, with the flags docs/backends/huey.md gives.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import huey

from benchmarks.jobs import count_one
from unijob.adapters.huey_wire import JsonSerializer

PATH = Path(os.environ.get("UNIJOB_BENCH_HUEY_PATH", "/tmp/unijob-bench/huey.sqlite3"))
NAME = "unijob"  # the Huey queue unijob's adapter uses by default
PATH.parent.mkdir(parents=True, exist_ok=True)

native = huey.SqliteHuey(NAME, filename=str(PATH), utc=True, results=False)
native_json = huey.SqliteHuey(NAME, filename=str(PATH), utc=True, results=False, serializer=JsonSerializer())


@native.task()  # type: ignore[untyped-decorator]
def native_noop(i: int) -> None:
    """Enqueue benchmarks: never run."""


@native_json.task()  # type: ignore[untyped-decorator]
def native_counted_task(i: int) -> None:
    """Worker benchmark: one INCR, like ``benchmarks.jobs.counted``."""
    count_one()


class HueySqlite:
    name = "huey-sqlite"

    def configuration(self) -> dict[str, Any]:
        return {"adapter": "huey", "path": str(PATH)}

    def worker_env(self) -> dict[str, str]:
        return {"UNIJOB_ADAPTER": "huey", "UNIJOB_OPTIONS": json.dumps({"path": str(PATH)})}

    def flush(self) -> None:
        with sqlite3.connect(PATH, timeout=30) as conn:
            conn.execute("delete from task where queue = ?", (NAME,))
            conn.execute("delete from schedule where queue = ?", (NAME,))
        conn.close()

    def native_loop(self, n: int) -> None:
        for i in range(n):
            native_noop(i)

    def native_bulk_paths(self) -> dict[str, Callable[[int], None]]:
        return {"task.map()": self.native_map}

    def native_map(self, n: int) -> None:
        native_noop.map(range(n))

    def native_counted(self, n: int) -> None:
        for i in range(n):
            native_counted_task(i)

    def worker_argv(self, unijob: bool) -> list[str]:
        # One consumer runs both kinds, so only the per-job overhead differs.
        consumer = str(Path(sys.executable).with_name("huey_consumer"))
        return [consumer, f"{__name__}.consumer", "-k", "thread", "-w", "2", "-m", "1", "-g", "TERM"]


def __getattr__(name: str) -> Any:
    """``consumer``, built on first access (by huey_consumer, in the worker process only)."""
    if name != "consumer":
        raise AttributeError(name)
    from unijob.adapters.huey_worker import huey as consumer

    consumer._registry.register(native_counted_task.task_class)
    globals()["consumer"] = consumer
    return consumer


TARGET = HueySqlite()
