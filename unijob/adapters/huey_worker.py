"""The Huey worker side: the Huey instance that the stock consumer loads::

    huey_consumer unijob.adapters.huey_worker.huey -k thread -w 2 -m 1 -g TERM

``huey`` is built on first access: it imports the configured job modules (``imports`` setting, or
``UNIJOB_IMPORTS``) and registers every job as a Huey task named after the job, on the Huey
instance of the ``default`` backend (``UNIJOB_ADAPTER=huey``, ``UNIJOB_URL``, ``UNIJOB_OPTIONS``),
or of the backend named by ``UNIJOB_HUEY_BACKEND``. Nothing else is registered: a message naming
any other task is refused by Huey's registry, and a payload that is not unijob's JSON is never
unpickled.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from huey.api import Task
from huey.storage import BaseSqlStorage
from huey.utils import utcnow

from unijob import worker
from unijob.adapters.huey import HueyAdapter
from unijob.adapters.huey_wire import JobHuey, JobSqliteStorage
from unijob.constants import DEFAULT_BACKEND
from unijob.core import BaseJob
from unijob.errors import ConfigurationError

BACKEND_VARIABLE = "UNIJOB_HUEY_BACKEND"


class JobTask(Task):  # type: ignore[misc]
    """The Huey task of one unijob job."""

    job_name: ClassVar[str]
    adapter: ClassVar[HueyAdapter]
    unijob_meta: dict[str, Any] | None = None  # set per message by JobRegistry.create_task
    unijob_row: int | None = None  # its row in JobSqliteStorage, set by JobHuey.dequeue

    def execute(self) -> Any:
        priority = self.priority if type(self.priority) is int else None  # what plain Huey code gave it
        try:
            # The task name decides which job runs, whatever the metadata says.
            delivery = worker.Delivery(self.job_name, self.unijob_meta, self.args, self.kwargs, self.id, priority=priority)
            return worker.run(self.adapter, delivery)
        finally:
            storage = self.adapter.huey.storage
            if self.unijob_row is not None and isinstance(storage, JobSqliteStorage):
                storage.finish(self.unijob_row)

    def __repr__(self) -> str:
        return f"{self.job_name}: {self.id}" + (f" @{self.eta}" if self.eta else "")


def consumer_huey(adapter: HueyAdapter, jobs: Mapping[str, type[BaseJob]]) -> JobHuey:
    """The backend's Huey instance with every job registered as a task, for huey_consumer."""
    instance = adapter.huey
    known = instance._registry._registry
    for job_class in jobs.values():
        if job_class.name not in known:
            attributes = {"job_name": job_class.name, "adapter": adapter, "__module__": __name__, "__doc__": job_class.__doc__}
            instance._registry.register(type(job_class.name, (JobTask,), attributes))
    return instance


def build(backend: str | None = None) -> JobHuey:
    backend = backend or os.environ.get(BACKEND_VARIABLE) or DEFAULT_BACKEND
    adapter = worker.serve(backend, HueyAdapter, "huey_consumer")
    instance = consumer_huey(adapter, worker.load_jobs())
    if isinstance(instance.storage, JobSqliteStorage):
        released = instance.storage.release_orphans()
        if released:
            worker.logger.warning("Put back %d task(s) taken by Huey consumers that are gone, to run again", released)
    return instance


def command(adapter: HueyAdapter, queues: Sequence[str], concurrency: int | None) -> list[str]:
    missing = set(worker.queues_of(worker.load_jobs())) - set(queues)
    if missing:
        raise ConfigurationError(
            f"a Huey consumer serves every queue of its backend; it cannot leave out {', '.join(sorted(missing))}. "
            "Configure another huey backend with its own 'name' option for jobs that need their own workers"
        )
    consumer = worker.console_script("huey_consumer", "huey.bin.huey_consumer")
    argv = [*consumer, f"{__name__}.huey", "-k", "thread", "-w", str(concurrency or 2), "-m", "1", "-g", "TERM"]
    if adapter.alias != DEFAULT_BACKEND:
        argv = ["env", f"{BACKEND_VARIABLE}={adapter.alias}", *argv]
    return argv


def pending(adapter: HueyAdapter, queues: Sequence[str], within: float) -> int:
    """Queued, running (on SQLite) and delayed tasks due within ``within`` seconds, on the whole
    Huey queue. On Redis running tasks are not visible; ``unijob worker --burst`` stops the
    consumer gracefully, so they finish."""
    storage = adapter.huey.storage
    horizon = utcnow() + dt.timedelta(seconds=within)
    if isinstance(storage, BaseSqlStorage):
        # SqliteStorage stores a schedule time as naive_utc.timestamp(); compare the same way.
        row = storage.sql(
            "select (select count(*) from task where queue = ?) + "
            "(select count(*) from schedule where queue = ? and timestamp <= ?)",
            (storage.name, storage.name, horizon.timestamp()),
            results=True,
        )
        running = storage.taken_count() if isinstance(storage, JobSqliteStorage) else 0
        return int(row[0][0]) + running
    return int(storage.queue_size()) + int(storage.conn.zcount(storage.schedule_key, "-inf", storage.convert_ts(horizon)))


_built: JobHuey | None = None


def __getattr__(name: str) -> Any:
    """``huey``: built on first access, so that importing this module does nothing by itself."""
    global _built
    if name != "huey":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _built is None:
        _built = build()
    return _built
