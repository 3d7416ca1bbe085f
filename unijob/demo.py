"""``unijob demo``: a small application run end to end on the configured (by default embedded) backend.

It enqueues a single job, a delayed job, a bulk of jobs and a job that fails twice before it
succeeds, starts the backend's stock worker (``unijob worker --burst``), follows what the worker
does, and prints the outcome. The jobs below are the example application.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

import unijob
from unijob import config
from unijob.constants import DEFAULT_BACKEND
from unijob.errors import ConfigurationError

DEMO_LOG_ENV = "UNIJOB_DEMO_LOG"
TIMEOUT_SECONDS = 90


def _note(event: str, **data: Any) -> None:
    """Jobs report to the demo through a JSON-lines file, since they may run in another process."""
    job = unijob.current_job()
    entry = {"event": event, "job": job.display_name if job else "?", "executions": job.executions if job else 0, **data}
    with open(os.environ[DEMO_LOG_ENV], "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


@unijob.job(queue="mail", priority=10)
def send_welcome(user_id: int) -> None:
    _note("performed", detail=f"welcome mail to user {user_id}")


@unijob.job(queue="images")
def resize_image(image_id: int, size: tuple[int, int]) -> None:
    _note("performed", detail=f"image {image_id} resized to {size[0]}x{size[1]}")


class SyncInventory(unijob.Job):
    """Fails twice with a ConnectionError, then succeeds: unijob retries it after a second each time."""

    retry_on = unijob.retry_on(ConnectionError, wait=1, attempts=3, jitter=0)

    def perform(self, warehouse: str) -> None:
        if self.executions < 3:
            _note("failed", detail=f"attempt {self.executions}: warehouse {warehouse} unreachable")
            raise ConnectionError(f"warehouse {warehouse} unreachable")
        _note("performed", detail=f"inventory of {warehouse} synced on attempt {self.executions}")


EXPECTED_PERFORMED = 8  # 1 welcome + 1 delayed welcome + 5 resizes + 1 sync


def run_demo(adapter_name: str | None, url: str | None) -> int:
    default = config.settings().backends[DEFAULT_BACKEND]
    adapter_name = adapter_name or default.adapter
    if adapter_name == "test":
        raise ConfigurationError(
            "the test adapter records jobs and runs them only when a test asks; run the demo on inline or on a real adapter"
        )
    workdir = Path(tempfile.mkdtemp(prefix="unijob-demo-"))
    succeeded = False
    try:
        succeeded = _run(adapter_name, url, default, workdir)
    finally:
        if succeeded:
            shutil.rmtree(workdir, ignore_errors=True)
        else:  # keep the worker's log for whoever reads the failure
            click.echo(f"The demo did not finish: see the worker's log in {workdir}", err=True)
    return 0 if succeeded else 1


def _run(adapter_name: str, url: str | None, default: config.BackendSettings, workdir: Path) -> bool:
    log_path = workdir / "demo-log.jsonl"
    log_path.touch()
    os.environ[DEMO_LOG_ENV] = str(log_path)
    same = adapter_name == default.adapter
    options = dict(default.options) if same else {}
    if adapter_name == "huey" and not url and "path" not in options:
        options["path"] = str(workdir / "unijob.sqlite3")  # keep the demo's queue out of the current folder
    unijob.configure(adapter_name, url or (default.url if same else None), imports=[__name__], **options)
    adapter = unijob.get_adapter()
    click.echo(f"unijob demo on {adapter.description}")

    started = time.monotonic()
    click.echo("\nEnqueueing:")
    single = send_welcome.perform_later(42)
    click.echo(f"  send_welcome(42)                      job {single.job_id}")
    delayed = send_welcome.set(wait=2).perform_later(7)
    click.echo(f"  send_welcome(7), in 2 seconds         job {delayed.job_id}")
    images = [resize_image.new(image_id, (640, 480)) for image_id in range(1, 6)]
    count = unijob.perform_all_later(images)
    click.echo(f"  resize_image x5 in one bulk call      {count} enqueued")
    flaky = SyncInventory.perform_later("north")
    click.echo(f"  SyncInventory('north'), fails twice   job {flaky.job_id}")

    worker = None if adapter.capabilities.in_process else _start_worker(workdir)
    click.echo("\nWorker progress:" if worker else "\nThe inline adapter ran each job as it was enqueued:")
    seen = 0
    deadline = time.monotonic() + TIMEOUT_SECONDS
    entries: list[dict[str, Any]] = []
    while True:
        entries = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
        for entry in entries[seen:]:
            mark = "ok " if entry["event"] == "performed" else "err"
            click.echo(f"  [{time.monotonic() - started:5.1f}s] {mark} {entry['job']}: {entry['detail']}")
        seen = len(entries)
        performed = sum(entry["event"] == "performed" for entry in entries)
        if performed >= EXPECTED_PERFORMED or time.monotonic() > deadline:
            break
        if worker is not None and worker.poll() is not None:
            break
        time.sleep(0.1)
    if worker is not None:
        _stop(worker)

    failures = sum(entry["event"] == "failed" for entry in entries)
    click.echo(f"\nOutcome: {performed} of {EXPECTED_PERFORMED} jobs performed, {failures} failed attempts retried by unijob.")
    return bool(performed == EXPECTED_PERFORMED)


def _start_worker(workdir: Path) -> subprocess.Popen[bytes]:
    spec = config.settings().backends[DEFAULT_BACKEND]
    env = dict(os.environ)
    env.update(
        UNIJOB_ADAPTER=spec.adapter,
        UNIJOB_IMPORTS=__name__,
        UNIJOB_OPTIONS=json.dumps(dict(spec.options)),
    )
    if spec.url:
        env["UNIJOB_URL"] = spec.url
    log = (workdir / "worker.log").open("wb")  # the stock worker's own log, kept out of the demo's output
    click.echo(f"\nStarting the stock worker: unijob worker --burst (its log: {workdir / 'worker.log'})")
    return subprocess.Popen([sys.executable, "-m", "unijob", "worker", "--burst"], env=env, cwd=workdir, stdout=log, stderr=log)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    try:
        worker.wait(timeout=30)  # --burst exits by itself once the queues are drained
    except subprocess.TimeoutExpired:
        worker.terminate()
        worker.wait(timeout=30)
