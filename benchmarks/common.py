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
        """Keyword arguments for ``unijob.configure`` (backend, url, options)."""

    def worker_env(self) -> dict[str, str]:
        """UNIJOB_* variables for the stock worker (same configuration as above)."""

    def flush(self) -> None:
        """Empty the queues (between runs)."""

    def native_loop(self, n: int) -> None:
        """Enqueue ``n`` native no-op jobs one call at a time (e.g. ``task.delay(i)``)."""

    def native_bulk(self, n: int) -> None:
        """Enqueue ``n`` native no-op jobs by the library's fastest bulk path."""

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
    header = f"{'backend':<18}" + "".join(f"{m:>{width}}" for m in methods) + "".join(f"{a + '/' + b:>30}" for a, b in pairs)
    print(header)
    for backend, entries in by_backend.items():
        cells = (f"{entries[m]['jobs_per_s']:,.0f}" if m in entries else "-" for m in methods)
        row = f"{backend:<18}" + "".join(f"{cell:>{width}}" for cell in cells)
        for a, b in pairs:
            ratio = entries[a]["jobs_per_s"] / entries[b]["jobs_per_s"] if a in entries and b in entries else None
            row += f"{ratio:>29.2f}x" if ratio is not None else f"{'-':>30}"
        print(row)


def write_json(path: str | None, records: list[dict[str, Any]]) -> None:
    if path:
        Path(path).write_text(json.dumps(records, indent=2) + "\n")


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env
