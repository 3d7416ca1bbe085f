"""Middleware: how a feature (batches, for one) hooks into the core without the core calling it.

As in Dramatiq, a middleware is an object with any of the hook methods below; the core calls each
installed middleware that overrides a hook, in installation order. Unlike events (instrumentation,
whose subscribers cannot change what happens to a job), a middleware takes part in the job's life:
an exception it raises propagates, as the job's own would.

    class AuditTrail(unijob.middleware.Middleware):
        def after_finish(self, job, succeeded):
            audit.write(job.job_id, succeeded)

    unijob.middleware.install(AuditTrail())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from unijob.core import BaseJob

HOOKS: Final = ("before_enqueue", "enqueue_failed", "after_finish")


class Middleware:
    def before_enqueue(self, job: BaseJob) -> None:
        """A job is about to be enqueued (one by one or in bulk), before its arguments are serialized."""

    def enqueue_failed(self, job: BaseJob, error: BaseException) -> None:
        """The backend did not take ``job`` (or it failed before reaching the backend)."""

    def after_finish(self, job: BaseJob, succeeded: bool) -> None:
        """``job`` reached a final state: it succeeded, or failed for good (discarded, retries
        exhausted, an unhandled error, or given up on by the worker)."""


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


def enqueue_failed(job: BaseJob, error: BaseException) -> None:
    for middleware in _by_hook["enqueue_failed"]:
        middleware.enqueue_failed(job, error)


def after_finish(job: BaseJob, succeeded: bool) -> None:
    for middleware in _by_hook["after_finish"]:
        middleware.after_finish(job, succeeded)
