"""Celery on RabbitMQ (vhost ``unijob_bench_celery``), natively and through unijob.

The same as :mod:`benchmarks.targets.celery_redis` on another broker: the native app is configured
like unijob's (``x-max-priority: 10`` queues, default priority 5), so both declare the queue alike.
On RabbitMQ unijob's bulk path is the native one (publisher-confirmed publishes on one producer).
"""

from __future__ import annotations

import subprocess
from typing import Any

from benchmarks.targets.celery_redis import CeleryTarget, worker_app

VHOST = "unijob_bench_celery"
URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"


class CeleryRabbitmqTarget(CeleryTarget):
    def __init__(self) -> None:
        super().__init__("celery-rabbitmq", URL, __name__)
        self._vhost_ready = False

    def configuration(self) -> dict[str, Any]:
        self._ensure_vhost()
        return super().configuration()

    def _ensure_vhost(self) -> None:
        if not self._vhost_ready:
            subprocess.run(["rabbitmqctl", "add_vhost", VHOST], capture_output=True, check=False)
            subprocess.run(
                ["rabbitmqctl", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"], capture_output=True, check=True
            )
            self._vhost_ready = True

    def flush(self) -> None:
        self._ensure_vhost()
        super().flush()


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        return worker_app()
    raise AttributeError(name)


TARGET = CeleryRabbitmqTarget()
