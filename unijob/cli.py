"""The ``unijob`` command: ``demo`` and ``worker``."""

from __future__ import annotations

import sys

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


if __name__ == "__main__":  # python -m unijob.cli
    main()
