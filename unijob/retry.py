"""Retry and discard policies for class jobs (Active Job's ``retry_on`` / ``discard_on``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Callable
from typing import Final, Literal

polynomial: Final = "polynomial"
"""``wait=unijob.polynomial``: wait ``executions**4 + 2`` seconds, plus jitter (3s, 18s, 83s, ...)."""

Wait = float | dt.timedelta | Callable[[int], float | dt.timedelta] | Literal["polynomial"]


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    exceptions: tuple[type[BaseException], ...]
    wait: Wait = 3
    attempts: int = 5  # executions in all, the first one included
    jitter: float = 0.15  # up to this fraction of the wait is added at random

    @property
    def key(self) -> str:
        """Names this policy's counter in ``exception_executions`` (stable across deployments)."""
        return ",".join(f"{exc.__module__}.{exc.__qualname__}" for exc in self.exceptions)

    def matches(self, error: BaseException) -> bool:
        return isinstance(error, self.exceptions)

    def delay(self, executions: int) -> float:
        """Seconds to wait before the retry that follows failure number ``executions``."""
        wait = self.wait
        if wait == polynomial:
            base = float(executions**4 + 2)
        elif callable(wait):
            base = _seconds(wait(executions))
        else:
            base = _seconds(wait)
        return base + random.random() * base * self.jitter if self.jitter else base


class RetryJob(Exception):
    """Raised by a job to run again after ``wait`` seconds: a retry the job asks for itself (Celery's
    ``self.retry``), outside its ``retry_on`` policies. ``error``, when given, is why (logged and
    reported on the retry event)."""

    def __init__(self, wait: float = 0.0, error: BaseException | None = None) -> None:
        super().__init__(f"retry in {wait:g}s" + (f" after {type(error).__name__}: {error}" if error else ""))
        self.wait = wait
        self.error = error


class PostponeJob(Exception):
    """Raised before a job runs (by a middleware: a concurrency limit is reached) to run it again
    after ``wait`` seconds; the run does not count as an attempt."""

    def __init__(self, wait: float, why: str) -> None:
        super().__init__(f"postponed {wait:g}s: {why}")
        self.wait = wait
        self.why = why


def _seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def retry_on(
    *exceptions: type[BaseException],
    wait: Wait = 3,
    attempts: int = 5,
    jitter: float = 0.15,
) -> RetryPolicy:
    """Retry the job when it raises one of ``exceptions``, up to ``attempts`` executions in all.

    ``wait`` is seconds, a ``timedelta``, a function of the number of executions so far, or
    ``unijob.polynomial``. When attempts run out, the error is raised to the backend (which
    records a failure) and the job's ``after_discard`` runs.
    """
    if not exceptions:
        raise ValueError("retry_on needs at least one exception class")
    if attempts < 1:
        raise ValueError("retry_on attempts must be at least 1")
    if jitter < 0:
        raise ValueError("retry_on jitter cannot be negative")
    if wait != polynomial and not callable(wait) and _seconds(wait) < 0:
        raise ValueError("retry_on wait cannot be negative")
    return RetryPolicy(tuple(exceptions), wait, attempts, jitter)
