"""The adapter contract. An adapter is small: ``enqueue``, optional ``enqueue_many``,
capability flags, and the worker-side hooks that register jobs with the native worker.

Everything backend-neutral (serialization, option checks, callbacks, retries, batches,
logging) lives in the core; an adapter only translates an :class:`Envelope` into native calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from unijob.batch_stores import BatchStore, MemoryStore, store_for_url
from unijob.envelope import Envelope
from unijob.errors import EnqueueError, Error


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a backend can honour. The core checks these before anything reaches the backend,
    and the README's capability matrix is generated from them."""

    delay: bool = True
    max_delay: dt.timedelta | None = None  # None: no limit
    priority: bool = False
    native_bulk: bool = False  # enqueue_many is a native bulk path, not a loop
    notes: str = ""  # one line for the capability matrix


@dataclasses.dataclass(frozen=True, slots=True)
class EnqueueOutcome:
    """The result of enqueueing one job in a bulk call: a native id, or the error."""

    provider_job_id: str | None = None
    error: Error | None = None


class Adapter:
    name: ClassVar[str]  # the backend name in the alias table
    display_name: ClassVar[str]  # for log lines: "Enqueued x to RQ(mail)"
    capabilities: Capabilities = Capabilities()  # an instance may narrow it by broker in __init__

    def __init__(self, *, alias: str = "default", url: str | None = None, options: Any = None) -> None:
        self.alias = alias
        self.url = url
        self.options: dict[str, Any] = dict(options or {})

    # --- producer side -------------------------------------------------------------------

    def enqueue(self, envelope: Envelope) -> str | None:
        """Hand one job to the backend; return the native id. Raise :class:`EnqueueError` on failure."""
        raise NotImplementedError

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
        """Enqueue several jobs, reporting each one. The default loops over :meth:`enqueue`."""
        outcomes = []
        for envelope in envelopes:
            try:
                outcomes.append(EnqueueOutcome(self.enqueue(envelope)))
            except EnqueueError as error:
                outcomes.append(EnqueueOutcome(error=error))
        return outcomes

    def close(self) -> None:
        """Release connections. The adapter may be used again afterwards (it reconnects)."""

    def batch_store(self) -> BatchStore:
        """Where this backend keeps batch records: the ``batch_store`` option's URL, else the
        broker's own Redis. Built once per adapter."""
        store: BatchStore | None = getattr(self, "_batch_store", None)
        if store is None:
            store = self.make_batch_store()
            self._batch_store = store
        return store

    def make_batch_store(self) -> BatchStore:
        from unijob import config

        url = self.options.get("batch_store") or self.url or ""
        return store_for_url(url, config.settings().batch_retention)

    # --- worker side ---------------------------------------------------------------------

    def worker_argv(self, queues: Sequence[str], concurrency: int | None, burst: bool) -> list[str]:
        """The stock worker's command line, for ``unijob worker``. The worker must import the
        configured job modules (``unijob.worker.load_jobs``) and register them natively."""
        raise NotImplementedError(f"the {self.name} backend has no worker process")

    def pending_jobs(self, queues: Sequence[str], within: float) -> int:
        """How many jobs on ``queues`` are waiting, running, or delayed and due within ``within``
        seconds. ``unijob worker --burst`` stops the worker once this is 0."""
        raise NotImplementedError(f"the {self.name} backend cannot count pending jobs")

    # --- helpers for subclasses ----------------------------------------------------------

    @staticmethod
    def native_id(envelope: Envelope) -> str:
        """The id given to the native job. A retry gets its own, so it never collides with the
        execution that is still running (RQ, for one, would overwrite that job's record)."""
        if envelope.executions:
            return f"{envelope.job_id}-{envelope.executions}"
        return envelope.job_id

    @property
    def safe_url(self) -> str:
        """The broker URL with any password hidden, for error messages."""
        return redact_url(self.url) if self.url else "(default URL)"

    @contextlib.contextmanager
    def enqueue_errors(self, *errors: type[BaseException]) -> Iterator[None]:
        """Turn the library's connection errors into :class:`EnqueueError` naming backend and URL."""
        translated = errors or (Exception,)
        try:
            yield
        except EnqueueError:
            raise
        except translated as exc:
            raise self.enqueue_error(exc) from exc

    def enqueue_error(self, exc: BaseException) -> EnqueueError:
        return EnqueueError(f"{self.display_name} at {self.safe_url} did not accept the job: {type(exc).__name__}: {exc}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.alias!r} {self.safe_url}>"


_memory_store: MemoryStore | None = None


def process_memory_store() -> MemoryStore:
    """The one in-memory batch store of this process (inline and test adapters share it)."""
    global _memory_store
    if _memory_store is None:
        from unijob import config

        _memory_store = MemoryStore(config.settings().batch_retention)
    return _memory_store


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[2]}"))
