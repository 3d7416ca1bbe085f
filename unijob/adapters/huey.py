"""Huey: the zero-server default (a SQLite file), or Huey on Redis.

Each unijob job is a Huey task registered under the job's name (``tests.jobs.echo``), so the stock
``huey_consumer`` runs it (see :mod:`unijob.adapters.huey_worker`). A message is Huey's own
``Message`` (id, name, eta, priority, args, kwargs, ...) written as JSON, never pickle, with unijob's
metadata in one extra field, ``unijob`` (:mod:`unijob.adapters.huey_wire`); plain arguments stay
plain args/kwargs. Huey has one queue per instance: every unijob queue of a backend shares it, and
the job's queue rides in the metadata.

Configuration::

    unijob.configure("huey")                                  # ./unijob.sqlite3
    unijob.configure("huey", path="/var/lib/app/jobs.sqlite3")
    unijob.configure("huey", "sqlite:////var/lib/app/jobs.sqlite3")   # SQLAlchemy-style: 4 slashes = absolute
    unijob.configure("huey", "redis://localhost:6379/0")      # PriorityRedisHuey

Options: ``path`` (SQLite file), ``name`` (Huey queue name, default ``unijob``), ``timeout`` (seconds:
the SQLite busy timeout, or the Redis connect/read timeout; default 5), ``store`` (a URL; by
default batch records live in a table of the same SQLite file, or in the same Redis).
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

from huey.storage import BaseSqlStorage, PriorityRedisStorage

from unijob import scheduling
from unijob.adapters.base import Adapter, Capabilities, EnqueueOutcome
from unijob.adapters.huey_wire import JobHuey, JobSqliteStorage, dumps
from unijob.envelope import Envelope
from unijob.errors import BackendNotInstalledError, EnqueueError
from unijob.urls import REDIS_SCHEMES, require_scheme, sqlite_path

DEFAULT_PATH: Final = "unijob.sqlite3"
DEFAULT_NAME: Final = "unijob"
DEFAULT_TIMEOUT: Final = 5.0
_INSERT_TASK: Final = "insert into task (queue, data, priority) values (?, ?, ?)"  # SqliteStorage's own rows
_INSERT_SCHEDULE: Final = "insert into schedule (queue, data, timestamp) values (?, ?, ?)"
_DEFAULTS: Final[dict[str, Any]] = {"executions": 0, "exception_executions": {}}  # what Envelope.from_dict assumes
_ANY: Final = object()


class _Item(NamedTuple):
    native_id: str
    data: bytes
    priority: int | None
    eta: dt.datetime | None  # naive UTC, for the schedule; None: straight to the queue


class HueyAdapter(Adapter):
    name = "huey"
    display_name = "Huey"
    OPTIONS = frozenset({"path", "name", "timeout"})
    worker_module = "unijob.adapters.huey_worker"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queue_name = str(self.options.get("name") or DEFAULT_NAME)
        self.timeout = float(self.options.get("timeout") or DEFAULT_TIMEOUT)
        self.path: str | None = None
        if self.url is None or require_scheme(self.url, REDIS_SCHEMES | {"sqlite"}, self.name) == "sqlite":
            self.path = sqlite_path(self.url, self.options.get("path"), DEFAULT_PATH)
            where = "a SQLite file"
        else:
            where = "Redis"
        self.capabilities = Capabilities(
            priority=True,
            native_bulk=True,
            notes=f"on {where}; one transaction per bulk chunk; one Huey queue per backend (unijob queues ride as metadata)",
        )
        self._huey: JobHuey | None = None
        self._pid = 0

    @property
    def safe_url(self) -> str:
        return f"sqlite:///{self.path}" if self.path is not None else super().safe_url

    @property
    def description(self) -> str:
        return f"Huey on SQLite ({self.path})" if self.path is not None else f"Huey on Redis at {self.safe_url}"

    @property
    def huey(self) -> JobHuey:
        """The Huey instance, built on first use (and again in a forked child: a SQLite connection
        must not cross a fork)."""
        if self._huey is None or self._pid != os.getpid():
            self._huey = self._build()
            self._pid = os.getpid()
        return self._huey

    def _build(self) -> JobHuey:
        if self.path is not None:
            if not Path(self.path).parent.is_dir():  # sqlite would say only "unable to open database file"
                raise sqlite3.OperationalError(f"directory {Path(self.path).parent} does not exist")
            # WAL (Huey's default) lets producers and consumers share the file; the busy timeout
            # makes a writer wait for another process's transaction instead of failing at once.
            return JobHuey(self.queue_name, storage_class=JobSqliteStorage, filename=self.path, timeout=self.timeout)
        try:
            from redis import ConnectionPool
        except ImportError as exc:
            raise BackendNotInstalledError(
                'Huey on Redis needs redis-py, which is not installed: pip install "unijob[huey]"'
            ) from exc

        assert self.url is not None

        # No retries and bounded timeouts: an unreachable Redis fails in seconds. The socket timeout
        # stays above Huey's 1 s blocking read.
        pool = ConnectionPool.from_url(self.url, socket_connect_timeout=self.timeout, socket_timeout=max(self.timeout, 2.0))
        return JobHuey(self.queue_name, storage_class=PriorityRedisStorage, connection_pool=pool)

    # --- producer side ---------------------------------------------------------------------------

    def enqueue(self, envelope: Envelope) -> str | None:
        item = self._item(envelope)
        try:  # what self.as_enqueue_error() does, without a context manager on the per-job path
            storage = self.huey.storage
            if isinstance(storage, BaseSqlStorage):
                # The row SqliteStorage.enqueue / add_to_schedule writes, as one autocommit INSERT:
                # atomic on its own, and one statement less than Huey's BEGIN; INSERT; COMMIT.
                row: tuple[Any, ...]
                if item.eta is None:
                    sql, row = _INSERT_TASK, (storage.name, storage.to_blob(item.data), item.priority or 0)
                else:
                    sql, row = _INSERT_SCHEDULE, (storage.name, storage.to_blob(item.data), item.eta.timestamp())
                with storage.lock:
                    storage.conn.execute(sql, row)
            elif item.eta is None:
                storage.enqueue(item.data, item.priority)
            else:
                storage.add_to_schedule(item.data, item.eta)
        except _BROKER_ERRORS as exc:
            raise self.enqueue_error_for(exc) from exc
        return item.native_id

    def enqueue_all(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
        """One storage transaction for the chunk: a SQLite ``BEGIN EXCLUSIVE ... COMMIT``, or a Redis
        MULTI/EXEC pipeline. All of it is enqueued, or none of it (each job then reports the error)."""
        items = [self._item(envelope) for envelope in envelopes]
        try:
            with self.as_enqueue_error(*_BROKER_ERRORS):
                storage = self.huey.storage
                if isinstance(storage, BaseSqlStorage):
                    self._insert_sqlite(storage, items)
                else:
                    self._pipeline_redis(storage, items)
        except EnqueueError as error:
            return [EnqueueOutcome(error=error) for _ in items]
        return [EnqueueOutcome(item.native_id) for item in items]

    def _item(self, envelope: Envelope) -> _Item:
        """The message as :class:`JsonSerializer` writes a :class:`JobMessage`, built straight from
        the envelope and without the fields that hold nothing: Huey's retry settings stay at the task
        class defaults (0: retries belong to unijob), and the metadata leaves out the job name and id
        (the task's own name and id), empty values and defaults: short rows are cheaper to write and read."""
        eta = envelope.scheduled_at
        naive_eta = eta.astimezone(dt.timezone.utc).replace(tzinfo=None) if eta is not None else None
        job_id = self.native_id(envelope)
        message: dict[str, Any] = {"id": job_id, "name": envelope.job, "args": envelope.args, "kwargs": envelope.kwargs}
        if naive_eta is not None:
            message["eta"] = naive_eta.isoformat()
        if envelope.priority is not None:
            message["priority"] = envelope.priority  # the same scale: larger runs sooner in Huey too
        meta = envelope.meta()
        del meta["job"]
        if job_id == envelope.job_id:
            del meta["id"]  # the message id; a retry's (or a postponed job's) message id is "<job id>-..."
        message["unijob"] = {key: value for key, value in meta.items() if value is not None and _DEFAULTS.get(key, _ANY) != value}
        due_later = scheduling.due_at(eta) is not None
        return _Item(job_id, dumps(message).encode(), envelope.priority, naive_eta if due_later else None)

    def _insert_sqlite(self, storage: Any, items: list[_Item]) -> None:
        # The rows SqliteStorage.enqueue and add_to_schedule write, in one transaction.
        name, blob = storage.name, storage.to_blob
        queued = [(name, blob(item.data), item.priority or 0) for item in items if item.eta is None]
        scheduled = [(name, blob(item.data), item.eta.timestamp()) for item in items if item.eta is not None]
        with storage.db(commit=True) as cursor:
            if queued:
                cursor.executemany(_INSERT_TASK, queued)
            if scheduled:
                cursor.executemany(_INSERT_SCHEDULE, scheduled)

    def _pipeline_redis(self, storage: Any, items: list[_Item]) -> None:
        # Huey's own enqueue/add_to_schedule code, writing into one MULTI/EXEC pipeline.
        pipeline = storage.conn.pipeline(transaction=True)
        pipelined = copy.copy(storage)
        pipelined.conn = pipeline
        for item in items:
            if item.eta is None:
                pipelined.enqueue(item.data, item.priority)
            else:
                pipelined.add_to_schedule(item.data, item.eta)
        pipeline.execute()

    def close(self) -> None:
        if self._huey is not None and self._pid == os.getpid():
            storage = self._huey.storage
            if isinstance(storage, BaseSqlStorage):
                storage.close()  # reconnects on next use
            else:
                storage.pool.disconnect()

    def store_url(self) -> str:
        """Batch records live in a table of Huey's own SQLite file (on Redis: in that Redis)."""
        if self.path is not None and not self.options.get("store"):
            return f"sqlite:///{self.path}"
        return super().store_url()


def _broker_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    try:
        from redis.exceptions import RedisError
    except ImportError:  # SQLite only
        return errors
    return (*errors, RedisError)


_BROKER_ERRORS = _broker_errors()
