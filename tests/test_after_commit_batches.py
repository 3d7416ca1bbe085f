"""Batches whose jobs wait for a database transaction (``after_commit``), on every contract backend
with its stock worker: a batch a rollback leaves with no job never happened (no job, no callback,
no record); one that a rollback leaves with some jobs is a batch of those.

The transaction is a provider of this module's own (``unijob.transactions``), with savepoints, so
that the same tests run on every backend; tests/frameworks/test_sqlalchemy.py checks the same on
PostgreSQL through SQLAlchemy's session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

import unijob
from tests import jobs
from tests.harness import Harness, events_of
from unijob import transactions
from unijob.batches import BatchBuilder
from unijob.errors import TransactionRolledBackError

Waiting = tuple[Callable[[], object], Callable[[], object]]


class Transaction:
    """A transaction and its savepoints: what a job deferred waits for the level open then."""

    def __init__(self) -> None:
        self.levels: list[list[Waiting]] = []

    def defer(self, on_commit: Callable[[], object], on_rollback: Callable[[], object]) -> bool:
        if not self.levels:
            return False
        self.levels[-1].append((on_commit, on_rollback))
        return True

    def begin(self) -> None:
        """The transaction, or a savepoint inside it."""
        self.levels.append([])

    def commit(self) -> None:
        """Release the savepoint (its jobs wait on for the transaction), or commit the transaction."""
        waiting = self.levels.pop()
        if self.levels:
            self.levels[-1].extend(waiting)
        else:
            for on_commit, _ in waiting:
                on_commit()

    def rollback(self) -> None:
        for _, on_rollback in self.levels.pop():
            on_rollback()


@pytest.fixture
def database() -> Iterator[Transaction]:
    provider = Transaction()
    transactions.register(provider)
    yield provider
    transactions.unregister(provider)


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


def batch_of(token: str) -> BatchBuilder:
    callback = jobs.batch_callback
    return unijob.batch(on_finish=callback, on_success=callback, on_discard=callback, token=token)


def settled(backend: Harness, token: str) -> list[dict[str, object]]:
    return backend.settle(token, 1.5 if backend.runs_elsewhere else 0.1)


def assert_gone(batch: unijob.Batch) -> None:
    with pytest.raises(unijob.Error, match="does not exist"):
        unijob.Batch.find(batch.id)


def test_a_batch_whose_jobs_all_roll_back_sends_nothing_and_leaves_no_record(
    backend: Harness, database: Transaction, token: str
) -> None:
    database.begin()
    with batch_of(token) as batch:
        members = [jobs.BatchMember.set(after_commit=True).perform_later(token, n) for n in range(3)]
    assert unijob.Batch.find(batch.id).total == 3
    database.rollback()
    assert all(isinstance(member.enqueue_error, TransactionRolledBackError) for member in members)
    assert_gone(batch)
    assert settled(backend, token) == []  # no member ran, no callback fired


def test_the_enqueue_after_commit_setting_and_batch_enqueue_too(backend: Harness, database: Transaction, token: str) -> None:
    unijob.configure(**backend.configuration(), enqueue_after_commit=True)
    database.begin()
    batch = batch_of(token).enqueue([jobs.BatchMember.new(token, n) for n in range(2)])
    database.rollback()
    assert_gone(batch)
    assert settled(backend, token) == []


def test_a_batch_rolled_back_with_its_savepoint_is_gone_and_the_transaction_goes_on(
    backend: Harness, database: Transaction, token: str
) -> None:
    database.begin()
    with batch_of(token) as kept:
        jobs.BatchMember.set(after_commit=True).perform_later(token, 0)
    database.begin()
    with batch_of(token) as dropped:
        jobs.BatchMember.set(after_commit=True).perform_later(token, 1)
    database.rollback()
    database.commit()

    assert_gone(dropped)
    backend.wait_for(token, lambda r: len(events_of(r, "callback")) >= 2, timeout=60)
    records = settled(backend, token)
    assert [r["n"] for r in events_of(records, "member")] == [0]
    assert {(r["batch"], r["callback_event"], r["total"]) for r in events_of(records, "callback")} == {
        (kept.id, "finish", 1),
        (kept.id, "success", 1),
    }


def test_a_batch_that_loses_some_jobs_to_a_savepoint_is_a_batch_of_the_others(
    backend: Harness, database: Transaction, token: str
) -> None:
    database.begin()
    with batch_of(token) as batch:
        jobs.BatchMember.set(after_commit=True).perform_later(token, 0)
    database.begin()
    assert batch.add([jobs.BatchMember.set(after_commit=True).new(token, 1)]) == 0  # it waits
    database.rollback()
    assert (unijob.Batch.find(batch.id).total, unijob.Batch.find(batch.id).pending) == (1, 1)
    database.commit()

    backend.wait_for(token, lambda r: len(events_of(r, "callback")) >= 2, timeout=60)
    records = settled(backend, token)
    assert [r["n"] for r in events_of(records, "member")] == [0]
    fired = {r["callback_event"]: (r["total"], r["succeeded"]) for r in events_of(records, "callback")}
    assert fired == {"finish": (1, 1), "success": (1, 1)}


def test_a_batch_with_jobs_sent_at_once_is_a_batch_of_those_after_the_rollback(
    backend: Harness, database: Transaction, token: str
) -> None:
    database.begin()
    with batch_of(token) as batch:
        jobs.BatchMember.set(after_commit=False).perform_later(token, 0)  # sent when the block ends
        jobs.BatchMember.set(after_commit=True).perform_later(token, 1)
    database.rollback()

    backend.wait_for(token, lambda r: len(events_of(r, "callback")) >= 2, timeout=60)
    records = settled(backend, token)
    assert [r["n"] for r in events_of(records, "member")] == [0]
    fired = {r["callback_event"]: (r["batch"], r["total"]) for r in events_of(records, "callback")}
    assert fired == {"finish": (batch.id, 1), "success": (batch.id, 1)}


def test_a_batch_that_commits_runs_and_fires_as_ever(backend: Harness, database: Transaction, token: str) -> None:
    database.begin()
    with batch_of(token) as batch:
        for n in range(3):
            jobs.BatchMember.set(after_commit=True).perform_later(token, n)
    assert settled(backend, token) == []  # nothing before the commit
    database.commit()

    backend.wait_for(token, lambda r: len(events_of(r, "callback")) >= 2, timeout=60)
    records = settled(backend, token)
    assert sorted(r["n"] for r in events_of(records, "member")) == [0, 1, 2]
    fired = {r["callback_event"]: (r["batch"], r["total"], r["succeeded"]) for r in events_of(records, "callback")}
    assert fired == {"finish": (batch.id, 3, 3), "success": (batch.id, 3, 3)}
