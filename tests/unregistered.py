"""A function that is importable but never registered as a job. A worker that imported and
called whatever a payload names would run it; unijob's workers must refuse it."""

from __future__ import annotations

from tests.jobs import record


def not_a_job(token: str) -> None:
    record(token, "unregistered function ran")
