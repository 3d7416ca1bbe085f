"""The one execution path every adapter uses: decode, look up, deserialize, perform, handle errors."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from unijob import config, events, registry, serializers
from unijob.envelope import Envelope
from unijob.errors import Error, UnknownJobError
from unijob.job import Job

if TYPE_CHECKING:
    from unijob.adapters.base import Adapter

logger = logging.getLogger("unijob")
_current_job: contextvars.ContextVar[Job | None] = contextvars.ContextVar("unijob_current_job", default=None)


def current_job() -> Job | None:
    """The job being performed in this thread or task, if any."""
    return _current_job.get()


def decode(payload: Envelope | Mapping[str, Any] | str | bytes) -> Envelope:
    if isinstance(payload, Envelope):
        return payload
    if isinstance(payload, (str, bytes)):
        return Envelope.from_json(payload)
    return Envelope.from_dict(payload)


def execute(payload: Envelope | Mapping[str, Any] | str | bytes, *, adapter: Adapter | None = None) -> Any:
    """Run the job a payload names. Only registered jobs run: anything else raises
    :class:`UnknownJobError` (and is logged); nothing named in the payload is imported."""
    envelope = decode(payload)
    try:
        job_class = registry.lookup(envelope.job)
    except UnknownJobError as error:
        logger.error("Refused job %r (Job ID: %s): %s", envelope.job, envelope.job_id, error)
        raise
    return perform(load_job(job_class, envelope), adapter=adapter)


def load_job(job_class: type[Job], envelope: Envelope) -> Job:
    args, kwargs = serializers.loads_args(envelope.args, envelope.kwargs)
    job = job_class(*args, **kwargs)
    job.job_id = envelope.job_id
    job.queue = envelope.queue
    job.priority = envelope.priority
    job.enqueued_at = envelope.enqueued_at
    job.scheduled_at = envelope.scheduled_at
    job.executions = envelope.executions
    job.exception_executions = dict(envelope.exception_executions)
    job.batch_id = envelope.batch_id
    job.serialized = (envelope.args, envelope.kwargs)
    job.successfully_enqueued = True
    return job


def perform(job: Job, *, adapter: Adapter | None = None) -> Any:
    """Perform a job with its callbacks and retry/discard policies. Returns what ``perform`` returned
    (``None`` when the job was retried or discarded); raises when the job failed for good."""
    adapter = adapter or _adapter_for(job)
    job.executions += 1
    token = _current_job.set(job)
    events.emit(events.Event("perform_start", job=job, adapter=adapter))
    started = time.perf_counter()
    try:
        result = _run(job)
    except Exception as error:
        _handle_failure(job, error, adapter, time.perf_counter() - started)
        return None
    finally:
        _current_job.reset(token)
    events.emit(events.Event("perform", job=job, adapter=adapter, duration=time.perf_counter() - started, outcome="success"))
    _batch_progress(job, succeeded=True)
    return result


def _run(job: Job) -> Any:
    job.before_perform()
    result = job.around_perform(lambda: job.perform(*job.args, **job.kwargs))
    job.after_perform()
    return result


def _handle_failure(job: Job, error: Exception, adapter: Adapter | None, duration: float) -> None:
    """Retry, discard, or re-raise ``error`` so that the backend records the failure."""
    for policy in job.retry_policies():
        if policy.matches(error):
            used = job.exception_executions.get(policy.key, 0) + 1
            if used < policy.attempts:
                job.exception_executions[policy.key] = used
                wait = policy.delay(used)
                events.emit(events.Event("perform", job=job, adapter=adapter, error=error, duration=duration, outcome="retry"))
                events.emit(events.Event("retry", job=job, adapter=adapter, error=error, wait=wait))
                retry_job(job, wait)
                return
            break  # attempts exhausted: a final failure
    else:
        if isinstance(error, job.discard_exceptions()):
            _discard(job, error, adapter, duration, "discard")
            return
    _discard(job, error, adapter, duration, "error")
    raise error


def _discard(job: Job, error: Exception, adapter: Adapter | None, duration: float, outcome: Literal["discard", "error"]) -> None:
    events.emit(events.Event("perform", job=job, adapter=adapter, error=error, duration=duration, outcome=outcome))
    events.emit(events.Event("discard", job=job, adapter=adapter, error=error))
    try:
        job.after_discard(error)
    finally:
        _batch_progress(job, succeeded=False)


def retry_job(job: Job, wait: float) -> Job:
    """Enqueue the next attempt through the job's own adapter, after ``wait`` seconds."""
    from unijob.enqueuing import enqueue

    retry = type(job)(*job.args, **job.kwargs)
    retry.job_id = job.job_id
    retry.queue, retry.priority, retry.backend = job.queue, job.priority, job.backend
    retry.executions = job.executions
    retry.exception_executions = dict(job.exception_executions)
    retry.batch_id = job.batch_id
    retry.serialized = job.serialized
    retry.wait = dt.timedelta(seconds=wait) if wait > 0 else None
    return enqueue(retry)


def _adapter_for(job: Job) -> Adapter | None:
    try:
        return config.get_adapter(job.backend)
    except Error:  # perform_now of a job whose backend is not configured here still runs
        return None


def _batch_progress(job: Job, *, succeeded: bool) -> None:
    if job.batch_id is not None:
        from unijob import batches

        batches.job_finished(job, succeeded=succeeded)
