"""Dramatiq bulk enqueue: a chunk in one Redis MULTI/EXEC, or in one AMQP transaction.

Checked against dramatiq 2.2.1. :func:`redis_bulk` writes what ``RedisBroker.enqueue`` and its
``dispatch.lua`` script (command ``enqueue``) write; :func:`rabbitmq_bulk` publishes what
``RabbitmqBroker.enqueue`` publishes (delayed messages to the delay queue with their ``eta``);
:func:`encode_fields` is ``Message.encode`` for the default JSON encoder.
tests/backends/test_dramatiq.py compares the messages with Dramatiq's own.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Final

from dramatiq import Message
from dramatiq.common import current_millis, dq_name, q_name
from dramatiq.encoder import JSONEncoder
from dramatiq.errors import DecodeError
from dramatiq.message import get_encoder

from unijob.adapters.base import EnqueueOutcome

if TYPE_CHECKING:
    from unijob.adapters.dramatiq import DramatiqAdapter

META_OPTION: Final = "unijob"  # the message option that carries unijob's metadata
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


def redis_bulk(adapter: DramatiqAdapter, items: list[tuple[dict[str, Any], int | None]]) -> list[EnqueueOutcome]:
    """Write what Dramatiq's enqueue script (``dispatch.lua``, command ``enqueue``) writes, for a
    whole chunk in one MULTI/EXEC: the broker's heartbeat (``ZADD <ns>:__heartbeats__``), then per
    queue one ``HSET <ns>:<queue>.msgs`` of every message (redis message id -> encoded message)
    and one ``RPUSH <ns>:<queue>`` of their ids, in order. The stock worker's fetch script reads
    them like any other message. The enqueue middleware hooks run around it, per message."""
    broker: Any = adapter.broker
    namespace = broker.namespace
    before, after = adapter.enqueue_hooks(broker)
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
    except adapter.errors() as exc:
        error = adapter.enqueue_error_for(exc)
        return [EnqueueOutcome(error=error) for _ in items]
    outcomes: list[EnqueueOutcome | None] = [None] * len(items)
    for position, (indexes, _, _) in enumerate(by_queue.values()):
        stored, pushed = results[1 + 2 * position], results[2 + 2 * position]
        failure = next((result for result in (pushed, stored) if isinstance(result, Exception)), None)
        failed = adapter.enqueue_error_for(failure) if failure is not None else None
        for index in indexes:
            fields, delay = items[index]
            if failed is not None:
                outcomes[index] = EnqueueOutcome(error=failed)
                continue
            if after:
                broker.emit_after("enqueue", messages[index], delay)
            outcomes[index] = EnqueueOutcome(fields["message_id"])
    return [outcome for outcome in outcomes if outcome is not None]


def rabbitmq_bulk(adapter: DramatiqAdapter, items: list[tuple[dict[str, Any], int | None]]) -> list[EnqueueOutcome]:
    import pika
    import pika.exceptions

    broker: Any = adapter.broker
    returned: set[str] = set()
    sent: list[tuple[Message[Any], int | None]] = []
    try:
        for queue_name in {fields["queue_name"] for fields, _ in items}:
            broker.declare_queue(queue_name, ensure=True)
        channel = adapter.amqp_channel()
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
    except adapter.errors() as exc:
        if isinstance(exc, pika.exceptions.AMQPError):
            del broker.connection  # the next call reconnects
        error = adapter.enqueue_error_for(exc)
        return [EnqueueOutcome(error=error) for _ in items]
    outcomes = []
    for message, delay in sent:
        if message.message_id in returned:
            broker.queues_pending.add(q_name(message.queue_name))  # redeclared on the next enqueue
            outcomes.append(EnqueueOutcome(error=adapter.enqueue_error_for(LookupError(f"queue {message.queue_name!r} is gone"))))
        else:
            broker.emit_after("enqueue", message, delay)
            outcomes.append(EnqueueOutcome(message.message_id))
    return outcomes


def _message_id(body: bytes) -> str:
    try:
        return str(Message.decode(body).message_id)
    except DecodeError:
        return ""
