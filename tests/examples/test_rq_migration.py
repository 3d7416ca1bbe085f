"""docs/migrating-from-rq.md, step by step, on the stock workers and real Redis.

examples/rq_reports is the project as a team has it before unijob, and stays that way. Each test
builds the project of one step in a folder of its own: the example's files with the guide's edits
of every step so far applied (``STEPS``), and the pyproject.toml the guide shows. It runs the
guide's worker commands (``COMMANDS``) in that folder, on a redis-server of the test's own, and
calls the project's own call sites and status screen in this process, as its web app would.
``test_the_guide_shows_every_edit_command_and_setting`` checks that the guide shows each of them,
so the guide and what is tested here cannot drift apart.

What the jobs did is read from the reports store (db 1 of the test's Redis), where each run of
a job leaves a line saying what ran, when, and which worker program ran it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib
import json
import math
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import rq
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from tests.harness import LOG_DIR, ROOT, PrivateRedis, python_bin, stop_process, wait_until
from unijob import config

EXAMPLE = ROOT / "examples" / "rq_reports"
GUIDE = ROOT / "docs" / "migrating-from-rq.md"
GUIDE_URL = "redis://localhost:6379/0"  # what the guide says; each test has a redis-server of its own
TIMEOUT = 60.0  # bound on every wait for a worker (the machine may be busy)
DIGEST_DELAY = dt.timedelta(seconds=2)


@dataclasses.dataclass(frozen=True)
class Edit:
    """Replace ``old`` (which must occur exactly once) with ``new`` in ``rq_reports/<file>``; an
    empty ``old`` appends. The guide shows every line of ``new``."""

    file: str
    old: str
    new: str


ADOPTIONS = """

# unijob's worker runs only adopted functions; adopting one changes nothing for its callers.
adopt(build_report)
adopt(send_digest)
adopt(upload_export, retry=Retry(max=2, interval=1))  # unijob's worker leaves RQ's Retry to this line
adopt(refresh_cache)
"""
JSON_QUEUE = 'Queue("default", connection=redis_conn, serializer=JSONSerializer)'

STEPS: dict[str, list[Edit]] = {
    "0": [  # RQ's JSON serializer everywhere: producers, the decorator's queue, the status screen
        Edit(
            "app.py", "from rq import Queue, Retry\n", "from rq import Queue, Retry\nfrom rq.serializers import JSONSerializer\n"
        ),
        Edit("app.py", 'queue = Queue("default", connection=redis_conn)\n', f"queue = {JSON_QUEUE}\n"),
        Edit(
            "tasks.py",
            "from rq.decorators import job\n",
            "from rq import Queue\nfrom rq.decorators import job\nfrom rq.serializers import JSONSerializer\n",
        ),
        Edit("tasks.py", '@job("default", connection=redis_conn)\n', f"@job({JSON_QUEUE}, connection=redis_conn)\n"),
        Edit("status.py", "from rq.job import Job\n", "from rq.job import Job\nfrom rq.serializers import JSONSerializer\n"),
        Edit(
            "status.py",
            "Job.fetch(job_id, connection=redis_conn)",
            "Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)",
        ),
    ],
    "1": [  # adopt every function where it is defined (the worker switch is in COMMANDS)
        Edit(
            "tasks.py",
            "from rq.serializers import JSONSerializer\n",
            "from rq.serializers import JSONSerializer\nfrom unijob.contrib.rq import Retry, adopt\n",
        ),
        Edit("tasks.py", "", ADOPTIONS),
    ],
    "2a": [  # unijob's @job decorator; one call site on unijob's Queue, the others still on RQ's
        Edit("tasks.py", "from rq.decorators import job\n", ""),
        Edit("tasks.py", "from unijob.contrib.rq import Retry, adopt\n", "from unijob.contrib.rq import Retry, adopt, job\n"),
        Edit("tasks.py", "adopt(refresh_cache)\n", ""),
        Edit(
            "app.py",
            "from rq.serializers import JSONSerializer\n",
            "from rq.serializers import JSONSerializer\nfrom unijob.contrib import rq as unijob_rq\n",
        ),
        Edit("app.py", f"queue = {JSON_QUEUE}\n", f'queue = {JSON_QUEUE}\nunijob_queue = unijob_rq.Queue("default")\n'),
        Edit("app.py", "return queue.enqueue(build_report,", "return unijob_queue.enqueue(build_report,"),
    ],
    "2": [  # every call site on unijob's Queue
        Edit("app.py", "from rq import Queue, Retry\n", ""),
        Edit("app.py", "from unijob.contrib import rq as unijob_rq\n", "from unijob.contrib.rq import Queue, Retry\n"),
        Edit("app.py", 'unijob_queue = unijob_rq.Queue("default")\n', ""),
        Edit("app.py", "return unijob_queue.enqueue(build_report,", "return queue.enqueue(build_report,"),
    ],
    "3": [  # the status screen reads unijob's records
        Edit("status.py", "from rq.exceptions import NoSuchJobError\nfrom rq.job import Job\n", ""),
        Edit(
            "status.py",
            "from rq.serializers import JSONSerializer\n",
            "from rq.serializers import JSONSerializer\nfrom unijob.contrib.rq import Job, NoSuchJobError\n",
        ),
    ],
    "4": [],  # configuration only: a second backend and routes (PYPROJECT), and its worker
    "5": [  # plain unijob jobs and the Job API at the call sites
        Edit(
            "tasks.py",
            "from rq import Queue\nfrom rq.serializers import JSONSerializer\nfrom unijob.contrib.rq import Retry, adopt, job\n",
            "import unijob\nfrom unijob.contrib.rq import Retry, job\n",
        ),
        Edit("tasks.py", "from .settings import redis_conn, store\n", "from .settings import store\n"),
        Edit("tasks.py", "def build_report(", "@unijob.job(store_result=True)\ndef build_report("),
        Edit("tasks.py", "def send_digest(", "@unijob.job(store_result=True)\ndef send_digest("),
        Edit("tasks.py", "def upload_export(", '@job("default", retry=Retry(max=2, interval=1))\ndef upload_export('),
        Edit("tasks.py", f"@job({JSON_QUEUE}, connection=redis_conn)\n", "@unijob.job(store_result=True)\n"),
        Edit("tasks.py", ADOPTIONS.replace("adopt(refresh_cache)\n", ""), ""),
        Edit(
            "app.py",
            "from rq.serializers import JSONSerializer\nfrom unijob.contrib.rq import Queue, Retry\n\n"
            "from .settings import redis_conn\n",
            "",
        ),
        Edit("app.py", f"queue = {JSON_QUEUE}\n\n", ""),
        Edit(
            "app.py",
            'return queue.enqueue(build_report, report_id, "monthly").id',
            'return build_report.perform_later(report_id, "monthly").job_id',
        ),
        Edit(
            "app.py",
            "return queue.enqueue(upload_export, report_id, retry=Retry(max=2, interval=1)).id",
            "return upload_export.perform_later(report_id).job_id",
        ),
        Edit(
            "app.py",
            "return queue.enqueue_in(delay, send_digest, user_id).id",
            "return send_digest.set(wait=delay).perform_later(user_id).job_id",
        ),
        Edit("app.py", "return refresh_cache.delay(key).id", "return refresh_cache.perform_later(key).job_id"),
    ],
}
ORDER = list(STEPS)

UNIJOB_SETTINGS = """\
[tool.unijob]
adapter = "rq"
url = "redis://localhost:6379/0"
imports = ["rq_reports.tasks"]
"""
SECOND_BACKEND = """\

[tool.unijob.backends.next]
adapter = "huey"
path = "reports-jobs.sqlite3"

[tool.unijob.routes]
"rq_reports.tasks.send_digest" = "next"
"rq_reports.tasks.build_report" = { backend = "next", percent = 10 }
"""
PYPROJECT = {"1": UNIJOB_SETTINGS, "4": UNIJOB_SETTINGS + SECOND_BACKEND}  # from that step on

COMMANDS = {
    "as it is": "rq worker --with-scheduler --url redis://localhost:6379/0 default",
    "json": "rq worker --with-scheduler --url redis://localhost:6379/0 --serializer json default",
    "unijob": "rq worker --with-scheduler --url redis://localhost:6379/0 "
    "--worker-class unijob.adapters.rq_worker.Worker --job-class unijob.adapters.rq_worker.Job --serializer json default",
    "huey": "UNIJOB_HUEY_BACKEND=next huey_consumer unijob.adapters.huey_worker.huey -k thread -w 2 -m 1 -g TERM",
}


def build(step: str | None, folder: Path, url: str) -> Path:
    """The project as it is after ``step`` (None: as it is), with the guide's URL made ``url``."""
    package = folder / "rq_reports"
    package.mkdir(parents=True)
    for source in EXAMPLE.glob("*.py"):
        shutil.copy(source, package / source.name)
    settings = ""
    for name in ORDER[: ORDER.index(step) + 1] if step is not None else []:
        for edit in STEPS[name]:
            path = package / edit.file
            text = path.read_text()
            if edit.old:
                assert text.count(edit.old) == 1, f"step {name}: {edit.old!r} is not in {edit.file} exactly once"
                text = text.replace(edit.old, edit.new)
            else:
                text += edit.new
            path.write_text(text)
        settings = PYPROJECT.get(name, settings)
    if settings:
        (folder / "pyproject.toml").write_text(settings.replace(GUIDE_URL, url))
    return folder


class Workers:
    """The stock workers of one test, started from the guide's commands in the project's folder."""

    def __init__(self, folder: Path, url: str, env: dict[str, str]) -> None:
        self.folder, self.url, self.env = folder, url, env
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, command: str) -> None:
        argv = shlex.split(command.replace(GUIDE_URL, self.url))
        env = dict(self.env)
        while re.match(r"^[A-Z_]+=", argv[0]):
            name, _, value = argv.pop(0).partition("=")
            env[name] = value
        argv[0] = python_bin(argv[0])
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = LOG_DIR / f"rq-migration-{self.folder.name}-{len(self.running)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                argv, cwd=self.folder, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running.append((process, log))

    def check(self) -> None:
        for process, _ in self.running:
            if process.poll() is not None:
                raise AssertionError(f"{process.args} exited with {process.returncode}:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for _, log in self.running)

    def stop(self) -> None:
        for process, _ in self.running:
            stop_process(process)
        self.running = []


def project_modules() -> list[str]:
    return [name for name in sys.modules if name == "rq_reports" or name.startswith("rq_reports.")]


class Step:
    """One step's project: its folder, its workers, and its code imported in this process."""

    def __init__(self, step: str | None, root: Path, server: PrivateRedis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.step = step
        self.url = server.url
        self.store = redis.Redis(port=server.port, db=1, decode_responses=True)
        self.folder = build(step, root / f"step-{step or 'as-it-is'}", server.url)
        env = {name: value for name, value in os.environ.items() if not name.startswith("UNIJOB_")}
        env.update(REPORTS_REDIS_URL=server.url, REPORTS_STORE_URL=f"redis://127.0.0.1:{server.port}/1", PYTHONUNBUFFERED="1")
        for name in config.ENVIRONMENT:  # the project's pyproject.toml configures unijob, in its folder
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("REPORTS_REDIS_URL", env["REPORTS_REDIS_URL"])
        monkeypatch.setenv("REPORTS_STORE_URL", env["REPORTS_STORE_URL"])
        self.workers = Workers(self.folder, server.url, env)
        self.monkeypatch = monkeypatch

    @contextlib.contextmanager
    def code(self) -> Iterator[types.SimpleNamespace]:
        """The step's ``app`` and ``status`` modules, imported from its folder, as its web app does."""
        for name in project_modules():
            del sys.modules[name]
        self.monkeypatch.chdir(self.folder)
        sys.path.insert(0, str(self.folder))
        importlib.invalidate_caches()
        config.reset()
        try:
            app = importlib.import_module("rq_reports.app")
            status = importlib.import_module("rq_reports.status")
            assert Path(app.__file__ or "").parent == self.folder / "rq_reports"
            yield types.SimpleNamespace(app=app, status=status)
        finally:
            sys.path.remove(str(self.folder))
            for name in project_modules():
                del sys.modules[name]
            config.reset()

    # --- what the jobs did ---------------------------------------------------------------------

    def runs(self, kind: str | None = None, key: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(line) for line in self.store.lrange("rq_reports:runs", 0, -1)]
        return [run for run in found if kind in (None, run["kind"]) and key in (None, run["key"])]

    def wait(self, condition: Callable[[], Any], message: str) -> Any:
        try:
            return wait_until(condition, timeout=TIMEOUT, interval=0.05, tick=self.workers.check, message=message)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.workers.logs()}") from None

    def wait_status(self, code: types.SimpleNamespace, job_id: str, status: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            shown: dict[str, Any] = code.status.report_status(job_id)
            return shown if shown["status"] == status else None

        found: dict[str, Any] = self.wait(reached, f"job {job_id} to be {status}")
        return found


@pytest.fixture
def make_step(
    private_redis: PrivateRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str | None], Step]]:
    steps: list[Step] = []

    def make(step: str | None) -> Step:
        steps.append(Step(step, tmp_path, private_redis, monkeypatch))
        return steps[-1]

    yield make
    for step in steps:
        step.workers.stop()


def token() -> str:
    return uuid.uuid4().hex[:12]


@dataclasses.dataclass
class Calls:
    """One round of the project's call sites, and what it saw."""

    started: float
    report: str
    export: str
    digest: str
    cache: str
    names: dict[str, str]


def call_everything(code: types.SimpleNamespace) -> Calls:
    names = {kind: f"{kind}-{token()}" for kind in ("report", "export", "user", "cache")}
    started = time.time()
    return Calls(
        started=started,
        report=code.app.request_report(names["report"]),
        export=code.app.export_report(names["export"]),
        digest=code.app.schedule_digest(names["user"], DIGEST_DELAY),
        cache=code.app.warm_cache(names["cache"]),
        names=names,
    )


def check_everything_ran(step: Step, code: types.SimpleNamespace, calls: Calls, *, export_result: str | None) -> None:
    """Every job of ``calls`` ran once (the export three times: it fails twice, and is retried),
    the digest not before its delay, and the status screen shows each outcome."""
    names = calls.names
    step.wait(lambda: step.runs("upload", names["export"])[2:], "the export's third attempt")
    step.wait(lambda: step.runs("digest", names["user"]) and step.runs("cache", names["cache"]), "the digest and the cache")
    report = step.wait(lambda: step.store.get(f"rq_reports:report:{names['report']}"), "the report")
    assert step.wait_status(code, calls.report, "finished")["result"] == json.loads(report)
    assert step.wait_status(code, calls.cache, "finished")["result"] == 100 * len(names["cache"])
    (digest,) = step.runs("digest", names["user"])
    due = calls.started + DIGEST_DELAY.total_seconds()
    if type(getattr(code.app, "queue", None)).__module__ == "rq.queue":
        due = math.floor(due)  # RQ's own enqueue_in keeps whole seconds, rounded down; unijob rounds up
    assert digest["at"] >= due, "the digest ran before its delay"
    assert step.wait_status(code, calls.export, "finished")["result"] == export_result
    # the third upload succeeded and the export is finished: nothing more is due to run
    assert [run["attempt"] for run in step.runs("upload", names["export"])] == [1, 2, 3]
    assert len(step.runs("digest", names["user"])) == 1 and len(step.runs("report", names["report"])) == 1


def queued_then_started(step: Step, code: types.SimpleNamespace, *commands: str) -> tuple[str, str]:
    """A report requested before any worker runs is queued on the status screen; then the
    workers start (``commands``), and it finishes with the report as its result."""
    name = f"report-{token()}"
    job_id = code.app.request_report(name)
    assert code.status.report_status(job_id)["status"] == "queued"
    for command in commands:
        step.workers.start(command)
    finished = step.wait_status(code, job_id, "finished")
    assert finished["result"] == json.loads(step.store.get(f"rq_reports:report:{name}") or "null")
    assert code.status.report_status("no-such-job") == {"id": "no-such-job", "status": "unknown", "result": None}
    return name, job_id


# --- the guide -----------------------------------------------------------------------------------


def test_the_guide_shows_every_edit_command_and_setting() -> None:
    guide = GUIDE.read_text()
    flat = " ".join(guide.replace("\\\n", " ").split())
    for name, edits in STEPS.items():
        for edit in edits:
            for line in edit.new.splitlines():
                assert line.strip() in guide, f"step {name}: the guide does not show {line.strip()!r} ({edit.file})"
    for settings in PYPROJECT.values():
        for line in settings.splitlines():
            assert line.strip() in guide, f"the guide does not show the setting {line.strip()!r}"
    for command in COMMANDS.values():
        assert " ".join(command.split()) in flat, f"the guide does not show the command {command!r}"


def test_every_step_applies_to_the_example(tmp_path: Path) -> None:
    for step in [None, *ORDER]:
        folder = build(step, tmp_path / f"step-{step}", "redis://127.0.0.1:1/0")
        for path in sorted(folder.rglob("*.py")):
            compile(path.read_text(), str(path), "exec")  # every step's code is valid Python


# --- the steps -----------------------------------------------------------------------------------


def test_as_it_is_the_example_runs_on_rq(make_step: Callable[[str | None], Step]) -> None:
    """Before the guide: pickle, RQ's own worker, RQ's own Retry."""
    step = make_step(None)
    with step.code() as code:
        queued_then_started(step, code, COMMANDS["as it is"])
        calls = call_everything(code)
        check_everything_ran(step, code, calls, export_result=f"s3://reports/{calls.names['export']}.json")
    assert {run["worker"] for run in step.runs()} == {"rq"}


def test_step_0_json_serializer_runs_unchanged(make_step: Callable[[str | None], Step]) -> None:
    """The same jobs on RQ's JSON serializer; a job pickled before the switch is not run by the
    JSON worker, but failed (what the guide says of jobs already queued)."""
    step = make_step("0")
    connection = redis.Redis.from_url(step.url)
    pickled = rq.Queue("default", connection=connection).enqueue("rq_reports.tasks.send_digest", "pickled-before")
    with step.code() as code:
        queued_then_started(step, code, COMMANDS["json"])
        calls = call_everything(code)
        check_everything_ran(step, code, calls, export_result=f"s3://reports/{calls.names['export']}.json")
    assert {run["worker"] for run in step.runs()} == {"rq"}
    assert pickled.id in FailedJobRegistry("default", connection=connection, serializer=JSONSerializer).get_job_ids()
    assert step.runs("digest", "pickled-before") == []


def test_step_1_unijob_worker_runs_the_plain_rq_call_sites(make_step: Callable[[str | None], Step]) -> None:
    """Every call site is still plain RQ; unijob's worker and job classes run the jobs. The export
    is retried by unijob (adopt(retry=...)): each attempt is an RQ job of its own, so RQ's status
    of the first one is finished without a value (the guide says so; step 3 shows the value)."""
    step = make_step("1")
    with step.code() as code:
        queued_then_started(step, code, COMMANDS["unijob"])
        calls = call_everything(code)
        check_everything_ran(step, code, calls, export_result=None)
        last_attempt = code.status.report_status(f"{calls.export}-2")
    assert last_attempt["status"] == "finished" and last_attempt["result"] == f"s3://reports/{calls.names['export']}.json"
    assert {run["worker"] for run in step.runs()} == {"rq"}


def test_step_2_adopted_functions_run_through_the_unijob_queue_and_delay(make_step: Callable[[str | None], Step]) -> None:
    """2a: unijob's @job (so .delay goes through unijob) and one call site on unijob's Queue, the
    others still on RQ's; 2: every call site on unijob's Queue. One worker serves both: the
    functions (tasks.py) are the same."""
    half = make_step("2a")
    of_2 = build("2", half.folder.parent / "tasks-of-2", half.url) / "rq_reports" / "tasks.py"
    assert (half.folder / "rq_reports" / "tasks.py").read_text() == of_2.read_text()
    with half.code() as code:
        queued_then_started(half, code, COMMANDS["unijob"])
        assert type(code.app.unijob_queue).__module__ == "unijob.contrib.rq" and type(code.app.queue).__module__ == "rq.queue"
        check_everything_ran(half, code, call_everything(code), export_result=None)
    whole = make_step("2")
    whole.workers = half.workers  # the worker of 2a runs the same functions
    with whole.code() as code:
        assert type(code.app.queue).__module__ == "unijob.contrib.rq"
        check_everything_ran(whole, code, call_everything(code), export_result=None)
    assert {run["worker"] for run in half.runs()} == {"rq"}


def test_step_3_status_screen_reads_unijob(make_step: Callable[[str | None], Step]) -> None:
    """queued -> finished with the return value, an unknown id raises NoSuchJobError (which the
    screen catches), a delayed job is scheduled, and a retried job shows its final value."""
    step = make_step("3")
    with step.code() as code:
        assert code.status.Job.__module__ == "unijob.contrib.rq"
        with pytest.raises(code.status.NoSuchJobError):
            code.status.Job.fetch("no-such-job")
        queued_then_started(step, code, COMMANDS["unijob"])
        calls = call_everything(code)
        assert code.status.report_status(calls.digest)["status"] == "scheduled"
        check_everything_ran(step, code, calls, export_result=f"s3://reports/{calls.names['export']}.json")


REPORTS = 30  # calls of build_report in step 4, a tenth of them routed


@pytest.fixture
def seeded() -> Iterator[int]:
    """A route's share is drawn with ``random``: seeded, the test knows the draws beforehand."""
    state = random.getstate()
    seed = 20260101
    random.seed(seed)
    yield seed
    random.setstate(state)


def routed_draws(seed: int, calls: int, percent: float) -> list[bool]:
    replay = random.Random(seed)
    return [replay.random() * 100 < percent for _ in range(calls)]


@pytest.mark.parametrize("name", ["4", "5"])
def test_step_4_and_5_a_route_moves_calls_to_a_second_backend(
    make_step: Callable[[str | None], Step], seeded: int, name: str
) -> None:
    """Every send_digest and a tenth of the build_report calls go to the Huey backend, run by its
    stock consumer beside the RQ worker; the status screen finds each job where it went."""
    step = make_step(name)
    with step.code() as code:
        _, probe = queued_then_started(step, code, COMMANDS["unijob"], COMMANDS["huey"])
        calls = call_everything(code)
        check_everything_ran(step, code, calls, export_result=f"s3://reports/{calls.names['export']}.json")
        reports = {f"many-{n}-{token()}": "" for n in range(REPORTS)}
        for report in reports:
            reports[report] = code.app.request_report(report)
        for job_id in reports.values():
            step.wait_status(code, job_id, "finished")
        backends = [code.status.Job.fetch(job_id).backend for job_id in [probe, calls.report, *reports.values()]]
    ran_by = {run["key"]: run["worker"] for run in step.runs("report")}
    assert [ran_by[report] for report in reports] == ["huey_consumer" if b == "next" else "rq" for b in backends[2:]]
    expected = routed_draws(seeded, REPORTS + 2, 10)
    assert [backend == "next" for backend in backends] == expected and 0 < sum(expected[2:]) < REPORTS
    assert {run["worker"] for run in step.runs("digest")} == {"huey_consumer"}
    assert {run["worker"] for run in step.runs("upload")} == {"rq"}
