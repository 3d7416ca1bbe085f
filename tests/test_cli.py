from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

import unijob
from tests.harness import (
    ROOT,
    PrivateRedis,
    ensure_rabbitmq_vhost,
    free_port,
    python_bin,
    require_service,
    stop_process,
    wait_until,
)
from unijob import config
from unijob.cli import main


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.strip() == f"unijob, version {unijob.__version__}"
    help_text = runner.invoke(main, ["--help"]).output
    assert "demo" in help_text and "worker" in help_text


def test_a_configuration_error_is_one_clear_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIJOB_ADAPTER", "dramatic")
    config.reset()  # read the environment again (the test's configuration is restored afterwards)
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: unknown unijob adapter 'dramatic'; did you mean 'dramatiq'? (known: inline, test, huey, celery, rq, dramatiq)"
    )


def test_the_demo_runs_end_to_end_on_the_embedded_default(tmp_path: Path) -> None:
    """README's first command: nothing configured, so Huey on SQLite and its stock consumer."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("UNIJOB_")}
    demo = subprocess.run([python_bin("unijob"), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    header = demo.stdout.splitlines()[0]
    assert header.startswith("unijob demo on Huey on SQLite (/") and header.endswith("/unijob.sqlite3)"), header
    assert "Outcome: 8 of 8 jobs performed, 2 failed attempts retried by unijob." in demo.stdout
    assert "ok  SyncInventory: inventory of north synced on attempt 3" in demo.stdout
    assert list(tmp_path.iterdir()) == []  # its queue lives in a folder of its own, not where it was run
    assert not Path(header.rpartition("(")[2].rstrip(")")).parent.exists()  # and that folder is gone


def test_the_console_script_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "unijob", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and unijob.__version__ in result.stdout


def test_the_readme_capability_matrix_is_generated_from_the_adapters() -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "capability_matrix.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _environment(**settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("UNIJOB_")}
    env.update(settings, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    return env


@pytest.mark.parametrize("adapter", ["rq", "huey", "celery", "dramatiq"])
def test_worker_burst_with_the_broker_down_says_so_in_one_line(adapter: str, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = _environment(UNIJOB_ADAPTER=adapter, UNIJOB_URL=url, UNIJOB_IMPORTS="tests.jobs")
    result = subprocess.run(
        [python_bin("unijob"), "worker", "--burst"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and f"at {url} (backend 'default') is unreachable: " in line, line


def test_the_demo_refuses_the_test_adapter_at_once() -> None:
    result = CliRunner().invoke(main, ["demo", "--adapter", "test"])
    assert result.exit_code == 1
    assert "the test adapter records jobs and runs them only when a test asks" in result.output


@pytest.mark.parametrize("adapter", ["rq", "dramatiq"])
def test_the_demo_runs_on_an_adapter_without_priority(adapter: str, private_redis: PrivateRedis, tmp_path: Path) -> None:
    """The demo's first job has its own priority, which Redis-backed RQ and Dramatiq cannot honour:
    it runs anyway, the priority dropped."""
    demo = subprocess.run(
        [python_bin("unijob"), "demo", "--adapter", adapter, "--url", private_redis.url],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert (
        demo.stdout.splitlines()[0]
        == f"unijob demo on {adapter.upper() if adapter == 'rq' else 'Dramatiq'} at {private_redis.url}"
    )
    assert "Outcome: 8 of 8 jobs performed, 2 failed attempts retried by unijob." in demo.stdout


def test_a_job_defined_in_main_warns_when_a_worker_would_run_it(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text("import unijob\n\n@unijob.job\ndef hello() -> None: ...\n\nhello.perform_later()\nhello.perform_later()\n")
    queue = tmp_path / "queue.sqlite3"
    env = _environment(UNIJOB_ADAPTER="huey", UNIJOB_OPTIONS=json.dumps({"path": str(queue)}))
    result = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("hello is defined in __main__, which a worker never imports") == 1  # once per job
    inline = subprocess.run(
        [sys.executable, str(script)], env=_environment(UNIJOB_ADAPTER="inline"), cwd=tmp_path, capture_output=True, text=True
    )
    assert inline.returncode == 0 and "__main__" not in inline.stderr  # it runs right here: nothing to warn of


BARS_APP = """
import os
import unijob

@unijob.job(queue="bars")
def bar(n: int) -> None:
    with open(os.environ["BARS_LOG"], "a") as log:
        log.write(f"{n}\\n")
"""


def test_the_worker_serves_only_the_queues_its_jobs_use(tmp_path: Path) -> None:
    """No job uses ``default``: the worker neither asks for it (Huey refused ``-q bars``) nor
    declares it on the broker (RabbitMQ got an unused ``default`` queue)."""
    require_service("rabbitmq")
    (tmp_path / "bars.py").write_text(BARS_APP)
    log = tmp_path / "bars.log"
    vhost = f"unijob_bars_{uuid.uuid4().hex[:8]}"
    ensure_rabbitmq_vhost(vhost)
    runs = {
        "huey": ({"UNIJOB_ADAPTER": "huey", "UNIJOB_OPTIONS": json.dumps({"path": str(tmp_path / "q.sqlite3")})}, ["-q", "bars"]),
        "celery": ({"UNIJOB_ADAPTER": "celery", "UNIJOB_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}, []),
    }
    try:
        for n, (settings, queues) in enumerate(runs.values()):
            env = _environment(UNIJOB_IMPORTS="bars", BARS_LOG=str(log), **settings)
            enqueue = [sys.executable, "-c", f"import bars; bars.bar.perform_later({n})"]
            subprocess.run(enqueue, env=env, cwd=tmp_path, check=True, timeout=60)
            worker = [python_bin("unijob"), "worker", "--burst", *queues]
            result = subprocess.run(worker, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr[-3000:]
            assert log.read_text().split() == [str(i) for i in range(n + 1)]
        listed = subprocess.run(["rabbitmqctl", "list_queues", "-p", vhost, "-q", "name"], capture_output=True, text=True)
        names = set(listed.stdout.split())
        assert "bars" in names and "default" not in names, names
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, check=False)


TICKS_APP = """
import os
import unijob

@unijob.job(queue="reports")
def tick(label: str) -> None:
    at = unijob.current_job().scheduled_at
    with open(os.environ["TICKS_LOG"], "a") as log:
        log.write(f"{label} {at.isoformat() if at else '-'}\\n")
"""

TICKS_PYPROJECT = """
[tool.unijob]
adapter = "huey"
imports = ["ticks"]
options = {{ path = "{queue}" }}

[tool.unijob.recurring.every-second]
job = "ticks.tick"
every = 1
args = ["recurring"]
"""


@pytest.fixture
def ticks_project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An application with one recurring job on Huey with SQLite, configured in its pyproject.toml."""
    (tmp_path / "ticks.py").write_text(TICKS_APP)
    (tmp_path / "pyproject.toml").write_text(TICKS_PYPROJECT.format(queue=tmp_path / "queue.sqlite3"))
    env = _environment(TICKS_LOG=str(tmp_path / "ticks.log"))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    return tmp_path, env


def test_enqueue_and_inspect_from_the_command_line(ticks_project: tuple[Path, dict[str, str]]) -> None:
    folder, env = ticks_project

    def unijob_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([python_bin("unijob"), *args], env=env, cwd=folder, capture_output=True, text=True, timeout=60)

    now, later = unijob_cli("enqueue", "ticks.tick", '["now"]'), unijob_cli("enqueue", "ticks.tick", "--wait", "600")
    assert now.returncode == 0 and uuid.UUID(now.stdout.strip()), now.stderr
    assert later.returncode == 1 and later.stderr == "Error: tick(label): missing a required argument: 'label'\n"
    later = unijob_cli("enqueue", "ticks.tick", "--kwargs", '{"label": "later"}', "--wait", "600")
    assert later.returncode == 0, later.stderr
    unknown = unijob_cli("enqueue", "ticks.tock")
    assert unknown.returncode == 1 and "'ticks.tock': no job of that name is registered" in unknown.stderr
    shown = unijob_cli("inspect")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"backend 'default': Huey on SQLite ({folder / 'queue.sqlite3'})"
    assert lines[1] == "  queue reports: 1 waiting or running, 1 scheduled, failed attempts: not kept by the broker"
    assert lines[2:4] == ["recurring jobs: 1", lines[3]] and lines[3].startswith(
        "  every-second: ticks.tick every 1s (UTC), next 20"
    )
    for command in ("enqueue", "inspect", "scheduler"):
        assert "  Examples:\n    unijob " + command in unijob_cli(command, "--help").stdout


def test_two_schedulers_enqueue_each_tick_once(ticks_project: tuple[Path, dict[str, str]]) -> None:
    folder, env = ticks_project
    log = folder / "ticks.log"
    started = [
        subprocess.Popen([python_bin("unijob"), command], env=env, cwd=folder, start_new_session=True)
        for command in ("scheduler", "scheduler", "worker")
    ]
    schedulers = started[:2]
    try:
        wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 4, timeout=60, message="four ticks to run")
        for scheduler in schedulers:
            scheduler.terminate()
        assert [scheduler.wait(timeout=30) for scheduler in schedulers] == [0, 0]  # SIGTERM: a clean stop
    finally:
        for process in started:
            stop_process(process)
    result = subprocess.run([python_bin("unijob"), "worker", "--burst"], env=env, cwd=folder, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    ticks = [dt.datetime.fromisoformat(line.split()[1]) for line in log.read_text().splitlines()]
    assert len(ticks) == len(set(ticks)) >= 4  # none twice
    assert sorted(ticks) == [min(ticks) + dt.timedelta(seconds=n) for n in range(len(ticks))]  # and none missed
