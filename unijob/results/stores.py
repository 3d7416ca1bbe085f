"""Where job results live: a Redis hash per job, a row of a table in SQLite, or memory.

Each step of a job (enqueued, running, finished, for each attempt) writes what it knows with a
``version`` that grows from step to step, and a write older than the record's is dropped: the
producer that enqueued a job may write after a fast worker already ran it, and the record must
not go back to "enqueued". Every write sets the record's expiry.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from unijob.stores import SqliteTables

Update = tuple[str, Mapping[str, Any]]  # (job id, the fields to set: JSON values)


class ResultStore(Protocol):
    def write(self, updates: Sequence[Update], retention: float) -> None: ...
    def read(self, job_id: str) -> dict[str, Any] | None: ...


class MemoryStore:
    """For the inline and test adapters: one per process."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[dict[str, Any], float]] = {}
        self._lock = threading.Lock()

    def write(self, updates: Sequence[Update], retention: float) -> None:
        with self._lock:
            for job_id, fields in updates:
                record = self._records.get(job_id, ({}, 0.0))[0]
                if fields["version"] >= record.get("version", -1):
                    record = {**record, **fields}
                self._records[job_id] = (record, time.time() + retention)

    def read(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._records.get(job_id)
            if found is None or found[1] < time.time():
                self._records.pop(job_id, None)
                return None
            return dict(found[0])


# KEYS = the record; ARGV = retention, version, then field, value, field, value...
_WRITE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if tonumber(ARGV[2]) >= current then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
"""


class RedisStore:
    """A hash per job (``unijob:result:<id>``), a JSON value per field, written by a Lua script."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, decode_responses=True)
        self._write = self.client.register_script(_WRITE)

    @staticmethod
    def key(job_id: str) -> str:
        return f"unijob:result:{job_id}"

    def write(self, updates: Sequence[Update], retention: float) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for job_id, fields in updates:
                values = [part for name, value in fields.items() for part in (name, json.dumps(value))]
                self._write(keys=[self.key(job_id)], args=[max(1, int(retention)), fields["version"], *values], client=pipe)
            pipe.execute()

    def read(self, job_id: str) -> dict[str, Any] | None:
        raw: dict[str, str] = self.client.hgetall(self.key(job_id))  # type: ignore[assignment]  # decode_responses
        return {name: json.loads(value) for name, value in raw.items()} or None


class SqliteStore(SqliteTables):
    """A ``unijob_results`` table in the SQLite file Huey already uses; fields merge with ``json_patch``."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS unijob_results (id TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at REAL NOT NULL)",)
    _UPSERT = (
        "INSERT INTO unijob_results (id, record, expires_at) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
        "record = json_patch(record, excluded.record), expires_at = excluded.expires_at "
        "WHERE json_extract(record, '$.version') <= json_extract(excluded.record, '$.version')"
    )

    def write(self, updates: Sequence[Update], retention: float) -> None:
        expires = time.time() + retention
        rows = [(job_id, json.dumps(dict(fields)), expires) for job_id, fields in updates]
        with self.transaction() as db:
            db.executemany(self._UPSERT, rows)
            db.execute("DELETE FROM unijob_results WHERE expires_at < ?", (time.time(),))

    def read(self, job_id: str) -> dict[str, Any] | None:
        row = self.connection().execute("SELECT record, expires_at FROM unijob_results WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[1] < time.time():
            return None
        found: dict[str, Any] = json.loads(row[0])
        return found
