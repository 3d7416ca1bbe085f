"""Celery beat runs unijob's recurring jobs, each tick once with two beat processes."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import uuid
from pathlib import Path

from tests.harness import ROOT, python_bin, require_service, stop_process, wait_until

TICKS_APP = """
import os
import unijob

@unijob.job(queue="{queue}")
def tick() -> None:
    at = unijob.current_job().scheduled_at
    with open(os.environ["TICKS_LOG"], "a") as log:
        log.write(f"{{at.isoformat()}}\\n")
"""

PYPROJECT = """
[tool.unijob]
adapter = "celery"
url = "redis://127.0.0.1:6379/0"
imports = ["beat_app"]

[tool.unijob.recurring.{name}]
job = "beat_app.tick"
every = 1
"""


def test_two_celery_beats_enqueue_each_tick_of_a_recurring_job_once(tmp_path: Path) -> None:
    require_service("redis")
    token = uuid.uuid4().hex[:12]
    (tmp_path / "beat_app.py").write_text(TICKS_APP.format(queue=f"beat-{token}"))
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.format(name=f"every-second-{token}"))
    log = tmp_path / "ticks.log"
    env = {name: value for name, value in os.environ.items() if not name.startswith("UNIJOB_")}
    env.update(TICKS_LOG=str(log), PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    beat = [python_bin("celery"), "-A", "unijob.adapters.celery_worker", "beat", "-S", "unijob.contrib.celery_beat:Scheduler"]
    commands = [
        [*beat, "-s", str(tmp_path / "beat-1"), "--pidfile", str(tmp_path / "beat-1.pid")],
        [*beat, "-s", str(tmp_path / "beat-2"), "--pidfile", str(tmp_path / "beat-2.pid")],
        [python_bin("unijob"), "worker"],
    ]
    output = [(tmp_path / f"process-{n}.log").open("wb") for n in range(len(commands))]
    started = [
        subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        for argv, out in zip(commands, output, strict=True)
    ]

    def logs() -> str:
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in sorted(tmp_path.glob("process-*.log")))

    def all_alive() -> None:
        if any(process.poll() is not None for process in started):
            raise AssertionError(f"a beat or the worker exited:\n{logs()}")

    try:
        wait_until(
            lambda: log.exists() and len(log.read_text().splitlines()) >= 4,
            timeout=90,
            tick=all_alive,
            message="four ticks to run",
        )
        for beat_process in started[:2]:
            stop_process(beat_process)
        wait_until(lambda: _drained(log), timeout=30, message="the worker to run what beat enqueued")
    finally:
        for process in started:
            stop_process(process)
        for out in output:
            out.close()
    ticks = [dt.datetime.fromisoformat(line) for line in log.read_text().splitlines()]
    assert len(ticks) == len(set(ticks)) >= 4, logs()  # none twice
    assert sorted(ticks) == [min(ticks) + dt.timedelta(seconds=n) for n in range(len(ticks))]  # and none missed


def _drained(log: Path) -> bool:
    """No line added for a second: what the stopped beats enqueued has run."""
    before = log.read_text()
    try:
        wait_until(lambda: log.read_text() != before, timeout=1.5, message="")
    except AssertionError:
        return True
    return False
