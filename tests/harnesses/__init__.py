"""Contract backends by name. Each module defines ``HARNESS``, an instance of tests.harness.Harness."""

from __future__ import annotations

import importlib

from tests.harness import Harness

MODULES = {
    "inline": "tests.harnesses.inline",
    "test": "tests.harnesses.test_adapter",
    "huey-sqlite": "tests.harnesses.huey_sqlite",
    "celery-redis": "tests.harnesses.celery_redis",
    "celery-rabbitmq": "tests.harnesses.celery_rabbitmq",
    "rq": "tests.harnesses.rq",
    "dramatiq-redis": "tests.harnesses.dramatiq_redis",
    "dramatiq-rabbitmq": "tests.harnesses.dramatiq_rabbitmq",
}


def load(name: str) -> Harness:
    harness: Harness = importlib.import_module(MODULES[name]).HARNESS
    return harness
