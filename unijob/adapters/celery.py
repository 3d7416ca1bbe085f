"""Celery backend (over kombu): every unijob job is a Celery task registered under the job's name.

Producer side: ``app.send_task(job name, args, kwargs, task_id=unijob id, queue=, eta=, priority=,
headers={"unijob": meta})`` through a pool of producers the adapter keeps, so a loop of
``perform_later`` reuses its connections. Bulk on Redis builds those same messages itself and
writes each chunk in one MULTI/EXEC round trip (:class:`_RedisWire`); bulk on RabbitMQ publishes a
chunk without waiting, then reads the publisher confirms (:class:`_Confirms`). A single
``perform_later`` on RabbitMQ waits for its confirm only with ``confirm_publish``, as in Celery.
Worker side: ``celery -A unijob.adapters.celery_worker
worker`` registers one task per job; the task rebuilds the envelope and calls
:func:`unijob.execution.execute`. Celery refuses a message naming any other task ("Received
unregistered task"), so nothing named in a payload is imported.

Two broker facts shape this module:

- A worker holds a message with an ETA unacknowledged until the ETA. Redis puts it back in the
  queue once it is older than ``visibility_timeout`` (default 1 h), so it runs again and again;
  RabbitMQ closes the channel after its ``consumer_timeout`` (default 30 min). So no ETA handed
  to the broker lies further ahead than ``max_eta`` (half the visibility timeout on Redis, 15 min
  on RabbitMQ): a longer delay travels as hops, the task republishing itself until the job's
  ``scheduled_at`` is reached, and only then running it.
- Priority scales differ: Redis runs 0 first (kombu clamps to 0..9; one list per step of
  ``priority_steps``), RabbitMQ runs the highest first (0 up to the queue's ``x-max-priority``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import celery
from celery import signals
from celery.exceptions import Reject
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.common import Broadcast
from kombu.connection import Connection
from kombu.entity import Exchange, Queue, maybe_delivery_mode
from kombu.exceptions import BatchPublishError, KombuError
from kombu.messaging import Producer
from kombu.pools import ProducerPool
from kombu.transport import pyamqp as kombu_pyamqp
from kombu.transport import redis as kombu_redis
from kombu.utils import json as kombu_json
from kombu.utils.imports import symbol_by_name

from unijob import config, worker
from unijob.adapters.base import Adapter, Capabilities, EnqueueOutcome
from unijob.envelope import FORMAT_VERSION, Envelope
from unijob.errors import ConfigurationError, EnqueueError
from unijob.execution import execute

HEADER: Final = "unijob"  # the message header that carries the envelope's meta
WORKER_MODULE: Final = "unijob.adapters.celery_worker"
REDIS_LOWEST: Final = 9  # kombu's Redis transport clamps priorities to 0..9; 0 runs first
AMQP_MAX_PRIORITY: Final = 10  # x-max-priority of the queues of the app unijob builds
AMQP_MAX_ETA: Final = 900.0  # seconds: half of RabbitMQ's default consumer_timeout
DEFAULT_VISIBILITY_TIMEOUT: Final = 3600.0  # kombu's default
CONNECT_TIMEOUT: Final = 2.0  # seconds, for producer connections: an unreachable broker fails fast
SOCKET_TIMEOUT: Final = 10.0  # a broker that vanishes without closing the socket
PIPELINE_SIZE: Final = 1000  # messages per Redis pipeline round trip in bulk (the core's chunk size)
INSPECT_TIMEOUT: Final = 0.5  # seconds a burst poll waits for workers' replies
POLL: Final = {"polling_interval": 0.1}  # Redis: wait for inspect replies in short BRPOPs, not 1 s ones
BUILT_APP_ONLY: Final = frozenset({"visibility_timeout", "transport_options", "config"})
OPTIONS: Final = frozenset({"celery_app", "max_eta", "acks_late", "confirm_publish", "batch_store", *BUILT_APP_ONLY})


class CeleryAdapter(Adapter):
    """Options: ``celery_app`` (``"proj.celery:app"``: use that app and its broker instead of building
    one from the URL), ``visibility_timeout`` (Redis, seconds), ``transport_options`` and ``config``
    (merged into the built app's ``broker_transport_options`` and settings), ``max_eta`` (seconds,
    the longest ETA handed to the broker), ``acks_late`` (default True) and ``batch_store`` (where
    batch records live: the broker's Redis by default; a ``redis://`` URL on RabbitMQ)."""

    name = "celery"
    display_name = "Celery"

    def __init__(self, *, alias: str = config.DEFAULT_ALIAS, url: str | None = None, options: Any = None) -> None:
        super().__init__(alias=alias, url=url, options=options)
        unknown = sorted(set(self.options) - OPTIONS)
        if unknown:
            known = ", ".join(sorted(OPTIONS))
            raise ConfigurationError(f"unknown celery backend option(s) {', '.join(unknown)} (known: {known})")
        self.acks_late = bool(self.options.get("acks_late", True))
        self.confirm_publish = bool(self.options.get("confirm_publish", False))
        app_path = self.options.get("celery_app")
        if app_path:
            if url or BUILT_APP_ONLY & set(self.options):
                raise ConfigurationError(
                    "the celery backend uses the broker and settings of celery_app as they are: "
                    f"configure {app_path} itself instead of giving a url or {', '.join(sorted(BUILT_APP_ONLY))}"
                )
            self.app = _import_app(app_path)
            self.url = self.app.conf.broker_write_url or self.app.conf.broker_url
            self.driver = _driver(self.app.connection_for_write())
        else:
            self.driver = _driver(Connection(url or "amqp://"))  # type: ignore[no-untyped-call]
            self.app = self._build_app()
        self.max_priority: int = (self.app.conf.task_queue_max_priority or 0) if self.driver == "amqp" else 0
        if not app_path and self.app.conf.task_default_priority is None and (self.driver == "redis" or self.max_priority):
            # with no priority a message would run first on Redis and last on RabbitMQ: unset means 0
            self.app.conf.task_default_priority = self.native_priority(0)
        transport_options = self.app.conf.broker_transport_options or {}
        if self.driver == "redis":
            default_eta = float(transport_options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)) / 2
            levels = len(transport_options.get("priority_steps", kombu_redis.PRIORITY_STEPS))
            priority, notes = True, f"Redis: {levels} priority levels; pipelined bulk; long delays hop under visibility_timeout"
        elif self.driver == "amqp":
            default_eta, priority = AMQP_MAX_ETA, self.max_priority > 0
            notes = f"RabbitMQ: priority via x-max-priority={self.max_priority}; long delays hop every 15 min"
        else:
            default_eta, priority, notes = AMQP_MAX_ETA, False, f"{self.driver}: no priority; long delays hop every 15 min"
        self.max_eta = float(self.options.get("max_eta") or default_eta)
        self.capabilities = Capabilities(delay=True, priority=priority, native_bulk=self.driver == "redis", notes=notes)
        with self.app.connection_for_write() as probe:  # transport classes only: nothing connects
            self._errors: tuple[type[BaseException], ...] = (OSError, KombuError, *probe.connection_errors, *probe.channel_errors)
        self._built_app = not app_path
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
            "task_default_queue": "default",
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
        """unijob's -100..100 (larger runs sooner) on the broker's scale."""
        if self.driver == "redis":
            return int((100 - priority) * REDIS_LOWEST / 200 + 0.5)
        return int((priority + 100) * self.max_priority / 200 + 0.5)

    def enqueue(self, envelope: Envelope) -> str | None:
        with self.enqueue_errors(*self._errors), self._producer() as producer:
            if not (self.confirm_publish and _Confirms.supported(producer.channel)):
                return self._send(envelope, producer)
            confirms = _Confirms.of(producer.channel)
            task_id = self._send(envelope, producer)
            confirms.published += 1
            (confirmed,) = confirms.wait()
        if not confirmed:
            raise EnqueueError(f"{self.display_name} at {self.safe_url} refused the job (a publisher nack)")
        return task_id

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
        """Redis: the messages ``send_task`` would publish, built here and written in one MULTI/EXEC
        pipeline per ``PIPELINE_SIZE`` (:class:`_RedisWire`); a job counts as enqueued once Redis
        replied to its pipeline. Where that does not apply (an app with routes, publish signals,
        another serializer...), ``send_task`` in kombu's ``Producer.batch()``. RabbitMQ:
        ``send_task`` without waiting, then the publisher confirms (:meth:`_publish_confirmed`).
        Other transports: ``send_task`` one by one. After a failure the rest are not sent."""
        outcomes: list[EnqueueOutcome] = []
        try:
            with self._producer() as producer:
                wire = _RedisWire.create(self, producer, envelopes)
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
                elif _Confirms.supported(producer.channel):
                    self._publish_confirmed(producer, envelopes, outcomes)
                else:
                    for envelope in envelopes:
                        outcomes.append(EnqueueOutcome(self._send(envelope, producer)))
        except self._errors as exc:
            error = self.enqueue_error(exc)
            outcomes += [EnqueueOutcome(error=error)] * (len(envelopes) - len(outcomes))
        return outcomes

    def _publish_confirmed(self, producer: Producer, envelopes: Sequence[Envelope], outcomes: list[EnqueueOutcome]) -> None:
        """RabbitMQ: publish every message on a channel of its own in confirm mode without waiting,
        then collect the broker's acks; a job is enqueued once RabbitMQ acknowledged it."""
        channel = producer.connection.channel()
        try:
            confirms = _Confirms(channel)
            publisher = Producer(channel, auto_declare=False)  # type: ignore[no-untyped-call]
            ids: list[str] = []
            try:
                for envelope in envelopes:
                    ids.append(self._send(envelope, publisher))
                    confirms.published += 1
                confirmed = confirms.wait()
            except self._errors as exc:  # report what RabbitMQ confirmed before the failure
                error = self.enqueue_error(exc)
                settled = confirms.results()
                outcomes += [
                    EnqueueOutcome(task_id) if ok else EnqueueOutcome(error=error)
                    for task_id, ok in zip(ids, settled, strict=True)
                ]
                raise
            nacked = EnqueueError(f"{self.display_name} at {self.safe_url} refused the job (a publisher nack)")
            outcomes += [
                EnqueueOutcome(task_id) if ok else EnqueueOutcome(error=nacked)
                for task_id, ok in zip(ids, confirmed, strict=True)
            ]
        finally:
            with contextlib.suppress(Exception):
                channel.close()

    def enqueue_error(self, exc: BaseException) -> EnqueueError:
        error = super().enqueue_error(exc)
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
            eta=self._eta(envelope.scheduled_at),
            priority=priority,
            headers={HEADER: envelope.meta()},
            producer=producer,
            retry=False,  # fail fast; unijob reports the error
            ignore_result=True,
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

    def _eta(self, scheduled_at: dt.datetime | None) -> dt.datetime | None:
        """The ETA for the broker: the job's time, or the next hop toward it (see the module doc)."""
        now = dt.datetime.now(dt.timezone.utc)
        if scheduled_at is None or scheduled_at <= now:
            return None
        return min(scheduled_at, now + dt.timedelta(seconds=self.max_eta))

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
                        transport = _RedisTransport
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

    # --- worker side -------------------------------------------------------------------------

    def register_tasks(self, app: celery.Celery | None = None) -> list[str]:
        """Register every job of the configured job modules as a Celery task named after it
        (idempotent). Native retries stay off: no autoretry, ``max_retries=0``."""
        app = app or self.app
        jobs = worker.load_jobs()
        body = _task_body(self)
        for name in jobs:
            app.task(
                name=name,
                bind=True,
                shared=False,
                acks_late=self.acks_late,
                reject_on_worker_lost=False,  # a job that kills its worker process is not redelivered forever
                ignore_result=True,
                typing=False,
                max_retries=0,
                serializer="json",
            )(body)
        if app is self.app and self._built_app and app.conf.task_queues is None:
            # a bare `celery -A unijob.adapters.celery_worker worker` consumes every queue a job names
            app.conf.task_queues = [Queue(queue, Exchange(queue), queue) for queue in worker.queues_of(jobs)]  # type: ignore[no-untyped-call]
        return sorted(jobs)

    def perform(self, task: celery.Task, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Run one delivered message: rebuild the envelope from the unijob header (or, for a message
        sent by plain Celery code, from the native fields) and execute it, unless it is a hop."""
        request = task.request
        meta = getattr(request, HEADER, None)
        if not isinstance(meta, Mapping):
            queue = (request.delivery_info or {}).get("routing_key") or "default"
            meta = {"v": FORMAT_VERSION, "id": request.id, "queue": queue}
        envelope = Envelope.from_parts({**meta, "job": task.name}, list(args), dict(kwargs))  # the task name decides what runs
        if envelope.scheduled_at is not None and envelope.scheduled_at > dt.datetime.now(dt.timezone.utc):
            try:
                self.enqueue(envelope)  # a hop: not due yet, travel on
            except EnqueueError as error:
                raise Reject(error, requeue=True) from error  # keep this message rather than lose the job
            return None
        return execute(envelope, adapter=self)

    def worker_argv(self, queues: Sequence[str], concurrency: int | None, burst: bool) -> list[str]:
        app = WORKER_MODULE if self.alias == config.DEFAULT_ALIAS else f"{WORKER_MODULE}:{self.alias}"
        argv = [*_celery_command(), "-A", app, "worker", "--queues", ",".join(queues), "--loglevel", "INFO"]
        argv += ["--hostname", f"unijob-{os.getpid()}@%h"]  # several workers on one host need distinct node names
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        return argv

    def pending_jobs(self, queues: Sequence[str], within: float) -> int:
        """Messages waiting in the queues, plus those the workers hold (running, prefetched, or
        with an ETA due within ``within`` seconds), as the workers report them."""
        wanted = set(queues)
        count = 0
        with self.app.connection_for_write(connect_timeout=CONNECT_TIMEOUT, transport_options=POLL) as connection:
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
            inspect = self.app.control.inspect(timeout=INSPECT_TIMEOUT, connection=connection)
            for held in (inspect.active() or {}, inspect.reserved() or {}):
                count += sum(_queue_of(task) in wanted for tasks in held.values() for task in tasks)
            horizon = time.time() + within
            for entries in (inspect.scheduled() or {}).values():
                for entry in entries:
                    eta = entry.get("eta")
                    due = eta is None or dt.datetime.fromisoformat(eta).timestamp() <= horizon
                    count += due and _queue_of(entry.get("request") or {}) in wanted
        return count


class _RedisChannel(kombu_redis.Channel):
    """kombu builds a new redis client object for every publish, about a third of a publish's
    cost; the producer connections' channel keeps one, on the same connection pool."""

    _publish_client: Any = None

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._publish_client is None:
            self._publish_client = self._create_client()  # type: ignore[no-untyped-call]
        yield self._publish_client

    def _disconnect_pools(self) -> None:
        self._publish_client = None  # it holds the pool being dropped (after a fork, on close)
        super()._disconnect_pools()  # type: ignore[no-untyped-call]


class _RedisTransport(kombu_redis.Transport):
    Channel = _RedisChannel


class _Confirms:
    """RabbitMQ publisher confirms on one channel, by delivery tag (1, 2, ... from ``confirm.select``).
    Publishes go out without waiting; :meth:`wait` then reads the broker's acks and nacks (often
    one ``multiple`` ack for a whole run) until every message published so far is settled."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        channel.confirm_select()
        self.published = 0  # messages published since confirm.select: the last delivery tag
        self.floor = 0  # every tag up to here was settled and reported by an earlier wait
        self.settled: dict[int, bool] = {}
        channel.events["basic_ack"].add(self._ack)
        channel.events["basic_nack"].add(self._nack)

    @staticmethod
    def supported(channel: Any) -> bool:
        return isinstance(channel, kombu_pyamqp.Channel)

    @classmethod
    def of(cls, channel: Any) -> _Confirms:
        """The confirms of a pooled channel, put in confirm mode on first use."""
        confirms: _Confirms | None = getattr(channel, "_unijob_confirms", None)
        if confirms is None:
            confirms = channel._unijob_confirms = cls(channel)
        return confirms

    def _ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, True)

    def _nack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, False)

    def _settle(self, tag: int, multiple: bool, ok: bool) -> None:
        for settled in range(self.floor + 1, tag + 1) if multiple else (tag,):
            self.settled.setdefault(settled, ok)

    def results(self) -> list[bool | None]:
        """For each message published since the last wait: acked, nacked, or not settled (None)."""
        return [self.settled.get(tag) for tag in range(self.floor + 1, self.published + 1)]

    def wait(self) -> list[bool]:
        """Wait until RabbitMQ settled every message published since the last wait; their results."""
        for tag in range(self.floor + 1, self.published + 1):
            while tag not in self.settled:
                self.channel.connection.drain_events(timeout=SOCKET_TIMEOUT)
        results = [self.settled[tag] for tag in range(self.floor + 1, self.published + 1)]
        self.floor = self.published
        self.settled.clear()
        return results


class _RedisWire:
    """Bulk publishing on Redis at the broker's speed, with ordinary Celery messages.

    For each job it builds the message ``app.send_task(...)`` would have kombu write (Celery's
    protocol 2: the same headers, properties, base64 body and priority list), then writes a
    pipeline of them in one MULTI/EXEC round trip: one ``LPUSH key m1 m2 ...`` per run of jobs
    bound for the same list, which leaves the list as kombu's one-by-one ``LPUSH`` would. The stock
    worker consumes them as any other message. Redis either ran a pipeline or discarded it (a
    client that disconnects before EXEC leaves nothing behind), so a job is reported enqueued
    exactly when its pipeline's reply came back; a command Redis refused fails only its own jobs.

    It applies only where ``send_task`` would do nothing more than that: the kombu Redis transport
    without pipeline retries, protocol 2, JSON without compression, no task routes, no
    ``before/after_task_publish`` receivers, no sent events, queues on direct exchanges, and tasks
    not registered here with execution options of their own. :meth:`create` returns None otherwise,
    and the adapter publishes through Celery itself. tests/backends/test_celery.py compares the
    messages of both paths.
    """

    def __init__(self, adapter: CeleryAdapter, producer: Producer) -> None:
        app = adapter.app
        self.adapter = adapter
        self.producer = producer
        self.channel: Any = producer.channel  # a kombu_redis.Channel
        self.origin = anon_nodename()
        self.reply_to: str = app.thread_oid
        parent = app.current_worker_task  # a job enqueueing from a worker: the task it runs is the parent
        self.root_id: str | None = (parent.request.root_id or parent.request.id) if parent else None
        self.parent_id: str | None = parent.request.id if parent else None
        self.maxlevels: int = app.conf.task_repr_maxlevels
        self.argsrepr_maxsize: int | None = app.amqp.argsrepr_maxsize
        self.kwargsrepr_maxsize: int | None = app.amqp.kwargsrepr_maxsize
        self.default_priority = app.conf.task_default_priority
        self.delivery_mode = app.conf.task_default_delivery_mode
        self.routes: dict[str, tuple[int, dict[int, str]]] = {}  # queue -> (delivery mode, priority -> list key)

    @classmethod
    def create(cls, adapter: CeleryAdapter, producer: Producer, envelopes: Sequence[Envelope]) -> _RedisWire | None:
        app, conf = adapter.app, adapter.app.conf
        if not (
            isinstance(producer.channel, kombu_redis.Channel)
            and producer.supports_batch_publish  # no redis-py retries that could replay a pipeline
            and conf.task_protocol == 2
            and conf.task_serializer == "json"
            and not conf.task_compression
            and not conf.task_send_sent_event
            and not app.amqp.routes
            and not any(signal.receivers for signal in _PUBLISH_SIGNALS)
        ):
            return None
        for name in {envelope.job for envelope in envelopes}:
            task = app._tasks.get(name)  # send_task merges a local task's execution options
            if task is not None:
                options = {k: v for k, v in task._get_exec_options().items() if v is not None and k not in ("queue", "priority")}
                if options and options != {"serializer": "json"}:
                    return None
        wire = cls(adapter, producer)
        try:
            for queue in {envelope.queue for envelope in envelopes}:
                wire.route(queue)
        except _NotPlain:
            return None
        return wire

    def route(self, name: str) -> tuple[int, dict[int, str]]:
        """What send_task does with a queue name: look it up (creating it, as Celery does), declare it
        once per connection (kombu's ``maybe_declare``) and publish to the default exchange."""
        route = self.routes.get(name)
        if route is None:
            queue = self.adapter.app.amqp.queues[name]
            exchange = queue.exchange
            if exchange is None or exchange.type != "direct":
                raise _NotPlain(name)
            producer: Any = self.producer
            producer.maybe_declare(queue)
            mode = maybe_delivery_mode(exchange.delivery_mode or self.delivery_mode or producer.exchange.delivery_mode)  # type: ignore[no-untyped-call]
            route = self.routes[name] = (mode, {})
        return route

    def publish(self, envelopes: Sequence[Envelope], outcomes: list[EnqueueOutcome]) -> None:
        """Publish in pipelines of ``PIPELINE_SIZE``, appending each job's outcome to ``outcomes``
        once its pipeline was answered; a failed round trip raises."""
        channel = self.channel
        with channel.conn_or_acquire() as client:
            for start in range(0, len(envelopes), PIPELINE_SIZE):
                runs = self.messages(envelopes[start : start + PIPELINE_SIZE])
                with client.pipeline(transaction=True) as pipeline:
                    replied: list[int] = []  # the reply index of each run's LPUSH
                    for run in runs:
                        replied.append(len(pipeline))
                        pipeline.lpush(run.key, *run.messages)
                        expires = channel._expires.get(run.queue)
                        if expires is not None:  # as kombu's _put: refresh the queue's expiry
                            for step in channel.priority_steps:
                                pipeline.pexpire(channel._q_for_pri(run.queue, step), expires)
                    replies = pipeline.execute(raise_on_error=False)
                for run, index in zip(runs, replied, strict=True):
                    if isinstance(replies[index], Exception):  # e.g. WRONGTYPE: Redis still ran the others
                        error = self.adapter.enqueue_error(replies[index])
                        outcomes += [EnqueueOutcome(error=error)] * len(run.ids)
                    else:
                        outcomes += [EnqueueOutcome(task_id) for task_id in run.ids]

    def messages(self, envelopes: Sequence[Envelope]) -> list[_Run]:
        """The kombu messages of ``envelopes``, grouped in runs bound for the same Redis list."""
        channel = self.channel
        encode = _JSON.encode
        encode_body, body_encoding = channel.encode_body, channel.body_encoding
        next_tag = channel._next_delivery_tag
        native_id, native_priority, eta_of = self.adapter.native_id, self.adapter.native_priority, self.adapter._eta
        origin, reply_to, root_id, parent_id = self.origin, self.reply_to, self.root_id, self.parent_id
        maxlevels, args_max, kwargs_max = self.maxlevels, self.argsrepr_maxsize, self.kwargsrepr_maxsize
        channel_default = channel.default_priority
        runs: list[_Run] = []
        run = _Run("", "")
        for envelope in envelopes:
            task_id = native_id(envelope)
            queue = envelope.queue
            delivery_mode, keys = self.routes.get(queue) or self.route(queue)
            priority = self.default_priority if envelope.priority is None else native_priority(envelope.priority)
            eta = eta_of(envelope.scheduled_at)
            args, kwargs = envelope.args, envelope.kwargs
            # celery.app.amqp.AMQP.as_task_v2, then send_task_message's header merge
            headers = {
                "lang": "py",
                "task": envelope.job,
                "id": task_id,
                "shadow": None,
                "eta": eta and eta.isoformat(),
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [None, None],
                "root_id": root_id or task_id,
                "parent_id": parent_id,
                "argsrepr": plain_repr(args, args_max, maxlevels),
                "kwargsrepr": plain_repr(kwargs, kwargs_max, maxlevels),
                "origin": origin,
                "ignore_result": True,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
                HEADER: envelope.meta(),
            }
            body = encode([args, kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
            body, encoding = encode_body(body, body_encoding)
            # kombu: Producer._prepare, Channel.prepare_message, basic_publish's augmentation
            message = encode(
                {
                    "body": body,
                    "content-encoding": "utf-8",
                    "content-type": "application/json",
                    "headers": headers,
                    "properties": {
                        "correlation_id": task_id,
                        "reply_to": reply_to,
                        "delivery_mode": delivery_mode,
                        "delivery_info": {"exchange": "", "routing_key": queue},
                        "priority": priority or channel_default,
                        "body_encoding": encoding,
                        "delivery_tag": next_tag(),
                    },
                }
            )
            key = keys.get(priority)
            if key is None:
                level = channel._get_message_priority({"properties": {"priority": priority or channel_default}}, reverse=False)
                key = keys[priority] = channel._q_for_pri(queue, level)
            if key != run.key:
                run = _Run(key, queue)
                runs.append(run)
            run.ids.append(task_id)
            run.messages.append(message)
        return runs


@dataclasses.dataclass
class _Run:
    """Consecutive messages bound for one Redis list: one ``LPUSH key m1 m2 ...``."""

    key: str
    queue: str
    ids: list[str] = dataclasses.field(default_factory=list)
    messages: list[str] = dataclasses.field(default_factory=list)


class _NotPlain(Exception):
    """A value or route the fast path does not reproduce: let Celery do it."""


_PUBLISH_SIGNALS: Final = (signals.before_task_publish, signals.after_task_publish, signals.task_sent)
_JSON: Final = kombu_json.JSONEncoder(check_circular=False)  # kombu.utils.json.dumps, minus a check JSON values need not


def plain_repr(value: Any, maxsize: int | None, maxlevels: int) -> str:
    """``celery.utils.saferepr.saferepr(value, maxsize, maxlevels=maxlevels)`` (Celery's
    ``argsrepr``/``kwargsrepr``), computed directly for JSON values that fit in ``maxsize``;
    anything else goes to saferepr itself."""
    try:
        text = _plain_repr(value, 0, maxlevels)
    except _NotPlain:
        return str(saferepr(value, maxsize, maxlevels=maxlevels))
    if maxsize is not None and len(text) >= maxsize:  # saferepr would truncate
        return str(saferepr(value, maxsize, maxlevels=maxlevels))
    return text


def _plain_repr(value: Any, level: int, maxlevels: int) -> str:
    kind = type(value)
    if kind is str:
        text: str = value
        return "'" + text.replace("'", "\\'") + "'"  # saferepr quotes so, escaping nothing else
    if kind is int or kind is float or kind is bool:
        return str(value)
    if value is None:
        return "None"
    if kind is list:
        if maxlevels and level >= maxlevels:
            return "[...]"
        return "[" + ", ".join([_plain_repr(item, level + 1, maxlevels) for item in value]) + "]"
    if kind is dict:
        if maxlevels and level >= maxlevels:
            return "{...}"
        items = []
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain(key)
            items.append("'" + key.replace("'", "\\'") + "': " + _plain_repr(item, level + 1, maxlevels))
        return "{" + ", ".join(items) + "}"
    raise _NotPlain(value)


def worker_app(alias: str = config.DEFAULT_ALIAS) -> celery.Celery:
    """The Celery app of a configured celery backend, with every job registered as a task."""
    adapter = config.get_adapter(alias)
    if not isinstance(adapter, CeleryAdapter):
        raise ConfigurationError(
            f"the unijob backend {alias!r} is {adapter.name!r}, not celery; serve a celery backend with -A {WORKER_MODULE}:NAME"
        )
    adapter.register_tasks()
    return adapter.app


def register_jobs(app: celery.Celery, alias: str = config.DEFAULT_ALIAS) -> None:
    """For ``celery -A yourproject worker`` with your own app: registers unijob's jobs on ``app``
    when the worker imports its task modules. Call it where the app is created, and configure the
    backend with ``celery_app`` naming that app."""

    def on_import_modules(sender: Any = None, **_: Any) -> None:
        if sender is app:
            adapter = config.get_adapter(alias)
            if not isinstance(adapter, CeleryAdapter):
                raise ConfigurationError(f"the unijob backend {alias!r} is {adapter.name!r}, not celery")
            adapter.register_tasks(app)

    signals.import_modules.connect(on_import_modules, weak=False)


def _task_body(adapter: CeleryAdapter) -> Callable[..., Any]:
    def run(task: celery.Task, *args: Any, **kwargs: Any) -> Any:
        return adapter.perform(task, args, kwargs)

    return run


def _import_app(path: str) -> celery.Celery:
    app = symbol_by_name(path)  # type: ignore[no-untyped-call]
    if not isinstance(app, celery.Celery):
        raise ConfigurationError(f"celery_app={path!r} is {type(app).__name__}, not a Celery app")
    return app


def _driver(connection: Connection) -> str:
    with connection:
        driver: str = connection.transport.driver_type
        return driver


def _queue_of(task: Mapping[str, Any]) -> str | None:
    queue: str | None = (task.get("delivery_info") or {}).get("routing_key")
    return queue


def _celery_command() -> list[str]:
    script = Path(sys.executable).with_name("celery")
    return [str(script)] if script.exists() else [sys.executable, "-m", "celery"]
