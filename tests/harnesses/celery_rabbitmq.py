"""Celery on RabbitMQ (vhost unijob_celery), run by the stock ``celery worker``."""

from __future__ import annotations

import subprocess

from tests.harness import Harness, ensure_rabbitmq_vhost
from tests.harnesses.celery_redis import URL as REDIS_URL
from tests.harnesses.celery_redis import celery_worker_argv

VHOST = "unijob_celery"
URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"


class CeleryRabbitmqHarness(Harness):
    name = "celery-rabbitmq"
    adapter = "celery"
    url = URL
    options = {"store": REDIS_URL}  # batch records need Redis; db 1 is Celery's (ids never collide)
    services = ("rabbitmq", "redis")  # redis holds the test results

    def worker_argv(self) -> list[str]:
        return celery_worker_argv()

    def reset_broker(self) -> None:
        # A fresh vhost: no stale messages, and no queue declared earlier without x-max-priority.
        subprocess.run(["rabbitmqctl", "delete_vhost", VHOST], capture_output=True, check=False)
        ensure_rabbitmq_vhost(VHOST)


HARNESS = CeleryRabbitmqHarness()
