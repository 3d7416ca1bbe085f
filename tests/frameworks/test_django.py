"""The Django integration (unijob.contrib.django) on every backend, with the stock workers.

examples/django_shop runs with tests/frameworks/django_settings.py: RQ is the default backend, and
Celery and Dramatiq on Redis, Huey on SQLite and Celery on RabbitMQ are named ones, each with a
Django Tasks backend of the same name. Each backend's stock worker is started once for this module,
the way a team starts it: ``python manage.py unijob_worker --backend NAME``. The database is a
PostgreSQL database of this module's own (``unijob_django_<pid>``, dropped afterwards), the broker a
redis-server of its own, and for Celery on RabbitMQ a vhost of its own (its ``store``, for results,
in that redis-server). The tests of a backend run on the first four (``every_backend``); those of
after-commit and rollback, of a job's and a task's round trip, of results and queues run on
RabbitMQ too (``with_rabbitmq``). The Tasks backend is tested the way django-tasks' backends for real queues
are tested: enqueue (sync and async), failures with their tracebacks, results, ids, queues,
context, signals and logs, here with the stock workers of each backend instead of an in-process one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

import unijob
from tests.frameworks.web_support import RabbitmqQueues, rabbitmq_vhosts
from tests.harness import LOG_DIR, ROOT, PrivateRedis, require_service, wait_until
from unijob import config
from unijob.errors import TransactionRolledBackError

EXAMPLE = ROOT / "examples" / "django_shop"
SETTINGS = "tests.frameworks.django_settings"
TIMEOUT = 60.0  # bound on every wait for a worker (the machine may be busy)
QUEUES = "default,mail,reports"  # what the workers serve: not "held"


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    alias: str  # the unijob backend of the UNIJOB setting, and the TASKS alias
    adapter: str
    args: tuple[str, ...] = ()  # more arguments for unijob_worker
    rabbitmq: bool = False  # its broker is RabbitMQ (else Redis, or Huey's SQLite file)

    def __str__(self) -> str:
        return self.name


BACKENDS = [
    Backend("rq", "default", "rq"),
    Backend("celery", "celery_redis", "celery", ("-c", "1")),
    Backend("dramatiq", "dramatiq_redis", "dramatiq", ("-c", "2")),
    Backend("huey", "huey_sqlite", "huey", ("-c", "2")),
]
CELERY_RABBITMQ = Backend("celery-rabbitmq", "celery_rabbitmq", "celery", ("-c", "1"), rabbitmq=True)
WORKERS = [*BACKENDS, CELERY_RABBITMQ]  # each has its stock worker
every_backend = pytest.mark.parametrize("backend", BACKENDS, ids=str)
with_rabbitmq = pytest.mark.parametrize("backend", WORKERS, ids=str)


class Rollback(Exception):
    pass


@dataclasses.dataclass
class Shop:
    env: dict[str, str]
    huey_path: Path
    workers: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]
    pings: dict[str, str]  # a plain job's id on each backend
    rabbitmq: RabbitmqQueues  # the queues of Celery on RabbitMQ

    def log(self, backend: Backend) -> str:
        return self.logs[backend.name].read_text(errors="replace")

    def check_alive(self) -> None:
        for name, process in self.workers.items():
            if process.poll() is not None:
                raise AssertionError(
                    f"the {name} worker exited with {process.returncode}:\n{self.logs[name].read_text()[-4000:]}"
                )


# --- the project, its database and its workers --------------------------------------------------


@pytest.fixture(scope="module")
def rabbitmq() -> Iterator[RabbitmqQueues]:
    """A vhost of this module's own for the celery_rabbitmq backend, and a reader of its queues."""
    with rabbitmq_vhosts("django") as (url,):
        queues = RabbitmqQueues(url, "celery")
        try:
            yield queues
        finally:
            queues.close()


@pytest.fixture(scope="module")
def shop(rabbitmq: RabbitmqQueues) -> Iterator[Shop]:
    require_service("redis")  # the machine's Redis stands for redis-server being installed
    require_service("postgresql")
    server = PrivateRedis()
    database = f"unijob_django_{os.getpid()}"
    folder = Path(tempfile.mkdtemp(prefix="unijob-django-"))
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "UNIJOB_DJANGO_REDIS": f"redis://127.0.0.1:{server.port}",
        "UNIJOB_DJANGO_RABBITMQ": rabbitmq.url,
        "UNIJOB_DJANGO_DATABASE": database,
        "UNIJOB_DJANGO_HUEY": str(folder / "huey.sqlite3"),
    }
    saved = {name: os.environ.get(name) for name in env}
    admin = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True)
    admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
    admin.execute(f'CREATE DATABASE "{database}"')
    workers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        os.environ.update(env)
        if str(EXAMPLE) not in sys.path:
            sys.path.insert(0, str(EXAMPLE))
        import django
        from django.apps import apps
        from django.conf import settings

        if apps.ready and settings.SETTINGS_MODULE != SETTINGS:  # pragma: no cover - one Django per process
            pytest.fail(f"Django is already set up in this process with {settings.SETTINGS_MODULE}")
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        worker_env = {
            **os.environ,
            **env,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(EXAMPLE)]),
            "PYTHONUNBUFFERED": "1",
        }
        logs = {backend.name: LOG_DIR / f"django-{backend.name}.log" for backend in WORKERS}
        for backend in WORKERS:
            argv = [sys.executable, "manage.py", "unijob_worker", "--backend", backend.alias, "-q", QUEUES, *backend.args]
            with logs[backend.name].open("wb") as log:
                workers[backend.name] = subprocess.Popen(
                    argv, cwd=EXAMPLE, env=worker_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        shop = Shop(env=worker_env, huey_path=folder / "huey.sqlite3", workers=workers, logs=logs, pings={}, rabbitmq=rabbitmq)
        from tests.frameworks import djshop_probes as probes

        started = {backend.name: probes.ping.set(backend=backend.alias).perform_later(backend.name) for backend in WORKERS}
        for backend in WORKERS:
            job = started[backend.name]
            wait_until(
                lambda b=backend, j=job: _finished(j.job_id, b),
                timeout=90,
                interval=0.1,
                tick=shop.check_alive,
                message=f"the {backend.name} worker to start",
            )
            shop.pings[backend.name] = job.job_id
        yield shop
    finally:
        _stop(workers)
        with contextlib.suppress(Exception):
            from djshop.orders import signals

            signals.disconnect()  # nothing else in this session writes to this database
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        config.reset()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def _stop(workers: dict[str, subprocess.Popen[bytes]]) -> None:
    """Warm shutdown of every worker at once (SIGTERM to each process group), SIGKILL after 20 s."""
    for process in workers.values():
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    for process in workers.values():
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _finished(job_id: str, backend: Backend) -> unijob.JobResult | None:
    try:
        result = unijob.find(job_id, backend.alias)
    except unijob.JobNotFoundError:
        return None
    return result if result.is_finished else None


def finished(shop: Shop, job: unijob.Job, backend: Backend) -> unijob.JobResult:
    found: unijob.JobResult = wait_until(
        lambda: _finished(job.job_id, backend),
        timeout=TIMEOUT,
        tick=shop.check_alive,
        message=f"job {job.job_id} to finish on {backend.name}",
    )
    return found


def task_finished(shop: Shop, result: Any) -> Any:
    """``result`` refreshed until its task finished."""

    def done() -> bool:
        result.refresh()
        return bool(result.is_finished)

    wait_until(done, timeout=TIMEOUT, tick=shop.check_alive, message=f"task {result.id} to finish on {result.backend}")
    return result


def held(backend: Backend) -> dict[str, Any]:
    """Options that keep a job on the broker, where the test can see it: a queue no worker serves
    (a Huey consumer serves every queue of its backend: there, a delay of an hour)."""
    options: dict[str, Any] = {"backend": backend.alias, "queue": "held"}
    if backend.adapter == "huey":
        options["wait"] = 3600
    return options


def on_broker(shop: Shop, backend: Backend, job_id: str) -> bool:
    """Whether the broker holds the message of ``job_id`` (sent with :func:`held` options)."""
    adapter: Any = config.get_adapter(backend.alias)
    needle = job_id.encode()
    if backend.rabbitmq:  # no worker serves "held": the reader takes its messages and remembers them
        return job_id in shop.rabbitmq.ids("held")
    if backend.adapter == "rq":
        return job_id in adapter.queue("held").job_ids
    if backend.adapter == "celery":
        client = redis.Redis.from_url(adapter.url)
        return any(needle in message for key in client.keys("held*") for message in client.lrange(key, 0, -1))
    if backend.adapter == "dramatiq":
        client = redis.Redis.from_url(adapter.url)
        return any(needle in message for message in client.hvals(f"{adapter.namespace}:held.msgs"))
    with contextlib.closing(sqlite3.connect(shop.huey_path, timeout=30)) as db:
        rows = db.execute("SELECT data FROM task UNION ALL SELECT data FROM schedule").fetchall()
    return any(needle in bytes(row[0]) for row in rows)


def tasks_backend(backend: Backend) -> Any:
    from unijob.contrib.django.tasks import task_backends

    return task_backends[backend.alias]


# --- jobs: models as arguments, after commit, connections ------------------------------------


@with_rabbitmq
def test_a_model_argument_is_loaded_fresh_in_the_worker(shop: Shop, backend: Backend) -> None:
    from djshop.orders.jobs import send_receipt
    from djshop.orders.models import Order

    order = Order.objects.create(email="ada@example.com", total_cents=1250)
    order.total_cents = 999  # not saved: the job gets the row, not this object
    job = send_receipt.set(backend=backend.alias).perform_later(order)
    result = finished(shop, job, backend)
    assert result.status == "succeeded", result.error
    assert result.return_value == f"Receipt for order {order.pk}: 12.50 EUR, sent to ada@example.com"
    order.refresh_from_db()
    assert (order.status, order.total_cents) == ("receipted", 1250)


@every_backend
def test_a_deleted_row_refuses_the_job_with_a_clear_error(shop: Shop, backend: Backend) -> None:
    from django.db import transaction
    from djshop.orders.jobs import send_receipt
    from djshop.orders.models import Order

    with transaction.atomic():  # the job is sent at the commit, when the row is gone already
        order = Order.objects.create(email="bob@example.com", total_cents=500)
        pk = order.pk
        job = send_receipt.set(backend=backend.alias, after_commit=True).perform_later(order)
        order.delete()
    result = finished(shop, job, backend)
    assert result.status == "failed" and result.error is not None
    assert result.error.type == "unijob.errors.DeserializationError"
    assert result.error.message.startswith(f"djshop.orders.models.Order {pk} could not be loaded: DoesNotExist: ")
    assert f"no orders.Order with primary key {pk}: it was deleted" in result.error.message
    assert f"Refused job 'djshop.orders.jobs.send_receipt' (Job ID: {job.job_id})" in shop.log(backend)


def test_an_unsaved_model_cannot_be_an_argument(shop: Shop) -> None:
    from djshop.orders.jobs import send_receipt
    from djshop.orders.models import Order

    with pytest.raises(unijob.SerializationError, match="an unsaved orders.Order has no primary key"):
        send_receipt.perform_later(Order(email="cy@example.com", total_cents=1))


@with_rabbitmq
def test_a_job_enqueued_in_atomic_is_sent_at_commit_and_never_after_a_rollback(shop: Shop, backend: Backend) -> None:
    from django.db import transaction

    from tests.frameworks import djshop_probes as probes

    waiting = probes.noop_job.set(after_commit=True, **held(backend))
    with transaction.atomic():
        job = waiting.perform_later()
        assert not job.successfully_enqueued and not on_broker(shop, backend, job.job_id)
    assert job.successfully_enqueued and on_broker(shop, backend, job.job_id)

    with pytest.raises(Rollback), transaction.atomic():
        lost = waiting.perform_later()
        raise Rollback
    assert not lost.successfully_enqueued and isinstance(lost.enqueue_error, TransactionRolledBackError)

    with transaction.atomic():  # a savepoint that rolls back takes its jobs with it; the rest commit
        with contextlib.suppress(Rollback), transaction.atomic():
            dropped = waiting.perform_later()
            raise Rollback
        kept = waiting.perform_later()
    assert isinstance(dropped.enqueue_error, TransactionRolledBackError) and kept.successfully_enqueued
    assert on_broker(shop, backend, kept.job_id)
    assert not on_broker(shop, backend, lost.job_id) and not on_broker(shop, backend, dropped.job_id)


def test_the_enqueue_after_commit_setting_makes_jobs_and_tasks_wait_for_the_commit(shop: Shop) -> None:
    from django.conf import settings
    from django.db import transaction
    from django.test import override_settings

    from tests.frameworks import djshop_probes as probes

    rq = BACKENDS[0]
    with override_settings(UNIJOB={**settings.UNIJOB, "enqueue_after_commit": True}):
        assert unijob.settings().enqueue_after_commit
        with transaction.atomic():
            job = probes.noop_job.set(**held(rq)).perform_later()
            result = probes.noop.using(queue_name="held").enqueue()
            assert not on_broker(shop, rq, job.job_id) and not on_broker(shop, rq, result.id)
            assert result.enqueued_at is None
        assert on_broker(shop, rq, job.job_id) and on_broker(shop, rq, result.id)
        assert result.enqueued_at is not None
        assert tasks_backend(rq).get_result(result.id).enqueued_at == result.enqueued_at
    assert not unijob.settings().enqueue_after_commit  # the UNIJOB setting is back, and unijob with it


def test_place_order_sends_the_receipt_once_committed(shop: Shop) -> None:
    from djshop.orders.models import Order
    from djshop.orders.services import place_order

    order = place_order("dee@example.com", 4200)
    wait_until(
        lambda: Order.objects.get(pk=order.pk).status == "receipted",
        timeout=TIMEOUT,
        tick=shop.check_alive,
        message="the receipt of the placed order",
    )
    assert Order.objects.get(pk=order.pk).receipt.endswith("42.00 EUR, sent to dee@example.com")


@every_backend
def test_database_connections_are_closed_around_each_job(shop: Shop, backend: Backend) -> None:
    from django.db import connection

    from tests.frameworks import djshop_probes as probes

    first = finished(shop, probes.connection_probe.set(backend=backend.alias).perform_later(), backend).return_value
    second = finished(shop, probes.connection_probe.set(backend=backend.alias).perform_later(), backend).return_value
    assert first["fresh"] and second["fresh"], (first, second)  # closed before each job
    assert first["backend_pid"] != second["backend_pid"]

    def closed() -> bool:  # and after it: the server has no session of that connection any more
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid IN (%s, %s)", [first["backend_pid"], second["backend_pid"]]
            )
            return cursor.fetchone()[0] == 0

    wait_until(closed, timeout=10, message="the jobs' database connections to be closed")


# --- the Django Tasks backend ------------------------------------------------------------------


@with_rabbitmq
def test_enqueue_a_task(shop: Shop, backend: Backend) -> None:
    from tests.frameworks import djshop_probes as probes
    from unijob.contrib.django.tasks import READY, SUCCESSFUL, WORKER_ID

    task = probes.noop.using(backend=backend.alias)
    result = task.enqueue(1, two=3)
    assert result.status == READY and not result.is_finished
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None, None, None)
    with pytest.raises(ValueError, match="Task has not finished yet"):
        result.return_value  # noqa: B018
    assert (result.task, result.args, result.kwargs, result.attempts) == (task, [1], {"two": 3}, 0)
    assert result.backend == backend.alias and result.enqueued_at is not None

    task_finished(shop, result)
    assert result.status == SUCCESSFUL and result.return_value is None and result.errors == []
    assert result.attempts == 1 and len(result.worker_ids) == 1 and result.worker_ids != [WORKER_ID]  # a worker's
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at


@every_backend
def test_aenqueue_an_async_task(shop: Shop, backend: Backend) -> None:
    from tests.frameworks import djshop_probes as probes
    from unijob.contrib.django.tasks import READY, SUCCESSFUL

    async def enqueue() -> tuple[Any, Any]:
        result = await probes.noop_async.using(backend=backend.alias).aenqueue()
        return result, await tasks_backend(backend).aget_result(result.id)

    result, same = asyncio.run(enqueue())
    assert result.status == READY and (result.args, result.kwargs, result.attempts) == ([], {}, 0)
    assert same.id == result.id and same.task == result.task

    async def refreshed() -> bool:
        await result.arefresh()
        return bool(result.is_finished)

    wait_until(lambda: asyncio.run(refreshed()), timeout=TIMEOUT, tick=shop.check_alive, message="the async task")
    assert result.status == SUCCESSFUL and result.attempts == 1


@every_backend
@pytest.mark.parametrize(
    ("name", "exception", "message"),
    [
        ("fail_value_error", ValueError, "This task failed due to ValueError"),
        ("fail_system_exit", SystemExit, "This task failed due to SystemExit"),
    ],
)
def test_a_task_exception_is_recorded_with_its_traceback(
    shop: Shop, backend: Backend, name: str, exception: type[BaseException], message: str
) -> None:
    from tests.frameworks import djshop_probes as probes
    from unijob.contrib.django.tasks import FAILED

    task = getattr(probes, name).using(backend=backend.alias)
    result = task_finished(shop, task.enqueue())
    assert result.status == FAILED and result.is_finished
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at is not None
    (error,) = result.errors
    assert error.exception_class is exception
    assert error.traceback.endswith(f"{exception.__name__}: {message}\n"), error.traceback
    assert f"raise {exception.__name__}" in error.traceback
    assert (result.task, result.args, result.kwargs, result.attempts, len(result.worker_ids)) == (task, [], {}, 1, 1)


@every_backend
def test_an_unserializable_return_value_fails_the_task(shop: Shop, backend: Backend) -> None:
    from tests.frameworks import djshop_probes as probes
    from unijob.contrib.django.tasks import FAILED

    result = task_finished(shop, probes.unserializable.using(backend=backend.alias).enqueue())
    assert result.status == FAILED
    (error,) = result.errors
    assert error.exception_class is TypeError
    assert error.traceback.endswith("TypeError: a task's return value must be JSON, not object\n")


@with_rabbitmq
def test_get_result_and_refresh(shop: Shop, backend: Backend) -> None:
    from tests.frameworks import djshop_probes as probes
    from unijob.contrib.django.tasks import READY, SUCCESSFUL

    tasks = tasks_backend(backend)
    later = probes.meaning_of_life.using(
        backend=backend.alias, run_after=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    )
    waiting = later.enqueue()
    assert tasks.get_result(waiting.id) == waiting  # what enqueue returned, field for field
    assert later.get_result(waiting.id).task.run_after == later.run_after

    result = probes.meaning_of_life.using(backend=backend.alias).enqueue()
    done = wait_until(
        lambda: (found := tasks.get_result(result.id)).is_finished and found,
        timeout=TIMEOUT,
        tick=shop.check_alive,
        message="get_result of a finished task",
    )
    assert done.status == SUCCESSFUL and done.return_value == 42 and done.attempts == 1
    assert result.status == READY and result.started_at is None  # a result changes only when refreshed
    result.refresh()
    assert (result.status, result.return_value, result.attempts) == (SUCCESSFUL, 42, 1)
    assert (result.started_at, result.finished_at, result.worker_ids) == (done.started_at, done.finished_at, done.worker_ids)


@every_backend
def test_a_missing_or_invalid_id_does_not_exist(shop: Shop, backend: Backend) -> None:
    from tests.frameworks import djshop_probes as probes
    from unijob.contrib.django.tasks import TaskResultDoesNotExist

    tasks = tasks_backend(backend)
    for missing in (str(uuid.uuid4()), "123", "", shop.pings[backend.name]):  # the last: a job's, not a task's
        with pytest.raises(TaskResultDoesNotExist):
            tasks.get_result(missing)
        with pytest.raises(TaskResultDoesNotExist):
            asyncio.run(tasks.aget_result(missing))
    other = BACKENDS[(BACKENDS.index(backend) + 1) % len(BACKENDS)]
    elsewhere = probes.noop.using(backend=other.alias, queue_name="held").enqueue()
    with pytest.raises(TaskResultDoesNotExist):
        tasks.get_result(elsewhere.id)  # a result of another Tasks backend


@every_backend
def test_a_message_that_does_not_point_to_a_task_does_not_run(shop: Shop, backend: Backend) -> None:
    from unijob.contrib.django.tasks import TaskJob, TaskResultDoesNotExist

    job = TaskJob.set(backend=backend.alias).perform_later("os.system", backend.alias, ["touch /tmp/unijob-pwned"], {})
    result = finished(shop, job, backend)
    assert result.status == "failed" and result.error is not None and result.error.type == "unijob.errors.ConfigurationError"
    assert result.error.message == "os.system does not point to a Task (it is builtin_function_or_method), so it does not run"
    with pytest.raises(TaskResultDoesNotExist, match="does not point to a Task"):
        tasks_backend(backend).get_result(job.job_id)


@with_rabbitmq
def test_queue_isolation_and_an_unknown_queue(shop: Shop, backend: Backend) -> None:
    from tests.frameworks import djshop_probes as probes
    from unijob.contrib.django.tasks import READY, SUCCESSFUL, InvalidTaskError

    with pytest.raises(InvalidTaskError, match="Queue 'nope' is not valid for backend"):
        probes.noop.using(backend=backend.alias, queue_name="nope")
    tasks = tasks_backend(backend)
    aside = probes.noop.using(backend=backend.alias, queue_name="held").enqueue()
    default = task_finished(shop, probes.noop.using(backend=backend.alias).enqueue())
    assert default.status == SUCCESSFUL and default.task.queue_name == "default"
    if backend.adapter == "huey":  # one Huey queue per backend: unijob's queues ride as metadata
        aside = task_finished(shop, aside)
        assert aside.status == SUCCESSFUL and aside.task.queue_name == "held"
        return
    assert on_broker(shop, backend, aside.id)  # in its own queue, which no worker serves
    found = tasks.get_result(aside.id)
    assert found.status == READY and found.task.queue_name == "held"


@every_backend
def test_a_task_takes_its_context(shop: Shop, backend: Backend) -> None:
    from djshop.orders.models import Order
    from djshop.orders.tasks import remind_customer

    from tests.frameworks import djshop_probes as probes

    result = task_finished(shop, probes.context_probe.using(backend=backend.alias).enqueue(7))
    assert result.return_value == [result.id, 1, "RUNNING", 7]
    order = Order.objects.create(email="eve@example.com", total_cents=100)
    reminded = task_finished(shop, remind_customer.using(backend=backend.alias).enqueue(order.pk))
    assert reminded.return_value == {"order": order.pk, "result_id": reminded.id, "attempt": 1}


@every_backend
def test_the_task_signals_are_sent_where_the_task_is_enqueued_and_where_it_runs(shop: Shop, backend: Backend) -> None:
    from djshop.orders.models import TaskEvent

    from tests.frameworks import djshop_probes as probes

    succeeded = task_finished(shop, probes.meaning_of_life.using(backend=backend.alias).enqueue())
    failed = task_finished(shop, probes.fail_value_error.using(backend=backend.alias).enqueue())
    for result, outcome in ((succeeded, "SUCCESSFUL"), (failed, "FAILED")):
        events = list(TaskEvent.objects.filter(task_id=result.id).order_by("pk").values_list("signal", "status", "pid", "task"))
        assert [(signal, status) for signal, status, _, _ in events] == [
            ("enqueued", "READY"),
            ("started", "RUNNING"),
            ("finished", outcome),
        ]
        (_, _, here, task), (_, _, worker, _), (_, _, worker_again, _) = events
        assert here == os.getpid() and worker != here and worker_again == worker
        assert task == result.task.module_path


@every_backend
def test_the_task_logs(shop: Shop, backend: Backend) -> None:
    from tests.frameworks import djshop_probes as probes

    logger = logging.getLogger("django_tasks")
    lines: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        result = probes.meaning_of_life.using(backend=backend.alias).enqueue()
        failed = probes.fail_value_error.using(backend=backend.alias).enqueue()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    path = "tests.frameworks.djshop_probes"
    assert lines == [
        f"Task id={result.id} path={path}.meaning_of_life enqueued backend={backend.alias}",
        f"Task id={failed.id} path={path}.fail_value_error enqueued backend={backend.alias}",
    ]
    task_finished(shop, result)
    task_finished(shop, failed)
    log = shop.log(backend)
    for line in (
        f"Task id={result.id} path={path}.meaning_of_life state=RUNNING",
        f"Task id={result.id} path={path}.meaning_of_life state=SUCCESSFUL",
        f"Task id={failed.id} path={path}.fail_value_error state=RUNNING",
        f"Task id={failed.id} path={path}.fail_value_error state=FAILED",
    ):
        assert line in log, f"{line!r} is not in the {backend.name} worker's log"


@with_rabbitmq
def test_the_capabilities_and_validation_follow_the_adapter(shop: Shop, backend: Backend) -> None:
    from tests.frameworks import djshop_probes as probes
    from unijob.contrib.django.tasks import InvalidTaskError

    tasks = tasks_backend(backend)
    assert tasks.supports_defer and tasks.supports_get_result and tasks.supports_async_task
    assert tasks.supports_priority is (backend.adapter in ("celery", "huey"))  # RQ and Dramatiq on Redis have none
    urgent = probes.noop.using(backend=backend.alias, queue_name="held")
    if tasks.supports_priority:
        result = urgent.using(priority=50).enqueue()
        assert tasks.get_result(result.id).task.priority == 50
    else:
        with pytest.raises(
            InvalidTaskError, match=f"Backend does not support setting priority of tasks: the {backend.adapter} adapter"
        ):
            urgent.using(priority=50)
    with pytest.raises(InvalidTaskError, match="run_after must be an aware datetime"):
        urgent.using(run_after=dt.datetime.now() + dt.timedelta(hours=1))
    tasks.supports_defer = False
    try:
        with pytest.raises(InvalidTaskError, match="Backend does not support run_after"):
            urgent.using(run_after=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    finally:
        del tasks._forced["supports_defer"]


def test_system_checks(shop: Shop) -> None:
    from django.core import checks

    from unijob.contrib.django.tasks import UnijobBackend

    assert [message for message in checks.run_checks() if message.id.startswith("unijob")] == []
    wrong = UnijobBackend("wrong", {"QUEUES": ["default", " "], "OPTIONS": {"backnd": "default", "after_commit": "yes"}})
    found = {message.id: message for message in wrong.check()}
    assert sorted(found) == ["unijob.E101", "unijob.E102", "unijob.E103"]
    assert "unknown option 'backnd'" in found["unijob.E101"].msg and "did you mean 'backend'?" in found["unijob.E101"].hint
    nowhere = UnijobBackend("nowhere", {"OPTIONS": {"backend": "nowhere"}})
    (message,) = nowhere.check()
    assert message.id == "unijob.E105" and "no backend named 'nowhere' is configured" in message.msg


def test_the_unijob_setting_is_checked(shop: Shop) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from unijob.contrib.django import configure_from_settings

    with pytest.raises(ImproperlyConfigured, match="unknown key 'adaptr' in the UNIJOB setting; did you mean 'adapter'"):
        configure_from_settings({"adaptr": "rq"})
    with pytest.raises(ImproperlyConfigured, match="the UNIJOB setting: unknown unijob adapter 'rqq'; did you mean 'rq'"):
        configure_from_settings({"adapter": "rqq"})


# --- the worker command --------------------------------------------------------------------------


def test_the_worker_environment_and_queues(shop: Shop) -> None:
    from unijob.contrib.django import worker_environment
    from unijob.contrib.django.management.commands.unijob_worker import worker_queues

    env = worker_environment()
    assert env["DJANGO_SETTINGS_MODULE"] == SETTINGS
    assert (env["UNIJOB_ADAPTER"], env["UNIJOB_URL"]) == ("rq", f"{shop.env['UNIJOB_DJANGO_REDIS']}/0")
    assert env["UNIJOB_IMPORTS"] == "unijob.contrib.django.bootstrap,tests.frameworks.djshop_probes"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)  # where the settings module is imported from
    assert {"default", "held", "mail", "reports"} <= set(worker_queues("default"))  # the jobs' and the Tasks backend's


def test_the_worker_command_with_burst_runs_what_is_queued_and_exits(shop: Shop) -> None:
    from tests.frameworks import djshop_probes as probes

    job = probes.ping.set(queue="burst").perform_later("burst")
    completed = subprocess.run(
        [sys.executable, "manage.py", "unijob_worker", "-q", "burst", "--burst"],
        cwd=EXAMPLE,
        env=shop.env,
        capture_output=True,
        timeout=120,
    )
    output = completed.stderr.decode(errors="replace")
    assert completed.returncode == 0, output
    assert "starting: " in output and "rq worker --with-scheduler" in output and " burst" in output
    assert unijob.find(job.job_id).return_value == "burst"


def test_the_bootstrap_needs_a_settings_module() -> None:
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    completed = subprocess.run(
        [sys.executable, "-c", "import unijob.contrib.django.bootstrap"], env=env, capture_output=True, timeout=60, cwd=ROOT
    )
    assert completed.returncode != 0
    assert b"DJANGO_SETTINGS_MODULE, which is not set" in completed.stderr
