"""Middleware: how a feature (batches, results) hooks into the core without the core calling it.

As in Dramatiq, a middleware is an object with any of the hook methods below; the core calls each
installed middleware that overrides a hook, in installation order. Unlike events (instrumentation,
whose subscribers cannot change what happens to a job), a middleware takes part in the job's life:
an exception it raises propagates, as the job's own would (from ``after_perform``, it fails the job).

    class AuditTrail(unijob.middleware.Middleware):
        def after_finish(self, job, outcome, error):
            audit.write(job.job_id, outcome)

    unijob.middleware.install(AuditTrail())
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from unijob.core import BaseJob

Outcome = Literal["succeeded", "discarded", "failed"]
HOOKS: Final = (
    "before_enqueue",
    "before_send",
    "after_enqueue",
    "enqueue_failed",
    "before_perform",
    "after_perform",
    "after_finish",
    "after_attempt",
)


class Middleware:
    def before_enqueue(self, job: BaseJob) -> None:
        """A job is about to be enqueued (one by one or in bulk), before its arguments are serialized."""

    def before_send(self, job: BaseJob) -> None:
        """The job is about to be handed to its backend, its arguments serialized. Raising an
        unijob ``Error`` keeps it from being sent; the job records the error."""

    def after_enqueue(self, jobs: Sequence[BaseJob]) -> None:
        """The backend took these jobs: one, or those of a bulk chunk that went through."""

    def enqueue_failed(self, job: BaseJob, error: BaseException) -> None:
        """The backend did not take ``job`` (or it failed before reaching the backend)."""

    def before_perform(self, job: BaseJob) -> None:
        """The job is about to run (``executions`` counts this run)."""

    def after_perform(self, job: BaseJob, result: Any) -> None:
        """The job's ``perform`` returned ``result``. Raising here fails the job."""

    def after_finish(self, job: BaseJob, outcome: Outcome, error: BaseException | None) -> None:
        """The job reached a final state: it succeeded, was discarded (``discard_on``), or failed
        for good (retries exhausted, an unhandled error, or given up on by the worker)."""

    def after_attempt(self, job: BaseJob) -> None:
        """A run of the job ended, whatever its outcome (a retry included): release what
        ``before_perform`` took (a database connection, an application context)."""


_installed: list[Middleware] = []
# Per hook, the installed middleware that override it: the core's fast path when there are none.
_by_hook: dict[str, list[Middleware]] = {hook: [] for hook in HOOKS}


def install(middleware: Middleware) -> None:
    """Add ``middleware`` after those installed (once; installing it again does nothing)."""
    if middleware not in _installed:
        _installed.append(middleware)
        _index()


def uninstall(middleware: Middleware) -> None:
    if middleware in _installed:
        _installed.remove(middleware)
        _index()


def installed() -> tuple[Middleware, ...]:
    return tuple(_installed)


def _index() -> None:
    for hook in HOOKS:
        _by_hook[hook] = [m for m in _installed if getattr(type(m), hook) is not getattr(Middleware, hook)]


def before_enqueue(job: BaseJob) -> None:
    for middleware in _by_hook["before_enqueue"]:
        middleware.before_enqueue(job)


def before_send(job: BaseJob) -> None:
    for middleware in _by_hook["before_send"]:
        middleware.before_send(job)


def after_enqueue(jobs: Sequence[BaseJob]) -> None:
    for middleware in _by_hook["after_enqueue"]:
        middleware.after_enqueue(jobs)


def enqueue_failed(job: BaseJob, error: BaseException) -> None:
    for middleware in _by_hook["enqueue_failed"]:
        middleware.enqueue_failed(job, error)


def before_perform(job: BaseJob) -> None:
    for middleware in _by_hook["before_perform"]:
        middleware.before_perform(job)


def after_perform(job: BaseJob, result: Any) -> None:
    for middleware in _by_hook["after_perform"]:
        middleware.after_perform(job, result)


def after_finish(job: BaseJob, outcome: Outcome, error: BaseException | None) -> None:
    for middleware in _by_hook["after_finish"]:
        middleware.after_finish(job, outcome, error)


def after_attempt(job: BaseJob) -> None:
    for middleware in _by_hook["after_attempt"]:
        middleware.after_attempt(job)
