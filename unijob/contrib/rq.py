"""Adopt existing RQ code: ``q.enqueue(f, ...)``, ``enqueue_in``, ``enqueue_at``, ``@job`` with
``.delay`` and ``Job.fetch(id)`` keep working, and unijob's backend runs the jobs.

    from unijob.contrib.rq import Queue, Job, Retry, job

    @job("default", retry=Retry(max=3, interval=[10, 30, 60]))
    def send_report(user_id): ...

    send_report.delay(42)
    q = Queue("low")
    job = q.enqueue(send_report, 42)
    Job.fetch(job.id).get_status()

A function must be adopted where it is defined (``@job(...)`` or ``adopt(f)``), so that the
worker, which imports that module, knows it: nothing named in a payload is ever imported. Its
unijob name is RQ's own ``func_name`` (``module.function``), so RQ's dashboards and plain RQ jobs
of the same function keep meeting it. An option with no equivalent raises
``UnsupportedOptionError`` naming it. docs/migrating-from-rq.md is the guide, with the table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, Final

from unijob import config, registry
from unijob.constants import DEFAULT_BACKEND, DEFAULT_QUEUE
from unijob.core import BaseJob
from unijob.errors import ConfigurationError, DuplicateJobError, JobNotFoundError
from unijob.job import FunctionJob, JobFunction
from unijob.job import job as unijob_job
from unijob.options import make_options
from unijob.results import JobResult, find
from unijob.retry import RetryPolicy, retry_on

NoSuchJobError = JobNotFoundError  # what RQ's Job.fetch raises for an unknown id

RQ_STATUSES: Final = {
    "enqueued": "queued",
    "scheduled": "scheduled",
    "running": "started",
    "retrying": "scheduled",
    "succeeded": "finished",
    "failed": "failed",
    "discarded": "failed",
}
_WHY: Final = {
    "result_ttl": "RQ keeps results as the rq adapter's result_ttl option says, unijob's records for result_retention",
    "failure_ttl": "RQ keeps failures as the rq adapter's failure_ttl option says, unijob's records for result_retention",
    "at_front": "a job cannot jump its queue: use a queue of its own",
    "depends_on": "dependencies are not supported: use a unijob batch with on_success",
    "meta": "a job carries no metadata of its own",
    "description": "a job is described by its name and arguments",
    "on_success": "callbacks are not supported: use a unijob batch",
    "on_failure": "callbacks are not supported: use a unijob batch with on_discard",
    "on_stopped": "callbacks are not supported",
    "repeat": "a job runs once: for one that comes back on a schedule, use a recurring job (unijob.recurring)",
    "pipeline": "unijob enqueues each job itself",
    "rate_limit": "rate limits are not supported",
    "webhooks": "webhooks are not supported: subscribe to unijob's events",
    "queue_class": "unijob's Queue is the only queue class",
}
# What RQ's Queue.enqueue takes out of the keywords (rq/queue.py parse_args); the rest are the job's.
_ENQUEUE_OPTIONS: Final = frozenset({*_WHY, "job_timeout", "ttl", "unique", "job_id", "retry", "args", "kwargs"}) - {
    "queue_class"
}
_DELAY_OPTIONS: Final = ("depends_on", "job_id", "at_front")  # what RQ's ``.delay`` takes out of the keywords
_DECORATOR_DEFAULTS: Final = ("timeout", "ttl")  # @job options that RQ's .delay passes on to every call
_NO_LIMIT: Final = "a call cannot lift its backend's time limit: set the rq adapter's job_timeout option"
_UNITS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _rq_seconds(owner: str, option: str, value: object) -> int | None:
    """A duration as RQ reads one (``rq.utils.parse_timeout``): seconds as a number or a string of
    digits, or digits and a unit (``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``); ``-1`` is RQ's "no
    limit", returned as None."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (int, float)):
            seconds = int(value)
        elif isinstance(value, str) and value[-1:].lower() in _UNITS:
            seconds = int(value[:-1]) * _UNITS[value[-1:].lower()]
        else:
            seconds = int(value)  # type: ignore[call-overload]
    except (ValueError, TypeError):
        raise ValueError(
            f"{owner}: {option} must be seconds (an integer), or digits and a unit such as '10m' or '2h', as in RQ; not {value!r}"
        ) from None
    if seconds == -1:
        return None
    if seconds <= 0:
        raise ValueError(f"{owner}: {option} must be a positive number of seconds (or -1, no limit), not {value!r}")
    return seconds


def _time_limit(owner: str, call: str, option: str, value: object) -> int | None:
    """A time limit in seconds; RQ's -1 (no limit) cannot lift the backend's own: refused."""
    seconds = _rq_seconds(owner, option, value)
    if seconds is None:
        config.no_equivalent(owner, f"{call}({option}=-1)", _NO_LIMIT)
    return seconds


class Retry:
    """RQ's ``Retry(max, interval)``: retry any exception up to ``max`` times, waiting ``interval``
    seconds (a number, or a list: one per retry, the last repeated)."""

    def __init__(self, max: int, interval: float | Sequence[float] = 0) -> None:
        if max < 1:
            raise ValueError("Retry(max=...) must be at least 1")
        self.max = max
        self.intervals = [float(interval)] if isinstance(interval, (int, float)) else [float(i) for i in interval] or [0.0]

    def wait(self, executions: int) -> float:
        return self.intervals[min(executions - 1, len(self.intervals) - 1)]

    def policy(self) -> RetryPolicy:
        return retry_on(Exception, wait=self.wait, attempts=self.max + 1, jitter=0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Retry) and (self.max, self.intervals) == (other.max, other.intervals)

    def __hash__(self) -> int:
        return hash((self.max, tuple(self.intervals)))


def adopt(
    function: Callable[..., Any], *, queue: str = DEFAULT_QUEUE, retry: Retry | None = None, backend: str = DEFAULT_BACKEND
) -> JobFunction[..., Any]:
    """Make ``function`` a unijob job named as RQ names it (``module.function``), its result kept as
    RQ keeps it. Call it where the function is defined, so that the worker knows it."""
    return _adopt(function, queue=queue, retry=retry, backend=backend, delay_defaults={})


def _adopt(
    function: Callable[..., Any], *, queue: str, retry: Retry | None, backend: str, delay_defaults: dict[str, Any]
) -> JobFunction[..., Any]:
    if isinstance(function, JobFunction):
        return function
    adopted = unijob_job(queue=queue, backend=backend, name=f"{function.__module__}.{function.__qualname__}", store_result=True)(
        function
    )
    if retry is not None:
        adopted.job_class.retry_on = retry.policy()
        adopted.job_class.rq_retry = retry  # type: ignore[attr-defined]

    def delay(*args: Any, **kwargs: Any) -> RQJob:
        """As RQ's ``.delay``: ``job_id``, ``depends_on`` and ``at_front`` are options, the rest the
        job's; the decorator's ``timeout`` and ``ttl`` hold for every call."""
        options: dict[str, Any] = {**delay_defaults, **{key: kwargs.pop(key) for key in _DELAY_OPTIONS if key in kwargs}}
        return _enqueue(adopted, args, kwargs, options, {})

    adopted.delay = adopted.enqueue = delay  # type: ignore[attr-defined]  # RQ gives both names
    return adopted


def job(
    queue: Any = DEFAULT_QUEUE, connection: Any = None, *, retry: Retry | None = None, **options: Any
) -> Callable[[Callable[..., Any]], JobFunction[..., Any]]:
    """RQ's ``@job(queue, connection=...)`` decorator: the function becomes an adopted job with
    ``.delay(*args, **kwargs)`` (also named ``.enqueue``, as RQ names it). ``queue`` is a name or a
    queue object (this module's ``Queue``, or RQ's own: its name is used). ``connection`` is
    accepted and unused: the configured backend decides where jobs go. ``timeout`` and ``ttl``
    hold for every ``.delay()``, as in RQ."""
    name = queue if isinstance(queue, str) else getattr(queue, "name", queue)
    defaults = {option: options.pop(option) for option in _DECORATOR_DEFAULTS if options.get(option) is not None}
    for option in sorted(options):
        if options[option] not in (None, False):  # RQ's defaults say nothing
            config.no_equivalent(
                "the decorated function", f"@job({option}=...)", _WHY.get(option, "it has no equivalent in unijob")
            )
    return lambda function: _adopt(function, queue=name, retry=retry, backend=DEFAULT_BACKEND, delay_defaults=defaults)


class Queue:
    """RQ's ``Queue`` for adopted functions: ``enqueue``, ``enqueue_call``, ``enqueue_in``,
    ``enqueue_at``. ``connection`` and ``serializer`` are accepted and unused: the job's backend
    decides where jobs go (its own, or the one a route names; ``backend=`` chooses one for every
    call, and no route moves them), and unijob sends JSON. ``is_async=False`` has no equivalent
    here: configure the inline adapter instead."""

    def __init__(
        self,
        name: str = DEFAULT_QUEUE,
        connection: Any = None,
        default_timeout: int | None = None,
        is_async: bool = True,
        *,
        backend: str | None = None,
        **_: Any,
    ) -> None:
        self.name = name
        self.backend = backend
        owner = f"queue {name!r}"
        self.default_timeout = None
        if default_timeout is not None:
            self.default_timeout = _time_limit(owner, "Queue", "default_timeout", default_timeout)
        if not is_async:
            config.no_equivalent(
                owner,
                "Queue(is_async=False)",
                "to run every job at once in the caller, configure the inline adapter (UNIJOB_ADAPTER=inline), "
                "or use the unijob_test fixture in tests",
            )

    def enqueue(self, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> RQJob:
        return self._enqueue(f, args, kwargs, {})

    def enqueue_call(
        self,
        func: Callable[..., Any] | str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> RQJob:
        """As RQ's: the job's keywords are ``kwargs``, every other keyword is an option."""
        return self._enqueue(func, args or (), dict(kwargs or {}), {}, options)

    def enqueue_in(self, time_delta: dt.timedelta, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> RQJob:
        return self._enqueue(f, args, kwargs, {"wait": time_delta})

    def enqueue_at(self, datetime: dt.datetime, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> RQJob:
        return self._enqueue(f, args, kwargs, {"wait_until": datetime})

    def _enqueue(
        self,
        f: Callable[..., Any] | str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        when: dict[str, Any],
        options: dict[str, Any] | None = None,
    ) -> RQJob:
        """As RQ does, the options it knows are taken out of ``kwargs``; the rest are the job's."""
        if options is None:
            options = {key: kwargs.pop(key) for key in list(kwargs) if key in _ENQUEUE_OPTIONS}
        if self.default_timeout is not None and options.get("job_timeout", options.get("timeout")) is None:
            options["timeout"] = self.default_timeout
        return _enqueue(_adopted(f), args, kwargs, options, {"queue": self.name, "backend": self.backend, **when})

    def __repr__(self) -> str:
        where = "the job's backend" if self.backend is None else f"backend {self.backend!r}"
        return f"<unijob Queue {self.name!r} on {where}>"


def _adopted(f: Callable[..., Any] | str) -> JobFunction[..., Any]:
    if isinstance(f, JobFunction):
        return f
    name = f if isinstance(f, str) else f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', f)}"
    if registry.is_registered(name):
        job_class = registry.lookup(name)
        if issubclass(job_class, FunctionJob):
            return JobFunction(job_class.function, job_class)
    raise ConfigurationError(
        f"{name} is not a unijob job: adopt it where it is defined (@unijob.contrib.rq.job(...) or "
        "unijob.contrib.rq.adopt(function)), so that the worker knows it too"
    )


def _enqueue(
    function: JobFunction[..., Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    rq_options: dict[str, Any],
    chosen: dict[str, Any],
) -> RQJob:
    if rq_options.get("args") is not None or rq_options.get("kwargs") is not None:
        args, kwargs = (*args, *(rq_options.pop("args") or ())), {**kwargs, **(rq_options.pop("kwargs") or {})}
    job_id, retry = rq_options.pop("job_id", None), rq_options.pop("retry", None)
    chosen = {**chosen, **_mapped(function.name, rq_options, job_id)}
    new = function.job_class(*args, **kwargs).apply(make_options(function.job_class.display_name, chosen))
    if retry is not None and not _same_retry(retry, getattr(function.job_class, "rq_retry", None)):
        config.no_equivalent(
            function.name, "enqueue(retry=...)", "a job retries as its @job(retry=...) or adopt(retry=...) says, for every call"
        )
    for option in sorted(rq_options):
        if rq_options[option] not in (None, False):
            config.no_equivalent(function.name, f"enqueue({option}=...)", _WHY.get(option, "it has no equivalent in unijob"))
    if job_id is not None:
        new.job_id = str(job_id)
    new.enqueue()
    if isinstance(new.enqueue_error, DuplicateJobError):
        raise new.enqueue_error  # as RQ's enqueue(unique=True) raises
    return RQJob(new.job_id, new.backend, name=function.name, origin=new.queue)


def _mapped(owner: str, rq_options: dict[str, Any], job_id: object) -> dict[str, Any]:
    """The RQ options that map onto ``set()`` options, taken out of ``rq_options``: ``job_timeout``
    (``timeout`` in ``enqueue_call`` and ``@job``) is a hard time limit, ``ttl`` the time a job may
    wait before it is discarded, ``unique=True`` (with the ``job_id`` RQ requires) a unique key."""
    chosen: dict[str, Any] = {}
    for option in ("job_timeout", "timeout"):
        if (value := rq_options.pop(option, None)) is not None and (seconds := _time_limit(owner, "enqueue", option, value)):
            chosen["timeout"] = seconds
    if (ttl := rq_options.pop("ttl", None)) is not None and (seconds := _rq_seconds(owner, "ttl", ttl)) is not None:
        chosen["expires"] = dt.timedelta(seconds=seconds)
    if rq_options.pop("unique", False):
        if job_id is None:
            raise ValueError(f"{owner}: enqueue(unique=True) requires an explicit job_id, as in RQ")
        chosen["unique_key"] = f"rq:{job_id}"
    return chosen


def _same_retry(given: Any, adopted: Retry | None) -> bool:
    """``retry=`` at a call site is fine when it says what the function's own retry says: this
    module's ``Retry`` or RQ's (``rq.Retry`` has the same ``max`` and ``intervals``)."""
    if adopted is None:
        return False
    try:
        return int(given.max) == adopted.max and [float(i) for i in given.intervals] == adopted.intervals
    except (AttributeError, TypeError, ValueError):
        return False


class RQJob:
    """RQ's ``Job`` for a job sent through unijob, read from ``unijob.find``: ``id``, ``get_id()``,
    ``get_status()``, ``return_value()``, ``result``, ``is_finished``, ``is_failed``, ``is_queued``,
    ``is_started``, ``is_scheduled`` (``is_deferred``, ``is_canceled``, ``is_stopped``: never),
    ``exc_info``, ``enqueued_at``, ``started_at``, ``ended_at``, ``func_name``, ``origin``. Each
    reads the job's record again, as RQ's ``refresh=True`` does (``refresh()`` does nothing)."""

    def __init__(self, id: str, backend: str = DEFAULT_BACKEND, *, name: str | None = None, origin: str | None = None) -> None:
        self.id = id
        self.backend = backend
        self._name, self._origin = name, origin

    @classmethod
    def fetch(cls, id: str, connection: Any = None, *, backend: str | None = None, **_: Any) -> RQJob:
        """The job ``id``, in ``backend``, or else wherever it was sent: the default backend first,
        then every other configured one (a route may have sent it there). Raises
        :data:`NoSuchJobError` for an id no store knows."""
        found = _find(id, backend)
        return cls(id, found.backend, name=found.job, origin=found.queue)

    @classmethod
    def fetch_many(cls, job_ids: Sequence[str], connection: Any = None, **options: Any) -> list[RQJob | None]:
        """As RQ's: one job per id, None for an id no store knows."""
        jobs: list[RQJob | None] = []
        for job_id in job_ids:
            try:
                jobs.append(cls.fetch(job_id, connection, **options))
            except JobNotFoundError:
                jobs.append(None)
        return jobs

    def _result(self) -> JobResult:
        return find(self.id, self.backend)

    def get_id(self) -> str:
        return self.id

    def refresh(self) -> None:
        """Nothing to do: every property reads the job's record again."""

    def get_status(self, refresh: bool = True) -> str:
        return RQ_STATUSES[self._result().status]

    def return_value(self, refresh: bool = True) -> Any:
        found = self._result()
        return found.return_value if found.succeeded else None

    result = property(lambda self: self.return_value())
    is_finished = property(lambda self: self.get_status() == "finished")
    is_failed = property(lambda self: self.get_status() == "failed")
    is_queued = property(lambda self: self.get_status() == "queued")
    is_started = property(lambda self: self.get_status() == "started")
    is_scheduled = property(lambda self: self.get_status() == "scheduled")
    is_deferred = is_canceled = is_stopped = property(lambda self: False)  # no such states in unijob

    @property
    def exc_info(self) -> str | None:
        error = self._result().error
        return None if error is None else error.traceback

    enqueued_at = property(lambda self: self._result().enqueued_at)
    started_at = property(lambda self: self._result().started_at)
    ended_at = property(lambda self: self._result().finished_at)
    func_name = property(lambda self: self._name or self._result().job)
    origin = property(lambda self: self._origin or self._result().queue)

    def __repr__(self) -> str:
        return f"<unijob RQ Job {self.id}>"


Job = RQJob  # ``from unijob.contrib.rq import Job``, as ``from rq.job import Job``


def _find(job_id: str, backend: str | None) -> JobResult:
    if backend is not None:
        return find(job_id, backend)
    try:
        return find(job_id, DEFAULT_BACKEND)
    except JobNotFoundError as not_found:
        for other in config.settings().backends:
            if other == DEFAULT_BACKEND:
                continue
            try:
                return find(job_id, other)
            except (JobNotFoundError, ConfigurationError):  # not there, or a backend that keeps no results
                continue
        raise not_found from None


def job_of(function: Callable[..., Any]) -> type[BaseJob]:
    """The unijob job class of an adopted function."""
    return _adopted(function).job_class
