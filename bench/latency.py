"""Scenarios ``latency`` (pickup) and ``delayed`` (lateness), each with one worker process
already running (serve mode) before the producer starts.

* pickup: the producer enqueues ``stamp`` jobs one call per job at a fixed rate (100 and
  1,000 jobs/s, paced against an absolute schedule); each payload carries the wall-clock
  time taken just before the enqueue call; the handler records ``now - sent``.
* delayed: jobs are enqueued (batched) with ``at=`` due times spread over a few seconds,
  starting one second ahead; the handler records ``start - due``.

Each run starts with one warm-up job (sequence number 0, run and waited for before the
measured jobs are sent): it proves the worker is up and blocked in its read, and its
sample is left out of the statistics (it is still in the exactly-once check).
"""

from __future__ import annotations

import time
from typing import Any

import streamq
from bench.apps import read_delays
from bench.common import (
    BenchFailure,
    Context,
    Progress,
    settings_for,
    show,
    summary_ms,
    write_json,
)
from bench.workers import WorkerPool, check_exactly_once

PCTS = ("p50_ms", "p95_ms", "p99_ms", "max_ms")


def _serve(ctx: Context, queue: str) -> WorkerPool:
    pool = WorkerPool(
        ctx.url,
        queue,
        1,
        ctx.concurrency,
        burst=False,
        timeout_s=120,
        record_dir=ctx.tmp / queue,
    )
    pool.start()
    pool.go()
    return pool


def _wait_drained(p: streamq.Producer, queue: str, n: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while p.status(queue).completed_total < n:
        if time.monotonic() > deadline:
            raise BenchFailure(f"{queue}: not all {n} jobs completed within {timeout_s} s")
        time.sleep(0.05)


def _warm_up(p: streamq.Producer, queue: str) -> None:
    p.enqueue(queue, "stamp", [0, time.time()])
    _wait_drained(p, queue, 1)


def _finish(pool: WorkerPool, n: int, label: str) -> list[float]:
    """Stop the worker, check ids 0..n (warm-up included) ran once each, and return the
    measured delays (the warm-up's, which ran first, left out)."""
    pool.stop()
    results = pool.collect()
    check = check_exactly_once([c.ids for c in results], n + 1)
    if not check.ok:
        raise BenchFailure(
            f"{label}: {check.missing} missing, {check.duplicated} duplicated ({check.examples})"
        )
    delays: list[float] = []
    for c in results:
        delays.extend(read_delays(c.delays))
    return delays[1:]


def pickup(ctx: Context, rate: int, seconds: float) -> dict[str, Any]:
    """Pickup latency at ``rate`` jobs/s for ``seconds``."""
    queue = ctx.queue(f"pickup-{rate}")
    n = int(rate * seconds)
    pool = _serve(ctx, queue)
    try:
        with streamq.Producer(settings=settings_for(ctx.url)) as p:
            _warm_up(p, queue)
            progress = Progress(f"pickup latency at {rate}/s", n)
            interval = 1.0 / rate
            start = time.perf_counter()
            behind = 0
            for i in range(n):
                due = start + i * interval
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)
                elif now - due > interval:
                    behind += 1
                p.enqueue(queue, "stamp", [i + 1, time.time()])
                progress.update(i + 1)
            achieved = n / (time.perf_counter() - start)
            _wait_drained(p, queue, n + 1)
            progress.done(f"achieved {achieved:,.0f}/s")
        delays = _finish(pool, n, f"pickup {rate}/s")
    finally:
        pool.terminate()
    return {
        "rate": rate,
        "achieved_rate": achieved,
        "late_sends": behind,
        **summary_ms(delays),
        "samples_s": delays,
    }


def delayed(ctx: Context, n: int, spread_s: float) -> dict[str, Any]:
    """Lateness of ``n`` delayed jobs due over ``spread_s`` seconds, from 1 s ahead."""
    queue = ctx.queue("delayed")
    pool = _serve(ctx, queue)
    try:
        with streamq.Producer(settings=settings_for(ctx.url)) as p:
            _warm_up(p, queue)
            base = time.time() + 1.0
            specs = []
            for i in range(n):
                due_ms = int((base + spread_s * i / n) * 1000)
                specs.append(streamq.JobSpec("stamp", [i + 1, due_ms / 1000], at=due_ms / 1000))
            for i in range(0, n, 500):
                p.enqueue_many(queue, specs[i : i + 500])
            progress = Progress("delayed jobs", n)
            deadline = time.monotonic() + spread_s + 30
            while (done := p.status(queue).completed_total - 1) < n:
                if time.monotonic() > deadline:
                    raise BenchFailure(f"delayed: only {done} of {n} jobs ran in time")
                progress.update(done)
                time.sleep(0.1)
            progress.done()
        delays = _finish(pool, n, "delayed")
    finally:
        pool.terminate()
    early = sum(1 for d in delays if d < 0)
    return {
        "jobs": n,
        "spread_s": spread_s,
        "early": early,
        **summary_ms(delays),
        "samples_s": delays,
    }


def run_pickup(ctx: Context) -> dict[str, Any]:
    """The pickup-latency table at 100 and 1,000 jobs/s."""
    seconds = 2.0 if ctx.quick else 5.0
    runs = [pickup(ctx, rate, seconds) for rate in (100, 1000)]
    show(
        f"pickup latency (enqueue -> handler start; 1 worker process x {ctx.concurrency})",
        ["rate/s", "achieved/s", "jobs", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [(r["rate"], r["achieved_rate"], r["n"], *(r[k] for k in PCTS)) for r in runs],
    )
    result = {"runs": runs}
    write_json(ctx.out_dir, "latency", result)
    return result


def run_delayed(ctx: Context) -> dict[str, Any]:
    """The delayed-job lateness table."""
    n, spread = (200, 2.0) if ctx.quick else (1000, 5.0)
    r = delayed(ctx, n, spread)
    show(
        f"delayed-job lateness (handler start - due; {n} jobs due over {spread:.0f} s)",
        ["jobs", "p50 ms", "p95 ms", "p99 ms", "max ms", "early"],
        [(r["n"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"], r["early"])],
    )
    write_json(ctx.out_dir, "delayed", r)
    return r
