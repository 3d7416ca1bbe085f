"""When a job is due, in the form each broker wants, and long delays as hops.

A broker that holds a delayed message unacknowledged (Celery's workers, Dramatiq's) cannot hold
it for long: Redis redelivers it after its visibility timeout, RabbitMQ closes the channel after
its consumer timeout, and a held message lives in a worker's memory. So an adapter with a
``max_hold`` never hands the broker a delay longer than that: the job travels in hops, each
delivery before its time re-enqueueing it (:func:`is_early`) until ``scheduled_at`` is reached.
"""

from __future__ import annotations

import datetime as dt
import math


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def due_at(scheduled_at: dt.datetime | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the broker should run a job scheduled at ``scheduled_at``: ``None`` when it is due
    now (no time, or a time that has passed)."""
    if scheduled_at is None or scheduled_at <= (now or utcnow()):
        return None
    return scheduled_at


def next_hop(
    scheduled_at: dt.datetime | None, max_hold: dt.timedelta | None, now: dt.datetime | None = None
) -> dt.datetime | None:
    """The time to hand the broker: the job's own, or at most ``max_hold`` from now."""
    now = now or utcnow()
    due = due_at(scheduled_at, now)
    if due is None or max_hold is None:
        return due
    return min(due, now + max_hold)


def is_early(scheduled_at: dt.datetime | None, now: dt.datetime | None = None) -> bool:
    """A delivery before the job's time: a hop, to be enqueued again rather than run."""
    return due_at(scheduled_at, now) is not None


def ceil_to_second(at: dt.datetime) -> dt.datetime:
    """Rounded up to a whole second, for brokers that store whole seconds (and would round down,
    running a job early)."""
    return dt.datetime.fromtimestamp(math.ceil(at.timestamp()), dt.timezone.utc)


def epoch_millis(at: dt.datetime) -> int:
    """Milliseconds since the epoch, rounded up (never early)."""
    return math.ceil(at.timestamp() * 1000)


AMQP_MAX_HOLD = dt.timedelta(minutes=15)
"""The longest delay handed to RabbitMQ: half its default ``consumer_timeout`` (30 min), after
which it closes the channel of a consumer that holds a message unacknowledged."""
