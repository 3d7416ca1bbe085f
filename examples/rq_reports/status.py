"""The status screen: what the "your report" page shows while its job runs."""

from __future__ import annotations

from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job

from .settings import redis_conn


def report_status(job_id: str) -> dict[str, Any]:
    try:
        job = Job.fetch(job_id, connection=redis_conn)
    except NoSuchJobError:
        return {"id": job_id, "status": "unknown", "result": None}
    return {"id": job.id, "status": job.get_status(), "result": job.return_value()}
