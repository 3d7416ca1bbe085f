"""RQ-specific behaviour: the wire format, the scheduled registry, bulk, the worker classes' safety."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from rq.job import Job as RQJob
from rq.queue import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer

import unijob
from tests import jobs
from tests.harness import ROOT, Harness, PrivateRedis, events_of, free_port, python_bin, require_service, wait_until
from tests.harnesses.rq import HARNESS
from unijob import config
from unijob.adapters.rq import RQAdapter
from unijob.adapters.rq_worker import Job as RQWorkerJob
from unijob.adapters.rq_worker import _storable, command, pending
from unijob.envelope import Envelope

URL = HARNESS.url
assert URL is not None


def callback_probe(*args: Any) -> None:
    """Named as an RQ callback in a forged job hash: stock RQ would import and call it."""
    jobs.record(str(args[0].meta.get("token")), "callback ran")


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    require_service("redis")
    connection = redis.Redis.from_url(URL)
    yield connection
    connection.close()


@pytest.fixture
def adapter(client: redis.Redis) -> Iterator[RQAdapter]:
    with config.override(adapter="rq", url=URL, imports=["tests.jobs"]):
        current = config.get_adapter()
        assert isinstance(current, RQAdapter)
        yield current


@pytest.fixture
def queue_name(client: redis.Redis, token: str) -> Iterator[str]:
    """A queue no worker listens to, so jobs stay where the adapter put them; removed afterwards."""
    name = f"t-{token}"
    yield name
    ids = [*client.lrange(f"rq:queue:{name}", 0, -1), *client.zrange(f"rq:scheduled:{name}", 0, -1)]
    client.delete(f"rq:queue:{name}", f"rq:scheduled:{name}", f"rq:wip:{name}", *(b"rq:job:" + i for i in ids))
    client.srem("rq:queues", f"rq:queue:{name}")


@pytest.fixture
def rq_worker(harness_pool: Any) -> Harness:
    """The contract suite's stock worker (started once per session) on db 2, queues default and mail."""
    harness: Harness = harness_pool.get("rq")
    return harness


# --- the wire ----------------------------------------------------------------------------------


def test_a_job_is_an_ordinary_rq_job_with_plain_json_arguments(
    adapter: RQAdapter, client: redis.Redis, queue_name: str, token: str
) -> None:
    job = jobs.echo.set(queue=queue_name).perform_later(token, 1, "two", flag=True)

    assert job.provider_job_id == job.job_id  # unijob's id is the RQ job id
    assert client.lrange(f"rq:queue:{queue_name}", 0, -1) == [job.job_id.encode()]
    raw = cast(dict[bytes, bytes], client.hgetall(f"rq:job:{job.job_id}"))
    assert json.loads(zlib.decompress(raw[b"data"])) == ["tests.jobs.echo", None, [token, 1, "two"], {"flag": True}]
    meta = json.loads(raw[b"meta"])["unijob"]
    assert meta["id"] == job.job_id and meta["job"] == "tests.jobs.echo" and meta["v"] == 1
    # RQ's retries serve only an abandoned job (abandoned_retries); a job that raised is never retried by RQ
    assert raw[b"retries_left"] == b"1"
    assert RQWorkerJob.fetch(job.job_id, connection=client, serializer=JSONSerializer).should_retry is False
    native = RQJob.fetch(job.job_id, connection=client, serializer=JSONSerializer)  # what rq-dashboard reads
    assert native.func_name == "tests.jobs.echo"
    assert native.origin == queue_name and native.get_status() == "queued"
    assert native.description == f"tests.jobs.echo({token!r}, 1, 'two', flag=True)"


def test_a_delayed_job_waits_in_rqs_scheduled_registry_and_is_never_due_early(
    adapter: RQAdapter, client: redis.Redis, queue_name: str, token: str
) -> None:
    at = dt.datetime.now(dt.timezone.utc).replace(microsecond=300_000) + dt.timedelta(hours=1)
    job = jobs.echo.set(queue=queue_name, wait_until=at).perform_later(token)

    assert client.llen(f"rq:queue:{queue_name}") == 0
    score = client.zscore(f"rq:scheduled:{queue_name}", job.job_id)
    assert score == int(at.timestamp()) + 1  # RQ keeps whole seconds: rounded up, not down
    assert RQJob.fetch(job.job_id, connection=client, serializer=JSONSerializer).get_status() == "scheduled"


def test_a_retry_gets_its_own_native_id(adapter: RQAdapter, client: redis.Redis, queue_name: str, token: str) -> None:
    envelope = Envelope(job="tests.jobs.echo", job_id=str(uuid.uuid4()), args=[token], kwargs={}, queue=queue_name, executions=2)

    assert adapter.enqueue(envelope) == f"{envelope.job_id}-2"
    native = RQJob.fetch(f"{envelope.job_id}-2", connection=client, serializer=JSONSerializer)
    assert native.meta["unijob"]["id"] == envelope.job_id and native.meta["unijob"]["executions"] == 2


def test_priority_is_refused_with_the_backend_named(adapter: RQAdapter, queue_name: str, token: str) -> None:
    assert not adapter.capabilities.priority
    with pytest.raises(unijob.UnsupportedOptionError, match=r"the rq adapter .*priority=5"):
        jobs.echo.set(queue=queue_name, priority=5).perform_later(token)


def test_close_releases_the_connection_and_the_adapter_reconnects(
    adapter: RQAdapter, client: redis.Redis, queue_name: str, token: str
) -> None:
    connection_id = str(adapter.redis.client_id())
    adapter.close()

    wait_until(
        lambda: connection_id not in {str(c["id"]) for c in client.client_list()}, timeout=5, message="the connection closed"
    )
    assert jobs.echo.set(queue=queue_name).perform_later(token).successfully_enqueued


# --- bulk --------------------------------------------------------------------------------------


def test_bulk_mixes_delayed_jobs_and_reports_exactly_what_failed(
    adapter: RQAdapter, client: redis.Redis, queue_name: str, token: str
) -> None:
    broken = f"{queue_name}-broken"
    client.set(f"rq:queue:{broken}", "not a list")  # RPUSH fails inside EXEC for this queue only
    try:
        batch = [
            jobs.echo.set(queue=queue_name).new(token, 0),
            jobs.echo.set(queue=broken).new(token, 1),
            jobs.echo.set(queue=queue_name, wait=3600).new(token, 2),
            jobs.echo.set(queue=queue_name).new(token, 3),
        ]
        assert unijob.perform_all_later(batch) == 3
    finally:
        client.delete(f"rq:queue:{broken}", f"rq:job:{batch[1].job_id}")
        client.srem("rq:queues", f"rq:queue:{broken}")

    assert [job.successfully_enqueued for job in batch] == [True, False, True, True]
    assert isinstance(batch[1].enqueue_error, unijob.EnqueueError) and "WRONGTYPE" in str(batch[1].enqueue_error)
    assert client.lrange(f"rq:queue:{queue_name}", 0, -1) == [batch[0].job_id.encode(), batch[3].job_id.encode()]
    assert client.zrange(f"rq:scheduled:{queue_name}", 0, -1) == [batch[2].job_id.encode()]


def _rq_hash(client: redis.Redis, job_id: str) -> dict[bytes, Any]:
    """A job hash with its per-call values normalized: timestamps dropped, meta decoded without
    the job's own id (data and description compare as they are)."""
    raw = cast(dict[bytes, bytes], client.hgetall(f"rq:job:{job_id}"))
    assert raw, f"no hash for {job_id}"
    meta = json.loads(raw.pop(b"meta"))["unijob"]
    assert meta.pop("id") in job_id
    meta.pop("enqueued_at")
    return {**{k: v for k, v in raw.items() if k not in (b"created_at", b"enqueued_at")}, b"meta": meta}


@pytest.mark.parametrize("layout", ["template", "fallback"])
def test_bulk_writes_the_hashes_rqs_own_enqueue_many_and_schedule_job_write(
    adapter: RQAdapter, client: redis.Redis, queue_name: str, token: str, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if layout == "fallback":  # as if an RQ release laid the job hash out otherwise: every job through create_job
        monkeypatch.setattr("unijob.adapters.rq_bulk._SHARED_FIELDS", frozenset({"origin"}))
    created: list[str] = []
    create_job = Queue.create_job

    def counting_create_job(self: Queue, *args: Any, **kwargs: Any) -> RQJob:
        created.append(kwargs["job_id"])
        return create_job(self, *args, **kwargs)

    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    due = math.ceil(at.timestamp())  # RQ's scheduled registry keeps whole seconds: unijob rounds up

    def envelopes(scheduled_at: dt.datetime | None) -> list[Envelope]:
        return [
            Envelope(
                job="tests.jobs.echo",
                job_id=str(uuid.uuid4()),
                args=[token, i, "x" * 40 * i, {"k": [i, None]}],
                kwargs={"flag": i % 2 == 0},
                queue=queue_name,
                scheduled_at=scheduled_at,
                enqueued_at=dt.datetime.now(dt.timezone.utc),
            )
            for i in range(4)
        ]

    ours, theirs = envelopes(None) + envelopes(at), envelopes(None) + envelopes(at)
    with monkeypatch.context() as patch:
        patch.setattr(Queue, "create_job", counting_create_job)
        assert all(outcome.error is None for outcome in adapter.enqueue_all(ours))
    # the first job of each group (due now, delayed) is RQ's own; the others follow its hash
    assert len(created) == (2 if layout == "template" else 8)
    queue = Queue(queue_name, connection=client, serializer=JSONSerializer)
    queue.enqueue_many([Queue.prepare_data(e.job, **adapter.job_options(e)) for e in theirs[:4]])
    for envelope in theirs[4:]:
        options = adapter.job_options(envelope)
        options["job_timeout"] = options.pop("timeout")
        queue.enqueue_at(dt.datetime.fromtimestamp(due, dt.timezone.utc), envelope.job, **options)

    for mine, rqs in zip(ours, theirs, strict=True):
        assert _rq_hash(client, mine.job_id) == _rq_hash(client, rqs.job_id)
    queued = [i.decode() for i in cast(list[bytes], client.lrange(f"rq:queue:{queue_name}", 0, -1))]
    assert queued == [e.job_id for e in ours[:4]] + [e.job_id for e in theirs[:4]]  # in order
    scheduled = dict(cast(list[tuple[bytes, float]], client.zrange(f"rq:scheduled:{queue_name}", 0, -1, withscores=True)))
    assert {scheduled[e.job_id.encode()] for e in ours[4:] + theirs[4:]} == {due}
    assert f"rq:queue:{queue_name}".encode() in client.smembers("rq:queues")
    native = RQJob.fetch(ours[1].job_id, connection=client, serializer=JSONSerializer)
    assert native.args == [token, 1, "x" * 40, {"k": [1, None]}] and native.get_status() == "queued"


def test_a_job_listed_twice_in_one_bulk_is_refused_before_anything_is_written(
    adapter: RQAdapter, client: redis.Redis, queue_name: str, token: str
) -> None:
    job = jobs.echo.set(queue=queue_name).new(token)
    with pytest.raises(ValueError, match="more than once"):
        unijob.perform_all_later([job, jobs.echo.set(queue=queue_name).new(token), job])  # as Queue.enqueue_many
    assert client.llen(f"rq:queue:{queue_name}") == 0 and not client.exists(f"rq:job:{job.job_id}")


def test_the_stock_worker_runs_every_bulk_job_once_with_its_arguments_queue_and_delay(rq_worker: Harness, token: str) -> None:
    def made() -> Iterator[unijob.Job]:  # a generator, consumed in chunks of 4 across two queues
        for i in range(10):
            yield jobs.echo.new(token, i, kind="mail")  # echo's queue is mail
            yield jobs.echo.set(queue="default").new(token, i, kind="default")
            if i % 3 == 0:
                yield jobs.echo.set(queue="default", wait=1.5).new(token, i, kind="delayed")

    with rq_worker.configured():
        batch = list(made())  # kept, to compare with what ran
        assert unijob.perform_all_later(iter(batch), chunk_size=4) == len(batch) == 24

    runs = rq_worker.wait_for(token, lambda r: len(r) >= 24, timeout=60)
    runs = rq_worker.settle(token, 1.0)  # nothing runs twice
    assert len(runs) == 24
    by_id = {run["job_id"]: run for run in runs}
    assert set(by_id) == {job.job_id for job in batch}
    for job in batch:
        run = by_id[job.job_id]
        assert unijob.serializers.load(run["args"]) == list(job.args[1:])
        assert unijob.serializers.load(run["kwargs"]) == job.kwargs
        assert run["queue"] == job.queue and run["executions"] == 1
        if job.kwargs["kind"] == "delayed":
            assert job.scheduled_at is not None and run["at"] >= job.scheduled_at.timestamp()  # never early


def test_a_broker_dying_mid_bulk_fails_exactly_the_jobs_not_sent(private_redis: PrivateRedis, token: str) -> None:
    port = private_redis.port
    made: list[unijob.Job] = []

    def jobs_killing_the_server() -> Iterator[unijob.Job]:
        for i in range(10):
            if i == 5:  # the first chunk was sent; nothing of the second yet
                assert private_redis.client.llen("rq:queue:mail") == 5
                private_redis.kill()
            made.append(jobs.echo.new(token, i))
            yield made[-1]

    with config.override(adapter="rq", url=f"redis://:pw@127.0.0.1:{port}/0", imports=["tests.jobs"]):
        assert unijob.perform_all_later(jobs_killing_the_server(), chunk_size=5) == 5

    assert [job.successfully_enqueued for job in made] == [True] * 5 + [False] * 5
    assert all(job.provider_job_id == job.job_id for job in made[:5])
    for job in made[5:]:
        assert isinstance(job.enqueue_error, unijob.EnqueueError)
        message = str(job.enqueue_error)
        assert f"RQ at redis://:***@127.0.0.1:{port}/0" in message and ":pw@" not in message


def test_an_unreachable_broker_fails_fast_naming_backend_and_url(token: str) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with config.override(adapter="rq", url=url, imports=["tests.jobs"]):
        started = time.monotonic()
        with pytest.raises(unijob.EnqueueError) as raised:
            jobs.echo.perform_later(token)
        batch = [jobs.echo.new(token, i) for i in range(3)]
        assert unijob.perform_all_later(batch) == 0
        assert time.monotonic() - started < 5
    message = str(raised.value)
    assert message.startswith("RQ at redis://:***@127.0.0.1:") and "s3cret" not in message
    assert all(isinstance(job.enqueue_error, unijob.EnqueueError) for job in batch)


# --- the stock worker --------------------------------------------------------------------------


def test_a_forged_job_naming_os_system_is_refused_and_logged(rq_worker: Harness, client: redis.Redis, token: str) -> None:
    target = Path(f"/tmp/unijob-forged-{token}")
    forged_id = f"forged-{token}"
    client.hset(
        f"rq:job:{forged_id}",
        mapping={
            "data": json.dumps(["os.system", None, [f"touch {target}"], {}]),
            "status": "queued",
            "origin": "default",
            "description": f"os.system('touch {target}')",
            "created_at": "2026-01-01T00:00:00.000000Z",
            "meta": json.dumps({"token": token}),
            "failure_callback_name": "tests.backends.test_rq.callback_probe",
            "success_callback_name": "tests.backends.test_rq.callback_probe",
        },
    )
    client.rpush("rq:queue:default", forged_id)
    with rq_worker.configured():
        jobs.ping.perform_later(token)  # behind the forged job on the same queue

    rq_worker.wait_for(token, lambda r: bool(events_of(r, "ping")))
    assert [r["event"] for r in rq_worker.settle(token, 0.5)] == ["ping"]  # no callback ran
    assert not target.exists()
    failed = FailedJobRegistry("default", connection=client)
    wait_until(lambda: forged_id in failed.get_job_ids(), timeout=10, message="the forged job in FailedJobRegistry")
    result = RQJob.fetch(forged_id, connection=client, serializer=JSONSerializer).latest_result()
    assert result is not None and "UnknownJobError: refusing job 'os.system'" in (result.exc_string or "")
    assert "Refused job 'os.system'" in rq_worker.worker_log()


def test_a_job_sent_by_plain_rq_code_runs_when_its_name_is_registered(
    rq_worker: Harness, client: redis.Redis, token: str
) -> None:
    native = Queue("default", connection=client, serializer=JSONSerializer).enqueue_call(
        "tests.jobs.echo", args=[token, "native"]
    )

    (run,) = rq_worker.wait_for(token, lambda r: len(r) >= 1)
    assert run["job_id"] == native.id and run["executions"] == 1
    assert unijob.serializers.load(run["args"]) == ["native"]


def test_a_job_that_fails_for_good_is_recorded_once_in_rqs_failed_registry(
    rq_worker: Harness, client: redis.Redis, token: str
) -> None:
    with rq_worker.configured():
        job = jobs.AlwaysFails.perform_later(token)

    rq_worker.wait_for(token, lambda r: bool(events_of(r, "after_discard")))
    failed = FailedJobRegistry("default", connection=client)
    wait_until(lambda: f"{job.job_id}-1" in failed.get_job_ids(), timeout=10, message="the final attempt in FailedJobRegistry")
    assert job.job_id not in failed.get_job_ids()  # the first attempt scheduled its retry and finished
    assert job.job_id in FinishedJobRegistry("default", connection=client).get_job_ids()
    assert len(rq_worker.settle(token, 1.0)) == 3  # no native retry comes back


def test_the_documented_worker_command_is_what_unijob_worker_runs(adapter: RQAdapter) -> None:
    assert command(adapter, ["default", "mail"], None) == HARNESS.worker_argv()
    pool = command(adapter, ["default"], 2)
    assert pool[1:4] == ["worker-pool", "--num-workers", "2"] and "--with-scheduler" not in pool  # the pool always schedules
    simple = command(RQAdapter(url=URL, options={"simple_worker": True}), ["default"], None)
    assert "unijob.adapters.rq_worker.SimpleWorker" in simple and "--burst" not in simple


@pytest.mark.parametrize(
    ("dropped", "message"),
    [
        (["--serializer", "json"], "needs --serializer json"),
        (["--job-class", "unijob.adapters.rq_worker.Job"], "needs --job-class"),
    ],
    ids=["pickle", "rq-job-class"],
)
def test_the_worker_refuses_to_start_without_json_or_unijobs_job_class(
    client: redis.Redis, token: str, dropped: list[str], message: str
) -> None:
    argv = [*HARNESS.worker_argv()[:-2], "--burst", f"t-{token}"]  # instead of default, mail
    start = argv.index(dropped[0])
    del argv[start : start + 2]
    result = subprocess.run(argv, env=HARNESS.env(), cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_pending_jobs_counts_waiting_running_and_soon_due(
    adapter: RQAdapter, client: redis.Redis, queue_name: str, token: str
) -> None:
    jobs.echo.set(queue=queue_name).perform_later(token)
    jobs.echo.set(queue=queue_name).perform_later(token)
    jobs.echo.set(queue=queue_name, wait=3).perform_later(token)
    jobs.echo.set(queue=queue_name, wait=3600).perform_later(token)
    assert pending(adapter, [queue_name], within=10) == 3
    assert pending(adapter, [queue_name], within=0) == 2

    now = time.time()
    client.zadd(f"rq:wip:{queue_name}", {"running:execution": now + 60, "dead-worker:execution": now - 1})
    assert pending(adapter, [queue_name], within=0) == 3  # an expired entry belongs to a dead worker


@pytest.mark.parametrize("simple_worker", [False, True], ids=["Worker", "SimpleWorker"])
def test_unijob_worker_burst_drains_the_queue_and_due_delayed_jobs_then_exits(
    adapter: RQAdapter, queue_name: str, token: str, simple_worker: bool
) -> None:
    unijob.perform_all_later([jobs.echo.set(queue=queue_name).new(token, i) for i in range(3)])
    jobs.echo.set(queue=queue_name, wait=2).perform_later(token, "later")
    env = {**HARNESS.env(), "UNIJOB_URL": URL, "UNIJOB_OPTIONS": json.dumps({"simple_worker": simple_worker})}

    result = subprocess.run(
        [python_bin("unijob"), "worker", "--burst", "-q", queue_name],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    worker_class = "SimpleWorker" if simple_worker else "Worker"
    assert f"--worker-class unijob.adapters.rq_worker.{worker_class} " in result.stderr
    runs = jobs.records(token)
    assert sorted(str(unijob.serializers.load(r["args"])[0]) for r in runs) == ["0", "1", "2", "later"]
    assert pending(adapter, [queue_name], within=3600) == 0


def test_return_values_are_stored_as_json() -> None:
    assert _storable({"a": [1, "b"]}) == {"a": [1, "b"]}
    assert _storable(dt.date(2026, 1, 2)) == {"__uj__": "date", "v": "2026-01-02"}
    assert _storable(os).startswith("<module 'os'")  # not JSON: RQ would mark a job that ran as failed


def test_a_job_routed_to_a_named_rq_backend_retries_there(private_redis: PrivateRedis, tmp_path: Path, token: str) -> None:
    """RQ's command line names no backend: the worker finds the one on its Redis database, so a
    routed job's retry goes back to RQ, not to the job's own (here: Huey's, with no worker)."""
    settings = {
        "adapter": "huey",
        "options": {"path": str(tmp_path / "default.sqlite3")},
        "imports": ["tests.jobs"],
        "backends": {"mailing": {"adapter": "rq", "url": private_redis.url}},
        "routes": {"tests.jobs.Flaky": "mailing"},
    }
    (tmp_path / "pyproject.toml").write_text(
        f"""[tool.unijob]
adapter = "huey"
options = {{ path = "{tmp_path / "default.sqlite3"}" }}
imports = ["tests.jobs"]
backends = {{ mailing = {{ adapter = "rq", url = "{private_redis.url}" }} }}
routes = {{ "tests.jobs.Flaky" = "mailing" }}
"""
    )
    with config.override(**settings):
        job = jobs.Flaky.perform_later(token, 1)  # fails once, retried after a second
        assert job.backend == "mailing"
    env = {name: value for name, value in os.environ.items() if not name.startswith("UNIJOB_")}
    env["PYTHONPATH"] = str(ROOT)
    worker = [python_bin("unijob"), "worker", "--backend", "mailing", "--burst"]
    result = subprocess.run(worker, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [record["event"] for record in jobs.records(token)] == ["attempt", "attempt", "success"]
