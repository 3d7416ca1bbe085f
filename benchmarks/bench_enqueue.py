"""Enqueue throughput, unijob against the native library, side by side in one process.

    python -m benchmarks.bench_enqueue --backends rq,celery-redis --n 10000 --runs 5 --json out.json
    python -m benchmarks.bench_enqueue --backends rq --million      # 1,000,000 jobs from a generator: RSS

For each backend, one run times: the native per-job loop (native_loop), the library's fastest bulk
path (native_bulk: for Celery, the faster of ``group().apply_async()`` and the same group inside
kombu's ``Producer.batch()``), unijob's perform_later loop (unijob_loop) and perform_all_later (unijob_bulk).
The queues are flushed between runs. Ratios are of medians.
"""

from __future__ import annotations

import argparse
import logging
import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

import unijob
from benchmarks import jobs
from benchmarks.common import TARGETS, Target, load_target, peak_rss_mb, print_table, record, timed, write_json

PAIRS = [("unijob_bulk", "native_bulk"), ("unijob_loop", "native_loop")]


def unijob_loop(n: int) -> None:
    perform_later = jobs.noop.perform_later
    for i in range(n):
        perform_later(i)


def unijob_bulk(n: int) -> None:
    count = unijob.perform_all_later(jobs.noop.new(i) for i in range(n))
    if count != n:
        raise RuntimeError(f"perform_all_later enqueued {count} of {n}")


def bench_backend(target: Target, n: int, runs: int) -> list[dict[str, Any]]:
    bulk_paths = target.native_bulk_paths()
    methods: dict[str, Callable[[], Any]] = {
        "native_loop": partial(target.native_loop, n),
        **{path: partial(enqueue, n) for path, enqueue in bulk_paths.items()},
        "unijob_loop": partial(unijob_loop, n),
        "unijob_bulk": partial(unijob_bulk, n),
    }
    durations: dict[str, list[float]] = {name: [] for name in methods}
    with unijob.override(**target.configuration()):
        for _ in range(runs):
            for name, method in methods.items():  # interleaved, so drift hits every method alike
                target.flush()
                durations[name].append(timed(method))
        target.flush()
    # native_bulk is the library's fastest bulk path in this run
    fastest = min(bulk_paths, key=lambda path: statistics.median(durations[path]))
    if len(bulk_paths) > 1:
        speeds = ", ".join(f"{path} {n / statistics.median(durations[path]):,.0f}" for path in bulk_paths)
        print(f"{target.name}: native bulk paths, jobs/s: {speeds}; native_bulk is {fastest}")
    durations["native_bulk"] = durations[fastest]
    order = ("native_loop", "native_bulk", "unijob_loop", "unijob_bulk")
    return [record(target.name, name, n, durations[name]) for name in order]


def bench_million(target: Target, n: int) -> dict[str, Any]:
    with unijob.override(**target.configuration()):
        target.flush()
        before = peak_rss_mb()
        duration = timed(partial(unijob_bulk, n))
        target.flush()
    entry = record(target.name, "unijob_bulk", n, [duration])
    rss = entry["peak_rss_mb"]
    print(f"{target.name}: {n:,} jobs from a generator in {duration:.1f}s, peak RSS {rss} MB (before: {before:.1f} MB)")
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(TARGETS))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--million", action="store_true", help="only enqueue 1,000,000 jobs from a generator and report peak RSS")
    args = parser.parse_args()
    logging.getLogger("unijob").setLevel(logging.WARNING)
    records: list[dict[str, Any]] = []
    for name in args.backends.split(","):
        target = load_target(name.strip())
        if args.million:
            records.append(bench_million(target, 1_000_000))
        else:
            records.extend(bench_backend(target, args.n, args.runs))
    if not args.million:
        print_table(records, PAIRS)
    write_json(args.json_path, records)


if __name__ == "__main__":
    main()
