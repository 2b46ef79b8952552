"""Scenario ``resources``: Redis memory per queued job and Redis CPU per processed job.

* memory: on a fresh server, ``INFO memory used_memory`` before and after 100,000 waiting
  jobs with a fixed 32-byte JSON payload; per job = delta / N - 32. The same for bare
  stream entries (XADD of id, name and the same payload) as the floor.
* CPU: ``INFO cpu`` (sys + user) over the one-process e2e drain divided by the jobs, taken
  from the ``e2e`` scenario (run here when it was not selected), beside the bare ceiling's.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

import streamq
from bench import e2e
from bench.common import (
    Context,
    Progress,
    client,
    pct,
    ratio,
    settings_for,
    show,
    used_memory,
    write_json,
)

MEMORY_JOBS = 100_000
PAYLOAD = "p" * 30  # 32 bytes as JSON
BATCH = 500


def _settle(r: Any) -> int:
    """used_memory after a moment (lazy frees and client buffers settle)."""
    time.sleep(0.2)
    return used_memory(r)


def _breakdown(r: Any, queue: str, n: int) -> dict[str, float]:
    """MEMORY USAGE of the stream (per entry) and of a sample of job records: where the
    bytes go. Job keys are found through the stream entries' job ids."""
    stream = f"sq:{{{queue}}}:stream"
    sample = r.xrange(stream, count=200)
    job_bytes = [
        r.memory_usage(f"sq:{{{queue}}}:job:{fields[b'i'].decode()}", samples=0) or 0
        for _eid, fields in sample
    ]
    stream_bytes = r.memory_usage(stream, samples=0) or 0
    return {
        "stream_bytes_per_entry": stream_bytes / n,
        "job_record_bytes": sum(job_bytes) / len(job_bytes) if job_bytes else 0.0,
        "job_key_length": len(f"sq:{{{queue}}}:job:") + 26,
    }


def memory(ctx: Context, n: int) -> dict[str, Any]:
    """Bytes per waiting job, engine and bare, on a fresh server."""
    payload_len = len(orjson.dumps(PAYLOAD))
    server = ctx.start_server("none", tag="memory")
    try:
        r = client(server.url)
        queue = ctx.queue("memory")
        with streamq.Producer(settings=settings_for(server.url)) as p:
            p.enqueue_many(queue, [streamq.JobSpec("noop", PAYLOAD)])  # scripts, stream, group
            before = _settle(r)
            progress = Progress("memory: enqueue", n)
            for i in range(1, n, BATCH):
                p.enqueue_many(
                    queue, [streamq.JobSpec("noop", PAYLOAD) for _ in range(i, min(i + BATCH, n))]
                )
                progress.update(i + BATCH)
            progress.done()
            after = _settle(r)
            waiting = p.status(queue).waiting
            breakdown = _breakdown(r, queue, n)
        engine = (after - before) / (n - 1) - payload_len

        stream = "bench-memory-bare"
        raw = orjson.dumps(PAYLOAD)
        r.xadd(stream, {"i": "x" * 26, "n": "noop", "d": raw})
        bare_before = _settle(r)
        progress = Progress("memory: bare XADD", n)
        for i in range(1, n, BATCH):
            pipe = r.pipeline(transaction=False)
            for j in range(i, min(i + BATCH, n)):
                pipe.xadd(stream, {"i": f"{j:026d}", "n": "noop", "d": raw})
            pipe.execute()
            progress.update(i + BATCH)
        progress.done()
        bare = (_settle(r) - bare_before) / (n - 1) - payload_len
        r.close()
    finally:
        ctx.stop_server(server)
    return {
        "jobs": n,
        "waiting": waiting,
        "payload_bytes": payload_len,
        "engine_bytes_per_job": engine,
        "bare_bytes_per_entry": bare,
        "breakdown": breakdown,
    }


def run(ctx: Context) -> dict[str, Any]:
    """The resources table."""
    mem = memory(ctx, MEMORY_JOBS)
    e2e_result = ctx.results.get("e2e")
    if e2e_result is None:
        one = e2e.measure(ctx, ctx.url, 1, ctx.jobs, label="resources: e2e 1 proc")
    else:
        one = e2e_result["runs"][0]
    ceiling = ctx.results.get("ceiling", {}).get("consume", {})
    loop = ctx.results.get("ceiling", {}).get("loop", {})
    drain_cpu = one["redis_cpu_us_per_job"]
    life_cpu = drain_cpu + one["enqueue_redis_cpu_us_per_job"]
    bare_drain, bare_life = ceiling.get("redis_cpu_us_per_job"), loop.get("redis_cpu_us_per_job")
    rows = [
        (
            "Redis CPU per job, run + retention (us; vs bare consume)",
            drain_cpu,
            bare_drain,
            pct(ratio(drain_cpu, bare_drain)),
        ),
        (
            "Redis CPU per job, enqueue + run + retention (us; vs bare loop)",
            life_cpu,
            bare_life,
            pct(ratio(life_cpu, bare_life)),
        ),
        (
            f"memory per waiting job beyond payload (B; {mem['jobs']:,} jobs)",
            mem["engine_bytes_per_job"],
            mem["bare_bytes_per_entry"],
            pct(ratio(mem["engine_bytes_per_job"], mem["bare_bytes_per_entry"])),
        ),
    ]
    show(
        "Redis resources (bare = redis-py XADD/XREADGROUP/XACK/XDEL loop, bare stream entry)",
        ["what", "streamq", "bare", "streamq / bare"],
        rows,
    )
    b = mem["breakdown"]
    print(
        f"where a waiting job's bytes go (MEMORY USAGE, payload {mem['payload_bytes']} B "
        f"included): stream entry {b['stream_bytes_per_entry']:.0f} B, job record "
        f"{b['job_record_bytes']:.0f} B (key of {b['job_key_length']} chars); "
        "the payload is stored in both",
        flush=True,
    )
    result = {
        "memory": mem,
        "redis_cpu_us_per_job": drain_cpu,
        "redis_cpu_us_per_job_with_enqueue": life_cpu,
        "redis_cpu_from": f"e2e drain, {one['processes']} process(es), {one['jobs']} jobs",
        "bare_consume_redis_cpu_us_per_job": bare_drain,
        "bare_loop_redis_cpu_us_per_job": bare_life,
    }
    write_json(ctx.out_dir, "resources", result)
    return result
