"""A Django Tasks backend: ``@task`` functions run on Celery, RQ, Dramatiq or Huey workers.

    TASKS = {
        "default": {
            "BACKEND": "unijob.contrib.django.tasks.UnijobBackend",
            "QUEUES": ["default", "reports"],
            "OPTIONS": {"backend": "default"},  # the unijob backend (UNIJOB setting) that runs them
        }
    }

Django 6.0's ``django.tasks`` is used where it exists, else the ``django-tasks`` backport (Django
before 6.0). Each enqueued task is one unijob job (``TaskJob``) carrying the task's path and its
JSON arguments; the task's ``queue_name`` is the unijob queue, its ``priority`` (-100..100, the same
scale) unijob's priority, and its ``run_after`` the job's ``wait_until``. The worker finds the task
among the modules it imported (each app's ``tasks`` module, the ``imports`` setting), never by
importing a name from a message, runs it with ``TaskContext`` if it takes one, and sends
``task_started`` and ``task_finished`` there. ``task_enqueued`` is sent where the task was
enqueued, once the backend took it (after the commit, with ``after_commit``).

Results are unijob's (``unijob.find``), in the backend's own store, beside a small record of the
task (its path, arguments, priority, the workers that ran it, the error of each attempt), both
kept ``result_retention`` seconds. The capabilities follow the adapter: ``supports_defer`` (a delay),
``supports_priority`` (RQ and Dramatiq on Redis have none), ``supports_get_result`` (a result
store: Redis or SQLite; a RabbitMQ backend needs the ``store`` option), ``supports_async_task``
(every unijob worker runs ``async def`` to completion).

OPTIONS: ``backend`` (the unijob backend, ``"default"``) and ``after_commit`` (``True``: inside
``atomic()``, a task is sent when the transaction commits, and never if it rolls back; ``False``:
at once; unset: unijob's ``enqueue_after_commit`` setting).
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import socket
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.utils import timezone

from unijob import config, middleware, serializers
from unijob.constants import DEFAULT_BACKEND
from unijob.contrib.django import APP, is_configured
from unijob.core import BaseJob
from unijob.errors import ConfigurationError, Error, JobNotFoundError
from unijob.ids import new_job_id
from unijob.job import Job
from unijob.options import make_options
from unijob.results import JobResult, find, store_for
from unijob.results.stores import ResultStore

if TYPE_CHECKING:
    from django_tasks import task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
else:
    try:  # Django 6.0 and later
        from django.tasks import task_backends
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
        from django.tasks.exceptions import InvalidTask as InvalidTaskError
        from django.tasks.exceptions import TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
    except ImportError:  # the django-tasks backport, for Django before 6.0
        try:
            from django_tasks import task_backends
            from django_tasks.backends.base import BaseTaskBackend
            from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
            from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
            from django_tasks.signals import task_enqueued, task_finished, task_started
        except ImportError as exc:
            from unijob.errors import BackendNotInstalledError

            raise BackendNotInstalledError(
                "unijob.contrib.django.tasks needs Django 6.0's django.tasks or, before Django 6.0, the django-tasks "
                'backport: pip install "unijob[django]"'
            ) from exc

OPTIONS: Final = frozenset({"backend", "after_commit"})
READY, RUNNING, SUCCESSFUL, FAILED = (TaskResultStatus(name) for name in ("READY", "RUNNING", "SUCCESSFUL", "FAILED"))
STATUSES: Final = {
    "enqueued": READY,
    "scheduled": READY,
    "retrying": READY,
    "running": RUNNING,
    "succeeded": SUCCESSFUL,
    "failed": FAILED,
    "discarded": FAILED,
}
WORKER_ID: Final = f"{socket.gethostname()}:{os.getpid()}"[:64]  # Django's worker ids are at most 64 characters
_DEFAULT_PRIORITY: Final = 0  # Django's default priority: the backend's own


class TaskExitError(Error):
    """A task raised ``SystemExit`` (or another ``BaseException``): the task failed, and the worker
    goes on. Its ``TaskResult`` records the original exception."""


# --- the job that runs a task ------------------------------------------------------------------


class TaskJob(Job, name="unijob.contrib.django.task"):
    """One enqueued Django Task: ``perform(task path, Tasks backend alias, args, kwargs)``."""

    store_result = True
    task_result: TaskResult[Any] | None = None  # where it was enqueued: the result enqueue() returned

    def perform(self, path: str, alias: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        return _run(self, path, alias, args, kwargs)


def _run(job: BaseJob, path: str, alias: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Run the task in a worker, with its signals, recording its worker and its error."""
    task = _task_at(path, "this worker")
    backend = task_backends[alias]
    if not isinstance(backend, UnijobBackend):
        raise ConfigurationError(f"TASKS[{alias!r}] is {type(backend).__name__} here, not unijob's UnijobBackend")
    record = backend.record(job.job_id)
    worker_ids = [*list(record.get("worker_ids", []))[: max(job.executions - 1, 0)], WORKER_ID]
    errors = [_task_error(item) for item in record.get("errors", [])]
    started = timezone.now()
    task = task.using(
        priority=job.priority or _DEFAULT_PRIORITY,
        queue_name=job.queue,
        backend=alias,
        run_after=_time(record.get("run_after")),
    )
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=job.job_id,
        status=RUNNING,
        enqueued_at=job.enqueued_at,
        started_at=started,
        last_attempted_at=started,
        finished_at=None,
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=errors,
        worker_ids=worker_ids,
    )
    backend.write_record(job.job_id, job.executions, {"worker_ids": worker_ids})
    task_started.send(type(backend), task_result=result)
    try:
        context = (TaskContext(task_result=result),) if task.takes_context else ()
        value = json_value(task.call(*context, *args, **kwargs))
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        failure = TaskError(exception_class_path=_class_path(type(error)), traceback=_traceback(error))
        result.errors.append(failure)
        backend.write_record(job.job_id, job.executions, {"errors": [_error_fields(e) for e in result.errors]})
        object.__setattr__(result, "status", FAILED)
        object.__setattr__(result, "finished_at", timezone.now())
        task_finished.send(type(backend), task_result=result)
        if isinstance(error, Exception):
            raise
        raise TaskExitError(f"task {path} raised {type(error).__name__}: {error}") from error
    object.__setattr__(result, "_return_value", value)
    object.__setattr__(result, "status", SUCCESSFUL)
    object.__setattr__(result, "finished_at", timezone.now())
    task_finished.send(type(backend), task_result=result)
    return value


def _task_at(path: str, where: str) -> Task[Any, Any]:
    """The Task at ``path``; ``ConfigurationError`` saying why there is none."""
    found = serializers.imported_object(path)
    if isinstance(found, Task):
        return found
    if found is None:
        raise ConfigurationError(
            f"task {path} is not loaded in {where}: define it in an installed app's tasks module, or list its module "
            "in the 'imports' of the UNIJOB setting (a worker never imports a name a message gives)"
        )
    raise ConfigurationError(f"{path} does not point to a Task (it is {type(found).__name__}), so it does not run")


def json_value(value: Any) -> Any:
    """``value`` as JSON holds it (tuples become lists, bytes UTF-8 text), as Django Tasks keeps a
    return value; ``TypeError`` for anything else."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {json_value(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as error:
            raise TypeError(f"a task's return value must be JSON: {type(value).__name__} that is not UTF-8 text") from error
    if isinstance(value, Sequence):
        return [json_value(item) for item in value]
    raise TypeError(f"a task's return value must be JSON, not {type(value).__qualname__}")


def _class_path(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _error_fields(error: TaskError) -> dict[str, str]:
    return {"exception_class_path": error.exception_class_path, "traceback": error.traceback}


def _task_error(fields: Mapping[str, Any]) -> TaskError:
    return TaskError(exception_class_path=str(fields["exception_class_path"]), traceback=str(fields["traceback"]))


def _time(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else None


def _record_key(result_id: str) -> str:
    return f"{result_id}:task"


# --- the producer side: the task's record and task_enqueued -------------------------------------


class TaskRecords(middleware.Middleware):
    """Writes the task's record before its job is sent (one by one, in bulk, or at the commit), and
    sends ``task_enqueued`` once the backend took it."""

    def before_enqueue(self, job: BaseJob) -> None:
        if isinstance(job, TaskJob) and job.executions == 0:
            path, alias, args, kwargs = job.args
            backend = task_backends[alias]
            if isinstance(backend, UnijobBackend):
                run_after = job.wait_until.isoformat() if job.wait_until is not None else None
                fields = {"task": path, "backend": alias, "priority": job.priority or 0, "run_after": run_after}
                backend.write_record(job.job_id, 0, {**fields, "queue_name": job.queue, "args": args, "kwargs": kwargs})

    def after_enqueue(self, jobs: Sequence[BaseJob]) -> None:
        for job in jobs:
            if isinstance(job, TaskJob) and job.task_result is not None and job.executions == 0:
                result = job.task_result
                object.__setattr__(result, "enqueued_at", job.enqueued_at)
                task_enqueued.send(type(task_backends[result.backend]), task_result=result)


_RECORDS: Final = TaskRecords()


# --- the backend --------------------------------------------------------------------------------


class _Supports:
    """A ``supports_*`` flag of Django's backend API, read from the adapter when asked (it is
    built on first use); a value set on the backend (as Django's own tests do) wins."""

    def __init__(self, read: Callable[[UnijobBackend], bool], doc: str) -> None:
        self.read, self.__doc__ = read, doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, backend: UnijobBackend | None, owner: type | None = None) -> Any:
        if backend is None:
            return self
        forced = backend._forced
        return forced[self.name] if self.name in forced else self.read(backend)

    def __set__(self, backend: UnijobBackend, value: bool) -> None:
        backend._forced[self.name] = value


class UnijobBackend(BaseTaskBackend):
    """Django Tasks on unijob: see the module's documentation."""

    supports_async_task = True  # every unijob worker runs an async def job to completion

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.options: dict[str, Any] = dict(params.get("OPTIONS") or {})
        self.unijob_backend: str = str(self.options.get("backend", DEFAULT_BACKEND))
        self._forced: dict[str, bool] = {}
        middleware.install(_RECORDS)

    # --- capabilities, from the adapter ----------------------------------------------------------

    def adapter(self) -> Any:
        """The adapter of the unijob backend that runs this backend's tasks."""
        return config.get_adapter(self.unijob_backend)

    def _has(self, flag: str) -> bool:
        if not is_configured():
            return True  # before the app configured unijob; enqueue() checks again
        return bool(getattr(self.adapter().capabilities, flag))

    def _has_store(self) -> bool:
        try:
            self.store()
        except Error:
            return False
        return True

    supports_defer = _Supports(lambda backend: backend._has("delay"), "Tasks may have ``run_after``: the adapter takes a delay.")
    supports_priority = _Supports(
        lambda backend: backend._has("priority"), "The adapter honours a priority (not RQ, nor Dramatiq on Redis)."
    )
    supports_get_result = _Supports(
        lambda backend: backend._has_store(), "Results can be read from any process: the backend has a result store."
    )

    # --- validation ---------------------------------------------------------------------------------

    def validate_task(self, task: Task[Any, Any]) -> None:
        if task.priority != _DEFAULT_PRIORITY and not self.supports_priority:
            raise InvalidTaskError(f"Backend does not support setting priority of tasks: {self._runs_on()} has no priority.")
        if task.run_after is not None and not self.supports_defer:
            raise InvalidTaskError(f"Backend does not support run_after: {self._runs_on()} cannot delay a job.")
        super().validate_task(task)
        if not isinstance(task.queue_name, str) or not task.queue_name.strip():
            raise InvalidTaskError(f"Queue {task.queue_name!r} is not valid for backend: a queue is a non-empty name.")

    def _runs_on(self) -> str:
        return f"the {self.adapter().name} adapter of unijob backend {self.unijob_backend!r}"

    # --- enqueue --------------------------------------------------------------------------------------

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        self.validate_task(task)
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=new_job_id(),
            status=READY,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )  # it checks that the arguments are JSON
        options: dict[str, Any] = {"backend": self.unijob_backend, "queue": task.queue_name}
        if task.priority != _DEFAULT_PRIORITY:
            options["priority"] = task.priority
        if task.run_after is not None:
            options["wait_until"] = task.run_after
        if self.options.get("after_commit") is not None:
            options["after_commit"] = self.options["after_commit"]
        job = TaskJob(task.module_path, self.alias, result.args, result.kwargs)
        job.apply(make_options(f"task {task.module_path}", options))
        job.job_id = result.id
        job.task_result = result
        job.enqueue()
        return result

    # --- results -------------------------------------------------------------------------------------

    def store(self) -> ResultStore:
        return store_for(self.unijob_backend)

    def record(self, result_id: str) -> dict[str, Any]:
        """The task's own record (path, arguments, workers, errors); empty when there is none."""
        return self.store().read(_record_key(result_id)) or {}

    def write_record(self, result_id: str, version: int, fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into the task's record: version 0 is written where it is enqueued, ``n``
        by its ``n``-th run; a write older than the record's is dropped."""
        self.store().write([(_record_key(result_id), {**fields, "version": version})], config.settings().result_retention)

    def get_result(self, result_id: str) -> TaskResult[Any]:
        if not isinstance(result_id, str) or not result_id:
            raise TaskResultDoesNotExist(result_id)
        record = self.record(result_id)
        if record.get("backend") != self.alias or not isinstance(record.get("task"), str):
            raise TaskResultDoesNotExist(result_id)
        try:
            job = find(result_id, self.unijob_backend)
        except JobNotFoundError:
            raise TaskResultDoesNotExist(result_id) from None
        return self._result(result_id, record, job)

    def _result(self, result_id: str, record: Mapping[str, Any], job: JobResult) -> TaskResult[Any]:
        try:
            task = _task_at(record["task"], "this process")
        except ConfigurationError as error:
            raise TaskResultDoesNotExist(f"{result_id}: {error}") from None
        task = task.using(
            priority=int(record.get("priority") or _DEFAULT_PRIORITY),
            queue_name=job.queue or str(record.get("queue_name")),
            backend=self.alias,
            run_after=_time(record.get("run_after")),
        )
        status = STATUSES[job.status]
        errors = [_task_error(item) for item in record.get("errors", [])]
        if not errors and status == FAILED and job.error is not None:
            errors = [TaskError(exception_class_path=job.error.type, traceback=job.error.traceback)]  # refused unrun
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=result_id,
            status=status,
            enqueued_at=job.enqueued_at,
            started_at=job.started_at,
            finished_at=job.finished_at if job.is_finished else None,
            last_attempted_at=job.started_at,  # unijob records when each attempt started
            args=list(record.get("args") or []),
            kwargs=dict(record.get("kwargs") or {}),
            backend=self.alias,
            errors=errors,
            worker_ids=list(record.get("worker_ids") or []),
        )
        if status == SUCCESSFUL:
            object.__setattr__(result, "_return_value", job.return_value)
        return result

    # --- system checks -------------------------------------------------------------------------------

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        yield from super().check(**kwargs)
        where = f"TASKS[{self.alias!r}]"
        for name in sorted(set(self.options) - OPTIONS):
            close = difflib.get_close_matches(name, OPTIONS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            yield checks.Error(
                f"{where}: unknown option {name!r} for {type(self).__name__}",
                hint=f"{hint}the options are: {', '.join(sorted(OPTIONS))}",
                obj=where,
                id="unijob.E101",
            )
        if self.options.get("after_commit") not in (None, True, False):
            yield checks.Error(f"{where}: OPTIONS['after_commit'] must be True or False", obj=where, id="unijob.E102")
        for queue in sorted(repr(q) for q in self.queues if not _is_name(q)):
            yield checks.Error(
                f"{where}: queue {queue} is not a valid name", hint="a queue is a non-empty string", obj=where, id="unijob.E103"
            )
        if not apps.is_installed(APP):
            yield checks.Error(
                f"{where} runs tasks through unijob, but {APP!r} is not in INSTALLED_APPS",
                hint=f"add {APP!r} to INSTALLED_APPS: it configures unijob and loads the tasks in workers",
                obj=where,
                id="unijob.E104",
            )
        try:
            self.adapter()
        except Error as error:
            yield checks.Error(
                f"{where}: unijob backend {self.unijob_backend!r} cannot be built: {error}",
                hint="name a backend of the UNIJOB setting in OPTIONS['backend']",
                obj=where,
                id="unijob.E105",
            )
            return
        try:
            self.store()
        except Error as error:
            yield checks.Error(f"{where}: no result store for its tasks: {error}", obj=where, id="unijob.E106")


def _is_name(queue: object) -> bool:
    return isinstance(queue, str) and bool(queue.strip())


def unijob_task_backends() -> list[UnijobBackend]:
    """The backends of the ``TASKS`` setting that are unijob's."""
    found = []
    for alias in getattr(settings, "TASKS", None) or {}:
        try:
            backend = task_backends[alias]
        except Exception:  # the Tasks framework's own check reports a backend that does not load
            continue
        if isinstance(backend, UnijobBackend):
            found.append(backend)
    return found
