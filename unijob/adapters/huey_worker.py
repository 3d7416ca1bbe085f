"""The Huey instance that the stock consumer loads::

    huey_consumer unijob.adapters.huey_worker.huey -k thread -w 2 -m 1 -g TERM

Importing this module imports the configured job modules (``imports`` setting, or ``UNIJOB_IMPORTS``)
and registers every job as a Huey task named after the job, on the Huey instance the ``default``
backend's configuration describes (``UNIJOB_BACKEND=huey``, ``UNIJOB_URL``, ``UNIJOB_OPTIONS``), or the
backend named by ``UNIJOB_HUEY_BACKEND``. Nothing else is registered: a message naming any other task
is refused by Huey's registry, and a payload that is not unijob's JSON is never unpickled.
"""

from __future__ import annotations

import os

from unijob import config
from unijob.adapters.huey import HueyAdapter, JobHuey
from unijob.errors import ConfigurationError
from unijob.worker import load_jobs


def build(alias: str | None = None) -> JobHuey:
    jobs = load_jobs()
    alias = alias or os.environ.get("UNIJOB_HUEY_BACKEND") or config.DEFAULT_ALIAS
    adapter = config.get_adapter(alias)
    if not isinstance(adapter, HueyAdapter):
        raise ConfigurationError(
            f"huey_consumer needs a huey backend, but backend {alias!r} is {adapter.name!r}; set UNIJOB_BACKEND=huey"
        )
    return adapter.consumer_huey(jobs)


huey = build()
