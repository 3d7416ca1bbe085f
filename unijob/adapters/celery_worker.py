"""The module Celery's stock worker loads to run unijob jobs::

    celery -A unijob.adapters.celery_worker worker --queues default,mail

It reads unijob's configuration (``UNIJOB_*`` environment variables or ``[tool.unijob]``),
imports the job modules and registers each job as a Celery task named after it, on the Celery
app of the ``default`` backend (your own app when the ``celery_app`` option names one).
``-A unijob.adapters.celery_worker:NAME`` serves the celery backend configured as ``NAME``.
The app is built on first access, so importing this module does nothing by itself.
"""

from __future__ import annotations

from typing import Any

from unijob import config
from unijob.errors import ConfigurationError


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from unijob.adapters.celery import worker_app

    alias = config.DEFAULT_ALIAS if name in ("app", "celery") else name
    if alias not in config.settings().backends:
        raise AttributeError(f"{__name__} has no {name!r}: no unijob backend of that name is configured")
    try:
        return worker_app(alias)
    except ConfigurationError as exc:
        raise AttributeError(str(exc)) from exc
