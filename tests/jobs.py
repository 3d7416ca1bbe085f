"""Jobs used by the test suite, in the test process and in the stock workers.

Each job records what it saw into Redis (db 15, list ``unijob-test:<token>``), so a test can
observe jobs that ran in another process. Workers import this module via ``imports``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

import unijob
from unijob import serializers

RESULTS_URL = os.environ.get("UNIJOB_TEST_RESULTS_URL", "redis://127.0.0.1:6379/15")
_client: redis.Redis | None = None


def results_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(RESULTS_URL)
    return _client


def record(token: str, event: str, **data: Any) -> None:
    job = unijob.current_job()
    entry = {
        "event": event,
        "at": time.time(),
        "pid": os.getpid(),
        "job_id": job.job_id if job else None,
        "queue": job.queue if job else None,
        "priority": job.priority if job else None,
        "executions": job.executions if job else None,
        "batch_id": job.batch_id if job else None,
        **data,
    }
    results_client().rpush(f"unijob-test:{token}", json.dumps(entry))


def records(token: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in results_client().lrange(f"unijob-test:{token}", 0, -1)]


@unijob.job
def ping(token: str) -> None:
    record(token, "ping")


@unijob.job
def on_tick(token: str) -> None:
    """A recurring job: records the tick it was enqueued for."""
    scheduled_at = unijob.current_job().scheduled_at
    record(token, "tick", at=scheduled_at.isoformat() if scheduled_at else None)


@unijob.job(queue="mail")
def echo(token: str, *args: Any, **kwargs: Any) -> str:
    """Records its arguments, serialized by unijob so the test can compare them exactly."""
    record(token, "echo", args=serializers.dump(list(args)), kwargs=serializers.dump(kwargs))
    return token


@unijob.job
def add(a: int, b: int) -> int:
    return a + b


class FlakyError(Exception):
    pass


class Flaky(unijob.Job):
    """Fails ``failures`` times, then succeeds. Retried after about one second."""

    retry_on = unijob.retry_on(FlakyError, wait=1, attempts=4, jitter=0)

    def perform(self, token: str, failures: int) -> None:
        record(token, "attempt")
        if self.executions <= failures:
            raise FlakyError(f"failure {self.executions} of {failures}")
        record(token, "success")


class AlwaysFails(unijob.Job):
    """Fails on every attempt; retried once, then given up (raised to the backend)."""

    retry_on = unijob.retry_on(FlakyError, wait=0.5, attempts=2, jitter=0)

    def perform(self, token: str) -> None:
        record(token, "attempt")
        raise FlakyError("always")

    def after_discard(self, error: BaseException) -> None:
        record(token=self.args[0], event="after_discard", error=type(error).__name__)


class Gone(Exception):
    pass


class Discarded(unijob.Job):
    discard_on = (Gone,)

    def perform(self, token: str) -> None:
        record(token, "attempt")
        raise Gone("record was deleted")

    def after_discard(self, error: BaseException) -> None:
        record(token=self.args[0], event="after_discard", error=type(error).__name__)


class WithCallbacks(unijob.Job):
    queue = "default"

    def before_perform(self) -> None:
        record(self.args[0], "before_perform")

    def around_perform(self, proceed: Any) -> Any:
        record(self.args[0], "around_before")
        result = proceed()
        record(self.args[0], "around_after")
        return result

    def perform(self, token: str) -> None:
        record(token, "perform")

    def after_perform(self) -> None:
        record(self.args[0], "after_perform")


# --- batches ------------------------------------------------------------------------------------


class BatchMember(unijob.Job):
    """``mode``: "ok"; "flaky" (fails its first execution, then succeeds); "discard" (discard_on);
    "exhaust" (fails every attempt until its retries run out: a final discard)."""

    retry_on = unijob.retry_on(FlakyError, wait=0.2, attempts=2, jitter=0)
    discard_on = (Gone,)

    def perform(self, token: str, n: int, mode: str = "ok") -> None:
        if mode == "discard":
            raise Gone(f"member {n}")
        if mode == "exhaust" or (mode == "flaky" and self.executions == 1):
            raise FlakyError(f"member {n} attempt {self.executions}")
        record(token, "member", n=n)


@unijob.job
def batch_callback(batch: unijob.Batch, event: str) -> None:
    record(
        batch.properties["token"],
        "callback",
        callback_event=event,
        batch=batch.id,
        total=batch.total,
        pending=batch.pending,
        succeeded=batch.succeeded,
        discarded=batch.discarded,
        finished=batch.is_finished,
    )


@unijob.job
def adds_more(token: str, count: int) -> None:
    """A batch job that adds more jobs to its own batch."""
    batch = unijob.current_batch()
    assert batch is not None
    batch.add([BatchMember.new(token, 1000 + i) for i in range(count)])
    record(token, "member", n=-1)


@unijob.job
def starts_another_batch(batch: unijob.Batch, event: str) -> None:
    """A callback that enqueues a new batch."""
    token = batch.properties["token"]
    with unijob.batch(on_finish=batch_callback, token=token, generation=2):
        BatchMember.perform_later(token, 500)


@unijob.job(queue="crash")
def killed_once(token: str) -> None:
    """Hangs on its first run, long enough for a test to kill its worker; runs through on the next."""
    record(token, "started")
    if results_client().incr(f"unijob-test:runs:{token}") == 1:
        time.sleep(120)
    record(token, "done")


# --- results -------------------------------------------------------------------------------------


class ResultError(Exception):
    pass


@unijob.job(store_result=True)
def compute(token: str, value: Any, mode: str = "ok") -> Any:
    """Returns ``value`` (its result is kept). ``mode``: "ok", "fail" (raises, no retry),
    "discard", "flaky" (fails its first execution, retried after a second), "unserializable"."""
    job = unijob.current_job()
    record(token, "compute", mode=mode)
    if mode == "fail":
        raise ResultError(f"cannot compute {value!r}")
    if mode == "discard":
        raise Gone("nothing to compute")
    if mode == "flaky" and job is not None and job.executions == 1:
        raise FlakyError("first attempt")
    if mode == "unserializable":
        return object()
    return value


compute.job_class.retry_on = unijob.retry_on(FlakyError, wait=1, attempts=2, jitter=0)
compute.job_class.discard_on = (Gone,)


# --- operations ----------------------------------------------------------------------------------


@unijob.job(store_result=True)
def sleeper(token: str, seconds: float) -> str:
    record(token, "started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # Python code between short sleeps: a time limit can stop it
        time.sleep(0.05)
    record(token, "finished")
    return "awake"


@unijob.job(store_result=True)
def one_at_a_time(token: str, n: int, seconds: float) -> None:
    record(token, "start", n=n, t=time.time())
    time.sleep(seconds)
    record(token, "end", n=n, t=time.time())


class OnlyOne(unijob.Job):
    """A unique job that, while it runs, tries to enqueue a copy of itself."""

    unique = True
    store_result = True

    def perform(self, token: str) -> None:
        copy = type(self).perform_later(token)
        record(token, "copy", enqueued=copy.successfully_enqueued, holder=getattr(copy.enqueue_error, "holder", None))
