"""Celery-specific behaviour, on real Redis and RabbitMQ with the stock ``celery worker``."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, signals
from celery.exceptions import DuplicateTaskNameWarning
from celery.utils.saferepr import saferepr
from kombu import Exchange, Queue
from kombu.message import Message

import unijob
from tests import harnesses, jobs
from tests.conftest import HarnessPool
from tests.harness import (
    ROOT,
    Harness,
    PrivateRedis,
    ensure_rabbitmq_vhost,
    free_port,
    python_bin,
    require_service,
    stop_process,
    wait_until,
)
from tests.harnesses.celery_rabbitmq import VHOST
from tests.harnesses.celery_redis import URL as REDIS_URL
from tests.harnesses.celery_redis import CeleryRedisHarness
from unijob import config, serializers
from unijob.adapters import celery_wire
from unijob.adapters.celery import CeleryAdapter
from unijob.adapters.celery_worker import command, pending, register_jobs, register_tasks
from unijob.envelope import Envelope

BROKERS = ["celery-redis", "celery-rabbitmq"]

# An application's own Celery app, for the celery_app option (imported by path).
existing_app = Celery("existing", broker=REDIS_URL, set_as_current=False)
existing_app.conf.update(task_serializer="json", accept_content=["json"])

_vhost_ready: list[bool] = []


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


@pytest.fixture(params=BROKERS)
def configured(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """unijob configured for a broker, without starting a worker."""
    harness = harnesses.load(request.param)
    for service in harness.services:
        require_service(service)
    if request.param == "celery-rabbitmq" and not _vhost_ready:
        ensure_rabbitmq_vhost(VHOST)
        _vhost_ready.append(True)
    with harness.configured():
        yield harness


@pytest.fixture(params=BROKERS)
def running(request: pytest.FixtureRequest, harness_pool: HarnessPool) -> Iterator[Harness]:
    """unijob configured for a broker whose stock worker runs (the contract harness's)."""
    harness = harness_pool.get(request.param)
    with harness.configured():
        yield harness


def adapter() -> CeleryAdapter:
    found = config.get_adapter()
    assert isinstance(found, CeleryAdapter)
    return found


def take(celery: CeleryAdapter, queue: str) -> Message:
    """The next message in ``queue``, read with plain kombu; then the queue is deleted."""
    with celery.app.connection_for_write() as connection:
        bound = Queue(queue, Exchange(queue), queue, channel=connection.default_channel)
        message: Message = wait_until(lambda: bound.get(no_ack=True), timeout=10, message=f"a message in {queue}")
        bound.delete()
    return message


# --- on the wire -----------------------------------------------------------------------------


def test_a_job_is_an_ordinary_celery_task_message(configured: Harness, token: str) -> None:
    celery = adapter()
    queue = f"wire-{token}"
    job = jobs.echo.set(queue=queue, priority=100, wait=dt.timedelta(hours=2)).perform_later(token, 1, "two", flag=True)

    message = take(celery, queue)
    assert message.content_type == "application/json"
    assert message.headers["task"] == "tests.jobs.echo"  # what `celery worker` and Flower show
    assert message.headers["id"] == job.job_id == job.provider_job_id
    args, kwargs, _embed = message.decode()
    assert (args, kwargs) == ([token, 1, "two"], {"flag": True})  # plain args, as Celery code sends them
    meta = message.headers["unijob"]
    assert (meta["v"], meta["job"], meta["id"], meta["queue"], meta["priority"]) == (1, "tests.jobs.echo", job.job_id, queue, 100)
    assert dt.datetime.fromisoformat(meta["scheduled_at"]) == job.scheduled_at
    assert message.properties["priority"] == celery.native_priority(100) == (0 if configured.name == "celery-redis" else 10)
    # a delay of 2 h reaches the broker as its first hop only (see the visibility timeout test)
    assert job.enqueued_at is not None
    hop = dt.datetime.fromisoformat(message.headers["eta"]) - job.enqueued_at
    assert abs(hop.total_seconds() - celery.max_hold.total_seconds()) < 5
    assert celery.max_hold.total_seconds() == (1800 if configured.name == "celery-redis" else 900)

    # a retry is its own native task: <job id>-<executions>; close() releases, the next use reconnects
    celery.close()
    retry = Envelope(job="tests.jobs.echo", job_id=job.job_id, args=[token], kwargs={}, queue=queue, executions=2)
    assert celery.enqueue(retry) == f"{job.job_id}-2"
    message = take(celery, queue)
    assert message.headers["id"] == f"{job.job_id}-2"
    assert message.headers["unijob"]["executions"] == 2


def test_priority_maps_onto_each_brokers_scale(configured: Harness, token: str) -> None:
    celery = adapter()
    scale = [celery.native_priority(p) for p in (-100, -50, 0, 50, 100)]
    if configured.name == "celery-redis":
        assert scale == [9, 7, 5, 2, 0]  # Redis: 0 runs first; one list per level
        assert celery.app.conf.broker_transport_options["priority_steps"] == list(range(10))
    else:
        assert scale == [0, 3, 5, 8, 10]  # RabbitMQ: the highest runs first, on x-max-priority queues
        assert celery.app.amqp.queues[f"any-{token}"].queue_arguments == {"x-max-priority": 10}
    assert celery.capabilities.priority

    # a job without priority is sent with the middle one: neither first (Redis) nor last (RabbitMQ)
    queue = f"wire-{token}"
    jobs.echo.set(queue=queue).perform_later(token)
    assert take(celery, queue).properties["priority"] == celery.native_priority(0) == 5


def test_jobs_run_in_priority_order_and_a_burst_worker_drains_and_exits(configured: Harness, token: str) -> None:
    queue = f"prio-{token}"
    for priority in (-100, None, 100, 50):
        jobs.echo.set(queue=queue, priority=priority).perform_later(token, priority)
    delayed = jobs.echo.set(queue=queue, wait=6).perform_later(token, "delayed")  # due within the burst horizon
    # RabbitMQ routes a publish after the call returns: wait (bounded) until all five are counted
    wait_until(lambda: pending(adapter(), [queue], 5) == 5, timeout=10, message="five pending jobs")

    started = time.time()
    done = subprocess.run(
        [python_bin("unijob"), "worker", "--burst", "--queues", queue, "--concurrency", "1"],
        env=configured.env(), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"celery -A unijob.adapters.celery_worker worker --queues {queue} --loglevel INFO --hostname unijob-" in done.stderr

    records = jobs.records(token)
    ran = [r["args"][0] for r in records]
    assert sorted(ran, key=str) == sorted([-100, None, 100, 50, "delayed"], key=str)  # each once
    assert [p for p in ran if p != "delayed"] == [100, 50, None, -100]
    assert delayed.scheduled_at is not None
    assert records[ran.index("delayed")]["at"] >= delayed.scheduled_at.timestamp()
    assert pending(adapter(), [queue], 5) == 0
    assert time.time() - started < 60


def test_an_adopted_tasks_custom_headers_travel_natively_and_reach_it_in_the_worker(configured: Harness, token: str) -> None:
    from tests.contrib import celery_tasks
    from unijob.contrib.celery import new_job

    celery_tasks.traced.apply_async((token,), queue=f"wire-{token}", headers={"trace_id": "one"})
    message = take(adapter(), f"wire-{token}")
    assert message.headers["trace_id"] == "one"  # a plain Celery worker sees it as Celery's own would be
    queue = f"headers-{token}"
    celery_tasks.traced.apply_async((token,), queue=queue, headers={"trace_id": "two"})
    bulk = [new_job(celery_tasks.traced, (token,), None, queue=queue, headers={"trace_id": "three"})]
    assert unijob.perform_all_later(bulk) == 1  # on Redis: the pipelined wire path
    wait_until(lambda: pending(adapter(), [queue], 2) == 2, timeout=10, message="two pending jobs")

    env = {**configured.env(), "UNIJOB_IMPORTS": "tests.jobs,tests.contrib.celery_tasks"}
    done = subprocess.run(
        [python_bin("unijob"), "worker", "--burst", "--queues", queue, "--concurrency", "1"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = sorted((r["trace_id"], r["headers"]["trace_id"]) for r in jobs.records(token))
    assert seen == [("three", "three"), ("two", "two")]


def test_a_long_delay_hops_below_the_visibility_timeout_and_runs_once(token: str) -> None:
    """Redis redelivers a message held past visibility_timeout: a plain Celery ETA beyond it runs
    several times. unijob hands the broker hops of at most half of it, and runs the job once, on time."""
    require_service("redis")
    prefix = f"vt-{token}:"  # a namespace of its own: the contract worker on db 1 is not disturbed

    class ShortVisibility(CeleryRedisHarness):
        name = "celery-redis-visibility"
        options = {
            "visibility_timeout": 4,
            "transport_options": {"global_keyprefix": prefix, "unacked_restore_interval": 1, "unacked_restore_throttle": 1},
        }

        def reset_broker(self) -> None:
            pass

    harness = ShortVisibility()
    harness.start()
    try:
        native = uuid.uuid4().hex
        with harness.configured():
            assert adapter().max_hold.total_seconds() == 2
            started = time.time()
            job = jobs.echo.set(wait=9).perform_later(token, "unijob")
            eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=9)
            adapter().app.send_task("tests.jobs.echo", args=[native, "plain celery"], eta=eta, queue="mail")

        harness.wait_for(native, lambda r: len(r) >= 2, timeout=40)  # the pitfall is real
        harness.wait_for(token, lambda r: len(r) >= 1, timeout=40)
        (run,) = harness.settle(token, 5)  # longer than the visibility timeout: nothing comes back
        assert job.scheduled_at is not None
        assert run["at"] >= job.scheduled_at.timestamp()
        assert run["at"] - started < 15
        assert run["job_id"] == job.job_id
    finally:
        harness.stop()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)


# --- safety ----------------------------------------------------------------------------------


def test_forged_messages_are_refused_by_the_worker(running: Harness, token: str) -> None:
    app = adapter().app
    marker = Path(tempfile.gettempdir()) / f"unijob-forged-{token}"
    app.send_task("os.system", args=[f"touch {marker}"], queue="default")
    # the task name decides what runs, never the unijob header
    forged = Envelope(job="tests.unregistered.not_a_job", job_id=str(uuid.uuid4()), args=[], kwargs={}, queue="default")
    app.send_task("tests.jobs.echo", args=[token, "echo"], queue="default", headers={"unijob": forged.meta()})
    pickled = uuid.uuid4().hex
    app.send_task("tests.jobs.ping", args=[pickled], queue="default", serializer="pickle")
    jobs.ping.perform_later(token)  # queued behind them: once it ran, they were consumed

    records = running.wait_for(token, lambda found: {r["event"] for r in found} >= {"echo", "ping"})
    refused = ("Received unregistered task of type 'os.system'", "untrusted content of type pickle")
    wait_until(lambda: all(line in running.log_path.read_text(errors="replace") for line in refused), timeout=10)
    assert not marker.exists()
    assert jobs.records(pickled) == []
    assert [r["event"] for r in running.settle(token, 0.5)] in (["echo", "ping"], ["ping", "echo"])
    assert next(r for r in records if r["event"] == "echo")["job_id"] == forged.job_id


def test_plain_celery_code_can_send_a_job(running: Harness, token: str) -> None:
    result = adapter().app.send_task("tests.jobs.echo", args=[token, 1], kwargs={"k": "v"}, queue="mail")

    (run,) = running.wait_for(token, lambda r: len(r) >= 1)
    assert (run["job_id"], run["queue"], run["args"], run["kwargs"]) == (result.id, "mail", [1], {"k": "v"})


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_an_unreachable_broker_fails_fast_naming_the_url(scheme: str, token: str) -> None:
    port = free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/1" if scheme == "redis" else f"amqp://guest:hunter2@127.0.0.1:{port}/{VHOST}"
    with config.override(adapter="celery", url=url, imports=["tests.jobs"]):
        started = time.monotonic()
        with pytest.raises(unijob.EnqueueError) as caught:
            jobs.ping.perform_later(token)
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert message.startswith("Celery at ") and f"***@127.0.0.1:{port}" in message and "hunter2" not in message

        batch = [jobs.ping.new(token) for _ in range(3)]
        started = time.monotonic()
        assert unijob.perform_all_later(batch) == 0
        assert time.monotonic() - started < 5
        assert all(isinstance(job.enqueue_error, unijob.EnqueueError) and not job.successfully_enqueued for job in batch)


def test_bulk_goes_in_one_round_trip_per_chunk_and_reports_each_job_when_redis_dies_midway(
    private_redis: PrivateRedis, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = private_redis.url
    pipelines: list[list[tuple[str, int]]] = []  # (command, values) of each pipeline sent (a spy: the real call goes through)
    execute = redis.client.Pipeline.execute

    def counted(pipeline: Any, *args: Any, **kwargs: Any) -> Any:
        pipelines.append([(command[0][0], len(command[0]) - 2) for command in pipeline.command_stack])
        return execute(pipeline, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)
    queued: list[int] = []
    built: list[unijob.Job] = []

    def jobs_that_kill_the_broker() -> Iterator[unijob.Job]:
        for n in range(20):
            if n == 10:  # two chunks have been sent
                client = private_redis.client
                queued.append(sum(int(client.llen(key)) for key in client.scan_iter(match="default*")))
                private_redis.kill()
            job = jobs.ping.set(priority=100 if n % 5 == 4 else None).new(f"{token}-{n}")
            built.append(job)
            yield job

    with config.override(adapter="celery", url=url, imports=["tests.jobs"]):
        assert adapter().capabilities.native_bulk
        started = time.monotonic()
        assert unijob.perform_all_later(jobs_that_kill_the_broker(), chunk_size=5) == 10
        assert time.monotonic() - started < 10

    publishes = [commands for commands in pipelines if any(name == "LPUSH" for name, _ in commands)]
    # each chunk: one round trip, one LPUSH per run of messages bound for the same priority list
    assert publishes[:2] == [[("LPUSH", 4), ("LPUSH", 1)]] * 2 and queued == [10]
    assert [job.successfully_enqueued for job in built] == [True] * 10 + [False] * 10
    assert [job.provider_job_id for job in built[:10]] == [job.job_id for job in built[:10]]
    for job in built[10:]:
        assert isinstance(job.enqueue_error, unijob.EnqueueError) and job.provider_job_id is None
        assert url in str(job.enqueue_error)


def test_a_loop_of_perform_later_reuses_its_connections(token: str) -> None:
    require_service("redis")
    name = f"unijob-{token[:12]}"
    client = redis.Redis.from_url(REDIS_URL)

    def connections() -> int:
        return sum(1 for entry in client.client_list() if entry.get("name") == name)

    with config.override(adapter="celery", url=REDIS_URL, imports=["tests.jobs"], transport_options={"client_name": name}):
        ref = jobs.add.set(queue=f"loop-{token}")
        ref.perform_later(1, 2)
        opened = connections()
        for _ in range(100):
            ref.perform_later(1, 2)
        assert 0 < opened == connections() <= 2
        adapter().close()
        assert connections() == 0
        client.delete(*client.keys(f"loop-{token}*"))


# --- bulk at the broker's speed ----------------------------------------------------------------


@pytest.fixture
def on_redis() -> Iterator[Harness]:
    """unijob configured for celery-redis (db 1), without starting a worker."""
    require_service("redis")
    harness = harnesses.load("celery-redis")
    with harness.configured():
        yield harness


def queued_messages(client: redis.Redis, token: str) -> dict[str, list[dict[str, Any]]]:
    """Every message in the Redis lists named with ``token``, as kombu stored them, by list; then
    every key named with it (lists and kombu's bindings) is deleted."""
    found = {}
    for key in sorted(client.scan_iter(match=f"*{token}*")):
        if client.type(key) == b"list":
            found[key.decode()] = [json.loads(raw) for raw in client.lrange(key, 0, -1)]
        client.delete(key)
    return found


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    """A kombu message without what differs from one publish to the next (ids, tags, times)."""
    message = json.loads(json.dumps(message))
    headers, properties, meta = message["headers"], message["properties"], message["headers"]["unijob"]
    for fields, names in (
        (headers, ("id", "root_id", "eta")),
        (properties, ("correlation_id", "delivery_tag")),
        (meta, ("id", "enqueued_at", "scheduled_at")),
    ):
        for name in names:
            fields[name] = bool(fields[name])  # set or not
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def wire_jobs(token: str) -> list[unijob.Job]:
    """Jobs covering what the message of a job depends on: queue, priority, delay, arguments."""
    queue = f"wire-{token}"
    nested = {"it's": [1, [2, [3, [4, "deep"]]]], "none": None, "yes": True, "pi": 3.25, "text": "l\u00e9t\u00e9\n'\"\\"}
    return [
        jobs.echo.set(queue=queue).new(token, 1, "two", flag=True),
        jobs.echo.set(queue=queue, priority=100).new(token, nested),
        jobs.echo.set(queue=queue, priority=100).new(token, [nested] * 3),  # same list: one LPUSH
        jobs.echo.set(queue=queue, priority=-37, wait=dt.timedelta(hours=3)).new(token, "x" * 3000),  # saferepr truncates
        jobs.echo.set(queue=f"{queue}-b").new(token, **{f"k{i}": i for i in range(300)}),  # a long kwargsrepr
        jobs.ping.set(queue=queue).new(token),
    ]


def test_the_bulk_fast_path_writes_the_messages_celery_would(
    on_redis: Harness, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """perform_all_later on Redis builds the messages itself and pipelines them. The lists hold what
    Celery's own publishing (send_task in kombu's Producer.batch(), the fallback) writes for the
    same jobs, message for message, but for ids, delivery tags and times."""
    client = redis.Redis.from_url(REDIS_URL)
    used: list[Any] = []
    create = celery_wire.RedisWire.create

    def spy(*args: Any) -> Any:
        used.append(create(*args))
        return used[-1]

    monkeypatch.setattr(celery_wire.RedisWire, "create", spy)
    fast_jobs = wire_jobs(token)
    assert unijob.perform_all_later(fast_jobs) == len(fast_jobs)
    assert used and used[-1] is not None  # the fast path ran
    fast = queued_messages(client, token)

    monkeypatch.setattr(celery_wire.RedisWire, "create", lambda *args: None)  # Celery publishes
    assert unijob.perform_all_later(wire_jobs(token)) == len(fast_jobs)
    native = queued_messages(client, token)

    sep = "\x06\x16"  # kombu's Redis list of queue q at priority level p is q + sep + p (q itself for 0)
    wire = f"wire-{token}"
    assert (
        sorted(fast) == sorted(native) == sorted([wire, f"{wire}{sep}5", f"{wire}{sep}6", f"{wire}-b{sep}5"])
    )  # 100, unset, -37
    for key in native:
        assert [comparable(m) for m in fast[key]] == [comparable(m) for m in native[key]], key
    messages = [m for ms in fast.values() for m in ms]
    assert len(messages) == len(fast_jobs)
    by_id = {m["headers"]["id"]: m for m in messages}
    for job in fast_jobs:
        message = by_id[job.job_id]
        assert job.provider_job_id == job.job_id == message["properties"]["correlation_id"] == message["headers"]["root_id"]
        assert message["headers"]["unijob"]["id"] == job.job_id
    assert len({m["properties"]["delivery_tag"] for m in messages}) == len(messages)


def test_plain_repr_is_celerys_saferepr() -> None:
    """The fast path computes Celery's argsrepr/kwargsrepr itself for JSON values: the same text."""
    rng = random.Random(4)
    atoms: list[Any] = [
        None,
        True,
        False,
        0,
        -1,
        2**70,
        1.5,
        -0.0,
        1e22,
        1e-7,
        "",
        "a",
        "it's",
        'say "hi"',
        "back\\slash",
        "new\nline",
        "\u00e9\u20ac\U0001f600",
        "x" * 200,
    ]

    def value(depth: int) -> Any:
        kind = rng.random()
        if depth > 5 or kind < 0.5:
            return rng.choice(atoms)
        if kind < 0.75:
            return [value(depth + 1) for _ in range(rng.randrange(5))]
        return {
            rng.choice(["k", "it's", "", "\u00e9", f"key{rng.randrange(9)}"]): value(depth + 1) for _ in range(rng.randrange(5))
        }

    samples = [[value(1) for _ in range(rng.randrange(4))] for _ in range(2000)] + [{"k": value(1)} for _ in range(500)]
    samples += [
        [],
        {},
        ["x" * 1021],
        ["x" * 1022],
        ["x" * 2000],
        [[[[1]]]],
        [{"a": {"b": {"c": 1}}}],
        [(1, 2)],
        [b"bytes"],
        [{1: 2}],
    ]
    for maxsize, maxlevels in ((1024, 3), (64, 3), (1024, 0), (1024, 1), (None, 3)):
        for sample in samples:
            assert celery_wire.plain_repr(sample, maxsize, maxlevels) == saferepr(sample, maxsize, maxlevels=maxlevels), sample


def test_publish_signals_and_routes_send_bulk_through_celery(on_redis: Harness, token: str) -> None:
    """Where Celery would do more than write the message (a before_task_publish receiver, say, that
    adds tracing headers), bulk publishes through Celery, so that it still does."""
    seen: list[str] = []

    def receiver(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
        seen.append(headers["id"] if headers else "")

    signals.before_task_publish.connect(receiver, weak=False)
    try:
        built = [jobs.echo.set(queue=f"signal-{token}").new(token, i) for i in range(3)]
        assert unijob.perform_all_later(built) == 3
    finally:
        signals.before_task_publish.disconnect(receiver)
    assert seen == [job.job_id for job in built]
    client = redis.Redis.from_url(REDIS_URL)
    assert sum(len(ms) for ms in queued_messages(client, token).values()) == 3


def test_a_stock_worker_runs_every_bulk_job_once_with_its_queue_priority_and_delay(
    configured: Harness, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What perform_all_later enqueued (pipelined on Redis, confirmed on RabbitMQ) is consumed by the
    stock worker like any message: each job once, with its arguments, on its queue, in priority
    order, and a delayed one not before its time."""
    used: list[Any] = []
    create = celery_wire.RedisWire.create
    monkeypatch.setattr(celery_wire.RedisWire, "create", lambda *args: used.append(create(*args)) or used[-1])
    queues = [f"bulk-{token}-a", f"bulk-{token}-b"]
    priorities = [-100, None, 100, 50, -50, 0, 100, -100]
    built = [
        jobs.echo.set(queue=queue, priority=priority).new(token, f"{queue}:{n}", {"n": n, "it's": [priority]})
        for queue in queues
        for n, priority in enumerate(priorities)
    ]
    delayed = jobs.echo.set(queue=queues[0], priority=100, wait=4).new(token, "delayed", {"n": -1, "it's": [100]})
    built.append(delayed)
    assert unijob.perform_all_later(iter(built), chunk_size=7) == len(built)
    assert all(job.successfully_enqueued and job.provider_job_id == job.job_id for job in built)
    assert used and all((wire is not None) == (configured.name == "celery-redis") for wire in used)  # pipelined on Redis

    try:
        done = subprocess.run(
            [python_bin("unijob"), "worker", "--burst", "--queues", ",".join(queues), "--concurrency", "1"],
            env=configured.env(), cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        with adapter().app.connection_for_write() as connection:
            for queue in queues:
                Queue(queue, Exchange(queue), queue, channel=connection.default_channel).delete()
    assert done.returncode == 0, done.stderr[-3000:]

    records = jobs.records(token)
    assert sorted(r["job_id"] for r in records) == sorted(job.job_id for job in built)  # each once
    by_id = {job.job_id: job for job in built}
    for record in records:
        job = by_id[record["job_id"]]
        assert serializers.load(record["args"]) == list(job.args[1:])
        assert (record["queue"], record["priority"]) == (job.queue, job.priority)
    assert delayed.scheduled_at is not None
    assert next(r for r in records if r["job_id"] == delayed.job_id)["at"] >= delayed.scheduled_at.timestamp()
    for queue in queues:  # the broker hands out each queue's jobs by priority (unset is 0)
        ran = [r["priority"] or 0 for r in records if r["queue"] == queue and r["job_id"] != delayed.job_id]
        assert ran == sorted(ran, reverse=True), (queue, ran)


def test_rabbitmq_bulk_reports_the_jobs_the_broker_refused(token: str) -> None:
    """RabbitMQ bulk publishes without waiting, then reads the publisher confirms: a job is enqueued
    when RabbitMQ acked it. A queue that refuses publishes once full nacks the rest: those, and
    only those, report the error. With confirm_publish, a single perform_later waits for its ack."""
    require_service("rabbitmq")
    ensure_rabbitmq_vhost(VHOST)
    queue = f"full-{token}"
    full = Queue(queue, Exchange(queue), queue, queue_arguments={"x-max-length": 3, "x-overflow": "reject-publish"})
    url = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
    try:
        with config.override(adapter="celery", url=url, imports=["tests.jobs"], config={"task_queues": [full]}):
            built = [jobs.ping.set(queue=queue).new(f"{token}-{n}") for n in range(5)]
            assert unijob.perform_all_later(built) == 3
            assert [job.successfully_enqueued for job in built] == [True] * 3 + [False] * 2
            for job in built[3:]:
                assert isinstance(job.enqueue_error, unijob.EnqueueError) and "nack" in str(job.enqueue_error)
            jobs.ping.set(queue=queue).perform_later(token)  # no confirm by default: Celery's behaviour
        with config.override(
            adapter="celery", url=url, imports=["tests.jobs"], config={"task_queues": [full]}, confirm_publish=True
        ):
            with pytest.raises(unijob.EnqueueError, match="nack"):
                jobs.ping.set(queue=queue).perform_later(token)
            assert unijob.perform_all_later(jobs.ping.set(queue=queue).new(token) for _ in range(2)) == 0
    finally:
        with Celery(broker=url, set_as_current=False).connection_for_write() as connection:
            full.bind(connection.default_channel).delete()


# --- configuration ---------------------------------------------------------------------------


def test_an_existing_celery_app_is_used_by_import_path(token: str) -> None:
    require_service("redis")
    with config.override(adapter="celery", imports=["tests.jobs"], celery_app=f"{__name__}:existing_app"):
        celery = adapter()
        assert celery.app is existing_app and celery.url == REDIS_URL
        queue = f"existing-{token}"
        jobs.echo.set(queue=queue).perform_later(token, 7)
        message = take(celery, queue)
        assert message.headers["task"] == "tests.jobs.echo" and message.decode()[0] == [token, 7]

        # `celery -A yourproject worker`: the jobs are registered when the worker imports its modules
        register_jobs(existing_app)
        existing_app.loader.import_default_modules()
        assert {"tests.jobs.echo", "tests.jobs.Flaky"} <= set(existing_app.tasks)
        assert existing_app.tasks["tests.jobs.echo"].max_retries == 0


def test_an_apps_own_copy_of_an_adopted_task_is_replaced_by_unijobs_bound_tasks_too() -> None:
    """``@app.task`` is shared: a second app of the process gets a copy of each adopted task when it
    is finalized. Its worker must run unijob's task under that name, not the plain copy (which
    Celery would keep, with a DuplicateTaskNameWarning)."""
    other = Celery("other", broker=REDIS_URL, set_as_current=False)  # not finalized yet
    with config.override(adapter="celery", imports=["tests.contrib.celery_tasks"], celery_app=f"{__name__}:existing_app"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DuplicateTaskNameWarning)
            register_tasks(adapter(), other)
        for name in ("add", "bound", "flaky"):  # bound: bind=True
            assert other.tasks[f"tests.contrib.celery_tasks.{name}"].unijob_adapter is adapter()


def test_options_are_checked() -> None:
    with pytest.raises(unijob.ConfigurationError, match="visibility_timout"):
        CeleryAdapter(url=REDIS_URL, options={"visibility_timout": 10})
    with pytest.raises(unijob.ConfigurationError, match="not both|itself"):
        CeleryAdapter(url=REDIS_URL, options={"celery_app": f"{__name__}:existing_app"})


def test_celery_app_is_found_in_the_working_directory_as_celery_a_finds_it(tmp_path: Path) -> None:
    """``celery_app="tasks:app"`` from the project folder, in a process whose ``sys.path`` does not
    start with it (a script elsewhere, a console script), as ``celery -A tasks`` finds it."""
    (tmp_path / "tasks.py").write_text(f"from celery import Celery\n\napp = Celery('tasks', broker='{REDIS_URL}')\n")
    (tmp_path / "bin").mkdir()
    probe = tmp_path / "bin" / "probe.py"
    probe.write_text("import unijob\n\nunijob.configure('celery', celery_app='tasks:app')\nprint(unijob.get_adapter().app.main)")
    env = {name: value for name, value in os.environ.items() if not name.startswith("UNIJOB_")}
    result = subprocess.run([sys.executable, str(probe)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tasks"


def test_a_backend_named_celery_is_served_by_the_command_unijob_worker_runs(tmp_path: Path) -> None:
    """A backend named like a name of celery_worker's own (``celery``) is served all the same."""
    require_service("redis")
    token = uuid.uuid4().hex
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.unijob]\nadapter = "inline"\nimports = ["tests.jobs"]\n'
        f'[tool.unijob.backends.celery]\nadapter = "celery"\nurl = "{REDIS_URL}"\n'
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("UNIJOB_")}
    env["PYTHONPATH"] = str(ROOT)
    with config.override(backends={"celery": {"adapter": "celery", "url": REDIS_URL}}):
        argv = command(config.get_adapter("celery"), [f"q-{token}"], 1)  # type: ignore[arg-type]
        assert argv[argv.index("-A") + 1] == "unijob.adapters.celery_backends:celery"
        job = jobs.ping.set(backend="celery", queue=f"q-{token}").perform_later(token)
    worker = subprocess.Popen(
        argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        (ran,) = wait_until(lambda: jobs.records(token), timeout=60, message="the job on the backend named 'celery'")
        assert ran["job_id"] == job.job_id
    finally:
        stop_process(worker)
