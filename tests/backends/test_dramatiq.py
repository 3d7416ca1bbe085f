"""Dramatiq-specific behaviour, on real Redis and RabbitMQ with the stock ``dramatiq`` worker.

Jobs that must stay on the broker for inspection go to a private queue, which the session's
stock workers do not consume (a Dramatiq worker consumes only the queues its actors declare).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pika
import pytest
import redis
from dramatiq import Message
from dramatiq.encoder import JSONEncoder
from dramatiq.message import get_encoder, set_encoder
from dramatiq.middleware import Middleware

import unijob
from tests import jobs
from tests.harness import ROOT, Harness, PrivateRedis, events_of, free_port, wait_until
from tests.harnesses import dramatiq_rabbitmq, dramatiq_redis
from unijob import config, registry, serializers
from unijob.adapters.dramatiq import DramatiqAdapter
from unijob.adapters.dramatiq_wire import encode_fields
from unijob.adapters.dramatiq_worker import command, command_line_queues, declare_actors, pending
from unijob.envelope import Envelope

REDIS_URL = dramatiq_redis.URL
AMQP_URL = dramatiq_rabbitmq.URL


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def queue() -> str:
    """A queue no stock worker consumes, so what is enqueued there stays for inspection."""
    return f"private_{uuid.uuid4().hex[:12]}"


def configured(harness: Harness) -> Iterator[DramatiqAdapter]:
    with harness.configured():
        adapter = config.get_adapter()
        assert isinstance(adapter, DramatiqAdapter)
        yield adapter


@pytest.fixture
def on_redis(harness_pool: Any) -> Iterator[DramatiqAdapter]:
    """The dramatiq-redis backend with its stock worker running (started first: it empties db 3)."""
    yield from configured(harness_pool.get("dramatiq-redis"))


@pytest.fixture
def on_rabbitmq(harness_pool: Any) -> Iterator[DramatiqAdapter]:
    yield from configured(harness_pool.get("dramatiq-rabbitmq"))


@pytest.fixture(params=["dramatiq-redis", "dramatiq-rabbitmq"])
def on_either(request: pytest.FixtureRequest, harness_pool: Any) -> Iterator[DramatiqAdapter]:
    yield from configured(harness_pool.get(request.param))


def redis_messages(queue: str) -> list[dict[str, Any]]:
    """The messages waiting on a Dramatiq queue in Redis, in queue order, as the JSON on the wire."""
    client = redis.Redis.from_url(REDIS_URL)
    ids = client.lrange(f"dramatiq:{queue}", 0, -1)
    return [json.loads(data or b"null") for data in client.hmget(f"dramatiq:{queue}.msgs", ids)] if ids else []


def amqp_messages(queue: str) -> list[tuple[Any, dict[str, Any]]]:
    """Take every message off a RabbitMQ queue, in delivery order: (properties, JSON body)."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        taken: list[tuple[Any, dict[str, Any]]] = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, json.loads(body)))
    finally:
        connection.close()


# --- the message on the wire --------------------------------------------------------------------------


def test_a_job_is_an_ordinary_dramatiq_message_on_redis(on_redis: DramatiqAdapter, token: str, queue: str) -> None:
    job = jobs.echo.set(queue=queue).perform_later(token, 1, "two", flag=True)

    (wire,) = redis_messages(queue)
    assert wire["actor_name"] == "tests.jobs.echo"  # the actor is named after the job
    assert wire["queue_name"] == queue
    assert wire["args"] == [token, 1, "two"] and wire["kwargs"] == {"flag": True}  # plain JSON stays plain
    assert wire["message_id"] == job.job_id == job.provider_job_id
    meta = wire["options"]["unijob"]
    assert (meta["id"], meta["job"], meta["queue"], meta["executions"]) == (job.job_id, "tests.jobs.echo", queue, 0)
    message = Message.decode(json.dumps(wire).encode())  # Dramatiq's own decoder reads it
    assert (message.actor_name, message.args) == ("tests.jobs.echo", (token, 1, "two"))


def test_a_job_is_an_ordinary_dramatiq_message_on_rabbitmq(on_rabbitmq: DramatiqAdapter, token: str, queue: str) -> None:
    job = jobs.echo.set(queue=queue).perform_later(token, 1, flag=True)

    ((properties, wire),) = amqp_messages(queue)
    assert (wire["actor_name"], wire["args"], wire["kwargs"]) == ("tests.jobs.echo", [token, 1], {"flag": True})
    assert wire["message_id"] == job.job_id and wire["options"]["unijob"]["id"] == job.job_id
    assert properties.delivery_mode == 2 and properties.priority is None  # persistent; no priority asked


def test_a_delay_uses_dramatiqs_delay_queue_with_an_eta(on_redis: DramatiqAdapter, token: str, queue: str) -> None:
    before = int(time.time() * 1000)  # Dramatiq's eta is whole milliseconds
    job = jobs.echo.set(queue=queue, wait=60).perform_later(token)

    assert redis_messages(queue) == []
    (wire,) = redis_messages(f"{queue}.DQ")
    assert wire["message_id"] == job.job_id
    assert before + 60_000 <= wire["options"]["eta"] <= time.time() * 1000 + 60_001
    assert pending(on_redis, [queue], within=5) == 0  # not due soon
    assert pending(on_redis, [queue], within=61) == 1
    redis.Redis.from_url(REDIS_URL).hset(f"dramatiq:{queue}.DQ.msgs", "unreadable", b"not json")
    assert pending(on_redis, [queue], within=5) == 1  # counted, rather than stopping a burst worker early


@pytest.mark.parametrize("harness_name", ["dramatiq-redis", "dramatiq-rabbitmq"])
def test_a_delay_longer_than_the_broker_holds_travels_in_hops_and_runs_once(
    harness_name: str, harness_pool: Any, token: str
) -> None:
    """A delay beyond ``max_delay`` (an hour on Redis, 15 min on RabbitMQ by default) is handed to
    Dramatiq in hops: the message arrives early, the worker sends it on, and only the last hop runs
    the job, once, not before its time."""
    harness = harness_pool.get(harness_name)
    with config.override(**{**harness.configuration(), "max_delay": 1}):
        adapter = config.get_adapter()
        assert isinstance(adapter, DramatiqAdapter) and adapter.capabilities.max_hold == dt.timedelta(seconds=1)
        job = jobs.echo.set(wait=3).perform_later(token, "hopped")
    assert job.scheduled_at is not None
    (run,) = harness.wait_for(token, lambda r: len(r) >= 1, timeout=30)
    assert run["at"] >= job.scheduled_at.timestamp()
    assert run["job_id"] == job.job_id and run["executions"] == 1
    assert len(harness.settle(token, 1.5)) == 1


def test_the_first_hop_is_handed_to_dramatiq_with_the_short_delay(harness_pool: Any, token: str, queue: str) -> None:
    with config.override(**{**harness_pool.get("dramatiq-redis").configuration(), "max_delay": 1}):
        before = time.time() * 1000
        job = jobs.echo.set(queue=queue, wait=3600).perform_later(token)
    (wire,) = redis_messages(f"{queue}.DQ")
    assert before + 1000 <= wire["options"]["eta"] <= time.time() * 1000 + 1001  # the next hop, not the job's time
    assert wire["options"]["unijob"]["scheduled_at"] == job.scheduled_at.isoformat()  # what the worker checks on arrival


def test_a_retry_gets_its_own_native_id(on_redis: DramatiqAdapter, queue: str) -> None:
    envelope = Envelope(job="tests.jobs.ping", job_id=str(uuid.uuid4()), args=["x"], kwargs={}, queue=queue, executions=2)

    assert on_redis.enqueue(envelope) == f"{envelope.job_id}-2"
    (wire,) = redis_messages(queue)
    assert wire["message_id"] == f"{envelope.job_id}-2" and wire["options"]["unijob"]["id"] == envelope.job_id


# --- priority -------------------------------------------------------------------------------------------


def test_priority_maps_onto_rabbitmq_priorities(on_rabbitmq: DramatiqAdapter) -> None:
    assert on_rabbitmq.capabilities.priority and on_rabbitmq.max_priority == 10
    assert [on_rabbitmq.broker_priority(p) for p in (-100, -91, -90, 0, 49, 50, 99, 100)] == [0, 0, 1, 5, 7, 8, 10, 10]


def test_rabbitmq_delivers_higher_priorities_first(on_rabbitmq: DramatiqAdapter, token: str, queue: str) -> None:
    sent = {p: jobs.echo.set(queue=queue, priority=p).perform_later(token, p).job_id for p in (-100, 0, 100, 50)}

    taken = amqp_messages(queue)
    assert [wire["message_id"] for _, wire in taken] == [sent[100], sent[50], sent[0], sent[-100]]
    assert [properties.priority for properties, _ in taken] == [10, 8, 5, 0]
    assert [wire["options"]["broker_priority"] for _, wire in taken] == [10, 8, 5, 0]


def test_priority_is_refused_on_redis(on_redis: DramatiqAdapter, token: str) -> None:
    assert not on_redis.capabilities.priority
    with pytest.raises(unijob.UnsupportedOptionError, match="dramatiq.*priority"):
        jobs.echo.set(priority=10).perform_later(token)


def test_max_priority_zero_turns_priority_off_on_rabbitmq() -> None:
    adapter = DramatiqAdapter(url=AMQP_URL, options={"max_priority": 0})
    assert not adapter.capabilities.priority


# --- safety -----------------------------------------------------------------------------------------------


def test_a_forged_message_for_an_undeclared_actor_is_refused(on_either: DramatiqAdapter, token: str, tmp_path: Path) -> None:
    marker = tmp_path / "forged-ran"
    forged: Message[Any] = Message(queue_name="default", actor_name="os.system", args=(f"touch {marker}",), kwargs={}, options={})
    on_either.broker.enqueue(forged)
    jobs.ping.perform_later(token)  # queued behind it on the same queue

    wait_until(lambda: events_of(jobs.records(token), "ping"), message="ping behind the forged message")
    assert not marker.exists()
    dead = dead_letters("default", on_either)
    assert forged.message_id in dead  # Dramatiq refused it ("undefined actor") into the dead-letter queue


def dead_letters(queue: str, adapter: DramatiqAdapter) -> set[str]:
    if adapter.kind == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        return {json.loads(data)["message_id"] for data in client.hvals(f"dramatiq:{queue}.XQ.msgs")}
    return {wire["message_id"] for _, wire in amqp_messages(f"{queue}.XQ")}


def test_the_actor_names_the_job_whatever_the_options_say(on_redis: DramatiqAdapter, token: str) -> None:
    meta = Envelope(job="tests.unregistered.not_a_job", job_id=str(uuid.uuid4()), args=[], kwargs={}, queue="default").meta()
    options = {"unijob": meta}
    message: Message[Any] = Message(queue_name="default", actor_name="tests.jobs.ping", args=(token,), kwargs={}, options=options)
    on_redis.broker.enqueue(message)

    (ran,) = wait_until(lambda: jobs.records(token))
    assert ran["event"] == "ping" and ran["job_id"] == meta["id"]


def test_a_plain_dramatiq_message_runs_as_a_fresh_job(on_redis: DramatiqAdapter, token: str) -> None:
    message: Message[Any] = Message(queue_name="mail", actor_name="tests.jobs.echo", args=(token, 7), kwargs={}, options={})
    on_redis.broker.enqueue(message)  # what actor.send() does in plain Dramatiq code

    (ran,) = wait_until(lambda: jobs.records(token))
    assert (ran["job_id"], ran["queue"], ran["executions"]) == (message.message_id, "mail", 1)
    assert serializers.load(ran["args"]) == [7]


def test_a_job_unijob_gave_up_on_fails_once_in_dramatiq(on_redis: DramatiqAdapter, token: str) -> None:
    job = jobs.AlwaysFails.perform_later(token)

    wait_until(lambda: events_of(jobs.records(token), "after_discard"), message="the discard")
    client = redis.Redis.from_url(REDIS_URL)

    def dead() -> list[dict[str, Any]]:
        found = [json.loads(data) for data in client.hvals("dramatiq:default.XQ.msgs")]
        return [wire for wire in found if wire["options"].get("unijob", {}).get("id") == job.job_id]

    (failed,) = wait_until(dead, message="the failed message in the dead-letter queue")
    assert failed["message_id"] == f"{job.job_id}-1"  # unijob's retry, which raised for good
    # "<queue>.msgs" holds every message from enqueue to ack, also one a worker holds for its delay.
    stored = [json.loads(data) for key in ("default", "default.DQ") for data in client.hvals(f"dramatiq:{key}.msgs")]
    assert not [wire for wire in stored if wire["options"].get("unijob", {}).get("id") == job.job_id]  # no native retry
    assert len(events_of(jobs.records(token), "attempt")) == 2  # unijob's attempts=2


def test_worker_actors_have_native_retries_off() -> None:
    adapter = DramatiqAdapter(url=REDIS_URL, options={"actor_options": {"time_limit": 60_000, "max_retries": 5}})
    try:
        broker = declare_actors(adapter, registry.registered(), ["extra_queue"])
        echo = broker.get_actor("tests.jobs.echo")
        assert (echo.queue_name, echo.options["max_retries"], echo.options["time_limit"]) == ("mail", 0, 60_000)
        assert {"default", "mail", "extra_queue"} <= broker.get_declared_queues()
    finally:
        adapter.close()


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_an_unreachable_broker_raises_enqueue_error_without_the_password(scheme: str, token: str) -> None:
    url = (
        f"{scheme}://guest:s3cret@127.0.0.1:{free_port()}/x" if scheme == "amqp" else f"redis://:s3cret@127.0.0.1:{free_port()}/3"
    )
    with config.override(adapter="dramatiq", url=url):
        started = time.monotonic()
        with pytest.raises(unijob.EnqueueError, match=r"Dramatiq at .*\*\*\*@127\.0\.0\.1") as raised:
            jobs.echo.perform_later(token)
        assert "s3cret" not in str(raised.value)
        batch = [jobs.echo.new(token, n) for n in range(3)]
        assert unijob.perform_all_later(batch) == 0
        assert all(isinstance(job.enqueue_error, unijob.EnqueueError) for job in batch)
        assert time.monotonic() - started < 10


def test_an_invalid_queue_name_or_option_is_refused(on_redis: DramatiqAdapter, token: str) -> None:
    with pytest.raises(unijob.EnqueueError, match="queue name 'no spaces'"):
        jobs.echo.set(queue="no spaces").perform_later(token)
    with pytest.raises(unijob.ConfigurationError, match="unknown option.*for the dramatiq adapter"):
        DramatiqAdapter(url=REDIS_URL, options={"max_retries": 3})


# --- bulk -----------------------------------------------------------------------------------------------


def test_bulk_on_redis_is_one_pipeline_with_each_job_reported(on_redis: DramatiqAdapter, token: str, queue: str) -> None:
    batch = [jobs.echo.set(queue=queue).new(token, n) for n in range(5)] + [jobs.echo.set(queue="bad queue").new(token, "bad")]
    later = jobs.echo.set(queue=queue, wait=30).new(token, "later")

    assert unijob.perform_all_later([*batch, later]) == 6
    assert [job.successfully_enqueued for job in batch] == [True] * 5 + [False]
    assert isinstance(batch[-1].enqueue_error, unijob.EnqueueError)
    assert [wire["message_id"] for wire in redis_messages(queue)] == [job.job_id for job in batch[:5]]
    assert [wire["message_id"] for wire in redis_messages(f"{queue}.DQ")] == [later.job_id]


def test_bulk_on_rabbitmq_reports_a_message_for_a_deleted_queue(on_rabbitmq: DramatiqAdapter, token: str, queue: str) -> None:
    jobs.echo.set(queue=queue).perform_later(token, "declares the queue")
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    connection.channel().queue_delete(queue)  # the broker still believes it exists
    connection.close()
    batch = [jobs.echo.set(queue=queue if n == 1 else "default").new(token, n) for n in range(3)]

    assert unijob.perform_all_later(batch) == 2
    assert [job.successfully_enqueued for job in batch] == [True, False, True]
    assert "gone" in str(batch[1].enqueue_error)
    jobs.echo.set(queue=queue).perform_later(token, "redeclared")  # the next enqueue declares it again
    assert [wire["args"][1] for _, wire in amqp_messages(queue)] == ["redeclared"]


@pytest.fixture(params=["dramatiq-redis", "dramatiq-rabbitmq"])
def harness_of_either(request: pytest.FixtureRequest, harness_pool: Any) -> Iterator[Harness]:
    harness: Harness = harness_pool.get(request.param)
    with harness.configured():
        yield harness


def test_the_stock_worker_runs_every_bulk_job_once_with_its_arguments_queue_and_delay(
    harness_of_either: Harness, token: str
) -> None:
    amqp = harness_of_either.name == "dramatiq-rabbitmq"

    def made() -> Iterator[unijob.Job]:  # a generator, consumed in chunks of 4 across queues
        for i in range(10):
            yield jobs.echo.new(token, i, kind="mail")  # echo's queue is mail
            yield jobs.echo.set(queue="default").new(token, i, kind="default")
            if i % 3 == 0:
                yield jobs.echo.set(queue="default", wait=1.5).new(token, i, kind="delayed")
            if amqp and i % 4 == 0:
                yield jobs.echo.set(queue="default", priority=50).new(token, i, kind="priority")

    batch = list(made())  # kept, to compare with what ran
    total = len(batch)
    assert unijob.perform_all_later(iter(batch), chunk_size=4) == total

    harness_of_either.wait_for(token, lambda r: len(r) >= total, timeout=60)
    runs = harness_of_either.settle(token, 1.0)  # nothing runs twice
    assert len(runs) == total
    by_id = {run["job_id"]: run for run in runs}
    assert set(by_id) == {job.job_id for job in batch}
    for job in batch:
        run = by_id[job.job_id]
        assert serializers.load(run["args"]) == list(job.args[1:])
        assert serializers.load(run["kwargs"]) == job.kwargs
        assert (run["queue"], run["executions"], run["priority"]) == (job.queue, 1, job.priority)
        if job.kwargs["kind"] == "delayed":
            assert job.scheduled_at is not None and run["at"] >= job.scheduled_at.timestamp()  # never early


def _stored(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """A Redis queue as Dramatiq stores it: the ids in the list, in order, with their hash entries."""
    ids = cast(list[bytes], client.lrange(f"dramatiq:{queue}", 0, -1))
    data = cast(list[bytes | None], client.hmget(f"dramatiq:{queue}.msgs", ids)) if ids else []
    assert client.hlen(f"dramatiq:{queue}.msgs") == len(ids)  # no entry without its id, nor the reverse
    found = []
    for redis_id, raw in zip(ids, data, strict=True):
        assert raw is not None
        wire = json.loads(raw)
        assert wire["options"]["redis_message_id"] == redis_id.decode()
        found.append(wire)
    return found


def _comparable(wire: dict[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in wire["options"].items() if k not in ("redis_message_id", "eta")}
    return {**wire, "options": options, "message_timestamp": None}


def test_bulk_writes_what_dramatiqs_enqueue_script_writes(on_redis: DramatiqAdapter, token: str, queue: str) -> None:
    broker: Any = on_redis.broker
    client = redis.Redis.from_url(REDIS_URL)
    now = dt.datetime.now(dt.timezone.utc)
    later = now + dt.timedelta(minutes=5)

    def envelopes(scheduled_at: dt.datetime | None) -> list[Envelope]:
        return [
            Envelope(
                job="tests.jobs.echo",
                job_id=str(uuid.uuid4()),
                args=[token, i, "x" * 40 * i, {"k": [i, None]}],
                kwargs={"flag": i % 2 == 0},
                queue=queue,
                enqueued_at=now,
                scheduled_at=scheduled_at,
            )
            for i in range(3)
        ]

    ours = theirs = envelopes(None) + envelopes(later)  # the same jobs, enqueued both ways
    client.delete("dramatiq:__heartbeats__")
    assert all(outcome.error is None for outcome in on_redis.enqueue_all(ours))
    assert client.zscore("dramatiq:__heartbeats__", broker.broker_id) is not None  # as the script's ZADD
    for envelope in theirs:  # Dramatiq's own RedisBroker.enqueue, which runs the script
        message, delay = on_redis.message(envelope)
        plain = message.copy(queue_name=queue, options={"redis_message_id": None, "eta": None})
        broker.enqueue(plain, delay=delay)

    now_queue, delayed_queue = _stored(client, queue), _stored(client, f"{queue}.DQ")
    assert [w["message_id"] for w in now_queue] == [e.job_id for e in ours[:3] + theirs[:3]]  # in order
    assert [w["message_id"] for w in delayed_queue] == [e.job_id for e in ours[3:] + theirs[3:]]
    for mine, dramatiqs in zip(now_queue[:3] + delayed_queue[:3], now_queue[3:] + delayed_queue[3:], strict=True):
        assert _comparable(mine) == _comparable(dramatiqs)
        assert mine["message_timestamp"] <= dramatiqs["message_timestamp"]
    for wire in delayed_queue[:3]:
        assert wire["options"]["eta"] == math.ceil(later.timestamp() * 1000)  # exactly when it is due, never early
        assert wire["queue_name"] == f"{queue}.DQ"

    # Dramatiq's own consumer (its fetch script, as in the stock worker) takes each once, then nothing.
    broker.declare_queue(queue)
    consumer = broker.consume(queue, prefetch=10, timeout=100)
    try:
        taken = [next(consumer) for _ in range(6)]
        assert [m.message_id for m in taken] == [e.job_id for e in ours[:3] + theirs[:3]]
        assert taken[1].args == (token, 1, "x" * 40, {"k": [1, None]}) and taken[1].kwargs == {"flag": False}
        for message in taken:
            consumer.ack(message)
        assert next(consumer) is None
    finally:
        consumer.close()
    assert client.hlen(f"dramatiq:{queue}.msgs") == 0  # all acknowledged


def test_bulk_reports_per_queue_what_redis_refused(on_redis: DramatiqAdapter, token: str, queue: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    broken = f"{queue}_broken"
    client.set(f"dramatiq:{broken}", "not a list")  # RPUSH to it fails with WRONGTYPE, inside the transaction
    batch = [jobs.echo.set(queue=broken if n % 2 else queue).new(token, n) for n in range(6)]

    assert unijob.perform_all_later(batch) == 3
    assert [job.successfully_enqueued for job in batch] == [True, False] * 3
    assert "WRONGTYPE" in str(batch[1].enqueue_error)
    assert [wire["message_id"] for wire in redis_messages(queue)] == [job.job_id for job in batch[::2]]


def test_enqueue_middleware_hooks_run_on_the_fast_paths() -> None:
    seen: list[tuple[str, str, int | None]] = []

    class Watch(Middleware):
        def before_enqueue(self, broker: Any, message: Message[Any], delay: int | None) -> None:
            seen.append(("before", message.message_id, delay))
            message.options["watched"] = True  # an option a middleware adds is on the wire

        def after_enqueue(self, broker: Any, message: Message[Any], delay: int | None) -> None:
            seen.append(("after", message.message_id, delay))

    queue = f"private_{uuid.uuid4().hex[:12]}"
    adapter = DramatiqAdapter(url=REDIS_URL)
    try:
        with config.override(adapter):
            quiet = jobs.echo.set(queue=queue).perform_later("before the middleware")
            adapter.broker.add_middleware(Watch())
            one = jobs.echo.set(queue=queue).perform_later("one")
            many = [jobs.echo.set(queue=queue).new("many", n) for n in range(3)]
            assert unijob.perform_all_later(many) == 3
    finally:
        adapter.close()
    ids = [one.job_id] + [job.job_id for job in many]
    bulk_hooks = [("before", i, None) for i in ids[1:]] + [("after", i, None) for i in ids[1:]]
    assert seen == [("before", one.job_id, None), ("after", one.job_id, None), *bulk_hooks]
    wire = {w["message_id"]: w for w in redis_messages(queue)}
    assert "watched" not in wire[quiet.job_id]["options"]
    assert all(wire[i]["options"]["watched"] is True for i in ids)


def test_the_fast_encoding_is_dramatiqs_encoding(on_redis: DramatiqAdapter, token: str) -> None:
    envelope = Envelope(
        job="tests.jobs.echo", job_id=str(uuid.uuid4()), args=[token, "é", 1.5, None], kwargs={"k": [1]}, queue="q"
    )
    fields, _ = on_redis.fields(envelope)
    assert encode_fields(fields) == Message(**fields).encode()

    class Custom(JSONEncoder):
        def encode(self, data: dict[str, Any]) -> bytes:
            return b"custom:" + super().encode(data)

    previous = get_encoder()
    set_encoder(Custom())
    try:
        assert encode_fields(fields) == Message(**fields).encode()  # Dramatiq's own path, with the custom encoder
        assert encode_fields(fields).startswith(b"custom:")
    finally:
        set_encoder(previous)


def test_bulk_reports_which_jobs_were_enqueued_when_redis_dies_midway(private_redis: PrivateRedis, token: str) -> None:
    url = private_redis.url
    made: list[unijob.Job] = []
    seen_before_death: list[int] = []

    def generate() -> Iterator[unijob.Job]:
        for n in range(15):
            if n == 5:  # the first chunk was sent: check it is there, then kill the broker
                seen_before_death.append(private_redis.client.llen("dramatiq:mail"))
                private_redis.kill()
            job = jobs.echo.new(token, n)
            made.append(job)
            yield job

    with config.override(adapter="dramatiq", url=url):
        assert unijob.perform_all_later(generate(), chunk_size=5) == 5
    assert seen_before_death == [5]
    assert [job.successfully_enqueued for job in made] == [True] * 5 + [False] * 10
    assert all(isinstance(job.enqueue_error, unijob.EnqueueError) for job in made[5:])
    assert "Dramatiq at redis://127.0.0.1" in str(made[5].enqueue_error)


# --- the worker command ---------------------------------------------------------------------------------


def test_worker_argv_is_the_stock_dramatiq_command() -> None:
    adapter = DramatiqAdapter(url=REDIS_URL)
    argv = command(adapter, ["default", "mail"], 2)
    assert Path(argv[0]).name == "dramatiq"
    assert argv[1:] == ["unijob.adapters.dramatiq_worker", "--processes", "1", "--threads", "2", "--queues", "default", "mail"]
    other = command(DramatiqAdapter(alias="reports", url=REDIS_URL), [], None)
    assert other[1:] == ["unijob.adapters.dramatiq_backends:reports"]
    assert command_line_queues(["/venv/bin/dramatiq", "mod", "-Q", "a", "b", "--threads", "2", "--queues=c"]) == ["a", "b", "c"]
    assert command_line_queues(["pytest", "-Q", "a"]) == []


def test_unijob_worker_burst_drains_a_queue_and_exits(on_redis: DramatiqAdapter, token: str, queue: str) -> None:
    for n in range(5):
        jobs.echo.set(queue=queue).perform_later(token, n)
    jobs.echo.set(queue=queue, wait=1).perform_later(token, "delayed")
    assert pending(on_redis, [queue], within=5) == 6

    env = {**dramatiq_redis.HARNESS.env(), "UNIJOB_URL": REDIS_URL}
    unijob_bin = str(Path(sys.executable).with_name("unijob"))
    argv = [unijob_bin, "worker", "--burst", "-q", queue, "-c", "1"]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, timeout=90)

    assert done.returncode == 0, done.stderr.decode()[-3000:]
    records = jobs.records(token)
    assert sorted(str(serializers.load(r["args"])[0]) for r in records) == ["0", "1", "2", "3", "4", "delayed"]
    assert pending(on_redis, [queue], within=5) == 0


def test_a_delayed_job_waits_at_least_its_delay(on_redis: DramatiqAdapter, token: str) -> None:
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1.5)
    jobs.echo.set(wait_until=at).perform_later(token, "at")

    (ran,) = wait_until(lambda: jobs.records(token), timeout=20)
    assert ran["at"] >= at.timestamp()


def test_a_named_backend_is_served_whatever_its_name(harness_pool: Any, token: str, tmp_path: Path) -> None:
    """Even one named like a name of dramatiq_worker's own (its ``import dramatiq``)."""
    harness_pool.get("dramatiq-redis")  # empties db 3 first, if this test runs alone
    (tmp_path / "pyproject.toml").write_text(
        '[tool.unijob]\nadapter = "inline"\nimports = ["tests.jobs"]\n'
        f'[tool.unijob.backends.dramatiq]\nadapter = "dramatiq"\nurl = "{REDIS_URL}"\nnamespace = "unijob_reports"\n'
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("UNIJOB_")}
    env["PYTHONPATH"] = str(ROOT)
    argv = command(DramatiqAdapter(alias="dramatiq", url=REDIS_URL), [], 1)
    worker = subprocess.Popen(
        argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        with config.override(backends={"dramatiq": {"adapter": "dramatiq", "url": REDIS_URL, "namespace": "unijob_reports"}}):
            job = jobs.ping.set(backend="dramatiq").perform_later(token)
        (ran,) = wait_until(lambda: jobs.records(token), timeout=30, message="the job on the backend named 'dramatiq'")
        assert ran["job_id"] == job.job_id
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)
