"""Celery bulk publishing on Redis at the broker's speed, with ordinary Celery messages.

Checked against celery 5.7.0 and kombu 5.7.0. :class:`RedisWire` builds, for each job, the message
``app.send_task(...)`` would have kombu write, mirroring ``celery.app.amqp.AMQP.as_task_v2``,
``celery.app.base.Celery.send_task`` (its header merge), ``kombu.messaging.Producer._prepare``,
``kombu.transport.redis.Channel._put`` and ``Channel.prepare_message``; and
:func:`plain_repr` mirrors ``celery.utils.saferepr.saferepr`` for JSON values.
tests/backends/test_celery.py compares the messages of both paths field for field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from celery import signals
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.entity import maybe_delivery_mode
from kombu.messaging import Producer
from kombu.transport import redis as kombu_redis
from kombu.utils import json as kombu_json

from unijob.adapters.base import EnqueueOutcome
from unijob.envelope import Envelope

if TYPE_CHECKING:
    from unijob.adapters.celery import CeleryAdapter

HEADER: Final = "unijob"  # the message header that carries the envelope's meta
PIPELINE_SIZE: Final = 1000  # messages per Redis pipeline round trip in bulk (the core's chunk size)


class RedisWire:
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
    def create(cls, adapter: CeleryAdapter, producer: Producer, envelopes: Sequence[Envelope]) -> RedisWire | None:
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
                        error = self.adapter.enqueue_error_for(replies[index])
                        outcomes += [EnqueueOutcome(error=error)] * len(run.ids)
                    else:
                        outcomes += [EnqueueOutcome(task_id) for task_id in run.ids]

    def messages(self, envelopes: Sequence[Envelope]) -> list[_Run]:
        """The kombu messages of ``envelopes``, grouped in runs bound for the same Redis list."""
        channel = self.channel
        encode = _JSON.encode
        encode_body, body_encoding = channel.encode_body, channel.body_encoding
        next_tag = channel._next_delivery_tag
        native_id, native_priority, eta_of = self.adapter.native_id, self.adapter.native_priority, self.adapter.eta
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
                "timelimit": [envelope.timeout, None],
                "root_id": root_id or task_id,
                "parent_id": parent_id,
                "argsrepr": plain_repr(args, args_max, maxlevels),
                "kwargsrepr": plain_repr(kwargs, kwargs_max, maxlevels),
                "origin": origin,
                "ignore_result": True,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
                **(envelope.headers or {}),  # an adopted task's apply_async(headers=), as Celery merges them
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
