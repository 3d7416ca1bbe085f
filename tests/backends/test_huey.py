"""Huey-specific tests: the message on the wire, priority, bulk transactions, refusals, the stock
consumer on SQLite (shared with the contract suite) and on Redis (db 4), ``unijob worker --burst``."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import unijob
from tests import jobs
from tests.contract import test_batches, test_contract
from tests.harness import ROOT, Harness, PrivateRedis, events_of, free_port, python_bin, require_service
from tests.harnesses.huey_sqlite import CONSUMER_ARGS, HueySqliteHarness
from unijob import config, registry, serializers
from unijob.adapters.huey import HueyAdapter
from unijob.adapters.huey_worker import command, consumer_huey, pending
from unijob.errors import ConfigurationError, EnqueueError
from unijob.worker import queues_of

REDIS_URL = "redis://127.0.0.1:6379/4"


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    return str(tmp_path / "jobs.sqlite3")


def rows(path: str, table: str = "task") -> list[tuple[Any, ...]]:
    column = "priority" if table == "task" else "timestamp"
    with sqlite3.connect(path) as conn:
        return conn.execute(f"select queue, data, {column} from {table} order by id").fetchall()


# --- configuration ---------------------------------------------------------------------------------


def test_sqlite_is_the_default_and_urls_select_the_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert HueyAdapter().path == str(tmp_path / "unijob.sqlite3")
    assert HueyAdapter(options={"path": "q.db"}).path == str(tmp_path / "q.db")
    assert HueyAdapter(url="sqlite:///rel/q.db").path == str(tmp_path / "rel/q.db")
    assert HueyAdapter(url="sqlite:////abs/q.db").path == "/abs/q.db"
    assert HueyAdapter(url="sqlite:////abs/q.db").safe_url == "sqlite:////abs/q.db"
    on_redis = HueyAdapter(url="redis://:secret@127.0.0.1:6379/4")
    assert on_redis.path is None and "Redis" in on_redis.capabilities.notes
    assert on_redis.capabilities.priority and on_redis.capabilities.native_bulk
    with pytest.raises(ConfigurationError, match="takes a redis://, rediss://, sqlite://, unix:// URL"):
        HueyAdapter(url="amqp://localhost")
    with pytest.raises(ConfigurationError, match="unknown option"):
        HueyAdapter(options={"paht": "x.db"})


def test_worker_argv_is_the_stock_consumer_serving_every_queue() -> None:
    adapter = HueyAdapter()
    every_queue = queues_of(registry.registered())
    argv = command(adapter, every_queue, None)
    assert argv[-9:] == CONSUMER_ARGS  # what the docs and the contract harness run
    assert Path(argv[0]).name == "huey_consumer"
    assert command(adapter, every_queue, 1)[argv.index("-w") + 1] == "1"
    with pytest.raises(ConfigurationError, match="every queue"):
        command(adapter, ["mail"], None)
    assert command(HueyAdapter(alias="reports"), every_queue, None)[:2] == ["env", "UNIJOB_HUEY_BACKEND=reports"]


# --- the message on the wire -----------------------------------------------------------------------


def test_a_job_is_an_ordinary_huey_message_in_json(sqlite_file: str, token: str) -> None:
    with config.override(adapter="huey", path=sqlite_file):
        job = jobs.echo.set(priority=7).perform_later(token, 1, "two", when=dt.date(2026, 11, 23))
        adapter = config.get_adapter()
        assert isinstance(adapter, HueyAdapter)

        ((queue, raw, priority),) = rows(sqlite_file)
        message = json.loads(raw)  # JSON, not pickle
        assert queue == "unijob" and priority == 7
        assert message["name"] == "tests.jobs.echo"
        assert message["id"] == job.job_id == job.provider_job_id
        assert message["args"] == [token, 1, "two"]  # plain arguments stay plain
        assert message["kwargs"] == {"when": serializers.dump(dt.date(2026, 11, 23))}
        assert message["priority"] == 7 and "eta" not in message
        assert "retries" not in message  # Huey's default for the task class: 0, retries belong to unijob
        # unijob's metadata, without what the message already says (job name, id) or empty values.
        meta = message["unijob"]
        assert meta.keys() == {"v", "queue", "priority", "enqueued_at"}
        assert meta["queue"] == "mail" and meta["priority"] == 7
        assert job.enqueued_at is not None and dt.datetime.fromisoformat(meta["enqueued_at"]) == job.enqueued_at

        # Huey itself reads it back as a task of the job's name.
        instance = consumer_huey(adapter, registry.registered())
        (task,) = instance.pending()
        assert (task.name, task.id, task.priority, task.retries) == ("tests.jobs.echo", job.job_id, 7, 0)
        assert task.args == (token, 1, "two")


def test_a_delayed_job_waits_in_hueys_schedule_with_its_eta(sqlite_file: str, token: str) -> None:
    with config.override(adapter="huey", path=sqlite_file):
        job = jobs.echo.set(wait=dt.timedelta(minutes=10)).perform_later(token)
        adapter = config.get_adapter()
        assert isinstance(adapter, HueyAdapter)
        assert rows(sqlite_file) == []
        ((_, raw, _),) = rows(sqlite_file, "schedule")
        assert job.scheduled_at is not None
        eta = job.scheduled_at.astimezone(dt.timezone.utc).replace(tzinfo=None)
        assert dt.datetime.fromisoformat(json.loads(raw)["eta"]) == eta
        (task,) = consumer_huey(adapter, registry.registered()).scheduled()
        assert task.id == job.job_id and task.eta == eta
        assert pending(adapter, ["mail"], within=5) == 0
        assert pending(adapter, ["mail"], within=700) == 1


def test_a_retry_gets_its_own_native_id_and_the_worker_rebuilds_the_envelope(
    sqlite_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = HueyAdapter(options={"path": sqlite_file})
    envelope = unijob.Envelope(
        job="tests.jobs.ping",
        job_id="abc",
        args=["x"],
        kwargs={"n": 1},
        queue="default",
        priority=-5,
        enqueued_at=dt.datetime(2026, 11, 23, 18, tzinfo=dt.timezone.utc),
        executions=2,
        exception_executions={"TimeoutError": 2},
        batch_id="b1",
    )
    assert adapter.enqueue(envelope) == adapter.native_id(envelope) == "abc-2"
    ((_, raw, _),) = rows(sqlite_file)
    message = json.loads(raw)
    assert message["id"] == "abc-2" and message["unijob"]["id"] == "abc" and message["unijob"]["executions"] == 2

    seen: list[unijob.Envelope] = []
    monkeypatch.setattr("unijob.worker.execute", lambda envelope, adapter: seen.append(envelope))
    task = consumer_huey(adapter, registry.registered()).dequeue()
    task.execute()
    assert seen == [envelope]  # everything survives the short wire format
    adapter.close()


@pytest.mark.parametrize("storage", ["sqlite", "redis"])
def test_priority_maps_one_to_one_and_larger_runs_first(storage: str, sqlite_file: str, token: str) -> None:
    if storage == "redis":
        require_service("redis")
        # A Huey queue of its own, so the Redis consumer of this session does not take these.
        settings: dict[str, Any] = {"url": REDIS_URL, "name": f"priority{token}"}
    else:
        settings = {"path": sqlite_file}
    with config.override(adapter="huey", **settings):
        adapter = config.get_adapter()
        assert isinstance(adapter, HueyAdapter)
        instance = consumer_huey(adapter, registry.registered())
        try:
            for priority in (None, -100, 100, 0, 50):
                jobs.echo.set(priority=priority).perform_later(token, priority)
            order = [instance.dequeue().args[1] for _ in range(5)]
        finally:
            instance.flush()
    assert order == [100, 50, None, 0, -100]  # equal priorities keep their order


# --- refusals ----------------------------------------------------------------------------------------


def test_forged_messages_are_refused_by_the_consumer(harness_pool: Any, token: str, tmp_path: Path) -> None:
    harness = harness_pool.get("huey-sqlite")
    markers = [tmp_path / "system-ran", tmp_path / "unpickled"]

    class Exploit:
        def __init__(self, target: Path) -> None:
            self.target = target

        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {self.target}",))

    forged = [
        # A task name that is not a registered job.
        json.dumps({"id": str(uuid.uuid4()), "name": "os.system", "args": [f"touch {markers[0]}"], "kwargs": {}}).encode(),
        # Metadata cannot redirect a registered task to another function: the task name decides.
        json.dumps(
            {
                "id": str(uuid.uuid4()),
                "name": "tests.jobs.ping",
                "args": [token],
                "kwargs": {},
                "unijob": {"v": 1, "job": "tests.unregistered.not_a_job", "id": "x", "queue": "default"},
            }
        ).encode(),
        # Huey's default format: a pickle that would run a command when loaded.
        pickle.dumps(Exploit(markers[1])),
    ]
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Exploit(probe)))
    assert probe.exists()  # the payload is live: unpickling it runs the command

    with sqlite3.connect(harness.path, timeout=10) as conn:
        conn.executemany("insert into task (queue, data, priority) values ('unijob', ?, 100)", [(data,) for data in forged])
    with harness.configured():
        jobs.echo.set(priority=-100).perform_later(token, "behind")  # runs after the forged ones were consumed

    harness.wait_for(token, lambda r: bool(events_of(r, "echo")) and bool(events_of(r, "ping")))
    assert sorted(r["event"] for r in harness.settle(token, 0.5)) == ["echo", "ping"]
    assert not any(marker.exists() for marker in markers)
    assert not [data for _, data, _ in rows(str(harness.path)) if data in forged]  # consumed, not skipped
    log = harness.log_path.read_text(errors="replace")
    assert "refusing job 'os.system'" in log


def test_an_unreachable_sqlite_file_raises_enqueue_error(tmp_path: Path, token: str) -> None:
    path = tmp_path / "missing-dir" / "jobs.sqlite3"
    with config.override(adapter="huey", path=str(path)):
        started = time.monotonic()
        with pytest.raises(EnqueueError, match=r"Huey at sqlite:///.*missing-dir.*does not exist") as raised:
            jobs.echo.perform_later(token)
        assert time.monotonic() - started < 5
        (job,) = [jobs.echo.new(token)]
        assert unijob.perform_all_later([job]) == 0
        assert job.enqueue_error is not None and not job.successfully_enqueued
    assert str(path.parent) in str(raised.value)


def test_an_unreachable_redis_raises_enqueue_error_without_the_password(token: str) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/4"
    with config.override(adapter="huey", url=url):
        started = time.monotonic()
        with pytest.raises(EnqueueError) as raised:
            jobs.echo.perform_later(token)
        assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "Huey" in message and ":***@127.0.0.1" in message and "hunter2" not in message


# --- bulk ---------------------------------------------------------------------------------------------


def test_bulk_is_one_transaction_and_a_failed_one_reports_its_whole_chunk(sqlite_file: str, token: str) -> None:
    batch = [jobs.echo.new(token, i) for i in range(25)]
    blocker = sqlite3.connect(sqlite_file, isolation_level=None)

    def lock_after_first_chunk() -> Iterator[unijob.Job]:
        for i, job in enumerate(batch):
            if i == 10:  # the first chunk is committed; another process now holds the write lock
                blocker.execute("begin exclusive")
            yield job

    with config.override(adapter="huey", path=sqlite_file, timeout=0.2):
        try:
            assert unijob.perform_all_later(lock_after_first_chunk(), chunk_size=10) == 10
        finally:
            blocker.execute("rollback")
            blocker.close()
    assert all(job.successfully_enqueued and job.provider_job_id == job.job_id for job in batch[:10])
    for job in batch[10:]:
        assert not job.successfully_enqueued and job.provider_job_id is None
        assert isinstance(job.enqueue_error, EnqueueError) and "database is locked" in str(job.enqueue_error)
    assert [json.loads(data)["id"] for _, data, _ in rows(sqlite_file)] == [job.job_id for job in batch[:10]]


def test_bulk_on_redis_reports_each_job_when_the_server_dies_midway(private_redis: PrivateRedis, token: str) -> None:
    batch = [jobs.echo.new(token, i) for i in range(30)]

    def kill_after_first_chunk() -> Iterator[unijob.Job]:
        for i, job in enumerate(batch):
            if i == 10:
                assert private_redis.client.zcard("huey.redis.unijob") == 10  # the first chunk is in Redis
                private_redis.kill()
            yield job

    with config.override(adapter="huey", url=private_redis.url, timeout=1):
        started = time.monotonic()
        assert unijob.perform_all_later(kill_after_first_chunk(), chunk_size=10) == 10
        assert time.monotonic() - started < 10
    assert all(job.successfully_enqueued for job in batch[:10])
    assert all(not job.successfully_enqueued and isinstance(job.enqueue_error, EnqueueError) for job in batch[10:])
    assert f"127.0.0.1:{private_redis.port}" in str(batch[-1].enqueue_error)


# --- with the stock consumer -----------------------------------------------------------------------


def test_plain_huey_code_can_send_a_unijob_job(harness_pool: Any, token: str) -> None:
    harness = harness_pool.get("huey-sqlite")
    with harness.configured():
        adapter = config.get_adapter()
        assert isinstance(adapter, HueyAdapter)
        instance = consumer_huey(adapter, registry.registered())
        task = instance.task_class("tests.jobs.echo")((token, "native"), {"n": 1})
        instance.enqueue(task)  # Huey's own API: no unijob metadata on this message

    (run,) = harness.wait_for(token, lambda r: len(r) >= 1)
    assert run["job_id"] == task.id and run["queue"] == "mail" and run["executions"] == 1
    assert serializers.load(run["args"]) == ["native"] and serializers.load(run["kwargs"]) == {"n": 1}


PRODUCER = """
import sys, unijob
from tests import jobs
token, start = sys.argv[1], int(sys.argv[2])
for i in range(start, start + 60):
    jobs.echo.perform_later(token, i)
assert unijob.perform_all_later([jobs.echo.new(token, i) for i in range(start + 60, start + 120)], chunk_size=20) == 60
"""


def test_producer_processes_and_the_consumer_share_the_sqlite_file(harness_pool: Any, token: str) -> None:
    harness = harness_pool.get("huey-sqlite")
    producers = [
        subprocess.Popen([sys.executable, "-c", PRODUCER, token, str(start)], env=harness.env(), cwd=ROOT, stderr=subprocess.PIPE)
        for start in (0, 1000)
    ]
    for producer in producers:
        _, stderr = producer.communicate(timeout=60)
        assert producer.returncode == 0, stderr.decode()
    harness.wait_for(token, lambda r: len(r) >= 240, timeout=60)
    seen = sorted(serializers.load(r["args"])[0] for r in harness.settle(token, 0.5))
    assert seen == [*range(120), *range(1000, 1120)]  # each job ran exactly once


def test_unijob_worker_burst_drains_the_queue_and_exits(sqlite_file: str, token: str) -> None:
    with config.override(adapter="huey", path=sqlite_file):
        for priority in (None, -10, 90, 10):
            jobs.echo.set(priority=priority).perform_later(token, priority)
        jobs.echo.set(wait=1.5).perform_later(token, "delayed")  # due within the burst horizon
        adapter = config.get_adapter()
        assert pending(adapter, ["default", "mail"], within=5) == 5

        harness = HueySqliteHarness()
        harness.options = {"path": sqlite_file}
        env = harness.env()
        completed = subprocess.run(
            [python_bin("unijob"), "worker", "--burst", "--concurrency", "1"], env=env, cwd=ROOT, capture_output=True, timeout=90
        )
        assert completed.returncode == 0, completed.stderr.decode()[-3000:]
        assert pending(adapter, ["default", "mail"], within=5) == 0
    order = [serializers.load(r["args"])[0] for r in jobs.records(token)]
    assert order == [90, 10, None, -10, "delayed"]


@pytest.mark.parametrize("storage", ["sqlite", "redis"])
def test_the_stock_consumer_runs_a_bulk_once_each_with_args_priority_and_delay(
    storage: str, sqlite_file: str, token: str
) -> None:
    """What the bulk fast path writes (one transaction or MULTI/EXEC per chunk, straight into Huey's
    queue and schedule) is what huey_consumer runs: every job once, with its arguments and id,
    in priority order, and the delayed ones not before their time."""
    harness: Harness
    if storage == "redis":
        require_service("redis")
        harness = HueyRedisHarness()
        harness.options = {"name": f"bulk{token}"}  # a Huey queue of its own
    else:
        harness = HueySqliteHarness()
        harness.options = {"path": sqlite_file}
    priorities = [None, -50, 100, 0, 25]
    batch = []
    for i in range(60):
        ref = jobs.echo.set(priority=priorities[i % 5])
        if i % 10 == 9:
            ref = ref.set(wait=1.5)
        batch.append(ref.new(token, i, label=f"job-{i}"))
    delayed = {i for i in range(60) if i % 10 == 9}

    with harness.configured():
        adapter = config.get_adapter()
        assert isinstance(adapter, HueyAdapter)
        try:
            assert unijob.perform_all_later(iter(batch), chunk_size=7) == 60  # 9 transactions
            assert all(job.successfully_enqueued and job.provider_job_id == job.job_id for job in batch)
            assert pending(adapter, ["default", "mail"], within=0.5) == 60 - len(delayed)
            assert pending(adapter, ["default", "mail"], within=5) == 60

            completed = subprocess.run(
                [python_bin("unijob"), "worker", "--burst", "--concurrency", "1"],
                env=harness.env(),
                cwd=ROOT,
                capture_output=True,
                timeout=120,
            )
            assert completed.returncode == 0, completed.stderr.decode()[-3000:]
            assert pending(adapter, ["default", "mail"], within=3600) == 0
        finally:
            if storage == "redis":
                adapter.huey.flush()

    runs = [r for r in jobs.records(token) if r["event"] == "echo"]
    ran = [serializers.load(r["args"])[0] for r in runs]
    assert sorted(ran) == list(range(60))  # each job exactly once
    for run in runs:
        i = serializers.load(run["args"])[0]
        job = batch[i]
        assert serializers.load(run["kwargs"]) == {"label": f"job-{i}"}
        assert (run["job_id"], run["queue"], run["priority"], run["executions"]) == (job.job_id, "mail", job.priority, 1)
        if i in delayed:
            assert job.scheduled_at is not None
            assert run["at"] >= job.scheduled_at.timestamp() - 0.01  # Huey's scheduler released it when due
    # One consumer thread: the jobs that were queued from the start ran by priority, larger first,
    # in enqueue order among equals (None is Huey's 0).
    immediate = [i for i in ran if i not in delayed]
    assert immediate == sorted(immediate, key=lambda i: (-(batch[i].priority or 0), i))


# --- the contract on Huey/Redis ----------------------------------------------------------------------


class HueyRedisHarness(Harness):
    name = "huey-redis"
    adapter = "huey"
    url = REDIS_URL

    def worker_argv(self) -> list[str]:
        return [python_bin("huey_consumer"), *CONSUMER_ARGS]

    def reset_broker(self) -> None:
        redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture(scope="module")
def redis_harness() -> Iterator[Harness]:
    harness = HueyRedisHarness()
    harness.start()
    yield harness
    harness.stop()


CONTRACT = [
    function
    for module in (test_contract, test_batches)
    for name, function in vars(module).items()
    if name.startswith("test_") and set(inspect.signature(function).parameters) <= {"backend", "token"}
]


@pytest.mark.parametrize("contract_test", CONTRACT, ids=lambda function: function.__name__[5:])
def test_contract_on_redis(redis_harness: Harness, contract_test: Any, token: str) -> None:
    with redis_harness.configured():
        contract_test(redis_harness, token)
