"""The ``unijob`` command: ``demo`` and ``worker``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import click

import unijob
from unijob import config
from unijob.worker import load_jobs, queues_of

BURST_POLL_SECONDS = 0.5
BURST_HORIZON_SECONDS = 5.0  # --burst waits for delayed jobs due this soon


class _Commands(click.Group):
    """Shows a unijob error (a backend typo, a missing extra, a broker that refused) as one line."""

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
@click.option("--backend", "backend_name", default=None, help="Backend to run on (default: the configured default).")
@click.option("--url", default=None, help="Broker URL for that backend.")
def demo(backend_name: str | None, url: str | None) -> None:
    """Run a small example application end to end and print what happened."""
    from unijob.demo import run_demo

    sys.exit(run_demo(backend_name, url))


@main.command()
@click.option("--backend", "alias", default=config.DEFAULT_ALIAS, show_default=True, help="Which configured backend to serve.")
@click.option("-q", "--queues", default=None, help="Comma-separated queues (default: every queue a registered job uses).")
@click.option("-c", "--concurrency", type=int, default=None, help="Worker processes or threads.")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty and no delayed job is due within a few seconds.")
def worker(alias: str, queues: str | None, concurrency: int | None, burst: bool) -> None:
    """Start the backend's own stock worker with the configured job modules imported."""
    jobs = load_jobs()
    adapter = config.get_adapter(alias)
    queue_names = [q.strip() for q in queues.split(",") if q.strip()] if queues else queues_of(jobs)
    argv = adapter.worker_argv(queue_names, concurrency, burst)
    click.echo(f"unijob: {len(jobs)} job(s) registered; starting: {' '.join(argv)}", err=True)
    if not burst:
        os.execvp(argv[0], argv)
    process = subprocess.Popen(argv)
    try:
        sys.exit(_run_until_drained(process, lambda: adapter.pending_jobs(queue_names, BURST_HORIZON_SECONDS)))
    finally:
        if process.poll() is None:
            process.kill()


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


if __name__ == "__main__":  # python -m unijob.cli
    main()
