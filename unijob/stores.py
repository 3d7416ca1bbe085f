"""Where a feature (batches, results, unique jobs and concurrency limits) keeps its records: in
the backend's own Redis or SQLite file, named by the adapter's store URL, or in this process
(``memory://``: one store, which the inline and test adapters share). One store of each feature
per configured adapter, opened on first use."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import ClassVar, Generic, TypeVar

from unijob import config, urls
from unijob.adapters.base import Adapter

Store = TypeVar("Store")


class FeatureStores(Generic[Store]):
    """``store_for(backend)``: the store of one feature for a configured backend."""

    def __init__(
        self,
        feature: str,
        *,
        redis: Callable[[str], Store],
        sqlite: Callable[[str], Store],
        memory: Callable[[], Store],
    ) -> None:
        self._feature, self._redis, self._sqlite, self._memory = feature, redis, sqlite, memory
        self._in_process: Store | None = None
        self._opened: weakref.WeakKeyDictionary[Adapter, Store] = weakref.WeakKeyDictionary()

    def __call__(self, backend: str) -> Store:
        adapter = config.get_adapter(backend)
        store = self._opened.get(adapter)
        if store is None:
            store = self._opened[adapter] = self.open(adapter.store_url())
        return store

    def open(self, url: str) -> Store:
        """The store at ``url``: ``redis://...``, ``sqlite:///path`` or ``memory://``."""
        kind, where = urls.store_location(url, self._feature)
        if kind == "redis":
            return self._redis(where)
        if kind == "sqlite":
            return self._sqlite(where)
        if self._in_process is None:
            self._in_process = self._memory()
        return self._in_process


class SqliteTables:
    """A feature's tables in the SQLite file the backend (Huey) already uses: one connection a
    thread (WAL, so readers never block the consumer; a lock is waited for up to 30 s), and every
    change in one IMMEDIATE transaction, so two processes never interleave a read and its write."""

    SCHEMA: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._local = threading.local()
        with self.transaction() as db:
            for statement in self.SCHEMA:
                db.execute(statement)

    def connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
        return db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
