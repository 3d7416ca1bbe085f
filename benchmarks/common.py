"""What every benchmark target (one per contract backend) provides, and the shared timing code."""

from __future__ import annotations

import importlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {
    "celery-redis": "benchmarks.targets.celery_redis",
    "celery-rabbitmq": "benchmarks.targets.celery_rabbitmq",
    "rq": "benchmarks.targets.rq",
    "dramatiq-redis": "benchmarks.targets.dramatiq_redis",
    "dramatiq-rabbitmq": "benchmarks.targets.dramatiq_rabbitmq",
    "huey-sqlite": "benchmarks.targets.huey_sqlite",
}


class Target(Protocol):
    """One backend, natively and through unijob. Each target module defines ``TARGET``."""

    name: str

    def configuration(self) -> dict[str, Any]:
        """Keyword arguments for ``unijob.configure`` (adapter, url, options)."""

    def worker_env(self) -> dict[str, str]:
        """UNIJOB_* variables for the stock worker (same configuration as above)."""

    def flush(self) -> None:
        """Empty the queues (between runs)."""

    def native_loop(self, n: int) -> None:
        """Enqueue ``n`` native no-op jobs one call at a time (e.g. ``task.delay(i)``)."""

    def native_bulk_paths(self) -> dict[str, Callable[[int], None]]:
        """The library's bulk paths by name, each enqueuing ``n`` native no-op jobs; ``native_bulk``
        is whichever of them is fastest in the run."""

    def native_counted(self, n: int) -> None:
        """Enqueue ``n`` native jobs that call ``benchmarks.jobs.count_one()`` (worker benchmark)."""

    def worker_argv(self, unijob: bool) -> list[str]:
        """The stock worker command for unijob's jobs (``unijob=True``) or the native ones. Where one
        command runs both, return it for both, so that only the per-job overhead differs."""


def load_target(name: str) -> Target:
    if name not in TARGETS:
        raise SystemExit(f"unknown backend {name!r}; choose from {', '.join(TARGETS)}")
    target: Target = importlib.import_module(TARGETS[name]).TARGET
    return target


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return usage / 1024 if sys.platform != "darwin" else usage / 1024 / 1024


def record(backend: str, method: str, n: int, durations: list[float]) -> dict[str, Any]:
    median = statistics.median(durations)
    return {
        "backend": backend,
        "method": method,
        "n": n,
        "median_s": round(median, 4),
        "jobs_per_s": round(n / median, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def print_table(records: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> None:
    """A table of jobs/s per backend and method, with the ratios the targets are stated in."""
    by_backend: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in records:
        by_backend.setdefault(entry["backend"], {})[entry["method"]] = entry
    methods = sorted({entry["method"] for entry in records}, key=[m for pair in pairs for m in pair].index)
    width = max(len(m) for m in methods) + 2
    ratio_width = max(len(a) + len(b) for a, b in pairs) + 4

    def line(first: str, cells: list[str], ratios: list[str]) -> str:
        return f"{first:<18}" + "".join(f"{c:>{width}}" for c in cells) + "".join(f"{r:>{ratio_width}}" for r in ratios)

    print(line("backend", methods, [f"{a}/{b}" for a, b in pairs]))
    for backend, entries in by_backend.items():
        cells = [f"{entries[m]['jobs_per_s']:,.0f}" if m in entries else "-" for m in methods]
        ratios = [
            f"{entries[a]['jobs_per_s'] / entries[b]['jobs_per_s']:.2f}x" if a in entries and b in entries else "-"
            for a, b in pairs
        ]
        print(line(backend, cells, ratios))


def write_json(path: str | None, records: list[dict[str, Any]]) -> None:
    if path:
        Path(path).write_text(json.dumps(records, indent=2) + "\n")


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env
