"""Named constants that several layers share. A bare ``"default"`` never stands for either of them."""

from __future__ import annotations

from typing import Final

DEFAULT_BACKEND: Final = "default"
"""The name of the configured backend a job uses unless it names another (``backend=``)."""

DEFAULT_QUEUE: Final = "default"
"""The queue a job goes to unless it names another (``queue=``)."""

DEFAULT_ADAPTER: Final = "huey"
"""What the default backend runs on when nothing is configured: Huey on ``unijob.sqlite3``, no server."""

PRIORITY_MIN: Final = -100
PRIORITY_MAX: Final = 100
"""unijob's one priority scale (Django's): an integer from -100 to 100, larger runs sooner."""
