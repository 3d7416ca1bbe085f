"""Dramatiq: each unijob job is a Dramatiq actor named exactly after the job, on Redis or RabbitMQ.

A job travels as an ordinary Dramatiq message: ``actor_name`` is the job's registered name,
``args``/``kwargs`` are the job's (JSON) arguments, ``message_id`` is unijob's job id, and
unijob's metadata rides in the message options under ``"unijob"``. The stock ``dramatiq``
command runs the jobs: ``dramatiq unijob.adapters.dramatiq_worker`` declares one actor per
registered job (see :mod:`unijob.adapters.dramatiq_worker`). Dramatiq accepts any string as an
actor name, so job names map to actor names unchanged.

Retries belong to unijob: every unijob actor has ``max_retries=0``, so a job that unijob gave up
on fails once in Dramatiq (and goes to its dead-letter queue) instead of coming back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
from dramatiq import Broker, Message
from dramatiq.common import current_millis, dq_name, q_name
from dramatiq.encoder import JSONEncoder
from dramatiq.errors import BrokerError, DecodeError
from dramatiq.message import get_encoder
from dramatiq.middleware import CurrentMessage, Middleware

from unijob.adapters.base import Adapter, Capabilities, EnqueueOutcome
from unijob.envelope import FORMAT_VERSION, Envelope
from unijob.errors import ConfigurationError, EnqueueError
from unijob.job import new_job_id

if TYPE_CHECKING:
    from unijob.job import Job

META_OPTION: Final = "unijob"  # the message option that carries unijob's metadata
DEFAULT_URL: Final = "amqp://guest:guest@127.0.0.1:5672/%2F"  # Dramatiq's own default broker
DEFAULT_MAX_PRIORITY: Final = 10  # RabbitMQ advises at most 10 priority levels
# Delayed messages wait in a worker's memory; Dramatiq documents delays of less than 7 days.
MAX_DELAY: Final = dt.timedelta(days=7)
WORKER_MODULE: Final = "unijob.adapters.dramatiq_worker"
OPTIONS: Final = frozenset({"namespace", "max_priority", "actor_options", "batch_store"})
QUEUE_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")  # Dramatiq's rule for queue names
# Bounded waits, so an unreachable broker fails in seconds; a URL's own query parameters win.
REDIS_TIMEOUTS: Final = {"socket_connect_timeout": 5, "socket_timeout": 30}
AMQP_TIMEOUTS: Final = {"socket_timeout": "5", "stack_timeout": "10", "blocked_connection_timeout": "30"}


class DramatiqAdapter(Adapter):
    name = "dramatiq"
    display_name = "Dramatiq"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        unknown = sorted(set(self.options) - OPTIONS)
        if unknown:
            raise ConfigurationError(f"unknown Dramatiq option(s) {', '.join(unknown)} (known: {', '.join(sorted(OPTIONS))})")
        scheme = urlsplit(self.url or DEFAULT_URL).scheme
        if scheme in ("redis", "rediss", "unix"):
            self.kind = "redis"
        elif scheme in ("amqp", "amqps"):
            self.kind = "rabbitmq"
        else:
            raise ConfigurationError(f"the Dramatiq backend needs a redis:// or amqp:// URL, not {self.safe_url}")
        self.namespace: str = self.options.get("namespace", "dramatiq")
        self.max_priority = int(self.options.get("max_priority", DEFAULT_MAX_PRIORITY)) if self.kind == "rabbitmq" else 0
        if not 0 <= self.max_priority <= 255:
            raise ConfigurationError(f"max_priority must be from 0 (no priority) to 255, not {self.max_priority}")
        self.actor_options: dict[str, Any] = dict(self.options.get("actor_options") or {})
        if self.kind == "redis":
            notes = "Redis: no priority (Dramatiq orders only a worker's prefetch); delays under 7 days, held by the worker"
        else:
            notes = f"RabbitMQ: priority via x-max-priority={self.max_priority}; delays under 7 days, held by the worker"
        self.capabilities = Capabilities(
            delay=True, max_delay=MAX_DELAY, priority=self.max_priority > 0, native_bulk=True, notes=notes
        )
        self._broker: Broker | None = None
        self._lock = threading.Lock()
        self._valid_queues: set[str] = set()
        self._hooks: tuple[tuple[Middleware, ...], tuple[bool, bool]] | None = None

    # --- the native broker -----------------------------------------------------------------------

    @property
    def broker(self) -> Broker:
        """This backend's Dramatiq broker, built on first use (the worker declares its actors on it)."""
        broker = self._broker
        if broker is None:
            with self._lock:
                if self._broker is None:
                    self._broker = self._build_broker()
                broker = self._broker
        return broker

    def _build_broker(self) -> Broker:
        if self.kind == "redis":
            import redis
            from dramatiq.brokers.redis import RedisBroker

            client = redis.Redis.from_url(self.url or DEFAULT_URL, **REDIS_TIMEOUTS)
            redis_broker: Any = RedisBroker  # untyped in some Dramatiq versions
            broker: Broker = redis_broker(client=client, namespace=self.namespace)
            return broker
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        url = _with_defaults(self.url or DEFAULT_URL, AMQP_TIMEOUTS)
        # Publisher confirms: a job is reported enqueued only once RabbitMQ has taken it.
        return RabbitmqBroker(url=url, confirm_delivery=True, max_priority=self.max_priority or None)

    def _errors(self) -> tuple[type[BaseException], ...]:
        if self.kind == "redis":
            import redis

            return (BrokerError, OSError, redis.RedisError)
        import pika.exceptions

        return (BrokerError, OSError, pika.exceptions.AMQPError)

    def close(self) -> None:
        with self._lock:
            broker, self._broker = self._broker, None
        if broker is None:
            return
        broker.close()
        client = getattr(broker, "client", None)  # RedisBroker.close() leaves its pool open
        if client is not None:
            client.close()

    # --- producer side ---------------------------------------------------------------------------

    def broker_priority(self, priority: int) -> int:
        """unijob's -100..100 to RabbitMQ's 0..max_priority (larger runs sooner on both), rounded."""
        return ((priority + 100) * self.max_priority + 100) // 200

    def fields(self, envelope: Envelope) -> tuple[dict[str, Any], int | None]:
        """The fields of the Dramatiq message for a job (``Message.asdict()``: ``Message(**fields)``
        is the message), and its delay in milliseconds (None: run now).

        On Redis they are those of the message ``RedisBroker.enqueue`` would store: it has its
        ``redis_message_id``, and a delayed message is already on the delay queue with its ``eta``.
        On RabbitMQ ``RabbitmqBroker.enqueue`` does that part itself."""
        queue_name = envelope.queue
        if queue_name not in self._valid_queues:
            if not QUEUE_NAME.fullmatch(queue_name):
                raise EnqueueError(
                    f"Dramatiq at {self.safe_url} did not accept the job: queue name {queue_name!r} is not valid "
                    "in Dramatiq (a letter or '_', then letters, digits, '.', '_' or '-')"
                )
            if len(self._valid_queues) < 10_000:
                self._valid_queues.add(queue_name)
        options: dict[str, Any] = {META_OPTION: envelope.meta()}
        if envelope.priority is not None and self.capabilities.priority:
            options["broker_priority"] = self.broker_priority(envelope.priority)
        now = time.time() * 1000
        delay = None
        if envelope.scheduled_at is not None:
            eta = math.ceil(envelope.scheduled_at.timestamp() * 1000)  # never early
            if eta > now:
                delay = int(eta - now) + 1
        if self.kind == "redis":
            # What RedisBroker.enqueue adds: a unique id per enqueue (a message may be enqueued
            # again), and for a delayed message the delay queue and its eta.
            options["redis_message_id"] = new_job_id()
            if delay is not None:
                queue_name = dq_name(queue_name)
                options["eta"] = eta
        return {
            "queue_name": queue_name,
            "actor_name": envelope.job,
            "args": tuple(envelope.args),
            "kwargs": envelope.kwargs,
            "options": options,
            # send_with_options() has no message-id argument: the message is built with unijob's id.
            "message_id": self.native_id(envelope),
            "message_timestamp": int(now),
        }, delay

    def message(self, envelope: Envelope) -> tuple[Message[Any], int | None]:
        """The Dramatiq message for a job (see :meth:`fields`), and its delay in milliseconds."""
        fields, delay = self.fields(envelope)
        return Message(**fields), delay

    def enqueue(self, envelope: Envelope) -> str | None:
        fields, delay = self.fields(envelope)
        with self.enqueue_errors(*self._errors()):
            broker: Any = self.broker
            if self.kind == "redis":
                # RedisBroker.enqueue, less its two copies of the message (fields() built it whole):
                # the enqueue middleware hooks around Dramatiq's own enqueue script.
                before, after = self._enqueue_hooks(broker)
                message: Message[Any] | None = Message(**fields) if before or after else None
                if before:
                    broker.emit_before("enqueue", message, delay)
                broker.do_enqueue(fields["queue_name"], fields["options"]["redis_message_id"], encode_fields(fields))
                if after:
                    broker.emit_after("enqueue", message, delay)
            else:
                broker.enqueue(Message(**fields), delay=delay)
        return str(fields["message_id"])

    def _enqueue_hooks(self, broker: Broker) -> tuple[bool, bool]:
        """Whether any middleware of ``broker`` has a ``before_enqueue`` / ``after_enqueue`` of its
        own. Dramatiq's default middleware has neither: calling the base class's no-ops for every
        message is skipped, and the hooks run exactly as ``broker.emit_before/emit_after`` run them
        as soon as a middleware defines one."""
        middleware = tuple(broker.middleware)
        known = self._hooks
        if known is None or known[0] != middleware:
            before = any(getattr(type(m), "before_enqueue", None) is not Middleware.before_enqueue for m in middleware)
            after = any(getattr(type(m), "after_enqueue", None) is not Middleware.after_enqueue for m in middleware)
            known = self._hooks = (middleware, (before, after))
        return known[1]

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
        """One MULTI/EXEC transaction on Redis; one AMQP transaction on RabbitMQ. Either way a chunk
        is taken whole or not at all, and each job reports its own status."""
        outcomes: list[EnqueueOutcome | None] = []
        ready: list[tuple[int, dict[str, Any], int | None]] = []
        for index, envelope in enumerate(envelopes):
            try:
                fields, delay = self.fields(envelope)
            except EnqueueError as error:
                outcomes.append(EnqueueOutcome(error=error))
                continue
            outcomes.append(None)
            ready.append((index, fields, delay))
        if ready:
            bulk = self._redis_bulk if self.kind == "redis" else self._rabbitmq_bulk
            results = bulk([(fields, delay) for _, fields, delay in ready])
            for (index, _, _), outcome in zip(ready, results, strict=True):
                outcomes[index] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    def _redis_bulk(self, items: list[tuple[dict[str, Any], int | None]]) -> list[EnqueueOutcome]:
        """Write what Dramatiq's enqueue script (``dispatch.lua``, command ``enqueue``) writes, for a
        whole chunk in one MULTI/EXEC: the broker's heartbeat (``ZADD <ns>:__heartbeats__``), then per
        queue one ``HSET <ns>:<queue>.msgs`` of every message (redis message id -> encoded message)
        and one ``RPUSH <ns>:<queue>`` of their ids, in order. The stock worker's fetch script reads
        them like any other message. The enqueue middleware hooks run around it, per message."""
        broker: Any = self.broker
        namespace = broker.namespace
        before, after = self._enqueue_hooks(broker)
        messages: list[Message[Any]] = [Message(**fields) for fields, _ in items] if before or after else []
        by_queue: dict[str, tuple[list[int], list[str], list[Any]]] = {}  # queue -> (item indexes, ids, hash fields)
        try:
            for index, (fields, delay) in enumerate(items):
                if before:
                    broker.emit_before("enqueue", messages[index], delay)
                redis_id = fields["options"]["redis_message_id"]
                queued = by_queue.get(fields["queue_name"])
                if queued is None:
                    queued = by_queue[fields["queue_name"]] = ([], [], [])
                queued[0].append(index)
                queued[1].append(redis_id)
                queued[2].extend((redis_id, encode_fields(fields)))
            pipe = broker.client.pipeline(transaction=True)
            pipe.execute_command("ZADD", f"{namespace}:__heartbeats__", current_millis(), broker.broker_id)
            for queue_name, (_, ids, hash_fields) in by_queue.items():
                pipe.execute_command("HSET", f"{namespace}:{queue_name}.msgs", *hash_fields)
                pipe.execute_command("RPUSH", f"{namespace}:{queue_name}", *ids)
            results = pipe.execute(raise_on_error=False)
        except self._errors() as exc:
            error = self.enqueue_error(exc)
            return [EnqueueOutcome(error=error) for _ in items]
        outcomes: list[EnqueueOutcome | None] = [None] * len(items)
        for position, (indexes, _, _) in enumerate(by_queue.values()):
            stored, pushed = results[1 + 2 * position], results[2 + 2 * position]
            failure = next((result for result in (pushed, stored) if isinstance(result, Exception)), None)
            failed = self.enqueue_error(failure) if failure is not None else None
            for index in indexes:
                fields, delay = items[index]
                if failed is not None:
                    outcomes[index] = EnqueueOutcome(error=failed)
                    continue
                if after:
                    broker.emit_after("enqueue", messages[index], delay)
                outcomes[index] = EnqueueOutcome(fields["message_id"])
        return [outcome for outcome in outcomes if outcome is not None]

    def _rabbitmq_bulk(self, items: list[tuple[dict[str, Any], int | None]]) -> list[EnqueueOutcome]:
        import pika
        import pika.exceptions

        broker: Any = self.broker
        returned: set[str] = set()
        sent: list[tuple[Message[Any], int | None]] = []
        try:
            for queue_name in {fields["queue_name"] for fields, _ in items}:
                broker.declare_queue(queue_name, ensure=True)
            channel = self._amqp_channel()
            try:
                # Unroutable messages (their queue was deleted) come back as basic.return before tx.commit-ok.
                channel.add_on_return_callback(lambda _channel, _method, _properties, body: returned.add(_message_id(body)))
                channel.tx_select()
                for fields, delay in items:
                    if delay is not None:  # what RabbitmqBroker.enqueue does with a delay
                        options = {**fields["options"], "eta": current_millis() + delay}
                        fields = {**fields, "queue_name": dq_name(fields["queue_name"]), "options": options}
                    message: Message[Any] = Message(**fields)
                    broker.emit_before("enqueue", message, delay)
                    properties = pika.BasicProperties(delivery_mode=2, priority=message.options.get("broker_priority"))
                    route = {"exchange": "", "routing_key": message.queue_name, "mandatory": True}
                    channel.basic_publish(body=encode_fields(fields), properties=properties, **route)
                    sent.append((message, delay))
                channel.tx_commit()
                broker.connection.process_data_events(0)  # runs the return callback
            finally:
                if channel.is_open:
                    channel.close()
        except self._errors() as exc:
            if isinstance(exc, pika.exceptions.AMQPError):
                del broker.connection  # the next call reconnects
            error = self.enqueue_error(exc)
            return [EnqueueOutcome(error=error) for _ in items]
        outcomes = []
        for message, delay in sent:
            if message.message_id in returned:
                broker.queues_pending.add(q_name(message.queue_name))  # redeclared on the next enqueue
                outcomes.append(EnqueueOutcome(error=self.enqueue_error(LookupError(f"queue {message.queue_name!r} is gone"))))
            else:
                broker.emit_after("enqueue", message, delay)
                outcomes.append(EnqueueOutcome(message.message_id))
        return outcomes

    def _amqp_channel(self) -> Any:
        """A new channel on the broker's connection for this thread; one reconnect if it went stale."""
        import pika.exceptions

        broker: Any = self.broker
        try:
            return broker.connection.channel()
        except pika.exceptions.AMQPError:
            del broker.connection
            return broker.connection.channel()

    # --- worker side -----------------------------------------------------------------------------

    def worker_argv(self, queues: Sequence[str], concurrency: int | None, burst: bool) -> list[str]:
        module = WORKER_MODULE if self.alias == "default" else f"{WORKER_MODULE}:{self.alias}"
        argv = [_console_script("dramatiq"), module]
        if concurrency:
            argv += ["--processes", "1", "--threads", str(concurrency)]
        if queues:
            argv += ["--queues", *queues]
        return argv  # --burst: the unijob command stops the worker once pending_jobs() is 0

    def pending_jobs(self, queues: Sequence[str], within: float) -> int:
        with self.enqueue_errors(*self._errors()):
            if self.kind == "redis":
                return self._redis_pending(queues, within)
            return self._rabbitmq_pending(queues)

    def _redis_pending(self, queues: Sequence[str], within: float) -> int:
        client = self.broker.client  # type: ignore[attr-defined]
        horizon = current_millis() + within * 1000
        total = 0
        for queue in queues:
            # A message stays in "<queue>.msgs" from enqueue to ack: waiting and running alike.
            total += int(client.hlen(f"{self.namespace}:{queue}.msgs"))
            for _, data in client.hscan_iter(f"{self.namespace}:{dq_name(queue)}.msgs"):
                try:
                    eta = Message.decode(data).options.get("eta") or 0
                except DecodeError:
                    eta = 0  # unreadable: count it rather than stop early
                total += eta <= horizon
        return total

    def _rabbitmq_pending(self, queues: Sequence[str]) -> int:
        """Ready messages in each queue and its delay queue. AMQP cannot count the messages a worker
        has prefetched (running, or delayed and held in its memory)."""
        import pika.exceptions

        total = 0
        for name in [n for queue in queues for n in (queue, dq_name(queue))]:
            channel = self._amqp_channel()
            try:
                total += channel.queue_declare(name, passive=True).method.message_count
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 404:  # a queue nobody declared yet holds nothing
                    raise
            finally:
                if channel.is_open:
                    channel.close()
        return total

    def worker_broker(self, jobs: Mapping[str, type[Job]], queues: Iterable[str] = ()) -> Broker:
        """Declare one actor per registered job (and the extra ``queues``) on this backend's broker,
        for the stock worker. Only these actors run: Dramatiq refuses a message for any other name."""
        broker = self.broker
        if not any(isinstance(middleware, CurrentMessage) for middleware in broker.middleware):
            broker.add_middleware(CurrentMessage())
        options = {**self.actor_options, "max_retries": 0}  # retries belong to unijob
        for name, job_class in jobs.items():
            if name not in broker.actors:
                declare = dramatiq.actor(actor_name=name, queue_name=job_class.queue, broker=broker, **options)
                declare(self._performer(name))
        for queue in queues:
            broker.declare_queue(queue)
        return broker

    def _performer(self, name: str) -> Callable[..., None]:
        def perform(*args: Any, **kwargs: Any) -> None:
            from unijob.execution import execute

            # Errors propagate: with max_retries=0, Dramatiq records the failure once.
            execute(envelope_of(name, CurrentMessage.get_current_message(), args, kwargs), adapter=self)

        perform.__name__ = perform.__qualname__ = name
        perform.__module__ = __name__
        return perform


def envelope_of(name: str, message: Message[Any] | None, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Envelope:
    """Rebuild the envelope of a message for the actor ``name``. The actor that Dramatiq dispatched
    to names the job, whatever the options say; a message from plain Dramatiq code (no unijob
    options) is a fresh execution."""
    meta = message.options.get(META_OPTION) if message is not None else None
    if not isinstance(meta, Mapping):
        meta = {"v": FORMAT_VERSION, "id": str(uuid.uuid4()), "queue": "default"}
        if message is not None:
            enqueued = dt.datetime.fromtimestamp(message.message_timestamp / 1000, dt.timezone.utc)
            meta.update(id=message.message_id, queue=q_name(message.queue_name), enqueued_at=enqueued.isoformat())
    return Envelope.from_dict({**meta, "job": name, "args": list(args), "kwargs": dict(kwargs)})


def command_line_queues(argv: Sequence[str]) -> list[str]:
    """The queue names after ``--queues``/``-Q`` on a ``dramatiq`` command line: the worker declares
    them, since a Dramatiq worker consumes only declared queues."""
    if not argv or "dramatiq" not in argv[0]:
        return []
    names: list[str] = []
    collecting = False
    for arg in argv[1:]:
        if arg.startswith("--queues="):
            names.append(arg.partition("=")[2])
            collecting = True
        elif arg in ("--queues", "-Q"):
            collecting = True
        elif arg.startswith("-"):
            collecting = False
        elif collecting:
            names.append(arg)
    return names


_FIELDS: Final = tuple(field.name for field in dataclasses.fields(Message))
_KNOWN_FIELDS: Final = ("queue_name", "actor_name", "args", "kwargs", "options", "message_id", "message_timestamp")
# What dramatiq's JSONEncoder.encode() runs (json.dumps with these separators), built once.
_JSON: Final = json.JSONEncoder(separators=(",", ":"))


def encode_fields(fields: dict[str, Any]) -> bytes:
    """The bytes of ``Message(**fields).encode()``, faster for Dramatiq's default JSON encoder: no
    message object and no new ``json.JSONEncoder`` per message (``fields`` are in ``asdict()``
    order). Any other encoder (``dramatiq.set_encoder``), or a Dramatiq whose messages have other
    fields, takes Dramatiq's own path."""
    if type(get_encoder()) is not JSONEncoder or _FIELDS != _KNOWN_FIELDS:
        return Message(**fields).encode()
    return _JSON.encode(fields).encode("utf-8")


def _message_id(body: bytes) -> str:
    try:
        return str(Message.decode(body).message_id)
    except DecodeError:
        return ""


def _with_defaults(url: str, defaults: Mapping[str, str]) -> str:
    if ";" in url:  # several servers: pika takes each URL as given
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    return urlunsplit(parts._replace(query=urlencode({**defaults, **query})))


def _console_script(name: str) -> str:
    import shutil
    import sys
    from pathlib import Path

    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name) or name
