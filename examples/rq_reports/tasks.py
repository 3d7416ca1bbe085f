"""The work RQ runs. Each function leaves its outcome in the reports store, and a line in the
run log (``rq_reports:runs``): what ran, when, and which worker program ran it."""

from __future__ import annotations

import json
import os
import sys
import time

from rq.decorators import job

from .settings import redis_conn, store


def _log_run(kind: str, key: str, **details: object) -> None:
    entry = {"kind": kind, "key": key, "at": time.time(), "pid": os.getpid(), "worker": os.path.basename(sys.argv[0])}
    store.rpush("rq_reports:runs", json.dumps({**entry, **details}))


def build_report(report_id: str, period: str) -> dict[str, object]:
    orders = [(len(report_id) * day) % 17 for day in range(1, 8)]  # stands in for the database query
    report = {"id": report_id, "period": period, "orders": sum(orders), "busiest_day": orders.index(max(orders)) + 1}
    store.set(f"rq_reports:report:{report_id}", json.dumps(report))
    _log_run("report", report_id)
    return report


def send_digest(user_id: str) -> None:
    _log_run("digest", user_id)  # stands in for the mail


def upload_export(report_id: str) -> str:
    """Uploads a report to the storage, which is busy now and then: the call site retries it."""
    attempt = store.incr(f"rq_reports:upload-attempts:{report_id}")
    _log_run("upload", report_id, attempt=attempt)
    if attempt < 3:  # the storage stand-in is busy for the first two attempts of every upload
        raise ConnectionError(f"storage busy (attempt {attempt})")
    return f"s3://reports/{report_id}.json"


@job("default", connection=redis_conn)
def refresh_cache(key: str) -> int:
    size = 100 * len(key)  # stands in for the expensive query
    store.set(f"rq_reports:cache:{key}", size)
    _log_run("cache", key)
    return size
