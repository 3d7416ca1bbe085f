"""Execution: the one path every backend runs a job through (decode, look up, perform, handle errors)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import Awaitable, Mapping
from typing import Any, Literal

from unijob import config, events, middleware, registry
from unijob.adapters.base import Adapter
from unijob.core import BaseJob
from unijob.enqueuing import enqueue
from unijob.envelope import Envelope
from unijob.errors import (
    ConfigurationError,
    DeserializationError,
    EnqueueError,
    Error,
    JobExpiredError,
    JobTimeoutError,
    UnknownJobError,
)
from unijob.middleware import Outcome
from unijob.retry import PostponeJob, RetryJob
from unijob.scheduling import utcnow

logger = logging.getLogger("unijob")
_current_job: contextvars.ContextVar[BaseJob | None] = contextvars.ContextVar("unijob_current_job", default=None)


def current_job() -> BaseJob | None:
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
    try:
        job = job_class.from_envelope(envelope)
        if adapter is not None:
            job.backend = adapter.alias  # it came through this backend: its retries go back there
    except DeserializationError as error:
        logger.error("Refused job %r (Job ID: %s): %s", envelope.job, envelope.job_id, error)
        give_up(job_class.from_envelope(envelope, arguments=False), error, adapter, run_callbacks=False)
        raise
    if job.expires_at is not None and job.expires_at <= utcnow():
        expired = JobExpiredError(f"{job.display_name} was not started by {job.expires_at.isoformat()}, when it expired")
        give_up(job, expired, adapter, outcome="discarded")  # a discard, as Active Job's: the worker goes on
        return None
    return perform_now(job, adapter=adapter)


def give_up(
    job: BaseJob, error: BaseException, adapter: Adapter | None, *, run_callbacks: bool = True, outcome: Outcome = "failed"
) -> None:
    """A final failure of a job that did not run to an outcome of its own: its arguments could not
    be read, or its worker died, or it expired. It counts as a final failure (the ``discard``
    event, ``after_discard`` when its arguments are known, the ``after_finish`` middleware)."""
    if adapter is not None:
        job.backend = adapter.alias  # it came through this backend: its result and batch live in its store
    events.emit(events.Event("discard", job=job, adapter=adapter, error=error))
    try:
        if run_callbacks:
            job.after_discard(error)
    finally:
        middleware.after_finish(job, outcome, error)


def perform_now(job: BaseJob, *, adapter: Adapter | None = None) -> Any:
    """Perform a job with its callbacks and retry/discard policies. Returns what ``perform`` returned
    (``None`` when the job was retried or discarded); raises when the job failed for good."""
    adapter = adapter or _adapter_for(job)
    job.executions += 1
    token = _current_job.set(job)
    try:
        middleware.before_perform(job)
    except PostponeJob as postponed:  # not its turn yet (a concurrency limit): not an attempt
        _current_job.reset(token)
        job.executions -= 1
        job.postponements += 1
        enqueue(job.next_attempt(postponed.wait))
        return None
    try:
        events.emit(events.Event("perform_start", job=job, adapter=adapter))
        started = time.perf_counter()
        try:
            job.before_perform()
            result = job.around_perform(lambda: _awaited(job.perform(*job.args, **job.kwargs)))
            job.after_perform()
            middleware.after_perform(job, result)
        except Exception as error:
            _handle_failure(job, error, adapter, time.perf_counter() - started)
            return None
        except BaseException as interrupt:
            if adapter is None or not isinstance(interrupt, adapter.time_limit_errors):
                raise
            over = JobTimeoutError(f"{job.display_name} ran over its time limit of {job.timeout:g}s")
            over.__cause__ = interrupt
            _handle_failure(job, over, adapter, time.perf_counter() - started)
            return None
        finally:
            _current_job.reset(token)
        events.emit(events.Event("perform", job=job, adapter=adapter, duration=time.perf_counter() - started, outcome="success"))
        middleware.after_finish(job, "succeeded", None)
        return result
    finally:
        middleware.after_attempt(job)


def _awaited(value: Any) -> Any:
    """What an ``async def`` job returned, run to its end on an event loop of its own: a worker
    thread or process has none running. Code already inside an event loop awaits ``aperform_now``."""
    if not inspect.isawaitable(value):
        return value
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_wait_for(value))
    close = getattr(value, "close", None)
    if close is not None:
        close()  # never awaited: say so once, here, rather than as a warning later
    raise ConfigurationError(
        "an async job cannot run here: this thread runs an event loop; use 'await job.aperform_now(...)' from async code"
    )


async def _wait_for(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _handle_failure(job: BaseJob, error: Exception, adapter: Adapter | None, duration: float) -> None:
    """Retry, discard, or re-raise ``error`` so that the backend records the failure."""
    if isinstance(error, RetryJob):
        _retry(job, error.error or error, adapter, duration, error.wait)
        return
    for policy in job.retry_policies():
        if policy.matches(error):
            used = job.exception_executions.get(policy.key, 0) + 1
            if used < policy.attempts:
                job.exception_executions[policy.key] = used
                _retry(job, error, adapter, duration, policy.delay(used))
                return
            break  # attempts exhausted: a final failure
    else:
        if isinstance(error, job.discard_exceptions()):
            _discard(job, error, adapter, duration, "discard")
            return
    _discard(job, error, adapter, duration, "error")
    raise error


def _retry(job: BaseJob, error: BaseException, adapter: Adapter | None, duration: float, wait: float) -> None:
    events.emit(events.Event("perform", job=job, adapter=adapter, error=error, duration=duration, outcome="retry"))
    events.emit(events.Event("retry", job=job, adapter=adapter, error=error, wait=wait))
    try:
        enqueue(job.next_attempt(wait))
    except EnqueueError as lost:  # the retry never reached the backend: this failure is final
        lost.__context__ = error
        _discard(job, lost, adapter, duration, "error")
        raise


def _discard(
    job: BaseJob, error: BaseException, adapter: Adapter | None, duration: float, outcome: Literal["discard", "error"]
) -> None:
    events.emit(events.Event("perform", job=job, adapter=adapter, error=error, duration=duration, outcome=outcome))
    give_up(job, error, adapter, outcome="discarded" if outcome == "discard" else "failed")


def _adapter_for(job: BaseJob) -> Adapter | None:
    try:
        return config.get_adapter(job.backend)
    except Error:  # perform_now of a job whose backend is not configured here still runs
        return None
