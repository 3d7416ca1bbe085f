"""Every exception unijob raises. All subclass :class:`Error`."""

from __future__ import annotations


class Error(Exception):
    """Base class of every unijob error."""


class ConfigurationError(Error):
    """The configuration names something that does not exist or cannot work."""


class BackendNotInstalledError(ConfigurationError, ImportError):
    """A backend's queue library is not installed; the message says which ``pip install`` fixes it."""


class SerializationError(Error, TypeError):
    """A job argument cannot be serialized. Raised at enqueue time, before anything reaches a backend."""


class ArgumentsError(Error, TypeError):
    """The arguments given to a job do not fit its parameters (at the call site)."""


class DeserializationError(Error):
    """A payload's arguments cannot be turned back into Python values."""


class EnvelopeError(Error):
    """A payload is not a valid unijob envelope (malformed, or of an unknown format version)."""


class UnknownJobError(Error):
    """A payload names a job that is not registered in this process. It is refused, never imported."""


class EnqueueError(Error):
    """The backend did not accept a job. Nothing is reported enqueued that was not."""


class BrokerUnavailableError(Error):
    """A worker command could not reach its broker; the message names the backend and the URL."""


class DuplicateJobError(Error):
    """A unique job was not enqueued: one with the same key is enqueued or running. It is recorded
    on the job (``enqueue_error``; ``successfully_enqueued`` is False), never raised."""

    def __init__(self, message: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder  # the job id that holds the key


class JobTimeoutError(Error):
    """A job ran over its time limit (``set(timeout=)``) and its worker stopped it."""


class JobExpiredError(Error):
    """A job was not started before its ``expires`` time: it was discarded without running."""


class TransactionRolledBackError(Error):
    """A job waited for its database transaction to commit (``after_commit``), which rolled back:
    the job was never sent. It is recorded on the job, never raised."""


class UnsupportedOptionError(Error):
    """A backend cannot honour an option (priority, delay, ...) that the job asked for."""


class JobNotFoundError(Error, LookupError):
    """No record of a job of that id: never enqueued with results on, or its record expired."""


class BatchFinishedError(Error):
    """Jobs cannot be added to a batch that has already finished."""
