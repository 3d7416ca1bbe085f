"""What every native worker needs before it runs unijob jobs: the application's job modules."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from unijob import config, registry
from unijob.job import Job

_loaded: set[str] = set()


def load_jobs(modules: Sequence[str] | None = None) -> dict[str, type[Job]]:
    """Import the configured job modules (the ``imports`` setting) and return the registry.

    Stock workers call this once at start; it is idempotent. The working directory is put on
    ``sys.path`` first, as ``celery -A`` and ``rq worker`` do, so ``imports=["app.jobs"]`` works.
    """
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    for name in modules if modules is not None else config.settings().imports:
        if name not in _loaded:
            importlib.import_module(name)
            _loaded.add(name)
    return registry.registered()


def queues_of(jobs: dict[str, type[Job]]) -> list[str]:
    """Every queue a registered job names by default, ``default`` first."""
    names = {"default"} | {job.queue for job in jobs.values()}
    return ["default", *sorted(names - {"default"})]
