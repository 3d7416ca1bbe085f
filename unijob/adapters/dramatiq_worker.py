"""The broker module for Dramatiq's stock command::

    dramatiq unijob.adapters.dramatiq_worker --processes 1 --threads 4

Importing it imports the configured job modules (``unijob.worker.load_jobs``) and declares one
actor per registered job, named after the job, on the broker of the ``default`` unijob backend,
which becomes Dramatiq's global broker. Another configured backend is served by naming its alias:
``dramatiq unijob.adapters.dramatiq_worker:reports``. Queues given with ``--queues`` are declared
too, so the worker consumes them even when no job uses them by default.
"""

from __future__ import annotations

import sys
from typing import Any

import dramatiq
from dramatiq import Broker

from unijob import config
from unijob.adapters import adapter_class
from unijob.adapters.dramatiq import DramatiqAdapter, command_line_queues
from unijob.worker import load_jobs


def setup(alias: str = config.DEFAULT_ALIAS) -> Broker:
    """Declare the registered jobs as actors on the broker of backend ``alias``; make it global."""
    adapter = config.get_adapter(alias)
    if not isinstance(adapter, DramatiqAdapter):
        raise ImportError(f"unijob backend {alias!r} is {adapter.name!r}, not dramatiq; check UNIJOB_BACKEND or [tool.unijob]")
    broker = adapter.worker_broker(load_jobs(), command_line_queues(sys.argv))
    dramatiq.set_broker(broker)
    return broker


def __getattr__(alias: str) -> Any:
    """``dramatiq unijob.adapters.dramatiq_worker:ALIAS`` serves the configured backend ``ALIAS``."""
    if alias.startswith("__") or alias not in config.settings().backends:
        raise AttributeError(f"module {__name__!r} has no attribute {alias!r}")
    return setup(alias)


_default = config.settings().backends.get(config.DEFAULT_ALIAS)
if _default is not None and issubclass(adapter_class(_default.backend), DramatiqAdapter):
    broker = setup()
elif __name__ in sys.argv:  # the bare module would leave Dramatiq's default broker, with no actors
    raise ImportError(f"the default unijob backend is not dramatiq: name a dramatiq backend, as in {__name__}:ALIAS")
