"""Huey on a SQLite file (the embedded default), run by the stock ``huey_consumer``."""

from __future__ import annotations

import os
from pathlib import Path

from tests.harness import Harness, python_bin

TEST_DIR = Path("/tmp/unijob-test-huey")
# The stock consumer, as docs/backends/huey.md documents it.
CONSUMER_ARGS = ["unijob.adapters.huey_worker.huey", "-k", "thread", "-w", "2", "-m", "1", "-g", "TERM"]


class HueySqliteHarness(Harness):
    name = "huey-sqlite"
    adapter = "huey"

    def __init__(self, filename: str | None = None) -> None:
        self.path = TEST_DIR / (filename or f"contract-{os.getpid()}.sqlite3")
        self.options = {"path": str(self.path)}

    def worker_argv(self) -> list[str]:
        return [python_bin("huey_consumer"), *CONSUMER_ARGS]

    def reset_broker(self) -> None:
        TEST_DIR.mkdir(parents=True, exist_ok=True)
        self.remove_files()

    def stop(self) -> None:
        super().stop()
        self.remove_files()

    def remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


HARNESS = HueySqliteHarness()
