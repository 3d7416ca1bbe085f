"""Dramatiq on RabbitMQ (vhost ``unijob_bench_dramatiq``), natively and through unijob.

The same as :mod:`benchmarks.targets.dramatiq_redis` on another broker. The native
``RabbitmqBroker`` is configured like the one unijob's adapter builds (publisher confirms, so that a
send returns once RabbitMQ has the message, and ``x-max-priority: 10`` queues, so that both declare
the queue alike).
"""

from __future__ import annotations

import subprocess
from typing import Any

import pika
import pika.exceptions
from dramatiq import Broker

from benchmarks.targets.dramatiq_redis import QUEUE, DramatiqTarget, worker_setup

VHOST = "unijob_bench_dramatiq"
URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
MAX_PRIORITY = 10  # unijob's default max_priority

__all__ = ["TARGET", "worker_setup"]


class DramatiqRabbitmqTarget(DramatiqTarget):
    def __init__(self) -> None:
        super().__init__("dramatiq-rabbitmq", URL, __name__)
        self._vhost_ready = False

    def native_broker(self) -> Broker:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        self._ensure_vhost()
        return RabbitmqBroker(url=self.url, confirm_delivery=True, max_priority=MAX_PRIORITY)

    def configuration(self) -> dict[str, Any]:
        self._ensure_vhost()
        return super().configuration()

    def _ensure_vhost(self) -> None:
        if not self._vhost_ready:
            subprocess.run(["rabbitmqctl", "add_vhost", VHOST], capture_output=True, check=False)
            permissions = ["rabbitmqctl", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"]
            subprocess.run(permissions, capture_output=True, check=True)
            self._vhost_ready = True

    def flush(self) -> None:
        self._ensure_vhost()
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            for name in (QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ"):
                channel = connection.channel()
                try:
                    channel.queue_purge(name)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != 404:  # not declared yet: nothing to purge
                        raise
                finally:
                    if channel.is_open:
                        channel.close()
        finally:
            connection.close()


TARGET = DramatiqRabbitmqTarget()
