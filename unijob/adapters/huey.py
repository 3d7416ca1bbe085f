"""Huey: the zero-server default (a SQLite file), or Huey on Redis.

Each unijob job is a Huey task registered under the job's name (``tests.jobs.echo``), so the stock
``huey_consumer`` runs it (see :mod:`unijob.adapters.huey_worker`). A message is Huey's own
``Message`` (id, name, eta, priority, args, kwargs, ...) written as JSON, never pickle, with unijob's
metadata in one extra field, ``unijob``; plain arguments stay plain args/kwargs. Huey has one queue
per instance: every unijob queue of a backend shares it, and the job's queue rides in the metadata.

Configuration::

    unijob.configure("huey")                                  # ./unijob.sqlite3
    unijob.configure("huey", path="/var/lib/app/jobs.sqlite3")
    unijob.configure("huey", "sqlite:////var/lib/app/jobs.sqlite3")   # SQLAlchemy-style: 4 slashes = absolute
    unijob.configure("huey", "redis://localhost:6379/0")      # PriorityRedisHuey

Options: ``path`` (SQLite file), ``name`` (Huey queue name, default ``unijob``), ``timeout`` (seconds:
the SQLite busy timeout, or the Redis connect/read timeout; default 5), ``batch_store`` (a URL; by
default batch records live in a table of the same SQLite file, or in the same Redis).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple
from urllib.parse import urlsplit

import huey
from huey.api import Task
from huey.registry import Registry
from huey.serializer import Serializer
from huey.storage import BaseSqlStorage, PriorityRedisStorage, SqliteStorage
from huey.utils import utcnow

from unijob import registry, serializers
from unijob.adapters.base import Adapter, Capabilities, EnqueueOutcome
from unijob.batch_stores import BatchStore, SqliteStore
from unijob.envelope import FORMAT_VERSION, Envelope
from unijob.errors import ConfigurationError, EnqueueError
from unijob.job import Job

DEFAULT_PATH = "unijob.sqlite3"
DEFAULT_NAME = "unijob"
DEFAULT_TIMEOUT = 5.0
WORKER_MODULE = "unijob.adapters.huey_worker"
OPTIONS = ("path", "name", "timeout", "batch_store")


# --- the wire format -------------------------------------------------------------------------------


class JobMessage(NamedTuple):
    """Huey's ``registry.Message`` field for field, plus unijob's metadata (``None`` for a message
    sent by plain Huey code)."""

    id: str
    name: str
    eta: dt.datetime | None = None
    retries: int | None = None
    retry_delay: float | None = None
    priority: float | None = None
    args: Any = ()
    kwargs: Any = None
    on_complete: Any = None
    on_error: Any = None
    expires: Any = None
    expires_resolved: dt.datetime | None = None
    timeout: float | None = None
    chord_config: Any = None
    retry_backoff: float | None = None
    unijob: dict[str, Any] | None = None


_dumps = json.JSONEncoder(separators=(",", ":")).encode  # what json.dumps(..., separators=...) calls
_INSERT_TASK = "insert into task (queue, data, priority) values (?, ?, ?)"  # SqliteStorage's own rows
_INSERT_SCHEDULE = "insert into schedule (queue, data, timestamp) values (?, ?, ?)"
_DEFAULTS: dict[str, Any] = {"executions": 0, "exception_executions": {}}  # what Envelope.from_dict assumes
_ANY = object()
_TIMES = ("eta", "expires_resolved")  # naive UTC datetimes in Huey's utc mode: ISO-8601 on the wire
_NESTED = ("on_complete", "on_error")
_FIELDS = JobMessage._fields
_ARGS, _KWARGS, _CHORD, _EXPIRES = (_FIELDS.index(key) for key in ("args", "kwargs", "chord_config", "expires"))
_TIME_INDEXES = tuple(_FIELDS.index(key) for key in _TIMES)
_NESTED_INDEXES = tuple(_FIELDS.index(key) for key in _NESTED)


class JsonSerializer(Serializer):  # type: ignore[misc]
    """Huey's serializer, JSON instead of pickle. A task message is a JSON object with Huey's field
    names; anything else Huey stores (revocations, locks, counters) is ``{"data": ...}`` in
    unijob's tagged JSON. A payload that is not this JSON is refused, never unpickled."""

    def _serialize(self, data: Any) -> bytes:
        encoded = _encode_message(data) if _is_message(data) else {"data": serializers.dump(data)}
        return _dumps(encoded).encode()

    def _deserialize(self, data: bytes) -> Any:
        decoded = json.loads(bytes(data))
        if isinstance(decoded, dict) and "name" in decoded and "id" in decoded:
            return _decode_message(decoded)
        if isinstance(decoded, dict) and "data" in decoded:
            return serializers.load(decoded["data"])
        raise ValueError("not a unijob Huey payload")


def _is_message(data: Any) -> bool:
    return isinstance(data, tuple) and getattr(data, "_fields", ())[:2] == ("id", "name")


def _encode_message(message: Any) -> dict[str, Any]:
    fields = message._asdict()
    encoded: dict[str, Any] = {"id": fields.pop("id"), "name": fields.pop("name")}
    encoded["args"] = list(fields.pop("args") or ())
    encoded["kwargs"] = dict(fields.pop("kwargs") or {})
    for key, value in fields.items():
        if value is None:
            continue  # absent means None: keeps messages short and readable
        if key in _TIMES:
            value = value.isoformat()
        elif key in _NESTED:
            value = _encode_message(value)
        elif key == "chord_config":
            value = [*value[:3], _encode_message(value[3])]
        elif key == "expires":
            value = serializers.dump(value)
        encoded[key] = value
    return encoded


def _decode_message(data: dict[str, Any]) -> JobMessage:
    fields: list[Any] = [data.get(key) for key in _FIELDS]  # absent means None, as in Huey's own Message
    fields[_ARGS] = tuple(fields[_ARGS] or ())
    fields[_KWARGS] = dict(fields[_KWARGS] or {})
    for index in _TIME_INDEXES:
        if fields[index] is not None:
            fields[index] = dt.datetime.fromisoformat(fields[index])
    for index in _NESTED_INDEXES:
        if fields[index] is not None:
            fields[index] = _decode_message(fields[index])
    if fields[_CHORD] is not None:
        cid, size, idx, callback = fields[_CHORD]
        fields[_CHORD] = (cid, size, idx, _decode_message(callback))
    if fields[_EXPIRES] is not None:
        fields[_EXPIRES] = serializers.load(fields[_EXPIRES])
    return JobMessage._make(fields)


# --- the Huey side: one task class per job, named after the job ------------------------------------


class JobTask(Task):  # type: ignore[misc]
    """The Huey task of one unijob job. Runs it through :func:`unijob.execution.execute`."""

    job_name: ClassVar[str]
    adapter: ClassVar[HueyAdapter | None] = None
    unijob_meta: dict[str, Any] | None = None  # set per message by JobRegistry.create_task

    def execute(self) -> Any:
        from unijob.execution import execute

        data = dict(self.unijob_meta or self.native_meta())
        data["job"] = self.job_name  # the task name decides which job runs, whatever the metadata says
        if "id" not in data:  # left out on the wire when it is the message id (see HueyAdapter._item)
            data["id"] = self.id
        data["args"] = list(self.args)
        data["kwargs"] = dict(self.kwargs)
        return execute(Envelope.from_dict(data), adapter=self.adapter)

    def native_meta(self) -> dict[str, Any]:
        """Metadata for a message sent by plain Huey code: a fresh execution of the job."""
        priority = self.priority if type(self.priority) is int else None
        return {"v": FORMAT_VERSION, "id": self.id, "queue": registry.lookup(self.job_name).queue, "priority": priority}

    def __repr__(self) -> str:
        return f"{self.job_name}: {self.id}" + (f" @{self.eta}" if self.eta else "")


class JobRegistry(Registry):  # type: ignore[misc]
    """Huey's task registry, naming unijob tasks by job name and keeping unijob's metadata with the
    message when Huey re-serializes a task (the scheduler does, when a delayed task is due)."""

    def task_to_string(self, task_class: type[Task]) -> str:
        name: str | None = getattr(task_class, "job_name", None)
        return name or str(super().task_to_string(task_class))

    def string_to_task(self, task_str: str) -> type[Task]:
        if task_str not in self._registry:
            registry.lookup(task_str)  # raises UnknownJobError, saying why and how to register a job
        task_class: type[Task] = super().string_to_task(task_str)
        return task_class

    def create_message(self, task: Task) -> JobMessage:
        message = super().create_message(task)
        return JobMessage(**message._asdict(), unijob=getattr(task, "unijob_meta", None))

    def create_task(self, message: Any) -> Task:
        task = super().create_task(message)
        task.unijob_meta = getattr(message, "unijob", None)
        return task


class JobHuey(huey.Huey):  # type: ignore[misc]
    """A Huey instance with JSON messages and unijob jobs as tasks. No result store: unijob has no
    result API, and a job's return value need not be JSON."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, results=False, utc=True, serializer=JsonSerializer(), **kwargs)
        self._registry = JobRegistry()

    def register_job(self, job_class: type[Job], adapter: HueyAdapter) -> None:
        if job_class.name in self._registry._registry:
            return
        attributes = {"job_name": job_class.name, "adapter": adapter, "__module__": __name__, "__doc__": job_class.__doc__}
        self._registry.register(type(job_class.name, (JobTask,), attributes))

    def task_class(self, job_name: str) -> type[JobTask]:
        """The task class of a registered job, to enqueue it with Huey's own API."""
        task_class: type[JobTask] = self._registry.string_to_task(job_name)
        return task_class


# --- the adapter ------------------------------------------------------------------------------------


class _Item(NamedTuple):
    native_id: str
    data: bytes
    priority: int | None
    eta: dt.datetime | None  # naive UTC, for the schedule; None: straight to the queue


class HueyAdapter(Adapter):
    name = "huey"
    display_name = "Huey"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise ConfigurationError(f"unknown option(s) {', '.join(unknown)} for the huey backend (known: {', '.join(OPTIONS)})")
        self.queue_name = str(self.options.get("name") or DEFAULT_NAME)
        self.timeout = float(self.options.get("timeout") or DEFAULT_TIMEOUT)
        self.path: str | None = None
        if self.url is None or self.url.startswith("sqlite:"):
            self.path = _sqlite_path(self.url, self.options.get("path"))
            where = "a SQLite file"
        elif self.url.split(":", 1)[0] in ("redis", "rediss", "unix"):
            where = "Redis"
        else:
            raise ConfigurationError(f"the huey backend takes a sqlite:/// or redis:// URL, not {self.safe_url}")
        self.capabilities = Capabilities(
            delay=True,
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
            return JobHuey(self.queue_name, storage_class=SqliteStorage, filename=self.path, timeout=self.timeout)
        from redis import ConnectionPool

        assert self.url is not None

        # No retries and bounded timeouts: an unreachable Redis fails in seconds. The socket timeout
        # stays above Huey's 1 s blocking read.
        pool = ConnectionPool.from_url(self.url, socket_connect_timeout=self.timeout, socket_timeout=max(self.timeout, 2.0))
        return JobHuey(self.queue_name, storage_class=PriorityRedisStorage, connection_pool=pool)

    # --- producer side ---------------------------------------------------------------------------

    def enqueue(self, envelope: Envelope) -> str | None:
        item = self._item(envelope)
        try:  # what self.enqueue_errors() does, without a context manager on the per-job path
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
            raise self.enqueue_error(exc) from exc
        return item.native_id

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
        """One storage transaction for the chunk: a SQLite ``BEGIN EXCLUSIVE ... COMMIT``, or a Redis
        MULTI/EXEC pipeline. All of it is enqueued, or none of it (each job then reports the error)."""
        items = [self._item(envelope) for envelope in envelopes]
        try:
            with self.enqueue_errors(*_BROKER_ERRORS):
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
        if not envelope.executions:
            del meta["id"]  # the message id; a retry's message id is "<job id>-<executions>"
        message["unijob"] = {key: value for key, value in meta.items() if value is not None and _DEFAULTS.get(key, _ANY) != value}
        due_later = naive_eta is not None and naive_eta > utcnow()
        return _Item(job_id, _dumps(message).encode(), envelope.priority, naive_eta if due_later else None)

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

    def make_batch_store(self) -> BatchStore:
        """Batch records live in a table of Huey's own SQLite file (on Redis: in that Redis)."""
        if self.path is not None and not self.options.get("batch_store"):
            from unijob import config

            return SqliteStore(self.path, config.settings().batch_retention)
        return super().make_batch_store()

    # --- worker side -----------------------------------------------------------------------------

    def consumer_huey(self, jobs: Mapping[str, type[Job]]) -> JobHuey:
        """This backend's Huey instance with every job registered as a task, for huey_consumer."""
        instance = self.huey
        for job_class in jobs.values():
            instance.register_job(job_class, self)
        return instance

    def worker_argv(self, queues: Sequence[str], concurrency: int | None, burst: bool) -> list[str]:
        from unijob.worker import queues_of

        missing = set(queues_of(registry.registered())) - set(queues)
        if missing:
            raise ConfigurationError(
                f"a Huey consumer serves every queue of its backend; it cannot leave out {', '.join(sorted(missing))}. "
                "Configure another huey backend with its own 'name' option for jobs that need their own workers"
            )
        argv = [*_huey_consumer(), f"{WORKER_MODULE}.huey", "-k", "thread", "-w", str(concurrency or 2), "-m", "1", "-g", "TERM"]
        if self.alias != "default":
            argv = ["env", f"UNIJOB_HUEY_BACKEND={self.alias}", *argv]
        return argv

    def pending_jobs(self, queues: Sequence[str], within: float) -> int:
        """Queued tasks plus delayed ones due within ``within`` seconds, on the whole Huey queue.
        Running tasks are not visible in Huey's storage; ``unijob worker --burst`` stops the
        consumer gracefully, so they finish."""
        storage = self.huey.storage
        horizon = utcnow() + dt.timedelta(seconds=within)
        if isinstance(storage, BaseSqlStorage):
            # SqliteStorage stores a schedule time as naive_utc.timestamp(); compare the same way.
            row = storage.sql(
                "select (select count(*) from task where queue = ?) + "
                "(select count(*) from schedule where queue = ? and timestamp <= ?)",
                (storage.name, storage.name, horizon.timestamp()),
                results=True,
            )
            return int(row[0][0])
        return int(storage.queue_size()) + int(storage.conn.zcount(storage.schedule_key, "-inf", storage.convert_ts(horizon)))


def _sqlite_path(url: str | None, path: Any) -> str:
    if url is not None:
        parts = urlsplit(url)
        if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
            raise ConfigurationError(f"a SQLite URL is sqlite:///relative/file.db or sqlite:////absolute/file.db, not {url!r}")
        path = parts.path[1:]
    return os.path.abspath(os.fspath(path or DEFAULT_PATH))


def _broker_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    try:
        from redis.exceptions import RedisError
    except ImportError:  # SQLite only
        return errors
    return (*errors, RedisError)


_BROKER_ERRORS = _broker_errors()


def _huey_consumer() -> list[str]:
    script = Path(sys.executable).with_name("huey_consumer")
    return [str(script)] if script.exists() else [sys.executable, "-m", "huey.bin.huey_consumer"]
