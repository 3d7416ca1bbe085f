"""Batches: a set of jobs with callbacks at lifecycle events, the same on every backend (GoodJob's batches).

    with unijob.batch(on_finish=import_report, user_id=7) as batch:
        for chunk in chunks:
            import_rows.perform_later(chunk)

- ``on_finish`` fires once, when every job reached a final state (success, or discarded after
  its retries ran out); ``on_success`` once, when every job succeeded; ``on_discard`` once, at
  the first final discard. A job being retried has not finished. An empty batch finishes at once.
- Callbacks are ordinary jobs, called with ``(batch, event)``.
- The record lives in the backend's own store (see :mod:`unijob.batch_stores`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from unijob import config, serializers
from unijob.batch_stores import BatchEvent, BatchRecord, BatchStore, Outcome, utc
from unijob.errors import ConfigurationError, Error
from unijob.job import Job, JobRef

_open_batch: contextvars.ContextVar[_OpenBatch | None] = contextvars.ContextVar("unijob_open_batch", default=None)

Callback = JobRef[Any, Any] | type[Job] | None


def store_for(alias: str) -> BatchStore:
    return config.get_adapter(alias).batch_store()


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
    def find(cls, batch_id: str, backend: str = config.DEFAULT_ALIAS) -> Batch:
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

    def add(self, jobs: Iterable[Job]) -> int:
        """Add jobs to this batch (also from a job of the batch) and enqueue them in bulk.
        Raises :class:`BatchFinishedError` once the batch finished. Returns how many were enqueued."""
        from unijob.bulk import perform_all_later

        members = [_join(job, self.id, self.backend) for job in jobs]
        store_for(self.backend).add(self.id, len(members))
        return perform_all_later(members)

    def __repr__(self) -> str:
        r = self._record
        return f"<Batch {r.id} total={r.total} pending={r.pending} succeeded={r.succeeded} discarded={r.discarded}>"


def _join(job: Job, batch_id: str, backend: str) -> Job:
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
        self._bulk: AbstractContextManager[list[Job]] | None = None
        self._token: contextvars.Token[_OpenBatch | None] | None = None
        self._open: _OpenBatch | None = None

    def enqueue(self, jobs: Iterable[Job]) -> Batch:
        """Create the batch with these jobs (built with ``job.new(...)``) and enqueue them in bulk."""
        from unijob.bulk import perform_all_later

        members = [_join(job, self.record.id, self.record.backend) for job in jobs]
        self._store.create(dataclasses.replace(self.record, total=len(members), pending=len(members)))
        perform_all_later(members)
        fire(self.record.id, self.record.backend, self._store.seal(self.record.id))
        return Batch.find(self.record.id, self.record.backend)

    def __enter__(self) -> Batch:
        from unijob.bulk import bulk

        self._store.create(self.record)
        self._open = _OpenBatch(self.record.id, self.record.backend)
        self._token = _open_batch.set(self._open)
        self._bulk = bulk()
        self._bulk.__enter__()
        return Batch(self.record)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        assert self._bulk is not None and self._token is not None and self._open is not None
        _open_batch.reset(self._token)
        if kind is not None:
            self._bulk.__exit__(kind, error, tb)  # enqueues nothing
            self._store.delete(self.record.id)
            return
        # Count the jobs before they are enqueued, so an early finisher never sees pending hit zero.
        self._store.add(self.record.id, self._open.joined)
        self._bulk.__exit__(None, None, None)  # flushes now, or with an enclosing unijob.bulk()
        fire(self.record.id, self.record.backend, self._store.seal(self.record.id))


def batch(
    *,
    on_finish: Callback = None,
    on_success: Callback = None,
    on_discard: Callback = None,
    queue: str | None = None,
    backend: str = config.DEFAULT_ALIAS,
    **properties: Any,
) -> BatchBuilder:
    """Start a batch. ``queue`` is the callback jobs' queue; ``properties`` are kept with the batch."""
    callbacks = {
        event: _callback_name(callback)
        for event, callback in (("finish", on_finish), ("success", on_success), ("discard", on_discard))
        if callback is not None
    }
    return BatchBuilder(callbacks, queue, backend, properties)


def _callback_name(callback: JobRef[Any, Any] | type[Job]) -> str:
    if isinstance(callback, JobRef):
        return callback.name
    if isinstance(callback, type) and issubclass(callback, Job):
        return callback.name
    raise TypeError(f"a batch callback must be a unijob job, not {callback!r}")


def current_batch() -> Batch | None:
    """The batch of the job being performed, if it belongs to one."""
    from unijob.execution import current_job

    job = current_job()
    return None if job is None or job.batch_id is None else Batch.find(job.batch_id, job.backend)


# --- hooks for the core ------------------------------------------------------------------------------


def join_current(job: Job) -> None:
    """Called on every enqueue: a job enqueued inside a ``with unijob.batch()`` block joins it."""
    open_batch = _open_batch.get()
    if open_batch is not None and job.batch_id is None:
        _join(job, open_batch.id, open_batch.backend)
        open_batch.joined += 1


def job_finished(job: Job, *, succeeded: bool) -> None:
    """Called by the execution path when a job of a batch reaches a final state."""
    _progress(job, "succeeded" if succeeded else "discarded")


def withdraw(job: Job) -> None:
    """Called by bulk enqueue for a batch job that was never enqueued: it no longer counts."""
    _progress(job, "withdrawn")


def _progress(job: Job, outcome: Outcome) -> None:
    assert job.batch_id is not None
    fire(job.batch_id, job.backend, store_for(job.backend).finish_job(job.batch_id, outcome))


def fire(batch_id: str, backend: str, events: list[BatchEvent]) -> None:
    """Enqueue the callback jobs for events that just happened (each happens once, by the store)."""
    if not events:
        return
    from unijob import registry

    record = store_for(backend).get(batch_id)
    if record is None:
        return
    current = Batch(record)
    for event in events:
        name = record.callbacks.get(event)
        if name is not None:
            callback: JobRef[..., Any] = JobRef(registry.lookup(name))
            callback.set(queue=record.callback_queue).perform_later(current, event)


def _dump_batch(value: Batch) -> list[str]:
    return [value.id, value.backend]


def _load_batch(raw: list[str]) -> Batch:
    return Batch.find(raw[0], raw[1])


serializers.register(Batch, _dump_batch, _load_batch, tag="batch")
