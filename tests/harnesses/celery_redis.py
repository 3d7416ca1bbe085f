"""Celery on Redis db 1, run by the stock ``celery worker`` loading unijob's worker module."""

from __future__ import annotations

import uuid

import redis

from tests.harness import Harness, python_bin

URL = "redis://127.0.0.1:6379/1"


def celery_worker_argv() -> list[str]:
    # docs/backends/celery.md documents this command. Each worker gets its own node name: two
    # workers named alike on one host clash on RabbitMQ (the exclusive pidbox queue).
    return [
        python_bin("celery"), "-A", "unijob.adapters.celery_worker", "worker",
        "--queues", "default,mail", "--concurrency", "2", "--loglevel", "INFO",
        "--hostname", f"unijob-{uuid.uuid4().hex[:8]}@%h",
    ]  # fmt: skip


class CeleryRedisHarness(Harness):
    name = "celery-redis"
    adapter = "celery"
    url = URL

    def worker_argv(self) -> list[str]:
        return celery_worker_argv()

    def reset_broker(self) -> None:
        redis.Redis.from_url(self.url).flushdb()


HARNESS = CeleryRedisHarness()
