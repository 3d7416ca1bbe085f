"""Instrumentation: events that anyone can subscribe to. Logging is one subscriber among others.

Events: ``enqueue``, ``enqueue_all``, ``perform_start``, ``perform``, ``retry``, ``discard``.
Backends never log; the core emits events and :mod:`unijob.log` turns them into log lines.

    def on_perform(event: unijob.Event) -> None:
        statsd.timing(f"jobs.{event.job.name}", event.duration * 1000)

    unijob.events.subscribe("perform", on_perform)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from unijob.adapters.base import Adapter
    from unijob.core import BaseJob as Job

EventName = Literal["enqueue", "enqueue_all", "perform_start", "perform", "retry", "discard"]
EVENT_NAMES: Final = ("enqueue", "enqueue_all", "perform_start", "perform", "retry", "discard")

logger = logging.getLogger("unijob")


@dataclasses.dataclass(slots=True)  # not frozen: a frozen __init__ costs microseconds on every job
class Event:
    """What happened. ``job`` is set for single-job events, ``jobs`` for ``enqueue_all``."""

    name: EventName
    job: Job | None = None
    jobs: Sequence[Job] = ()
    adapter: Adapter | None = None
    error: BaseException | None = None
    duration: float | None = None  # seconds, for ``perform``
    wait: float | None = None  # seconds, for ``retry``
    outcome: Literal["success", "retry", "discard", "error"] | None = None  # for ``perform``


Subscriber = Callable[[Event], Any]
_subscribers: dict[str, list[Subscriber]] = {name: [] for name in EVENT_NAMES}


def subscribe(name: EventName, subscriber: Subscriber) -> Callable[[], None]:
    """Call ``subscriber(event)`` on every event called ``name``. Returns a function that unsubscribes."""
    if name not in _subscribers:
        raise ValueError(f"unknown event {name!r}; events are: {', '.join(EVENT_NAMES)}")
    _subscribers[name].append(subscriber)
    return lambda: _subscribers[name].remove(subscriber)


def emit(event: Event) -> None:
    for subscriber in tuple(_subscribers[event.name]):
        try:
            subscriber(event)
        except Exception:  # a broken subscriber must not change what happens to a job
            logger.exception("unijob event subscriber %r failed on %s", subscriber, event.name)


def has_subscribers(name: EventName) -> bool:
    return bool(_subscribers[name])
