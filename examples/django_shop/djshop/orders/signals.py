"""The Tasks signals, recorded as TaskEvent rows: ``task_enqueued`` where a task is enqueued,
``task_started`` and ``task_finished`` in the worker that runs it."""

from __future__ import annotations

import os
from typing import Any

from djshop.orders.models import TaskEvent

try:  # Django 6.0
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:  # the django-tasks backport
    from django_tasks.signals import task_enqueued, task_finished, task_started

SIGNALS = {"enqueued": task_enqueued, "started": task_started, "finished": task_finished}


def connect() -> None:
    for name, signal in SIGNALS.items():
        signal.connect(_recorder(name), weak=False, dispatch_uid=f"djshop-{name}")


def disconnect() -> None:
    for name, signal in SIGNALS.items():
        signal.disconnect(dispatch_uid=f"djshop-{name}")


def _recorder(name: str) -> Any:
    def record(sender: type, task_result: Any, **kwargs: Any) -> None:
        TaskEvent.objects.create(
            task_id=task_result.id,
            task=task_result.task.module_path,
            signal=name,
            status=str(task_result.status),
            pid=os.getpid(),
        )

    return record
