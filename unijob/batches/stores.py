"""Where batch records live: memory (inline, test), Redis (atomic Lua scripts), SQLite (one transaction).

A record counts its jobs. Every change that may fire a callback is one atomic step in the store,
so each callback fires exactly once however many workers finish jobs at the same moment:

- ``add(n)``: ``n`` more jobs belong to the batch (before they are enqueued, so ``pending`` never
  goes below zero while a job finishes early); refused once the batch finished.
- ``finish_job(outcome)``: a job reached a final state (``succeeded`` or ``discarded``) or was
  never enqueued (``withdrawn``). Returns the events that fire now.
- ``seal()``: every job of the block was added; from now on ``pending == 0`` means finished.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from unijob.constants import DEFAULT_BACKEND
from unijob.errors import BatchFinishedError, ConfigurationError, Error
from unijob.stores import SqliteTables

Outcome = Literal["succeeded", "discarded", "withdrawn"]
BatchEvent = Literal["finish", "success", "discard"]


@dataclasses.dataclass(frozen=True)
class BatchRecord:
    id: str
    properties: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # values serialized like job arguments
    callbacks: Mapping[str, str] = dataclasses.field(default_factory=dict)  # event -> job name
    callback_queue: str | None = None
    backend: str = DEFAULT_BACKEND
    total: int = 0
    pending: int = 0
    succeeded: int = 0
    discarded: int = 0
    sealed: bool = False
    created_at: float = 0.0
    finished_at: float | None = None
    discarded_at: float | None = None


def _transition(record: BatchRecord) -> tuple[BatchRecord, list[BatchEvent]]:
    """Finish the batch if it is sealed and nothing is pending. The one rule, used by every store
    that is not Redis (whose Lua script mirrors it)."""
    if record.sealed and record.pending <= 0 and record.finished_at is None:
        record = dataclasses.replace(record, finished_at=time.time())
        events: list[BatchEvent] = ["finish"]
        if record.discarded == 0:
            events.append("success")
        return record, events
    return record, []


def _merge(properties: Mapping[str, Any], changed: Mapping[str, Any], removed: Sequence[str]) -> dict[str, Any]:
    merged = {**properties, **changed}
    for key in removed:
        merged.pop(key, None)
    return merged


def _apply(record: BatchRecord, outcome: Outcome) -> tuple[BatchRecord, list[BatchEvent]]:
    events: list[BatchEvent] = []
    if outcome == "withdrawn":
        record = dataclasses.replace(record, total=record.total - 1, pending=record.pending - 1)
    elif outcome == "succeeded":
        record = dataclasses.replace(record, pending=record.pending - 1, succeeded=record.succeeded + 1)
    else:
        record = dataclasses.replace(record, pending=record.pending - 1, discarded=record.discarded + 1)
        if record.discarded_at is None:
            record = dataclasses.replace(record, discarded_at=time.time())
            events.append("discard")
    record, finished = _transition(record)
    return record, events + finished


class BatchStore(Protocol):
    def create(self, record: BatchRecord) -> None: ...
    def get(self, batch_id: str) -> BatchRecord | None: ...
    def add(self, batch_id: str, count: int) -> None: ...
    def finish_job(self, batch_id: str, outcome: Outcome) -> list[BatchEvent]: ...
    def seal(self, batch_id: str) -> list[BatchEvent]: ...
    def update_properties(self, batch_id: str, changed: Mapping[str, Any], removed: Sequence[str]) -> None: ...
    def delete(self, batch_id: str) -> None: ...


class MemoryStore:
    """For the inline and test adapters: one per process."""

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self._records: dict[str, BatchRecord] = {}
        self._lock = threading.Lock()

    def create(self, record: BatchRecord) -> None:
        with self._lock:
            self._records[record.id] = record

    def get(self, batch_id: str) -> BatchRecord | None:
        with self._lock:
            record = self._records.get(batch_id)
            if record and record.finished_at and record.finished_at + self.retention < time.time():
                del self._records[batch_id]
                return None
            return record

    def add(self, batch_id: str, count: int) -> None:
        with self._lock:
            record = self._require(batch_id)
            self._records[batch_id] = dataclasses.replace(record, total=record.total + count, pending=record.pending + count)

    def finish_job(self, batch_id: str, outcome: Outcome) -> list[BatchEvent]:
        with self._lock:
            record, events = _apply(self._require(batch_id, finished_ok=True), outcome)
            self._records[batch_id] = record
            return events

    def seal(self, batch_id: str) -> list[BatchEvent]:
        with self._lock:
            record, events = _transition(dataclasses.replace(self._require(batch_id, finished_ok=True), sealed=True))
            self._records[batch_id] = record
            return events

    def update_properties(self, batch_id: str, changed: Mapping[str, Any], removed: Sequence[str]) -> None:
        with self._lock:
            record = self._require(batch_id, finished_ok=True)
            self._records[batch_id] = dataclasses.replace(record, properties=_merge(record.properties, changed, removed))

    def delete(self, batch_id: str) -> None:
        with self._lock:
            self._records.pop(batch_id, None)

    def _require(self, batch_id: str, finished_ok: bool = False) -> BatchRecord:
        record = self._records.get(batch_id)
        if record is None:
            raise Error(f"batch {batch_id} does not exist (or expired)")
        if record.finished_at is not None and not finished_ok:
            raise BatchFinishedError(f"batch {batch_id} has finished; jobs can no longer be added to it")
        return record


# --- Redis -----------------------------------------------------------------------------------------

_FIELDS_INT = ("total", "pending", "succeeded", "discarded")

# KEYS = record, properties; ARGV = change ('seal' or a job's outcome), now, retention.
# Mirrors _apply and _transition above.
_CHANGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local change, now, retention = ARGV[1], ARGV[2], tonumber(ARGV[3])
local events = {}
if change == 'seal' then
  redis.call('HSET', KEYS[1], 'sealed', '1')
else
  redis.call('HINCRBY', KEYS[1], 'pending', -1)
  if change == 'withdrawn' then
    redis.call('HINCRBY', KEYS[1], 'total', -1)
  elseif change == 'succeeded' then
    redis.call('HINCRBY', KEYS[1], 'succeeded', 1)
  else
    redis.call('HINCRBY', KEYS[1], 'discarded', 1)
    if redis.call('HSETNX', KEYS[1], 'discarded_at', now) == 1 then table.insert(events, 'discard') end
  end
end
if redis.call('HGET', KEYS[1], 'sealed') == '1' and tonumber(redis.call('HGET', KEYS[1], 'pending')) <= 0
   and redis.call('HSETNX', KEYS[1], 'finished_at', now) == 1 then
  table.insert(events, 'finish')
  if tonumber(redis.call('HGET', KEYS[1], 'discarded')) == 0 then table.insert(events, 'success') end
  redis.call('EXPIRE', KEYS[1], retention)
  redis.call('EXPIRE', KEYS[2], retention)
end
return events
"""

_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 1 then return 'finished' end
redis.call('HINCRBY', KEYS[1], 'total', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'pending', ARGV[1])
return 'ok'
"""


class RedisStore:
    """A Redis hash per batch (``unijob:batch:<id>``), changed only by atomic Lua scripts."""

    def __init__(self, url: str, retention: float) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - redis comes with every Redis backend's extra
            raise ConfigurationError('batches on Redis need redis-py: pip install "unijob[rq]"') from exc
        self.retention = int(retention)
        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, decode_responses=True)
        self._change = self.client.register_script(_CHANGE)
        self._add = self.client.register_script(_ADD)

    @staticmethod
    def key(batch_id: str) -> str:
        return f"unijob:batch:{batch_id}"

    @staticmethod
    def properties_key(batch_id: str) -> str:
        """Properties live in their own hash, a field per property, so that two jobs saving
        different properties at the same moment never overwrite each other."""
        return f"unijob:batch:{batch_id}:properties"

    def _keys(self, batch_id: str) -> list[str]:
        return [self.key(batch_id), self.properties_key(batch_id)]

    def create(self, record: BatchRecord) -> None:
        data: dict[str, str | int | float] = {
            "callbacks": json.dumps(dict(record.callbacks)),
            "callback_queue": record.callback_queue or "",
            "backend": record.backend,
            "total": record.total,
            "pending": record.pending,
            "succeeded": 0,
            "discarded": 0,
            "sealed": "0",
            "created_at": record.created_at,
        }
        with self.client.pipeline() as pipe:
            pipe.hset(self.key(record.id), mapping=data)  # type: ignore[arg-type]  # redis-py: invariant key type
            if record.properties:
                pipe.hset(self.properties_key(record.id), mapping={k: json.dumps(v) for k, v in record.properties.items()})
            pipe.execute()

    def get(self, batch_id: str) -> BatchRecord | None:
        with self.client.pipeline() as pipe:
            pipe.hgetall(self.key(batch_id))
            pipe.hgetall(self.properties_key(batch_id))
            raw, properties = pipe.execute()
        if not raw:
            return None
        return BatchRecord(
            id=batch_id,
            properties={key: json.loads(value) for key, value in properties.items()},
            callbacks=json.loads(raw["callbacks"]),
            callback_queue=raw["callback_queue"] or None,
            backend=raw["backend"],
            sealed=raw["sealed"] == "1",
            created_at=float(raw["created_at"]),
            finished_at=float(raw["finished_at"]) if "finished_at" in raw else None,
            discarded_at=float(raw["discarded_at"]) if "discarded_at" in raw else None,
            **{name: int(raw[name]) for name in _FIELDS_INT},
        )

    def add(self, batch_id: str, count: int) -> None:
        result = self._add(keys=self._keys(batch_id), args=[count])
        _check_add(batch_id, str(result))

    def finish_job(self, batch_id: str, outcome: Outcome) -> list[BatchEvent]:
        return _events(batch_id, self._change(keys=self._keys(batch_id), args=[outcome, time.time(), self.retention]))

    def seal(self, batch_id: str) -> list[BatchEvent]:
        return _events(batch_id, self._change(keys=self._keys(batch_id), args=["seal", time.time(), self.retention]))

    def update_properties(self, batch_id: str, changed: Mapping[str, Any], removed: Sequence[str]) -> None:
        with self.client.pipeline() as pipe:
            if changed:
                pipe.hset(self.properties_key(batch_id), mapping={k: json.dumps(v) for k, v in changed.items()})
            if removed:
                pipe.hdel(self.properties_key(batch_id), *removed)
            pipe.execute()

    def delete(self, batch_id: str) -> None:
        self.client.delete(*self._keys(batch_id))


def _check_add(batch_id: str, result: str) -> None:
    if result == "missing":
        raise Error(f"batch {batch_id} does not exist (or expired)")
    if result == "finished":
        raise BatchFinishedError(f"batch {batch_id} has finished; jobs can no longer be added to it")


def _events(batch_id: str, raw: list[Any]) -> list[BatchEvent]:
    names = [str(item) for item in raw]
    if names == ["missing"]:
        raise Error(f"batch {batch_id} does not exist (or expired)")
    return names  # type: ignore[return-value]


# --- SQLite ----------------------------------------------------------------------------------------


class SqliteStore(SqliteTables):
    """A table in the SQLite database Huey already uses."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS unijob_batches (id TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at REAL)",)

    def __init__(self, path: str | Path, retention: float) -> None:
        self.retention = retention
        super().__init__(path)

    def _read(self, db: sqlite3.Connection, batch_id: str) -> BatchRecord | None:
        row = db.execute("SELECT record, expires_at FROM unijob_batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None or (row[1] is not None and row[1] < time.time()):
            return None
        data = json.loads(row[0])
        return BatchRecord(**data)

    def _write(self, db: sqlite3.Connection, record: BatchRecord) -> None:
        expires = record.finished_at + self.retention if record.finished_at else None
        db.execute(
            "INSERT OR REPLACE INTO unijob_batches (id, record, expires_at) VALUES (?, ?, ?)",
            (record.id, json.dumps(dataclasses.asdict(record)), expires),
        )

    def _change(self, batch_id: str, outcome: Outcome | None, finished_ok: bool = True) -> list[BatchEvent]:
        with self.transaction() as db:
            db.execute("DELETE FROM unijob_batches WHERE expires_at < ?", (time.time(),))
            record = self._read(db, batch_id)
            if record is None:
                raise Error(f"batch {batch_id} does not exist (or expired)")
            if outcome is None:
                record, events = _transition(dataclasses.replace(record, sealed=True))
            else:
                record, events = _apply(record, outcome)
            self._write(db, record)
            return events

    def create(self, record: BatchRecord) -> None:
        with self.transaction() as db:
            self._write(db, record)

    def get(self, batch_id: str) -> BatchRecord | None:
        return self._read(self.connection(), batch_id)

    def add(self, batch_id: str, count: int) -> None:
        with self.transaction() as db:
            record = self._read(db, batch_id)
            _check_add(batch_id, "missing" if record is None else "finished" if record.finished_at else "ok")
            assert record is not None
            self._write(db, dataclasses.replace(record, total=record.total + count, pending=record.pending + count))

    def finish_job(self, batch_id: str, outcome: Outcome) -> list[BatchEvent]:
        return self._change(batch_id, outcome)

    def seal(self, batch_id: str) -> list[BatchEvent]:
        return self._change(batch_id, None)

    def update_properties(self, batch_id: str, changed: Mapping[str, Any], removed: Sequence[str]) -> None:
        with self.transaction() as db:
            record = self._read(db, batch_id)
            if record is None:
                raise Error(f"batch {batch_id} does not exist (or expired)")
            self._write(db, dataclasses.replace(record, properties=_merge(record.properties, changed, removed)))

    def delete(self, batch_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM unijob_batches WHERE id = ?", (batch_id,))


def utc(timestamp: float | None) -> dt.datetime | None:
    return None if timestamp is None else dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
