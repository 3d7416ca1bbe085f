"""The job core: a job's class settings, one invocation's data, and the one mapping between a job
and its :class:`~unijob.envelope.Envelope` (Rails' ``ActiveJob::Core``).

:class:`BaseJob` knows nothing of backends, enqueueing or execution; :class:`unijob.Job` adds those
on top. Every copy between a job and an envelope happens here: :meth:`BaseJob.to_envelope` (at
enqueue), :meth:`BaseJob.from_envelope` (in the worker) and :meth:`BaseJob.next_attempt` (a retry).
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from unijob import registry, serializers
from unijob.constants import DEFAULT_BACKEND, DEFAULT_QUEUE
from unijob.envelope import Envelope
from unijob.errors import ArgumentsError, SerializationError
from unijob.ids import new_job_id
from unijob.options import JobOptions, check_name, check_priority
from unijob.retry import RetryPolicy

_JobT = TypeVar("_JobT", bound="BaseJob")


class BaseJob:
    """A job class (subclass :class:`unijob.Job`, not this). An instance is one invocation: its
    arguments plus what the backend made of it."""

    # --- class settings --------------------------------------------------------------------------
    name: ClassVar[str] = ""  # registered name: module path and qualified name by default
    display_name: ClassVar[str] = ""
    _arguments_signature: ClassVar[inspect.Signature | None]  # per class, computed on first enqueue
    _positional_counts: ClassVar[tuple[int, int] | None]  # (required, all) when every parameter is positional
    queue: str = DEFAULT_QUEUE
    priority: int | None = None  # -100..100, larger runs sooner; None: the backend's default
    backend: str = DEFAULT_BACKEND  # the name of the configured backend that enqueues it
    store_result: ClassVar[bool | None] = None  # keep its status and result; None: the "results" setting
    timeout: float | None = None  # seconds: a hard time limit (set(timeout=) changes it per call)
    unique: bool = False  # not enqueued while one of the same name and arguments is enqueued or running
    concurrency_limit: int | None = None  # at most this many run at once, everywhere (key: the job name)
    retry_on: ClassVar[RetryPolicy | Sequence[RetryPolicy]] = ()
    discard_on: ClassVar[type[BaseException] | tuple[type[BaseException], ...]] = ()

    def __init_subclass__(cls, *, name: str | None = None, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        cls.name = name or f"{cls.__module__}.{cls.__qualname__}"
        cls.display_name = cls.__qualname__.rpartition("<locals>.")[2]
        check_name(cls.display_name, "queue", cls.queue)
        check_name(cls.display_name, "backend", cls.backend)
        check_priority(cls.display_name, cls.priority)
        registry.register(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.job_id = new_job_id()
        self.queue = type(self).queue
        self.priority = type(self).priority
        self.priority_requested = False  # set() asked for it: a backend without priority must refuse it
        self.backend = type(self).backend
        self.backend_requested = False  # set() chose it: a route does not move the job
        self.after_commit: bool | None = None  # None: the enqueue_after_commit setting
        self.timeout = type(self).timeout
        self.expires: dt.timedelta | dt.datetime | None = None
        self.expires_at: dt.datetime | None = None
        self.unique = type(self).unique
        self.unique_key: str | None = None
        self.concurrency_key: str | None = self.name if type(self).concurrency_limit else None
        self.concurrency_limit = type(self).concurrency_limit
        self.wait: dt.timedelta | None = None
        self.wait_until: dt.datetime | None = None
        self.scheduled_at: dt.datetime | None = None
        self.enqueued_at: dt.datetime | None = None
        self.executions = 0
        self.exception_executions: dict[str, int] = {}
        self.postponements = 0
        self.headers: dict[str, Any] | None = None  # custom headers of the call, carried to the worker
        self.batch_id: str | None = None
        self.provider_job_id: str | None = None
        self.successfully_enqueued = False
        self.enqueue_error: BaseException | None = None
        self.serialized: tuple[list[Any], dict[str, Any]] | None = None

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define perform()")

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

    # --- options -----------------------------------------------------------------------------------

    def apply(self: _JobT, options: JobOptions) -> _JobT:
        """Apply ``set()`` options to this invocation."""
        if options.queue is not None:
            self.queue = options.queue
        if options.priority is not None:
            self.priority = options.priority
            self.priority_requested = True
        if options.backend is not None:
            self.backend = options.backend
            self.backend_requested = True
        if options.wait is not None or options.wait_until is not None:
            self.wait, self.wait_until = options.wait, options.wait_until
        if options.after_commit is not None:
            self.after_commit = options.after_commit
        if options.timeout is not None:
            self.timeout = options.timeout.total_seconds()
        if options.expires is not None:
            self.expires = options.expires
        if options.unique is not None:
            self.unique = options.unique
        if options.unique_key is not None:
            self.unique_key, self.unique = options.unique_key, True
        if options.concurrency_key is not None:
            self.concurrency_key = options.concurrency_key
        if options.concurrency_limit is not None:
            self.concurrency_limit = options.concurrency_limit
            self.concurrency_key = self.concurrency_key or self.name
        return self

    def schedule(self, now: dt.datetime) -> dt.datetime | None:
        """Fix ``scheduled_at`` (from ``wait``/``wait_until``) and ``expires_at`` at enqueue time."""
        if self.wait is not None:
            self.scheduled_at = now + self.wait
        elif self.wait_until is not None:
            self.scheduled_at = self.wait_until
        if isinstance(self.expires, dt.timedelta):
            self.expires_at = now + self.expires
        elif self.expires is not None:
            self.expires_at = self.expires
        return self.scheduled_at

    # --- the envelope --------------------------------------------------------------------------------

    def to_envelope(self, now: dt.datetime) -> Envelope:
        """This invocation as it travels. Raises :class:`SerializationError` naming the argument."""
        args, kwargs = self.serialize_arguments()
        self.enqueued_at = now
        return Envelope(
            job=self.name,
            job_id=self.job_id,
            args=args,
            kwargs=kwargs,
            queue=self.queue,
            priority=self.priority,
            enqueued_at=now,
            scheduled_at=self.scheduled_at,
            executions=self.executions,
            exception_executions=dict(self.exception_executions),
            batch_id=self.batch_id,
            timeout=self.timeout,
            expires_at=self.expires_at,
            unique_key=self.unique_key,
            concurrency_key=self.concurrency_key if self.concurrency_limit else None,
            concurrency_limit=self.concurrency_limit if self.concurrency_key else None,
            postponements=self.postponements,
            headers=self.headers,
        )

    @classmethod
    def from_envelope(cls: type[_JobT], envelope: Envelope, *, arguments: bool = True) -> _JobT:
        """The invocation an envelope describes, its arguments deserialized (raising
        :class:`DeserializationError`), or left out with ``arguments=False``."""
        args, kwargs = serializers.loads_args(envelope.args, envelope.kwargs) if arguments else ((), {})
        job = cls(*args, **kwargs)
        job.job_id = envelope.job_id
        job.queue = envelope.queue
        job.priority = envelope.priority
        job.enqueued_at = envelope.enqueued_at
        job.scheduled_at = envelope.scheduled_at
        job.executions = envelope.executions
        job.exception_executions = dict(envelope.exception_executions)
        job.batch_id = envelope.batch_id
        job.timeout, job.expires_at, job.unique_key = envelope.timeout, envelope.expires_at, envelope.unique_key
        job.unique = envelope.unique_key is not None
        job.concurrency_key, job.concurrency_limit = envelope.concurrency_key, envelope.concurrency_limit
        job.postponements = envelope.postponements
        job.headers = dict(envelope.headers) if envelope.headers else None
        job.serialized = (envelope.args, envelope.kwargs)
        job.successfully_enqueued = True
        return job

    def next_attempt(self: _JobT, wait: float) -> _JobT:
        """The retry of this invocation, due after ``wait`` seconds: same id, arguments (not
        serialized again), queue, priority, backend and batch, and the executions so far."""
        retry = type(self)(*self.args, **self.kwargs)
        retry.job_id = self.job_id
        retry.queue, retry.priority, retry.backend = self.queue, self.priority, self.backend
        retry.executions = self.executions
        retry.exception_executions = dict(self.exception_executions)
        retry.batch_id = self.batch_id
        retry.timeout, retry.expires_at, retry.unique, retry.unique_key = (
            self.timeout,
            self.expires_at,
            self.unique,
            self.unique_key,
        )
        retry.concurrency_key, retry.concurrency_limit = self.concurrency_key, self.concurrency_limit
        retry.postponements, retry.headers = self.postponements, self.headers
        retry.serialized = self.serialized
        retry.wait = dt.timedelta(seconds=wait) if wait > 0 else None
        return retry

    def serialize_arguments(self) -> tuple[list[Any], dict[str, Any]]:
        if self.serialized is None:
            self._check_arguments()
            try:
                self.serialized = serializers.dumps_args(self.args, self.kwargs)
            except serializers.NotSerializable as exc:
                error = SerializationError(f"{self.display_name}: argument {self._argument_path(exc.path)} {exc.reason}")
                self.enqueue_error = error
                raise error from None
        return self.serialized

    def _check_arguments(self) -> None:
        """A call that does not fit the job fails at the call site, as the function call would (and
        as Celery's ``typing`` does), not later in a worker."""
        signature = type(self).arguments_signature()
        if signature is None:
            return
        fits = type(self)._positional_counts
        if fits is not None and not self.kwargs and fits[0] <= len(self.args) <= fits[1]:
            return  # the common call, checked without binding (binding costs a bulk enqueue a tenth)
        try:
            signature.bind(*self.args, **self.kwargs)
        except TypeError as exc:
            options = sorted(set(self.kwargs) & set(JobOptions.__dataclass_fields__) - set(signature.parameters))
            hint = f"; an option goes in {self.display_name}.set({options[0]}=...)" if options else ""
            plain = [parameter.replace(annotation=inspect.Parameter.empty) for parameter in signature.parameters.values()]
            shown = signature.replace(parameters=plain, return_annotation=inspect.Signature.empty)
            error = ArgumentsError(f"{self.display_name}{shown}: {exc}{hint}")
            self.enqueue_error = error
            raise error from None

    @classmethod
    def arguments_signature(cls) -> inspect.Signature | None:
        """The parameters the job's arguments bind to (``self`` left out); ``None``: unchecked."""
        if "_arguments_signature" not in cls.__dict__:
            signature = cls.signature()
            if signature is not None and cls.body() is cls.perform:
                signature = signature.replace(parameters=list(signature.parameters.values())[1:])
            cls._arguments_signature = signature
            plain = signature is not None and all(
                p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in signature.parameters.values()
            )
            cls._positional_counts = None
            if plain and signature is not None:
                required = sum(p.default is p.empty for p in signature.parameters.values())
                cls._positional_counts = (required, len(signature.parameters))
        return cls._arguments_signature

    @classmethod
    def _argument_path(cls, path: str) -> str:
        """``args[0]['owner']`` becomes ``filters['owner']`` when the first parameter is ``filters``."""
        if not path.startswith("args["):
            return path
        index_text, _, rest = path[5:].partition("]")
        signature = cls.signature()
        if signature is None:
            return path
        positional = [
            p.name
            for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
        ]
        index = int(index_text)
        return positional[index] + rest if index < len(positional) else path

    # --- policies ------------------------------------------------------------------------------------

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
        """The signature of what the job runs, to name an argument in an error."""
        try:
            return inspect.signature(cls.body())
        except (TypeError, ValueError):
            return None

    @classmethod
    def body(cls) -> Callable[..., Any]:
        return cls.perform

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.job_id} queue={self.queue!r} args={self.args!r} kwargs={self.kwargs!r}>"


def job_class_of(reference: object) -> type[BaseJob]:
    """The job class behind a reference: a job class, anything with a ``job_class`` (what
    ``@unijob.job`` and ``job.set()`` return), or a registered job name."""
    if isinstance(reference, str):
        return registry.lookup(reference)
    candidate = getattr(reference, "job_class", reference)
    if isinstance(candidate, type) and issubclass(candidate, BaseJob):
        return candidate
    raise TypeError(f"expected a unijob job (a @unijob.job function, a Job class or a job name), not {reference!r}")
