"""RQ: a unijob job is an ordinary RQ job whose ``func_name`` is the job's registered name.

Producer side: ``Queue.enqueue_call`` / ``Queue.enqueue_at`` with the JSON serializer, on a
pipeline (one MULTI/EXEC per job); the plain arguments are the RQ job's args/kwargs and unijob's
metadata rides in ``job.meta["unijob"]``. Bulk: what ``Queue.enqueue_many`` and
``Queue.schedule_job`` write, in a third of their commands, one MULTI/EXEC per chunk.

Worker side (:mod:`unijob.adapters.rq_worker`): the stock ``rq worker`` with unijob's worker and
job classes, which resolve ``func_name`` only through unijob's registry. RQ has no priority.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any, Final

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq.job import Retry as RQRetry
from rq.queue import Queue
from rq.serializers import JSONSerializer

from unijob import scheduling
from unijob.adapters.base import Adapter, Capabilities, EnqueueOutcome
from unijob.adapters.rq_bulk import META_KEY, write_group
from unijob.envelope import Envelope
from unijob.urls import REDIS_SCHEMES, require_scheme

DEFAULT_URL: Final = "redis://localhost:6379/0"
_ERRORS: Final = (RedisError, OSError)


class RQAdapter(Adapter):
    """Options (``UNIJOB_OPTIONS`` or ``configure(..., option=value)``):

    - ``job_timeout``, ``result_ttl``, ``failure_ttl``: passed to RQ as they are (RQ's defaults otherwise).
    - ``connect_timeout`` (2 s), ``socket_timeout`` (10 s): bound every enqueue.
    - ``retries`` (0): reconnect attempts per enqueue. More than 0 can run a job twice when Redis
      applied a transaction whose reply was lost.
    - ``simple_worker`` (False): ``unijob worker`` runs RQ's non-forking ``SimpleWorker``.
    - ``abandoned_retries`` (1): how often RQ requeues a job whose worker died while running it
      (RQ's abandoned-job requeue, at least once); 0: never (at most once). A job that raises is
      never retried by RQ: retries belong to unijob.
    """

    name = "rq"
    display_name = "RQ"
    OPTIONS = frozenset(
        {
            "job_timeout",
            "result_ttl",
            "failure_ttl",
            "connect_timeout",
            "socket_timeout",
            "retries",
            "simple_worker",
            "abandoned_retries",
        }
    )
    worker_module = "unijob.adapters.rq_worker"
    capabilities = Capabilities(
        native_bulk=True,
        timeout=True,
        notes="no priority (use queues listed in order on the worker); delays need `--with-scheduler`",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        require_scheme(self.url or DEFAULT_URL, REDIS_SCHEMES, self.name)
        retries = int(self.options.get("abandoned_retries", 1))
        self._abandoned_retry = RQRetry(max=retries) if retries > 0 else None
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
        options = self.job_options(envelope)
        # With a pipeline, RQ queues every command of the job on it: one MULTI/EXEC, one round
        # trip. Without one, enqueue_call first sends the queue's SADD in a transaction of its own.
        with self.as_enqueue_error(*_ERRORS), self.redis.pipeline(transaction=True) as pipe:
            if at is None:
                job = queue.enqueue_call(envelope.job, pipeline=pipe, **options)
            else:
                options["job_timeout"] = options.pop("timeout")  # enqueue_at's name for it
                job = queue.enqueue_at(at, envelope.job, pipeline=pipe, **options)
            pipe.execute()
        return job.id

    def enqueue_all(self, envelopes: Sequence[Envelope]) -> list[EnqueueOutcome]:
        """One MULTI/EXEC transaction for the whole chunk, writing what ``Queue.enqueue_many``
        (jobs due now) and ``Queue.schedule_job`` (delayed jobs: ``prepare_data`` has no schedule
        field) write, in far fewer commands (:func:`unijob.adapters.rq_bulk.write_group`). Commands are tracked per
        group (queue, due now or delayed), so a command that fails inside EXEC (say, a queue key of
        the wrong type) fails exactly the jobs of its group."""
        ids = {self.native_id(envelope) for envelope in envelopes}
        if len(ids) != len(envelopes):  # one hash per id: a job listed twice would run twice off one record
            raise ValueError("a job appears more than once in one bulk enqueue (as Queue.enqueue_many refuses it)")
        groups: dict[tuple[str, bool, float | None], list[tuple[int, dt.datetime | None]]] = {}
        for index, envelope in enumerate(envelopes):
            at = _run_at(envelope)
            # a group shares RQ's per-job fields (timeout among them): one group per queue, delay and time limit
            groups.setdefault((envelope.queue, at is not None, envelope.timeout), []).append((index, at))
        pipe = self.redis.pipeline(transaction=True)
        spans: list[tuple[list[int], int, int]] = []  # (indexes into envelopes, first command, end)
        try:
            for (name, _, _), members in groups.items():
                start = len(pipe.command_stack)
                write_group(self, self.queue(name), [(envelopes[i], at) for i, at in members], pipe)
                spans.append(([i for i, _ in members], start, len(pipe.command_stack)))
            results = pipe.execute(raise_on_error=False)
        except _ERRORS as exc:  # nothing of this transaction was applied (or its reply was lost)
            error = self.enqueue_error_for(exc)
            return [EnqueueOutcome(error=error) for _ in envelopes]
        finally:
            pipe.reset()
        outcomes = [EnqueueOutcome(self.native_id(envelope)) for envelope in envelopes]
        for indexes, start, end in spans:
            failed = next((r for r in results[start:end] if isinstance(r, Exception)), None)
            if failed is not None:
                for index in indexes:
                    outcomes[index] = EnqueueOutcome(error=self.enqueue_error_for(failed))
        return outcomes

    def job_options(self, envelope: Envelope) -> dict[str, Any]:
        # func is the registered job name: rq-dashboard shows it, and the worker looks it up in
        # unijob's registry (it is never imported). RQ's ``retry=`` serves only abandoned jobs:
        # unijob's worker and job classes never retry a job that raised.
        return {
            "retry": self._abandoned_retry,
            "args": envelope.args,
            "kwargs": envelope.kwargs,
            "job_id": self.native_id(envelope),
            "meta": {META_KEY: envelope.meta()},
            "timeout": math.ceil(envelope.timeout) if envelope.timeout else self.options.get("job_timeout"),
            "result_ttl": self.options.get("result_ttl"),
            "failure_ttl": self.options.get("failure_ttl"),
        }

    def close(self) -> None:
        redis, self._redis, self._queues = self._redis, None, {}
        if redis is not None:
            redis.close()  # the client owns its pool (from_url), so this disconnects it


def _run_at(envelope: Envelope) -> dt.datetime | None:
    """When a delayed job is due, rounded up to a whole second: RQ's scheduled registry stores
    whole seconds, rounded down, which would run a job up to a second early."""
    at = scheduling.due_at(envelope.scheduled_at)
    return None if at is None else scheduling.ceil_to_second(at)
