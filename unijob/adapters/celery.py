"""Celery (over kombu): every unijob job is a Celery task registered under the job's name.

One job: ``app.send_task(job name, args, kwargs, task_id=unijob id, queue=, eta=, priority=,
headers={"unijob": meta})`` through a pool of producers the adapter keeps. Bulk on Redis writes
the same messages in one MULTI/EXEC per chunk (:mod:`unijob.adapters.celery_wire`); bulk on
RabbitMQ publishes a chunk without waiting, then reads the publisher confirms
(:mod:`unijob.adapters.celery_publish`). The stock ``celery worker`` runs the jobs
(:mod:`unijob.adapters.celery_worker`).

Two broker facts shape it. A worker holds a message with an ETA unacknowledged until the ETA,
which Redis redelivers after ``visibility_timeout`` and RabbitMQ punishes after its consumer
timeout: so no ETA lies further ahead than ``max_eta`` (half the visibility timeout on Redis,
15 min on RabbitMQ), and longer delays hop (:mod:`unijob.scheduling`). And priority scales
differ: kombu's Redis transport runs 0 first (0..9, one list per level), RabbitMQ the highest
(0 up to the queue's ``x-max-priority``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import celery
from kombu.common import Broadcast
from kombu.connection import Connection
from kombu.entity import Queue
from kombu.exceptions import BatchPublishError, KombuError
from kombu.messaging import Producer
from kombu.pools import ProducerPool
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from kombu.utils.imports import symbol_by_name

from unijob import scheduling
from unijob.adapters.base import Adapter, Capabilities, EnqueueOutcome, add_working_directory_to_path
from unijob.adapters.celery_publish import CONNECT_TIMEOUT, SOCKET_TIMEOUT, Confirms, RedisTransport
from unijob.adapters.celery_wire import HEADER, PIPELINE_SIZE, RedisWire
from unijob.constants import DEFAULT_QUEUE
from unijob.envelope import Envelope
from unijob.errors import ConfigurationError, EnqueueError
from unijob.priority import scale, scale_lowest_first
from unijob.urls import require_scheme

REDIS_LOWEST: Final = 9  # kombu's Redis transport clamps priorities to 0..9; 0 runs first
AMQP_MAX_PRIORITY: Final = 10  # x-max-priority of the queues of the app unijob builds
DEFAULT_VISIBILITY_TIMEOUT: Final = 3600.0  # kombu's default
BUILT_APP_ONLY: Final = frozenset({"visibility_timeout", "transport_options", "config"})


class CeleryAdapter(Adapter):
    """Options: ``celery_app`` (``"proj.celery:app"``: use that app and its broker instead of building
    one from the URL), ``visibility_timeout`` (Redis, seconds), ``transport_options`` and ``config``
    (merged into the built app's ``broker_transport_options`` and settings), ``max_eta`` (seconds,
    the longest ETA handed to the broker), ``acks_late`` (default True), ``confirm_publish``
    (RabbitMQ: a single enqueue waits for the broker's confirm) and ``store``."""

    name = "celery"
    display_name = "Celery"
    OPTIONS = frozenset({"celery_app", "max_eta", "acks_late", "confirm_publish", *BUILT_APP_ONLY})
    worker_module = "unijob.adapters.celery_worker"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.acks_late = bool(self.options.get("acks_late", True))
        self.confirm_publish = bool(self.options.get("confirm_publish", False))
        app_path = self.options.get("celery_app")
        if app_path:
            if self.url or BUILT_APP_ONLY & set(self.options):
                raise ConfigurationError(
                    "the celery adapter uses the broker and settings of celery_app as they are: "
                    f"configure {app_path} itself instead of giving a url or {', '.join(sorted(BUILT_APP_ONLY))}"
                )
            self.app = _import_app(app_path)
            self.url = self.app.conf.broker_write_url or self.app.conf.broker_url
            self.driver = _driver(self.app.connection_for_write())
        else:
            require_scheme(self.url or "amqp://", TRANSPORT_ALIASES, self.name)  # kombu would raise a bare KeyError
            self.driver = _driver(Connection(self.url or "amqp://"))  # type: ignore[no-untyped-call]
            self.app = self._build_app()
        self.max_priority: int = (self.app.conf.task_queue_max_priority or 0) if self.driver == "amqp" else 0
        if not app_path and self.app.conf.task_default_priority is None and (self.driver == "redis" or self.max_priority):
            # with no priority a message would run first on Redis and last on RabbitMQ: unset means 0
            self.app.conf.task_default_priority = self.native_priority(0)
        transport_options = self.app.conf.broker_transport_options or {}
        if self.driver == "redis":
            hold = float(transport_options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)) / 2
            levels = len(transport_options.get("priority_steps", kombu_redis.PRIORITY_STEPS))
            priority, notes = True, f"Redis: {levels} priority levels; pipelined bulk; hops stay under visibility_timeout"
        else:
            hold, priority = scheduling.AMQP_MAX_HOLD.total_seconds(), self.max_priority > 0
            notes = f"RabbitMQ: priority via x-max-priority={self.max_priority}; bulk waits for publisher confirms"
            if self.driver != "amqp":
                notes = f"{self.driver}: no priority"
        self.max_hold = dt.timedelta(seconds=float(self.options.get("max_eta") or hold))
        self.capabilities = Capabilities(
            timeout=True,
            max_hold=self.max_hold,
            priority=priority,
            native_bulk=self.driver == "redis",
            recurring_from="celery beat or unijob scheduler",
            notes=notes,
        )
        with self.app.connection_for_write() as probe:  # transport classes only: nothing connects
            self.errors: tuple[type[BaseException], ...] = (OSError, KombuError, *probe.connection_errors, *probe.channel_errors)
        self.built_app = not app_path
        self._lock = threading.Lock()
        self._pool: ProducerPool | None = None
        self._pool_pid = 0

    def _build_app(self) -> celery.Celery:
        app = celery.Celery("unijob", broker=self.url, set_as_current=False)
        transport_options: dict[str, Any] = {}
        if self.driver == "redis":
            transport_options["priority_steps"] = list(range(REDIS_LOWEST + 1))  # one list per level
            if "visibility_timeout" in self.options:
                transport_options["visibility_timeout"] = float(self.options["visibility_timeout"])
        transport_options.update(self.options.get("transport_options") or {})
        settings: dict[str, Any] = {
            "task_serializer": "json",
            "accept_content": ["json"],  # never pickle: a worker refuses anything else
            "result_serializer": "json",
            "task_default_queue": DEFAULT_QUEUE,
            "task_ignore_result": True,
            "task_queue_max_priority": AMQP_MAX_PRIORITY if self.driver == "amqp" else None,
            "worker_prefetch_multiplier": 1,  # a worker does not sit on jobs that more urgent ones should pass
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": transport_options,
            "enable_utc": True,
            "timezone": "UTC",
        }
        settings.update(self.options.get("config") or {})
        app.conf.update(settings)
        return app

    # --- producer side -----------------------------------------------------------------------

    def native_priority(self, priority: int) -> int:
        if self.driver == "redis":
            return scale_lowest_first(priority, REDIS_LOWEST)
        return scale(priority, self.max_priority)

    def eta(self, scheduled_at: dt.datetime | None) -> dt.datetime | None:
        """The ETA for the broker: the job's time, or the next hop toward it."""
        return scheduling.next_hop(scheduled_at, self.max_hold)

    def enqueue(self, envelope: Envelope) -> str | None:
        with self.as_enqueue_error(*self.errors), self._producer() as producer:
            if not (self.confirm_publish and Confirms.supported(producer.channel)):
                return self._send(envelope, producer)
            confirms = Confirms.of(producer.channel)
            task_id = self._send(envelope, producer)
            confirms.published += 1
            (confirmed,) = confirms.wait()
        if not confirmed:
            raise EnqueueError(f"{self.display_name} at {self.safe_url} refused the job (a publisher nack)")
        return task_id

    def enqueue_all(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
        """Redis: the messages ``send_task`` would publish, written in one MULTI/EXEC pipeline per
        ``PIPELINE_SIZE`` (:class:`RedisWire`); a job counts as enqueued once Redis replied to its
        pipeline. Where that does not apply (an app with routes, publish signals, another
        serializer...), ``send_task`` in kombu's ``Producer.batch()``. RabbitMQ: ``send_task``
        without waiting, then the publisher confirms. Other transports: ``send_task`` one by one.
        After a failure the rest are not sent."""
        outcomes: list[EnqueueOutcome] = []
        try:
            with self._producer() as producer:
                wire = RedisWire.create(self, producer, envelopes)
                if wire is not None:
                    wire.publish(envelopes, outcomes)
                elif producer.supports_batch_publish:
                    with producer.batch(max_size=sys.maxsize) as batch:  # type: ignore[no-untyped-call]
                        sent: list[EnqueueOutcome] = []
                        for envelope in envelopes:
                            sent.append(EnqueueOutcome(self._send(envelope, producer)))
                            if len(sent) == PIPELINE_SIZE:
                                batch.flush()
                                outcomes += sent
                                sent = []
                    outcomes += sent  # leaving the block flushed the rest
                elif Confirms.supported(producer.channel):
                    self._publish_confirmed(producer, envelopes, outcomes)
                else:
                    for envelope in envelopes:
                        outcomes.append(EnqueueOutcome(self._send(envelope, producer)))
        except self.errors as exc:
            error = self.enqueue_error_for(exc)
            outcomes += [EnqueueOutcome(error=error)] * (len(envelopes) - len(outcomes))
        return outcomes

    def _publish_confirmed(self, producer: Producer, envelopes: Sequence[Envelope], outcomes: list[EnqueueOutcome]) -> None:
        """RabbitMQ: publish every message on a channel of its own in confirm mode without waiting,
        then collect the broker's acks; a job is enqueued once RabbitMQ acknowledged it."""
        channel = producer.connection.channel()
        try:
            confirms = Confirms(channel)
            publisher = Producer(channel, auto_declare=False)  # type: ignore[no-untyped-call]
            ids: list[str] = []
            try:
                for envelope in envelopes:
                    ids.append(self._send(envelope, publisher))
                    confirms.published += 1
                settled: list[bool | None] = list(confirms.wait())
                error: EnqueueError = EnqueueError(f"{self.display_name} at {self.safe_url} refused the job (a publisher nack)")
            except self.errors as exc:  # report what RabbitMQ confirmed before the failure
                settled, error = confirms.results(), self.enqueue_error_for(exc)
                outcomes += [
                    EnqueueOutcome(task_id) if ok else EnqueueOutcome(error=error)
                    for task_id, ok in zip(ids, settled, strict=True)
                ]
                raise
            outcomes += [
                EnqueueOutcome(task_id) if ok else EnqueueOutcome(error=error) for task_id, ok in zip(ids, settled, strict=True)
            ]
        finally:
            with contextlib.suppress(Exception):
                channel.close()

    def enqueue_error_for(self, exc: BaseException) -> EnqueueError:
        error = super().enqueue_error_for(exc)
        if isinstance(exc, BatchPublishError) and exc.__cause__ is not None:  # say what broke the pipeline
            return EnqueueError(f"{error} ({type(exc.__cause__).__name__}: {exc.__cause__})")
        return error

    def _send(self, envelope: Envelope, producer: Producer) -> str:
        task_id = self.native_id(envelope)
        priority = self.app.conf.task_default_priority if envelope.priority is None else self.native_priority(envelope.priority)
        self.app.send_task(
            envelope.job,
            args=envelope.args,
            kwargs=envelope.kwargs,
            task_id=task_id,
            queue=envelope.queue,
            eta=self.eta(envelope.scheduled_at),
            priority=priority,
            headers={**(envelope.headers or {}), HEADER: envelope.meta()},
            producer=producer,
            retry=False,  # fail fast; unijob reports the error
            ignore_result=True,
            time_limit=envelope.timeout,
            add_to_parent=False,
            declare=self._declare(producer, envelope.queue),
        )
        return task_id

    def _declare(self, producer: Producer, name: str) -> list[Queue] | None:
        """What send_task declares before it publishes (the queue, once per connection), bound to
        the producer's channel once: kombu would copy and bind the queue again for every message."""
        channel: Any = producer.channel
        bound: dict[str, Queue] | None = getattr(channel, "_unijob_queues", None)
        if bound is None:
            bound = channel._unijob_queues = {}
        queue = bound.get(name)
        if queue is None:
            try:
                queue = self.app.amqp.queues[name]
            except KeyError:
                return None  # send_task raises its own error (task_create_missing_queues is off)
            if isinstance(queue, Broadcast):
                return None  # send_task declares none
            queue = bound[name] = queue.bind(channel)
        return [queue]

    @contextlib.contextmanager
    def _producer(self) -> Iterator[Producer]:
        with self._producers().acquire(block=True) as producer:  # type: ignore[no-untyped-call]
            try:
                yield producer
            except BaseException:
                producer.__connection__.collect()  # the next use connects afresh
                raise

    def _producers(self) -> ProducerPool:
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():  # a forked child builds its own
                options: dict[str, Any] = {"max_retries": 1, "interval_start": 0.2}  # one quick reconnect attempt
                transport: Any = None
                if self.driver == "redis":
                    options.update(socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT)
                    if urlsplit(self.url or "").scheme == "redis":
                        transport = RedisTransport
                connection = self.app.connection_for_write(
                    transport=transport, connect_timeout=CONNECT_TIMEOUT, transport_options=options
                )
                limit = self.app.conf.broker_pool_limit or 10
                self._pool = ProducerPool(connection.Pool(limit=limit), limit=limit)  # type: ignore[no-untyped-call]
                self._pool_pid = os.getpid()
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.force_close_all()  # type: ignore[no-untyped-call]
            pool.connections.force_close_all()


def _import_app(path: str) -> celery.Celery:
    add_working_directory_to_path()  # "tasks:app" from the project folder, as celery -A finds it
    try:
        app = symbol_by_name(path)  # type: ignore[no-untyped-call]
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"celery_app={path!r} cannot be imported: {type(exc).__name__}: {exc}") from exc
    if not isinstance(app, celery.Celery):
        raise ConfigurationError(f"celery_app={path!r} is {type(app).__name__}, not a Celery app")
    return app


def _driver(connection: Connection) -> str:
    with connection:
        driver: str = connection.transport.driver_type
    return driver
