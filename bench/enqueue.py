"""Scenario ``enqueue``: producer throughput, one call per job and batched, sync and async,
beside the bare ceiling measured in the same run (redis-py + hiredis: one XADD per call,
and XADD pipelined in batches of 500).

The bare entries carry the fields a minimal job needs (id, name, payload), so the bare
figures are what any Streams-based queue could reach from Python on this machine.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aredis

import streamq
from bench.common import Context, Progress, client, pct, ratio, settings_for, show, write_json

BATCH = 500


def _sizes(ctx: Context) -> tuple[int, int]:
    """(jobs for one-call-per-job runs, jobs for batched runs)."""
    single = min(ctx.jobs, 3_000 if ctx.quick else 10_000)
    return single, ctx.jobs


def _timed(label: str, n: int, step: int, body: Callable[[int], Any]) -> float:
    """Run ``body(i)`` for i in range(0, n, step); returns jobs per second."""
    progress = Progress(label, n)
    t0 = time.perf_counter()
    for i in range(0, n, step):
        body(i)
        if i % 1000 < step:
            progress.update(i + step)
    took = time.perf_counter() - t0
    progress.done()
    return n / took


def bare_single(url: str, n: int) -> float:
    """One XADD per call (one round trip each)."""
    r = client(url)
    stream = f"bench-bare-{time.time_ns()}"
    try:
        return _timed(
            "bare XADD, one per call",
            n,
            1,
            lambda i: r.xadd(stream, {"i": i, "n": "noop", "d": i}),
        )
    finally:
        r.delete(stream)
        r.close()


def bare_pipelined(url: str, n: int) -> float:
    """XADD pipelined (no MULTI) in batches of 500."""
    r = client(url)
    stream = f"bench-bare-{time.time_ns()}"

    def batch(i: int) -> None:
        pipe = r.pipeline(transaction=False)
        for j in range(i, min(i + BATCH, n)):
            pipe.xadd(stream, {"i": j, "n": "noop", "d": j})
        pipe.execute()

    try:
        return _timed(f"bare XADD, pipelined x{BATCH}", n, BATCH, batch)
    finally:
        r.delete(stream)
        r.close()


async def _bare_async(url: str, n: int) -> float:
    r = aredis.Redis.from_url(url, socket_timeout=30)
    stream = f"bench-bare-{time.time_ns()}"
    try:
        await r.ping()
        progress = Progress("bare async XADD, one per call", n)
        t0 = time.perf_counter()
        for i in range(n):
            await r.xadd(stream, {"i": i, "n": "noop", "d": i})
            if i % 1000 == 0:
                progress.update(i)
        took = time.perf_counter() - t0
        progress.done()
        return n / took
    finally:
        await r.delete(stream)
        await r.aclose()


def producer_one(ctx: Context, n: int) -> float:
    """Producer.enqueue, one call per job."""
    with streamq.Producer(settings=settings_for(ctx.url)) as p:
        p.ping()  # connect before timing
        q = ctx.queue("enq-sync-1")
        return _timed("Producer.enqueue", n, 1, lambda i: p.enqueue(q, "noop", i))


def producer_many(ctx: Context, n: int) -> float:
    """Producer.enqueue_many, batches of 500."""
    with streamq.Producer(settings=settings_for(ctx.url)) as p:
        p.ping()
        q = ctx.queue("enq-sync-n")

        def many(i: int) -> None:
            p.enqueue_many(q, [streamq.JobSpec("noop", j) for j in range(i, min(i + BATCH, n))])

        return _timed(f"Producer.enqueue_many x{BATCH}", n, BATCH, many)


async def _async_one(ctx: Context, n: int) -> float:
    async with streamq.AsyncProducer(settings=settings_for(ctx.url)) as p:
        await p.ping()
        q = ctx.queue("enq-async-1")
        progress = Progress("AsyncProducer.enqueue", n)
        t0 = time.perf_counter()
        for i in range(n):
            await p.enqueue(q, "noop", i)
            if i % 1000 == 0:
                progress.update(i)
        rate = n / (time.perf_counter() - t0)
        progress.done()
        return rate


async def _async_many(ctx: Context, n: int) -> float:
    async with streamq.AsyncProducer(settings=settings_for(ctx.url)) as p:
        await p.ping()
        q = ctx.queue("enq-async-n")
        progress = Progress(f"AsyncProducer.enqueue_many x{BATCH}", n)
        t0 = time.perf_counter()
        for i in range(0, n, BATCH):
            await p.enqueue_many(
                q, [streamq.JobSpec("noop", j) for j in range(i, min(i + BATCH, n))]
            )
            progress.update(i + BATCH)
        rate = n / (time.perf_counter() - t0)
        progress.done()
        return rate


# name -> (one call per job?, measurement); run in this order, round after round.
MEASURES: dict[str, tuple[bool, Callable[[Context, int], float]]] = {
    "bare_xadd": (True, lambda ctx, n: bare_single(ctx.url, n)),
    "sync_enqueue": (True, producer_one),
    "bare_async_xadd": (True, lambda ctx, n: asyncio.run(_bare_async(ctx.url, n))),
    "async_enqueue": (True, lambda ctx, n: asyncio.run(_async_one(ctx, n))),
    "bare_pipelined_xadd": (False, lambda ctx, n: bare_pipelined(ctx.url, n)),
    "sync_enqueue_many": (False, producer_many),
    "async_enqueue_many": (False, lambda ctx, n: asyncio.run(_async_many(ctx, n))),
}

# (label, measure, compared with)
ROWS = [
    ("bare XADD, one per call", "bare_xadd", None),
    ("Producer.enqueue", "sync_enqueue", "bare_xadd"),
    ("AsyncProducer.enqueue", "async_enqueue", "bare_xadd"),
    ("bare async XADD, one per call", "bare_async_xadd", "bare_xadd"),
    ("AsyncProducer.enqueue", "async_enqueue", "bare_async_xadd"),
    (f"bare XADD pipelined x{BATCH}", "bare_pipelined_xadd", None),
    (f"Producer.enqueue_many x{BATCH}", "sync_enqueue_many", "bare_pipelined_xadd"),
    (f"AsyncProducer.enqueue_many x{BATCH}", "async_enqueue_many", "bare_pipelined_xadd"),
]


def run(ctx: Context) -> dict[str, Any]:
    """Measure (``ctx.repeat`` interleaved rounds, median of each) and print the table."""
    single, batched = _sizes(ctx)
    samples: dict[str, list[float]] = {name: [] for name in MEASURES}
    for _ in range(ctx.repeat):
        for name, (one_by_one, measure) in MEASURES.items():
            samples[name].append(measure(ctx, single if one_by_one else batched))
    rate = {name: statistics.median(v) for name, v in samples.items()}
    rows = []
    for label, name, vs in ROWS:
        jobs = single if MEASURES[name][0] else batched
        vs_label = "-" if vs is None else next(lb for lb, n, _ in ROWS if n == vs)
        rows.append(
            (
                label,
                jobs,
                rate[name],
                vs_label,
                "-" if vs is None else pct(ratio(rate[name], rate[vs])),
            )
        )
    med = f"median of {ctx.repeat} interleaved rounds; " if ctx.repeat > 1 else ""
    show(
        f"enqueue throughput (one producer, one call in flight; {med}"
        "ratio = jobs/s over the 'vs' row)",
        ["how", "jobs", "jobs/s", "vs", "ratio"],
        rows,
    )
    result: dict[str, Any] = {
        "single_jobs": single,
        "batched_jobs": batched,
        "batch": BATCH,
        "samples_per_s": samples,
        **{f"{name}_per_s": v for name, v in rate.items()},
        "ratio_sync_enqueue_to_xadd": ratio(rate["sync_enqueue"], rate["bare_xadd"]),
        "ratio_async_enqueue_to_xadd": ratio(rate["async_enqueue"], rate["bare_xadd"]),
        "ratio_async_enqueue_to_async_xadd": ratio(rate["async_enqueue"], rate["bare_async_xadd"]),
        "ratio_sync_many_to_pipelined": ratio(
            rate["sync_enqueue_many"], rate["bare_pipelined_xadd"]
        ),
        "ratio_async_many_to_pipelined": ratio(
            rate["async_enqueue_many"], rate["bare_pipelined_xadd"]
        ),
    }
    write_json(ctx.out_dir, "enqueue", result)
    return result
