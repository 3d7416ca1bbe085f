"""Enqueue options: what ``job.set(...)`` takes, kept apart from the job's own arguments.

Each option is declared once, here: :class:`EnqueueOptions` types ``set(**options)`` for mypy, and
:class:`JobOptions` holds the checked values. :func:`make_options` checks every value and names the
job and the option in its error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any, Final, TypedDict

from unijob.constants import PRIORITY_MAX, PRIORITY_MIN

MAX_WAIT: Final = dt.timedelta(days=36500)  # a delay beyond a century is a unit mistake, not a plan


class EnqueueOptions(TypedDict, total=False):
    """The keywords of ``job.set(...)``."""

    wait: dt.timedelta | float | None  # run after this long (a timedelta, or seconds)
    wait_until: dt.datetime | None  # run at this time (a naive datetime is local time)
    queue: str | None
    priority: int | None  # -100..100, larger runs sooner
    backend: str | None  # the name of a configured backend
    after_commit: bool | None  # wait for the open database transaction to commit (unijob.transactions)
    timeout: dt.timedelta | float | None  # a hard time limit: the job is stopped and fails after this long
    expires: dt.timedelta | float | dt.datetime | None  # discarded, never run, if not started by then
    unique: bool | None  # not enqueued while a job of the same name and arguments is enqueued or running
    unique_key: str | None  # the same, for jobs sharing this key
    concurrency_key: str | None  # at most concurrency_limit jobs with this key run at once, everywhere
    concurrency_limit: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class JobOptions:
    """Checked enqueue options; ``None`` leaves the job's own default."""

    wait: dt.timedelta | None = None
    wait_until: dt.datetime | None = None
    queue: str | None = None
    priority: int | None = None
    backend: str | None = None
    after_commit: bool | None = None
    timeout: dt.timedelta | None = None
    expires: dt.timedelta | dt.datetime | None = None
    unique: bool | None = None
    unique_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None

    def merged(self, newer: JobOptions) -> JobOptions:
        """These options with ``newer``'s on top. ``wait`` and ``wait_until`` replace each other."""
        changes = {f.name: getattr(newer, f.name) for f in dataclasses.fields(newer) if getattr(newer, f.name) is not None}
        if "wait" in changes or "wait_until" in changes:
            changes.setdefault("wait", None)
            changes.setdefault("wait_until", None)
        return dataclasses.replace(self, **changes)


OPTION_NAMES: Final = tuple(field.name for field in dataclasses.fields(JobOptions))


def make_options(owner: str, options: dict[str, Any]) -> JobOptions:
    """Check ``set()`` keywords for the job named ``owner``; raise ``ValueError`` or ``TypeError``
    naming the job and the option."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"{owner}: unknown option(s) {', '.join(unknown)} for set(); the options are: {', '.join(OPTION_NAMES)}")
    wait, wait_until = options.get("wait"), options.get("wait_until")
    if wait is not None and wait_until is not None:
        raise ValueError(f"{owner}: give wait or wait_until, not both")
    return JobOptions(
        wait=None if wait is None else check_wait(owner, wait),
        wait_until=None if wait_until is None else check_wait_until(owner, wait_until),
        queue=None if options.get("queue") is None else check_queue(owner, options["queue"]),
        priority=check_priority(owner, options.get("priority")),
        backend=None if options.get("backend") is None else check_name(owner, "backend", options["backend"]),
        after_commit=_check_flag(owner, "after_commit", options.get("after_commit")),
        timeout=None if options.get("timeout") is None else check_duration(owner, "timeout", options["timeout"]),
        expires=None if options.get("expires") is None else check_expires(owner, options["expires"]),
        unique=_check_flag(owner, "unique", options.get("unique")),
        unique_key=None if options.get("unique_key") is None else check_name(owner, "unique_key", options["unique_key"]),
        concurrency_key=None
        if options.get("concurrency_key") is None
        else check_name(owner, "concurrency_key", options["concurrency_key"]),
        concurrency_limit=check_limit(owner, options.get("concurrency_limit")),
    )


def check_duration(owner: str, option: str, value: object) -> dt.timedelta:
    """A positive duration: a timedelta or a number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, dt.timedelta)):
        raise ValueError(f"{owner}: {option} must be a timedelta or a number of seconds, not {value!r}")
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_WAIT.total_seconds():
        raise ValueError(f"{owner}: {option} must be more than 0 seconds and less than a century, not {value!r}")
    return dt.timedelta(seconds=seconds)


def check_expires(owner: str, value: object) -> dt.timedelta | dt.datetime:
    if isinstance(value, dt.datetime):
        return check_wait_until(owner, value)
    return check_duration(owner, "expires", value)


def check_limit(owner: str, value: object) -> int | None:
    if value is not None and (type(value) is not int or value < 1):
        raise ValueError(f"{owner}: concurrency_limit must be a whole number of at least 1, not {value!r}")
    return value


def _check_flag(owner: str, option: str, value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{owner}: {option} must be True or False, not {value!r}")
    return value


def check_wait(owner: str, wait: object) -> dt.timedelta:
    if isinstance(wait, dt.timedelta):
        delay = wait
    elif isinstance(wait, (int, float)) and not isinstance(wait, bool):
        if not math.isfinite(wait):
            raise ValueError(f"{owner}: wait must be a finite number of seconds, not {wait!r}")
        if abs(wait) > MAX_WAIT.total_seconds():
            raise ValueError(
                f"{owner}: wait={wait!r} seconds is more than {MAX_WAIT.days // 365} years; give seconds or a timedelta"
            )
        delay = dt.timedelta(seconds=wait)
    else:
        raise ValueError(f"{owner}: wait must be a timedelta or a number of seconds, not {wait!r}")
    if delay < dt.timedelta(0):
        raise ValueError(f"{owner}: wait cannot be negative, got {_describe(wait)}")
    if delay > MAX_WAIT:
        raise ValueError(f"{owner}: wait={_describe(wait)} is more than {MAX_WAIT.days // 365} years")
    return delay


def check_wait_until(owner: str, when: object) -> dt.datetime:
    if not isinstance(when, dt.datetime):
        raise ValueError(f"{owner}: wait_until must be a datetime, not {when!r}")
    try:
        return when.astimezone(dt.timezone.utc)  # a naive datetime is local time
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"{owner}: wait_until={when!r} cannot be expressed in UTC: {exc}") from None


def check_queue(owner: str, queue: object) -> str:
    return check_name(owner, "queue", queue)


def check_name(owner: str, option: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{owner}: {option} must be a non-empty string, not {value!r}")
    return value


def check_priority(owner: str, priority: object) -> int | None:
    if priority is None:
        return None
    if type(priority) is not int or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(
            f"{owner}: priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX} (larger runs sooner), not {priority!r}"
        )
    return priority


def _describe(wait: object) -> str:
    if isinstance(wait, dt.timedelta):
        return f"{wait.total_seconds():g} seconds"
    return f"{wait!r} seconds"
