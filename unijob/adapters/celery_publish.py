"""Publishing for the Celery adapter: a Redis channel that keeps its client, and RabbitMQ
publisher confirms.

Checked against kombu 5.7.0 and py-amqp 5.3. :class:`RedisTransport` is kombu's Redis transport
whose channel reuses one redis client for publishing (``kombu.transport.redis.Channel.conn_or_acquire``
builds one per publish). :class:`Confirms` reads RabbitMQ's ``basic.ack``/``basic.nack`` on a
channel in confirm mode, as ``amqp.channel.Channel.basic_publish_confirm`` waits for them, but for
a whole run of publishes at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

from kombu.transport import pyamqp as kombu_pyamqp
from kombu.transport import redis as kombu_redis

CONNECT_TIMEOUT: Final = 2.0  # seconds, for producer connections: an unreachable broker fails fast
SOCKET_TIMEOUT: Final = 10.0  # a broker that vanishes without closing the socket


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


class RedisTransport(kombu_redis.Transport):
    Channel = _RedisChannel


class Confirms:
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
    def of(cls, channel: Any) -> Confirms:
        """The confirms of a pooled channel, put in confirm mode on first use."""
        confirms: Confirms | None = getattr(channel, "_unijob_confirms", None)
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
