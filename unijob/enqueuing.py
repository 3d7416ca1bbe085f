"""Enqueueing: one job (``perform_later``), many (``perform_all_later``), and the ``bulk()`` block.

Every job goes through :func:`prepare`: its options are checked against what the adapter can
honour, and its envelope is built, before anything reaches a backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import warnings
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence

from unijob import config, events, middleware, transactions
from unijob.adapters.base import Adapter, EnqueueOutcome
from unijob.config import Route
from unijob.core import BaseJob
from unijob.envelope import Envelope
from unijob.errors import DuplicateJobError, EnqueueError, Error, TransactionRolledBackError
from unijob.scheduling import utcnow

_buffer: contextvars.ContextVar[list[BaseJob] | None] = contextvars.ContextVar("unijob_bulk_buffer", default=None)
_warned_main: set[str] = set()


def enqueue(job: BaseJob) -> BaseJob:
    """Enqueue one job on its backend, into the open ``unijob.bulk()`` block, or (``after_commit``)
    when the open database transaction commits. Raises :class:`EnqueueError` when the backend does
    not take it; the job records the error either way."""
    settings = config.settings()
    _route(job, settings.routes)
    middleware.before_enqueue(job)
    buffer = _buffer.get()
    if buffer is not None:
        job.serialize_arguments()  # fail at the call site, not when the block ends
        buffer.append(job)
        return job
    if _waits_for_commit(job, settings.enqueue_after_commit):
        job.serialize_arguments()
        if transactions.defer(lambda: _hand_over(job), lambda: _rolled_back([job])):
            return job
    return _hand_over(job)


def _hand_over(job: BaseJob) -> BaseJob:
    """The enqueue callbacks around the backend's own enqueue."""
    adapter = config.get_adapter(job.backend)

    def proceed() -> None:
        try:
            job.provider_job_id = adapter.enqueue(prepare(job, adapter, utcnow()))
        except Error as error:
            job.enqueue_error = error
            middleware.enqueue_failed(job, error)
            if isinstance(error, EnqueueError):
                events.emit(events.Event("enqueue", job=job, adapter=adapter, error=error))
            if isinstance(error, DuplicateJobError):
                return  # not an error of the caller's: the job it wanted is there already
            raise
        job.successfully_enqueued = True
        job.enqueue_error = None
        middleware.after_enqueue((job,))
        events.emit(events.Event("enqueue", job=job, adapter=adapter))

    job.before_enqueue()
    job.around_enqueue(proceed)
    if job.successfully_enqueued:
        job.after_enqueue()
    return job


def _waits_for_commit(job: BaseJob, default: bool) -> bool:
    return default if job.after_commit is None else job.after_commit


def _rolled_back(jobs: Sequence[BaseJob]) -> None:
    """The transaction the jobs waited for rolled back: they were never sent, and never will be."""
    error = TransactionRolledBackError("the database transaction it waited for rolled back; the job was not sent")
    for job in jobs:
        job.enqueue_error = error
        middleware.enqueue_failed(job, error)


def _route(job: BaseJob, routes: Mapping[str, Route]) -> None:
    """A route in the configuration moves a job to another backend (a retry stays where it runs)."""
    if routes and job.name in routes and not job.backend_requested and not job.executions:
        routed = config.route(job.name)
        if routed is not None:
            job.backend = routed


def prepare(job: BaseJob, adapter: Adapter, now: dt.datetime) -> Envelope:
    """Check the job's options against what the adapter can honour and build its envelope.
    Raises before anything reaches the backend."""
    capabilities = adapter.capabilities
    scheduled_at = job.schedule(now)
    if job.priority is not None and not capabilities.priority:
        # A job class's own priority is a hint, so the same job runs on every backend; a priority
        # asked for with set() is a request, refused where it cannot be honoured.
        if job.priority_requested:
            _unsupported(job, adapter, "priority", f"priority={job.priority}")
        job.priority = None
    if scheduled_at is not None and scheduled_at > now and not capabilities.delay:
        _unsupported(job, adapter, "wait", "a delay (wait/wait_until)")
        job.scheduled_at = None
    if job.timeout is not None and not capabilities.timeout:
        _unsupported(job, adapter, "timeout", f"a time limit (timeout={job.timeout:g}s)")
        job.timeout = None
    if not capabilities.in_process and job.name.startswith("__main__.") and job.name not in _warned_main:
        _warned_main.add(job.name)
        warnings.warn(
            f"{job.display_name} is defined in __main__, which a worker never imports, so it will refuse the job; "
            "define it in a module listed in the 'imports' setting",
            RuntimeWarning,
            stacklevel=4,
        )
    job.serialize_arguments()
    middleware.before_send(job)  # the last word: a unique job whose key is taken stops here
    return job.to_envelope(now)


def _unsupported(job: BaseJob, adapter: Adapter, option: str, what: str) -> None:
    config.unsupported(
        f"{job.display_name}: the {adapter.name} adapter (backend {adapter.alias!r}) cannot honour {what}",
        f"remove the '{option}' option or choose a backend that supports it",
        stacklevel=5,
    )


# --- many jobs --------------------------------------------------------------------------------------


def perform_all_later(jobs: Iterable[BaseJob], *, chunk_size: int | None = None) -> int:
    """Enqueue many jobs through each backend's native bulk path; returns how many were enqueued.

    ``jobs`` may be any iterable, a generator included: it is consumed in chunks of
    ``chunk_size`` (default: the ``bulk_chunk_size`` setting, 1000), so memory stays bounded.
    Each job records ``successfully_enqueued`` and ``enqueue_error``. Enqueue callbacks do not run.
    Jobs that wait for the open database transaction (``after_commit``) are enqueued when it
    commits, in bulk too, and are not counted in the number returned.
    """
    settings = config.settings()
    size = settings.bulk_chunk_size if chunk_size is None else chunk_size
    if type(size) is not int or size < 1:
        raise ValueError(f"perform_all_later: chunk_size must be a whole number of at least 1, not {size!r}")
    enqueued = 0
    # A backend whose broker refused a whole chunk is not asked again in this call: each later
    # chunk would only wait for its own connect timeout. Its remaining jobs report that error.
    unreachable: dict[str, EnqueueError] = {}
    waiting: list[BaseJob] = []
    for chunk in _chunks(jobs, size):
        ready: list[BaseJob] = []
        for job in chunk:
            _route(job, settings.routes)
            middleware.before_enqueue(job)
            (waiting if _waits_for_commit(job, settings.enqueue_after_commit) else ready).append(job)
        enqueued += _send(ready, unreachable)
    if waiting:
        for job in waiting:
            job.serialize_arguments()  # fail now, not after the commit
        if not transactions.defer(lambda: _send_chunks(waiting, size), lambda: _rolled_back(waiting)):
            enqueued += _send_chunks(waiting, size)
    return enqueued


async def aperform_all_later(jobs: Iterable[BaseJob], *, chunk_size: int | None = None) -> int:
    """:func:`perform_all_later` for async code: the enqueue runs in a thread, the event loop goes on."""
    return await asyncio.to_thread(perform_all_later, jobs, chunk_size=chunk_size)


def _send_chunks(jobs: list[BaseJob], size: int) -> int:
    unreachable: dict[str, EnqueueError] = {}
    return sum(_send(jobs[start : start + size], unreachable) for start in range(0, len(jobs), size))


def _send(jobs: Sequence[BaseJob], unreachable: dict[str, EnqueueError]) -> int:
    by_backend: dict[str, list[BaseJob]] = {}
    for job in jobs:
        by_backend.setdefault(job.backend, []).append(job)
    return sum(_enqueue_group(backend, group, unreachable) for backend, group in by_backend.items())


def _enqueue_group(backend: str, jobs: list[BaseJob], unreachable: dict[str, EnqueueError]) -> int:
    adapter = config.get_adapter(backend)
    now = utcnow()
    ready: list[BaseJob] = []
    envelopes: list[Envelope] = []
    for job in jobs:
        try:
            envelopes.append(prepare(job, adapter, now))
        except Error as error:  # reported on this job; the others still go
            _record(job, EnqueueOutcome(error=error))
            continue
        ready.append(job)
    if backend in unreachable:
        outcomes = [EnqueueOutcome(error=unreachable[backend])] * len(envelopes)
    else:
        outcomes = adapter.enqueue_all(envelopes) if envelopes else []
        if outcomes and all(isinstance(outcome.error, EnqueueError) for outcome in outcomes):
            unreachable[backend] = outcomes[-1].error  # type: ignore[assignment]
    if len(outcomes) != len(ready):
        raise RuntimeError(f"{type(adapter).__name__}.enqueue_all returned {len(outcomes)} outcomes for {len(ready)} jobs")
    taken = []
    for job, outcome in zip(ready, outcomes, strict=True):
        _record(job, outcome)
        if job.successfully_enqueued:
            taken.append(job)
    if taken:
        middleware.after_enqueue(taken)
    if events.has_subscribers("enqueue_all"):
        events.emit(events.Event("enqueue_all", jobs=jobs, adapter=adapter))
    return len(taken)


def _record(job: BaseJob, outcome: EnqueueOutcome) -> None:
    job.provider_job_id = outcome.provider_job_id
    job.enqueue_error = outcome.error
    job.successfully_enqueued = outcome.error is None
    if outcome.error is not None:
        middleware.enqueue_failed(job, outcome.error)


def _chunks(items: Iterable[BaseJob], size: int) -> Generator[list[BaseJob], None, None]:
    chunk: list[BaseJob] = []
    for item in items:
        if not isinstance(item, BaseJob):
            raise TypeError(f"perform_all_later takes jobs built with job.new(...), not {item!r}")
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextlib.contextmanager
def bulk() -> Iterator[list[BaseJob]]:
    """Buffer every ``perform_later`` in the block; enqueue them all in bulk when it ends.

    An exception in the block enqueues nothing. Nested blocks flush once, at the outermost.
    The block yields the buffered jobs; after it, each has its enqueue status.
    """
    outer = _buffer.get()
    if outer is not None:
        yield outer
        return
    buffer: list[BaseJob] = []
    token = _buffer.set(buffer)
    try:
        yield buffer
    except BaseException:
        _buffer.reset(token)
        raise
    _buffer.reset(token)
    if buffer:
        perform_all_later(buffer)
