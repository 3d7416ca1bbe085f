"""Enqueueing one job: option checks against the adapter's capabilities, serialization, callbacks."""

from __future__ import annotations

import datetime as dt
import warnings

from unijob import config, events, serializers
from unijob.adapters.base import Adapter
from unijob.envelope import Envelope
from unijob.errors import EnqueueError, SerializationError, UnsupportedOptionError
from unijob.job import Job


def enqueue(job: Job) -> Job:
    from unijob.batches import join_current
    from unijob.bulk import current_buffer

    join_current(job)
    buffer = current_buffer()
    if buffer is not None:
        serialize_arguments(job)  # fail at the call site, not when the block ends
        buffer.append(job)
        return job
    adapter = config.get_adapter(job.backend)

    def proceed() -> None:
        envelope = prepare(job, adapter)
        try:
            job.provider_job_id = adapter.enqueue(envelope)
        except EnqueueError as error:
            job.enqueue_error = error
            events.emit(events.Event("enqueue", job=job, adapter=adapter, error=error))
            raise
        job.successfully_enqueued = True
        job.enqueue_error = None
        events.emit(events.Event("enqueue", job=job, adapter=adapter))

    job.before_enqueue()
    job.around_enqueue(proceed)
    if job.successfully_enqueued:
        job.after_enqueue()
    return job


def prepare(job: Job, adapter: Adapter) -> Envelope:
    """Check the job's options against what the backend can honour and build its envelope.
    Raises before anything reaches the backend."""
    now = dt.datetime.now(dt.timezone.utc)
    if job.wait is not None:
        job.scheduled_at = now + job.wait
    elif job.wait_until is not None:
        job.scheduled_at = job.wait_until
    capabilities = adapter.capabilities
    if job.priority is not None and not capabilities.priority:
        _unsupported(job, adapter, "priority", f"priority={job.priority}")
        job.priority = None
    if job.scheduled_at is not None and job.scheduled_at > now:
        if not capabilities.delay:
            _unsupported(job, adapter, "wait", "a delay (wait/wait_until)")
            job.scheduled_at = None
        elif capabilities.max_delay is not None and job.scheduled_at - now > capabilities.max_delay:
            _unsupported(job, adapter, "wait", f"a delay longer than {capabilities.max_delay}")
            job.scheduled_at = now + capabilities.max_delay
    args, kwargs = serialize_arguments(job)
    job.enqueued_at = now
    return Envelope(
        job=job.name,
        job_id=job.job_id,
        args=args,
        kwargs=kwargs,
        queue=job.queue,
        priority=job.priority,
        enqueued_at=now,
        scheduled_at=job.scheduled_at,
        executions=job.executions,
        exception_executions=dict(job.exception_executions),
        batch_id=job.batch_id,
    )


def serialize_arguments(job: Job) -> tuple[list[object], dict[str, object]]:
    if job.serialized is None:
        try:
            job.serialized = serializers.dumps_args(job.args, job.kwargs)
        except serializers.NotSerializable as exc:
            error = SerializationError(
                f"{job.display_name}: argument {_argument_path(job, exc.path)} of type "
                f"{type(exc.value).__qualname__} is not serializable; "
                "register a serializer with unijob.serializers.register"
            )
            job.enqueue_error = error
            raise error from None
    return job.serialized


def _argument_path(job: Job, path: str) -> str:
    """``args[0]['owner']`` becomes ``filters['owner']`` when the first parameter is ``filters``."""
    if not path.startswith("args["):
        return path
    index_text, _, rest = path[5:].partition("]")
    signature = job.signature()
    if signature is None:
        return path
    positional = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
    ]
    index = int(index_text)
    return positional[index] + rest if index < len(positional) else path


def _unsupported(job: Job, adapter: Adapter, option: str, what: str) -> None:
    message = (
        f"{job.display_name}: the {adapter.name} backend ({adapter.alias!r}) cannot honour {what}; "
        f"remove the '{option}' option or choose a backend that supports it"
    )
    if config.settings().on_unsupported == "error":
        raise UnsupportedOptionError(message)
    warnings.warn(message + " (ignored, on_unsupported='warn')", RuntimeWarning, stacklevel=4)
