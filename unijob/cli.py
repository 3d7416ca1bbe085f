"""The ``unijob`` command: ``demo``, ``worker``, ``enqueue``, ``inspect`` and ``scheduler``."""

from __future__ import annotations

import signal
import sys
import threading

import click

import unijob
from unijob.constants import DEFAULT_BACKEND


class _Commands(click.Group):
    """Shows a unijob error (an adapter typo, a missing extra, a broker that refused) as one line."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except unijob.Error as error:
            raise click.ClickException(str(error)) from error


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(unijob.__version__, prog_name="unijob")
def main() -> None:
    """unijob: one Job API, run by Celery, RQ, Dramatiq or Huey's own workers."""


@main.command()
@click.option(
    "--adapter", default=None, help="Adapter to run on: huey, celery, rq, dramatiq or inline (default: the configured one)."
)
@click.option("--url", default=None, help="Broker URL for that adapter.")
def demo(adapter: str | None, url: str | None) -> None:
    """Run a small example application end to end and print what happened.

    \b
    Examples:
      unijob demo                                            # Huey on a SQLite file, no server
      unijob demo --adapter rq --url redis://localhost:6379/0
      unijob demo --adapter celery --url amqp://guest:guest@localhost//
    """
    from unijob.demo import run_demo

    sys.exit(run_demo(adapter, url))


@main.command()
@click.option("--backend", default=DEFAULT_BACKEND, show_default=True, help="Which configured backend to serve.")
@click.option("-q", "--queues", default=None, help="Comma-separated queues (default: every queue a registered job uses).")
@click.option("-c", "--concurrency", type=int, default=None, help="Worker processes or threads.")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty and no delayed job is due within a few seconds.")
def worker(backend: str, queues: str | None, concurrency: int | None, burst: bool) -> None:
    """Start the backend's own stock worker with the configured job modules imported.

    \b
    Examples:
      unijob worker                       # the default backend, every queue its jobs use
      unijob worker -q mail,default -c 4
      unijob worker --backend reports --burst
    """
    from unijob import worker as workers

    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    sys.exit(workers.launch(backend, names, concurrency, burst, lambda line: click.echo(line, err=True)))


@main.command()
@click.argument("name")
@click.argument("args_json", required=False, default="[]")
@click.option("--kwargs", "kwargs_json", default="{}", help="The job's keyword arguments, a JSON object.")
@click.option("--queue", default=None, help="Another queue than the job's own.")
@click.option("--wait", type=float, default=None, help="Seconds to wait before it runs.")
@click.option("--backend", default=None, help="Another configured backend than the job's own.")
def enqueue(name: str, args_json: str, kwargs_json: str, queue: str | None, wait: float | None, backend: str | None) -> None:
    """Enqueue the registered job NAME with ARGS_JSON (a JSON list) and print its id.

    \b
    Examples:
      unijob enqueue app.jobs.send_welcome '[42]'
      unijob enqueue app.jobs.build_report '[7]' --kwargs '{"draft": true}' --queue low --wait 60
    """
    import json

    from unijob import registry, serializers
    from unijob import worker as workers

    workers.load_jobs()
    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except ValueError as exc:
        raise click.UsageError(f"ARGS_JSON and --kwargs must be JSON: {exc}") from exc
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise click.UsageError("ARGS_JSON is a JSON list and --kwargs a JSON object")
    job_class = registry.lookup(name)
    args_, kwargs_ = serializers.loads_args(args, kwargs)
    job = job_class(*args_, **kwargs_)
    options = {"queue": queue, "wait": wait, "backend": backend}
    job.apply(unijob.options.make_options(name, {key: value for key, value in options.items() if value is not None}))
    unijob.enqueuing.enqueue(job)
    if not job.successfully_enqueued:
        raise click.ClickException(str(job.enqueue_error))
    click.echo(job.job_id)


@main.command()
@click.option("--backend", "backends", multiple=True, help="A configured backend (default: every one).")
def inspect(backends: tuple[str, ...]) -> None:
    """Show each backend's queues (waiting, scheduled, failed) and the recurring jobs.

    \b
    Examples:
      unijob inspect
      unijob inspect --backend reports
    """
    from unijob import worker as workers

    workers.load_jobs()
    for line in workers.inspect_lines(list(backends) or None):
        click.echo(line)


@main.command()
@click.option("--backend", default=None, help="Enqueue on this backend rather than each job's own.")
def scheduler(backend: str | None) -> None:
    """Enqueue the recurring jobs at their times; run one per host for high availability.

    Each tick is enqueued once, however many schedulers run.

    \b
    Examples:
      unijob scheduler
    """
    from unijob import worker as workers
    from unijob.recurring import run, schedules

    workers.load_jobs()
    click.echo(f"unijob scheduler: {len(schedules())} recurring job(s); Ctrl-C stops it", err=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # finish the tick at hand: never a claimed tick left unsent
        signal.signal(signum, lambda *_: stop.set())
    run(stop, backend=backend)


if __name__ == "__main__":  # python -m unijob.cli
    main()
