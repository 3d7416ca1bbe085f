"""unijob: one Job API, run by Celery, RQ, Dramatiq or Huey's own workers."""

from __future__ import annotations

from unijob import events, log, middleware, serializers
from unijob.batches import Batch, BatchMiddleware, batch, current_batch
from unijob.config import configure, get_adapter, override, settings
from unijob.enqueuing import aperform_all_later, bulk, perform_all_later
from unijob.envelope import Envelope
from unijob.errors import (
    ArgumentsError,
    BackendNotInstalledError,
    BatchFinishedError,
    BrokerUnavailableError,
    ConfigurationError,
    DeserializationError,
    DuplicateJobError,
    EnqueueError,
    EnvelopeError,
    Error,
    JobExpiredError,
    JobNotFoundError,
    JobTimeoutError,
    SerializationError,
    UnknownJobError,
    UnsupportedOptionError,
)
from unijob.events import Event
from unijob.execution import current_job, execute
from unijob.job import Job, JobFunction, JobRef, job
from unijob.limits import LimitsMiddleware
from unijob.recurring import recurring
from unijob.results import JobResult, ResultsMiddleware, find
from unijob.retry import RetryJob, RetryPolicy, polynomial, retry_on

__version__ = "0.1.0"

__all__ = [
    "aperform_all_later",
    "ArgumentsError",
    "BackendNotInstalledError",
    "Batch",
    "BatchFinishedError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "DeserializationError",
    "DuplicateJobError",
    "EnqueueError",
    "Envelope",
    "EnvelopeError",
    "Error",
    "Event",
    "Job",
    "JobExpiredError",
    "JobFunction",
    "JobNotFoundError",
    "JobTimeoutError",
    "JobRef",
    "JobResult",
    "RetryJob",
    "RetryPolicy",
    "SerializationError",
    "UnknownJobError",
    "UnsupportedOptionError",
    "batch",
    "bulk",
    "configure",
    "current_batch",
    "current_job",
    "events",
    "execute",
    "find",
    "get_adapter",
    "job",
    "middleware",
    "override",
    "perform_all_later",
    "recurring",
    "polynomial",
    "retry_on",
    "serializers",
    "settings",
]

# The features that come with unijob, switched on here and nowhere else: the Active Job log lines
# (an events subscriber), batches, results, unique jobs and concurrency limits (middleware).
log.install()
middleware.install(BatchMiddleware())
middleware.install(ResultsMiddleware())
middleware.install(LimitsMiddleware())
