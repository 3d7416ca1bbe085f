"""unijob.contrib.flask with examples/flask_todo, on PostgreSQL and the stock RQ and Celery workers.

The workers import ``examples.flask_todo.worker``, which builds the app with ``create_app()``
from ``TODO_*`` environment variables, as a deployment would: the RQ worker gets unijob's
settings from the app alone (``TODO_UNIJOB``), the Celery worker from ``UNIJOB_*`` and from the
app (which adds a setting). Each worker's app has its own ``NOTIFY_FROM``, which the job writes
into the to-do: the row says which app context the job ran in, and that it saw the commit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from flask import Flask, current_app, g

import unijob
from examples.flask_todo import create_app, db, unijob_ext
from tests.frameworks.web_support import (
    StockWorker,
    as_json,
    celery_argv,
    database,
    private_redis,
    rq_argv,
    running,
    sqlalchemy_url,
)
from tests.harness import wait_until
from unijob.adapters.test import TestAdapter
from unijob.contrib.flask import APP_CONTEXT, UnijobFlask
from unijob.errors import ConfigurationError

IMPORTS = ["examples.flask_todo.worker"]


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with database("flask") as url:
        app = create_app({"DATABASE_URL": sqlalchemy_url(url)})
        db.create_schema(app)
        yield sqlalchemy_url(url)
        db.drop_schema(app)


@pytest.fixture(scope="module")
def workers(database_url: str) -> Iterator[dict[str, StockWorker]]:
    server = private_redis()
    try:
        rq_url, celery_url = f"redis://127.0.0.1:{server.port}/1", f"redis://127.0.0.1:{server.port}/2"
        common = {"TODO_DATABASE_URL": database_url}
        rq_worker = StockWorker(
            "flask-rq", "rq", rq_url, rq_argv(rq_url), IMPORTS, unijob_env=False,
            env={**common, "TODO_NOTIFY_FROM": "worker rq", "TODO_UNIJOB": as_json({"adapter": "rq", "url": rq_url})},
        )  # fmt: skip
        celery_settings = {"adapter": "celery", "url": celery_url, "enqueue_after_commit": True}
        celery_worker = StockWorker(
            "flask-celery", "celery", celery_url, celery_argv(), IMPORTS,
            env={**common, "TODO_NOTIFY_FROM": "worker celery", "TODO_UNIJOB": as_json(celery_settings)},
        )  # fmt: skip
        with running([rq_worker, celery_worker]) as started:
            yield started
    finally:
        server.kill()


def web_app(database_url: str, worker: StockWorker, **config: Any) -> Flask:
    """The app as the web process builds it, enqueueing to ``worker``'s backend."""
    return create_app(
        {"DATABASE_URL": database_url, "NOTIFY_FROM": "web", "UNIJOB": {"adapter": worker.adapter, "url": worker.url}, **config}
    )


def notified(client: Any, todo_id: int, worker: StockWorker) -> str | None:
    worker.tick()
    response = client.get(f"/todos/{todo_id}")
    assert response.status_code == 200
    value: str | None = response.get_json()["notified"]
    return value


@pytest.mark.parametrize("backend", ["rq", "celery"])
def test_the_job_runs_on_the_stock_worker_inside_the_app_context(
    backend: str, workers: dict[str, StockWorker], database_url: str
) -> None:
    worker = workers[f"flask-{backend}"]
    client = web_app(database_url, worker).test_client()
    title = f"buy milk {uuid.uuid4().hex[:6]}"

    response = client.post("/todos", json={"title": title})

    assert response.status_code == 201
    todo_id = response.get_json()["id"]
    # current_app.config of the worker's app, its session in flask.g, and the committed row
    wait_until(lambda: notified(client, todo_id, worker) == f"worker {backend}: {title}", timeout=60, message="the job")


def test_the_jobs_enqueued_in_bulk_after_the_commit_all_run(workers: dict[str, StockWorker], database_url: str) -> None:
    worker = workers["flask-rq"]
    client = web_app(database_url, worker).test_client()
    titles = [f"chore {n} {uuid.uuid4().hex[:6]}" for n in range(3)]

    response = client.post("/todos/import", json={"titles": titles})

    assert response.status_code == 201
    ids = response.get_json()["ids"]
    expected = [f"worker rq: {title}" for title in titles]
    wait_until(lambda: [notified(client, i, worker) for i in ids] == expected, timeout=60, message="the bulk jobs")


# --- in this process: the app factory, and the context around each run ------------------------------


@unijob.job
def read_config(key: str) -> str:
    g.read = key  # flask.g of the job's own context
    return str(current_app.config[key])


@unijob.job
async def read_config_async(key: str) -> str:
    await asyncio.sleep(0)
    return str(current_app.config[key])


class Flaky(unijob.Job):
    retry_on = unijob.retry_on(TimeoutError, wait=0, attempts=2)
    runs: list[bool] = []

    def perform(self) -> None:
        Flaky.runs.append(flask.has_app_context())
        if len(Flaky.runs) == 1:
            raise TimeoutError("the first run fails")


def plain_app(name: str, **config: Any) -> Flask:
    app = Flask(name)
    app.config.update(config)
    return app


def test_the_app_factory_configures_unijob_and_registers_the_app() -> None:
    first = create_app({"UNIJOB": {"adapter": "rq", "url": "redis://127.0.0.1:6379/9", "results": True}})
    assert first.extensions["unijob"] is unijob_ext
    settings = unijob.settings()
    assert (settings.backends["default"].adapter, settings.backends["default"].url, settings.results) == (
        "rq",
        "redis://127.0.0.1:6379/9",
        True,
    )
    adapter = unijob.get_adapter()  # built, not connected

    second = create_app({"UNIJOB": {"adapter": "rq", "url": "redis://127.0.0.1:6379/9", "results": True}, "NOTIFY_FROM": "2"})

    assert unijob_ext.app is second and APP_CONTEXT.app is second  # the last app built runs the jobs
    assert unijob.settings() is settings and unijob.get_adapter() is adapter  # same settings: nothing replaced


def test_the_extension_takes_the_app_in_its_constructor_and_options_like_tool_unijob() -> None:
    app = plain_app("direct", UNIJOB={"adapter": "rq", "url": "redis://127.0.0.1:6379/9", "options": {"job_timeout": 30}})
    extension = UnijobFlask(app)
    assert app.extensions["unijob"] is extension
    assert unijob.settings().backends["default"].options == {"job_timeout": 30}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"adaptor": "rq"}, "did you mean 'adapter'"),
        ({"backend": "rq"}, "the key is adapter = 'rq'"),
        ({"adapter": "rqq"}, "rqq"),
        ({"options": {"results": True}}, "cannot be adapter options"),
    ],
)
def test_a_wrong_unijob_setting_fails_init_app(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        UnijobFlask(plain_app("wrong", UNIJOB=table))


def test_every_run_gets_an_app_context_of_its_own_popped_when_it_ends(unijob_test: TestAdapter) -> None:
    app = plain_app("jobs", GREETING="hello")
    teardowns: list[str | None] = []
    app.teardown_appcontext(lambda error: teardowns.append(g.get("read")))
    UnijobFlask(app)

    assert read_config.perform_now("GREETING") == "hello"
    assert read_config_async.perform_now("GREETING") == "hello"  # the event loop's task sees the context too
    assert not flask.has_app_context() and teardowns == ["GREETING", None]

    other = plain_app("other", GREETING="from the active app")
    with other.app_context():
        g.read = "the view's"
        assert read_config.perform_now("GREETING") == "from the active app"  # the active app, a fresh context
        assert g.read == "the view's"

    read_config.perform_later("GREETING")
    unijob_test.perform_enqueued_jobs()
    assert not flask.has_app_context() and teardowns == ["GREETING", None, "GREETING"]


def test_a_retried_run_pops_its_context_before_the_next_run(unijob_test: TestAdapter) -> None:
    app = plain_app("retries")
    pops: list[int] = []
    app.teardown_appcontext(lambda error: pops.append(len(Flaky.runs)))
    UnijobFlask(app)
    Flaky.runs = []

    Flaky.perform_later()
    unijob_test.perform_enqueued_jobs()
    unijob_test.perform_enqueued_jobs()  # the retry

    assert Flaky.runs == [True, True] and pops == [1, 2] and not flask.has_app_context()
