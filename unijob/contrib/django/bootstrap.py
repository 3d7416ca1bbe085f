"""Loads the Django project in a stock worker: the first module of its ``imports`` setting.

``python manage.py unijob_worker`` puts it first in ``UNIJOB_IMPORTS`` for the worker it starts
(``celery``, ``rq``, ``dramatiq`` or ``huey_consumer``), with ``DJANGO_SETTINGS_MODULE``. Imported,
it runs ``django.setup()``: the apps and their models load, the app ``unijob.contrib.django``
configures unijob from the ``UNIJOB`` setting and imports every app's ``jobs`` (and ``tasks``)
module, and this process closes database connections around each job, as a worker should.
"""

from __future__ import annotations

import os

import django
from django.apps import apps

from unijob.contrib.django import mark_worker
from unijob.errors import ConfigurationError

if not os.environ.get("DJANGO_SETTINGS_MODULE"):
    raise ConfigurationError(
        "unijob.contrib.django.bootstrap loads a Django project, named by DJANGO_SETTINGS_MODULE, which is not set; "
        "start workers with 'python manage.py unijob_worker', which sets it"
    )

mark_worker()
if not apps.ready:
    django.setup()
