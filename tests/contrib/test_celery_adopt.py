"""Adopted Celery tasks on the test and inline adapters: call sites, options, binding and retries."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any
from unittest import mock

import pytest
from celery import group as celery_group

import unijob
from tests import jobs
from tests.contrib import celery_tasks as tasks
from tests.harness import require_service
from unijob.adapters.test import TestAdapter
from unijob.contrib.celery import AsyncResult, group


def test_delay_and_apply_async_enqueue_the_job_under_the_tasks_own_name(unijob_test: TestAdapter) -> None:
    handle = tasks.add.delay("t", 1, 2)
    assert isinstance(handle, AsyncResult) and handle.id
    (job,) = unijob_test.assert_enqueued("tests.contrib.celery_tasks.add", args=["t", 1, 2], queue="celery", at=None)
    assert job.job_id == handle.id
    tasks.add.apply_async(args=("t", 3), kwargs={"b": 4})
    unijob_test.assert_enqueued(tasks.add.unijob_job, args=["t", 3], kwargs={"b": 4})


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"countdown": 60}, {"wait": 60}),
        ({"eta": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)}, {"at": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)}),
        ({"eta": "2030-01-01T00:00:00+00:00"}, {"at": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)}),
        ({"queue": "low"}, {"queue": "low"}),
        ({"priority": 9}, {"priority": 100}),  # the app's broker (memory://) runs 9 first, as RabbitMQ does
        ({"priority": 0}, {"priority": -100}),
        ({"task_id": "my-own-id"}, {"job_id": "my-own-id"}),
        ({"add_to_parent": None, "serializer": "json", "retry": False}, {}),
        ({"ignore_result": True}, {}),  # the task keeps no result already (no result backend)
        ({"time_limit": 30}, {"timeout": 30.0}),
        ({"expires": 60}, {"expires_in": 60}),
        ({"expires": "2030-01-01T00:00:00+00:00"}, {"expires_at": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)}),
    ],
    ids=lambda value: ",".join(value) if isinstance(value, dict) else str(value),
)
def test_each_apply_async_option_maps(unijob_test: TestAdapter, options: dict[str, Any], expected: dict[str, Any]) -> None:
    tasks.add.apply_async(("t", 1, 2), **options)
    (job,) = unijob_test.enqueued_jobs
    if "wait" in expected:
        assert job.scheduled_at is not None
        assert abs((job.scheduled_at - dt.datetime.now(dt.timezone.utc)).total_seconds() - expected["wait"]) < 2
    if "at" in expected:
        assert job.scheduled_at == expected["at"]
    if "expires_in" in expected:
        assert job.expires_at is not None
        assert abs((job.expires_at - dt.datetime.now(dt.timezone.utc)).total_seconds() - expected["expires_in"]) < 2
    for field in ("queue", "priority", "job_id", "timeout", "expires_at"):
        if field in expected:
            assert getattr(job, field) == expected[field]


@pytest.mark.parametrize(
    "option",
    ["link", "link_error", "chain", "chord", "group_id", "group_index", "shadow", "exchange", "routing_key",
     "soft_time_limit", "serializer", "compression", "retry", "retry_policy", "ignore_result_false"],
)  # fmt: skip
def test_each_option_without_an_equivalent_raises_naming_it(unijob_test: TestAdapter, option: str) -> None:
    value: Any = {
        "retry": True,
        "serializer": "pickle",
        "compression": "zlib",
        "retry_policy": {"max_retries": 3},
    }.get(option, 10)
    name = option
    if option == "ignore_result_false":
        name, value = "ignore_result", False
    with pytest.raises(unijob.UnsupportedOptionError, match=rf"tests.contrib.celery_tasks.add: apply_async\({name}=\.\.\.\)"):
        tasks.add.apply_async(("t", 1, 2), **{name: value})
    assert unijob_test.enqueued_jobs == []  # nothing was sent


def test_custom_headers_reach_the_task_as_celerys_request_holds_them(unijob_test: TestAdapter) -> None:
    token = f"headers-{uuid.uuid4().hex}"
    tasks.traced.apply_async((token,), headers={"trace_id": "abc", "tenant": 7})
    (job,) = unijob_test.enqueued_jobs
    assert job.headers == {"trace_id": "abc", "tenant": 7}
    unijob_test.perform_enqueued_jobs()
    (seen,) = jobs.records(token)
    assert (seen["headers"], seen["trace_id"]) == ({"trace_id": "abc", "tenant": 7}, "abc")


@pytest.mark.parametrize(
    ("headers", "error", "message"),
    [({"id": "x"}, ValueError, "cannot set 'id': Celery or unijob sets that header itself"),
     ({"unijob": {}}, ValueError, "cannot set 'unijob'"),
     ({"when": dt.datetime(2030, 1, 1)}, unijob.SerializationError, "must hold JSON values"),
     (["trace_id"], TypeError, "takes a dict of header names to values")],
)  # fmt: skip
def test_headers_celery_sets_itself_or_that_are_not_json_are_refused(
    unijob_test: TestAdapter, headers: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=rf"tests.contrib.celery_tasks.traced: apply_async\(headers=\.\.\.\) {re.escape(message)}"):
        tasks.traced.apply_async(("t",), headers=headers)
    assert unijob_test.enqueued_jobs == []


def test_an_unsupported_option_warns_and_is_dropped_with_on_unsupported_warn() -> None:
    adapter = TestAdapter(alias="test")
    with unijob.override(adapter, on_unsupported="warn"), pytest.warns(RuntimeWarning, match=r"apply_async\(shadow=\.\.\.\)"):
        tasks.add.apply_async(("t", 1, 2), shadow="other")
    assert len(adapter.enqueued_jobs) == 1


def test_delay_stays_patchable_as_tests_of_celery_code_patch_it(unijob_test: TestAdapter) -> None:
    with mock.patch("tests.contrib.celery_tasks.add.delay") as delay:
        tasks.add.delay("t", 1, 2)
    delay.assert_called_once_with("t", 1, 2)
    assert unijob_test.enqueued_jobs == []


def test_bind_true_gets_the_request_id_and_retries_and_self_retry_retries(unijob_test: TestAdapter) -> None:
    handle = tasks.bound.delay("bind-token", 2)
    # the first run and two retries, each due after countdown=0.5
    assert unijob_test.perform_enqueued_jobs(at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)) == 3
    performed = unijob_test.performed_jobs
    assert [job.executions for job in performed] == [0, 1, 2]  # as enqueued: before each run
    assert all(job.job_id == handle.id for job in performed)


def test_self_retry_past_max_retries_raises_the_tasks_exception(unijob_test: TestAdapter) -> None:
    tasks.bound.delay("bind-token-2", 5)  # max_retries=2: the third retry is refused
    with pytest.raises(tasks.Unavailable, match="try 2"):
        unijob_test.perform_enqueued_jobs(at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5))
    assert len(unijob_test.performed_jobs) == 3


def test_autoretry_for_with_backoff_retries_through_unijob() -> None:
    adapter = TestAdapter(alias="test")
    with unijob.override(adapter):
        tasks.flaky.delay("autoretry-token-" + str(id(adapter)), 2)
        assert adapter.perform_enqueued_jobs(at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)) == 3
    assert [job.executions for job in adapter.performed_jobs] == [0, 1, 2]
    assert adapter.performed_jobs[0].queue == "mail"


def test_the_inline_adapter_is_the_eager_mode_and_still_serializes() -> None:
    """CELERY_TASK_ALWAYS_EAGER's unijob equivalent: the inline adapter runs the task at once,
    after a JSON round trip, so a value that would not travel fails here too."""
    with unijob.override(adapter="inline"):
        tasks.add.delay("eager", 2, 3)
        with pytest.raises(unijob.SerializationError, match="add: argument b of type object is not serializable"):
            tasks.add.delay("eager", 2, object())


def test_group_of_adopted_signatures_is_one_bulk_enqueue(unijob_test: TestAdapter) -> None:
    result = group(tasks.add.s("g", i, i) for i in range(5)).apply_async()
    assert len(result) == 5 and all(job.successfully_enqueued for job in result.jobs)
    assert sorted(job.args[1] for job in unijob_test.enqueued_jobs) == [0, 1, 2, 3, 4]


def test_celerys_own_group_of_adopted_tasks_says_to_use_unijobs(unijob_test: TestAdapter) -> None:
    with pytest.raises(unijob.UnsupportedOptionError, match="use unijob.contrib.celery.group"):
        celery_group(tasks.add.s("g", i, i) for i in range(2)).apply_async()


def test_async_result_of_an_unknown_id_is_pending_as_in_celery(unijob_test: TestAdapter) -> None:
    handle = AsyncResult("no-such-id")
    assert (handle.state, handle.status, handle.ready(), handle.result) == ("PENDING", "PENDING", False, None)


# --- found while moving examples/celery_shop (docs/migrating-from-celery.md) -----------------------


@pytest.fixture
def eager_app() -> Any:
    tasks.app.conf.task_always_eager = True  # task_eager_propagates would raise Celery's Retry, in Celery too
    yield tasks.app
    tasks.app.conf.task_always_eager = False


def test_eager_mode_runs_adopted_tasks_as_celery_did_retries_included(unijob_test: TestAdapter, eager_app: Any) -> None:
    """A project's tests written for task_always_eager keep passing while its tasks are adopted."""
    require_service("redis")  # where the tasks record what they saw
    assert tasks.add.delay("eager-add", 2, 3).get() == 5
    token = "eager-bound-" + str(id(eager_app))
    assert tasks.bound.apply_async((token, 2), countdown=30).get() == "done"
    assert [entry["retries"] for entry in jobs.records(token)] == [0, 1, 2]
    assert len({entry["id"] for entry in jobs.records(token)}) == 1  # a retry keeps its task id
    assert group(tasks.add.s("eager-group", i, i) for i in range(3)).apply_async().get() == [0, 2, 4]
    assert unijob_test.enqueued_jobs == []  # Celery ran them; nothing went through unijob


def test_a_call_that_does_not_fit_the_function_fails_at_the_call_site_as_in_celery(unijob_test: TestAdapter) -> None:
    with pytest.raises(TypeError):
        tasks.add.delay("t", 1, 2, 3)
    assert unijob_test.enqueued_jobs == []


def test_a_naive_eta_is_read_in_the_apps_timezone_as_a_celery_worker_reads_it(unijob_test: TestAdapter) -> None:
    tasks.add.apply_async(("t", 1, 2), eta=dt.datetime(2030, 1, 1, 12, 0))  # the app runs on UTC
    (job,) = unijob_test.enqueued_jobs
    assert job.scheduled_at == dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_time_limits_and_expiry_map_and_app_wide_defaults_do_not_stop_adoption(unijob_test: TestAdapter) -> None:
    """A task's time_limit (or the app's task_time_limit) is the job's timeout, its expires every
    call's; the app's soft time limit and rate limit apply to unijob's tasks on the Celery worker
    (they are tasks of the app), but a task's own cannot be kept, so adopting it is refused."""
    from celery import Celery

    from unijob.contrib.celery import adopt

    app = Celery("limits", broker="memory://", set_as_current=False)
    app.conf.update(task_time_limit=300, task_soft_time_limit=200, task_default_rate_limit="10/s", task_default_priority=5)

    @app.task(name="limits.app_wide")
    def app_wide() -> None: ...

    job_class = adopt(app_wide).unijob_job
    assert (job_class.priority, job_class.timeout) == (None, 300.0)  # the app's default priority is the adapter's

    @adopt
    @app.task(name="limits.own", time_limit=10, expires=60)
    def own() -> None: ...

    own.delay()
    (job,) = unijob_test.enqueued_jobs
    assert job.timeout == 10.0 and job.expires_at is not None


@pytest.mark.parametrize(
    ("option", "value", "refused"),
    [("soft_time_limit", 5, "soft_time_limit=..."), ("rate_limit", "10/s", "rate_limit=..."),
     ("serializer", "pickle", "serializer='pickle'")],
)  # fmt: skip
def test_each_task_option_without_an_equivalent_refuses_the_adoption(option: str, value: Any, refused: str) -> None:
    from celery import Celery

    from unijob.contrib.celery import adopt

    app = Celery("refused", broker="memory://", set_as_current=False)

    def nightly() -> None: ...

    task = app.task(name=f"refused.{option}", **{option: value})(nightly)
    with pytest.raises(unijob.UnsupportedOptionError, match=rf"refused.{option}: @app.task\({re.escape(refused)}\)"):
        adopt(task)
    assert getattr(task, "unijob_job", None) is None  # nothing adopted by halves


def test_get_on_a_task_that_keeps_no_result_raises_at_once_as_celery_does(unijob_test: TestAdapter) -> None:
    handle = tasks.add.delay("t", 1, 2)  # the legacy app has no result backend
    with pytest.raises(NotImplementedError, match="keeps no result"):
        handle.get(timeout=30)


def test_the_test_adapter_finds_an_adopted_task_by_the_task_itself(unijob_test: TestAdapter) -> None:
    tasks.add.delay("t", 1, 2)
    unijob_test.assert_enqueued(tasks.add, args=["t", 1, 2])


def test_retry_without_throw_is_refused_since_a_unijob_retry_ends_the_run() -> None:
    from celery import Celery

    from unijob.contrib.celery import adopt

    app = Celery("no_throw", broker="memory://", set_as_current=False)

    @adopt
    @app.task(bind=True, name="no_throw.task")
    def soft(self: Any) -> None:
        self.retry(countdown=1, throw=False)

    with unijob.override(adapter="inline"), pytest.raises(unijob.UnsupportedOptionError, match=r"retry\(throw=False\)"):
        soft.delay()
