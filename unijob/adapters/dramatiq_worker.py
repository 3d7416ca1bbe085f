"""The Dramatiq worker side: the broker module for Dramatiq's stock command::

    dramatiq unijob.adapters.dramatiq_worker --processes 1 --threads 2

Loaded by that command, this module imports the configured job modules and declares one actor
per registered job, named after the job, on the broker of the ``default`` unijob backend, which
becomes Dramatiq's global broker. Another configured backend is served by naming it:
``dramatiq unijob.adapters.dramatiq_backends:reports``. Queues given with ``--queues`` are declared
too, so the worker consumes them even when no job uses them by default. Imported by anything else
(``unijob worker``, a test), it declares nothing until :func:`setup` is called.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import dramatiq
import redis
from dramatiq import Broker, Message
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis, dq_name, q_name
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.middleware import CurrentMessage

from unijob import worker
from unijob.adapters.dramatiq import DramatiqAdapter
from unijob.adapters.dramatiq_wire import META_OPTION
from unijob.constants import DEFAULT_BACKEND
from unijob.core import BaseJob
from unijob.ids import new_job_id


def setup(backend: str = DEFAULT_BACKEND) -> Broker:
    """Declare the registered jobs as actors on the broker of ``backend``; make it Dramatiq's global broker."""
    adapter = worker.serve(backend, DramatiqAdapter, f"dramatiq {__name__}")
    broker = declare_actors(adapter, worker.load_jobs(), command_line_queues(sys.argv))
    dramatiq.set_broker(broker)
    return broker


def declare_actors(adapter: DramatiqAdapter, jobs: Mapping[str, type[BaseJob]], queues: Iterable[str] = ()) -> Broker:
    """One actor per registered job (and the extra ``queues``) on the backend's broker. Only these
    actors run: Dramatiq refuses a message for any other name."""
    broker = adapter.broker
    if type(broker) is RedisBroker:
        broker.__class__ = GuardedRedisBroker  # the same broker, whose consumers refuse poison messages
    if not any(isinstance(middleware, CurrentMessage) for middleware in broker.middleware):
        broker.add_middleware(CurrentMessage())
    options = {**adapter.actor_options, "max_retries": 0}  # retries belong to unijob
    for name, job_class in jobs.items():
        if name not in broker.actors:
            declare = dramatiq.actor(actor_name=name, queue_name=job_class.queue, broker=broker, **options)
            declare(_performer(adapter, name))
    for queue in queues:
        broker.declare_queue(queue)
    return broker


def _performer(adapter: DramatiqAdapter, name: str) -> Callable[..., None]:
    def perform(*args: Any, **kwargs: Any) -> None:
        # The actor Dramatiq dispatched to names the job. Errors propagate: with max_retries=0,
        # Dramatiq records the failure once.
        message = CurrentMessage.get_current_message()
        if message is None:
            worker.run(adapter, worker.Delivery(name, None, args, kwargs, new_job_id()))
            return
        enqueued = dt.datetime.fromtimestamp(message.message_timestamp / 1000, dt.timezone.utc).isoformat()
        meta = message.options.get(META_OPTION)
        worker.run(adapter, worker.Delivery(name, meta, args, kwargs, message.message_id, q_name(message.queue_name), enqueued))

    perform.__name__ = perform.__qualname__ = name
    perform.__module__ = __name__
    return perform


class GuardedRedisConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer (``dramatiq.brokers.redis._RedisConsumer.__next__`` of dramatiq
    2.2.1, mirrored) that moves a message it cannot use to the queue's dead-letter queue, logged,
    and goes on. Dramatiq's own raises on it: the consumer thread restarts, fetches it again, and
    the messages behind it wait for good. A message is unusable when it does not decode, or when
    it has no ``redis_message_id`` (it could never be acknowledged)."""

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                try:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    self.misses = 0
                    message = self._usable(data)
                    if message is None:
                        continue
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                except IndexError:
                    messages = []
                    if self.outstanding_message_count < self.prefetch:
                        self.message_cache = messages = self.broker.do_fetch(
                            self.queue_name, self.prefetch - self.outstanding_message_count
                        )
                    if not messages:
                        self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                        time.sleep(backoff_ms / 1000)
                        return None
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def _usable(self, data: bytes) -> Message[Any] | None:
        try:
            message: Message[Any] = Message.decode(data)
        except DecodeError as exc:
            reason = f"it is not a Dramatiq message ({type(exc.error).__name__}: {exc.error})"
        else:
            if isinstance(message.options, dict) and isinstance(message.options.get("redis_message_id"), str):
                return message
            reason = "it has no redis_message_id, so it could never be acknowledged"
        stored = f"{self.broker.namespace}:{self.queue_name}.msgs"
        ids = [field for field, value in self.broker.client.hscan_iter(stored) if value == data]
        for redis_id in ids:
            self.broker.do_nack(self.queue_name, redis_id.decode())
        worker.logger.error(
            "Refused a message on Dramatiq queue %r: %s; moved to its dead-letter queue (%s)",
            self.queue_name,
            reason,
            ", ".join(redis_id.decode() for redis_id in ids) or "not found",
        )
        return None


class GuardedRedisBroker(RedisBroker):
    @property
    def consumer_class(self) -> type[GuardedRedisConsumer]:
        return GuardedRedisConsumer


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


def command(adapter: DramatiqAdapter, queues: Sequence[str], concurrency: int | None) -> list[str]:
    module = __name__ if adapter.alias == DEFAULT_BACKEND else f"{__package__}.dramatiq_backends:{adapter.alias}"
    argv = [*worker.console_script("dramatiq", "dramatiq"), module]
    if concurrency:
        argv += ["--processes", "1", "--threads", str(concurrency)]
    if queues:
        argv += ["--queues", *queues]
    return argv


def pending(adapter: DramatiqAdapter, queues: Sequence[str], within: float) -> int:
    if adapter.kind == "redis":
        return _redis_pending(adapter, queues, within)
    return _rabbitmq_pending(adapter, queues)


def _redis_pending(adapter: DramatiqAdapter, queues: Sequence[str], within: float) -> int:
    client = adapter.broker.client  # type: ignore[attr-defined]
    horizon = current_millis() + within * 1000
    total = 0
    for queue in queues:
        # A message stays in "<queue>.msgs" from enqueue to ack: waiting and running alike.
        total += int(client.hlen(f"{adapter.namespace}:{queue}.msgs"))
        for _, data in client.hscan_iter(f"{adapter.namespace}:{dq_name(queue)}.msgs"):
            try:
                eta = Message.decode(data).options.get("eta") or 0
            except DecodeError:
                eta = 0  # unreadable: count it rather than stop early
            total += eta <= horizon
    return total


def _rabbitmq_pending(adapter: DramatiqAdapter, queues: Sequence[str]) -> int:
    """Ready messages in each queue and its delay queue. AMQP cannot count the messages a worker
    has prefetched (running, or delayed and held in its memory)."""
    import pika.exceptions

    total = 0
    for name in [n for queue in queues for n in (queue, dq_name(queue))]:
        channel = adapter.amqp_channel()
        try:
            total += channel.queue_declare(name, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:  # a queue nobody declared yet holds nothing
                raise
        finally:
            if channel.is_open:
                channel.close()
    return total


def __getattr__(backend: str) -> Any:
    """``dramatiq unijob.adapters.dramatiq_worker:NAME`` serves the configured backend ``NAME``
    (``unijob.adapters.dramatiq_backends:NAME`` too, for any name)."""
    if backend.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {backend!r}")
    return backend_broker(backend)


def backend_broker(backend: str) -> dramatiq.Broker:
    """The broker, with the actors declared, of the configured backend ``backend``; AttributeError
    (what Dramatiq's command line takes for "not here") when there is no such backend."""
    from unijob import config

    worker.load_jobs()  # a job module may configure the backends (unijob.contrib.django.bootstrap)
    if backend not in config.settings().backends:
        raise AttributeError(f"no unijob backend {backend!r} is configured")
    return setup(backend)


def _loaded_by_dramatiq() -> bool:
    """Whether the ``dramatiq`` command is loading this module as its broker module (its worker
    processes too, which inherit the command line)."""
    return bool(sys.argv) and "dramatiq" in sys.argv[0] and __name__ in sys.argv[1:]


if _loaded_by_dramatiq():  # the bare module form must leave a broker with the actors behind
    broker = setup()


def failed(adapter: DramatiqAdapter, queues: Sequence[str]) -> int:
    """Messages in the dead-letter queues of ``queues``."""
    if adapter.kind == "redis":
        client = adapter.broker.client  # type: ignore[attr-defined]
        return sum(int(client.zcard(f"{adapter.namespace}:{queue}.XQ")) for queue in queues)
    import pika.exceptions

    total = 0
    for queue in queues:
        channel = adapter.amqp_channel()
        try:
            total += channel.queue_declare(f"{queue}.XQ", passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
        finally:
            if channel.is_open:
                channel.close()
    return total
