"""The classes that make RQ's stock worker run unijob jobs, and nothing else::

    rq worker --with-scheduler --url redis://localhost:6379/0 \\
        --worker-class unijob.adapters.rq_worker.Worker \\
        --job-class unijob.adapters.rq_worker.Job --serializer json  default mail

:class:`Job` never imports ``func_name``: it is a registered unijob job name, run through
:func:`unijob.execution.execute`, which refuses (and logs) anything not registered. RQ callbacks and
webhooks named in a job hash are ignored too, since unijob never sets them. The worker classes
import the configured job modules at start and refuse to run without the JSON serializer and
:class:`Job`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

import rq.job
import rq.worker
from redis import Redis
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import AbandonedJobError
from rq.logutils import setup_loghandlers
from rq.serializers import JSONSerializer

from unijob import config, serializers, worker
from unijob.adapters.rq import DEFAULT_URL, RQAdapter
from unijob.adapters.rq_bulk import META_KEY
from unijob.errors import ConfigurationError, SerializationError

WORKER_CLASS: Final = f"{__name__}.Worker"
SIMPLE_WORKER_CLASS: Final = f"{__name__}.SimpleWorker"
JOB_CLASS: Final = f"{__name__}.Job"


class Job(rq.job.Job):
    """An RQ job whose function is looked up in unijob's registry, never imported."""

    @property
    def func(self) -> Any:
        return self._perform

    def _perform(self, *args: Any, **kwargs: Any) -> Any:
        worker.load_jobs()  # idempotent; lets ``--job-class`` work even without unijob's worker class
        meta = self.meta.get(META_KEY) if isinstance(self.meta, dict) else None
        # func_name is what RQ and its dashboard show, so it is what runs (or is refused).
        delivery = worker.Delivery(self.func_name or "", meta, args, kwargs, self.id, self.origin)
        return _storable(worker.run(served_backend(self.connection), delivery))

    @property
    def should_retry(self) -> bool:
        """A job that raised is never retried by RQ: unijob's ``retry_on`` already enqueued its
        retry, or it failed for good. RQ's retries serve only abandoned jobs (``abandoned_retries``)."""
        return False

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> Any:
        """RQ calls it for a failed job, and for one it finds abandoned (its worker died)."""
        return _count_abandoned

    @property
    def stopped_callback(self) -> None:
        return None

    def send_webhooks(self, status: str | rq.job.JobStatus, *, exc_string: str | None = None) -> None:
        return None


def _count_abandoned(job: rq.job.Job, connection: Any, kind: Any, error: Any, traceback: Any) -> None:
    """An abandoned job that RQ will not requeue has failed for good: it counts as such (its
    batch, the discard event). A job that raised was counted when unijob ran it."""
    if kind is AbandonedJobError and not job.retries_left:
        _give_up(job, AbandonedJobError(f"its worker died while it ran (RQ moved job {job.id} to the failed registry)"))


def _give_up(job: rq.job.Job, error: BaseException) -> None:
    try:
        meta = job.meta.get(META_KEY) if isinstance(job.meta, dict) else None
        worker.give_up(worker.Delivery(job.func_name or "", meta, job.args, job.kwargs, job.id, job.origin), error)
    except Exception:  # whatever the job's record holds, the worker goes on
        worker.logger.exception("Could not count job %s, which RQ gave up on, as failed", job.id)


_served: dict[tuple[object, ...], RQAdapter | None] = {}


def served_backend(connection: Redis) -> RQAdapter | None:
    """The configured RQ backend on the Redis database this worker serves, so that a job routed
    there retries and keeps its result there. ``None`` when none or several are (RQ's command line
    names no backend): each job's own backend then."""
    where = _database(connection)
    if where not in _served:
        settings = config.settings()
        candidates = [config.get_adapter(name) for name in settings.backends if settings.backends[name].adapter == "rq"]
        found = [adapter for adapter in candidates if isinstance(adapter, RQAdapter) and _database(adapter.redis) == where]
        _served[where] = found[0] if len(found) == 1 else None
    return _served[where]


def _database(connection: Redis) -> tuple[object, ...]:
    kwargs = connection.connection_pool.connection_kwargs
    return (kwargs.get("host"), kwargs.get("port"), kwargs.get("path"), int(kwargs.get("db") or 0))


def _storable(value: Any) -> Any:
    """RQ stores the return value with the JSON serializer; a value JSON cannot hold must not
    turn a job that ran into a failed one."""
    try:
        return serializers.dump(value)
    except SerializationError:
        return repr(value)


class _UnijobWorker(rq.worker.BaseWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not issubclass(self.job_class, Job):
            raise ConfigurationError(f"unijob's RQ worker needs --job-class {Job.__module__}.Job")
        if self.serializer is not JSONSerializer:
            raise ConfigurationError("unijob's RQ worker needs --serializer json (RQ's default, pickle, is unsafe)")
        worker.load_jobs()  # once, in the main process; fails at start when a job module does not import
        served_backend(self.connection)  # before the work horses fork, which inherit it

    def bootstrap(
        self,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        super().bootstrap(logging_level, date_format, log_format)
        # unijob's log lines beside RQ's, at RQ's level (``rq worker`` sets it from --verbose/--quiet)
        setup_loghandlers(logging_level or self.log.getEffectiveLevel(), date_format, log_format, name="unijob")


class WorkHorseKilledError(Exception):
    """The process RQ forked to run a job died before the job ended (killed, out of memory, a crash)."""


class Worker(_UnijobWorker, rq.worker.Worker):
    """RQ's default worker: forks a work horse per job (isolation, job timeouts, about 40 jobs/s)."""

    def handle_work_horse_killed(self, job: rq.job.Job, retpid: int, ret_val: int, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]
        _give_up(job, WorkHorseKilledError(f"the work horse of job {job.id} died (waitpid status {ret_val})"))


class SimpleWorker(_UnijobWorker, rq.worker.SimpleWorker):
    """Runs jobs in the worker process itself: about three times faster, no isolation."""


def command(adapter: RQAdapter, queues: Sequence[str], concurrency: int | None) -> list[str]:
    """``rq worker`` (or ``rq worker-pool -n N``, whose workers always run the scheduler).
    No RQ ``--burst``: it stops while delayed jobs are due soon; ``unijob worker --burst``
    polls :func:`pending` instead."""
    worker_class = SIMPLE_WORKER_CLASS if adapter.options.get("simple_worker") else WORKER_CLASS
    if concurrency and concurrency > 1:
        subcommand = ["worker-pool", "--num-workers", str(concurrency)]
    else:
        subcommand = ["worker", "--with-scheduler"]
    return [
        *worker.console_script("rq"),
        *subcommand,
        "--url",
        adapter.url or DEFAULT_URL,
        "--worker-class",
        worker_class,
        "--job-class",
        JOB_CLASS,
        "--serializer",
        "json",
        *queues,
    ]


def pending(adapter: RQAdapter, queues: Sequence[str], within: float) -> int:
    now = time.time()
    with adapter.redis.pipeline(transaction=False) as pipe:
        for name in queues:
            queue = adapter.queue(name)
            pipe.llen(queue.key)
            pipe.zcount(queue.started_job_registry.key, now, "+inf")  # expired entries belong to dead workers
            pipe.zcount(queue.scheduled_job_registry.key, "-inf", now + within)
        return sum(int(count) for count in pipe.execute())


def failed(adapter: RQAdapter, queues: Sequence[str]) -> int:
    """Jobs in RQ's failed registries of ``queues``."""
    return sum(adapter.queue(name).failed_job_registry.count for name in queues)
