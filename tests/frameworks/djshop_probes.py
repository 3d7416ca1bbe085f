"""Jobs and tasks that tests/frameworks/test_django.py runs on each backend besides the shop's
own; the workers import this module through the ``imports`` of the UNIJOB setting."""

from __future__ import annotations

import os
from typing import Any

from django.db import connection

import unijob

try:  # Django 6.0
    from django.tasks import TaskContext, task
except ImportError:  # the django-tasks backport
    from django_tasks import TaskContext, task


@unijob.job
def ping(token: str) -> str:
    return token


@unijob.job
def noop_job() -> None:
    pass


@unijob.job
def connection_probe() -> dict[str, Any]:
    """Whether the job started without a database connection, and the one it used."""
    fresh = connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend_pid,) = cursor.fetchone()
    return {"fresh": fresh, "backend_pid": backend_pid, "worker_pid": os.getpid()}


@task()
def noop(*args: Any, **kwargs: Any) -> None:
    pass


@task()
async def noop_async(*args: Any, **kwargs: Any) -> None:
    pass


@task()
def meaning_of_life() -> int:
    return 42


@task()
def fail_value_error() -> None:
    raise ValueError("This task failed due to ValueError")


@task()
def fail_system_exit() -> None:
    raise SystemExit("This task failed due to SystemExit")


@task()
def unserializable() -> object:
    return object()


@task(takes_context=True)
def context_probe(context: TaskContext, n: int) -> list[Any]:
    return [context.task_result.id, context.attempt, str(context.task_result.status), n]
