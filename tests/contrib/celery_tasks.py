"""An existing Celery codebase's tasks, as teams write them, adopted by unijob (imported by the workers too)."""

from __future__ import annotations

import os

from celery import Celery

from tests import jobs
from unijob.contrib.celery import adopt

app = Celery("legacy", broker=os.environ.get("LEGACY_BROKER", "memory://"), backend=os.environ.get("LEGACY_RESULTS") or None)


class Unavailable(Exception):
    pass


@adopt
@app.task
def add(token: str, a: int, b: int) -> int:
    jobs.record(token, "add", total=a + b)
    return a + b


@adopt
@app.task(bind=True, max_retries=2, default_retry_delay=0)
def bound(self, token: str, fail_times: int) -> str:  # type: ignore[no-untyped-def]
    jobs.record(token, "bound", id=self.request.id, retries=self.request.retries)
    if self.request.retries < fail_times:
        raise self.retry(exc=Unavailable(f"try {self.request.retries}"), countdown=0.5)
    return "done"


@adopt
@app.task(autoretry_for=(Unavailable,), retry_backoff=True, retry_backoff_max=1, retry_jitter=False, max_retries=3, queue="mail")
def flaky(token: str, fail_times: int) -> str:
    jobs.record(token, "flaky")
    if len(jobs.records(token)) <= fail_times:
        raise Unavailable("not yet")
    return "ok"


@adopt
@app.task(bind=True)
def traced(self, token: str) -> None:  # reads the call's custom headers, as Celery code does
    jobs.record(token, "traced", headers=self.request.headers, trace_id=getattr(self.request, "trace_id", None))
