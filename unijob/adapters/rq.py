"""RQ: a unijob job is an ordinary RQ job whose ``func_name`` is the job's registered name.

Producer side: ``Queue.enqueue_call`` / ``Queue.enqueue_at`` with the JSON serializer, on a
pipeline (one MULTI/EXEC per job); the plain arguments are the RQ job's args/kwargs and unijob's
metadata rides in ``job.meta["unijob"]``. Bulk: what ``Queue.enqueue_many`` and
``Queue.schedule_job`` write, in a third of their commands, one MULTI/EXEC per chunk.

Worker side (:mod:`unijob.adapters.rq_worker`): the stock ``rq worker`` with unijob's worker and
job classes, which resolve ``func_name`` only through unijob's registry. RQ has no priority.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, cast

from redis import Redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.exceptions import RedisError
from redis.retry import Retry
from rq.job import JobStatus, validate_job_id
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.utils import get_call_string, now, utcformat

from unijob.adapters.base import Adapter, Capabilities, EnqueueOutcome
from unijob.envelope import Envelope

DEFAULT_URL: Final = "redis://localhost:6379/0"
META_KEY: Final = "unijob"  # job.meta[META_KEY] holds Envelope.meta()
WORKER_CLASS: Final = "unijob.adapters.rq_worker.Worker"
SIMPLE_WORKER_CLASS: Final = "unijob.adapters.rq_worker.SimpleWorker"
JOB_CLASS: Final = "unijob.adapters.rq_worker.Job"
_ERRORS: Final = (RedisError, OSError)
# How RQ's Job.to_dict lays out the hash of a job that enqueue_many queues (or schedule_job
# schedules: no enqueued_at): the fields that differ from job to job of one call, and the ones that
# are the same (unijob sets no callbacks, retries, ttl, dependencies or group). See _write_group.
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
    }
)


class RQAdapter(Adapter):
    """Options (``UNIJOB_OPTIONS`` or ``configure(..., option=value)``):

    - ``job_timeout``, ``result_ttl``, ``failure_ttl``: passed to RQ as they are (RQ's defaults otherwise).
    - ``connect_timeout`` (2 s), ``socket_timeout`` (10 s): bound every enqueue.
    - ``retries`` (0): reconnect attempts per enqueue. More than 0 can run a job twice when Redis
      applied a transaction whose reply was lost.
    - ``simple_worker`` (False): ``unijob worker`` runs RQ's non-forking ``SimpleWorker``.
    """

    name = "rq"
    display_name = "RQ"
    capabilities = Capabilities(
        delay=True,
        priority=False,
        native_bulk=True,
        notes="no priority (use queues listed in order on the worker); delays need `--with-scheduler`",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._redis: Redis | None = None
        self._queues: dict[str, Queue] = {}

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(
                self.url or DEFAULT_URL,
                socket_connect_timeout=float(self.options.get("connect_timeout", 2.0)),
                socket_timeout=float(self.options.get("socket_timeout", 10.0)),
                retry=Retry(NoBackoff(), int(self.options.get("retries", 0))),
            )
        return self._redis

    def queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = Queue(name, connection=self.redis, serializer=JSONSerializer)
        return queue

    # --- producer side -------------------------------------------------------------------------

    def enqueue(self, envelope: Envelope) -> str | None:
        queue = self.queue(envelope.queue)
        at = _run_at(envelope)
        options = self._job_options(envelope)
        # With a pipeline, RQ queues every command of the job on it: one MULTI/EXEC, one round
        # trip. Without one, enqueue_call first sends the queue's SADD in a transaction of its own.
        with self.enqueue_errors(*_ERRORS), self.redis.pipeline(transaction=True) as pipe:
            if at is None:
                job = queue.enqueue_call(envelope.job, pipeline=pipe, **options)
            else:
                options["job_timeout"] = options.pop("timeout")  # enqueue_at's name for it
                job = queue.enqueue_at(at, envelope.job, pipeline=pipe, **options)
            pipe.execute()
        return job.id

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
        """One MULTI/EXEC transaction for the whole chunk, writing what ``Queue.enqueue_many``
        (jobs due now) and ``Queue.schedule_job`` (delayed jobs: ``prepare_data`` has no schedule
        field) write, in far fewer commands: see :meth:`_write_group`. Commands are tracked per
        group (queue, due now or delayed), so a command that fails inside EXEC (say, a queue key of
        the wrong type) fails exactly the jobs of its group."""
        ids = {self.native_id(envelope) for envelope in envelopes}
        if len(ids) != len(envelopes):  # one hash per id: a job listed twice would run twice off one record
            raise ValueError("a job appears more than once in one bulk enqueue (as Queue.enqueue_many refuses it)")
        groups: dict[tuple[str, bool], list[tuple[int, dt.datetime | None]]] = {}
        for index, envelope in enumerate(envelopes):
            at = _run_at(envelope)
            groups.setdefault((envelope.queue, at is not None), []).append((index, at))
        pipe = self.redis.pipeline(transaction=True)
        spans: list[tuple[list[int], int, int]] = []  # (indexes into envelopes, first command, end)
        try:
            for (name, _), members in groups.items():
                start = len(pipe.command_stack)
                self._write_group(self.queue(name), [(envelopes[i], at) for i, at in members], pipe)
                spans.append(([i for i, _ in members], start, len(pipe.command_stack)))
            results = pipe.execute(raise_on_error=False)
        except _ERRORS as exc:  # nothing of this transaction was applied (or its reply was lost)
            error = self.enqueue_error(exc)
            return [EnqueueOutcome(error=error) for _ in envelopes]
        finally:
            pipe.reset()
        outcomes = [EnqueueOutcome(self.native_id(envelope)) for envelope in envelopes]
        for indexes, start, end in spans:
            failed = next((r for r in results[start:end] if isinstance(r, Exception)), None)
            if failed is not None:
                for index in indexes:
                    outcomes[index] = EnqueueOutcome(error=self.enqueue_error(failed))
        return outcomes

    def _write_group(self, queue: Queue, members: Sequence[tuple[Envelope, dt.datetime | None]], pipe: Pipeline) -> None:
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
            job = queue.create_job(envelope.job, status=status, **self._job_options(envelope))
            if not delayed:
                job.enqueued_at = now()  # as Queue._prepare_for_queue (create_job set origin and timeout)
            template = job.to_dict()
            pipe.hset(job.key, mapping=template)  # no Job.cleanup(): without a ttl (unijob sets none) it does nothing
            ids.append(job.id)
        encode = cast(Callable[[object], bytes], self.redis.get_encoder().encode)  # as redis-py would
        shared = [encode(part) for name, value in template.items() if name not in per_job for part in (name, value)]
        prefix, dumps = queue.job_class.redis_job_namespace_prefix, queue.serializer.dumps
        for envelope, _ in members[len(ids) :]:
            job_id = self.native_id(envelope)
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

    def _job_options(self, envelope: Envelope) -> dict[str, Any]:
        # func is the registered job name: rq-dashboard shows it, and the worker looks it up in
        # unijob's registry (it is never imported). No ``retry=``: retries belong to unijob.
        return {
            "args": envelope.args,
            "kwargs": envelope.kwargs,
            "job_id": self.native_id(envelope),
            "meta": {META_KEY: envelope.meta()},
            "timeout": self.options.get("job_timeout"),
            "result_ttl": self.options.get("result_ttl"),
            "failure_ttl": self.options.get("failure_ttl"),
        }

    def close(self) -> None:
        redis, self._redis, self._queues = self._redis, None, {}
        if redis is not None:
            redis.close()  # the client owns its pool (from_url), so this disconnects it

    # --- worker side ---------------------------------------------------------------------------

    def worker_argv(self, queues: Sequence[str], concurrency: int | None, burst: bool) -> list[str]:
        """``rq worker`` (or ``rq worker-pool -n N``, whose workers always run the scheduler).
        No RQ ``--burst``: it stops while delayed jobs are due soon; ``unijob worker --burst``
        polls :meth:`pending_jobs` instead."""
        worker_class = SIMPLE_WORKER_CLASS if self.options.get("simple_worker") else WORKER_CLASS
        if concurrency and concurrency > 1:
            command = ["worker-pool", "--num-workers", str(concurrency)]
        else:
            command = ["worker", "--with-scheduler"]
        return [
            _rq_script(),
            *command,
            "--url",
            self.url or DEFAULT_URL,
            "--worker-class",
            worker_class,
            "--job-class",
            JOB_CLASS,
            "--serializer",
            "json",
            *queues,
        ]

    def pending_jobs(self, queues: Sequence[str], within: float) -> int:
        now = time.time()
        with self.redis.pipeline(transaction=False) as pipe:
            for name in queues:
                queue = self.queue(name)
                pipe.llen(queue.key)
                pipe.zcount(queue.started_job_registry.key, now, "+inf")  # expired entries belong to dead workers
                pipe.zcount(queue.scheduled_job_registry.key, "-inf", now + within)
            return sum(int(count) for count in pipe.execute())


def _run_at(envelope: Envelope) -> dt.datetime | None:
    """When a delayed job is due, rounded UP to a whole second: RQ's scheduled registry stores
    whole seconds, rounded down, which would run a job up to a second early."""
    at = envelope.scheduled_at
    if at is None or at <= dt.datetime.now(dt.timezone.utc):
        return None
    return dt.datetime.fromtimestamp(math.ceil(at.timestamp()), dt.timezone.utc)


def _rq_script() -> str:
    beside = Path(sys.executable).with_name("rq")
    return str(beside) if beside.exists() else "rq"
