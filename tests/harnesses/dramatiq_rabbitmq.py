from __future__ import annotations

import subprocess

from tests.harness import Harness, ensure_rabbitmq_vhost, python_bin

VHOST = "unijob_dramatiq"
URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"


class DramatiqRabbitmqHarness(Harness):
    name = "dramatiq-rabbitmq"
    adapter = "dramatiq"
    url = URL
    options = {"store": "redis://127.0.0.1:6379/3"}  # batch records need Redis (db 3 is Dramatiq's)
    services = ("rabbitmq", "redis")  # redis holds the test results

    def worker_argv(self) -> list[str]:
        return [python_bin("dramatiq"), "unijob.adapters.dramatiq_worker", "--processes", "1", "--threads", "2"]

    def reset_broker(self) -> None:
        # A fresh vhost: no stale messages, and no queue declared earlier with other arguments.
        subprocess.run(["rabbitmqctl", "delete_vhost", VHOST], capture_output=True, check=False)
        ensure_rabbitmq_vhost(VHOST)


HARNESS = DramatiqRabbitmqHarness()
