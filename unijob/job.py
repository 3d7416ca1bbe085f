"""The public Job API: ``unijob.Job``, the ``@unijob.job`` decorator, and configured handles
(``job.set(...)``). It composes the core (:mod:`unijob.core`) with enqueueing, execution and
batches, as Rails' ``ActiveJob::Base`` includes its concerns."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, TypeVar, cast, overload

from unijob import batches, enqueuing, execution
from unijob.constants import DEFAULT_BACKEND, DEFAULT_QUEUE
from unijob.core import BaseJob
from unijob.options import JobOptions, check_duration, check_limit, make_options

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from unijob.options import EnqueueOptions

P = ParamSpec("P")
NO_OPTIONS = JobOptions()
R = TypeVar("R")


class Job(BaseJob, abstract=True):
    """A job class. Subclass it and define ``perform``::

        class UpdateUserStats(unijob.Job):
            queue = "stats"
            retry_on = unijob.retry_on(TimeoutError, wait=unijob.polynomial, attempts=5)
            discard_on = (UserGone,)

            def perform(self, user_id: int) -> None: ...

        UpdateUserStats.perform_later(42)

    An instance is one invocation: its arguments plus what the backend made of it. Do not
    override ``__init__``; use the callbacks (``before_perform`` and friends) instead.
    """

    @classmethod
    def new(cls, *args: Any, **kwargs: Any) -> Self:
        """Build a job without enqueueing it (for ``unijob.perform_all_later``)."""
        return cls(*args, **kwargs)

    @classmethod
    def set(cls, **options: Unpack[EnqueueOptions]) -> JobRef[..., Any]:
        """A handle with enqueue options: ``wait`` (timedelta or seconds) or ``wait_until``,
        ``queue``, ``priority`` (-100..100, larger runs sooner) and ``backend``."""
        return JobRef(cls).set(**options)

    @classmethod
    def perform_later(cls, *args: Any, **kwargs: Any) -> Self:
        return cls(*args, **kwargs).enqueue()

    @classmethod
    def perform_now(cls, *args: Any, **kwargs: Any) -> Any:
        return execution.perform_now(cls(*args, **kwargs))

    @classmethod
    async def aperform_later(cls, *args: Any, **kwargs: Any) -> Self:
        """``perform_later`` for async code: the enqueue runs in a thread, the event loop goes on."""
        return await asyncio.to_thread(cls.perform_later, *args, **kwargs)

    @classmethod
    async def aperform_now(cls, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(cls.perform_now, *args, **kwargs)

    def enqueue(self) -> Self:
        """Enqueue this job on its backend (or into the open ``unijob.bulk()`` block)."""
        enqueuing.enqueue(self)
        return self

    @property
    def batch(self) -> batches.Batch | None:
        """The batch this job belongs to (read fresh from the store), or None."""
        return None if self.batch_id is None else batches.Batch.find(self.batch_id, self.backend)


class FunctionJob(Job, abstract=True):
    """A job made by ``@unijob.job`` from a function."""

    function: ClassVar[Callable[..., Any]]

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        return type(self).function(*args, **kwargs)

    @classmethod
    def body(cls) -> Callable[..., Any]:
        return cls.function


class JobRef(Generic[P, R]):
    """A job with enqueue options, typed with the job's own parameters."""

    def __init__(self, job_class: type[Job], options: JobOptions = NO_OPTIONS) -> None:
        self.job_class = job_class
        self.options = options

    @property
    def name(self) -> str:
        return self.job_class.name

    def new(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Build the job without enqueueing it."""
        return self.job_class(*args, **kwargs).apply(self.options)

    def perform_later(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue the job; returns it with ``job_id``, ``provider_job_id`` and friends set."""
        return self.new(*args, **kwargs).enqueue()

    def perform_now(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the job here and now, through the same callbacks and retry policies as a worker."""
        return cast(R, execution.perform_now(self.new(*args, **kwargs)))

    async def aperform_later(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """``perform_later`` for async code: the enqueue runs in a thread, the event loop goes on."""
        return await asyncio.to_thread(self.perform_later, *args, **kwargs)

    async def aperform_now(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """``perform_now`` for async code (an ``async def`` job included), in a thread of its own."""
        return await asyncio.to_thread(execution.perform_now, self.new(*args, **kwargs))

    def set(self, **options: Unpack[EnqueueOptions]) -> Self:
        """A copy with enqueue options: ``wait`` (timedelta or seconds) or ``wait_until``,
        ``queue``, ``priority`` (-100..100, larger runs sooner) and ``backend``."""
        configured = copy.copy(self)
        configured.options = self.options.merged(make_options(self.job_class.display_name, dict(options)))
        return configured

    def __repr__(self) -> str:
        return f"<job {self.name}>"


class JobFunction(JobRef[P, R]):
    """What ``@unijob.job`` returns: the function, callable as before, plus the Job API."""

    def __init__(self, function: Callable[P, R], job_class: type[FunctionJob], options: JobOptions = NO_OPTIONS) -> None:
        super().__init__(job_class, options)
        self.function = function
        functools.update_wrapper(self, function)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.function(*args, **kwargs)


@overload
def job(function: Callable[P, R], /) -> JobFunction[P, R]: ...


@overload
def job(
    *,
    queue: str = ...,
    priority: int | None = ...,
    backend: str = ...,
    name: str | None = ...,
    store_result: bool | None = ...,
    timeout: dt.timedelta | float | None = ...,
    unique: bool = ...,
    concurrency_limit: int | None = ...,
) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...


def job(
    function: Callable[P, R] | None = None,
    /,
    *,
    queue: str = DEFAULT_QUEUE,
    priority: int | None = None,
    backend: str = DEFAULT_BACKEND,
    name: str | None = None,
    store_result: bool | None = None,
    timeout: dt.timedelta | float | None = None,
    unique: bool = False,
    concurrency_limit: int | None = None,
) -> JobFunction[P, R] | Callable[[Callable[P, R]], JobFunction[P, R]]:
    """Make a function a job::

    @unijob.job(queue="mail", priority=10)
    def send_welcome(user_id: int) -> None: ...

    send_welcome.perform_later(42)

    ``timeout``, ``unique`` and ``concurrency_limit`` are those of :class:`unijob.Job`
    (docs/operations.md).
    """

    def decorate(fn: Callable[P, R]) -> JobFunction[P, R]:
        owner = name or fn.__qualname__
        limit = None if timeout is None else check_duration(owner, "timeout", timeout).total_seconds()
        attributes: dict[str, Any] = {
            "function": staticmethod(fn),
            "queue": queue,
            "priority": priority,
            "backend": backend,
            "store_result": store_result,
            "timeout": limit,
            "unique": unique,
            "concurrency_limit": check_limit(owner, concurrency_limit),
            "__module__": fn.__module__,
            "__qualname__": fn.__qualname__,
            "__doc__": fn.__doc__,
        }
        job_class = type(fn.__name__, (FunctionJob,), attributes, name=name or f"{fn.__module__}.{fn.__qualname__}")
        return JobFunction(fn, cast("type[FunctionJob]", job_class))

    return decorate(function) if function is not None else decorate
