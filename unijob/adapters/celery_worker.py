"""The Celery worker side. Celery's stock worker loads this module to run unijob jobs::

    celery -A unijob.adapters.celery_worker worker --queues default,mail

It reads unijob's configuration (``UNIJOB_*`` environment variables or ``[tool.unijob]``),
imports the job modules and registers each job as a Celery task named after it, on the Celery
app of the ``default`` backend (your own app when the ``celery_app`` option names one).
``-A unijob.adapters.celery_backends:NAME`` serves the celery backend configured as ``NAME``.
The app is built on first access, so importing this module does nothing by itself. Celery
refuses a message naming any other task ("Received unregistered task"), so nothing named in a
payload is imported.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import celery
from celery import signals
from celery.exceptions import InvalidTaskError, Reject, TimeLimitExceeded, WorkerLostError
from celery.worker.strategy import default as default_strategy
from kombu.entity import Exchange, Queue
from kombu.exceptions import DecodeError

from unijob import worker
from unijob.adapters.celery import CeleryAdapter
from unijob.adapters.celery_publish import CONNECT_TIMEOUT
from unijob.adapters.celery_wire import HEADER
from unijob.constants import DEFAULT_BACKEND
from unijob.errors import ConfigurationError, EnqueueError

INSPECT_TIMEOUT: Final = 0.5  # seconds a burst poll waits for workers' replies
POLL: Final = {"polling_interval": 0.1}  # Redis: wait for inspect replies in short BRPOPs, not 1 s ones


def worker_app(backend: str = DEFAULT_BACKEND) -> celery.Celery:
    """The Celery app of a configured celery backend, with every job registered as a task."""
    adapter = worker.serve(backend, CeleryAdapter, f"celery -A {__name__}")
    register_tasks(adapter)
    return adapter.app


def register_jobs(app: celery.Celery, backend: str = DEFAULT_BACKEND) -> None:
    """For ``celery -A yourproject worker`` with your own app: registers unijob's jobs on ``app``
    when the worker imports its task modules, and the tasks adopted in them (``include=``,
    ``autodiscover_tasks``) once it has. Call it where the app is created, and configure the
    backend with ``celery_app`` naming that app."""

    def on_import_modules(sender: Any = None, **_: Any) -> None:
        if sender is app:
            register_tasks(worker.serve(backend, CeleryAdapter, "register_jobs"), app)

    def on_worker_init(sender: Any = None, **_: Any) -> None:
        # Celery imports the app's own task modules (include=, autodiscover_tasks) after sending
        # import_modules: the tasks adopted there are registered once the worker has them all.
        if getattr(sender, "app", None) is app:
            register_tasks(worker.serve(backend, CeleryAdapter, "register_jobs"), app)

    signals.import_modules.connect(on_import_modules, weak=False)
    signals.worker_init.connect(on_worker_init, weak=False)


def register_tasks(adapter: CeleryAdapter, app: celery.Celery | None = None) -> list[str]:
    """Register every job of the configured job modules as a Celery task named after it
    (idempotent). Native retries stay off: no autoretry, ``max_retries=0``."""
    app = app or adapter.app
    jobs = worker.load_jobs()
    body = _task_body(adapter)
    signals.task_failure.connect(_count_lost, weak=False, dispatch_uid="unijob-count-lost")
    if not app.finalized and any(getattr(job_class, "celery_task", None) is not None for job_class in jobs.values()):
        # Adopted tasks and the app's shared copies of them must be in place to be replaced: an app
        # finalized later would add them beside unijob's tasks (Celery's DuplicateTaskNameWarning).
        app.finalize()
    for name, job_class in jobs.items():
        existing = app._tasks.get(name)
        if existing is not None and getattr(existing, "unijob_adapter", None) is adapter:
            continue  # registered by an earlier call (register_jobs registers twice)
        if existing is not None and _is_adopted(existing, job_class):
            del app._tasks[name]  # an adopted task: its messages now run through unijob (which calls its function)
        app.task(
            name=name,
            bind=True,
            shared=False,
            acks_late=adapter.acks_late,
            reject_on_worker_lost=False,  # a job that kills its worker process is not redelivered forever
            ignore_result=True,
            typing=False,
            max_retries=0,
            serializer="json",
            Strategy=f"{__name__}:guarded_strategy",
            unijob_adapter=adapter,
        )(body)
    if app is adapter.app and adapter.built_app:
        # Celery's own tasks (celery.accumulate, celery.chord_unlock, ...) are not unijob jobs, and
        # unijob never sends them: the worker of the app unijob builds runs nothing but jobs.
        for name in [name for name in app.tasks if name.startswith("celery.")]:
            app.tasks.unregister(name)
    if app is adapter.app and adapter.built_app and app.conf.task_queues is None:
        # a bare `celery -A unijob.adapters.celery_worker worker` consumes every queue a job names
        app.conf.task_queues = [Queue(queue, Exchange(queue), queue) for queue in worker.queues_of(jobs)]  # type: ignore[no-untyped-call]
    return sorted(jobs)


def _is_adopted(task: celery.Task, job_class: type) -> bool:
    """``task`` is the adopted task of ``job_class``, or this app's copy of it (``@app.task`` is
    shared by default: every app of the process gets a task of its own for the function)."""
    if getattr(task, "unijob_job", None) is job_class:
        return True
    function = _function_of(getattr(job_class, "celery_task", None))
    return function is not None and _function_of(task) is function


def _function_of(task: object) -> object:
    """The function a task was made from (of a ``bind=True`` task, ``__wrapped__`` is a bound method)."""
    wrapped = getattr(task, "__wrapped__", None)
    return getattr(wrapped, "__func__", wrapped)


def _task_body(adapter: CeleryAdapter) -> Callable[..., Any]:
    def run(task: celery.Task, *args: Any, **kwargs: Any) -> Any:
        """Run one delivered message: its envelope from the unijob header (or, for a message sent
        by plain Celery code, from the native fields), unless it is a hop of a long delay."""
        request = task.request
        queue = (request.delivery_info or {}).get("routing_key")
        try:
            return worker.run(
                adapter, worker.Delivery(task.name, getattr(request, HEADER, None), args, kwargs, request.id, queue)
            )
        except EnqueueError as error:  # a hop that could not travel on: keep this message, lose no job
            raise Reject(error, requeue=True) from error

    return run


def _count_lost(sender: Any = None, exception: BaseException | None = None, args: Any = (), kwargs: Any = None, **_: Any) -> None:
    """A job whose pool process died under it (killed, out of memory, over its hard time limit)
    never reached an outcome in unijob: Celery records the failure in the worker's main process,
    and this counts it as a final one (its batch, the discard event)."""
    adapter = getattr(sender, "unijob_adapter", None)
    if adapter is None or not isinstance(exception, (WorkerLostError, TimeLimitExceeded)):
        return
    request = sender.request
    try:
        delivery = worker.Delivery(sender.name, getattr(request, HEADER, None), args or (), kwargs or {}, request.id)
        worker.give_up(delivery, exception, adapter)
    except Exception:  # whatever the message held, the worker goes on
        worker.logger.exception("Could not count job %s, whose worker process was lost, as failed", request.id)


def guarded_strategy(task: celery.Task, app: celery.Celery, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's own strategy for a job's messages, which refuses a malformed one instead of letting
    it stop the worker: Celery's consumer survives only ``InvalidTaskError``, and a body that is not
    ``[args, kwargs, embed]`` raises ``ValueError`` while the request is built, after which the
    message, restored unacknowledged, stops every restarted worker again."""
    handle = default_strategy(task, app, consumer, **options)

    def guarded(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **more: Any) -> Any:
        try:
            return handle(message, body, ack, reject, callbacks, **more)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, DecodeError) as exc:
            native_id = (message.headers or {}).get("id") if isinstance(message.headers, dict) else None
            worker.logger.error(
                "Refused a malformed message for %r (native id %s): %s: %s", task.name, native_id, type(exc).__name__, exc
            )
            raise InvalidTaskError(f"malformed message for {task.name}: {type(exc).__name__}: {exc}") from exc

    return guarded


def command(adapter: CeleryAdapter, queues: Sequence[str], concurrency: int | None) -> list[str]:
    app = __name__ if adapter.alias == DEFAULT_BACKEND else f"{__package__}.celery_backends:{adapter.alias}"
    argv = [*worker.console_script("celery", "celery"), "-A", app, "worker", "--queues", ",".join(queues), "--loglevel", "INFO"]
    argv += ["--hostname", f"unijob-{os.getpid()}@%h"]  # several workers on one host need distinct node names
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    return argv


def pending(adapter: CeleryAdapter, queues: Sequence[str], within: float) -> int:
    """Messages waiting in the queues, plus those the workers hold (running, prefetched, or
    with an ETA due within ``within`` seconds), as the workers report them."""
    wanted = set(queues)
    count = 0
    with adapter.app.connection_for_write(connect_timeout=CONNECT_TIMEOUT, transport_options=POLL) as connection:
        for queue in queues:
            channel = connection.channel()
            try:
                count += channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors:
                pass  # no such queue yet: nothing waits in it
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
        if count:
            return count  # no need to ask the workers
        inspect = adapter.app.control.inspect(timeout=INSPECT_TIMEOUT, connection=connection)
        for held in (inspect.active() or {}, inspect.reserved() or {}):
            count += sum(_queue_of(task) in wanted for tasks in held.values() for task in tasks)
        horizon = time.time() + within
        for entries in (inspect.scheduled() or {}).values():
            for entry in entries:
                eta = entry.get("eta")
                due = eta is None or dt.datetime.fromisoformat(eta).timestamp() <= horizon
                count += due and _queue_of(entry.get("request") or {}) in wanted
    return count


def _queue_of(task: Mapping[str, Any]) -> str | None:
    queue: str | None = (task.get("delivery_info") or {}).get("routing_key")
    return queue


def __getattr__(name: str) -> Any:
    """``app`` (or ``celery``): the default backend's app; any other name: that backend's app.
    Celery's ``-A`` looks these up and takes an AttributeError for "not here"."""
    if name.startswith("__"):
        raise AttributeError(name)

    return backend_app(DEFAULT_BACKEND if name in ("app", "celery") else name)


def backend_app(backend: str) -> celery.Celery:
    """The Celery app, with the jobs registered, of the configured backend ``backend``;
    AttributeError (what Celery's ``-A`` takes for "not here") when it cannot be served."""
    from unijob import config

    worker.load_jobs()  # a job module may configure the backends (unijob.contrib.django.bootstrap)
    if backend not in config.settings().backends:
        raise AttributeError(f"no unijob backend {backend!r} is configured")
    try:
        return worker_app(backend)
    except ConfigurationError as exc:
        raise AttributeError(str(exc)) from exc
