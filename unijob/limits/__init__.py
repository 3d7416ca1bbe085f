"""Unique jobs and concurrency limits, the same on every backend, in the backend's own store.

- ``set(unique=True)`` (or ``unique_key="..."``, or ``unique = True`` on the job): the job is not
  enqueued while one with the same key (by default: the job's name and arguments) is enqueued or
  running. The caller learns it: ``successfully_enqueued`` is False and ``enqueue_error`` is a
  ``DuplicateJobError`` naming the job that holds the key. The key is released when that job
  reaches a final state, or after ``unique_for`` seconds (a day) if it is lost.
- ``set(concurrency_key="tenant:7", concurrency_limit=2)`` (or ``concurrency_limit`` on the job,
  keyed by the job's name): at most that many run at once, across every worker. A job that finds
  its slots taken waits (it is enqueued again after a second or two, which is not an attempt) and
  runs later; none is lost.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Final

from unijob import config
from unijob.core import BaseJob
from unijob.errors import DuplicateJobError
from unijob.limits.stores import LimitStore, MemoryStore, RedisStore, SqliteStore
from unijob.middleware import Middleware, Outcome
from unijob.retry import PostponeJob
from unijob.stores import FeatureStores

POSTPONE_SECONDS: Final = (1.0, 2.0)  # a job waiting for a slot comes back after this long (at random)
DEFAULT_LEASE: Final = 3600.0  # a slot is kept at most this long without its job's timeout (a lost job)

store_for: FeatureStores[LimitStore] = FeatureStores(
    "unique jobs and concurrency limits", redis=RedisStore, sqlite=SqliteStore, memory=MemoryStore
)


def unique_key(job: BaseJob) -> str:
    """The job's own key, or its name and a digest of its serialized arguments."""
    if job.unique_key is not None:
        return job.unique_key
    args, kwargs = job.serialize_arguments()
    digest = hashlib.sha256(json.dumps([args, kwargs], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{job.name}:{digest[:32]}"


class LimitsMiddleware(Middleware):
    def before_send(self, job: BaseJob) -> None:
        if not job.unique or job.executions or job.postponements:  # a retry or a postponed job holds its key already
            return
        job.unique_key = unique_key(job)
        holder = store_for(job.backend).claim(job.unique_key, job.job_id, config.settings().unique_for)
        if holder is not None:
            raise DuplicateJobError(
                f"{job.display_name}: not enqueued, job {holder} with the same unique key is enqueued or running", holder
            )

    def enqueue_failed(self, job: BaseJob, error: BaseException) -> None:
        if job.unique_key is not None and not isinstance(error, DuplicateJobError):
            store_for(job.backend).release(job.unique_key, job.job_id)

    def after_finish(self, job: BaseJob, outcome: Outcome, error: BaseException | None) -> None:
        if job.unique_key is not None:
            store_for(job.backend).release(job.unique_key, job.job_id)

    def before_perform(self, job: BaseJob) -> None:
        if job.concurrency_key is None or not job.concurrency_limit:
            return
        lease = (job.timeout or DEFAULT_LEASE) + 60
        if not store_for(job.backend).acquire_slot(job.concurrency_key, job.job_id, job.concurrency_limit, lease):
            raise PostponeJob(random.uniform(*POSTPONE_SECONDS), f"{job.concurrency_limit} job(s) of {job.concurrency_key!r} run")

    def after_attempt(self, job: BaseJob) -> None:
        if job.concurrency_key is not None and job.concurrency_limit:
            store_for(job.backend).release_slot(job.concurrency_key, job.job_id)
