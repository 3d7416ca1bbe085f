"""The call sites: what the web views and the nightly cron call."""

from __future__ import annotations

import datetime as dt

from rq import Queue, Retry

from .settings import redis_conn
from .tasks import build_report, refresh_cache, send_digest, upload_export

queue = Queue("default", connection=redis_conn)


def request_report(report_id: str) -> str:
    """The "build my report" button: returns the job id the status screen polls."""
    return queue.enqueue(build_report, report_id, "monthly").id


def export_report(report_id: str) -> str:
    return queue.enqueue(upload_export, report_id, retry=Retry(max=2, interval=1)).id


def schedule_digest(user_id: str, delay: dt.timedelta) -> str:
    return queue.enqueue_in(delay, send_digest, user_id).id


def warm_cache(key: str) -> str:
    return refresh_cache.delay(key).id
