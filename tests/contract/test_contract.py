"""The contract: the same test functions against every backend, with its stock worker running.

Run one backend with ``pytest tests/contract --backends rq``.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

import unijob
from tests import jobs
from tests.harness import Harness, events_of
from unijob import config, serializers
from unijob.envelope import Envelope


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


def test_enqueue_runs_the_job_once_with_its_id_and_queue(backend: Harness, token: str) -> None:
    job = jobs.echo.perform_later(token, 1, "two", flag=True)

    assert job.successfully_enqueued and job.enqueue_error is None
    assert job.provider_job_id
    records = backend.wait_for(token, lambda r: len(r) >= 1)
    assert len(backend.settle(token, 0.5 if backend.runs_elsewhere else 0)) == 1
    (run,) = records
    assert run["job_id"] == job.job_id
    assert run["queue"] == "mail"
    assert serializers.load(run["args"]) == [1, "two"]
    assert serializers.load(run["kwargs"]) == {"flag": True}


RICH_ARGUMENTS: list[Any] = [
    dt.datetime(2026, 11, 23, 18, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(2026, 1, 2, 3, 4, 5, 6),
    dt.date(2026, 2, 28),
    dt.time(23, 59, 59, 999999),
    dt.timedelta(days=-1, seconds=5, microseconds=7),
    Decimal("12345.678900"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    (1, (2, 3)),
    {3, 1, 2},
    frozenset({"a"}),
    b"\x00\xffbytes",
    {1: "one", (2, 3): "tuple key"},
    {"__uj__": "not a tag", "nested": [{"deep": dt.date(2000, 1, 1)}]},
]


def test_rich_arguments_round_trip_through_the_worker(backend: Harness, token: str) -> None:
    jobs.echo.perform_later(token, *RICH_ARGUMENTS, when=dt.date(2026, 11, 23))

    (run,) = backend.wait_for(token, lambda r: len(r) >= 1)
    assert serializers.load(run["args"]) == RICH_ARGUMENTS
    assert serializers.load(run["kwargs"]) == {"when": dt.date(2026, 11, 23)}


def test_a_delayed_job_runs_after_its_delay(backend: Harness, token: str) -> None:
    before = time.time()
    job = jobs.echo.set(wait=2).perform_later(token, "later")

    assert job.scheduled_at is not None
    assert job.scheduled_at >= dt.datetime.fromtimestamp(before, dt.timezone.utc) + dt.timedelta(seconds=2)
    (run,) = backend.wait_for(token, lambda r: len(r) >= 1, timeout=40)
    if backend.name != "inline":  # inline runs a delayed job at once, by design
        assert run["at"] >= before + 1.9


def test_priority_is_carried_or_clearly_refused(backend: Harness, token: str) -> None:
    adapter = config.get_adapter()
    if not adapter.capabilities.priority:
        with pytest.raises(unijob.UnsupportedOptionError, match=adapter.name):
            jobs.echo.set(priority=50).perform_later(token)
        return
    job = jobs.echo.set(priority=50).perform_later(token)
    (run,) = backend.wait_for(token, lambda r: len(r) >= 1)
    assert run["job_id"] == job.job_id
    assert run["priority"] == 50


def test_bulk_reports_each_job_and_runs_each_once(backend: Harness, token: str) -> None:
    batch = [jobs.echo.new(token, i) for i in range(25)]

    assert unijob.perform_all_later(batch) == 25
    assert all(job.successfully_enqueued and job.enqueue_error is None for job in batch)
    assert len({job.provider_job_id for job in batch}) == 25
    backend.wait_for(token, lambda r: len(r) >= 25)
    records = backend.settle(token, 0.5 if backend.runs_elsewhere else 0)
    assert sorted(serializers.load(r["args"])[0] for r in records) == list(range(25))


def test_bulk_block_enqueues_at_the_end(backend: Harness, token: str) -> None:
    with unijob.bulk() as buffered:
        first = jobs.echo.perform_later(token, "a")
        jobs.echo.set(queue="default").perform_later(token, "b")
        assert not first.successfully_enqueued
    assert len(buffered) == 2 and all(job.successfully_enqueued for job in buffered)
    records = backend.wait_for(token, lambda r: len(r) >= 2)
    assert sorted((serializers.load(r["args"])[0], r["queue"]) for r in records) == [("a", "mail"), ("b", "default")]


def test_a_failing_job_is_retried_after_its_wait_then_succeeds(backend: Harness, token: str) -> None:
    jobs.Flaky.perform_later(token, 2)

    records = backend.wait_for(token, lambda r: bool(events_of(r, "success")), timeout=40)
    attempts = events_of(records, "attempt")
    assert [r["executions"] for r in attempts] == [1, 2, 3]
    assert len({r["job_id"] for r in attempts}) == 1
    if backend.name != "inline":
        assert attempts[1]["at"] - attempts[0]["at"] >= 0.9  # retry_on(wait=1)


def test_retries_run_out_and_the_job_is_discarded(backend: Harness, token: str) -> None:
    if backend.name == "inline":
        with pytest.raises(jobs.FlakyError):  # inline: the final error reaches the caller
            jobs.AlwaysFails.perform_later(token)
    else:
        jobs.AlwaysFails.perform_later(token)
    records = backend.wait_for(token, lambda r: bool(events_of(r, "after_discard")), timeout=40)
    assert len(events_of(records, "attempt")) == 2  # attempts=2
    assert events_of(records, "after_discard")[0]["error"] == "FlakyError"
    assert len(backend.settle(token, 1.5 if backend.runs_elsewhere else 0)) == 3  # no native retry comes back


def test_discard_on_swallows_the_error_and_runs_after_discard(backend: Harness, token: str) -> None:
    jobs.Discarded.perform_later(token)

    records = backend.wait_for(token, lambda r: bool(events_of(r, "after_discard")))
    assert [r["event"] for r in backend.settle(token, 1.0 if backend.runs_elsewhere else 0)] == ["attempt", "after_discard"]
    assert records[-1]["error"] == "Gone"


def test_perform_callbacks_run_in_order(backend: Harness, token: str) -> None:
    jobs.WithCallbacks.perform_later(token)

    records = backend.wait_for(token, lambda r: len(r) >= 5)
    assert [r["event"] for r in records] == ["before_perform", "around_before", "perform", "around_after", "after_perform"]


def test_a_payload_naming_an_unregistered_function_is_refused(backend: Harness, token: str) -> None:
    adapter = config.get_adapter()
    payload = Envelope(job="tests.unregistered.not_a_job", job_id=str(uuid.uuid4()), args=[token], kwargs={}, queue="default")
    if backend.runs_elsewhere:
        adapter.enqueue(payload)
    else:
        with pytest.raises(unijob.UnknownJobError, match="not_a_job"):
            adapter.enqueue(payload)
            backend.tick(strict=True)
    jobs.ping.perform_later(token)  # queued behind it: once it ran, the bad payload was consumed

    backend.wait_for(token, lambda r: bool(events_of(r, "ping")))
    assert not events_of(backend.settle(token, 1.0 if backend.runs_elsewhere else 0), "unregistered function ran")
