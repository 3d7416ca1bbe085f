"""Batches: a set of jobs with callbacks at lifecycle events, the same on every backend (GoodJob's batches).

    with unijob.batch(on_finish=import_report, user_id=7) as batch:
        for chunk in chunks:
            import_rows.perform_later(chunk)

- ``on_finish`` fires once, when every job reached a final state (success, or discarded after
  its retries ran out); ``on_success`` once, when every job succeeded; ``on_discard`` once, at
  the first final discard. A job being retried has not finished. An empty batch finishes at once.
- Callbacks are ordinary jobs, called with ``(batch, event)``.
- A batch whose jobs waited for a database transaction (``after_commit``) that rolled back, and
  that this left with no job, never happened: its record is deleted and no callback fires.
- The record lives in the backend's own store (:mod:`unijob.batches.stores`), at the URL its
  adapter names (``Adapter.store_url``).
- The core knows nothing of batches: :class:`BatchMiddleware` hooks them in.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from unijob import config, serializers
from unijob.batches.stores import BatchEvent, BatchRecord, BatchStore, MemoryStore, Outcome, RedisStore, SqliteStore, utc
from unijob.constants import DEFAULT_BACKEND
from unijob.core import BaseJob, job_class_of
from unijob.enqueuing import bulk, enqueue, perform_all_later
from unijob.errors import ConfigurationError, Error, TransactionRolledBackError
from unijob.execution import current_job
from unijob.middleware import Middleware
from unijob.middleware import Outcome as MiddlewareOutcome
from unijob.options import JobOptions
from unijob.stores import FeatureStores

logger = logging.getLogger("unijob")
_open_batch: contextvars.ContextVar[_OpenBatch | None] = contextvars.ContextVar("unijob_open_batch", default=None)


def _retention() -> float:
    return config.settings().batch_retention


store_for: FeatureStores[BatchStore] = FeatureStores(
    "batches",
    redis=lambda where: RedisStore(where, _retention()),
    sqlite=lambda where: SqliteStore(where, _retention()),
    memory=lambda: MemoryStore(_retention()),
)


class Batch:
    """A batch as last read from its store. ``properties`` may be changed and ``save()``-d."""

    def __init__(self, record: BatchRecord) -> None:
        self._record = record
        self._saved = dict(record.properties)  # serialized, to save only what changed
        self.properties: dict[str, Any] = {key: serializers.load(value) for key, value in record.properties.items()}

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def backend(self) -> str:
        return self._record.backend

    total = property(lambda self: self._record.total, doc="Jobs in the batch (enqueued or being added).")
    pending = property(lambda self: self._record.pending, doc="Jobs not yet in a final state.")
    succeeded = property(lambda self: self._record.succeeded)
    discarded = property(lambda self: self._record.discarded)

    @property
    def created_at(self) -> dt.datetime | None:
        return utc(self._record.created_at)

    @property
    def finished_at(self) -> dt.datetime | None:
        return utc(self._record.finished_at)

    @property
    def is_finished(self) -> bool:
        return self._record.finished_at is not None

    @property
    def is_succeeded(self) -> bool:
        return self.is_finished and self._record.discarded == 0

    @property
    def is_discarded(self) -> bool:
        return self._record.discarded > 0

    @classmethod
    def find(cls, batch_id: str, backend: str = DEFAULT_BACKEND) -> Batch:
        record = store_for(backend).get(batch_id)
        if record is None:
            raise Error(f"batch {batch_id} does not exist (or its record expired)")
        return cls(record)

    def reload(self) -> Batch:
        fresh = Batch.find(self.id, self.backend)
        self._record, self._saved, self.properties = fresh._record, fresh._saved, fresh.properties
        return self

    def save(self) -> None:
        """Store the properties changed (or removed) since this batch was read. Only those are
        written, so jobs of the batch saving different properties at once never clobber each other."""
        dumped = {key: serializers.dump(value, f"batch property {key}") for key, value in self.properties.items()}
        changed = {key: value for key, value in dumped.items() if key not in self._saved or self._saved[key] != value}
        removed = [key for key in self._saved if key not in dumped]
        store_for(self.backend).update_properties(self.id, changed, removed)
        self._saved = dumped

    def add(self, jobs: Iterable[BaseJob]) -> int:
        """Add jobs to this batch (also from a job of the batch) and enqueue them in bulk.
        Raises :class:`BatchFinishedError` once the batch finished. Returns how many were enqueued."""
        members = [_join(job, self.id, self.backend) for job in jobs]
        store_for(self.backend).add(self.id, len(members))
        return perform_all_later(members)

    def __repr__(self) -> str:
        r = self._record
        return f"<Batch {r.id} total={r.total} pending={r.pending} succeeded={r.succeeded} discarded={r.discarded}>"


def _join(job: BaseJob, batch_id: str, backend: str) -> BaseJob:
    if job.backend != backend:
        raise ConfigurationError(
            f"{job.display_name} uses backend {job.backend!r} but its batch lives on {backend!r}; "
            "a batch's jobs share its backend (its callbacks may use any)"
        )
    job.batch_id = batch_id
    return job


class _OpenBatch:
    def __init__(self, batch_id: str, backend: str) -> None:
        self.id, self.backend, self.joined = batch_id, backend, 0


class BatchBuilder(AbstractContextManager["Batch"]):
    """What ``unijob.batch(...)`` returns: use it as a ``with`` block, or call ``enqueue(jobs)``."""

    def __init__(self, callbacks: dict[str, str], callback_queue: str | None, backend: str, properties: dict[str, Any]) -> None:
        self.record = BatchRecord(
            id=str(uuid.uuid4()),
            properties={key: serializers.dump(value, f"batch property {key}") for key, value in properties.items()},
            callbacks=callbacks,
            callback_queue=callback_queue,
            backend=backend,
            created_at=time.time(),
        )
        self._store = store_for(backend)
        self._bulk: AbstractContextManager[list[BaseJob]] | None = None
        self._token: contextvars.Token[_OpenBatch | None] | None = None
        self._open: _OpenBatch | None = None
        self._batch: Batch | None = None

    def enqueue(self, jobs: Iterable[BaseJob]) -> Batch:
        """Create the batch with these jobs (built with ``job.new(...)``) and enqueue them in bulk."""
        members = [_join(job, self.record.id, self.record.backend) for job in jobs]
        self._store.create(dataclasses.replace(self.record, total=len(members), pending=len(members)))
        perform_all_later(members)
        fire(self.record.id, self.record.backend, self._store.seal(self.record.id))
        return Batch.find(self.record.id, self.record.backend)

    def __enter__(self) -> Batch:
        self._store.create(self.record)
        self._open = _OpenBatch(self.record.id, self.record.backend)
        self._token = _open_batch.set(self._open)
        self._bulk = bulk()
        self._bulk.__enter__()
        self._batch = Batch(self.record)
        return self._batch

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        assert self._bulk is not None and self._token is not None and self._open is not None and self._batch is not None
        _open_batch.reset(self._token)
        if kind is not None:
            self._bulk.__exit__(kind, error, tb)  # enqueues nothing
            self._store.delete(self.record.id)
            return
        # Count the jobs before they are enqueued, so an early finisher never sees pending hit zero.
        self._store.add(self.record.id, self._open.joined)
        self._bulk.__exit__(None, None, None)  # flushes now, or with an enclosing unijob.bulk()
        fire(self.record.id, self.record.backend, self._store.seal(self.record.id))
        self._batch.reload()  # the object the block yielded shows the jobs it added


def batch(
    *,
    on_finish: object = None,
    on_success: object = None,
    on_discard: object = None,
    queue: str | None = None,
    backend: str = DEFAULT_BACKEND,
    **properties: Any,
) -> BatchBuilder:
    """Start a batch. The callbacks are jobs (``@unijob.job`` functions or ``Job`` classes);
    ``queue`` is their queue; ``properties`` are kept with the batch."""
    callbacks = {
        event: job_class_of(callback).name
        for event, callback in (("finish", on_finish), ("success", on_success), ("discard", on_discard))
        if callback is not None
    }
    return BatchBuilder(callbacks, queue, backend, properties)


def current_batch() -> Batch | None:
    """The batch of the job being performed, if it belongs to one."""
    job = current_job()
    return None if job is None or job.batch_id is None else Batch.find(job.batch_id, job.backend)


def fire(batch_id: str, backend: str, events: list[BatchEvent], *, rolled_back: bool = False) -> None:
    """Enqueue the callback jobs for events that just happened (each happens once, by the store).

    ``rolled_back``: the events came from withdrawing a job whose transaction rolled back. If that
    finished the batch with no job left, the batch was all in the transaction and, like the
    transaction, never happened (GoodJob's batch record rolls back with it): its record is deleted
    and nothing fires. Whoever got the finish event is the only one to decide, and a finished
    batch's total no longer changes."""
    if not events:
        return
    store = store_for(backend)
    record = store.get(batch_id)
    if record is None:
        return
    if rolled_back and record.total == 0 and record.finished_at is not None:
        store.delete(batch_id)
        return
    current = Batch(record)
    for event in events:
        name = record.callbacks.get(event)
        if name is not None:
            callback = job_class_of(name)(current, event)
            enqueue(callback.apply(JobOptions(queue=record.callback_queue)))


class BatchMiddleware(Middleware):
    """Hooks batches into the core: a job enqueued in a ``with unijob.batch()`` block joins it, and a
    job of a batch counts in it when it reaches a final state (or was never enqueued)."""

    def before_enqueue(self, job: BaseJob) -> None:
        open_batch = _open_batch.get()
        if open_batch is not None and job.batch_id is None:
            _join(job, open_batch.id, open_batch.backend)
            open_batch.joined += 1

    def enqueue_failed(self, job: BaseJob, error: BaseException) -> None:
        # A retry that failed to enqueue is not withdrawn: execution counts it as a final failure.
        if job.batch_id is not None and job.executions == 0:
            try:
                _progress(job, "withdrawn", rolled_back=isinstance(error, TransactionRolledBackError))
            except Exception:  # the batch store may share the broker that just failed
                logger.warning("could not withdraw job %s from batch %s", job.job_id, job.batch_id, exc_info=True)

    def after_finish(self, job: BaseJob, outcome: MiddlewareOutcome, error: BaseException | None) -> None:
        if job.batch_id is not None:
            _progress(job, "succeeded" if outcome == "succeeded" else "discarded")


def _progress(job: BaseJob, outcome: Outcome, *, rolled_back: bool = False) -> None:
    assert job.batch_id is not None
    fire(job.batch_id, job.backend, store_for(job.backend).finish_job(job.batch_id, outcome), rolled_back=rolled_back)


def _dump_batch(value: Batch) -> list[str]:
    return [value.id, value.backend]


def _load_batch(raw: list[str]) -> Batch:
    return Batch.find(raw[0], raw[1])


serializers.register(Batch, _dump_batch, _load_batch, tag="batch")
