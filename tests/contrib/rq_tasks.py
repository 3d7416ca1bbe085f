"""An existing RQ codebase's functions, adopted by unijob (imported by the workers too)."""

from __future__ import annotations

from tests import jobs
from unijob.contrib.rq import Retry, adopt, job


@job("default")
def report(token: str, n: int) -> int:
    jobs.record(token, "report", n=n)
    return n * 2


@job("default", retry=Retry(max=2, interval=[0.2, 0.5]))
def unreliable(token: str) -> str:
    jobs.record(token, "unreliable")
    if len(jobs.records(token)) < 3:
        raise ConnectionError("not yet")
    return "third time"


def cleanup(token: str) -> None:  # a plain function, as RQ code enqueues them: q.enqueue(cleanup, ...)
    jobs.record(token, "cleanup")


adopt(cleanup)


@job("default")
def sync_group(token: str, group_id: int) -> int:  # group_id is its own keyword, as in RQ
    jobs.record(token, "sync_group", group_id=group_id)
    return group_id


@job("default")
def fetch_page(token: str, timeout: float) -> float:  # timeout is its own keyword: RQ's enqueue calls the limit job_timeout
    jobs.record(token, "fetch_page", timeout=timeout)
    return timeout
