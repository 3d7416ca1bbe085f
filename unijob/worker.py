"""The worker side, shared by every backend: what a stock worker needs to run unijob jobs.

- :func:`load_jobs` imports the application's job modules (the ``imports`` setting).
- :func:`serve` finds the configured backend a worker serves, and checks its adapter.
- :class:`Delivery` is a native message; its ``envelope()`` is the job's envelope again.
- :func:`run` runs a delivered job, or sends it on when it came early (a long delay's hop);
  :func:`give_up` counts a job the native worker gave up on as a final failure.
- :func:`launch` is ``unijob worker``: the stock worker's command line, and ``--burst``.

Each backend's own half lives in ``unijob/adapters/<name>_worker.py``: the native registration
and, for :func:`launch`, ``command(adapter, queues, concurrency)`` and
``pending(adapter, queues, within)`` (jobs waiting, running, or due within ``within`` seconds).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TypeVar

from unijob import config, execution, registry, scheduling
from unijob.adapters.base import Adapter, add_working_directory_to_path
from unijob.constants import DEFAULT_QUEUE
from unijob.core import BaseJob
from unijob.envelope import FORMAT_VERSION, Envelope
from unijob.errors import BrokerUnavailableError, ConfigurationError, EnvelopeError, Error
from unijob.execution import execute

BURST_POLL_SECONDS: Final = 0.5
BURST_HORIZON_SECONDS: Final = 5.0  # --burst waits for delayed jobs due this soon

_AdapterT = TypeVar("_AdapterT", bound=Adapter)
logger = logging.getLogger("unijob")
_loaded: set[str] = set()


def load_jobs(modules: Sequence[str] | None = None) -> dict[str, type[BaseJob]]:
    """Import the configured job modules (the ``imports`` setting) and return the registry.

    Stock workers call this once at start; it is idempotent. The working directory is put on
    ``sys.path`` first, as ``celery -A`` and ``rq worker`` do, so ``imports=["app.jobs"]`` works.
    """
    add_working_directory_to_path()
    for name in modules if modules is not None else config.settings().imports:
        if name not in _loaded:
            importlib.import_module(name)
            _loaded.add(name)
    return registry.registered()


def queues_of(jobs: Mapping[str, type[BaseJob]]) -> list[str]:
    """Every queue a registered job names by default, sorted (``default`` alone when there are none)."""
    return sorted({job.queue for job in jobs.values()}) or [DEFAULT_QUEUE]


def serve(backend: str, kind: type[_AdapterT], command: str) -> _AdapterT:
    """The adapter of the configured backend a stock worker serves, which must be of ``kind``.
    The job modules are imported first: one may configure unijob (``unijob.contrib.django.bootstrap``
    sets Django up, whose settings name the backends), and the adapter is built from that."""
    load_jobs()
    adapter = config.get_adapter(backend)
    if not isinstance(adapter, kind):
        raise ConfigurationError(
            f"{command} serves a {kind.name} backend, but backend {backend!r} runs on {adapter.name!r}; "
            "set UNIJOB_ADAPTER (or adapter in [tool.unijob]) or name another backend"
        )
    return adapter


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """A message as the native worker delivered it. ``job`` is the native task or actor name, which
    decides what runs, whatever the metadata says; ``meta`` is unijob's metadata from the message
    (anything else, None included, for a message sent by plain native code: a fresh execution of
    the job, described by ``native_id``, ``queue``, ``enqueued_at`` and ``priority``)."""

    job: str
    meta: object
    args: Sequence[Any]
    kwargs: Mapping[str, Any]
    native_id: str
    queue: str | None = None
    enqueued_at: str | None = None
    priority: int | None = None

    def envelope(self) -> Envelope:
        """The job's envelope. Raises :class:`EnvelopeError` for a message that is not a valid job."""
        if not isinstance(self.args, (list, tuple)) or not isinstance(self.kwargs, Mapping):
            raise EnvelopeError(f"malformed {self.job!r} message: its arguments are not a list and an object")
        if isinstance(self.meta, Mapping):
            data = {**self.meta}
            data.setdefault("id", self.native_id)  # left out on the wire where it is the native id
        else:
            known = registry.is_registered(self.job)
            queue = self.queue or (registry.lookup(self.job).queue if known else DEFAULT_QUEUE)
            data = {"v": FORMAT_VERSION, "id": self.native_id, "queue": queue, "priority": self.priority}
            data["enqueued_at"] = self.enqueued_at
        data.update(job=self.job, args=list(self.args), kwargs=dict(self.kwargs))
        return Envelope.from_dict(data)


def run(adapter: Adapter | None, delivery: Delivery) -> Any:
    """Run a delivered message (its envelope, then :func:`deliver`). A message that is not a valid
    unijob job is refused: logged, and raised so that the native worker records the failure and
    goes on to the next message. ``adapter`` is the backend the worker serves (None: the job's own
    backend, looked up when it runs)."""
    try:
        envelope = delivery.envelope()
    except EnvelopeError as error:
        logger.error("Refused a message for %r (native id %s): %s", delivery.job, delivery.native_id, error)
        raise
    return deliver(adapter, envelope)


def deliver(adapter: Adapter | None, envelope: Envelope) -> Any:
    """Run a delivered job, unless it came before its time: then it is a hop of a long delay, and
    travels on (re-enqueued) instead. Raises :class:`EnqueueError` when the hop could not be sent."""
    if adapter is not None and adapter.capabilities.max_hold is not None and scheduling.is_early(envelope.scheduled_at):
        adapter.enqueue(envelope)
        return None
    return execute(envelope, adapter=adapter)


def give_up(delivery: Delivery, error: BaseException, adapter: Adapter | None = None) -> None:
    """The native worker gave up on a job without running it to an outcome (its worker died, it
    expired, it was dead-lettered): a final failure, counted as one (``execution.give_up``)."""
    envelope = delivery.envelope()
    if not registry.is_registered(envelope.job):
        return  # never a unijob job here: nothing counts it
    job_class = registry.lookup(envelope.job)
    try:
        job = job_class.from_envelope(envelope)
    except Error:
        job = job_class.from_envelope(envelope, arguments=False)
    execution.give_up(job, error, adapter)


def console_script(name: str, module: str | None = None) -> list[str]:
    """The command of a native console script: the one installed beside this Python, else on
    ``PATH``, else ``python -m module``."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    if found:
        return [found]
    return [sys.executable, "-m", module] if module else [name]


# --- unijob worker ------------------------------------------------------------------------------


def worker_module(adapter: Adapter) -> ModuleType:
    if adapter.worker_module is None:
        raise ConfigurationError(
            f"the {adapter.name} adapter (backend {adapter.alias!r}) runs jobs in the process that enqueues them; "
            "it has no worker to start"
        )
    return importlib.import_module(adapter.worker_module)


def launch(backend: str, queues: Sequence[str] | None, concurrency: int | None, burst: bool, echo: Callable[[str], None]) -> int:
    """Start the stock worker of ``backend`` (replacing this process), or with ``burst`` run it
    until nothing is pending on its queues; returns the exit status."""
    jobs = load_jobs()
    adapter = config.get_adapter(backend)
    module = worker_module(adapter)
    names = list(queues) if queues else queues_of(jobs)
    argv: list[str] = module.command(adapter, names, concurrency)
    pending = _pending_counter(adapter, module, names)
    if burst:
        pending()  # an unreachable broker fails here, in one line, before a worker starts
    echo(f"unijob: {len(jobs)} job(s) registered; starting: {' '.join(argv)}")
    if not burst:
        os.execvp(argv[0], argv)
    process = subprocess.Popen(argv)
    try:
        return _run_until_drained(process, pending)
    finally:
        if process.poll() is None:
            process.kill()


def inspect_lines(backends: Sequence[str] | None = None) -> list[str]:
    """What ``unijob inspect`` prints: per backend, each queue's waiting, scheduled and failed jobs
    (as far as its broker tells), then the recurring jobs with their next tick."""
    from unijob.recurring import next_tick, schedules

    settings = config.settings()
    lines = []
    queues = queues_of(registry.registered())
    for backend in backends or list(settings.backends):
        adapter = config.get_adapter(backend)
        lines.append(f"backend {backend!r}: {adapter.description}")
        if adapter.worker_module is None:
            lines.append("  runs jobs in the caller's process: no queues to inspect")
            continue
        module = worker_module(adapter)
        for queue in queues:
            try:
                now = int(module.pending(adapter, [queue], 0))
                later = int(module.pending(adapter, [queue], 10 * 365 * 86400)) - now
                failed = module.failed(adapter, [queue]) if hasattr(module, "failed") else None
            except Exception as exc:
                where = f"{adapter.display_name} at {adapter.safe_url} (backend {backend!r})"
                raise BrokerUnavailableError(f"{where} is unreachable: {type(exc).__name__}: {exc}") from exc
            failed_text = "not kept by the broker" if failed is None else str(failed)
            lines.append(f"  queue {queue}: {now} waiting or running, {later} scheduled, failed attempts: {failed_text}")
    entries = schedules()
    lines.append(f"recurring jobs: {len(entries)}")
    now_utc = scheduling.utcnow()
    for name, entry in sorted(entries.items()):
        when = entry.cron or f"every {entry.every:g}s"
        upcoming = next_tick(entry, now_utc) if entry.enabled else None
        state = f"next {upcoming.isoformat()}" if upcoming else "no tick within a year"
        state = state if entry.enabled else "disabled"
        lines.append(f"  {name}: {entry.job} {when} ({entry.timezone}), {state}")
    return lines


def _pending_counter(adapter: Adapter, module: ModuleType, queues: Sequence[str]) -> Callable[[], int]:
    def pending() -> int:
        try:
            return int(module.pending(adapter, queues, BURST_HORIZON_SECONDS))
        except Exception as exc:
            raise BrokerUnavailableError(
                f"{adapter.display_name} at {adapter.safe_url} (backend {adapter.alias!r}) is unreachable: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    return pending


def _run_until_drained(process: subprocess.Popen[bytes], pending: Callable[[], int]) -> int:
    """Stop the worker (warm shutdown) once nothing is pending on two polls in a row."""
    idle_polls = 0
    while process.poll() is None:
        idle_polls = idle_polls + 1 if pending() == 0 else 0
        if idle_polls >= 2:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
                return 0
            except subprocess.TimeoutExpired:
                process.kill()
                return 1
        time.sleep(BURST_POLL_SECONDS)
    return process.returncode
