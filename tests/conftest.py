from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import harnesses
from tests.harness import Harness, PrivateRedis, require_service
from unijob import config
from unijob.recurring import _registered as recurring_registry

CONTRACT_BACKENDS = list(harnesses.MODULES)

# Tests that do not choose a backend run inline, not on a SQLite file in the working directory.
os.environ.setdefault("UNIJOB_ADAPTER", "inline")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=os.environ.get("UNIJOB_TEST_BACKENDS", ",".join(CONTRACT_BACKENDS)),
        help="comma-separated contract backends to run (default: all)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_session" in metafunc.fixturenames:
        chosen = [name.strip() for name in metafunc.config.getoption("--backends").split(",") if name.strip()]
        metafunc.parametrize("backend_session", chosen, indirect=True, scope="session")


class HarnessPool:
    """Starts each backend's stock worker once per test session, on first use."""

    def __init__(self) -> None:
        self.started: dict[str, Harness] = {}

    def get(self, name: str) -> Harness:
        if name not in self.started:
            harness = harnesses.load(name)
            harness.start()
            self.started[name] = harness
        return self.started[name]

    def stop_all(self) -> None:
        for harness in self.started.values():
            harness.stop()


@pytest.fixture(scope="session")
def harness_pool() -> Iterator[HarnessPool]:
    pool = HarnessPool()
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def backend_session(request: pytest.FixtureRequest, harness_pool: HarnessPool) -> Harness:
    """One harness per contract backend; its stock worker runs for the whole session."""
    return harness_pool.get(request.param)


@pytest.fixture
def backend(backend_session: Harness) -> Iterator[Harness]:
    """The contract backend, configured as the default backend for one test."""
    with backend_session.configured():
        yield backend_session


@pytest.fixture(autouse=True)
def _fresh_configuration() -> Iterator[None]:
    """No test leaks configuration, or a recurring job registered in code, into the next one."""
    registered = dict(recurring_registry)
    with config.override():
        yield
    recurring_registry.clear()
    recurring_registry.update(registered)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, which it may kill; gone after the test."""
    require_service("redis")  # the machine's Redis stands for redis-server being installed
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.kill()
