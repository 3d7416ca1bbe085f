"""Batches on every backend, with the stock workers: callbacks fire exactly once, counts add up."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import unijob
from tests import jobs
from tests.harness import LOG_DIR, ROOT, Harness, events_of, stop_process


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


def callbacks(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = events_of(records, "callback")
    by_event = {r["callback_event"]: r for r in found}
    assert len(by_event) == len(found), f"a callback fired twice: {found}"
    return by_event


def final_failure_mode(backend: Harness) -> str:
    # Inline raises a job's final error in the caller, which would stop the block's bulk enqueue.
    return "discard" if backend.name == "inline" else "exhaust"


def test_finish_success_and_counts_when_every_job_succeeds(backend: Harness, token: str) -> None:
    with unijob.batch(
        on_finish=jobs.batch_callback, on_success=jobs.batch_callback, on_discard=jobs.batch_callback, token=token
    ) as batch:
        for n in range(5):
            jobs.BatchMember.perform_later(token, n, "flaky" if n == 0 else "ok")
    assert batch.total == 5  # the batch the block yielded knows its jobs once the block ends

    records = backend.wait_for(token, lambda r: len(events_of(r, "callback")) >= 2, timeout=60)
    fired = callbacks(backend.settle(token, 1.0 if backend.runs_elsewhere else 0))
    assert set(fired) == {"finish", "success"}
    assert fired["finish"]["batch"] == batch.id
    assert (fired["finish"]["total"], fired["finish"]["succeeded"], fired["finish"]["discarded"]) == (5, 5, 0)
    assert all(r["batch_id"] == batch.id for r in events_of(records, "member"))
    found = unijob.Batch.find(batch.id)
    assert (found.is_finished, found.is_succeeded, found.is_discarded, found.pending) == (True, True, False, 0)
    assert found.properties == {"token": token}


def test_discard_fires_once_and_finish_without_success(backend: Harness, token: str) -> None:
    mode = final_failure_mode(backend)
    with unijob.batch(on_finish=jobs.batch_callback, on_success=jobs.batch_callback, on_discard=jobs.batch_callback, token=token):
        jobs.BatchMember.perform_later(token, 0, mode)
        jobs.BatchMember.perform_later(token, 1, "discard")
        jobs.BatchMember.perform_later(token, 2, "ok")

    backend.wait_for(token, lambda r: "finish" in {c["callback_event"] for c in events_of(r, "callback")}, timeout=60)
    fired = callbacks(backend.settle(token, 1.0 if backend.runs_elsewhere else 0))
    assert set(fired) == {"finish", "discard"}
    assert (fired["finish"]["succeeded"], fired["finish"]["discarded"], fired["finish"]["pending"]) == (1, 2, 0)


def test_an_empty_batch_fires_finish_and_success(backend: Harness, token: str) -> None:
    batch = unijob.batch(on_finish=jobs.batch_callback, on_success=jobs.batch_callback, token=token).enqueue([])

    backend.wait_for(token, lambda r: len(events_of(r, "callback")) >= 2)
    assert set(callbacks(backend.settle(token, 0.5 if backend.runs_elsewhere else 0))) == {"finish", "success"}
    assert unijob.Batch.find(batch.id).total == 0


def test_jobs_can_add_jobs_to_their_batch(backend: Harness, token: str) -> None:
    batch = unijob.batch(on_finish=jobs.batch_callback, token=token).enqueue([jobs.adds_more.new(token, 3)])

    backend.wait_for(token, lambda r: bool(events_of(r, "callback")), timeout=60)
    (finish,) = events_of(backend.settle(token, 1.0 if backend.runs_elsewhere else 0), "callback")
    assert (finish["total"], finish["succeeded"]) == (4, 4)
    assert sorted(r["n"] for r in events_of(jobs.records(token), "member")) == [-1, 1000, 1001, 1002]
    with pytest.raises(unijob.BatchFinishedError):
        unijob.Batch.find(batch.id).add([jobs.BatchMember.new(token, 9)])


def test_a_batch_inside_bulk_is_enqueued_with_the_block(backend: Harness, token: str) -> None:
    with unijob.bulk():
        with unijob.batch(on_finish=jobs.batch_callback, token=token) as batch:
            jobs.BatchMember.perform_later(token, 1)
            jobs.BatchMember.perform_later(token, 2)
        assert unijob.Batch.find(batch.id).total == 2  # counted, not yet enqueued, not finished
        assert not unijob.Batch.find(batch.id).is_finished

    backend.wait_for(token, lambda r: bool(events_of(r, "callback")), timeout=60)
    (finish,) = events_of(backend.settle(token, 0.5 if backend.runs_elsewhere else 0), "callback")
    assert (finish["total"], finish["succeeded"]) == (2, 2)


def test_a_callback_can_enqueue_a_new_batch(backend: Harness, token: str) -> None:
    unijob.batch(on_finish=jobs.starts_another_batch, token=token).enqueue([jobs.BatchMember.new(token, 1)])

    records = backend.wait_for(token, lambda r: bool(events_of(r, "callback")), timeout=60)
    (second,) = events_of(records, "callback")
    assert (second["total"], second["succeeded"]) == (1, 1)
    assert sorted(r["n"] for r in events_of(records, "member")) == [1, 500]


def test_properties_can_be_changed_and_saved(backend: Harness, token: str) -> None:
    with unijob.batch(token=token, rows=10) as batch:
        pass
    found = unijob.Batch.find(batch.id)
    found.properties["rows"] = 11
    found.save()
    assert unijob.Batch.find(batch.id).properties == {"token": token, "rows": 11}


def test_an_exception_in_the_block_enqueues_nothing_and_drops_the_batch(backend: Harness, token: str) -> None:
    with pytest.raises(RuntimeError), unijob.batch(on_finish=jobs.batch_callback, token=token) as batch:
        jobs.BatchMember.perform_later(token, 1)
        raise RuntimeError("abort")
    with pytest.raises(unijob.Error, match="does not exist"):
        unijob.Batch.find(batch.id)
    assert backend.settle(token, 0.5 if backend.runs_elsewhere else 0) == []


@contextlib.contextmanager
def second_worker(backend: Harness) -> Iterator[None]:
    """Start one more stock worker process beside the session's, for a real race between workers."""
    argv = backend.worker_argv()
    if argv is None:
        yield
        return
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{backend.name}-second-worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=backend.env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield
        assert process.poll() is None, f"the second {backend.name} worker died:\n{log_path.read_text(errors='replace')[-3000:]}"
    finally:
        stop_process(process)


def test_a_thousand_jobs_on_two_workers_fire_each_callback_exactly_once(backend: Harness, token: str) -> None:
    failing = final_failure_mode(backend)
    modes = (
        dict.fromkeys(range(0, 1000, 50), "flaky")
        | dict.fromkeys(range(7, 1000, 100), "discard")
        | dict.fromkeys(range(9, 1000, 250), failing)
    )
    with second_worker(backend):
        batch = unijob.batch(
            on_finish=jobs.batch_callback, on_success=jobs.batch_callback, on_discard=jobs.batch_callback, token=token
        ).enqueue(jobs.BatchMember.new(token, n, modes.get(n, "ok")) for n in range(1000))
        backend.wait_for(token, lambda r: "finish" in {c["callback_event"] for c in events_of(r, "callback")}, timeout=240)
        records = backend.settle(token, 1.0 if backend.runs_elsewhere else 0)

    fired = callbacks(records)
    discarded = sum(mode in ("discard", failing) for mode in modes.values())
    assert set(fired) == {"finish", "discard"}
    assert (fired["finish"]["total"], fired["finish"]["succeeded"], fired["finish"]["discarded"]) == (
        1000,
        1000 - discarded,
        discarded,
    )
    assert sorted(r["n"] for r in events_of(records, "member")) == sorted(
        n for n in range(1000) if modes.get(n, "ok") in ("ok", "flaky")
    )
    final = unijob.Batch.find(batch.id)
    assert (final.pending, final.is_finished, final.is_discarded) == (0, True, True)
