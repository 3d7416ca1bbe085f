"""Time limits, expiry, unique jobs and concurrency limits on every backend, with its stock worker."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import uuid

import pytest

import unijob
from tests import jobs
from tests.harness import Harness, events_of, wait_until
from unijob.core import BaseJob
from unijob.recurring import enqueue_due


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


def finished(backend: Harness, job_id: str, timeout: float = 60) -> unijob.JobResult:
    def check() -> unijob.JobResult | None:
        try:
            result = unijob.find(job_id)
        except unijob.JobNotFoundError:
            return None
        return result if result.is_finished else None

    found: unijob.JobResult = wait_until(check, timeout=timeout, tick=backend.tick, message=f"job {job_id} to finish")
    return found


def test_a_job_over_its_time_limit_is_stopped_and_reported(backend: Harness, token: str) -> None:
    if backend.adapter == "huey":
        with pytest.raises(unijob.UnsupportedOptionError, match="the huey adapter .* cannot honour a time limit"):
            jobs.sleeper.set(timeout=1).perform_later(token, 30)
        return
    job = jobs.sleeper.set(timeout=1).perform_later(token, 0.2 if not backend.runs_elsewhere else 30)
    result = finished(backend, job.job_id)
    if not backend.runs_elsewhere:  # inline and test run in the caller: a time limit travels, unenforced
        assert result.status == "succeeded" and job.timeout == 1
        return
    assert result.status == "failed" and result.error is not None
    assert result.finished_at is not None and result.started_at is not None
    assert (result.finished_at - result.started_at).total_seconds() < 20  # stopped, long before its 30 s
    assert events_of(jobs.records(token), "finished") == []


def test_an_expired_job_never_runs_and_is_discarded(backend: Harness, token: str) -> None:
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    job = jobs.sleeper.set(expires=past).perform_later(token, 0)
    result = finished(backend, job.job_id)
    assert result.status == "discarded" and result.error is not None and result.error.type == "unijob.errors.JobExpiredError"
    assert jobs.records(token) == []  # it never ran


def test_a_job_not_yet_expired_runs(backend: Harness, token: str) -> None:
    job = jobs.sleeper.set(expires=dt.timedelta(minutes=5)).perform_later(token, 0)
    assert finished(backend, job.job_id).status == "succeeded"


def test_a_unique_job_is_not_enqueued_while_one_with_its_key_runs(backend: Harness, token: str) -> None:
    first = jobs.OnlyOne.perform_later(token)
    (copy,) = backend.wait_for(token, lambda r: bool(events_of(r, "copy")))
    assert copy["enqueued"] is False and copy["holder"] == first.job_id
    assert finished(backend, first.job_id).status == "succeeded"
    again = jobs.OnlyOne.perform_later(token)  # the first finished: its key is free
    assert again.successfully_enqueued


def test_a_unique_key_shared_by_waiting_jobs_lets_one_in(backend: Harness, token: str) -> None:
    key = f"report:{token}"
    waiting = jobs.sleeper.set(unique_key=key, wait=3600).perform_later(token, 0)
    if not backend.runs_elsewhere and backend.name == "inline":  # inline ran it at once: the key is free again
        assert waiting.successfully_enqueued
        return
    twin = jobs.sleeper.set(unique_key=key, wait=3600).perform_later(token, 0)
    assert waiting.successfully_enqueued and not twin.successfully_enqueued
    assert isinstance(twin.enqueue_error, unijob.DuplicateJobError) and twin.enqueue_error.holder == waiting.job_id
    many = [jobs.sleeper.set(unique_key=key).new(token, 0) for _ in range(3)]
    assert unijob.perform_all_later(many) == 0  # in bulk too, each job reports it
    assert all(isinstance(job.enqueue_error, unijob.DuplicateJobError) for job in many)


def test_never_more_than_the_limit_run_at_once_and_none_is_lost(backend: Harness, token: str) -> None:
    handles = [jobs.one_at_a_time.set(concurrency_key=token, concurrency_limit=1).perform_later(token, n, 0.4) for n in range(4)]
    for handle in handles:
        finished(backend, handle.job_id, timeout=90)
    records = jobs.records(token)
    starts = {r["n"]: r["t"] for r in events_of(records, "start")}
    ends = {r["n"]: r["t"] for r in events_of(records, "end")}
    assert sorted(starts) == sorted(ends) == [0, 1, 2, 3]  # each ran, once
    spans = sorted((starts[n], ends[n]) for n in starts)
    assert all(later_start >= earlier_end for (_, earlier_end), (later_start, _) in itertools.pairwise(spans))


def test_two_schedulers_enqueue_exactly_one_job_per_tick(backend: Harness, token: str) -> None:
    until = dt.datetime.now(dt.timezone.utc)
    after = until - dt.timedelta(minutes=5)  # every 60 s: five ticks in the window
    schedule = {f"tick-{token}": {"job": "tests.jobs.on_tick", "every": 60, "args": [token]}}
    with unijob.override(**backend.configuration(), recurring=schedule):
        start = threading.Barrier(2)
        enqueued: list[list[BaseJob]] = []

        def scheduler() -> None:
            start.wait(timeout=10)
            enqueued.append(enqueue_due(after, until))

        threads = [threading.Thread(target=scheduler) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sum(len(jobs_) for jobs_ in enqueued) == 5
        backend.wait_for(token, lambda r: len(events_of(r, "tick")) >= 5)
        ran = sorted(record["at"] for record in events_of(backend.settle(token), "tick"))
        expected = [(until - dt.timedelta(seconds=until.timestamp() % 60 + 60 * n)) for n in range(4, -1, -1)]
        assert ran == [tick.isoformat() for tick in expected]  # each tick once, and only the ticks
        assert enqueue_due(after, until) == []  # a third scheduler, late: every tick is taken
