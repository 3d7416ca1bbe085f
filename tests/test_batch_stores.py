"""The batch stores: the same rules in memory, in Redis (Lua) and in SQLite, and exactly-once
callbacks when many workers finish jobs at the same moment."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import require_service
from unijob.batches import store_for
from unijob.batches.stores import BatchRecord, BatchStore, MemoryStore, RedisStore, SqliteStore
from unijob.errors import BatchFinishedError, ConfigurationError, Error

REDIS_URL = "redis://127.0.0.1:6379/5"


@pytest.fixture(params=["memory", "redis", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BatchStore]:
    if request.param == "memory":
        yield MemoryStore(retention=60)
    elif request.param == "redis":
        require_service("redis")
        yield RedisStore(REDIS_URL, retention=60)
    else:
        yield SqliteStore(tmp_path / "batches.sqlite3", retention=60)


def new_record(**changes: object) -> BatchRecord:
    return BatchRecord(id=str(uuid.uuid4()), created_at=time.time(), properties={"user": 7}, **changes)  # type: ignore[arg-type]


def test_finish_and_success_fire_once_when_the_last_job_succeeds(store: BatchStore) -> None:
    record = new_record(callbacks={"finish": "x"})
    store.create(record)
    store.add(record.id, 2)
    assert store.seal(record.id) == []
    assert store.finish_job(record.id, "succeeded") == []
    assert store.finish_job(record.id, "succeeded") == ["finish", "success"]
    found = store.get(record.id)
    assert found is not None
    assert (found.total, found.pending, found.succeeded, found.discarded, found.sealed) == (2, 0, 2, 0, True)
    assert found.finished_at is not None and found.callbacks == {"finish": "x"} and found.properties == {"user": 7}
    with pytest.raises(BatchFinishedError):
        store.add(record.id, 1)


def test_discard_fires_at_the_first_discard_only(store: BatchStore) -> None:
    record = new_record()
    store.create(record)
    store.add(record.id, 3)
    store.seal(record.id)
    assert store.finish_job(record.id, "discarded") == ["discard"]
    assert store.finish_job(record.id, "discarded") == []
    assert store.finish_job(record.id, "succeeded") == ["finish"]


def test_nothing_finishes_before_the_batch_is_sealed(store: BatchStore) -> None:
    record = new_record()
    store.create(record)
    store.add(record.id, 1)
    assert store.finish_job(record.id, "succeeded") == []  # a job finished while others are still being added
    store.add(record.id, 1)
    assert store.finish_job(record.id, "withdrawn") == []  # ...and one of those was never enqueued
    assert store.seal(record.id) == ["finish", "success"]
    found = store.get(record.id)
    assert found is not None and (found.total, found.succeeded) == (1, 1)


def test_properties_are_merged_key_by_key(store: BatchStore) -> None:
    record = new_record()
    store.create(record)
    store.update_properties(record.id, {"a": 1}, [])
    store.update_properties(record.id, {"b": [2]}, ["user"])
    found = store.get(record.id)
    assert found is not None and found.properties == {"a": 1, "b": [2]}


def test_a_missing_batch_is_a_clear_error(store: BatchStore) -> None:
    assert store.get("nope") is None
    with pytest.raises(Error, match="does not exist"):
        store.finish_job("nope", "succeeded")


def test_concurrent_finishers_fire_each_event_exactly_once(store: BatchStore) -> None:
    record = new_record()
    store.create(record)
    store.add(record.id, 200)
    store.seal(record.id)
    fired: list[str] = []
    lock = threading.Lock()

    def finisher(index: int) -> None:
        for n in range(20):
            events = store.finish_job(record.id, "discarded" if (index, n) == (3, 7) else "succeeded")
            with lock:
                fired.extend(events)

    threads = [threading.Thread(target=finisher, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(fired) == ["discard", "finish"]
    found = store.get(record.id)
    assert found is not None and (found.pending, found.succeeded, found.discarded) == (0, 199, 1)


def test_finished_records_expire(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "b.sqlite3", retention=0)
    record = new_record()
    store.create(record)
    store.seal(record.id)
    time.sleep(0.01)  # retention=0: anything after the finish is past it
    assert store.get(record.id) is None


def test_redis_records_get_a_ttl_once_finished() -> None:
    require_service("redis")
    store = RedisStore(REDIS_URL, retention=120)
    record = new_record()
    store.create(record)
    assert store.client.ttl(store.key(record.id)) == -1
    store.seal(record.id)
    assert 0 < store.client.ttl(store.key(record.id)) <= 120
    assert 0 < store.client.ttl(store.properties_key(record.id)) <= 120


def test_store_urls() -> None:
    assert isinstance(store_for.open("memory://"), MemoryStore)
    assert store_for.open("memory://") is store_for.open("memory://")  # the one of this process
    with pytest.raises(ConfigurationError, match="store='redis://"):
        store_for.open("amqp://guest:guest@localhost//")
