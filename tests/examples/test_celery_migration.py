"""docs/migrating-from-celery.md, step by step, on real brokers: examples/celery_shop as the guide
moves it, run by its own stock ``celery -A examples.celery_shop worker`` on a private redis-server
and on a RabbitMQ vhost of its own.

Each step's project is a folder of its own: a copy of examples/celery_shop with the edits of that
step and of the steps before it, exactly as the guide shows them (``EDITS``; the first test checks
that the guide shows each one word for word). The example stays the project as a team has it
before unijob, with nothing in it about steps, and each folder is what the team has after a step.
Everything of the project runs in processes started in that folder, as in a deployment: its
worker (the same command at every step), a script that uses its call sites (``SCRIPT``: it places
an order, charges, reserves, sends the newsletter, and sends tasks by name as plain Celery code
elsewhere would), and its own test suite. What the tasks did is read from the shop's ledger in
Redis (db 15 of the private server).

Each step's worker is started once per broker, for all of that step's checks; the script waits for
results with ``get(timeout=...)``, and the tests wait for the ledger with ``wait_until``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.harness import (
    LOG_DIR,
    ROOT,
    PrivateRedis,
    ensure_rabbitmq_vhost,
    python_bin,
    require_service,
    stop_process,
    wait_until,
)

GUIDE = ROOT / "docs" / "migrating-from-celery.md"
EXAMPLE = ROOT / "examples" / "celery_shop"
VHOST = "unijob_celery_shop"
CANCEL_WINDOW = 2  # examples/celery_shop/orders.py
NEWSLETTERS = {5: 100}  # subscribers per step (10 unless said): enough at step 5 for the 10% route to show
LEDGER_DB, PROJECT_TESTS_LEDGER_DB = 15, 14


@dataclasses.dataclass(frozen=True)
class Edit:
    """One edit of the guide to a file of examples/celery_shop: ``old`` (found exactly once) becomes ``new``."""

    path: str
    old: str
    new: str


EDITS: dict[int, list[Edit]] = {
    1: [
        Edit(
            "celery.py",
            "from celery import Celery\n",
            "from celery import Celery\n\nfrom unijob.adapters.celery_worker import register_jobs\n",
        ),
        Edit(
            "celery.py",
            "    worker_prefetch_multiplier=1,\n)\n",
            "    worker_prefetch_multiplier=1,\n)\nregister_jobs(app)  # the worker registers unijob's jobs on this app\n",
        ),
    ],
    2: [
        Edit(
            "tasks.py",
            "from examples.celery_shop.celery import app\n",
            "from examples.celery_shop.celery import app\nfrom unijob.contrib.celery import adopt\n",
        ),
        Edit(
            "tasks.py",
            "@app.task(bind=True, max_retries=3, default_retry_delay=5)\n",
            "@adopt\n@app.task(bind=True, max_retries=3, default_retry_delay=5)\n",
        ),
    ],
    3: [
        Edit("tasks.py", "@app.task\ndef send_order_confirmation(", "@adopt\n@app.task\ndef send_order_confirmation("),
        Edit("tasks.py", "@app.task(\n    autoretry_for=", "@adopt\n@app.task(\n    autoretry_for="),
        Edit("tasks.py", "@app.task\ndef build_invoice(", "@adopt\n@app.task\ndef build_invoice("),
        Edit("tasks.py", "@app.task\ndef send_newsletter(", "@adopt\n@app.task\ndef send_newsletter("),
        Edit(
            "orders.py",
            "from celery import group\n\nfrom examples.celery_shop import tasks\n",
            "from examples.celery_shop import tasks\nfrom unijob.contrib.celery import group\n",
        ),
    ],
    4: [
        Edit(
            "tests/conftest.py",
            "import pytest\n\nfrom examples.celery_shop import services\nfrom examples.celery_shop.celery import app\n",
            "import pytest\n\nimport unijob\nfrom examples.celery_shop import services\n"
            "from unijob.adapters.inline import InlineAdapter\n",
        ),
        Edit(
            "tests/conftest.py",
            '''@pytest.fixture(autouse=True)
def eager_tasks() -> Iterator[None]:
    """Tasks run at once, in the test (Celery's eager mode), retries included."""
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False
''',
            '''@pytest.fixture(autouse=True)
def jobs_run_inline() -> Iterator[None]:
    """Every job runs at once, in the test, after a JSON round trip (unijob's inline adapter)."""
    with unijob.override(InlineAdapter()):
        yield
''',
        ),
    ],
    6: [
        Edit(
            "tasks.py",
            "from examples.celery_shop import services\n",
            "import unijob\nfrom examples.celery_shop import services\n",
        ),
        Edit(
            "tasks.py",
            "@adopt\n@app.task\ndef send_order_confirmation(order_id: str, email: str) -> None:\n",
            '@unijob.job(queue="celery")  # the name stays examples.celery_shop.tasks.send_order_confirmation\n'
            "def send_order_confirmation(order_id: str, email: str) -> None:\n",
        ),
        Edit(
            "orders.py",
            "tasks.send_order_confirmation.delay(order_id, email)",
            "tasks.send_order_confirmation.perform_later(order_id, email)",
        ),
        Edit(
            "tests/test_orders.py",
            'with mock.patch("examples.celery_shop.tasks.send_order_confirmation.delay") as delay:',
            'with mock.patch("examples.celery_shop.tasks.send_order_confirmation.perform_later") as perform_later:',
        ),
        Edit(
            "tests/test_orders.py",
            'delay.assert_called_once_with("o-1", "ada@example.com")',
            'perform_later.assert_called_once_with("o-1", "ada@example.com")',
        ),
    ],
}

# The configuration the guide shows: pyproject.toml (step 1 on Redis, step 5), the environment
# (step 1), and the options line on RabbitMQ, where unijob's store is named.
STEP_1_TOML = """[tool.unijob]
adapter = "celery"
options = { celery_app = "examples.celery_shop.celery:app" }
"""
STEP_1_ENV = """export UNIJOB_ADAPTER=celery
export UNIJOB_OPTIONS='{"celery_app": "examples.celery_shop.celery:app"}'
"""
OPTIONS_LINE = 'options = { celery_app = "examples.celery_shop.celery:app" }\n'
RABBITMQ_OPTIONS_LINE = 'options = { celery_app = "examples.celery_shop.celery:app", store = "redis://localhost:6379/1" }\n'
STEP_5_TOML = """[tool.unijob]
adapter = "celery"
imports = ["examples.celery_shop.tasks"]   # what the new backend's worker imports
options = { celery_app = "examples.celery_shop.celery:app" }

[tool.unijob.backends.mailing]
adapter = "dramatiq"
url = "redis://localhost:6379/2"

[tool.unijob.routes]
"examples.celery_shop.tasks.send_newsletter" = { backend = "mailing", percent = 10 }
"""
WORKER_COMMAND = "celery -A examples.celery_shop worker --loglevel INFO"
DRAMATIQ_COMMAND = "dramatiq unijob.adapters.dramatiq_backends:mailing --processes 1 --threads 2"

# What the team's code does at each step, from the project's folder: the call sites of orders.py,
# the tasks called directly (.delay), and plain Celery code that sends tasks by name.
SCRIPT = """
import json, sys, time

import unijob
from unijob.contrib.celery import AsyncResult as UnijobResult
from examples.celery_shop import orders, services, tasks
from examples.celery_shop.celery import app

prefix, subscribers = sys.argv[1], int(sys.argv[2])
bulk = []
unijob.events.subscribe("enqueue_all", lambda event: bulk.append(len(event.jobs)))
out = {}

def kind(handle):
    return f"{type(handle).__module__}.{type(handle).__qualname__}"

def attempts(handle):  # what unijob recorded: every run of the job, retries included
    return unijob.find(handle.id).attempts if isinstance(handle, UnijobResult) else None

services.outage("payments", f"{prefix}-o1", 2)
services.outage("warehouse", f"{prefix}-o1:sku-1", 2)
services.outage("payments", f"{prefix}-o2", 1)
services.outage("warehouse", f"{prefix}-o6:sku-9", 2)

out["sent"] = time.time()
invoice = orders.place_order(f"{prefix}-o1", "ada@example.com", 1250, {"sku-1": 2, "sku-2": 1})
charge = tasks.charge_payment.delay(f"{prefix}-o2", 990)
reserve = tasks.reserve_stock.delay(f"{prefix}-o6", "sku-9", 1)
newsletter = orders.send_newsletter(f"{prefix}-issue", list(range(subscribers)))
app.send_task("examples.celery_shop.tasks.send_order_confirmation", args=[f"{prefix}-o3", "cy@example.com"])
app.send_task("examples.celery_shop.tasks.charge_payment", args=[f"{prefix}-o5", 300])

out["invoice"] = {"kind": kind(invoice), "value": invoice.get(timeout=60)}
out["charge"] = {"kind": kind(charge), "value": charge.get(timeout=60), "id": charge.id, "attempts": attempts(charge)}
out["reserve"] = {"kind": kind(reserve), "value": reserve.get(timeout=60), "attempts": attempts(reserve)}
jobs = getattr(newsletter, "jobs", None)
out["newsletter"] = {"kind": kind(newsletter), "size": len(newsletter), "bulk": bulk,
                     "enqueued": None if jobs is None else all(job.successfully_enqueued for job in jobs)}
print("RESULT " + json.dumps(out))
"""

CELERY_RESULT = "celery.result.AsyncResult"
UNIJOB_RESULT = "unijob.contrib.celery.AsyncResult"


# --- the project of each step ----------------------------------------------------------------------


def with_local_urls(text: str, redis_port: int) -> str:
    """The guide's Redis URLs, on the test's private redis-server."""
    return re.sub(r"redis://localhost:6379/(\d+)", rf"redis://127.0.0.1:{redis_port}/\1", text)


def build_project(folder: Path, step: int) -> Path:
    """examples/celery_shop with the edits of every step up to ``step``, in ``folder/examples``."""
    if folder.exists():
        return folder
    package = folder / "examples" / "celery_shop"
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "examples" / "__init__.py").write_text("")
    for done in range(1, step + 1):
        for edit in EDITS.get(done, []):
            path = package / edit.path
            text = path.read_text()
            assert text.count(edit.old) == 1, f"step {done}: {edit.path} should hold {edit.old!r} once"
            path.write_text(text.replace(edit.old, edit.new))
    return folder


def clean_environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("UNIJOB_")}
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclasses.dataclass
class Brokers:
    """One broker kind for the whole module: a private redis-server (the result backend, unijob's
    store, the ledger, Dramatiq's broker) and the Celery broker, on it or on a RabbitMQ vhost."""

    kind: str
    redis: PrivateRedis
    root: Path
    workers: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)
    runs: dict[int, StepRun] = dataclasses.field(default_factory=dict)

    @property
    def broker_url(self) -> str:
        if self.kind == "rabbitmq":
            return f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/{db}"

    def project(self, step: int) -> Path:
        folder = build_project(self.root / f"step-{step}", step)
        toml, _ = self.configuration(step)
        if toml is not None:
            (folder / "pyproject.toml").write_text(toml)
        return folder

    def configuration(self, step: int) -> tuple[str | None, dict[str, str]]:
        """What step 1 (and 5) configure: pyproject.toml on Redis, the environment on RabbitMQ
        (with unijob's store, as the guide says), and step 5's pyproject.toml on both."""
        if step == 0:
            return None, {}
        if step >= 5:
            toml = STEP_5_TOML if self.kind == "redis" else STEP_5_TOML.replace(OPTIONS_LINE, RABBITMQ_OPTIONS_LINE)
            return with_local_urls(toml, self.redis.port), {}
        if self.kind == "redis":
            return STEP_1_TOML, {}
        env = dict(re.findall(r"^export (\w+)=(.*)$", STEP_1_ENV, re.MULTILINE))
        options = json.loads(env["UNIJOB_OPTIONS"].strip("'"))
        options["store"] = self.url(1)
        return None, {"UNIJOB_ADAPTER": env["UNIJOB_ADAPTER"], "UNIJOB_OPTIONS": json.dumps(options)}

    def env(self, step: int, ledger_db: int = LEDGER_DB) -> dict[str, str]:
        env = clean_environment()
        env.update(
            PYTHONPATH=str(self.project(step)),
            SHOP_BROKER_URL=self.broker_url,
            SHOP_RESULT_BACKEND=self.url(1),
            SHOP_LEDGER_URL=self.url(ledger_db),
        )
        env.update(self.configuration(step)[1])
        return env

    # --- workers ---------------------------------------------------------------------------------

    def start(self, name: str, step: int, argv: list[str], ready: bytes) -> subprocess.Popen[bytes]:
        self.stop(name)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / f"celery-shop-{self.kind}-step{step}-{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv, cwd=self.project(step), env=self.env(step), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        self.workers[name] = process

        def started() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the {name} worker of step {step} exited:\n{log_path.read_text(errors='replace')[-4000:]}")
            return ready in log_path.read_bytes()

        wait_until(started, timeout=60, interval=0.1, message=f"the {name} worker of step {step} on {self.kind}")
        return process

    def stop(self, name: str) -> None:
        process = self.workers.pop(name, None)
        if process is not None:
            stop_process(process)

    def check_alive(self) -> None:
        for name, process in self.workers.items():
            if process.poll() is not None:
                log = process.log_path.read_text(errors="replace")[-4000:]  # type: ignore[attr-defined]
                raise AssertionError(f"the {name} worker exited with {process.returncode}:\n{log}")

    # --- a step ----------------------------------------------------------------------------------

    def at(self, step: int) -> StepRun:
        """The project of ``step`` with its workers running, and what its call sites gave."""
        if step in self.runs:
            return self.runs[step]
        node = f"shop-{uuid.uuid4().hex[:8]}@%h"  # the guide's command, with a node name and a bounded pool
        self.start(
            "celery",
            step,
            [python_bin("celery"), *WORKER_COMMAND.split()[1:], "--concurrency", "2", "--hostname", node],
            b" ready.",
        )
        if step >= 5:
            self.start("dramatiq", step, [python_bin("dramatiq"), *DRAMATIQ_COMMAND.split()[1:]], b"is ready for action")
        else:
            self.stop("dramatiq")
        prefix = f"s{step}"
        subscribers = NEWSLETTERS.get(step, 10)
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, prefix, str(subscribers)],
            cwd=self.project(step),
            env=self.env(step),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"the script of step {step} failed:\n{result.stdout}\n{result.stderr[-6000:]}"
        (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        run = self.runs[step] = StepRun(self, step, prefix, subscribers, json.loads(line[len("RESULT ") :]))
        return run

    def close(self) -> None:
        for name in list(self.workers):
            self.stop(name)


@dataclasses.dataclass
class StepRun:
    brokers: Brokers
    step: int
    prefix: str
    subscribers: int
    out: dict[str, Any]

    def ledger(self, event: str, where: Callable[[dict[str, Any]], bool] = lambda entry: True) -> list[dict[str, Any]]:
        client = redis.Redis(port=self.brokers.redis.port, db=LEDGER_DB)
        entries = [json.loads(raw) for raw in client.lrange("shop:ledger", 0, -1)]
        return [entry for entry in entries if entry["event"] == event and where(entry)]

    def order(self, event: str, order: str, **more: Any) -> list[dict[str, Any]]:
        wanted = {"order": f"{self.prefix}-{order}", **more}
        return self.ledger(event, lambda entry: all(entry.get(k) == v for k, v in wanted.items()))

    def mails(self, subject: str) -> list[dict[str, Any]]:
        return self.ledger("mail_sent", lambda entry: entry["subject"] == subject)

    def wait(self, condition: Callable[[], Any], message: str, timeout: float = 60) -> Any:
        return wait_until(condition, timeout=timeout, interval=0.1, tick=self.brokers.check_alive, message=message)


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Brokers]:
    """The shop on one broker; each step's workers start once, when a test first needs that step."""
    require_service("redis")
    if request.param == "rabbitmq":
        require_service("rabbitmq")
        subprocess.run(["rabbitmqctl", "delete_vhost", VHOST], capture_output=True, check=False)
        ensure_rabbitmq_vhost(VHOST)
    server = PrivateRedis()
    brokers = Brokers(request.param, server, tmp_path_factory.mktemp(f"celery-shop-{request.param}"))
    try:
        yield brokers
    finally:
        brokers.close()
        server.kill()
        if request.param == "rabbitmq":
            subprocess.run(["rabbitmqctl", "delete_vhost", VHOST], capture_output=True, check=False)


# --- the guide -----------------------------------------------------------------------------------------


def test_the_guide_shows_every_edit_and_setting_these_tests_use() -> None:
    guide = GUIDE.read_text()
    shown = [edit.new for edits in EDITS.values() for edit in edits]
    shown += [STEP_1_TOML, STEP_1_ENV, RABBITMQ_OPTIONS_LINE, STEP_5_TOML, WORKER_COMMAND, DRAMATIQ_COMMAND]
    missing = [text for text in shown if text not in guide]
    assert missing == [], f"{GUIDE.name} does not show, word for word: {missing}"


# --- what every step must keep doing -------------------------------------------------------------------


def assert_the_shop_works(run: StepRun) -> None:
    """Every task of the scenario ran, each once, retried as its code says, on the workers."""
    p = run.prefix
    run.wait(lambda: len(run.order("charged", "o1")) and len(run.order("reserved", "o1", sku="sku-1")), f"order {p}-o1")
    run.wait(lambda: run.order("charged", "o5") and run.mails(f"Your order {p}-o3 is confirmed"), "the tasks sent by name")
    run.wait(lambda: len(run.mails(f"Newsletter {p}-issue")) >= run.subscribers, "the newsletter")

    assert [entry["to"] for entry in run.mails(f"Your order {p}-o1 is confirmed")] == ["ada@example.com"]
    assert run.out["invoice"]["value"] == {"number": f"INV-{p}-o1", "total": "12.50"}
    assert len(run.order("invoice_built", "o1")) == 1

    # bind=True: self.request.retries counts, self.request.id stays, self.retry() retries; charged once
    tries = run.order("charge_try", "o1")
    assert [entry["retries"] for entry in tries] == [0, 1, 2]
    assert len({entry["task_id"] for entry in tries}) == 1
    (charged,) = run.order("charged", "o1")
    assert charged["key"] == tries[0]["task_id"]
    assert tries[0]["at"] - run.out["sent"] >= CANCEL_WINDOW - 0.1  # apply_async(countdown=2) waited
    assert [entry["retries"] for entry in run.order("charge_try", "o2")] == [0, 1]
    assert run.out["charge"]["value"] == f"ch_{run.order('charged', 'o2')[0]['key']}"
    assert len(run.order("charged", "o5")) == 1

    # autoretry_for with retry_backoff: tried until the warehouse answered, reserved once
    assert len(run.order("reserve_try", "o1", sku="sku-1")) == 3
    assert len(run.order("reserve_try", "o1", sku="sku-2")) == 1
    assert sorted((entry["sku"], entry["quantity"]) for entry in run.order("reserved", "o1")) == [("sku-1", 2), ("sku-2", 1)]
    assert len(run.order("reserve_try", "o6")) == 3 and len(run.order("reserved", "o6")) == 1

    # the group: every subscriber once, and the plain-Celery confirmation once
    letters = sorted(entry["to"] for entry in run.mails(f"Newsletter {p}-issue"))
    assert letters == sorted(f"user{n}@example.com" for n in range(run.subscribers))
    assert run.out["newsletter"]["size"] == run.subscribers
    assert len(run.mails(f"Your order {p}-o3 is confirmed")) == 1


def test_step_0_the_project_runs_as_it_is(shop: Brokers) -> None:
    run = shop.at(0)
    assert_the_shop_works(run)
    assert {run.out[name]["kind"] for name in ("invoice", "charge", "reserve")} == {CELERY_RESULT}
    assert run.out["newsletter"]["bulk"] == []  # nothing went through unijob


def test_step_1_the_register_line_changes_nothing(shop: Brokers) -> None:
    run = shop.at(1)
    assert_the_shop_works(run)
    assert {run.out[name]["kind"] for name in ("invoice", "charge", "reserve")} == {CELERY_RESULT}
    assert run.out["newsletter"]["bulk"] == []


def test_step_2_the_adopted_task_goes_through_unijob_beside_celerys_own(shop: Brokers) -> None:
    """charge_payment's .delay() and apply_async(countdown=) go through unijob, its self.retry()
    retries through unijob (unijob recorded each run), and the same worker runs it, a message sent
    to it by name included; the tasks not adopted yet are Celery's, side by side."""
    run = shop.at(2)
    assert_the_shop_works(run)
    assert run.out["charge"]["kind"] == UNIJOB_RESULT
    assert run.out["charge"]["attempts"] == 2  # the first run and its retry
    assert run.out["invoice"]["kind"] == run.out["reserve"]["kind"] == CELERY_RESULT
    assert run.out["newsletter"]["bulk"] == []


def test_step_3_every_task_adopted_retries_results_and_the_group_in_bulk(shop: Brokers) -> None:
    """autoretry_for retries through unijob, AsyncResult.get() returns what the task returned (the
    app has a result backend: unijob keeps results), and unijob's group is one bulk enqueue."""
    run = shop.at(3)
    assert_the_shop_works(run)
    assert {run.out[name]["kind"] for name in ("invoice", "charge", "reserve")} == {UNIJOB_RESULT}
    assert run.out["reserve"]["attempts"] == 3 and run.out["reserve"]["value"] is None
    newsletter = run.out["newsletter"]
    assert newsletter["kind"] == "unijob.contrib.celery.GroupResult"
    assert newsletter["bulk"] == [run.subscribers] and newsletter["enqueued"] is True


def test_step_5_a_route_sends_a_share_of_the_calls_to_dramatiq_beside_celery(shop: Brokers) -> None:
    """percent = 10: of 100 newsletters, some are run by the Dramatiq worker, the others by the
    Celery worker, each exactly once; the group sent one bulk call per backend."""
    run = shop.at(5)
    assert_the_shop_works(run)
    celery_group, dramatiq_group = shop.workers["celery"].pid, shop.workers["dramatiq"].pid
    ran_on = [os.getpgid(entry["pid"]) for entry in run.mails(f"Newsletter {run.prefix}-issue")]
    assert set(ran_on) == {celery_group, dramatiq_group}
    assert 1 <= ran_on.count(dramatiq_group) <= 35  # 10% of 100, give or take far more than chance
    assert sorted(run.out["newsletter"]["bulk"]) == sorted([ran_on.count(celery_group), ran_on.count(dramatiq_group)])
    others = run.order("charged", "o1") + run.order("reserved", "o1") + run.mails(f"Your order {run.prefix}-o1 is confirmed")
    assert {os.getpgid(entry["pid"]) for entry in others} == {celery_group}  # no route: Celery runs them


def test_step_6_a_plain_unijob_job_on_the_same_worker(shop: Brokers) -> None:
    """send_order_confirmation is a plain @unijob.job now: perform_later reaches the same worker,
    and a message sent to its name by plain Celery code still runs."""
    run = shop.at(6)
    assert_the_shop_works(run)
    assert run.out["charge"]["kind"] == UNIJOB_RESULT


# --- the project's own tests, at every step ------------------------------------------------------------


@pytest.fixture(scope="module")
def project_redis() -> Iterator[PrivateRedis]:
    require_service("redis")
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.parametrize("step", range(7))
def test_the_projects_own_tests_pass(step: int, project_redis: PrivateRedis, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Its mock.patch of delay passes at every step (perform_later from step 6); eager mode runs
    adopted tasks as before (steps 1 to 3), then the inline adapter does (from step 4)."""
    brokers = Brokers("redis", project_redis, tmp_path_factory.mktemp(f"celery-shop-tests-{step}"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/celery_shop/tests"],
        cwd=brokers.project(step),
        env=brokers.env(step, ledger_db=PROJECT_TESTS_LEDGER_DB),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"step {step}: the project's tests failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert re.search(r"\b4 passed\b", result.stdout), result.stdout
    assert time.monotonic() - started < 60
