"""Recurring jobs: a cron expression or an interval, enqueued by ``unijob scheduler``.

    unijob.recurring("0 3 * * *", cleanup)                       # every day at 03:00 UTC
    unijob.recurring(dt.timedelta(minutes=10), sync, args=["north"], name="sync-north")

or in ``pyproject.toml``::

    [tool.unijob.recurring.cleanup]
    job = "app.jobs.cleanup"
    cron = "0 3 * * *"          # or: every = 600 (seconds)
    timezone = "Europe/Paris"

The scheduler enqueues exactly one job per tick, however many schedulers run (one per host, for
high availability): each tick is claimed once, with a key in the backend's own store (the store of
unique jobs), before its job is enqueued. A tick that passed while no scheduler ran is not made up.
A job learns its tick from its ``scheduled_at`` (GoodJob's ``cron_at``).
Celery's ``beat_schedule`` converts with :func:`from_beat_schedule`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final
from zoneinfo import ZoneInfo

from croniter import croniter

from unijob import config
from unijob.core import BaseJob, job_class_of
from unijob.enqueuing import enqueue
from unijob.errors import ConfigurationError
from unijob.limits import store_for
from unijob.options import make_options

logger = logging.getLogger("unijob")
TICK_SECONDS: Final = 1.0  # how often the scheduler looks at the clock
CLAIM_FOR: Final = 24 * 3600.0  # a tick's claim outlives any scheduler that could still see it
MAX_TICKS: Final = 100  # a scheduler that was paused makes up at most this many ticks per job


@dataclasses.dataclass(frozen=True)
class Recurring:
    """One recurring job: ``cron`` (five fields) or ``every`` (seconds), in ``timezone``."""

    name: str
    job: str  # the registered job name
    cron: str | None = None
    every: float | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    timezone: str = "UTC"
    enabled: bool = True

    def ticks(self, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
        """The ticks in ``(after, until]``, oldest first."""
        if self.every is not None:  # counted from the epoch, so every scheduler sees the same ticks
            first, last = int(after.timestamp() // self.every) + 1, int(until.timestamp() // self.every)
            count = range(max(first, last - MAX_TICKS + 1), last + 1)
            return [dt.datetime.fromtimestamp(n * self.every, dt.timezone.utc) for n in count]
        assert self.cron is not None
        found: list[dt.datetime] = []
        series = croniter(self.cron, after.astimezone(ZoneInfo(self.timezone)))
        while len(found) < MAX_TICKS:
            tick: dt.datetime = series.get_next(dt.datetime)
            if tick > until:
                break
            found.append(tick.astimezone(dt.timezone.utc))
        return found


_registered: dict[str, Recurring] = {}


def recurring(
    schedule: str | dt.timedelta | float,
    job: object,
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timezone: str = "UTC",
    enabled: bool = True,
) -> Recurring:
    """Run ``job`` (a unijob job) on ``schedule``: a cron expression, or an interval (a timedelta or
    seconds). ``name`` (the job's name by default) identifies the schedule across schedulers."""
    job_class = job_class_of(job)
    entry = _entry(name or job_class.name, job_class.name, schedule, args, kwargs, queue, priority, timezone, enabled)
    _registered[entry.name] = entry
    return entry


def _entry(
    name: str,
    job: str,
    schedule: str | dt.timedelta | float,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    queue: str | None,
    priority: int | None,
    timezone: str,
    enabled: bool,
) -> Recurring:
    try:
        ZoneInfo(timezone)
    except Exception as exc:
        raise ConfigurationError(f"recurring {name!r}: unknown timezone {timezone!r}") from exc
    try:
        make_options(f"recurring {name!r}", {"queue": queue, "priority": priority})  # the same checks as set()
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    common: dict[str, Any] = {"args": tuple(args), "kwargs": dict(kwargs or {}), "queue": queue, "priority": priority}
    common.update(timezone=timezone, enabled=enabled)
    if isinstance(schedule, str):
        if not croniter.is_valid(schedule):
            raise ConfigurationError(f"recurring {name!r}: {schedule!r} is not a cron expression (five fields: m h dom mon dow)")
        return Recurring(name, job, cron=schedule, **common)
    seconds = schedule.total_seconds() if isinstance(schedule, dt.timedelta) else float(schedule)
    if not seconds >= 1:
        raise ConfigurationError(f"recurring {name!r}: an interval is at least a second, not {schedule!r}")
    return Recurring(name, job, every=seconds, **common)


def schedules() -> dict[str, Recurring]:
    """Every recurring job: those of the ``recurring`` setting, then those registered in code."""
    found: dict[str, Recurring] = {}
    for name, spec in config.settings().recurring.items():
        spec = dict(spec)
        unknown = set(spec) - {"job", "cron", "every", "args", "kwargs", "queue", "priority", "timezone", "enabled"}
        if unknown or "job" not in spec or ("cron" in spec) == ("every" in spec):
            raise ConfigurationError(
                f"recurring {name!r}: give job and one of cron or every (and args, kwargs, queue, priority, timezone, "
                f"enabled){'; unknown: ' + ', '.join(sorted(unknown)) if unknown else ''}"
            )
        schedule = spec.pop("cron", None) or spec.pop("every")
        found[name] = _entry(
            name,
            spec.pop("job"),
            schedule,
            spec.get("args", ()),
            spec.get("kwargs"),
            spec.get("queue"),
            spec.get("priority"),
            spec.get("timezone", "UTC"),
            spec.get("enabled", True),
        )
    return {**found, **_registered}


def from_beat_schedule(beat_schedule: Mapping[str, Mapping[str, Any]], *, timezone: str = "UTC") -> list[Recurring]:
    """Register Celery's ``beat_schedule`` entries (a ``crontab``, a ``timedelta`` or seconds; their
    ``task`` a unijob job or an adopted task) as recurring jobs; returns them. ``timezone`` is the
    one beat read the crontabs in: the app's ``timezone`` setting (UTC by default)."""
    entries = []
    for name, spec in beat_schedule.items():
        schedule = spec["schedule"]
        if hasattr(schedule, "_orig_minute"):  # celery.schedules.crontab
            schedule = " ".join(
                str(getattr(schedule, f"_orig_{part}"))
                for part in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
            )
        elif hasattr(schedule, "run_every"):  # celery.schedules.schedule
            schedule = schedule.run_every
        options = spec.get("options") or {}
        unknown = set(options) - {"queue", "priority"}
        if unknown:
            raise ConfigurationError(f"beat entry {name!r}: options {', '.join(sorted(unknown))} have no unijob equivalent")
        entries.append(
            recurring(
                schedule,
                spec["task"],
                args=spec.get("args", ()),
                kwargs=spec.get("kwargs"),
                name=name,
                queue=options.get("queue"),
                priority=options.get("priority"),
                timezone=timezone,
            )
        )
    return entries


def enqueue_due(
    after: dt.datetime, until: dt.datetime, backend: str | None = None, owed: dict[str, dt.datetime] | None = None
) -> list[BaseJob]:
    """Enqueue the jobs of the ticks in ``(after, until]`` that no other scheduler claimed first.

    A tick whose enqueue failed (the broker is down) is released for the other schedulers and kept
    in ``owed``: it is retried on the next call, until a newer tick of the same job supersedes it."""
    owed = {} if owed is None else owed
    enqueued = []
    for entry in schedules().values():
        if not entry.enabled:
            owed.pop(entry.name, None)
            continue
        ticks = entry.ticks(after, until)
        missed = owed.pop(entry.name, None)
        if missed is not None and ticks:
            logger.warning("Skipped the %s tick of %s: its enqueue failed and a newer tick came", missed.isoformat(), entry.name)
        elif missed is not None:
            ticks = [missed]
        for tick in ticks:
            try:
                job = _claimed_job(entry, tick, backend)
                if job is None:
                    continue  # another scheduler enqueued this tick
            except Exception as error:  # the backend's store is unreachable: the tick stays owed
                _owe(owed, entry, tick, error)
                continue
            try:
                enqueue(job)
            except Exception as error:
                with contextlib.suppress(Exception):  # free the tick for another scheduler
                    store_for(job.backend).release(_claim_key(entry, tick), job.job_id)
                _owe(owed, entry, tick, error)
                continue
            logger.info("Enqueued %s (Job ID: %s) for its %s tick", entry.name, job.job_id, tick.isoformat())
            enqueued.append(job)
    return enqueued


def _owe(owed: dict[str, dt.datetime], entry: Recurring, tick: dt.datetime, error: BaseException) -> None:
    owed[entry.name] = tick
    logger.error("Could not enqueue %s for its %s tick (retried next): %s", entry.name, tick.isoformat(), error)


def _claim_key(entry: Recurring, tick: dt.datetime) -> str:
    return f"recurring:{entry.name}:{tick.isoformat()}"


def _claimed_job(entry: Recurring, tick: dt.datetime, backend: str | None) -> BaseJob | None:
    """The tick's job, if this scheduler claimed the tick; ``None`` if another one did."""
    job = job_class_of(entry.job)(*entry.args, **entry.kwargs)
    options = {"queue": entry.queue, "priority": entry.priority, "backend": backend, "wait_until": tick}
    job.apply(make_options(entry.name, options))  # a past wait_until: due now, its scheduled_at tells its tick
    taken = store_for(job.backend).claim(_claim_key(entry, tick), job.job_id, CLAIM_FOR)
    return job if taken is None else None


def run(stop: threading.Event | None = None, *, backend: str | None = None) -> None:
    """The scheduler loop (``unijob scheduler``): every second, enqueue what came due since."""
    stop = stop or threading.Event()
    last = dt.datetime.now(dt.timezone.utc)
    owed: dict[str, dt.datetime] = {}
    entries = schedules()
    logger.info("unijob scheduler: %d recurring job(s): %s", len(entries), ", ".join(sorted(entries)) or "none")
    while not stop.wait(TICK_SECONDS):
        current = dt.datetime.now(dt.timezone.utc)
        enqueue_due(last, current, backend, owed)
        last = current


def next_tick(entry: Recurring, after: dt.datetime) -> dt.datetime | None:
    """The first tick after ``after`` (within a year)."""
    if entry.every is not None:
        return dt.datetime.fromtimestamp((int(after.timestamp() // entry.every) + 1) * entry.every, dt.timezone.utc)
    found = entry.ticks(after, after + dt.timedelta(days=366))
    return found[0] if found else None
