"""unijob.contrib.sqlalchemy: jobs that wait for a SQLAlchemy session's commit, on PostgreSQL.

What reached the backend is read on the broker itself, a redis-server of this module's own:
RQ's queue lists, and the lists Celery's Redis transport keeps per queue and priority. The tests
of what a commit sends and a rollback does not (``on_rabbitmq_too``) also run on Celery and on
Dramatiq over RabbitMQ, each on a vhost of this module's own, whose queues are read there (with
the ``store`` option on the module's redis-server, for the batch records). No worker runs here;
test_flask.py runs such jobs on the stock workers, after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, String, create_engine, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, scoped_session, sessionmaker

import unijob
from tests.frameworks.web_support import RabbitmqQueues, database, private_redis, rabbitmq_vhosts, sqlalchemy_url
from tests.harness import PrivateRedis, free_port
from unijob.contrib.sqlalchemy import bound_session, transaction
from unijob.errors import ConfigurationError, EnqueueError, TransactionRolledBackError


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(100))


@unijob.job
def send_receipt(order_id: int) -> None:
    """Only enqueued here, never run."""


@unijob.job(queue="reports")
def batch_report(batch: unijob.Batch, event: str) -> None:
    """A batch callback, only enqueued here."""


class SendsAFollowUp(unijob.Job):
    """Its enqueue callback enqueues another waiting job: that one is sent at once."""

    follow_ups: list[unijob.Job] = []

    def perform(self) -> None:
        pass

    def after_enqueue(self) -> None:
        SendsAFollowUp.follow_ups.append(send_receipt.set(after_commit=True).perform_later(99))


REDIS_DB = {"rq": 1, "celery": 2, "celery-rabbitmq": 3, "dramatiq-rabbitmq": 4}  # a broker's, or a store's
REDIS_BROKERS = ["rq", "celery"]
RABBITMQ_BROKERS = ["celery-rabbitmq", "dramatiq-rabbitmq"]
QUEUES = ("default", "reports")
on_rabbitmq_too = pytest.mark.parametrize("broker", [*REDIS_BROKERS, *RABBITMQ_BROKERS], indirect=True)


class Broker:
    """What one backend holds: the ids of the jobs sent to it. A Redis broker is a database of the
    module's redis-server; a RabbitMQ one is a vhost, with its ``store`` in such a database.
    ``client`` is the database that holds the batch records: the broker's, or the store's."""

    def __init__(self, name: str, server: PrivateRedis, vhosts: dict[str, str]) -> None:
        self.name = name
        self.adapter = name.split("-")[0]
        redis_url = f"redis://127.0.0.1:{server.port}/{REDIS_DB[name]}"
        self.client = redis.Redis(port=server.port, db=REDIS_DB[name])
        self.queues: RabbitmqQueues | None = None
        self.options: dict[str, Any] = {}
        if name in vhosts:
            self.url, self.options["store"] = vhosts[name], redis_url
            self.queues = RabbitmqQueues(self.url, self.adapter)
            for queue in QUEUES:  # what an earlier test left there is not this test's
                self.sent(queue)
            self.queues.taken.clear()
        else:
            self.url = redis_url

    def settings(self) -> dict[str, Any]:
        """The keywords of unijob.configure for this backend."""
        return {"adapter": self.adapter, "url": self.url, **self.options}

    def sent(self, queue: str = "default") -> list[str]:
        if self.queues is not None:
            if self.adapter == "dramatiq":  # and Dramatiq's delay queue
                return self.queues.ids(queue) + self.queues.ids(f"{queue}.DQ")
            return self.queues.ids(queue)
        if self.adapter == "rq":
            return [raw.decode() for raw in self.client.lrange(f"rq:queue:{queue}", 0, -1)]
        ids = []
        for key in self.client.keys(f"{queue}*"):  # Celery on Redis: one list per priority step
            if self.client.type(key) == b"list":
                ids += [json.loads(raw)["headers"]["id"] for raw in self.client.lrange(key, 0, -1)]
        return ids

    def nothing_sent(self) -> bool:
        """No message on any queue."""
        return not self.sent("default") and not self.sent("reports")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with database("sqlalchemy") as url:
        engine = create_engine(sqlalchemy_url(url))
        Base.metadata.create_all(engine)
        yield engine
        engine.dispose()


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateRedis]:
    started = private_redis()
    yield started
    started.kill()


@pytest.fixture(scope="module")
def vhosts() -> Iterator[dict[str, str]]:
    with rabbitmq_vhosts("sqlalchemy_celery", "sqlalchemy_dramatiq") as urls:
        yield dict(zip(RABBITMQ_BROKERS, urls, strict=True))


@pytest.fixture(params=REDIS_BROKERS)
def broker(request: pytest.FixtureRequest, server: PrivateRedis) -> Iterator[Broker]:
    """A backend of :data:`REDIS_BROKERS`; a test marked ``on_rabbitmq_too`` gets the others too."""
    vhosts = request.getfixturevalue("vhosts") if request.param in RABBITMQ_BROKERS else {}
    found = Broker(request.param, server, vhosts)
    found.client.flushdb()
    try:
        with unijob.override(**found.settings()):
            yield found
    finally:
        found.client.flushdb()
        if found.queues is not None:
            found.queues.close()


def orders(engine: Engine, item: str) -> int:
    with Session(engine) as session:
        return len(session.scalars(select(Order).where(Order.item == item)).all())


def ids(jobs: list[unijob.Job] | list[Any]) -> list[str]:
    return sorted(job.job_id for job in jobs)


@on_rabbitmq_too
def test_a_job_waits_for_the_commit(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session, transaction(session):
        order = Order(item="book")
        session.add(order)
        session.flush()
        job = send_receipt.set(after_commit=True).perform_later(order.id)
        assert broker.sent() == [] and not job.successfully_enqueued  # not before the commit
        session.commit()
        assert broker.sent() == [job.job_id] and job.successfully_enqueued


@on_rabbitmq_too
def test_a_rollback_sends_nothing(broker: Broker, engine: Engine) -> None:
    item = f"lamp {uuid.uuid4().hex[:6]}"
    with Session(engine) as session, transaction(session):
        order = Order(item=item)
        session.add(order)
        session.flush()
        job = send_receipt.set(after_commit=True).perform_later(order.id)
        session.rollback()
    assert broker.nothing_sent() and orders(engine, item) == 0
    assert isinstance(job.enqueue_error, TransactionRolledBackError) and not job.successfully_enqueued


@on_rabbitmq_too
def test_the_enqueue_after_commit_setting_makes_every_job_wait(broker: Broker, engine: Engine) -> None:
    unijob.configure(**broker.settings(), enqueue_after_commit=True)
    with Session(engine) as session, transaction(session):
        session.add(Order(item="pen"))
        waiting = send_receipt.perform_later(1)
        urgent = send_receipt.set(after_commit=False).perform_later(2)  # a job may opt out
        assert broker.sent() == [urgent.job_id]
        session.commit()
    assert sorted(broker.sent()) == ids([waiting, urgent])


@on_rabbitmq_too
@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_perform_all_later_waits_and_sends_in_bulk(broker: Broker, engine: Engine, outcome: str) -> None:
    with Session(engine) as session, transaction(session):
        session.add(Order(item="chairs"))
        jobs = [send_receipt.set(after_commit=True).new(n) for n in range(5)]
        assert unijob.perform_all_later(jobs) == 0  # none enqueued yet
        assert broker.sent() == []
        session.commit() if outcome == "commit" else session.rollback()
    if outcome == "commit":
        assert sorted(broker.sent()) == ids(jobs) and all(job.successfully_enqueued for job in jobs)
    else:
        assert broker.nothing_sent() and all(isinstance(job.enqueue_error, TransactionRolledBackError) for job in jobs)


@on_rabbitmq_too
@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_bulk_block_waits_for_the_commit(broker: Broker, engine: Engine, outcome: str) -> None:
    with Session(engine) as session, transaction(session):
        session.add(Order(item="desks"))
        with unijob.bulk() as buffered:
            for n in range(3):
                send_receipt.set(after_commit=True).perform_later(n)
        assert broker.sent() == []
        session.commit() if outcome == "commit" else session.rollback()
    assert sorted(broker.sent()) == (ids(buffered) if outcome == "commit" else [])


@on_rabbitmq_too
def test_a_batch_waits_for_the_commit(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session, transaction(session):
        session.add(Order(item="boxes"))
        with unijob.batch(on_finish=batch_report) as batch:
            for n in range(3):
                send_receipt.set(after_commit=True).perform_later(n)
        assert broker.nothing_sent()
        session.commit()
    assert len(broker.sent()) == 3 and broker.sent("reports") == []  # the callback waits for the jobs
    found = unijob.Batch.find(batch.id)
    assert (found.total, found.pending, found.is_finished) == (3, 3, False)


@on_rabbitmq_too
def test_a_batch_that_rolls_back_sends_nothing_and_leaves_no_record(broker: Broker, engine: Engine) -> None:
    """As docs/frameworks/sqlalchemy.md says: a batch all of whose jobs waited for a transaction that
    rolled back never happened, as in GoodJob: no job, no on_finish or on_success callback, no record."""
    with Session(engine) as session, transaction(session):
        session.add(Order(item="crates"))
        with unijob.batch(on_finish=batch_report, on_success=batch_report) as batch:
            for n in range(3):
                send_receipt.set(after_commit=True).perform_later(n)
        assert broker.client.exists(f"unijob:batch:{batch.id}")  # the record is in the broker's Redis...
        session.rollback()
    assert broker.nothing_sent()
    assert broker.client.keys("unijob:batch:*") == []  # ...and the rollback deleted it
    with pytest.raises(unijob.Error, match="does not exist"):
        unijob.Batch.find(batch.id)


def test_a_batch_rolled_back_with_its_savepoint_is_gone_and_the_transaction_goes_on(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session, transaction(session):
        session.add(Order(item="outer crates"))
        kept = send_receipt.set(after_commit=True).perform_later(1)
        with session.begin_nested() as savepoint:
            with unijob.batch(on_finish=batch_report) as batch:
                send_receipt.set(after_commit=True).perform_later(2)
            savepoint.rollback()
        session.commit()
    assert broker.sent() == [kept.job_id] and broker.sent("reports") == []
    with pytest.raises(unijob.Error, match="does not exist"):
        unijob.Batch.find(batch.id)


def test_a_batch_that_loses_some_jobs_to_a_savepoint_is_a_batch_of_the_others(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session, transaction(session):
        session.add(Order(item="pallets"))
        with unijob.batch(on_finish=batch_report, on_success=batch_report) as batch:
            kept = send_receipt.set(after_commit=True).perform_later(1)
        with session.begin_nested() as savepoint:
            (dropped,) = added = [send_receipt.set(after_commit=True).new(2)]
            batch.add(added)
            savepoint.rollback()
        session.commit()
    assert broker.sent() == [kept.job_id] and broker.sent("reports") == []  # the callbacks wait for the kept job
    assert isinstance(dropped.enqueue_error, TransactionRolledBackError)
    found = unijob.Batch.find(batch.id)
    assert (found.total, found.pending, found.is_finished) == (1, 1, False)


@on_rabbitmq_too
def test_a_savepoint_that_rolls_back_drops_only_its_own_jobs(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session, transaction(session):
        session.add(Order(item="outer"))
        kept = send_receipt.set(after_commit=True).perform_later(1)
        with session.begin_nested() as savepoint:
            dropped = send_receipt.set(after_commit=True).perform_later(2)
            savepoint.rollback()
        with session.begin_nested():
            released = send_receipt.set(after_commit=True).perform_later(3)
        assert broker.sent() == []  # a released savepoint is not the commit
        session.commit()
    assert sorted(broker.sent()) == ids([kept, released])
    assert isinstance(dropped.enqueue_error, TransactionRolledBackError)


def test_a_begin_block_inside_or_a_commit_after_the_block_also_sends(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session, transaction(session):
        with session.begin():
            session.add(Order(item="begun"))
            inside = send_receipt.set(after_commit=True).perform_later(1)
            assert broker.sent() == []
        assert broker.sent() == [inside.job_id]

    with Session(engine) as session:
        with transaction(session):
            session.add(Order(item="committed later"))
            after = send_receipt.set(after_commit=True).perform_later(2)
        assert broker.sent() == [inside.job_id]  # the transaction is still in progress
        session.commit()
    assert sorted(broker.sent()) == ids([inside, after])


def test_a_job_enqueued_while_the_commit_sends_the_others_goes_at_once(broker: Broker, engine: Engine) -> None:
    SendsAFollowUp.follow_ups = []
    with Session(engine) as session, transaction(session):
        session.add(Order(item="follow-up"))
        first = SendsAFollowUp.set(after_commit=True).perform_later()
        session.commit()
    (follow_up,) = SendsAFollowUp.follow_ups
    assert follow_up.successfully_enqueued and sorted(broker.sent()) == ids([first, follow_up])


@pytest.mark.parametrize("write", ["add", "flush", "update statement", "pending change"])
def test_a_session_closed_without_committing_its_writes_drops_its_jobs(broker: Broker, engine: Engine, write: str) -> None:
    with Session(engine) as session:
        order = Order(item="kept")
        session.add(order)
        session.commit()
        with transaction(session):
            if write == "add":
                session.add(Order(item="never"))
            elif write == "flush":
                order.item = "changed"
                session.flush()
            elif write == "update statement":
                session.execute(update(Order).where(Order.id == order.id).values(item="updated"))
            job = send_receipt.set(after_commit=True).perform_later(order.id)
            if write == "pending change":
                assert order.item == "kept"
                order.item = "pending"
                job = send_receipt.set(after_commit=True).perform_later(order.id)
    assert broker.nothing_sent() and isinstance(job.enqueue_error, TransactionRolledBackError)


def test_a_job_enqueued_after_the_commit_is_sent_when_the_reading_transaction_ends(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session, transaction(session):
        order = Order(item="committed first")
        session.add(order)
        session.commit()
        job = send_receipt.set(after_commit=True).perform_later(order.id)  # order.id: a new transaction, reading
        assert session.in_transaction() and broker.sent() == []
    assert broker.sent() == [job.job_id]


def test_an_explicit_rollback_drops_even_a_reading_transactions_jobs(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session, transaction(session):
        assert session.scalars(select(Order)).first() is not None
        job = send_receipt.set(after_commit=True).perform_later(1)
        session.rollback()
    assert broker.nothing_sent() and isinstance(job.enqueue_error, TransactionRolledBackError)


def test_a_block_that_raises_drops_its_own_jobs(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session, transaction(session):
        session.add(Order(item="outer block"))
        kept = send_receipt.set(after_commit=True).perform_later(1)
        with contextlib.suppress(ValueError), transaction(session):
            dropped = send_receipt.set(after_commit=True).perform_later(2)
            raise ValueError("this part failed")
        session.commit()
    assert broker.sent() == [kept.job_id] and isinstance(dropped.enqueue_error, TransactionRolledBackError)


def test_with_no_transaction_at_the_end_of_the_block_the_jobs_go_then(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session:
        with transaction(session):
            job = send_receipt.set(after_commit=True).perform_later(1)
            assert broker.sent() == []
        assert broker.sent() == [job.job_id]  # the session did nothing: nothing to wait for

        with pytest.raises(ValueError), transaction(session):
            failed = send_receipt.set(after_commit=True).perform_later(2)
            raise ValueError("the block failed")
    assert broker.sent() == [job.job_id] and isinstance(failed.enqueue_error, TransactionRolledBackError)


def test_outside_a_block_nothing_waits(broker: Broker, engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Order(item="unbound"))
        job = send_receipt.set(after_commit=True).perform_later(1)
        assert broker.sent() == [job.job_id] and bound_session() is None
        session.rollback()


@on_rabbitmq_too
def test_threads_wait_each_for_their_own_session(broker: Broker, engine: Engine) -> None:
    both_enqueued = threading.Barrier(2, timeout=30)
    jobs: dict[str, unijob.Job] = {}
    errors: list[BaseException] = []

    def work(name: str, commit: bool) -> None:
        try:
            with Session(engine) as session, transaction(session):
                session.add(Order(item=name))
                jobs[name] = send_receipt.set(after_commit=True).perform_later(len(name))
                both_enqueued.wait()
                session.commit() if commit else session.rollback()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(name, commit)) for name, commit in (("commits", True), ("rolls", False))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and broker.sent() == [jobs["commits"].job_id]


def test_asyncio_tasks_wait_each_for_their_own_session(broker: Broker, engine: Engine) -> None:
    async def scenario() -> dict[str, unijob.Job]:
        both_enqueued = asyncio.Barrier(2)
        jobs: dict[str, unijob.Job] = {}

        async def work(name: str, commit: bool) -> None:
            with Session(engine) as session, transaction(session):
                session.add(Order(item=name))
                jobs[name] = await send_receipt.set(after_commit=True).aperform_later(len(name))  # in a thread
                await both_enqueued.wait()
                await asyncio.to_thread(session.commit if commit else session.rollback)

        async with asyncio.timeout(60):
            await asyncio.gather(work("commits", True), work("rolls", False))
        return jobs

    jobs = asyncio.run(scenario())
    assert broker.sent() == [jobs["commits"].job_id]
    assert isinstance(jobs["rolls"].enqueue_error, TransactionRolledBackError)


def test_aperform_all_later_waits_for_the_commit(broker: Broker, engine: Engine) -> None:
    async def scenario() -> list[unijob.Job]:
        with Session(engine) as session, transaction(session):
            session.add(Order(item="async bulk"))
            jobs = [send_receipt.set(after_commit=True).new(n) for n in range(3)]
            assert await unijob.aperform_all_later(jobs) == 0
            assert broker.sent() == []
            session.commit()
        return jobs

    jobs = asyncio.run(scenario())
    assert sorted(broker.sent()) == ids(jobs)


def test_a_job_that_cannot_be_sent_after_the_commit_records_it_and_the_commit_stands(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    item = f"offline {uuid.uuid4().hex[:6]}"
    unijob.configure(adapter="rq", url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with caplog.at_level(logging.ERROR, logger="unijob"), Session(engine) as session, transaction(session):
        session.add(Order(item=item))
        first = send_receipt.set(after_commit=True).perform_later(1)
        second = send_receipt.set(after_commit=True).perform_later(2)
        session.commit()  # does not raise: the data is committed
    assert orders(engine, item) == 1
    assert isinstance(first.enqueue_error, EnqueueError) and isinstance(second.enqueue_error, EnqueueError)
    assert "Failed enqueuing" in caplog.text


def test_a_scoped_session_binds_the_session_of_its_scope(broker: Broker, engine: Engine) -> None:
    scoped = scoped_session(sessionmaker(engine))  # what Flask-SQLAlchemy's db.session is
    try:
        with transaction(scoped):
            assert bound_session() is scoped()
            scoped.add(Order(item="scoped"))
            job = send_receipt.set(after_commit=True).perform_later(1)
            assert broker.sent() == []
            scoped.commit()
        assert broker.sent() == [job.job_id]
    finally:
        scoped.remove()


def fastapi_app(engine: Engine, dependency: Any) -> Any:
    from fastapi import Depends, FastAPI

    app = FastAPI()
    the_session = Depends(dependency)

    @app.post("/orders")
    def create_order(session: Session = the_session) -> dict[str, str]:  # run in a thread
        order = Order(item="from fastapi")
        session.add(order)
        session.flush()
        job = send_receipt.set(after_commit=True).perform_later(order.id)
        session.commit()
        return {"job_id": job.job_id, "bound": str(bound_session() is session)}

    return app


def test_an_async_fastapi_dependency_binds_the_session_for_its_endpoint(broker: Broker, engine: Engine) -> None:
    from fastapi.testclient import TestClient

    async def session_dependency() -> AsyncIterator[Session]:
        with Session(engine) as session, transaction(session):
            yield session

    with TestClient(fastapi_app(engine, session_dependency)) as client:
        response = client.post("/orders").json()
    assert response["bound"] == "True" and broker.sent() == [response["job_id"]]


def test_a_sync_fastapi_dependency_cannot_bind_it_and_says_so(broker: Broker, engine: Engine) -> None:
    from fastapi.testclient import TestClient

    def session_dependency() -> Iterator[Session]:
        with Session(engine) as session, transaction(session):
            yield session

    with TestClient(fastapi_app(engine, session_dependency)) as client, pytest.raises(ConfigurationError, match="async def"):
        client.post("/orders")


def test_transaction_refuses_what_is_not_a_session() -> None:
    with pytest.raises(TypeError, match="SQLAlchemy Session"), transaction(object()):
        pass
