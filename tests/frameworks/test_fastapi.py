"""unijob.contrib.fastapi with examples/fastapi_notes, on PostgreSQL and every backend's stock worker.

The endpoints enqueue with ``await index_note.aperform_later(...)`` and
``await unijob.aperform_all_later(...)``; ``index_note`` is ``async def`` and awaits psycopg's
async connection throughout, so a note whose word count appears was indexed by a coroutine the
stock worker (Celery, RQ, Dramatiq, Huey) ran to its end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import redis
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

import unijob
from examples.fastapi_notes import db
from examples.fastapi_notes.app import create_app
from examples.fastapi_notes.jobs import index_note
from tests.frameworks.web_support import (
    StockWorker,
    celery_argv,
    database,
    dramatiq_argv,
    huey_argv,
    huey_path,
    private_redis,
    remove_sqlite,
    rq_argv,
    running,
)
from tests.harness import PrivateRedis, wait_until
from unijob.adapters.test import TestAdapter
from unijob.contrib.fastapi import lifespan, lifespan_with
from unijob.errors import ConfigurationError

IMPORTS = ["examples.fastapi_notes.jobs"]
BACKENDS = ["celery", "rq", "dramatiq", "huey"]


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with database("fastapi") as url:
        db.create_schema(url)
        yield url


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateRedis]:
    started = private_redis()
    yield started
    started.kill()


@pytest.fixture(scope="module")
def workers(database_url: str, server: PrivateRedis) -> Iterator[dict[str, StockWorker]]:
    def url(db_number: int) -> str:
        return f"redis://127.0.0.1:{server.port}/{db_number}"

    env = {"NOTES_DATABASE_URL": database_url}
    path = huey_path("fastapi")
    started = [
        StockWorker("celery", "celery", url(1), celery_argv(), IMPORTS, env=env),
        StockWorker("rq", "rq", url(2), rq_argv(url(2)), IMPORTS, env=env),
        StockWorker("dramatiq", "dramatiq", url(3), dramatiq_argv(), IMPORTS, env=env),
        StockWorker("huey", "huey", None, huey_argv(), IMPORTS, options={"path": str(path)}, env=env),
    ]
    try:
        with running(started) as by_name:
            yield by_name
    finally:
        remove_sqlite(path)


def settings_of(worker: StockWorker) -> dict[str, Any]:
    """The keywords of unijob.configure that send jobs to ``worker``'s backend."""
    return {"adapter": worker.adapter, "url": worker.url, **worker.options}


def words(client: TestClient, note_id: int, worker: StockWorker) -> int | None:
    worker.tick()
    response = client.get(f"/notes/{note_id}")
    assert response.status_code == 200
    found: int | None = response.json()["words"]
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_endpoint_enqueues_and_the_stock_worker_runs_the_async_job(
    backend: str, workers: dict[str, StockWorker], database_url: str
) -> None:
    worker = workers[backend]
    body = " ".join(["word"] * 7) + f" {backend}"
    with TestClient(create_app(database_url, **settings_of(worker))) as client:
        response = client.post("/notes", json={"title": f"on {backend}", "body": body})
        assert response.status_code == 201
        note_id = response.json()["id"]
        wait_until(lambda: words(client, note_id, worker) == 8, timeout=60, message=f"index_note on {backend}")


def test_an_endpoint_enqueues_many_with_aperform_all_later(workers: dict[str, StockWorker], database_url: str) -> None:
    worker = workers["rq"]
    with psycopg.connect(database_url) as connection:
        connection.execute("update notes set words = null")
        count = connection.execute("select count(*) from notes").fetchone()
    assert count is not None and count[0] > 0
    with TestClient(create_app(database_url, **settings_of(worker))) as client:
        response = client.post("/notes/reindex")
        assert response.status_code == 200 and response.json() == {"enqueued": count[0]}

    def unindexed() -> int:
        with psycopg.connect(database_url) as connection:
            row = connection.execute("select count(*) from notes where words is null").fetchone()
        assert row is not None
        return int(row[0])

    wait_until(lambda: unindexed() == 0, timeout=60, tick=worker.tick, message="every note reindexed")


def test_the_async_job_also_runs_in_this_process_with_the_test_adapter(
    unijob_test: TestAdapter, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTES_DATABASE_URL", database_url)
    with TestClient(create_app(database_url)) as client:
        note_id = client.post("/notes", json={"title": "here", "body": "a b c"}).json()["id"]
        unijob_test.assert_enqueued(index_note, args=[note_id])
        assert unijob_test.perform_enqueued_jobs() == 1  # awaited to its end, on an event loop of its own
        assert client.get(f"/notes/{note_id}").json()["words"] == 3


def clients_on(server: PrivateRedis, db_number: int) -> int:
    listed = server.client.client_list()
    return sum(1 for client in listed if int(client.get("db", -1)) == db_number and client.get("cmd") != "client|list")


def test_the_lifespan_configures_unijob_at_startup_and_releases_its_connections_at_shutdown(
    server: PrivateRedis, database_url: str
) -> None:
    url = f"redis://127.0.0.1:{server.port}/9"
    redis.Redis(port=server.port, db=9).flushdb()
    with TestClient(create_app(database_url, adapter="rq", url=url, results=True, bulk_chunk_size=7)) as client:
        started = unijob.settings()
        assert (started.backends["default"].url, started.results, started.bulk_chunk_size) == (url, True, 7)
        assert client.post("/notes", json={"title": "t", "body": "b"}).status_code == 201
        assert redis.Redis(port=server.port, db=9).llen("rq:queue:default") == 1
        assert clients_on(server, 9) >= 1  # the adapter's connection
    wait_until(lambda: clients_on(server, 9) == 0, timeout=10, message="the adapter's connections to close")
    assert unijob.settings() == started  # every setting stays
    redis.Redis(port=server.port, db=9).flushdb()


def test_lifespan_with_wraps_the_apps_own_lifespan_and_keeps_its_state() -> None:
    seen: list[str] = []

    @contextlib.asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        seen.append(unijob.settings().backends["default"].adapter)  # unijob is configured first
        yield {"greeting": "hello"}
        seen.append("own shutdown")

    app = FastAPI(lifespan=lifespan_with(own, adapter="test"))

    @app.get("/")
    async def greet(request: Request) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    with TestClient(app) as client:
        assert client.get("/").json() == {"greeting": "hello"}
    assert seen == ["test", "own shutdown"]


def test_the_plain_lifespan_uses_the_settings_unijob_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIJOB_ADAPTER", "test")
    unijob.config.reset()
    app = FastAPI(lifespan=lifespan)
    with TestClient(app):
        assert unijob.get_adapter().name == "test"


def test_a_wrong_setting_fails_the_startup() -> None:
    app = FastAPI(lifespan=lifespan_with(adapter="rq", url="redis://127.0.0.1:6379/0", job_timeoutt=3))
    with pytest.raises(ConfigurationError, match="job_timeoutt"), TestClient(app):
        pass
