"""The Job API: ``Job`` classes, the ``@job`` decorator, and configured handles (``.set()``)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import inspect
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, TypeVar, cast, overload

from unijob import registry
from unijob.retry import RetryPolicy

if TYPE_CHECKING:
    from unijob.batches import Batch

P = ParamSpec("P")
R = TypeVar("R")
_RefT = TypeVar("_RefT", bound="JobRef[Any, Any]")

PRIORITY_RANGE = range(-100, 101)


def new_job_id() -> str:
    """A random (version 4) UUID as text, without building a ``uuid.UUID``: this is on every
    enqueue's path and costs less than half of ``str(uuid.uuid4())``."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclasses.dataclass(frozen=True, slots=True)
class JobOptions:
    """Enqueue options, kept apart from the job's own arguments (``job.set(...)``)."""

    queue: str | None = None
    priority: int | None = None
    wait: dt.timedelta | None = None
    wait_until: dt.datetime | None = None
    backend: str | None = None

    def merged(self, other: JobOptions) -> JobOptions:
        changes = {f.name: getattr(other, f.name) for f in dataclasses.fields(other) if getattr(other, f.name) is not None}
        if "wait" in changes or "wait_until" in changes:  # the newer of the two wins
            changes.setdefault("wait", None)
            changes.setdefault("wait_until", None)
        return dataclasses.replace(self, **changes)


def validate_priority(priority: int | None) -> int | None:
    if priority is not None and (type(priority) is not int or priority not in PRIORITY_RANGE):
        raise ValueError(f"priority must be an integer from -100 to 100 (larger runs sooner), not {priority!r}")
    return priority


def make_options(
    *,
    wait: dt.timedelta | float | None = None,
    wait_until: dt.datetime | None = None,
    queue: str | None = None,
    priority: int | None = None,
    backend: str | None = None,
) -> JobOptions:
    if wait is not None and wait_until is not None:
        raise ValueError("give wait or wait_until, not both")
    if wait is not None and not isinstance(wait, dt.timedelta):
        if isinstance(wait, bool) or not isinstance(wait, (int, float)):
            raise ValueError(f"wait must be a timedelta or a number of seconds, not {wait!r}")
        wait = dt.timedelta(seconds=wait)
    if wait is not None and wait < dt.timedelta(0):
        raise ValueError(f"wait cannot be negative: {wait}")
    if wait_until is not None:
        if not isinstance(wait_until, dt.datetime):
            raise ValueError(f"wait_until must be a datetime, not {wait_until!r}")
        wait_until = wait_until.astimezone(dt.timezone.utc)  # a naive datetime is local time
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ValueError(f"queue must be a non-empty string, not {queue!r}")
    return JobOptions(queue, validate_priority(priority), wait, wait_until, backend)


class Job:
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

    # --- class configuration -----------------------------------------------------------------
    name: ClassVar[str] = ""  # registered name: module path and qualified name by default
    display_name: ClassVar[str] = ""
    queue: str = "default"
    priority: int | None = None  # -100..100, larger runs sooner; None: the backend's default
    backend: str = "default"  # which configured backend enqueues it
    retry_on: ClassVar[RetryPolicy | Sequence[RetryPolicy]] = ()
    discard_on: ClassVar[type[BaseException] | tuple[type[BaseException], ...]] = ()

    def __init_subclass__(cls, *, name: str | None = None, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        cls.name = name or f"{cls.__module__}.{cls.__qualname__}"
        cls.display_name = cls.__qualname__.rpartition("<locals>.")[2]
        validate_priority(cls.priority)
        registry.register(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.job_id = new_job_id()
        self.queue = type(self).queue
        self.priority = type(self).priority
        self.backend = type(self).backend
        self.wait: dt.timedelta | None = None
        self.wait_until: dt.datetime | None = None
        self.scheduled_at: dt.datetime | None = None
        self.enqueued_at: dt.datetime | None = None
        self.executions = 0
        self.exception_executions: dict[str, int] = {}
        self.batch_id: str | None = None
        self.provider_job_id: str | None = None
        self.successfully_enqueued = False
        self.enqueue_error: BaseException | None = None
        self.serialized: tuple[list[Any], dict[str, Any]] | None = None

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define perform()")

    # --- building and enqueueing ---------------------------------------------------------------

    @classmethod
    def new(cls, *args: Any, **kwargs: Any) -> Job:
        """Build a job without enqueueing it (for ``unijob.perform_all_later``)."""
        return cls(*args, **kwargs)

    @classmethod
    def set(
        cls,
        *,
        wait: dt.timedelta | float | None = None,
        wait_until: dt.datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        backend: str | None = None,
    ) -> JobRef[..., Any]:
        return JobRef(cls).set(wait=wait, wait_until=wait_until, queue=queue, priority=priority, backend=backend)

    @classmethod
    def perform_later(cls, *args: Any, **kwargs: Any) -> Job:
        return cls(*args, **kwargs).enqueue()

    @classmethod
    def perform_now(cls, *args: Any, **kwargs: Any) -> Any:
        from unijob.execution import perform

        return perform(cls(*args, **kwargs))

    def apply(self, options: JobOptions) -> Job:
        """Apply ``set()`` options to this instance."""
        if options.queue is not None:
            self.queue = options.queue
        if options.priority is not None:
            self.priority = options.priority
        if options.backend is not None:
            self.backend = options.backend
        if options.wait is not None or options.wait_until is not None:
            self.wait, self.wait_until = options.wait, options.wait_until
        return self

    def enqueue(self) -> Job:
        """Enqueue this job on its backend (or into the open ``unijob.bulk()`` block)."""
        from unijob.enqueuing import enqueue

        return enqueue(self)

    # --- callbacks: override in a subclass -------------------------------------------------------

    def before_enqueue(self) -> None:
        """Runs before the job is handed to the backend (not in bulk)."""

    def around_enqueue(self, proceed: Callable[[], None]) -> None:
        """Wraps the hand-over; call ``proceed()`` to enqueue."""
        proceed()

    def after_enqueue(self) -> None:
        """Runs once the backend accepted the job (not in bulk)."""

    def before_perform(self) -> None:
        """Runs in the worker before ``perform``."""

    def around_perform(self, proceed: Callable[[], Any]) -> Any:
        """Wraps ``perform``; call and return ``proceed()``."""
        return proceed()

    def after_perform(self) -> None:
        """Runs after ``perform`` returned."""

    def after_discard(self, error: BaseException) -> None:
        """Runs when the job failed for good: ``discard_on``, retries exhausted, or an unhandled error."""

    @property
    def batch(self) -> Batch | None:
        """The batch this job belongs to (read fresh from the store), or None."""
        from unijob.batches import Batch

        return None if self.batch_id is None else Batch.find(self.batch_id, self.backend)

    # --- helpers ---------------------------------------------------------------------------------

    @classmethod
    def retry_policies(cls) -> tuple[RetryPolicy, ...]:
        policies = cls.retry_on
        return (policies,) if isinstance(policies, RetryPolicy) else tuple(policies)

    @classmethod
    def discard_exceptions(cls) -> tuple[type[BaseException], ...]:
        discard = cls.discard_on
        return discard if isinstance(discard, tuple) else (discard,)

    @classmethod
    def signature(cls) -> inspect.Signature | None:
        try:
            return inspect.signature(cls.perform)
        except (TypeError, ValueError):
            return None

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.job_id} queue={self.queue!r} args={self.args!r} kwargs={self.kwargs!r}>"


class FunctionJob(Job, abstract=True):
    """A job made by ``@unijob.job`` from a function."""

    function: ClassVar[Callable[..., Any]]

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        return type(self).function(*args, **kwargs)

    @classmethod
    def signature(cls) -> inspect.Signature | None:
        try:
            return inspect.signature(cls.function)
        except (TypeError, ValueError):
            return None


class JobRef(Generic[P, R]):
    """A job with enqueue options, typed with the job's own parameters."""

    def __init__(self, job_class: type[Job], options: JobOptions = JobOptions()) -> None:
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
        from unijob.execution import perform

        return cast(R, perform(self.new(*args, **kwargs)))

    def set(
        self: _RefT,
        *,
        wait: dt.timedelta | float | None = None,
        wait_until: dt.datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        backend: str | None = None,
    ) -> _RefT:
        """A copy with enqueue options: ``wait`` (timedelta or seconds) or ``wait_until``,
        ``queue``, ``priority`` (-100..100, larger runs sooner) and ``backend``."""
        options = make_options(wait=wait, wait_until=wait_until, queue=queue, priority=priority, backend=backend)
        configured = copy.copy(self)
        configured.options = self.options.merged(options)
        return configured

    def __repr__(self) -> str:
        return f"<job {self.name}>"


class JobFunction(JobRef[P, R]):
    """What ``@unijob.job`` returns: the function, callable as before, plus the Job API."""

    def __init__(self, function: Callable[P, R], job_class: type[FunctionJob], options: JobOptions = JobOptions()) -> None:
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
) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...


def job(
    function: Callable[P, R] | None = None,
    /,
    *,
    queue: str = "default",
    priority: int | None = None,
    backend: str = "default",
    name: str | None = None,
) -> JobFunction[P, R] | Callable[[Callable[P, R]], JobFunction[P, R]]:
    """Make a function a job::

    @unijob.job(queue="mail", priority=10)
    def send_welcome(user_id: int) -> None: ...

    send_welcome.perform_later(42)
    """
    validate_priority(priority)

    def decorate(fn: Callable[P, R]) -> JobFunction[P, R]:
        attributes: dict[str, Any] = {
            "function": staticmethod(fn),
            "queue": queue,
            "priority": priority,
            "backend": backend,
            "__module__": fn.__module__,
            "__qualname__": fn.__qualname__,
            "__doc__": fn.__doc__,
        }
        job_class = type(fn.__name__, (FunctionJob,), attributes, name=name or f"{fn.__module__}.{fn.__qualname__}")
        return JobFunction(fn, cast("type[FunctionJob]", job_class))

    return decorate(function) if function is not None else decorate
