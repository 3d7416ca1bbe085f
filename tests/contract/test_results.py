"""Job status and results on every backend, with its stock worker: ``unijob.find(job_id)``."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

import unijob
from tests import jobs
from tests.harness import Harness, events_of, wait_until


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


def finished(backend: Harness, job_id: str) -> unijob.JobResult:
    return wait_until(
        lambda: (result := _find(backend, job_id)) is not None and result.is_finished and result,
        timeout=60,
        tick=backend.tick,
        message=f"job {job_id} to finish on {backend.name}",
    )


def _find(backend: Harness, job_id: str) -> unijob.JobResult | None:
    try:
        return unijob.find(job_id)
    except unijob.JobNotFoundError:
        return None


def test_a_succeeded_job_has_its_status_times_attempts_and_return_value(backend: Harness, token: str) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    job = jobs.compute.perform_later(token, {"total": 42, "when": dt.date(2026, 12, 2)})
    result = finished(backend, job.job_id)
    assert (result.status, result.job, result.queue, result.attempts) == ("succeeded", jobs.compute.name, "default", 1)
    assert result.return_value == {"total": 42, "when": dt.date(2026, 12, 2)}
    assert result.error is None and result.succeeded
    assert result.enqueued_at and result.started_at and result.finished_at
    assert before <= result.enqueued_at <= result.started_at <= result.finished_at


def test_a_failed_job_has_its_error_class_message_and_traceback(backend: Harness, token: str) -> None:
    if backend.name == "inline":
        with pytest.raises(jobs.ResultError):
            jobs.compute.perform_later(token, 1, mode="fail")
        (run,) = events_of(jobs.records(token), "compute")
        job_id = run["job_id"]
    else:
        job_id = jobs.compute.perform_later(token, 1, mode="fail").job_id
    result = finished(backend, job_id)
    assert result.status == "failed" and result.return_value is None and not result.succeeded
    assert result.error is not None
    assert result.error.type == "tests.jobs.ResultError" and result.error.message == "cannot compute 1"
    assert "Traceback" in result.error.traceback and "raise ResultError" in result.error.traceback


def test_a_discarded_job_is_discarded(backend: Harness, token: str) -> None:
    job = jobs.compute.perform_later(token, 1, mode="discard")
    result = finished(backend, job.job_id)
    assert result.status == "discarded" and result.error is not None and result.error.type == "tests.jobs.Gone"


def test_a_job_being_retried_is_retrying_then_succeeds_on_its_second_attempt(backend: Harness, token: str) -> None:
    job = jobs.compute.perform_later(token, "second time lucky", mode="flaky")
    if backend.name != "inline":  # inline runs the retry at once, in the caller
        retrying = wait_until(
            lambda: (r := _find(backend, job.job_id)) is not None and r.status == "retrying" and r,
            timeout=30,
            tick=backend.tick,
            message="the retrying status",
        )
        assert retrying.error is None or retrying.error.type == "tests.jobs.FlakyError"
    result = finished(backend, job.job_id)
    assert (result.status, result.attempts, result.return_value) == ("succeeded", 2, "second time lucky")


def test_a_delayed_job_is_scheduled(backend: Harness, token: str) -> None:
    job = jobs.compute.set(wait=3600).perform_later(token, 1)
    result = unijob.find(job.job_id)
    assert result.scheduled_at == job.scheduled_at
    if backend.name == "inline":  # inline runs a delayed job at once
        assert result.status == "succeeded"
    else:
        assert result.status == "scheduled" and not result.is_finished


def test_an_unserializable_return_value_fails_the_job_with_a_clear_error(backend: Harness, token: str) -> None:
    if backend.name == "inline":
        with pytest.raises(unijob.SerializationError, match="compute: the return value of type object is not serializable"):
            jobs.compute.perform_later(token, 1, mode="unserializable")
        job_id = events_of(jobs.records(token), "compute")[0]["job_id"]
    else:
        job_id = jobs.compute.perform_later(token, 1, mode="unserializable").job_id
    result = finished(backend, job_id)
    assert result.status == "failed" and result.error is not None
    assert result.error.type == "unijob.errors.SerializationError"
    assert "the return value of type object is not serializable" in result.error.message


def test_an_unknown_id_is_a_clear_not_found_error(backend: Harness) -> None:
    with pytest.raises(unijob.JobNotFoundError, match="no job 'no-such-job' in backend 'default'"):
        unijob.find("no-such-job")
    with pytest.raises(LookupError):  # JobNotFoundError is a LookupError too
        unijob.find(str(uuid.uuid4()))
