"""Celery beat runs unijob's recurring jobs: keep the ``celery beat`` process you deploy.

    celery -A proj beat -S unijob.contrib.celery_beat:Scheduler

Beat goes on running its own ``beat_schedule`` entries as before; alongside them, every second, it
enqueues the unijob recurring jobs that came due (``unijob.recurring`` and the ``recurring``
setting), exactly once per tick however many beat processes (or ``unijob scheduler``s) run, as
``unijob scheduler`` does. To keep another scheduler class (django-celery-beat's), mix
:class:`RecurringJobs` in front of it::

    class Scheduler(RecurringJobs, DatabaseScheduler): ...
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from celery import beat

from unijob import worker
from unijob.recurring import TICK_SECONDS, enqueue_due, schedules


class RecurringJobs:
    """A beat scheduler mixin: each ``tick`` also enqueues the unijob recurring jobs now due."""

    _last_run: dt.datetime
    _next_check = 0.0
    _owed: dict[str, dt.datetime]

    def setup_schedule(self) -> None:
        super().setup_schedule()  # type: ignore[misc]
        worker.load_jobs()
        self._last_run, self._owed = dt.datetime.now(dt.timezone.utc), {}
        beat.logger.info("beat: %d unijob recurring job(s): %s", len(schedules()), ", ".join(sorted(schedules())) or "none")

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if time.monotonic() >= self._next_check:
            now = dt.datetime.now(dt.timezone.utc)
            enqueue_due(self._last_run, now, owed=self._owed)
            self._last_run, self._next_check = now, time.monotonic() + TICK_SECONDS
        wait: float = super().tick(*args, **kwargs)  # type: ignore[misc]
        return min(wait, max(self._next_check - time.monotonic(), 0.0))


class Scheduler(RecurringJobs, beat.PersistentScheduler):  # type: ignore[misc]
    """Celery's default beat scheduler (its state in ``celerybeat-schedule``), with unijob's recurring jobs."""
