"""Dramatiq: each unijob job is a Dramatiq actor named exactly after the job, on Redis or RabbitMQ.

A job travels as an ordinary Dramatiq message: ``actor_name`` is the job's registered name,
``args``/``kwargs`` are the job's (JSON) arguments, ``message_id`` is unijob's job id, and
unijob's metadata rides in the message options under ``"unijob"``. Bulk writes a chunk in one
Redis MULTI/EXEC or one AMQP transaction (:mod:`unijob.adapters.dramatiq_wire`). The stock
``dramatiq`` command runs the jobs (:mod:`unijob.adapters.dramatiq_worker`).

A delayed message waits in a worker's memory, unacknowledged, so no delay handed to the broker is
longer than an hour on Redis or 15 minutes on RabbitMQ: longer ones hop (:mod:`unijob.scheduling`).
Retries belong to unijob: every unijob actor has ``max_retries=0``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

from dramatiq import Broker, Message
from dramatiq.common import dq_name
from dramatiq.errors import BrokerError
from dramatiq.middleware import Middleware
from dramatiq.middleware.time_limit import TimeLimitExceeded

from unijob import scheduling
from unijob.adapters.base import Adapter, Capabilities, EnqueueOutcome
from unijob.adapters.dramatiq_wire import META_OPTION, encode_fields, rabbitmq_bulk, redis_bulk
from unijob.envelope import Envelope
from unijob.errors import ConfigurationError, EnqueueError
from unijob.ids import new_job_id
from unijob.priority import scale
from unijob.urls import REDIS_SCHEMES, require_scheme, with_query_defaults

DEFAULT_URL: Final = "amqp://guest:guest@127.0.0.1:5672/%2F"  # Dramatiq's own default broker
DEFAULT_MAX_PRIORITY: Final = 10  # RabbitMQ advises at most 10 priority levels
REDIS_MAX_HOLD: Final = dt.timedelta(hours=1)  # a held message costs worker memory; hop hourly
QUEUE_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")  # Dramatiq's rule for queue names
# Bounded waits, so an unreachable broker fails in seconds; a URL's own query parameters win.
REDIS_TIMEOUTS: Final = {"socket_connect_timeout": 5, "socket_timeout": 30}
AMQP_TIMEOUTS: Final = {"socket_timeout": "5", "stack_timeout": "10", "blocked_connection_timeout": "30"}


class DramatiqAdapter(Adapter):
    """Options: ``namespace`` (Redis key prefix, Dramatiq's ``dramatiq``), ``max_priority``
    (RabbitMQ's ``x-max-priority``, 10; 0 turns priority off), ``actor_options`` (passed to every
    actor the worker declares), ``max_delay`` (seconds: the longest delay handed to the broker;
    longer ones hop), ``broker_options`` (passed to Dramatiq's broker: ``heartbeat_timeout``,
    ``dead_message_ttl``, ``maintenance_chance`` on Redis) and ``store``."""

    name = "dramatiq"
    display_name = "Dramatiq"
    OPTIONS = frozenset({"namespace", "max_priority", "actor_options", "max_delay", "broker_options"})
    worker_module = "unijob.adapters.dramatiq_worker"
    time_limit_errors = (TimeLimitExceeded,)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        scheme = require_scheme(self.url or DEFAULT_URL, REDIS_SCHEMES | {"amqp", "amqps"}, self.name)
        self.kind = "redis" if scheme in REDIS_SCHEMES else "rabbitmq"
        self.namespace: str = self.options.get("namespace", "dramatiq")
        self.max_priority = int(self.options.get("max_priority", DEFAULT_MAX_PRIORITY)) if self.kind == "rabbitmq" else 0
        if not 0 <= self.max_priority <= 255:
            raise ConfigurationError(f"max_priority must be from 0 (no priority) to 255, not {self.max_priority}")
        self.actor_options: dict[str, Any] = dict(self.options.get("actor_options") or {})
        self.broker_options: dict[str, Any] = dict(self.options.get("broker_options") or {})
        if self.kind == "redis":
            self.max_hold = REDIS_MAX_HOLD
            notes = "Redis: no priority (Dramatiq orders only a worker's prefetch); delays wait in the worker's memory"
        else:
            self.max_hold = scheduling.AMQP_MAX_HOLD
            notes = f"RabbitMQ: priority via x-max-priority={self.max_priority}; delays wait in the worker's memory"
        if self.options.get("max_delay"):
            self.max_hold = dt.timedelta(seconds=float(self.options["max_delay"]))
        self.capabilities = Capabilities(
            timeout=True, max_hold=self.max_hold, priority=self.max_priority > 0, native_bulk=True, notes=notes
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
            broker: Broker = redis_broker(client=client, namespace=self.namespace, **self.broker_options)
            return broker
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        url = with_query_defaults(self.url or DEFAULT_URL, AMQP_TIMEOUTS)
        # Publisher confirms: a job is reported enqueued only once RabbitMQ has taken it.
        return RabbitmqBroker(url=url, confirm_delivery=True, max_priority=self.max_priority or None, **self.broker_options)

    def errors(self) -> tuple[type[BaseException], ...]:
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
        """unijob's -100..100 on RabbitMQ's 0..max_priority."""
        return scale(priority, self.max_priority)

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
        if envelope.timeout is not None:
            options["time_limit"] = math.ceil(envelope.timeout * 1000)  # Dramatiq's TimeLimit middleware, in ms
        if envelope.priority is not None and self.capabilities.priority:
            options["broker_priority"] = self.broker_priority(envelope.priority)
        now = time.time() * 1000
        delay = eta = None
        hop = scheduling.next_hop(envelope.scheduled_at, self.max_hold)
        if hop is not None:
            eta = scheduling.epoch_millis(hop)
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
        with self.as_enqueue_error(*self.errors()):
            broker: Any = self.broker
            if self.kind == "redis":
                # RedisBroker.enqueue, less its two copies of the message (fields() built it whole):
                # the enqueue middleware hooks around Dramatiq's own enqueue script.
                before, after = self.enqueue_hooks(broker)
                message: Message[Any] | None = Message(**fields) if before or after else None
                if before:
                    broker.emit_before("enqueue", message, delay)
                broker.do_enqueue(fields["queue_name"], fields["options"]["redis_message_id"], encode_fields(fields))
                if after:
                    broker.emit_after("enqueue", message, delay)
            else:
                broker.enqueue(Message(**fields), delay=delay)
        return str(fields["message_id"])

    def enqueue_hooks(self, broker: Broker) -> tuple[bool, bool]:
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

    def enqueue_all(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
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
            bulk = redis_bulk if self.kind == "redis" else rabbitmq_bulk
            results = bulk(self, [(fields, delay) for _, fields, delay in ready])
            for (index, _, _), outcome in zip(ready, results, strict=True):
                outcomes[index] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    def amqp_channel(self) -> Any:
        """A new channel on the broker's connection for this thread; one reconnect if it went stale."""
        import pika.exceptions

        broker: Any = self.broker
        try:
            return broker.connection.channel()
        except pika.exceptions.AMQPError:
            del broker.connection
            return broker.connection.channel()
