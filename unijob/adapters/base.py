"""The adapter contract. An adapter is small: ``enqueue``, optional ``enqueue_all``, capability
flags, and the options it takes. It translates an :class:`Envelope` into native calls and nothing
more: option checks, serialization, callbacks, retries, batches and logging live in the core, and
the worker side of each backend lives in its ``<name>_worker`` module (``worker_module``).

Adapters never read the configuration: :mod:`unijob.config` builds each one with its backend's
name, URL and options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from unijob.constants import DEFAULT_BACKEND
from unijob.envelope import Envelope
from unijob.errors import ConfigurationError, EnqueueError, Error
from unijob.urls import redact

COMMON_OPTIONS = frozenset({"store"})  # every adapter takes these


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a backend can honour. The core checks these before anything reaches the backend,
    and the README's capability matrix is generated from them."""

    delay: bool = True
    max_hold: dt.timedelta | None = None  # the longest delay handed to the broker; longer ones hop
    priority: bool = False
    native_bulk: bool = False  # enqueue_all is a native bulk path, not a loop
    timeout: bool = False  # a hard time limit per job (set(timeout=)) is enforced by its worker
    in_process: bool = False  # jobs run in this process (inline, test), not in a worker
    recurring_from: str = "unijob scheduler"  # the processes that can enqueue recurring jobs (docs/operations.md)
    notes: str = ""  # one line for the capability matrix


@dataclasses.dataclass(frozen=True, slots=True)
class EnqueueOutcome:
    """The result of enqueueing one job in a bulk call: a native id, or the error."""

    provider_job_id: str | None = None
    error: Error | None = None


class Adapter:
    name: ClassVar[str]  # the adapter's name in the alias table
    display_name: ClassVar[str]  # for log lines: "Enqueued x to RQ(mail)"
    OPTIONS: ClassVar[frozenset[str]] = frozenset()  # the options it takes, besides COMMON_OPTIONS
    worker_module: ClassVar[str | None] = None  # the module that runs its jobs in the stock worker
    # What its worker raises into a job over its time limit, when that is no Exception (Dramatiq's
    # TimeLimitExceeded): the job fails with a unijob JobTimeoutError instead.
    time_limit_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    capabilities: Capabilities = Capabilities()  # an instance may narrow it by broker in __init__

    def __init__(self, *, alias: str = DEFAULT_BACKEND, url: str | None = None, options: Mapping[str, Any] | None = None) -> None:
        self.alias = alias  # the name of the configured backend this adapter serves
        self.url = url
        self.options: dict[str, Any] = dict(options or {})
        known = self.OPTIONS | COMMON_OPTIONS
        unknown = sorted(set(self.options) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {', '.join(_with_suggestion(name, known) for name in unknown)} "
                f"for the {self.name} adapter (backend {alias!r}); "
                f"it takes: {', '.join(sorted(known))}"
            )

    # --- producer side ---------------------------------------------------------------------------

    def enqueue(self, envelope: Envelope) -> str | None:
        """Hand one job to the backend; return the native id. Raise :class:`EnqueueError` on failure."""
        raise NotImplementedError

    def enqueue_all(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
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

    def store_url(self) -> str:
        """Where this backend keeps batch records: the ``store`` option, else its broker."""
        return str(self.options.get("store") or self.url or "")

    # --- helpers for subclasses ------------------------------------------------------------------

    @staticmethod
    def native_id(envelope: Envelope) -> str:
        """The id given to the native job. A retry gets its own, so it never collides with the
        execution that is still running (RQ, for one, would overwrite that job's record)."""
        native = f"{envelope.job_id}-{envelope.executions}" if envelope.executions else envelope.job_id
        return f"{native}-p{envelope.postponements}" if envelope.postponements else native

    @property
    def safe_url(self) -> str:
        """The broker URL with any password hidden, for error messages."""
        return redact(self.url) if self.url else "(default URL)"

    @property
    def description(self) -> str:
        """What runs the jobs and where, for people: ``RQ at redis://localhost:6379/0``."""
        return f"{self.display_name} at {self.safe_url}"

    @contextlib.contextmanager
    def as_enqueue_error(self, *errors: type[BaseException]) -> Iterator[None]:
        """Turn the library's connection errors into :class:`EnqueueError` naming backend and URL."""
        translated = errors or (Exception,)
        try:
            yield
        except EnqueueError:
            raise
        except translated as exc:
            raise self.enqueue_error_for(exc) from exc

    def enqueue_error_for(self, exc: BaseException) -> EnqueueError:
        return EnqueueError(f"{self.display_name} at {self.safe_url} did not accept the job: {type(exc).__name__}: {exc}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.alias!r} {self.safe_url}>"


def _with_suggestion(name: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)


def add_working_directory_to_path() -> None:
    """Let the application's own modules import from the working directory, as ``celery -A`` and
    ``rq worker`` let them (a console script's ``sys.path`` does not start with it)."""
    if "" not in sys.path and "." not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, "")
