"""The example shop's settings (examples/django_shop) with every backend at once, for
tests/frameworks/test_django.py: RQ is the default backend, and Celery, Dramatiq (both on Redis),
Huey (on SQLite) and Celery on RabbitMQ (its results in the Redis, with the ``store`` option) are
named ones, each with a Django Tasks backend of the same name. The Redis server, the RabbitMQ
vhost, the PostgreSQL database and the Huey file are the test's own, named by the environment.
"""

from __future__ import annotations

import os

from djshop.settings import *  # noqa: F403
from djshop.settings import DATABASES, UNIJOB

REDIS = os.environ["UNIJOB_DJANGO_REDIS"]  # redis://127.0.0.1:PORT, a redis-server of the test's own
RABBITMQ = os.environ["UNIJOB_DJANGO_RABBITMQ"]  # amqp://guest:guest@127.0.0.1:5672/VHOST, a vhost of its own
DATABASES["default"]["NAME"] = os.environ["UNIJOB_DJANGO_DATABASE"]

UNIJOB = {
    **UNIJOB,
    "url": f"{REDIS}/0",
    "imports": ["tests.frameworks.djshop_probes"],
    "backends": {
        "celery_redis": {"adapter": "celery", "url": f"{REDIS}/1"},
        "dramatiq_redis": {"adapter": "dramatiq", "url": f"{REDIS}/2"},
        "huey_sqlite": {"adapter": "huey", "options": {"path": os.environ["UNIJOB_DJANGO_HUEY"]}},
        "celery_rabbitmq": {"adapter": "celery", "url": RABBITMQ, "options": {"store": f"{REDIS}/3"}},
    },
}

TASKS = {
    alias: {
        "BACKEND": "unijob.contrib.django.tasks.UnijobBackend",
        "QUEUES": ["default", "reports", "held"],  # no worker serves "held"
        "OPTIONS": {"backend": alias},
    }
    for alias in ("default", "celery_redis", "dramatiq_redis", "huey_sqlite", "celery_rabbitmq")
}
