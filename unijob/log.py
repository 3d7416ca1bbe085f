"""Active Job style log lines on the ``unijob`` logger, built from events."""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from unijob import config, events
from unijob.events import Event

if TYPE_CHECKING:
    from unijob.core import BaseJob as Job

logger = logging.getLogger("unijob")


def _where(event: Event, job: Job) -> str:
    adapter = event.adapter
    return f"{adapter.display_name if adapter else '?'}({job.queue})"


def _arguments(job: Job) -> str:
    if not config.settings().log_arguments or not (job.args or job.kwargs):
        return ""
    parts = [repr(arg) for arg in job.args] + [f"{key}={value!r}" for key, value in job.kwargs.items()]
    return " with arguments: " + ", ".join(parts)


def _error(error: BaseException | None) -> str:
    return f"{type(error).__name__} ({error})" if error is not None else "an unknown error"


def _took(event: Event) -> str:
    return f"{(event.duration or 0.0) * 1000:.1f}ms"


def _on_enqueue(event: Event) -> None:
    job = event.job
    if job is None:
        return
    if event.error is not None:  # errors log whatever the level of the success lines
        logger.error("Failed enqueuing %s to %s: %s", job.display_name, _where(event, job), _error(event.error))
        return
    if not logger.isEnabledFor(logging.INFO):
        return
    at = f" at {job.scheduled_at.isoformat()}" if job.scheduled_at else ""
    logger.info("Enqueued %s (Job ID: %s) to %s%s%s", job.display_name, job.job_id, _where(event, job), at, _arguments(job))


def _on_enqueue_all(event: Event) -> None:
    adapter = event.adapter.display_name if event.adapter else "?"
    enqueued = [job for job in event.jobs if job.successfully_enqueued]
    failed = len(event.jobs) - len(enqueued)
    if enqueued and logger.isEnabledFor(logging.INFO):
        counts = Counter(job.display_name for job in enqueued)
        summary = ", ".join(f"{count} {name}" for name, count in counts.items())
        logger.info("Enqueued %d job%s to %s (%s)", len(enqueued), "" if len(enqueued) == 1 else "s", adapter, summary)
    if failed:
        first = next(job for job in event.jobs if not job.successfully_enqueued)
        logger.error(
            "Failed enqueuing %d job%s to %s, first error: %s",
            failed,
            "" if failed == 1 else "s",
            adapter,
            _error(first.enqueue_error),
        )


# A job's own success lines are DEBUG: every stock worker but Dramatiq's already logs each job at
# INFO, and a second pair of lines per job would double a busy worker's log (and its logging cost).
# Set the ``unijob`` logger to DEBUG for Active Job's "Performing"/"Performed" lines.


def _on_perform_start(event: Event) -> None:
    job = event.job
    if job is None or not logger.isEnabledFor(logging.DEBUG):
        return
    enqueued = f" enqueued at {job.enqueued_at.isoformat()}" if job.enqueued_at else ""
    logger.debug(
        "Performing %s (Job ID: %s) from %s%s%s", job.display_name, job.job_id, _where(event, job), enqueued, _arguments(job)
    )


def _on_perform(event: Event) -> None:
    job = event.job
    if job is None:
        return
    if event.outcome == "error":
        logger.error(
            "Error performing %s (Job ID: %s) from %s in %s: %s",
            job.display_name,
            job.job_id,
            _where(event, job),
            _took(event),
            _error(event.error),
        )
    elif logger.isEnabledFor(logging.DEBUG):
        logger.debug("Performed %s (Job ID: %s) from %s in %s", job.display_name, job.job_id, _where(event, job), _took(event))


def _on_retry(event: Event) -> None:
    job = event.job
    if job is not None:
        logger.info(
            "Retrying %s (Job ID: %s) in %gs due to a %s.", job.display_name, job.job_id, event.wait or 0, _error(event.error)
        )


def _on_discard(event: Event) -> None:
    job = event.job
    if job is not None:
        logger.error("Discarded %s (Job ID: %s) due to a %s.", job.display_name, job.job_id, _error(event.error))


def install() -> None:
    """Subscribe the log lines to the events (done once by ``import unijob``)."""
    for name, subscriber in (
        ("enqueue", _on_enqueue),
        ("enqueue_all", _on_enqueue_all),
        ("perform_start", _on_perform_start),
        ("perform", _on_perform),
        ("retry", _on_retry),
        ("discard", _on_discard),
    ):
        events.subscribe(name, subscriber)  # type: ignore[arg-type]
