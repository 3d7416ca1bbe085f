"""Where the project's Redis servers are: from the environment, as a deployment sets them."""

from __future__ import annotations

import os

from redis import Redis

REDIS_URL = os.environ.get("REPORTS_REDIS_URL", "redis://localhost:6379/0")  # RQ's queues and jobs
STORE_URL = os.environ.get("REPORTS_STORE_URL", "redis://localhost:6379/1")  # where reports land

redis_conn = Redis.from_url(REDIS_URL)
store = Redis.from_url(STORE_URL, decode_responses=True)
