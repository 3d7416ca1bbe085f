"""unijob's one priority scale (-100..100, larger runs sooner) on each broker's native scale."""

from __future__ import annotations

from unijob.constants import PRIORITY_MAX, PRIORITY_MIN

_SPAN = PRIORITY_MAX - PRIORITY_MIN


def scale(priority: int, levels: int) -> int:
    """``priority`` on a native scale from 0 to ``levels`` where larger runs sooner (RabbitMQ's
    ``x-max-priority``, Huey), rounded half up: -100 is 0, 100 is ``levels``."""
    return ((priority - PRIORITY_MIN) * levels + _SPAN // 2) // _SPAN


def scale_lowest_first(priority: int, levels: int) -> int:
    """``priority`` on a native scale from 0 to ``levels`` where 0 runs first (kombu's Redis
    transport): 100 is 0, -100 is ``levels``."""
    return scale(-priority, levels)
