"""Scenarios ``e2e`` and ``persistence``: no-op jobs drained by W worker processes.

One measurement: N jobs (``data`` = 0..N-1) are enqueued with ``enqueue_many`` (batches of
500, timed: the *enqueue* part), W children are spawned and wait at a barrier, then all
start at once and run until the queue is drained (``burst``). The *drain* throughput is
N / (last handler call - first handler call) over all children; *wall* adds the workers'
startup and shutdown. Every child writes the ids it ran, and the run FAILS unless each
id 0..N-1 was run exactly once and the queue reports N completed, nothing waiting, failed
or dead. Redis CPU per job is the ``INFO cpu`` delta over the drain (workers start to
workers gone) plus the deferred trimming of finished records (:func:`retention_pass`),
divided by N; the workers' own CPU is reported beside it. The first repetition also
records ``INFO commandstats``: where Redis spends that time.

``persistence`` repeats the one-process run on a server with AOF ``everysec`` (profile
``default``) against one without (profile ``none``).
"""

from __future__ import annotations

import time
from typing import Any

import streamq
from bench.common import (
    BenchFailure,
    Context,
    Progress,
    client,
    fmt,
    pct,
    ratio,
    redis_cpu_s,
    settings_for,
    show,
    write_json,
)
from bench.workers import WorkerPool, check_exactly_once

BATCH = 500


def fill(url: str, queue: str, n: int, label: str = "enqueue") -> tuple[float, float]:
    """Enqueue jobs 0..n-1 (``noop``) in batches of 500; returns (seconds, Redis CPU s)."""
    progress = Progress(label, n)
    r = client(url)
    with streamq.Producer(settings=settings_for(url)) as p:
        p.ping()
        cpu0, t0 = redis_cpu_s(r), time.perf_counter()
        for i in range(0, n, BATCH):
            p.enqueue_many(queue, [streamq.JobSpec("noop", j) for j in range(i, min(i + BATCH, n))])
            progress.update(i + BATCH)
        took, cpu = time.perf_counter() - t0, redis_cpu_s(r) - cpu0
    r.close()
    progress.done()
    return took, cpu


def _commandstats(r: Any, n: int) -> dict[str, dict[str, float]]:
    """INFO commandstats since the last CONFIG RESETSTAT, per job."""
    out = {}
    for name, v in r.info("commandstats").items():
        cmd = name.removeprefix("cmdstat_")
        calls, usec = int(v["calls"]), float(v["usec"])
        out[cmd] = {
            "calls_per_job": calls / n,
            "usec_per_job": usec / n,
            "usec_per_call": usec / calls if calls else 0.0,
        }
    return out


def measure(
    ctx: Context,
    url: str,
    processes: int,
    n: int,
    *,
    label: str,
    timeout_s: float | None = None,
    commandstats: bool = False,
    retention: bool = True,
) -> dict[str, Any]:
    """One drain of ``n`` no-op jobs by ``processes`` workers; raises BenchFailure when a job
    is lost or duplicated or a worker fails. With ``retention``, the deferred trimming of
    finished records is measured afterwards (see :func:`retention_pass`)."""
    queue = ctx.queue(f"e2e-w{processes}")
    enqueue_s, enqueue_cpu = fill(url, queue, n, f"{label}: enqueue")
    record_dir = ctx.tmp / queue
    timeout = timeout_s if timeout_s is not None else max(60.0, n / 500)
    pool = WorkerPool(
        url,
        queue,
        processes,
        ctx.concurrency,
        burst=True,
        timeout_s=timeout,
        record_dir=record_dir,
    )
    pool.start()
    r = client(url)
    producer = streamq.Producer(settings=settings_for(url))
    try:
        progress = Progress(f"{label}: drain", n)
        if commandstats:
            r.config_resetstat()
        cpu0 = redis_cpu_s(r)
        t_go = pool.go()

        def poll() -> None:
            progress.update(producer.status(queue).completed_total)

        results = pool.collect(on_wait=poll)
        wall = time.time() - t_go
        cpu = redis_cpu_s(r) - cpu0
        stats = _commandstats(r, n) if commandstats else None
        status = producer.status(queue)
        progress.done()
    finally:
        pool.terminate()
        producer.close()
        r.close()

    check = check_exactly_once([c.ids for c in results], n)
    firsts = [c.first for c in results if c.first is not None]
    lasts = [c.last for c in results if c.last is not None]
    drain = (max(lasts) - min(firsts)) if firsts and lasts else wall
    out: dict[str, Any] = {
        "queue": queue,
        "processes": processes,
        "concurrency": ctx.concurrency,
        "jobs": n,
        "enqueue_s": enqueue_s,
        "drain_s": drain,
        "wall_s": wall,
        "per_s": n / drain if drain > 0 else None,
        "wall_per_s": n / wall,
        "enqueue_and_drain_per_s": n / (enqueue_s + drain),
        "redis_cpu_us_per_job": cpu / n * 1e6,
        "redis_cpu_drain_us_per_job": cpu / n * 1e6,
        "redis_cpu_retention_us_per_job": None,
        "enqueue_redis_cpu_us_per_job": enqueue_cpu / n * 1e6,
        "worker_cpu_us_per_job": sum(c.cpu_s for c in results) / n * 1e6,
        "per_child_processed": [c.processed for c in results],
        "seen": check.seen,
        "missing": check.missing,
        "duplicated": check.duplicated,
        "foreign": check.foreign,
        "completed_total": status.completed_total,
        "waiting": status.waiting,
        "active": status.active,
        "failed_total": status.failed_total,
        "dead": status.dead,
        "exactly_once": check.ok,
    }
    problems = []
    if not check.ok:
        problems.append(
            f"{check.missing} missing, {check.duplicated} duplicated, "
            f"{check.foreign} unexpected ids ({check.examples})"
        )
    if status.completed_total != n or status.waiting or status.active:
        problems.append(
            f"queue reports completed_total={status.completed_total} of {n}, "
            f"waiting={status.waiting}, active={status.active}"
        )
    if status.failed_total or status.dead:
        problems.append(f"failed_total={status.failed_total}, dead={status.dead}")
    out["problems"] = problems
    if stats is not None:
        out["commandstats"] = stats
    if problems:
        raise BenchFailure(f"{label}: " + "; ".join(problems))
    if retention:
        trim_cpu = retention_pass(ctx, url, queue, f"{label}: retention")
        out["redis_cpu_retention_us_per_job"] = trim_cpu / n * 1e6
        out["redis_cpu_us_per_job"] = (cpu + trim_cpu) / n * 1e6
    return out


def retention_pass(ctx: Context, url: str, queue: str, label: str) -> float:
    """Redis CPU seconds of the retention a drain leaves behind.

    A burst worker exits as soon as the queue is empty, but finished job records are
    trimmed (down to ``keep_completed``) by the housekeeping loop about once a second, so
    most of that work falls after the drain. One serve-mode worker is run on the drained
    queue until the records are trimmed; the Redis CPU meanwhile (its startup and the
    status polls included, both tiny) is the deferred cost.
    """
    keep = settings_for(url).keep_completed
    pool = WorkerPool(
        url, queue, 1, 1, burst=False, timeout_s=60, record_dir=ctx.tmp / f"{queue}-trim"
    )
    pool.start()
    r = client(url)
    producer = streamq.Producer(settings=settings_for(url))
    try:
        before = producer.status(queue).completed
        progress = Progress(label, before, unit="records")
        cpu0 = redis_cpu_s(r)
        pool.go()
        deadline = time.monotonic() + 30
        while (left := producer.status(queue).completed) > keep:
            if time.monotonic() > deadline:
                raise BenchFailure(f"{label}: {left} finished records still kept after 30 s")
            progress.update(before - left)
            time.sleep(0.02)
        cpu = redis_cpu_s(r) - cpu0
        pool.stop()
        pool.collect()
        progress.done()
    finally:
        pool.terminate()
        producer.close()
        r.close()
    return cpu


def _row(m: dict[str, Any], ceiling: float | None) -> tuple[Any, ...]:
    return (
        m["processes"],
        m["concurrency"],
        m["jobs"],
        f"{m['drain_s']:.3f}",
        m["per_s"],
        pct(ratio(m["per_s"], ceiling)),
        m["wall_per_s"],
        m["redis_cpu_us_per_job"],
        m["worker_cpu_us_per_job"],
        f"{m['missing']}/{m['duplicated']}",
    )


HEADERS = [
    "procs",
    "conc",
    "jobs",
    "drain s",
    "jobs/s",
    "vs bare",
    "wall jobs/s",
    "Redis CPU us/job",
    "worker CPU us/job",
    "lost/dup",
]


def repeated(ctx: Context, url: str, processes: int, n: int, *, label: str) -> dict[str, Any]:
    """``ctx.repeat`` measurements; returns the median one (by jobs/s) with every rate in
    ``all_per_s``. Every repetition must pass the exactly-once check."""
    runs = []
    for i in range(ctx.repeat):
        tag = f"{label} #{i + 1}" if ctx.repeat > 1 else label
        runs.append(measure(ctx, url, processes, n, label=tag, commandstats=i == 0))
    runs.sort(key=lambda m: m["per_s"])
    median = dict(runs[len(runs) // 2])
    median["all_per_s"] = [m["per_s"] for m in runs]
    if "commandstats" not in median:
        median["commandstats"] = next(m["commandstats"] for m in runs if "commandstats" in m)
    return median


def _spread(m: dict[str, Any]) -> str:
    rates = m.get("all_per_s") or [m["per_s"]]
    if len(rates) < 2:
        return "-"
    return f"{min(rates):,.0f}-{max(rates):,.0f}"


def show_commandstats(m: dict[str, Any], top: int = 12) -> None:
    """Where Redis spent its time during one drain (INFO commandstats, per job)."""
    stats = sorted(m["commandstats"].items(), key=lambda kv: -kv[1]["usec_per_job"])[:top]
    show(
        f"Redis time by command during the {m['processes']}-process drain "
        "(INFO commandstats; script commands include the commands they call)",
        ["command", "calls/job", "us/job", "us/call"],
        [
            (name, f"{v['calls_per_job']:.3f}", f"{v['usec_per_job']:.2f}", v["usec_per_call"])
            for name, v in stats
        ],
    )


def run(ctx: Context) -> dict[str, Any]:
    """The e2e table for each worker-process count."""
    ceiling = ctx.results.get("ceiling", {}).get("consume", {}).get("per_s")
    loop = ctx.results.get("ceiling", {}).get("loop", {}).get("per_s")
    runs = [
        repeated(ctx, ctx.url, w, ctx.jobs, label=f"e2e {w} proc x {ctx.concurrency}")
        for w in ctx.workers
    ]
    med = f" (median of {ctx.repeat} runs; range = slowest-fastest)" if ctx.repeat > 1 else ""
    show(
        "end-to-end no-op throughput: pre-filled queue drained by W processes"
        f"{med}; vs bare = vs the bare consume ceiling; Redis CPU = drain + deferred retention",
        [*HEADERS[:5], "range", *HEADERS[5:]],
        [(*_row(m, ceiling)[:5], _spread(m), *_row(m, ceiling)[5:]) for m in runs],
    )
    first = runs[0]
    print(
        f"enqueue + drain ({first['processes']} proc): "
        f"{fmt(first['enqueue_and_drain_per_s'])} jobs/s "
        f"= {pct(ratio(first['enqueue_and_drain_per_s'], loop))} of the bare full loop",
        flush=True,
    )
    show_commandstats(first)
    result = {"runs": runs, "ceiling_consume_per_s": ceiling, "ceiling_loop_per_s": loop}
    write_json(ctx.out_dir, "e2e", result)
    return result


def run_persistence(ctx: Context) -> dict[str, Any]:
    """The same one-process e2e run with AOF off and with appendfsync everysec."""
    rows, runs = [], {}
    for profile in ("none", "default"):
        server = ctx.start_server(profile, tag=profile)  # type: ignore[arg-type]
        try:
            m = repeated(ctx, server.url, 1, ctx.jobs, label=f"persistence {profile}")
        finally:
            ctx.stop_server(server)
        runs[profile] = m
    base = runs["none"]["per_s"]
    for profile, m in runs.items():
        what = "AOF off, no RDB" if profile == "none" else "AOF everysec + RDB save points"
        rows.append(
            (
                profile,
                what,
                m["jobs"],
                m["per_s"],
                pct(ratio(m["per_s"], base)),
                m["redis_cpu_us_per_job"],
            )
        )
    show(
        f"persistence cost (1 process x {ctx.concurrency})",
        ["profile", "persistence", "jobs", "jobs/s", "vs none", "Redis CPU us/job"],
        rows,
    )
    result = {"runs": runs, "ratio_default_to_none": ratio(runs["default"]["per_s"], base)}
    write_json(ctx.out_dir, "persistence", result)
    return result
