"""Adopted RQ code on the test adapter: Queue.enqueue and friends, @job().delay, Job.fetch, options."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import rq
from redis import Redis
from rq.serializers import JSONSerializer

import unijob
from tests.contrib import rq_tasks as tasks
from unijob import config
from unijob.adapters.test import TestAdapter
from unijob.contrib.rq import DuplicateJobError, Job, NoSuchJobError, Queue, Retry, job


def test_enqueue_a_function_by_reference_or_by_its_dotted_name(unijob_test: TestAdapter) -> None:
    q = Queue("low")
    handle = q.enqueue(tasks.cleanup, "t")
    q.enqueue("tests.contrib.rq_tasks.cleanup", "t2")
    q.enqueue_call(tasks.report, args=("t", 1), kwargs={})
    names = [job.name for job in unijob_test.enqueued_jobs]
    assert names == ["tests.contrib.rq_tasks.cleanup"] * 2 + ["tests.contrib.rq_tasks.report"]
    assert all(job.queue == "low" for job in unijob_test.enqueued_jobs)
    assert handle.id == unijob_test.enqueued_jobs[0].job_id and handle.func_name == "tests.contrib.rq_tasks.cleanup"


def test_job_decorator_gives_delay(unijob_test: TestAdapter) -> None:
    tasks.report.delay("t", 21)
    unijob_test.assert_enqueued(tasks.report, args=["t", 21], queue="default", at=None)


def test_enqueue_in_and_enqueue_at_schedule(unijob_test: TestAdapter) -> None:
    q = Queue()
    q.enqueue_in(dt.timedelta(minutes=5), tasks.cleanup, "t")
    noon = dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc)
    q.enqueue_at(noon, tasks.cleanup, "t")
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
    unijob_test.assert_enqueued("tests.contrib.rq_tasks.cleanup", at=soon)
    unijob_test.assert_enqueued("tests.contrib.rq_tasks.cleanup", at=noon)


def test_job_id_maps_and_a_plain_function_must_be_adopted_first(unijob_test: TestAdapter) -> None:
    Queue().enqueue(tasks.cleanup, "t", job_id="my-id")
    assert unijob_test.enqueued_jobs[0].job_id == "my-id"

    def not_adopted() -> None: ...

    with pytest.raises(unijob.ConfigurationError, match="is not a unijob job: adopt it where it is defined"):
        Queue().enqueue(not_adopted)


@pytest.mark.parametrize(
    ("option", "value"),
    [("job_timeout", -1), ("result_ttl", 600), ("failure_ttl", 3600), ("at_front", True), ("meta", {"a": 1}),
     ("depends_on", "other-id"), ("description", "x"), ("on_success", print), ("on_failure", print), ("retry", Retry(3)),
     ("on_stopped", print), ("repeat", object()), ("pipeline", object()), ("rate_limit", object()),
     ("webhooks", ["https://example.com/hook"])],
)  # fmt: skip
def test_each_option_without_an_equivalent_raises_naming_it(unijob_test: TestAdapter, option: str, value: Any) -> None:
    with pytest.raises(unijob.UnsupportedOptionError, match=rf"tests.contrib.rq_tasks.cleanup: enqueue\({option}="):
        Queue().enqueue(tasks.cleanup, "t", **{option: value})
    assert unijob_test.enqueued_jobs == []


def test_job_timeout_and_ttl_map_onto_the_time_limit_and_the_expiry(unijob_test: TestAdapter) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    q = Queue()
    q.enqueue(tasks.cleanup, "t", job_timeout=30, ttl=60)
    q.enqueue(tasks.cleanup, "t", job_timeout="10m", ttl="2h")  # RQ's strings: digits and a unit
    q.enqueue_call(tasks.cleanup, args=["t"], timeout="1h", ttl=-1)  # enqueue_call names it timeout; -1: never expires
    q.enqueue(tasks.fetch_page, "t", timeout=5)  # in enqueue, timeout is the function's own keyword, as in RQ
    first, second, third, fourth = unijob_test.enqueued_jobs
    assert (first.timeout, second.timeout, third.timeout, fourth.timeout) == (30, 600, 3600, None)
    assert first.expires_at is not None and second.expires_at is not None and third.expires_at is None
    assert dt.timedelta(seconds=60) <= first.expires_at - before < dt.timedelta(seconds=70)
    assert dt.timedelta(hours=2) <= second.expires_at - before < dt.timedelta(hours=2, seconds=10)
    assert fourth.kwargs == {"timeout": 5}
    with pytest.raises(ValueError, match=r"tests.contrib.rq_tasks.cleanup: ttl must be seconds .* not 'soon'"):
        q.enqueue(tasks.cleanup, "t", ttl="soon")
    assert len(unijob_test.enqueued_jobs) == 4


def test_the_time_limit_of_a_queue_and_of_the_decorator_hold_for_every_call(unijob_test: TestAdapter) -> None:
    q = Queue("slow", default_timeout="5m")
    q.enqueue(tasks.cleanup, "t")
    q.enqueue(tasks.cleanup, "t", job_timeout=20)  # the call's own wins, as in RQ

    @job("default", timeout=90, ttl=600)
    def nightly(token: str) -> None: ...

    nightly.delay("t")
    assert [found.timeout for found in unijob_test.enqueued_jobs] == [300, 20, 90]
    assert unijob_test.enqueued_jobs[2].expires_at is not None
    with pytest.raises(ValueError, match=r"queue 'q': default_timeout must be a positive number of seconds"):
        Queue("q", default_timeout=0)
    with pytest.raises(unijob.UnsupportedOptionError, match=r"queue 'q': Queue\(default_timeout=-1\)"):
        Queue("q", default_timeout=-1)  # RQ's "no limit": a queue cannot lift the backend's


def test_unique_with_a_job_id_refuses_a_second_job_of_that_id_until_the_first_ended(unijob_test: TestAdapter) -> None:
    q = Queue()
    q.enqueue(tasks.cleanup, "t", job_id="nightly-cleanup", unique=True)
    with pytest.raises(DuplicateJobError) as refused:
        q.enqueue(tasks.cleanup, "t", job_id="nightly-cleanup", unique=True)  # RQ raises its DuplicateJobError
    assert refused.value.holder == "nightly-cleanup"
    assert Job.fetch("nightly-cleanup").get_status() == "queued"  # the refused one left the first one's record alone
    with pytest.raises(ValueError, match=r"enqueue\(unique=True\) requires an explicit job_id, as in RQ"):
        q.enqueue(tasks.cleanup, "t", unique=True)
    assert unijob_test.perform_enqueued_jobs() == 1
    q.enqueue(tasks.cleanup, "t", job_id="nightly-cleanup", unique=True)  # the first one ended: the id is free again
    assert len(unijob_test.enqueued_jobs) == 1


def test_the_retry_of_the_job_decorator_maps_onto_retry_on(unijob_test: TestAdapter) -> None:
    tasks.unreliable.delay(f"retry-{id(unijob_test)}")
    Queue().enqueue(tasks.unreliable, f"retry2-{id(unijob_test)}", retry=Retry(max=2, interval=[0.2, 0.5]))  # the same: fine
    assert unijob_test.perform_enqueued_jobs(at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)) == 6
    assert len(unijob_test.performed_jobs) == 6  # each: two failures, retried after 0.2 s and 0.5 s, then success


def test_job_fetch_reports_status_and_return_value(unijob_test: TestAdapter) -> None:
    handle = tasks.report.delay("t", 21)
    assert Job.fetch(handle.id).get_status() == "queued"
    unijob_test.perform_enqueued_jobs()
    fetched = Job.fetch(handle.id)
    assert (fetched.get_status(), fetched.return_value(), fetched.result, fetched.is_finished) == ("finished", 42, 42, True)
    with pytest.raises(NoSuchJobError):
        Job.fetch("no-such-job")


def test_a_route_moves_the_calls_of_the_queue_and_of_delay_but_not_a_chosen_backend(unijob_test: TestAdapter) -> None:
    routes = {"tests.contrib.rq_tasks.cleanup": "next", "tests.contrib.rq_tasks.report": "next"}
    with config.override(unijob_test, backends={"next": {"adapter": "inline"}}, routes=routes):
        assert Queue().enqueue(tasks.cleanup, "t").backend == "next"
        assert tasks.report.delay("t", 1).backend == "next"
        assert Queue(backend="default").enqueue(tasks.cleanup, "t").backend == "default"  # chosen: never routed
    assert len(unijob_test.enqueued_jobs) == 3  # every backend is the test adapter here


def test_the_job_decorator_takes_an_rq_queue_and_delay_takes_rqs_own_options(unijob_test: TestAdapter) -> None:
    @job(rq.Queue("low", connection=Redis(), serializer=JSONSerializer), connection=Redis())
    def nightly(token: str) -> None: ...

    handle = nightly.delay("t", job_id="nightly-1")
    nightly.enqueue("t")  # RQ's other name for it
    assert handle.id == "nightly-1" and [job.queue for job in unijob_test.enqueued_jobs] == ["low", "low"]
    unijob_test.assert_enqueued(nightly, args=["t"], kwargs={}, count=2)
    with pytest.raises(unijob.UnsupportedOptionError, match=r"enqueue\(depends_on=\.\.\.\)"):
        nightly.delay("t", depends_on="nightly-1")
    with pytest.raises(unijob.UnsupportedOptionError, match=r"@job\(result_ttl=\.\.\.\)"):
        job("default", connection=Redis(), result_ttl=30)
    job("default", connection=Redis(), timeout=None, at_front=False)  # RQ's defaults: nothing to refuse


def test_keywords_rq_does_not_take_are_the_functions_own(unijob_test: TestAdapter) -> None:
    Queue().enqueue(tasks.sync_group, "t", group_id=5)
    Queue().enqueue_call(tasks.sync_group, args=["t"], kwargs={"group_id": 6})
    with pytest.raises(unijob.UnsupportedOptionError, match=r"enqueue\(description=\.\.\.\)"):
        Queue().enqueue_call(tasks.sync_group, args=["t"], kwargs={"group_id": 7}, description="x")
    assert [job.kwargs for job in unijob_test.enqueued_jobs] == [{"group_id": 5}, {"group_id": 6}]


def test_a_call_site_may_repeat_the_functions_own_retry_with_rqs_retry(unijob_test: TestAdapter) -> None:
    Queue().enqueue(tasks.unreliable, "t", retry=rq.Retry(max=2, interval=[0.2, 0.5]))  # RQ's, the same numbers
    with pytest.raises(unijob.UnsupportedOptionError, match=r"enqueue\(retry=\.\.\.\)"):
        Queue().enqueue(tasks.unreliable, "t", retry=rq.Retry(max=3))
    assert len(unijob_test.enqueued_jobs) == 1


def test_queue_options_without_an_equivalent_raise(unijob_test: TestAdapter) -> None:
    with pytest.raises(unijob.UnsupportedOptionError, match=r"queue 'default': Queue\(is_async=False"):
        Queue("default", is_async=False)
    Queue("default", connection=Redis(), serializer=JSONSerializer, job_class=rq.job.Job)  # accepted, unused


def test_job_fetch_many_and_rqs_other_job_accessors(unijob_test: TestAdapter) -> None:
    handle = tasks.report.delay("t", 2)
    found, missing = Job.fetch_many([handle.id, "no-such-job"])
    assert missing is None and found is not None and found.get_id() == handle.id
    assert (found.is_deferred, found.is_canceled, found.is_stopped, found.func_name) == (False, False, False, tasks.report.name)
    found.refresh()
