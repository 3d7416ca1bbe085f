"""Huey's wire format for unijob: JSON messages (never pickle), a task registry that knows
unijob jobs by name, and a SQLite storage that keeps a taken task until it ended.

Checked against huey 3.5.4. :class:`JobMessage` is ``huey.registry.Message`` field for field plus
unijob's metadata; :class:`JsonSerializer` stands in for ``huey.serializer.Serializer``'s pickle;
:class:`JobRegistry` is ``huey.registry.Registry`` keeping that metadata when Huey re-serializes a
task (its scheduler does, when a delayed task is due); :class:`JobSqliteStorage` is
``huey.storage.SqliteStorage`` whose ``dequeue`` (``BaseSqlStorage.dequeue``, mirrored) marks the
row it takes instead of deleting it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from typing import Any, Final, NamedTuple

import huey
from huey.api import Task
from huey.registry import Registry
from huey.serializer import Serializer
from huey.storage import SqliteStorage

from unijob import registry, serializers


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


dumps = json.JSONEncoder(separators=(",", ":")).encode  # what json.dumps(..., separators=...) calls
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
        return dumps(encoded).encode()

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
    """A Huey instance with JSON messages and unijob jobs as tasks (registered by the worker,
    :mod:`unijob.adapters.huey_worker`). No result store: a job's return value need not be JSON."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, results=False, utc=True, serializer=JsonSerializer(), **kwargs)
        self._registry = JobRegistry()

    def task_class(self, job_name: str) -> type[Task]:
        """The task class of a registered job, to enqueue it with Huey's own API."""
        task_class: type[Task] = self._registry.string_to_task(job_name)
        return task_class

    def dequeue(self) -> Task | None:
        """Huey's ``dequeue``, remembering the storage row of the task taken (see
        :class:`JobSqliteStorage`); a task Huey cannot read is finished at once, being refused."""
        data = self.storage.dequeue()
        if data is None:
            return None
        row = self.storage.taken_row() if isinstance(self.storage, JobSqliteStorage) else None
        try:
            task: Task = self.deserialize_task(data)
        except Exception:
            if row is not None:
                self.storage.finish(row)
            raise
        task.unijob_row = row
        return task


TAKEN: Final = ":taken:"


class JobSqliteStorage(SqliteStorage):  # type: ignore[misc]
    """Huey's SQLite storage, except that a consumer taking a task does not delete its row: the row
    moves to the queue ``<name>:taken:<pid>`` (no consumer reads it) until the task ended
    (:meth:`finish`), and a consumer starting on the file puts back the tasks of consumers that are
    gone (:meth:`release_orphans`). So a task whose consumer was killed runs again: at least once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._taken = threading.local()

    def dequeue(self) -> bytes | None:
        if not self.sql("select 1 from task where queue = ? limit 1", (self.name,), results=True):
            return None
        with self.db(commit=True) as cursor:
            cursor.execute("select id, data from task where queue = ? order by priority desc, id limit 1", (self.name,))
            found = cursor.fetchone()
            if found is None:
                return None
            row, data = found
            cursor.execute("update task set queue = ? where id = ? and queue = ?", (self.taken_queue(), row, self.name))
            if cursor.rowcount != 1:
                return None
        self._taken.row = row
        return bytes(data)

    def taken_queue(self, pid: int | None = None) -> str:
        return f"{self.name}{TAKEN}{pid or os.getpid()}"

    def taken_row(self) -> int | None:
        """The row of the task this thread took last (Huey's consumer threads dequeue each their own)."""
        row: int | None = getattr(self._taken, "row", None)
        self._taken.row = None
        return row

    def finish(self, row: int) -> None:
        self.sql("delete from task where id = ?", (row,), commit=True)

    def taken_count(self) -> int:
        return int(self.sql("select count(*) from task where queue like ?", (self.name + TAKEN + "%",), results=True)[0][0])

    def release_orphans(self) -> int:
        """Put back in the queue the tasks taken by consumers whose process is gone; how many."""
        released = 0
        for (queue,) in self.sql("select distinct queue from task where queue like ?", (self.name + TAKEN + "%",), results=True):
            pid = int(queue.rpartition(":")[2])
            if pid == os.getpid() or _alive(pid):
                continue
            with self.db(commit=True) as cursor:
                cursor.execute("update task set queue = ? where queue = ?", (self.name, queue))
                released += cursor.rowcount
        return released


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
