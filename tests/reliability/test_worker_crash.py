"""A worker SIGKILLed while it runs a job of a batch, on every backend: what happens to the job is
what docs/reliability.md promises, and the batch finishes either way.

Each case runs its own stock worker (the documented command) on a private broker (a redis-server
of its own, or a RabbitMQ vhost), kills its whole process group in the middle of the job, then
starts a second worker, as an operator would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

import unijob
from tests import jobs
from tests.harness import Harness, PrivateRedis, ensure_rabbitmq_vhost, events_of, python_bin, require_service
from tests.harnesses.huey_sqlite import CONSUMER_ARGS, TEST_DIR
from unijob.adapters.rq_worker import Job as RQJob

BATCH_STORE = "redis://127.0.0.1:6379/13"  # for the RabbitMQ cases


class CrashHarness(Harness):
    """One backend for one crash case: a worker that can be killed and started again."""

    def __init__(self, name: str, adapter: str, url: str | None, options: dict[str, Any], argv: list[str]) -> None:
        self.name, self.adapter, self.url, self.options, self.argv = name, adapter, url, options, argv
        self.services = ("redis", "rabbitmq") if url and url.startswith("amqp") else ("redis",)

    def worker_argv(self) -> list[str]:
        return self.argv

    def kill(self) -> None:
        """SIGKILL the worker's whole process group: no warm shutdown, no acknowledgement."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log_file.close()
        self.process = None


def celery_argv() -> list[str]:
    return [python_bin("celery"), "-A", "unijob.adapters.celery_worker", "worker", "--queues", "default,crash",
            "--concurrency", "1", "--loglevel", "INFO", "--hostname", f"crash-{uuid.uuid4().hex[:8]}@%h"]  # fmt: skip


def rq_argv(url: str) -> list[str]:
    return [python_bin("rq"), "worker", "--with-scheduler", "--url", url, "--worker-class", "unijob.adapters.rq_worker.Worker",
            "--job-class", "unijob.adapters.rq_worker.Job", "--serializer", "json", "default", "crash"]  # fmt: skip


DRAMATIQ = [python_bin("dramatiq"), "unijob.adapters.dramatiq_worker", "--processes", "1", "--threads", "2"]
DRAMATIQ_QUEUES = ["--queues", "default", "crash"]


@contextlib.contextmanager
def vhost(name: str) -> Iterator[str]:
    require_service("rabbitmq")
    subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, check=False)
    ensure_rabbitmq_vhost(name)
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, check=False)


def requeue_abandoned(url: str) -> Callable[[], None]:
    """What an RQ worker's maintenance does once the killed worker's entry in the started registry
    has expired (its heartbeat TTL, over a minute): here at once, with unijob's job class."""

    def cleanup() -> None:
        registry = StartedJobRegistry("crash", connection=redis.Redis.from_url(url), job_class=RQJob, serializer=JSONSerializer)
        registry.cleanup(timestamp=time.time() + 3600)

    return cleanup


def kill_mid_batch(harness: Harness, token: str, after_kill: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Start a worker, run a batch of one job that hangs, kill the worker mid-job, start another;
    returns the records once the batch's on_finish ran (or fails after a bound)."""
    assert isinstance(harness, CrashHarness)
    harness.start()
    try:
        with harness.configured(), unijob.batch(on_finish=jobs.batch_callback, token=token):
            jobs.killed_once.perform_later(token)
        harness.wait_for(token, lambda r: bool(events_of(r, "started")), timeout=60)
        harness.kill()
        if after_kill is not None:
            with harness.configured():  # as in a worker of this backend
                after_kill()
        harness.start()
        return harness.wait_for(token, lambda r: bool(events_of(r, "callback")), timeout=90)
    finally:
        harness.stop()


def finished(records: list[dict[str, Any]]) -> dict[str, Any]:
    (callback,) = events_of(records, "callback")
    assert callback["callback_event"] == "finish" and callback["total"] == 1 and callback["pending"] == 0
    return callback


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


def test_celery_on_rabbitmq_runs_the_job_again_at_once(token: str) -> None:
    """acks_late: the message was not acknowledged, so RabbitMQ delivers it again when the dead
    worker's connection closes (at least once)."""
    with vhost("unijob_crash_celery") as url:
        harness = CrashHarness("crash-celery-rabbitmq", "celery", url, {"store": BATCH_STORE}, celery_argv())
        records = kill_mid_batch(harness, token)
    assert len(events_of(records, "started")) == 2 and len(events_of(records, "done")) == 1
    assert finished(records)["succeeded"] == 1


def test_celery_on_redis_runs_the_job_again_after_the_visibility_timeout(private_redis: PrivateRedis, token: str) -> None:
    """acks_late: Redis puts the unacknowledged message back once ``visibility_timeout`` has passed
    (here 4 s; an hour by default) at kombu's next sweep (here every second; every 100 s by
    default), and the next worker runs it (at least once)."""
    sweep = {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
    options = {"visibility_timeout": 4, "transport_options": sweep}
    harness = CrashHarness("crash-celery-redis", "celery", private_redis.url, options, celery_argv())
    records = kill_mid_batch(harness, token)
    assert len(events_of(records, "started")) == 2 and len(events_of(records, "done")) == 1
    assert finished(records)["succeeded"] == 1


@pytest.mark.parametrize(("retries", "reruns"), [(1, True), (0, False)])
def test_rq_requeues_an_abandoned_job_or_counts_it_failed(
    private_redis: PrivateRedis, token: str, retries: int, reruns: bool
) -> None:
    """RQ finds the job abandoned once the dead worker's entry expires. With ``abandoned_retries``
    (1 by default) it requeues it (at least once); with 0 it moves it to the failed registry and
    unijob counts it discarded in its batch (at most once)."""
    options = {"abandoned_retries": retries}
    harness = CrashHarness("crash-rq", "rq", private_redis.url, options, rq_argv(private_redis.url))
    records = kill_mid_batch(harness, token, after_kill=requeue_abandoned(private_redis.url))
    callback = finished(records)
    if reruns:
        assert len(events_of(records, "done")) == 1 and callback["succeeded"] == 1
    else:
        assert events_of(records, "done") == [] and callback["discarded"] == 1


def test_dramatiq_on_redis_runs_the_job_again_once_the_dead_worker_stops_beating(private_redis: PrivateRedis, token: str) -> None:
    """Dramatiq's Redis broker gives the messages of a worker whose heartbeat stopped to the others
    (``heartbeat_timeout``: here 3 s, a minute by default): at least once."""
    options = {"broker_options": {"heartbeat_timeout": 3000, "maintenance_chance": 1_000_000}}
    harness = CrashHarness("crash-dramatiq-redis", "dramatiq", private_redis.url, options, [*DRAMATIQ, *DRAMATIQ_QUEUES])
    records = kill_mid_batch(harness, token)
    assert len(events_of(records, "done")) == 1 and finished(records)["succeeded"] == 1


def test_dramatiq_on_rabbitmq_runs_the_job_again_at_once(token: str) -> None:
    with vhost("unijob_crash_dramatiq") as url:
        options = {"store": BATCH_STORE}
        harness = CrashHarness("crash-dramatiq-rabbitmq", "dramatiq", url, options, [*DRAMATIQ, *DRAMATIQ_QUEUES])
        records = kill_mid_batch(harness, token)
    assert len(events_of(records, "done")) == 1 and finished(records)["succeeded"] == 1


def test_huey_runs_the_job_again_when_the_next_consumer_starts(token: str) -> None:
    """Huey deletes a task from its queue when a consumer takes it; unijob keeps it, marked taken,
    until it ends, and a consumer starting on the file puts back the tasks of a consumer that is
    gone (at least once)."""
    TEST_DIR.mkdir(parents=True, exist_ok=True)
    path = TEST_DIR / f"crash-{token}.sqlite3"
    harness = CrashHarness("crash-huey", "huey", None, {"path": str(path)}, [python_bin("huey_consumer"), *CONSUMER_ARGS])
    try:
        records = kill_mid_batch(harness, token)
    finally:
        for suffix in ("", "-wal", "-shm"):
            (TEST_DIR / f"crash-{token}.sqlite3{suffix}").unlink(missing_ok=True)
    assert len(events_of(records, "done")) == 1 and finished(records)["succeeded"] == 1
