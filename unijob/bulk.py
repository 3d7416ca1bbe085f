"""Bulk enqueue: ``perform_all_later`` and the ``with unijob.bulk():`` block."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Generator, Iterable, Iterator

from unijob import config, events
from unijob.adapters.base import EnqueueOutcome
from unijob.enqueuing import prepare
from unijob.envelope import Envelope
from unijob.errors import EnqueueError, Error
from unijob.job import Job

logger = logging.getLogger("unijob")
_buffer: contextvars.ContextVar[list[Job] | None] = contextvars.ContextVar("unijob_bulk_buffer", default=None)


def current_buffer() -> list[Job] | None:
    return _buffer.get()


def perform_all_later(jobs: Iterable[Job], *, chunk_size: int | None = None) -> int:
    """Enqueue many jobs through each backend's native bulk path; returns how many were enqueued.

    ``jobs`` may be any iterable, a generator included: it is consumed in chunks of
    ``chunk_size`` (default: the ``bulk_chunk_size`` setting, 1000), so memory stays bounded.
    Each job records ``successfully_enqueued`` and ``enqueue_error``. Enqueue callbacks do not run.
    """
    from unijob import batches

    size = chunk_size or config.settings().bulk_chunk_size
    enqueued = 0
    # A backend whose broker refused a whole chunk is not asked again in this call: each later
    # chunk would only wait for its own connect timeout. Its remaining jobs report that error.
    unreachable: dict[str, EnqueueError] = {}
    for chunk in _chunks(jobs, size):
        by_backend: dict[str, list[Job]] = {}
        for job in chunk:
            batches.join_current(job)
            by_backend.setdefault(job.backend, []).append(job)
        for alias, group in by_backend.items():
            enqueued += _enqueue_group(alias, group, unreachable)
    return enqueued


def _enqueue_group(alias: str, jobs: list[Job], unreachable: dict[str, EnqueueError]) -> int:
    adapter = config.get_adapter(alias)
    ready: list[Job] = []
    envelopes: list[Envelope] = []
    for job in jobs:
        try:
            envelopes.append(prepare(job, adapter))
        except Error as error:  # reported on this job; the others still go
            _record(job, EnqueueOutcome(error=error))
            continue
        ready.append(job)
    if alias in unreachable:
        outcomes = [EnqueueOutcome(error=unreachable[alias])] * len(envelopes)
    else:
        outcomes = adapter.enqueue_many(envelopes) if envelopes else []
        if outcomes and all(isinstance(outcome.error, EnqueueError) for outcome in outcomes):
            unreachable[alias] = outcomes[-1].error  # type: ignore[assignment]
    if len(outcomes) != len(ready):
        raise RuntimeError(f"{type(adapter).__name__}.enqueue_many returned {len(outcomes)} outcomes for {len(ready)} jobs")
    count = 0
    for job, outcome in zip(ready, outcomes, strict=True):
        _record(job, outcome)
        count += job.successfully_enqueued
    if events.has_subscribers("enqueue_all"):
        events.emit(events.Event("enqueue_all", jobs=jobs, adapter=adapter))
    return count


def _record(job: Job, outcome: EnqueueOutcome) -> None:
    job.provider_job_id = outcome.provider_job_id
    job.enqueue_error = outcome.error
    job.successfully_enqueued = outcome.error is None
    if outcome.error is not None and job.batch_id is not None:
        from unijob import batches

        try:
            batches.withdraw(job)
        except Exception:  # the batch store may share the broker that just failed
            logger.warning("could not withdraw job %s from batch %s", job.job_id, job.batch_id, exc_info=True)


def _chunks(items: Iterable[Job], size: int) -> Generator[list[Job], None, None]:
    chunk: list[Job] = []
    for item in items:
        if not isinstance(item, Job):
            raise TypeError(f"perform_all_later takes jobs built with job.new(...), not {item!r}")
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextlib.contextmanager
def bulk() -> Iterator[list[Job]]:
    """Buffer every ``perform_later`` in the block; enqueue them all in bulk when it ends.

    An exception in the block enqueues nothing. Nested blocks flush once, at the outermost.
    The block yields the buffered jobs; after it, each has its enqueue status.
    """
    outer = _buffer.get()
    if outer is not None:
        yield outer
        return
    buffer: list[Job] = []
    token = _buffer.set(buffer)
    try:
        yield buffer
    except BaseException:
        _buffer.reset(token)
        raise
    _buffer.reset(token)
    if buffer:
        perform_all_later(buffer)
