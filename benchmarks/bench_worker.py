"""Worker throughput: how fast the stock worker drains N native no-op jobs against N unijob jobs.

    python -m benchmarks.bench_worker --backends rq,huey-sqlite --n 2000 --runs 5 --json out.json

Each run enqueues N jobs of each kind in turn (native and unijob, taking turns going first), starts
the stock worker, and times from the first job done to the last (each job does one Redis INCR),
then stops the worker. The worker's startup is left out, so the ratio of medians compares the
per-job overhead.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import unijob
from benchmarks import jobs
from benchmarks.common import ROOT, TARGETS, Target, bench_env, load_target, print_table, record, write_json

PAIRS = [("unijob_worker", "native_worker")]
DRAIN_TIMEOUT = 600


def drain_time(target: Target, n: int, enqueue: Callable[[], None], *, unijob_jobs: bool) -> float:
    """Seconds from the first job done to the N-th: the worker's startup (the same command for both
    kinds, and noisy) is left out, so the ratio compares the per-job cost alone."""
    target.flush()
    jobs.counter().delete(jobs.COUNTER_KEY)
    enqueue()
    env = {**bench_env(), **target.worker_env(), "UNIJOB_IMPORTS": "benchmarks.jobs"}
    started = time.perf_counter()
    worker = subprocess.Popen(
        target.worker_argv(unijob_jobs),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    first_done: float | None = None
    try:
        while (done := int(jobs.counter().get(jobs.COUNTER_KEY) or 0)) < n:
            if first_done is None and done > 0:
                first_done = time.perf_counter()
            if worker.poll() is not None:
                raise RuntimeError(f"{target.name} worker exited with {worker.returncode}")
            if time.perf_counter() - started > DRAIN_TIMEOUT:
                raise RuntimeError(f"{target.name} worker did not drain {n} jobs in {DRAIN_TIMEOUT}s")
            time.sleep(0.005)
        return (time.perf_counter() - (first_done or started)) * n / (n - 1)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        target.flush()


def bench_backend(target: Target, n: int, runs: int) -> list[dict[str, Any]]:
    kinds: dict[str, tuple[Callable[[], Any], bool]] = {
        "native_worker": (lambda: target.native_counted(n), False),
        "unijob_worker": (lambda: unijob.perform_all_later(jobs.counted.new(i) for i in range(n)), True),
    }
    durations: dict[str, list[float]] = {name: [] for name in kinds}
    with unijob.override(**target.configuration()):
        for run in range(runs):
            # the kinds take turns going first, so a machine that slows down or warms up hits both alike
            for name in sorted(kinds, reverse=bool(run % 2)):
                enqueue, unijob_jobs = kinds[name]
                durations[name].append(drain_time(target, n, enqueue, unijob_jobs=unijob_jobs))
    return [record(target.name, name, n, values) for name, values in durations.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(TARGETS))
    # 2,000 rather than bench_enqueue's 10,000: RQ's stock worker forks per job (about 60 jobs/s),
    # and 10 drains of 10,000 would take half an hour on it alone
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    logging.getLogger("unijob").setLevel(logging.WARNING)
    records: list[dict[str, Any]] = []
    for name in args.backends.split(","):
        records.extend(bench_backend(load_target(name.strip()), args.n, args.runs))
    print_table(records, PAIRS)
    write_json(args.json_path, records)


if __name__ == "__main__":
    main()
