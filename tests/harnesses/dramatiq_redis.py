from __future__ import annotations

import redis

from tests.harness import Harness, python_bin

URL = "redis://127.0.0.1:6379/3"


class DramatiqRedisHarness(Harness):
    name = "dramatiq-redis"
    adapter = "dramatiq"
    url = URL
    services = ("redis",)

    def worker_argv(self) -> list[str]:
        return [python_bin("dramatiq"), "unijob.adapters.dramatiq_worker", "--processes", "1", "--threads", "2"]

    def reset_broker(self) -> None:
        redis.Redis.from_url(URL).flushdb()


HARNESS = DramatiqRedisHarness()
