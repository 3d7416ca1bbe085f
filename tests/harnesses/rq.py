"""RQ on Redis db 2, run by the stock ``rq worker`` with unijob's worker and job classes."""

from __future__ import annotations

import redis

from tests.harness import Harness, python_bin


class RQHarness(Harness):
    name = "rq"
    adapter = "rq"
    url = "redis://127.0.0.1:6379/2"
    queues = ("default", "mail")

    def worker_argv(self) -> list[str]:
        # docs/backends/rq.md documents this command
        return [
            python_bin("rq"), "worker", "--with-scheduler",
            "--url", self.url,
            "--worker-class", "unijob.adapters.rq_worker.Worker",
            "--job-class", "unijob.adapters.rq_worker.Job",
            "--serializer", "json",
            *self.queues,
        ]  # fmt: skip

    def reset_broker(self) -> None:
        redis.Redis.from_url(self.url).flushdb()


HARNESS = RQHarness()
