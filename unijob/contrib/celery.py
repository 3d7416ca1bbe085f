"""Adopt existing Celery tasks: their call sites keep working, and unijob's backend runs them.

    from unijob.contrib.celery import adopt

    @adopt
    @app.task(bind=True, autoretry_for=(IOError,), retry_backoff=True)
    def fetch(self, url): ...

    fetch.delay("https://example.com")              # through unijob, on the configured backend
    fetch.apply_async(("https://example.com",), countdown=60, queue="low")

An adopted task keeps its name and its function. ``delay``, ``apply_async``, ``s``/``si``
signatures (through :class:`group`) and ``AsyncResult``-like handles go through unijob; inside
the task, ``self.request.id``, ``self.request.retries`` and ``self.retry(...)`` (Celery's own
autoretry included) work as in Celery. An option with no equivalent raises
``UnsupportedOptionError`` naming it (``on_unsupported="warn"``: a warning, and it is dropped).
While the app's ``task_always_eager`` is on, Celery runs adopted tasks eagerly as before (tests
written for eager mode keep passing until they move to the inline adapter). The guide, with the
table of every option: docs/migrating-from-celery.md.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final

from unijob import config, serializers
from unijob.adapters.celery_wire import HEADER
from unijob.constants import DEFAULT_BACKEND
from unijob.enqueuing import perform_all_later
from unijob.errors import BackendNotInstalledError, ConfigurationError, JobNotFoundError, SerializationError
from unijob.job import Job
from unijob.options import make_options
from unijob.results import JobResult, find, stores_result
from unijob.retry import RetryJob
from unijob.scheduling import utcnow
from unijob.urls import REDIS_SCHEMES, scheme

try:
    import celery
    from celery.app.task import Context
    from celery.canvas import Signature
    from celery.exceptions import MaxRetriesExceededError
    from celery.exceptions import TimeoutError as CeleryTimeoutError
except ImportError as exc:  # pragma: no cover - celery comes with the extra
    raise BackendNotInstalledError('unijob.contrib.celery needs Celery: pip install "unijob[celery]"') from exc

# apply_async options unijob does something with; any other raises (config.no_equivalent)
_MAPPED: Final = frozenset(
    {"countdown", "eta", "queue", "priority", "task_id", "ignore_result", "expires", "time_limit", "headers"}
)
# header names a call cannot set: Celery's own (celery.app.task.Context._get_custom_headers) and unijob's
_RESERVED_HEADERS: Final = frozenset({*vars(Context), "lang", "task", "argsrepr", "kwargsrepr", "compression", HEADER})
# options that change nothing in unijob: whatever their value, or at the value given here
_IGNORED: Final = frozenset({"add_to_parent", "producer", "result_cls", "connection"})
_HARMLESS: Final = {"serializer": "json", "compression": None, "retry": False, "retry_policy": None, "chord": None}
# task settings (decorator options) unijob cannot honour: the setting, the app setting that is its
# default (a Celery worker applies that one to unijob's tasks too), and why
_TASK_SETTINGS: Final = {
    "soft_time_limit": ("task_soft_time_limit", "unijob has a hard time limit only: time_limit"),
    "rate_limit": ("task_default_rate_limit", "rate limits are not supported"),
}
CELERY_STATES: Final = {
    "enqueued": "PENDING",
    "scheduled": "PENDING",
    "running": "STARTED",
    "retrying": "RETRY",
    "succeeded": "SUCCESS",
    "failed": "FAILURE",
    "discarded": "FAILURE",
}
CELERY_LEVELS: Final = 9  # Celery priorities run 0..9


class AdoptedTaskJob(Job, abstract=True):
    """The unijob job of an adopted Celery task: runs the task's own function (``task.run``, with
    Celery's autoretry wrapper) with a Celery request pushed, so ``self.request`` works."""

    celery_task: ClassVar[celery.Task]

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        task = type(self).celery_task
        custom = self.headers or {}
        task.push_request(
            **{
                **custom,  # as in Celery, each custom header is an attribute of the request too
                "unijob_job": self,  # what task.retry() looks for: this call runs as a unijob job
                "id": self.job_id,
                "retries": self.executions - 1,
                "args": list(args),
                "kwargs": dict(kwargs),
                "delivery_info": {"routing_key": self.queue, "priority": self.priority},
                "headers": dict(custom) or None,
                "is_eager": False,
                "called_directly": False,
            }
        )
        try:
            return task.run(*args, **kwargs)
        finally:
            task.pop_request()

    @classmethod
    def body(cls) -> Any:
        return cls.celery_task.run


def adopt(task: celery.Task, *, backend: str = DEFAULT_BACKEND) -> celery.Task:
    """Make the Celery task ``task`` a unijob job of the same name, and send its ``delay`` and
    ``apply_async`` through unijob (on ``backend``). Returns the task, changed in place, so it
    works as a decorator above ``@app.task``. The Celery worker of your app runs it once
    ``register_jobs(app)`` is called where the app is made (docs/migrating-from-celery.md)."""
    if not isinstance(task, celery.Task):
        raise TypeError(f"adopt takes a Celery task (what @app.task returns), not {task!r}")
    if getattr(task, "unijob_job", None) is not None:
        return task
    kind = type(_real(task))  # the task's class, behind Celery's lazy proxy
    for setting, (default, why) in _TASK_SETTINGS.items():
        if _own_setting(task, setting, default) is not None:
            config.no_equivalent(task.name, f"@app.task({setting}=...)", why)
    if (task.serializer or "json") != "json":
        config.no_equivalent(task.name, f"@app.task(serializer={task.serializer!r})", "unijob sends JSON, never pickle")
    priority = _own_setting(task, "priority", "task_default_priority")  # the app's default is the adapter's too
    time_limit = getattr(task, "time_limit", None)  # the task's own, or the app's task_time_limit
    attributes: dict[str, Any] = {
        "timeout": None if time_limit is None else float(time_limit),
        "celery_task": task,
        "queue": getattr(task, "queue", None) or task.app.conf.task_default_queue or "celery",
        "priority": None if priority is None else native_priority(task.app, priority),
        "backend": backend,
        "store_result": _stores_results(task),
        "__module__": kind.__module__,
        "__qualname__": kind.__qualname__,  # log lines name the task as Celery's do
        "__doc__": task.__doc__,
    }
    job_class = type(f"{kind.__name__}Job", (AdoptedTaskJob,), attributes, name=task.name)
    task.unijob_job = task.job_class = job_class  # job_class: unijob_test.assert_enqueued(task) finds it
    task.delay = lambda *args, **kwargs: apply_async(task, args, kwargs)
    task.apply_async = lambda args=None, kwargs=None, **options: apply_async(task, args, kwargs, **options)
    task.retry = lambda *args, **kwargs: retry(task, *args, **kwargs)
    task.AsyncResult = lambda task_id, **_: AsyncResult(task_id, backend, kept=_kept(job_class))
    return task


def _real(task: celery.Task) -> celery.Task:
    """The task object itself, behind the lazy proxy ``@app.task`` may return."""
    real: celery.Task = getattr(task, "_get_current_object", lambda: task)()
    return real


def _own_setting(task: celery.Task, setting: str, app_setting: str | None) -> Any:
    """The task's own value of a setting, None when it has none or has the app's default."""
    value = getattr(task, setting, None)
    if value is None or (app_setting is not None and value == task.app.conf.get(app_setting)):
        return None
    return value


def _kept(job_class: type[AdoptedTaskJob]) -> bool:
    return config.settings().results if job_class.store_result is None else job_class.store_result


def _eager(task: celery.Task) -> bool:
    return bool(task.app.conf.task_always_eager)


def adopted_job(task: celery.Task) -> type[AdoptedTaskJob]:
    job_class: type[AdoptedTaskJob] | None = getattr(task, "unijob_job", None)
    if job_class is None:
        raise ConfigurationError(f"the Celery task {task.name!r} is not adopted: call unijob.contrib.celery.adopt on it first")
    return job_class


def new_job(task: celery.Task, args: Sequence[Any] | None, kwargs: dict[str, Any] | None, **options: Any) -> AdoptedTaskJob:
    """The unijob job an ``apply_async(args, kwargs, **options)`` call of an adopted task describes."""
    if task.typing:  # as Celery does: a call that does not fit the function fails here, not in a worker
        check = getattr(_real(task), "__header__", None)
        if check is not None:
            check(*(args or ()), **(kwargs or {}))
    job = adopted_job(task)(*(args or ()), **(kwargs or {}))
    for option in sorted(set(options) - _MAPPED - _IGNORED, key=lambda name: (name != "group_id", name)):
        if option in _HARMLESS and options[option] == _HARMLESS[option]:
            continue
        config.no_equivalent(task.name, f"apply_async({option}=...)", _WHY.get(option, "it has no equivalent in unijob"))
    chosen: dict[str, Any] = {}
    if options.get("countdown") is not None:
        chosen["wait"] = options["countdown"]
    if options.get("eta") is not None:
        chosen["wait_until"] = _datetime(task, options["eta"])
    if options.get("queue") is not None:
        chosen["queue"] = options["queue"]
    if options.get("priority") is not None:
        chosen["priority"] = native_priority(task.app, options["priority"])
    if options.get("time_limit") is not None:
        chosen["timeout"] = options["time_limit"]
    expires = options["expires"] if options.get("expires") is not None else getattr(task, "expires", None)
    if expires is not None:  # seconds, a datetime or an ISO string; the task's own expires is every call's
        chosen["expires"] = _datetime(task, expires) if isinstance(expires, (str, dt.datetime)) else expires
    job.apply(make_options(task.name, chosen))
    if options.get("task_id"):
        job.job_id = str(options["task_id"])
    if options.get("headers"):
        job.headers = _custom_headers(task, options["headers"])
    if options.get("ignore_result") is not None and (not options["ignore_result"]) != stores_result(job):
        config.no_equivalent(
            task.name, "apply_async(ignore_result=...)", "a job keeps its result or not as its task says, for every call"
        )
    return job


def _custom_headers(task: celery.Task, headers: object) -> dict[str, Any]:
    """A call's ``headers=``: named JSON values, none of them a header Celery or unijob sets itself."""
    what = f"{task.name}: apply_async(headers=...)"
    if not isinstance(headers, Mapping) or not all(isinstance(name, str) for name in headers):
        raise TypeError(f"{what} takes a dict of header names to values, not {headers!r}")
    reserved = sorted(set(headers) & _RESERVED_HEADERS)
    if reserved:
        raise ValueError(f"{what} cannot set {reserved[0]!r}: Celery or unijob sets that header itself; choose another name")
    try:
        json.dumps(headers, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} must hold JSON values (str, int, float, bool, None, lists, dicts): {exc}") from None
    return dict(headers)


def _datetime(task: celery.Task, value: Any) -> Any:
    """An ``eta`` or ``expires`` time: an ISO string read, a naive time in the app's timezone, as a
    Celery worker reads it."""
    value = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=task.app.timezone)
    return value


def apply_async(
    task: celery.Task, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
) -> Any:
    """Send an adopted task through unijob; its :class:`AsyncResult`. With the app's
    ``task_always_eager`` on, Celery's own ``apply_async`` runs it here (an ``EagerResult``)."""
    if _eager(task):
        real = _real(task)
        return type(real).apply_async(real, args, kwargs, **options)
    job = new_job(task, args, kwargs, **options)
    job.enqueue()
    return AsyncResult(job.job_id, job.backend, kept=stores_result(job))


_WHY: Final = {
    "link": "callbacks are not supported: use a unijob batch",
    "link_error": "callbacks are not supported: use a unijob batch with on_discard",
    "chain": "chains are not supported",
    "chord": "chords are not supported: use a unijob batch with on_success",
    "group_id": "celery.group sends each task itself: use unijob.contrib.celery.group",
    "group_index": "celery.group sends each task itself: use unijob.contrib.celery.group",
    "shadow": "a job runs under its own name",
    "exchange": "unijob routes by queue only",
    "routing_key": "unijob routes by queue only",
    "soft_time_limit": "unijob has a hard time limit only: time_limit",
    "serializer": "unijob sends JSON, never pickle",
    "compression": "unijob sends plain JSON",
    "retry": "unijob does not retry a publish: an unreachable broker raises EnqueueError within seconds",
    "retry_policy": "unijob does not retry a publish: an unreachable broker raises EnqueueError within seconds",
}


def retry(
    task: celery.Task,
    args: Any = None,
    kwargs: Any = None,
    exc: BaseException | None = None,
    throw: bool = True,
    eta: dt.datetime | None = None,
    countdown: float | None = None,
    max_retries: int | None = None,
    **options: Any,
) -> Exception:
    """Celery's ``Task.retry`` inside a unijob job: run again after ``countdown`` (or at ``eta``,
    or after ``default_retry_delay``), unless ``max_retries`` retries were made already, in which
    case ``exc`` (or ``MaxRetriesExceededError``) is raised, as Celery does. A call that Celery
    runs itself (eager mode, ``task.apply()``) retries as Celery does."""
    job = getattr(task.request, "unijob_job", None)
    if not isinstance(job, AdoptedTaskJob):
        real = _real(task)
        retried: Exception = type(real).retry(real, args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        return retried
    if args is not None or kwargs is not None or options:
        config.no_equivalent(
            task.name, "retry(args=, kwargs=, or options)", "a retry runs with the job's own arguments and options"
        )
    if not throw:
        config.no_equivalent(
            task.name, "retry(throw=False)", "a unijob retry ends the run that asks for it: raise self.retry(...)"
        )
    limit = task.max_retries if max_retries is None else max_retries
    retries = job.executions - 1
    if limit is not None and retries >= limit:
        if exc is not None:
            raise exc
        raise MaxRetriesExceededError(f"Can't retry {task.name}[{job.job_id}] args:{job.args} kwargs:{job.kwargs}")
    if countdown is None and eta is not None:
        countdown = (eta.replace(tzinfo=eta.tzinfo or task.app.timezone) - utcnow()).total_seconds()
    if countdown is None:
        countdown = float(task.default_retry_delay or 0)
    raise RetryJob(wait=max(0.0, float(countdown)), error=exc)


def native_priority(app: celery.Celery, priority: int) -> int:
    """A Celery priority (0..9) as unijob's (-100..100), with the broker's meaning: on Redis 0 runs
    first, on RabbitMQ 9 does."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"a Celery priority is an integer, not {priority!r}")
    level = min(max(priority, 0), CELERY_LEVELS)
    url = app.conf.broker_write_url or app.conf.broker_url or ""
    if scheme(url) in REDIS_SCHEMES:
        level = CELERY_LEVELS - level
    return math.floor(level * 200 / CELERY_LEVELS - 100 + 0.5)


def _stores_results(task: celery.Task) -> bool | None:
    """As in Celery: results are kept when the app has a result backend and the task does not ignore
    them. Without a result backend, unijob's ``results`` setting decides."""
    if task.ignore_result:
        return False
    return True if task.app.conf.result_backend else None


# --- results -----------------------------------------------------------------------------------------


class AsyncResult:
    """Celery's ``AsyncResult`` for a job sent through unijob, read from ``unijob.find``: ``id``,
    ``state``/``status``, ``ready()``, ``successful()``, ``failed()``, ``result``, ``traceback``
    and ``get(timeout=)``. A job unijob knows nothing of is ``PENDING``, as in Celery. ``kept``
    False: the job keeps no result (its app has no result backend), so ``get()`` raises at once,
    as Celery's does without a result backend, instead of waiting for ever."""

    def __init__(self, id: str, backend: str = DEFAULT_BACKEND, *, kept: bool | None = None) -> None:
        self.id = self.task_id = id
        self.backend = backend
        self.kept = kept

    def _result(self) -> JobResult | None:
        try:
            return find(self.id, self.backend)
        except JobNotFoundError:
            return None

    @property
    def state(self) -> str:
        found = self._result()
        return "PENDING" if found is None else CELERY_STATES[found.status]

    status = state

    def ready(self) -> bool:
        return self.state in ("SUCCESS", "FAILURE")

    def successful(self) -> bool:
        return self.state == "SUCCESS"

    def failed(self) -> bool:
        return self.state == "FAILURE"

    @property
    def result(self) -> Any:
        """The return value once it succeeded, the exception once it failed, None before."""
        found = self._result()
        if found is None or not found.is_finished:
            return None
        return found.return_value if found.succeeded else _exception(found)

    info = result

    @property
    def traceback(self) -> str | None:
        found = self._result()
        return found.error.traceback if found is not None and found.error is not None else None

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5, **_: Any) -> Any:
        """Wait for the job; its return value, or (``propagate``) its exception raised here."""
        if self.kept is False:
            raise NotImplementedError(
                f"job {self.id} keeps no result: give the Celery app a result backend (or set unijob's "
                "'results' setting, or do not ignore_result) to get() it"
            )
        found = self._wait(timeout, interval)
        if found.succeeded:
            return found.return_value
        error = _exception(found)
        if propagate:
            raise error
        return error

    def _wait(self, timeout: float | None, interval: float) -> JobResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = self._result()
            if found is not None and found.is_finished:
                return found
            if deadline is not None and time.monotonic() > deadline:
                raise CeleryTimeoutError(f"the job {self.id} did not finish within {timeout}s")
            time.sleep(interval)

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"


class TaskFailed(Exception):
    """A job's exception, when its class is not one this process knows (nothing is imported for it)."""


def _exception(found: JobResult) -> BaseException:
    assert found.error is not None
    cls = serializers.known_class(found.error.type)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(found.error.message)
        except Exception:  # a constructor that wants other arguments
            pass
    return TaskFailed(f"{found.error.type}: {found.error.message}")


# --- group -------------------------------------------------------------------------------------------


class group:
    """``celery.group`` for adopted tasks, sent in one native bulk call (``perform_all_later``)::

    from unijob.contrib.celery import group
    group(fetch.s(url) for url in urls).apply_async()
    """

    def __init__(self, *tasks: Signature | Iterable[Signature]) -> None:
        flat: list[Signature] = []
        for item in tasks:
            flat.extend([item] if isinstance(item, Signature) else item)
        self.tasks = flat

    def apply_async(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """One bulk enqueue of every task; a :class:`GroupResult`. With ``task_always_eager`` on
        (every task's app), Celery's own group runs them here."""
        if self.tasks and all(_eager(signature.type) for signature in self.tasks):
            return celery.group(self.tasks).apply_async(args, kwargs, **options)
        jobs = []
        for signature in self.tasks:
            task = signature.type
            merged = {**signature.options, **options}
            jobs.append(new_job(task, (*args, *signature.args), {**signature.kwargs, **(kwargs or {})}, **merged))
        perform_all_later(jobs)
        return GroupResult([AsyncResult(job.job_id, job.backend, kept=stores_result(job)) for job in jobs], jobs)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    __call__ = delay


class GroupResult:
    """The results of a :class:`group`: ``ready()``, ``successful()``, ``completed_count()``, ``get()``."""

    def __init__(self, results: list[AsyncResult], jobs: Sequence[Job] = ()) -> None:
        self.results = results
        self.jobs = list(jobs)  # each with successfully_enqueued and enqueue_error

    def ready(self) -> bool:
        return all(result.ready() for result in self.results)

    def successful(self) -> bool:
        return all(result.successful() for result in self.results)

    def completed_count(self) -> int:
        return sum(result.successful() for result in self.results)

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5) -> list[Any]:
        return [result.get(timeout=timeout, propagate=propagate, interval=interval) for result in self.results]

    join = get

    def __iter__(self) -> Any:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)
