"""Where unique keys and concurrency slots live: Redis (Lua, one atomic step each), SQLite (one
IMMEDIATE transaction each), or memory. Every entry expires, so a job that was lost (its worker
gone for good) cannot hold a key or a slot for ever."""

from __future__ import annotations

import threading
import time
from typing import Protocol

from unijob.stores import SqliteTables


class LimitStore(Protocol):
    def claim(self, key: str, job_id: str, ttl: float) -> str | None:
        """Take ``key`` for ``job_id``; None if taken now, else its holder (``job_id`` itself when a
        job of that id holds it: enqueueing an id again is a duplicate, as in RQ)."""
        ...

    def release(self, key: str, job_id: str) -> None:
        """Give ``key`` back, if ``job_id`` holds it."""
        ...

    def acquire_slot(self, key: str, job_id: str, limit: int, lease: float) -> bool:
        """One of the ``limit`` slots of ``key`` for ``job_id`` (kept ``lease`` seconds at most)."""
        ...

    def release_slot(self, key: str, job_id: str) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, float]] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, job_id: str, ttl: float) -> str | None:
        with self._lock:
            holder = self._keys.get(key)
            if holder is not None and holder[1] > time.time():
                return holder[0]
            self._keys[key] = (job_id, time.time() + ttl)
            return None

    def release(self, key: str, job_id: str) -> None:
        with self._lock:
            if self._keys.get(key, ("", 0.0))[0] == job_id:
                del self._keys[key]

    def acquire_slot(self, key: str, job_id: str, limit: int, lease: float) -> bool:
        with self._lock:
            now = time.time()
            slots = {holder: until for holder, until in self._slots.get(key, {}).items() if until > now}
            if job_id not in slots and len(slots) >= limit:
                self._slots[key] = slots
                return False
            slots[job_id] = now + lease
            self._slots[key] = slots
            return True

    def release_slot(self, key: str, job_id: str) -> None:
        with self._lock:
            self._slots.get(key, {}).pop(job_id, None)


# KEYS = the key; ARGV = job id, ttl (ms). Returns the holder, or false when claimed now.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""
# KEYS = the slots (a sorted set, score = lease end); ARGV = job id, limit, now, lease end.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(ARGV[4]) * 1000))
  return 1
end
return 0
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, decode_responses=True)
        self._claim = self.client.register_script(_CLAIM)
        self._release = self.client.register_script(_RELEASE)
        self._acquire = self.client.register_script(_ACQUIRE)

    def claim(self, key: str, job_id: str, ttl: float) -> str | None:
        holder = self._claim(keys=[f"unijob:unique:{key}"], args=[job_id, max(1, int(ttl * 1000))])
        return str(holder) if holder else None

    def release(self, key: str, job_id: str) -> None:
        self._release(keys=[f"unijob:unique:{key}"], args=[job_id])

    def acquire_slot(self, key: str, job_id: str, limit: int, lease: float) -> bool:
        now = time.time()
        return bool(self._acquire(keys=[f"unijob:slots:{key}"], args=[job_id, limit, now, now + lease]))

    def release_slot(self, key: str, job_id: str) -> None:
        self.client.zrem(f"unijob:slots:{key}", job_id)


class SqliteStore(SqliteTables):
    """Tables in the SQLite file Huey already uses."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS unijob_unique (key TEXT PRIMARY KEY, job_id TEXT NOT NULL, until REAL NOT NULL)",
        "CREATE TABLE IF NOT EXISTS unijob_slots (key TEXT NOT NULL, job_id TEXT NOT NULL, until REAL NOT NULL, "
        "PRIMARY KEY (key, job_id))",
    )

    def claim(self, key: str, job_id: str, ttl: float) -> str | None:
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT job_id, until FROM unijob_unique WHERE key = ?", (key,)).fetchone()
            if row is not None and row[1] > now:
                return str(row[0])
            db.execute("INSERT OR REPLACE INTO unijob_unique (key, job_id, until) VALUES (?, ?, ?)", (key, job_id, now + ttl))
            return None

    def release(self, key: str, job_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM unijob_unique WHERE key = ? AND job_id = ?", (key, job_id))

    def acquire_slot(self, key: str, job_id: str, limit: int, lease: float) -> bool:
        now = time.time()
        with self.transaction() as db:
            db.execute("DELETE FROM unijob_slots WHERE key = ? AND until <= ?", (key, now))
            held = db.execute("SELECT job_id FROM unijob_slots WHERE key = ?", (key,)).fetchall()
            if job_id not in {row[0] for row in held} and len(held) >= limit:
                return False
            db.execute("INSERT OR REPLACE INTO unijob_slots (key, job_id, until) VALUES (?, ?, ?)", (key, job_id, now + lease))
            return True

    def release_slot(self, key: str, job_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM unijob_slots WHERE key = ? AND job_id = ?", (key, job_id))
