"""Settings of the example shop: orders in PostgreSQL, jobs and Django Tasks on RQ (Redis).

Run from examples/django_shop: ``python manage.py migrate``, then ``python manage.py unijob_worker``.
The database and Redis are read from the environment (``DJSHOP_DATABASE``, ``DJSHOP_REDIS_URL``).
"""

from __future__ import annotations

import os

import django

SECRET_KEY = "django-shop-example-not-a-secret"
DEBUG = True
ALLOWED_HOSTS: list[str] = []
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "unijob.contrib.django",  # configures unijob from UNIJOB, loads each app's jobs.py and tasks.py
    "djshop.orders",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.insert(0, "django_tasks")  # the django-tasks backport of django.tasks

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DJSHOP_DATABASE", "djshop"),
        "USER": os.environ.get("DJSHOP_DATABASE_USER", "postgres"),
        "HOST": os.environ.get("DJSHOP_DATABASE_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DJSHOP_DATABASE_PORT", "5432"),
    }
}

# unijob: the keys of [tool.unijob]. The default backend runs on RQ; results are kept for every
# job (unijob.find), which the Tasks backend needs for get_result.
UNIJOB = {
    "adapter": "rq",
    "url": os.environ.get("DJSHOP_REDIS_URL", "redis://localhost:6379/0"),
    "results": True,
}

# Django Tasks (@task functions) on unijob's default backend.
TASKS = {
    "default": {
        "BACKEND": "unijob.contrib.django.tasks.UnijobBackend",
        "QUEUES": ["default", "reports"],
        "OPTIONS": {"backend": "default"},
    }
}

# The Tasks framework logs each task's start and end where it runs, in the worker.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_tasks": {"handlers": ["console"], "level": "INFO", "propagate": False},  # the backport
        "django.tasks": {"handlers": ["console"], "level": "INFO", "propagate": False},  # Django 6.0
        "unijob": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
