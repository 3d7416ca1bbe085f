"""Planted and malformed messages on every backend, with the stock workers of the session: the
worker refuses each one, logs it, and then runs the next good job. No single message stops a worker."""

from __future__ import annotations

import json
import sqlite3
import uuid
import zlib
from typing import Any

import pika
import pytest
import redis

from tests import jobs
from tests.harness import Harness, events_of, wait_until
from tests.harnesses import dramatiq_rabbitmq, dramatiq_redis
from tests.harnesses import rq as rq_harness
from unijob import config


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


def runs_the_next_good_job(harness: Harness, token: str) -> None:
    """A good job enqueued behind the planted ones runs, and the worker is still alive."""
    with harness.configured():
        jobs.ping.perform_later(token)
    harness.wait_for(token, lambda r: bool(events_of(r, "ping")), timeout=60)
    assert [r["event"] for r in harness.settle(token, 0.5)] == ["ping"]


def logged(harness: Harness, *lines: str) -> None:
    def found() -> bool:
        log = harness.log_path.read_text(errors="replace")
        return all(line in log for line in lines)

    wait_until(found, timeout=15, message=f"{lines} in the worker log")


@pytest.mark.parametrize("name", ["celery-redis", "celery-rabbitmq"])
def test_celery_refuses_a_malformed_body_non_json_bytes_and_its_own_built_in_tasks(
    name: str, harness_pool: Any, token: str
) -> None:
    harness = harness_pool.get(name)
    bodies: list[str | bytes] = ['{"not": "a list"}', "[[1]]", b"\xff\xfe not json"]
    ids = [str(uuid.uuid4()) for _ in bodies]
    with harness.configured():
        app = config.get_adapter().app  # type: ignore[attr-defined]
        with app.connection_for_write() as connection:
            producer = connection.Producer()
            for native_id, body in zip(ids, bodies, strict=True):
                headers = {"lang": "py", "task": "tests.jobs.ping", "id": native_id, "retries": 0, "timelimit": [None, None]}
                producer.publish(
                    body,
                    exchange="",
                    routing_key="default",
                    headers=headers,
                    content_type="application/json",
                    content_encoding="utf-8",
                )
        app.send_task("celery.accumulate", args=[1, 2], queue="default")  # Celery's own, not a job
    runs_the_next_good_job(harness, token)
    logged(
        harness,
        *(f"Refused a malformed message for 'tests.jobs.ping' (native id {native_id})" for native_id in ids),
        "Received unregistered task of type 'celery.accumulate'",
    )


def test_dramatiq_on_redis_dead_letters_what_it_cannot_decode_or_acknowledge(harness_pool: Any, token: str) -> None:
    harness = harness_pool.get("dramatiq-redis")
    client = redis.Redis.from_url(dramatiq_redis.URL)
    unacknowledgeable = {
        "queue_name": "default",
        "actor_name": "tests.jobs.ping",
        "args": [uuid.uuid4().hex],
        "kwargs": {},
        "options": {},  # no redis_message_id: Dramatiq could never acknowledge it
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 0,
    }
    planted = {f"poison-{token}-1": b"\xff not json", f"poison-{token}-2": json.dumps(unacknowledgeable).encode()}
    for redis_id, data in planted.items():
        client.hset("dramatiq:default.msgs", redis_id, data)
        client.rpush("dramatiq:default", redis_id)
    runs_the_next_good_job(harness, token)
    wait_until(
        lambda: all(client.zscore("dramatiq:default.XQ", redis_id) for redis_id in planted), timeout=15, message="dead letters"
    )
    assert not any(client.hexists("dramatiq:default.msgs", redis_id) for redis_id in planted)  # nothing left to stall on
    assert jobs.records(unacknowledgeable["args"][0]) == []
    logged(harness, "Refused a message on Dramatiq queue 'default': it is not a Dramatiq message", "it has no redis_message_id")


def test_dramatiq_on_rabbitmq_refuses_undecodable_and_malformed_messages(harness_pool: Any, token: str) -> None:
    harness = harness_pool.get("dramatiq-rabbitmq")
    malformed = {
        "queue_name": "default",
        "actor_name": "tests.jobs.ping",
        "args": "not a list",
        "kwargs": {},
        "options": {"unijob": {"v": 1, "id": "x", "queue": "default", "executions": 1e999}},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 0,
    }
    connection = pika.BlockingConnection(pika.URLParameters(dramatiq_rabbitmq.URL))
    try:
        channel = connection.channel()
        for body in (b"\xff not json", json.dumps(malformed).encode()):
            channel.basic_publish(exchange="", routing_key="default", body=body, properties=pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()
    runs_the_next_good_job(harness, token)
    logged(harness, "Failed to decode message", "Refused a message for 'tests.jobs.ping'")


def test_rq_refuses_an_unreadable_job_and_malformed_arguments(harness_pool: Any, token: str) -> None:
    harness = harness_pool.get("rq")
    client = redis.Redis.from_url(rq_harness.HARNESS.url)
    planted = {
        f"unreadable-{token}": zlib.compress(b"\xff not json"),
        f"malformed-{token}": zlib.compress(json.dumps(["tests.jobs.ping", None, "not a list", {}]).encode()),
        f"meta-{token}": zlib.compress(json.dumps(["tests.jobs.ping", None, [token], {}]).encode()),
    }
    for job_id, data in planted.items():
        meta = json.dumps({"unijob": {"v": 1, "id": job_id, "queue": "default", "executions": -3}})
        client.hset(f"rq:job:{job_id}", mapping={"data": data, "status": "queued", "origin": "default", "meta": meta})
        client.rpush("rq:queue:default", job_id)
    runs_the_next_good_job(harness, token)
    logged(harness, f"Refused a message for 'tests.jobs.ping' (native id meta-{token})")


def test_huey_refuses_undecodable_and_malformed_messages(harness_pool: Any, token: str) -> None:
    harness = harness_pool.get("huey-sqlite")
    planted = [
        b"\xff not json",
        json.dumps({"id": str(uuid.uuid4()), "name": "tests.jobs.ping", "args": 5, "kwargs": {}}).encode(),
        json.dumps(
            {
                "id": "x",
                "name": "tests.jobs.ping",
                "args": [token],
                "kwargs": {},
                "unijob": {"v": 1, "queue": "default", "priority": 10**9},
            }
        ).encode(),
    ]
    with sqlite3.connect(harness.path, timeout=10) as conn:  # type: ignore[attr-defined]
        conn.executemany("insert into task (queue, data, priority) values ('unijob', ?, 100)", [(data,) for data in planted])
    runs_the_next_good_job(harness, token)
    logged(harness, "Refused a message for 'tests.jobs.ping' (native id x)")
