"""``python manage.py unijob_worker [--backend NAME] [-q QUEUES] [-c N] [--burst]``.

Starts the stock worker of a unijob backend (``celery worker``, ``rq worker``, ``dramatiq``,
``huey_consumer``), exactly as ``unijob worker`` does, with the environment it needs to read this
project's settings: the default backend's ``UNIJOB_*`` variables from the ``UNIJOB`` setting,
``DJANGO_SETTINGS_MODULE``, and :mod:`unijob.contrib.django.bootstrap` first in ``UNIJOB_IMPORTS``,
which sets Django up in the worker. Without ``-q`` it serves every queue a job of the project uses
by default and every queue of the Django Tasks backends (``TASKS``) that run on this backend.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from unijob import worker
from unijob.constants import DEFAULT_BACKEND
from unijob.contrib.django import worker_environment
from unijob.errors import Error


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Start the stock worker (Celery, RQ, Dramatiq or Huey) of a unijob backend, reading this project's settings. "
        "--burst exits once its queues are empty and no delayed job is due within a few seconds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", default=DEFAULT_BACKEND, help="the unijob backend to serve (default: %(default)s)")
        parser.add_argument(
            "-q",
            "--queues",
            default=None,
            help="comma-separated queues (default: every queue of the project's jobs and of its unijob Tasks backends)",
        )
        parser.add_argument("-c", "--concurrency", type=int, default=None, help="worker processes or threads")
        parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")

    def handle(self, *args: Any, **options: Any) -> None:
        backend: str = options["backend"]
        given = [name.strip() for name in (options["queues"] or "").split(",") if name.strip()]
        try:
            queues = given or worker_queues(backend)
            os.environ.update(worker_environment())
            status = worker.launch(backend, queues, options["concurrency"], options["burst"], self.stderr.write)
        except Error as error:
            raise CommandError(str(error)) from error
        if status:
            raise CommandError(f"the worker of backend {backend!r} exited with status {status}", returncode=status)


def worker_queues(backend: str) -> list[str]:
    """Every queue a registered job uses by default, and those of the Tasks backends on ``backend``."""
    names = set(worker.queues_of(worker.load_jobs()))
    from unijob.contrib.django.apps import uses_tasks_backend

    if uses_tasks_backend():
        from unijob.contrib.django.tasks import unijob_task_backends

        for tasks_backend in unijob_task_backends():
            if tasks_backend.unijob_backend == backend:
                names.update(tasks_backend.queues)
    return sorted(names)
