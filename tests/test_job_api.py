"""The Job API on the test adapter: building, options, bulk, callbacks, retries, discards."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

import unijob
from unijob.adapters.test import TestAdapter


@unijob.job(queue="mail", priority=10)
def send_welcome(user_id: int) -> str:
    return f"welcome {user_id}"


@unijob.job
def send_report(user_id: int, queue: str = "kwarg, not an option") -> str:
    return queue


class Unserializable:
    pass


def test_perform_later_returns_the_enqueued_job(unijob_test: TestAdapter) -> None:
    job = send_welcome.perform_later(42)

    assert uuid.UUID(job.job_id).version == 4
    assert (job.queue, job.priority, job.scheduled_at) == ("mail", 10, None)
    assert job.successfully_enqueued and job.enqueue_error is None
    assert job.provider_job_id == job.job_id
    unijob_test.assert_enqueued(send_welcome, args=[42], queue="mail", priority=10)


def test_perform_now_runs_here_and_returns_the_value(unijob_test: TestAdapter) -> None:
    assert send_welcome.perform_now(7) == "welcome 7"
    assert send_welcome(7) == "welcome 7"  # the function is still callable as before
    unijob_test.assert_no_enqueued()


def test_options_never_mix_with_the_jobs_own_arguments(unijob_test: TestAdapter) -> None:
    send_report.set(queue="reports").perform_later(1, queue="an argument")

    unijob_test.assert_enqueued(send_report, kwargs={"queue": "an argument"}, queue="reports")
    unijob_test.perform_enqueued_jobs()
    unijob_test.assert_performed(send_report, kwargs={"queue": "an argument"})


def test_set_schedules_with_wait_or_wait_until(unijob_test: TestAdapter) -> None:
    noon = dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc)
    week = send_welcome.set(wait=dt.timedelta(days=7)).perform_later(1)
    seconds = send_welcome.set(wait=30).perform_later(2)
    at_noon = send_welcome.set(wait_until=noon, queue="low").perform_later(3)

    now = dt.datetime.now(dt.timezone.utc)
    unijob_test.assert_enqueued(send_welcome, args=[1], at=now + dt.timedelta(days=7))
    unijob_test.assert_enqueued(send_welcome, args=[2], at=now + dt.timedelta(seconds=30))
    unijob_test.assert_enqueued(send_welcome, args=[3], at=noon, queue="low")
    assert week.scheduled_at and seconds.scheduled_at and at_noon.scheduled_at == noon


def test_set_returns_a_copy_and_later_options_win(unijob_test: TestAdapter) -> None:
    base = send_welcome.set(queue="low")
    base.set(wait=5).set(wait_until=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)).perform_later(1)
    send_welcome.perform_later(2)

    unijob_test.assert_enqueued(send_welcome, args=[1], queue="low", at=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    unijob_test.assert_enqueued(send_welcome, args=[2], queue="mail")


@pytest.mark.parametrize("priority", [-101, 101, 1.5, "high", True])
def test_priority_out_of_range_raises_at_set(priority: Any) -> None:
    with pytest.raises(ValueError, match="priority must be an integer from -100 to 100"):
        send_welcome.set(priority=priority)


def test_bad_waits_raise_at_set() -> None:
    with pytest.raises(ValueError, match="not both"):
        send_welcome.set(wait=1, wait_until=dt.datetime.now())
    with pytest.raises(ValueError, match="negative"):
        send_welcome.set(wait=-1)


def test_perform_all_later_reports_each_job(unijob_test: TestAdapter) -> None:
    jobs = [send_welcome.new(1), send_welcome.new(Unserializable()), send_report.new(3)]  # type: ignore[arg-type]

    assert unijob.perform_all_later(jobs) == 2
    assert [job.successfully_enqueued for job in jobs] == [True, False, True]
    assert isinstance(jobs[1].enqueue_error, unijob.SerializationError)
    assert "argument user_id of type Unserializable" in str(jobs[1].enqueue_error)
    assert len(unijob_test.enqueued_jobs) == 2


def test_arguments_that_do_not_fit_the_job_fail_at_the_call_not_in_a_worker(unijob_test: TestAdapter) -> None:
    with pytest.raises(unijob.ArgumentsError, match=r"send_welcome\(user_id\): missing a required argument: 'user_id'"):
        send_welcome.perform_later()  # type: ignore[call-arg]
    with pytest.raises(
        TypeError, match=r"unexpected keyword argument 'priority'; an option goes in send_welcome.set\(priority=...\)"
    ):
        send_welcome.perform_later(1, priority=5)  # type: ignore[call-arg]
    jobs = [send_welcome.new(1), send_welcome.new(1, 2)]  # type: ignore[call-arg]
    assert unijob.perform_all_later(jobs) == 1
    assert isinstance(jobs[1].enqueue_error, unijob.ArgumentsError) and "too many positional arguments" in str(
        jobs[1].enqueue_error
    )
    assert [job.args for job in unijob_test.enqueued_jobs] == [(1,)]


def test_perform_all_later_takes_a_generator_in_chunks(unijob_test: TestAdapter) -> None:
    assert unijob.perform_all_later((send_welcome.new(i) for i in range(25)), chunk_size=10) == 25
    assert sorted(job.args[0] for job in unijob_test.enqueued_jobs) == list(range(25))


def test_bulk_block_enqueues_once_at_the_outermost_end(unijob_test: TestAdapter) -> None:
    flushes: list[int] = []
    unsubscribe = unijob.events.subscribe("enqueue_all", lambda event: flushes.append(len(event.jobs)))
    try:
        with unijob.bulk():
            send_welcome.perform_later(1)
            with unijob.bulk():
                send_welcome.perform_later(2)
            assert unijob_test.enqueued_jobs == []
        assert flushes == [2]
        assert len(unijob_test.enqueued_jobs) == 2
    finally:
        unsubscribe()


def test_an_exception_in_a_bulk_block_enqueues_nothing(unijob_test: TestAdapter) -> None:
    with pytest.raises(RuntimeError), unijob.bulk():
        send_welcome.perform_later(1)
        raise RuntimeError("boom")
    assert unijob_test.enqueued_jobs == []
    send_welcome.perform_later(2)  # and the next perform_later is not buffered any more
    assert len(unijob_test.enqueued_jobs) == 1


def test_unserializable_argument_in_a_bulk_block_fails_at_the_call(unijob_test: TestAdapter) -> None:
    with pytest.raises(unijob.SerializationError), unijob.bulk():
        send_welcome.perform_later(1)
        send_welcome.perform_later(Unserializable())  # type: ignore[arg-type]
    assert unijob_test.enqueued_jobs == []


class Audited(unijob.Job):
    calls: list[str] = []

    def before_enqueue(self) -> None:
        self.calls.append("before_enqueue")

    def around_enqueue(self, proceed: Any) -> None:
        self.calls.append("around_enqueue:start")
        proceed()
        self.calls.append(f"around_enqueue:end enqueued={self.successfully_enqueued}")

    def after_enqueue(self) -> None:
        self.calls.append("after_enqueue")

    def perform(self, value: int) -> int:
        self.calls.append(f"perform {value}")
        return value * 2


def test_enqueue_callbacks_run_around_the_hand_over_but_not_in_bulk(unijob_test: TestAdapter) -> None:
    Audited.calls.clear()
    Audited.perform_later(1)
    assert Audited.calls == ["before_enqueue", "around_enqueue:start", "around_enqueue:end enqueued=True", "after_enqueue"]
    Audited.calls.clear()
    unijob.perform_all_later([Audited.new(2)])
    assert Audited.calls == []
    assert Audited.perform_now(4) == 8


class Timeout(Exception):
    pass


class Gone(Exception):
    pass


class Sync(unijob.Job):
    retry_on = unijob.retry_on(Timeout, wait=unijob.polynomial, attempts=3, jitter=0)
    discard_on = (Gone,)
    discarded: list[str] = []

    def perform(self, outcome: str) -> None:
        if outcome == "timeout":
            raise Timeout("slow")
        if outcome == "gone":
            raise Gone("deleted")
        if outcome == "bug":
            raise KeyError("bug")

    def after_discard(self, error: BaseException) -> None:
        self.discarded.append(type(error).__name__)


def test_retry_reenqueues_with_polynomial_wait_until_attempts_run_out(unijob_test: TestAdapter) -> None:
    Sync.discarded.clear()
    Sync.perform_later("timeout")
    start = dt.datetime.now(dt.timezone.utc)

    assert unijob_test.perform_enqueued_jobs() == 1  # first attempt fails; retry due in 3s (1**4 + 2)
    (retry,) = unijob_test.assert_enqueued(Sync, at=start + dt.timedelta(seconds=3))
    assert (retry.executions, retry.exception_executions) == (1, {f"{__name__}.Timeout": 1})
    assert unijob_test.perform_enqueued_jobs() == 0  # not due yet
    assert unijob_test.perform_enqueued_jobs(at=start + dt.timedelta(seconds=4)) == 1
    unijob_test.assert_enqueued(Sync, at=start + dt.timedelta(seconds=18))  # 2**4 + 2
    with pytest.raises(Timeout):  # third and last attempt: raised to the backend
        unijob_test.perform_enqueued_jobs(at=start + dt.timedelta(minutes=1))
    assert Sync.discarded == ["Timeout"]
    unijob_test.assert_no_enqueued()
    assert len(unijob_test.performed_jobs) == 3


def test_discard_on_swallows_and_unhandled_errors_propagate(unijob_test: TestAdapter) -> None:
    Sync.discarded.clear()
    assert Sync.perform_now("gone") is None
    with pytest.raises(KeyError):
        Sync.perform_now("bug")
    assert Sync.discarded == ["Gone", "KeyError"]
    unijob_test.assert_no_enqueued()


def test_perform_enqueued_jobs_only(unijob_test: TestAdapter) -> None:
    send_welcome.perform_later(1)
    send_report.perform_later(2)

    assert unijob_test.perform_enqueued_jobs(only=send_report) == 1
    unijob_test.assert_performed(send_report, count=1)
    unijob_test.assert_enqueued(send_welcome, count=1)
    unijob_test.clear()
    assert unijob_test.enqueued_jobs == [] and unijob_test.performed_jobs == []


def test_assertion_messages_list_what_was_enqueued(unijob_test: TestAdapter) -> None:
    send_welcome.perform_later(1)
    with pytest.raises(AssertionError, match=r"expected at least 1 enqueued job\(s\) matching .*send_report.*found 0"):
        unijob_test.assert_enqueued(send_report)
    with pytest.raises(AssertionError, match="send_welcome args=\\(1,\\)"):
        unijob_test.assert_no_enqueued(send_welcome)


def test_job_names_default_to_module_and_qualname_and_can_be_chosen() -> None:
    @unijob.job(name="mail.welcome")
    def welcome() -> None: ...

    class Named(unijob.Job, name="stats.update"):
        def perform(self) -> None: ...

    assert send_welcome.name == f"{__name__}.send_welcome"
    assert Sync.name == f"{__name__}.Sync"
    assert (welcome.name, Named.name) == ("mail.welcome", "stats.update")
    with pytest.raises(ValueError, match="job name 'mail.welcome' is taken"):

        @unijob.job(name="mail.welcome")
        def other() -> None: ...


def test_class_priority_is_validated_at_definition() -> None:
    with pytest.raises(ValueError, match="priority"):

        class TooUrgent(unijob.Job):
            priority = 1000

            def perform(self) -> None: ...


class DeadBroker(TestAdapter):
    """A broker that refuses everything: counts how often it is asked."""

    calls = 0

    def enqueue_all(self, envelopes: Any) -> list[Any]:
        DeadBroker.calls += 1
        error = unijob.EnqueueError("Test at redis://x did not accept the job: ConnectionError")
        return [unijob.adapters.base.EnqueueOutcome(error=error) for _ in envelopes]


def test_after_a_chunk_is_refused_whole_the_rest_report_the_error_without_waiting() -> None:
    DeadBroker.calls = 0
    with unijob.override(DeadBroker(alias="default")):
        jobs = [send_welcome.new(i) for i in range(25)]
        assert unijob.perform_all_later(jobs, chunk_size=10) == 0
    assert DeadBroker.calls == 1
    assert all(isinstance(job.enqueue_error, unijob.EnqueueError) and not job.successfully_enqueued for job in jobs)


def test_at_none_means_not_delayed(unijob_test: TestAdapter) -> None:
    send_welcome.perform_later(42)
    send_welcome.set(wait=60).perform_later(42)
    (now,) = unijob_test.assert_enqueued(send_welcome, args=[42], queue="mail", at=None)
    assert now.scheduled_at is None
    unijob_test.assert_enqueued(send_welcome, args=[42], at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60))
    unijob_test.assert_enqueued(send_welcome, count=2)


class NoPriorityAdapter(TestAdapter):
    capabilities = unijob.adapters.base.Capabilities(priority=False, native_bulk=True, in_process=True)


def test_a_jobs_own_priority_is_a_hint_a_backend_without_priority_drops() -> None:
    """The same job runs on every backend: a class's priority is dropped where there is none,
    while a priority asked for with set() is still refused there."""
    adapter = NoPriorityAdapter(alias="default")
    with unijob.override(adapter):
        job = send_welcome.perform_later(1)
        assert job.successfully_enqueued and job.priority is None
        assert unijob.perform_all_later([send_welcome.new(2)]) == 1
        with pytest.raises(unijob.UnsupportedOptionError, match="send_welcome: the test adapter .*cannot honour priority=5"):
            send_welcome.set(priority=5).perform_later(3)
        (failed,) = [send_welcome.set(priority=5).new(4)]
        assert unijob.perform_all_later([failed]) == 0 and isinstance(failed.enqueue_error, unijob.UnsupportedOptionError)
    assert [job.priority for job in adapter.enqueued_jobs] == [None, None]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"wait": float("nan")}, "send_welcome: wait must be a finite number of seconds, not nan"),
        ({"wait": float("inf")}, "send_welcome: wait must be a finite number of seconds, not inf"),
        ({"wait": 1e12}, "send_welcome: wait=1000000000000.0 seconds is more than 100 years"),
        ({"wait": -5}, "send_welcome: wait cannot be negative, got -5 seconds"),
        ({"wait": dt.timedelta(seconds=-5)}, "send_welcome: wait cannot be negative, got -5 seconds"),
        ({"priority": 500}, "send_welcome: priority must be an integer from -100 to 100"),
        ({"queue": ""}, "send_welcome: queue must be a non-empty string"),
        ({"wait": 1, "wait_until": dt.datetime(2030, 1, 1)}, "send_welcome: give wait or wait_until, not both"),
    ],
)
def test_a_bad_option_value_names_the_job_and_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        send_welcome.set(**options)
    assert str(raised.value).startswith(message)


def test_an_unknown_option_is_refused_with_the_list() -> None:
    with pytest.raises(TypeError, match="send_welcome: unknown option.* priorty .*the options are: wait, wait_until"):
        send_welcome.set(priorty=5)  # type: ignore[call-arg]


def test_an_empty_queue_is_refused_where_the_job_is_defined() -> None:
    with pytest.raises(ValueError, match="queue must be a non-empty string"):

        @unijob.job(queue="")
        def nowhere() -> None: ...

    with pytest.raises(ValueError, match="Nowhere: queue must be a non-empty string"):

        class Nowhere(unijob.Job):
            queue = " "


def test_a_chunk_size_below_one_is_refused(unijob_test: TestAdapter) -> None:
    with pytest.raises(ValueError, match="chunk_size must be a whole number of at least 1, not 0"):
        unijob.perform_all_later([send_welcome.new(1)], chunk_size=0)
    with pytest.raises(unijob.ConfigurationError, match="bulk_chunk_size must be a whole number of at least 1, not 0"):
        unijob.configure("test", bulk_chunk_size=0)
