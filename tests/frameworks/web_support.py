"""What the Flask, FastAPI, SQLAlchemy and Django tests share: a PostgreSQL database of their own,
RabbitMQ vhosts of their own and a reader of what reached a queue there, and stock workers
started together (each once per test module) on a redis-server of the module's own.

Each worker runs the stock command of its backend (the ones tests/harnesses run, with one
process or thread where the contract suite runs two), with the example's job modules and
``tests.jobs`` (whose ``ping`` tells when the worker is up) in ``UNIJOB_IMPORTS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import psycopg

from tests import jobs
from tests.harness import (
    LOG_DIR,
    ROOT,
    Harness,
    PrivateRedis,
    ensure_rabbitmq_vhost,
    python_bin,
    require_service,
    wait_until,
)
from tests.harnesses.huey_sqlite import TEST_DIR

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
MAINTENANCE_DB = "test"  # the machine's database; each module creates and drops one of its own
TIMEOUT = 60.0  # bound on every wait for a worker (the machine is shared)
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672"


@contextlib.contextmanager
def database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of the caller's own (its psycopg URL), dropped afterwards."""
    require_service("postgresql")
    name = f"unijob_{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(f"{POSTGRES}/{MAINTENANCE_DB}", autocommit=True) as connection:
        connection.execute(f'create database "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES}/{MAINTENANCE_DB}", autocommit=True) as connection:
            connection.execute(f'drop database if exists "{name}" with (force)')


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextlib.contextmanager
def rabbitmq_vhosts(*prefixes: str) -> Iterator[list[str]]:
    """RabbitMQ vhosts of the caller's own, one per prefix (their AMQP URLs), deleted afterwards.
    Celery and Dramatiq declare the same queue names with different arguments: one vhost each.
    rabbitmqctl takes a second or two per call, so the vhosts are made and deleted together."""
    require_service("rabbitmq")
    names = [f"unijob_{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}" for prefix in prefixes]
    try:
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(ensure_rabbitmq_vhost, names))
        yield [f"{RABBITMQ}/{name}" for name in names]
    finally:
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(delete_rabbitmq_vhost, names))


def delete_rabbitmq_vhost(name: str) -> None:
    subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, check=False, timeout=60)


class RabbitmqQueues:
    """The jobs sent to queues of a RabbitMQ vhost that no worker consumes, read on the broker.

    AMQP has no way to look at a queue without taking its messages: each read takes what arrived
    since the last one (acknowledged) and adds its job ids to those it took before, so
    :meth:`ids` is every job the queue received since this reader was made. ``adapter`` says how
    a message carries its id: Celery's in the ``id`` header, Dramatiq's in its JSON body."""

    def __init__(self, url: str, adapter: str) -> None:
        self.url, self.adapter = url, adapter
        # No heartbeats: a blocking connection answers them only when it is used.
        self.connection = pika.BlockingConnection(pika.URLParameters(f"{url}?heartbeat=0&socket_timeout=10"))
        self.taken: dict[str, list[str]] = {}

    def ids(self, queue: str) -> list[str]:
        """The ids of the jobs ``queue`` received, in the order it received them."""
        taken = self.taken.setdefault(queue, [])
        channel = self.connection.channel()
        try:
            while True:
                method, properties, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                taken.append(self.job_id(properties, body))
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:  # 404: nothing declared the queue yet, so nothing was sent to it
                raise
        finally:
            if channel.is_open:
                channel.close()
        return list(taken)

    def job_id(self, properties: Any, body: bytes) -> str:
        if self.adapter == "celery":
            return str(properties.headers["id"])  # Celery's message protocol 2
        return str(json.loads(body)["message_id"])

    def close(self) -> None:
        with contextlib.suppress(pika.exceptions.AMQPError):
            self.connection.close()


class StockWorker(Harness):
    """One backend's stock worker for one test module."""

    def __init__(
        self,
        name: str,
        adapter: str,
        url: str | None,
        argv: Sequence[str],
        imports: Sequence[str],
        options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        unijob_env: bool = True,
    ) -> None:
        self.name, self.adapter, self.url, self.argv = name, adapter, url, list(argv)
        self.imports = ["tests.jobs", *imports]
        self.options = dict(options or {})
        self.extra_env = dict(env or {})
        self.unijob_env = unijob_env  # False: only UNIJOB_IMPORTS; the app's own settings do the rest
        self.services = ("redis",)

    def configuration(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "url": self.url, "imports": self.imports, **self.options}

    def env(self) -> dict[str, str]:
        env = super().env()
        env["UNIJOB_IMPORTS"] = ",".join(self.imports)
        if not self.unijob_env:
            for name in ("UNIJOB_ADAPTER", "UNIJOB_URL", "UNIJOB_OPTIONS"):
                env.pop(name, None)
        env.update(self.extra_env)
        return env

    def worker_argv(self) -> list[str]:
        return self.argv

    def launch(self) -> str:
        """Start the worker and send it a ping; :meth:`await_ready` waits for the answer."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.name}.log"
        self.log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv, env=self.env(), cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        token = uuid.uuid4().hex
        with self.configured():
            jobs.ping.perform_later(token)
        return token

    def await_ready(self, token: str) -> None:
        wait_until(lambda: jobs.records(token), timeout=TIMEOUT, tick=self._check_alive, message=f"{self.name} worker to start")


@contextlib.contextmanager
def running(workers: Sequence[StockWorker]) -> Iterator[dict[str, StockWorker]]:
    """Start the workers together, wait until each answers a ping, stop them all afterwards."""
    require_service("redis")  # tests.jobs records in the machine's Redis
    started: list[StockWorker] = []
    try:
        tokens = []
        for worker in workers:
            started.append(worker)
            tokens.append(worker.launch())
        for worker, token in zip(workers, tokens, strict=True):
            worker.await_ready(token)
        yield {worker.name: worker for worker in workers}
    finally:
        for worker in started:
            worker.stop()


def celery_argv(queues: str = "default") -> list[str]:
    return [python_bin("celery"), "-A", "unijob.adapters.celery_worker", "worker", "--queues", queues,
            "--concurrency", "1", "--loglevel", "INFO", "--hostname", f"unijob-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip


def rq_argv(url: str, queues: Sequence[str] = ("default",)) -> list[str]:
    return [python_bin("rq"), "worker", "--with-scheduler", "--url", url,
            "--worker-class", "unijob.adapters.rq_worker.Worker", "--job-class", "unijob.adapters.rq_worker.Job",
            "--serializer", "json", *queues]  # fmt: skip


def dramatiq_argv() -> list[str]:
    return [python_bin("dramatiq"), "unijob.adapters.dramatiq_worker", "--processes", "1", "--threads", "1"]


def huey_argv() -> list[str]:
    return [python_bin("huey_consumer"), "unijob.adapters.huey_worker.huey", "-k", "thread", "-w", "1", "-m", "1", "-g", "TERM"]


def huey_path(prefix: str) -> Path:
    TEST_DIR.mkdir(parents=True, exist_ok=True)
    return TEST_DIR / f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}.sqlite3"


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def private_redis() -> PrivateRedis:
    require_service("redis")  # the machine's Redis stands for redis-server being installed
    return PrivateRedis()


def as_json(value: Any) -> str:
    return json.dumps(value)
