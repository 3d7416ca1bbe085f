"""RQ bulk enqueue: what ``Queue.enqueue_many`` and ``Queue.schedule_job`` write, in a third of
their commands.

Checked against rq 3.0.0: it mirrors ``rq.queue.Queue.enqueue_many``, ``Queue.create_job``,
``Queue.schedule_job``, ``rq.job.Job.to_dict`` and ``ScheduledJobRegistry.schedule``.
tests/backends/test_rq.py compares the hashes field for field with RQ's own.
"""

from __future__ import annotations

import calendar
import datetime as dt
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from redis.client import Pipeline
from rq.job import JobStatus, validate_job_id
from rq.queue import Queue
from rq.utils import get_call_string, now, utcformat

from unijob.envelope import Envelope

if TYPE_CHECKING:
    from unijob.adapters.rq import RQAdapter

META_KEY: Final = "unijob"  # job.meta[META_KEY] holds Envelope.meta()

# How RQ's Job.to_dict lays out the hash of a job that enqueue_many queues (or schedule_job
# schedules: no enqueued_at): the fields that differ from job to job of one call, and the ones that
# are the same (unijob sets no callbacks, ttl, dependencies or group). See write_group.
_PER_JOB_FIELDS: Final = frozenset({"created_at", "data", "description", "enqueued_at", "meta"})
_SHARED_FIELDS: Final = frozenset(
    {
        "success_callback_name",
        "failure_callback_name",
        "stopped_callback_name",
        "started_at",
        "ended_at",
        "last_heartbeat",
        "worker_name",
        "group_id",
        "origin",
        "timeout",
        "result_ttl",
        "failure_ttl",
        "status",
        "retries_left",  # the abandoned-job retries (abandoned_retries), the same for every job
        "retry_intervals",
    }
)


def write_group(adapter: RQAdapter, queue: Queue, members: Sequence[tuple[Envelope, dt.datetime | None]], pipe: Pipeline) -> None:
    """Write the jobs of one queue, all due now or all delayed, as RQ writes them, faster.

    Per job, ``Queue.enqueue_many`` builds an RQ ``Job`` and sends ``HSET status``, an ``HSET``
    of the whole job hash (status included) and an ``RPUSH`` of its id; ``Queue.schedule_job``
    sends ``SADD``, the two ``HSET`` and a ``ZADD``. Here the first job of the group is RQ's own
    (``Queue.create_job``, ``Job.to_dict``) and its hash is the template for the others, of
    which only the fields in ``_PER_JOB_FIELDS`` differ (computed as ``Job.to_dict`` does): one
    ``HSET`` per job with RQ's own fields and values, then one ``RPUSH`` (ids in order) or one
    ``ZADD`` for the group. The worker sees no difference; the tests compare the hashes field
    for field with RQ's. Should an RQ release lay the hash out otherwise, every job goes
    through ``Queue.create_job`` and ``Job.to_dict``."""
    delayed = members[0][1] is not None
    status = JobStatus.SCHEDULED if delayed else JobStatus.QUEUED
    per_job = _PER_JOB_FIELDS if not delayed else _PER_JOB_FIELDS - {"enqueued_at"}  # schedule_job sets none
    pipe.sadd(queue.redis_queues_keys, queue.key)
    ids: list[str] = []
    template: dict[Any, Any] = {}
    for envelope, _ in members:
        if template and template.keys() - _SHARED_FIELDS == per_job:
            break
        job = queue.create_job(envelope.job, status=status, **adapter.job_options(envelope))
        if not delayed:
            job.enqueued_at = now()  # as Queue._prepare_for_queue (create_job set origin and timeout)
        template = job.to_dict()
        pipe.hset(job.key, mapping=template)  # no Job.cleanup(): without a ttl (unijob sets none) it does nothing
        ids.append(job.id)
    encode = cast(Callable[[object], bytes], adapter.redis.get_encoder().encode)  # as redis-py would
    shared = [encode(part) for name, value in template.items() if name not in per_job for part in (name, value)]
    prefix, dumps = queue.job_class.redis_job_namespace_prefix, queue.serializer.dumps
    for envelope, _ in members[len(ids) :]:
        job_id = adapter.native_id(envelope)
        validate_job_id(job_id)
        stamp = utcformat(now())
        fields: list[bytes | str] = [
            b"created_at",
            stamp,
            b"data",
            zlib.compress(dumps((envelope.job, None, envelope.args, envelope.kwargs))),
            b"description",
            get_call_string(envelope.job, envelope.args, envelope.kwargs, max_length=75) or "",
            b"meta",
            dumps({META_KEY: envelope.meta()}),
            *shared,
        ]
        if not delayed:
            fields.extend((b"enqueued_at", stamp))
        pipe.hset(prefix + job_id, items=fields)
        ids.append(job_id)
    if delayed:
        # ScheduledJobRegistry.schedule's score: whole seconds (_run_at rounded them up)
        scores = {job_id: calendar.timegm(at.utctimetuple()) for job_id, (_, at) in zip(ids, members, strict=True) if at}
        pipe.zadd(queue.scheduled_job_registry.key, scores)
    else:
        pipe.rpush(queue.key, *ids)
