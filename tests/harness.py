"""One harness per contract backend: how to configure unijob for it, and how to run its stock worker.

The contract suite runs the same test functions against every harness. A harness for a real
backend starts the stock native worker once per test session (``start``/``stop``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests import jobs
from unijob import config

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LOG_DIR = Path(os.environ.get("UNIJOB_TEST_LOGS", f"/tmp/unijob-test-logs/{os.getpid()}"))  # one folder per session

SERVICES = {"redis": ("127.0.0.1", 6379), "rabbitmq": ("127.0.0.1", 5672), "postgresql": ("127.0.0.1", 5432)}


def require_service(name: str) -> None:
    """Fail under CI=true, skip locally, when a service the test needs is down."""
    host, port = SERVICES[name]
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc}); start it as ../shared/services.md says"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def ensure_rabbitmq_vhost(vhost: str) -> None:
    """Create a RabbitMQ vhost for one backend (idempotent), so Celery's and Dramatiq's queues,
    which declare the same names with different arguments, never meet."""
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], capture_output=True, check=False)
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], capture_output=True, check=True)


def wait_until(
    condition: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.05,
    tick: Callable[[], None] | None = None,
    message: str = "",
) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if tick is not None:
            tick()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(interval)


class Harness:
    name: str = ""
    adapter: str = ""
    url: str | None = None
    options: dict[str, Any] = {}
    services: tuple[str, ...] = ("redis",)  # redis also holds the test results
    runs_elsewhere = True  # jobs run in a stock worker process, not in the test process

    def configuration(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "url": self.url, "imports": ["tests.jobs"], **self.options}

    def env(self) -> dict[str, str]:
        """Environment for the stock worker: the same configuration, through UNIJOB_* variables."""
        env = dict(os.environ)
        env.update(
            UNIJOB_ADAPTER=self.adapter,
            UNIJOB_IMPORTS="tests.jobs",
            UNIJOB_OPTIONS=json.dumps(self.options),
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        if self.url:
            env["UNIJOB_URL"] = self.url
        return env

    def worker_argv(self) -> list[str] | None:
        """The stock worker command, exactly as the README documents it. None: no worker."""
        return None

    def reset_broker(self) -> None:
        """Empty the broker's queues before the session, so nothing stale is consumed."""

    # --- session lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        for service in self.services:
            require_service(service)
        self.reset_broker()
        argv = self.worker_argv()
        self.process: subprocess.Popen[bytes] | None = None
        if argv is None:
            return
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.name}.log"
        self.log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv, env=self.env(), cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        token = uuid.uuid4().hex
        with self.configured():
            jobs.ping.perform_later(token)
        try:
            wait_until(lambda: jobs.records(token), timeout=60, tick=self._check_alive, message=f"{self.name} worker to start")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process = getattr(self, "process", None)
        if process is None:
            return
        stop_process(process)
        self.log_file.close()
        self.process = None

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.name} worker exited with {self.process.returncode}:\n{self.worker_log()}")

    def worker_log(self) -> str:
        path = getattr(self, "log_path", None)
        return path.read_text(errors="replace")[-5000:] if path and path.exists() else ""

    def configured(self) -> Any:
        return config.override(**self.configuration())

    # --- during a test -------------------------------------------------------------------------

    def tick(self, strict: bool = False) -> None:
        """Give the backend a chance to run jobs (the test adapter runs them here; with
        ``strict`` a job's error propagates instead of being logged as a worker would)."""
        self._check_alive()

    def wait_for(
        self, token: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until the records of ``token`` satisfy ``predicate``; return them."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            found[:] = jobs.records(token)
            return predicate(found)

        wait_until(check, timeout=timeout, tick=self.tick, message=f"job records of {token} on {self.name}")
        return found

    def settle(self, token: str, seconds: float = 1.0) -> list[dict[str, Any]]:
        """Give the worker ``seconds`` more to (wrongly) record anything else; return the records."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.tick()
            time.sleep(0.05)
        return jobs.records(token)


def free_port() -> int:
    """A loopback port that nothing listens on (for a private server, or an unreachable broker)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, which the test may kill (fault tests)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(),
        )
        self.client = redis.Redis(port=self.port)
        try:
            wait_until(self._pings, timeout=10, message="the private redis-server")
        except BaseException:
            self.kill()  # a server that never answered must not outlive the test
            raise

    def _pings(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        self.server.kill()
        self.server.wait()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown of a worker's process group (SIGTERM), then SIGKILL after 20 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def python_bin(name: str) -> str:
    """A console script installed beside this interpreter (celery, rq, dramatiq, huey_consumer)."""
    return str(Path(sys.executable).with_name(name))


def events_of(records: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [r for r in records if r["event"] == event]
