"""The envelope format and the one execution path: decode, look up, deserialize, perform."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import unijob
from unijob import Envelope
from unijob.adapters.test import TestAdapter


@unijob.job(queue="mail")
def send_welcome(user_id: int) -> int:
    return user_id + 1


def envelope_dict(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {"v": 1, "job": send_welcome.name, "id": "0b9c", "args": [41], "kwargs": {}, "queue": "mail"}
    data.update(changes)
    return data


def test_execute_runs_a_registered_job_from_json() -> None:
    assert unijob.execute(json.dumps(envelope_dict())) == 42


def test_the_envelope_is_versioned_json_with_all_metadata(unijob_test: TestAdapter) -> None:
    send_welcome.set(priority=5).perform_later(1)
    (job,) = unijob_test.enqueued_jobs
    envelope = unijob_test._enqueued[0]
    wire = json.loads(envelope.to_json())
    assert set(wire) == {
        "v",
        "job",
        "id",
        "args",
        "kwargs",
        "queue",
        "priority",
        "enqueued_at",
        "scheduled_at",
        "executions",
        "exception_executions",
        "batch_id",
    }
    assert (wire["v"], wire["job"], wire["id"], wire["args"], wire["priority"]) == (1, send_welcome.name, job.job_id, [1], 5)
    assert Envelope.from_json(envelope.to_json()) == envelope


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not json", "must be JSON"),
        ("[1, 2]", "is a JSON object"),
        (json.dumps({"job": "x"}), "missing v, id, args, kwargs, queue"),
        (json.dumps(envelope_dict(v=2)), "format version 2 is not supported"),
        (json.dumps(envelope_dict(args="41")), "args must be a list"),
        (json.dumps(envelope_dict(priority="high")), "priority must be an integer"),
        (json.dumps(envelope_dict(scheduled_at="yesterday")), "malformed unijob envelope"),
    ],
)
def test_malformed_envelopes_raise_a_clear_error(payload: str, message: str) -> None:
    with pytest.raises(unijob.EnvelopeError, match=message):
        unijob.execute(payload)


def test_an_unregistered_name_is_refused_and_logged_never_imported(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(unijob.UnknownJobError, match="refusing job 'os.system'"):
        unijob.execute(envelope_dict(job="os.system", args=["echo pwned"]))
    assert "Refused job 'os.system'" in caplog.text


def test_log_lines_in_the_active_job_style(unijob_test: TestAdapter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="unijob")

    @unijob.job
    def send_report(report_id: int) -> None: ...

    job = send_welcome.perform_later(42)
    unijob.perform_all_later([send_welcome.new(1), send_welcome.new(2), send_report.new(3)])
    unijob_test.perform_enqueued_jobs(only=send_welcome)

    assert f"Enqueued send_welcome (Job ID: {job.job_id}) to Test(mail) with arguments: 42" in caplog.messages
    assert "Enqueued 3 jobs to Test (2 send_welcome, 1 send_report)" in caplog.messages
    assert any(
        m.startswith(f"Performing send_welcome (Job ID: {job.job_id}) from Test(mail) enqueued at ") for m in caplog.messages
    )
    assert any(
        m.startswith(f"Performed send_welcome (Job ID: {job.job_id}) from Test(mail) in ") and m.endswith("ms")
        for m in caplog.messages
    )


def test_a_jobs_success_lines_are_debug_so_the_workers_own_lines_are_not_doubled(
    unijob_test: TestAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="unijob")

    job = send_welcome.perform_later(42)
    unijob_test.perform_enqueued_jobs()

    assert [m for m in caplog.messages if job.job_id in m] == [
        f"Enqueued send_welcome (Job ID: {job.job_id}) to Test(mail) with arguments: 42"
    ]


class Flaky(unijob.Job):
    retry_on = unijob.retry_on(TimeoutError, wait=3, attempts=2, jitter=0)

    def perform(self) -> None:
        raise TimeoutError("slow")


def test_retry_and_discard_are_logged(unijob_test: TestAdapter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="unijob")
    job = Flaky.perform_later()
    unijob_test.perform_enqueued_jobs()
    assert f"Retrying Flaky (Job ID: {job.job_id}) in 3s due to a TimeoutError (slow)." in caplog.messages
    with pytest.raises(TimeoutError):
        unijob_test.perform_enqueued_jobs(at=job.enqueued_at.replace(year=2100) if job.enqueued_at else None)
    assert f"Discarded Flaky (Job ID: {job.job_id}) due to a TimeoutError (slow)." in caplog.messages


def test_argument_logging_can_be_switched_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="unijob")
    with unijob.override(adapter="test", log_arguments=False):
        job = send_welcome.perform_later(42)
    assert f"Enqueued send_welcome (Job ID: {job.job_id}) to Test(mail)" in caplog.messages


def test_instrumentation_events_can_be_subscribed(unijob_test: TestAdapter) -> None:
    seen: list[tuple[str, str | None]] = []
    subscriptions = [
        unijob.events.subscribe(name, lambda e: seen.append((e.name, e.outcome)))  # type: ignore[arg-type]
        for name in ("enqueue", "enqueue_all", "perform_start", "perform", "retry", "discard")
    ]
    try:
        send_welcome.perform_later(1)
        unijob.perform_all_later([send_welcome.new(2)])
        unijob_test.perform_enqueued_jobs(only=send_welcome)
        Flaky.perform_now()
    finally:
        for unsubscribe in subscriptions:
            unsubscribe()
    assert seen == [
        ("enqueue", None),
        ("enqueue_all", None),
        ("perform_start", None),
        ("perform", "success"),
        ("perform_start", None),
        ("perform", "success"),
        ("perform_start", None),
        ("perform", "retry"),
        ("retry", None),
        ("enqueue", None),
    ]
    with pytest.raises(ValueError, match="unknown event"):
        unijob.events.subscribe("nope", print)  # type: ignore[arg-type]


def test_a_broken_subscriber_does_not_break_the_job(unijob_test: TestAdapter, caplog: pytest.LogCaptureFixture) -> None:
    unsubscribe = unijob.events.subscribe("enqueue", lambda e: 1 / 0)
    try:
        assert send_welcome.perform_later(1).successfully_enqueued
    finally:
        unsubscribe()
    assert "subscriber" in caplog.text


def test_current_job_is_set_while_performing(unijob_test: TestAdapter) -> None:
    seen: list[str | None] = []

    @unijob.job
    def who_am_i() -> None:
        current = unijob.current_job()
        seen.append(current.job_id if current else None)

    job = who_am_i.perform_later()
    unijob_test.perform_enqueued_jobs()
    assert seen == [job.job_id] and unijob.current_job() is None


def test_inline_runs_at_once_after_a_json_round_trip() -> None:
    results: list[object] = []

    @unijob.job
    def collect(value: object) -> None:
        results.append(value)

    @unijob.job
    def explode() -> None:
        raise ZeroDivisionError("inline errors reach the caller")

    with unijob.override(adapter="inline"):
        collect.perform_later((1, 2))
        collect.set(wait=3600).perform_later({1: "x"})  # inline does not wait, by design
        with pytest.raises(ZeroDivisionError):
            explode.perform_later()
    assert results == [(1, 2), {1: "x"}]


class RefusingAdapter(TestAdapter):
    """A broker that takes nothing."""

    def enqueue(self, envelope: Any) -> str | None:
        raise unijob.EnqueueError("Test at redis://x did not accept the job: ConnectionError: down")

    def enqueue_all(self, envelopes: Any) -> list[Any]:
        error = unijob.EnqueueError("Test at redis://x did not accept the job: ConnectionError: down")
        return [unijob.adapters.base.EnqueueOutcome(error=error) for _ in envelopes]


def test_a_failed_enqueue_logs_an_error_whatever_the_level_of_the_success_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="unijob")  # success lines are off
    with unijob.override(RefusingAdapter(alias="default")):
        assert unijob.perform_all_later([send_welcome.new(1), send_welcome.new(2)]) == 0
        with pytest.raises(unijob.EnqueueError):
            send_welcome.perform_later(3)
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    why = "EnqueueError (Test at redis://x did not accept the job: ConnectionError: down)"
    assert errors == [
        f"Failed enqueuing 2 jobs to Test, first error: {why}",
        f"Failed enqueuing send_welcome to Test(mail): {why}",
    ]
