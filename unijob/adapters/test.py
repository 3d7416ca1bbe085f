"""Records enqueued jobs without running them, with assertions and a way to run them on demand.

Every job goes through a JSON round trip of its envelope, so a test fails where production would.
The ``unijob_test`` pytest fixture installs one for the length of a test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from unijob import registry
from unijob.adapters.base import Adapter, Capabilities, EnqueueOutcome
from unijob.core import BaseJob, job_class_of
from unijob.envelope import Envelope
from unijob.execution import execute

AT_TOLERANCE = dt.timedelta(seconds=1)
MAX_ROUNDS = 1000  # jobs that enqueue due jobs forever would otherwise never stop


class TestAdapter(Adapter):
    __test__ = False  # not a pytest test class
    name = "test"
    display_name = "Test"
    capabilities = Capabilities(
        priority=True,
        native_bulk=True,
        timeout=True,
        in_process=True,
        notes="records jobs; runs them on demand (time limits not enforced)",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._enqueued: list[Envelope] = []
        self._performed: list[BaseJob] = []

    def store_url(self) -> str:
        return "memory://"

    def enqueue(self, envelope: Envelope) -> str | None:
        self._enqueued.append(Envelope.from_json(envelope.to_json()))
        return envelope.job_id

    def enqueue_all(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
        return [EnqueueOutcome(self.enqueue(envelope)) for envelope in envelopes]

    # --- inspection ------------------------------------------------------------------------------

    @property
    def enqueued_jobs(self) -> list[BaseJob]:
        """Jobs enqueued and not yet performed, rebuilt from their envelopes."""
        return [registry.lookup(envelope.job).from_envelope(envelope) for envelope in self._enqueued]

    @property
    def performed_jobs(self) -> list[BaseJob]:
        return list(self._performed)

    def clear(self) -> None:
        self._enqueued.clear()
        self._performed.clear()

    # --- assertions ------------------------------------------------------------------------------

    def assert_enqueued(self, job: Any = None, *, count: int | None = None, **filters: Any) -> list[BaseJob]:
        """Assert that jobs matching ``job`` (a job, job class or name) and the filters ``args``,
        ``kwargs``, ``queue``, ``priority`` and ``at`` (scheduled time, within a second) were
        enqueued: ``count`` of them, or at least one. Returns the matching jobs."""
        return _assert_matches("enqueued", self.enqueued_jobs, job, count, filters)

    def assert_no_enqueued(self, job: Any = None, **filters: Any) -> None:
        _assert_matches("enqueued", self.enqueued_jobs, job, 0, filters)

    def assert_performed(self, job: Any = None, *, count: int | None = None, **filters: Any) -> list[BaseJob]:
        return _assert_matches("performed", self._performed, job, count, filters)

    # --- running ---------------------------------------------------------------------------------

    def perform_enqueued_jobs(self, only: Any = None, at: dt.datetime | None = None) -> int:
        """Run the enqueued jobs that are due now (or by ``at``), and those they enqueue that are
        due too. ``only`` limits it to a job or a list of jobs. Returns how many ran; a job's
        exception propagates."""
        cutoff = (at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
        selectors = _selectors(only)
        ran = 0
        for _ in range(MAX_ROUNDS):
            due = [
                envelope
                for envelope in self._enqueued
                if (envelope.scheduled_at is None or envelope.scheduled_at <= cutoff)
                and (not selectors or envelope.job in selectors)
            ]
            if not due:
                return ran
            for envelope in due:
                self._enqueued.remove(envelope)
                ran += 1
                try:
                    execute(envelope, adapter=self)  # refuses and logs an unregistered job
                finally:
                    if registry.is_registered(envelope.job):
                        self._performed.append(registry.lookup(envelope.job).from_envelope(envelope))
        raise RuntimeError(f"perform_enqueued_jobs stopped after {MAX_ROUNDS} rounds: jobs keep enqueueing due jobs")


def _name_of(job: Any) -> str:
    return job if isinstance(job, str) else job_class_of(job).name


def _selectors(only: Any) -> set[str]:
    if only is None:
        return set()
    items: Iterable[Any] = only if isinstance(only, (list, tuple, set)) else (only,)
    return {_name_of(item) for item in items}


def _matches(job: BaseJob, name: str | None, filters: dict[str, Any]) -> bool:
    if name is not None and job.name != name:
        return False
    for key, expected in filters.items():
        if key == "args":
            if tuple(job.args) != tuple(expected):
                return False
        elif key == "kwargs":
            if dict(job.kwargs) != dict(expected):
                return False
        elif key == "at":  # at=None: not delayed
            if expected is None or job.scheduled_at is None:
                if expected is not job.scheduled_at:
                    return False
            elif abs(job.scheduled_at - expected.astimezone(dt.timezone.utc)) > AT_TOLERANCE:
                return False
        elif key in ("queue", "priority"):
            if getattr(job, key) != expected:
                return False
        else:
            raise TypeError(f"unknown filter {key!r}; use args, kwargs, queue, priority or at")
    return True


def _assert_matches(what: str, jobs: list[BaseJob], job: Any, count: int | None, filters: dict[str, Any]) -> list[BaseJob]:
    name = None if job is None else _name_of(job)
    found = [candidate for candidate in jobs if _matches(candidate, name, filters)]
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    wanted = " ".join(filter(None, [name or "any job", ", ".join(f"{k}={v!r}" for k, v in filters.items())]))
    expected = "at least 1" if count is None else str(count)
    listing = (
        "\n".join(
            f"  {j.name} args={j.args!r} kwargs={j.kwargs!r} queue={j.queue!r} priority={j.priority!r} at={j.scheduled_at}"
            for j in jobs
        )
        or "  (none)"
    )
    raise AssertionError(f"expected {expected} {what} job(s) matching {wanted}, found {len(found)}; {what} jobs:\n{listing}")
