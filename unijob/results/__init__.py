"""Job status and results on every backend: ``unijob.find(job_id)``.

A job whose results are on (the ``results`` setting, or ``store_result=True`` on the job) keeps a
small record in its backend's own store (:mod:`unijob.results.stores`, at the URL its adapter
names): the status, the times, the attempts, the error of the last failed attempt, and the
return value, as JSON. Records expire after ``result_retention`` seconds (a day by default).
A job that returns a value JSON cannot hold fails, with an error that says so.

    job = build_report.perform_later(7)
    unijob.find(job.job_id).wait(timeout=30).return_value
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import traceback
import weakref
from collections.abc import Sequence
from typing import Any, Final, Literal

from unijob import config, serializers
from unijob.constants import DEFAULT_BACKEND
from unijob.core import BaseJob
from unijob.errors import Error, JobNotFoundError, SerializationError
from unijob.middleware import Middleware, Outcome
from unijob.results.stores import MemoryStore, RedisStore, ResultStore, SqliteStore, Update
from unijob.scheduling import utcnow
from unijob.stores import FeatureStores

Status = Literal["enqueued", "scheduled", "running", "retrying", "succeeded", "failed", "discarded"]
FINISHED: Final = frozenset({"succeeded", "failed", "discarded"})

_returned: weakref.WeakKeyDictionary[BaseJob, Any] = weakref.WeakKeyDictionary()  # serialized, between perform and finish


store_for: FeatureStores[ResultStore] = FeatureStores("results", redis=RedisStore, sqlite=SqliteStore, memory=MemoryStore)


@dataclasses.dataclass(frozen=True)
class ErrorInfo:
    """The exception of a job's last failed attempt."""

    type: str  # its class, as module.QualName
    message: str
    traceback: str

    @classmethod
    def of(cls, error: BaseException) -> ErrorInfo:
        kind = type(error)
        text = "".join(traceback.format_exception(kind, error, error.__traceback__))
        return cls(f"{kind.__module__}.{kind.__qualname__}", str(error), text)


@dataclasses.dataclass(frozen=True)
class JobResult:
    """A job's record as its store had it when read. ``refresh()`` reads it again."""

    job_id: str
    backend: str
    job: str
    status: Status
    queue: str | None = None
    enqueued_at: dt.datetime | None = None
    scheduled_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    attempts: int = 0  # executions so far, the running one included
    error: ErrorInfo | None = None
    raw_return_value: Any = None  # as it travelled (serialized JSON)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def return_value(self) -> Any:
        """What the job returned (deserialized), once it succeeded; None before."""
        return serializers.load(self.raw_return_value) if self.succeeded else None

    def refresh(self) -> JobResult:
        return find(self.job_id, self.backend)

    def wait(self, timeout: float | None = None, interval: float = 0.1) -> JobResult:
        """This job's result once it finished. Raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        current = self
        while not current.is_finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.job_id} ({self.job}) has not finished after {timeout}s: it is {current.status}")
            time.sleep(interval)
            current = current.refresh()
        return current


def find(job_id: str, backend: str = DEFAULT_BACKEND) -> JobResult:
    """The status and result of a job. Raises :class:`JobNotFoundError` for an id the store does not
    know (never enqueued with results on, or its record expired)."""
    if not isinstance(job_id, str) or not job_id:
        raise JobNotFoundError(f"a job id is a non-empty string, not {job_id!r}")
    record = store_for(backend).read(job_id)
    if not record or "status" not in record:
        raise JobNotFoundError(
            f"no job {job_id!r} in backend {backend!r}: it was not enqueued with results on "
            "(the 'results' setting, or store_result=True on the job), or its record expired"
        )
    try:
        error = record.get("error")
        return JobResult(
            job_id=job_id,
            backend=backend,
            job=str(record.get("job", "")),
            status=record["status"],
            queue=record.get("queue"),
            enqueued_at=_time(record.get("enqueued_at")),
            scheduled_at=_time(record.get("scheduled_at")),
            started_at=_time(record.get("started_at")),
            finished_at=_time(record.get("finished_at")),
            attempts=int(record.get("attempts") or 0),
            error=ErrorInfo(**error) if isinstance(error, dict) else None,
            raw_return_value=record.get("return_value"),
        )
    except (TypeError, ValueError) as exc:
        raise Error(f"the result record of job {job_id!r} is not readable: {exc}") from exc


def stores_result(job: BaseJob) -> bool:
    choice = type(job).store_result
    return config.settings().results if choice is None else choice


class ResultsMiddleware(Middleware):
    """Writes each step of a job whose results are on into its backend's store."""

    def after_enqueue(self, jobs: Sequence[BaseJob]) -> None:
        by_backend: dict[str, list[Update]] = {}
        now = utcnow()
        default = config.settings().results
        for job in jobs:
            choice = type(job).store_result
            if default if choice is None else choice:
                if job.executions:
                    status: Status = "retrying"
                else:
                    status = "scheduled" if job.scheduled_at is not None and job.scheduled_at > now else "enqueued"
                fields = _known(job, status, ENQUEUED)
                by_backend.setdefault(job.backend, []).append((job.job_id, fields))
        for backend, updates in by_backend.items():
            store_for(backend).write(updates, config.settings().result_retention)

    def before_perform(self, job: BaseJob) -> None:
        if stores_result(job):
            _write(job, {**_known(job, "running", RUNNING), "started_at": _iso(utcnow()), "finished_at": None})

    def after_perform(self, job: BaseJob, result: Any) -> None:
        if stores_result(job):
            try:
                _returned[job] = serializers.dump(result, "the return value")
            except SerializationError as exc:
                raise SerializationError(f"{job.display_name}: {exc}; a job whose result is stored returns JSON values") from None

    def after_finish(self, job: BaseJob, outcome: Outcome, error: BaseException | None) -> None:
        if stores_result(job):
            fields = {**_known(job, outcome, FINISHED_STEP), "finished_at": _iso(utcnow())}
            fields["error"] = None if error is None else dataclasses.asdict(ErrorInfo.of(error))
            fields["return_value"] = _returned.pop(job, None)
            _write(job, fields)


ENQUEUED, RUNNING, FINISHED_STEP = 0, 1, 2  # the steps of one attempt


def _known(job: BaseJob, status: Status, step: int) -> dict[str, Any]:
    """What every step knows of the job, with the version that orders the steps: attempt ``k``
    (1, 2, ...) is enqueued at ``3k`` and runs at ``3k + 1``; a job finishes at ``3(n + 1) + 2``
    after ``n`` runs, above every step before it, also when the worker gave up on it unrun."""
    version = 3 * job.executions + 1 if step == RUNNING else 3 * (job.executions + 1) + (2 if step == FINISHED_STEP else 0)
    return {
        "version": version,
        "job": job.name,
        "status": status,
        "queue": job.queue,
        "attempts": job.executions,
        "enqueued_at": _iso(job.enqueued_at),
        "scheduled_at": _iso(job.scheduled_at),
    }


def _write(job: BaseJob, fields: dict[str, Any]) -> None:
    store_for(job.backend).write([(job.job_id, fields)], config.settings().result_retention)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: Any) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)
