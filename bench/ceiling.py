"""Scenario ``ceiling``: the bare Redis Streams ceiling from redis-py + hiredis, one process,
pipelined in batches of 500, against the same server as the engine runs.

* ``consume``: a pre-filled stream drained by XREADGROUP COUNT 500, each round trip also
  carrying XACK + XDEL of the previous batch: what a worker could reach with no job record,
  no script, no handler. The e2e drain throughput is compared with this.
* ``loop``: each round trip carries XADD x500 + XACK/XDEL of the previous batch +
  XREADGROUP of the next: the whole job life (add, read, ack) at its cheapest. The e2e
  enqueue-plus-drain figure is compared with this.

Redis CPU per job (``INFO cpu`` deltas) is measured for both, as the floor for the engine's.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from bench.common import Context, Progress, client, redis_cpu_s, show, write_json

BATCH = 500
GROUP = "bench"


def _entries(reply: Any) -> list[bytes]:
    """Entry ids from an XREADGROUP reply (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    items = reply.items() if isinstance(reply, dict) else reply
    ids: list[bytes] = []
    for _stream, entries in items:
        ids.extend(eid for eid, _fields in entries)
    return ids


def _fill(r: redis.Redis, stream: str, n: int) -> None:
    r.xgroup_create(stream, GROUP, id="0", mkstream=True)
    progress = Progress("bare fill (pipelined XADD)", n)
    for i in range(0, n, BATCH):
        pipe = r.pipeline(transaction=False)
        for j in range(i, min(i + BATCH, n)):
            pipe.xadd(stream, {"i": j, "n": "noop", "d": j})
        pipe.execute()
        progress.update(i + BATCH)
    progress.done()


def consume(url: str, n: int) -> dict[str, float]:
    """Drain ``n`` pre-filled entries: XREADGROUP COUNT 500 + XACK/XDEL of the last batch."""
    r = client(url)
    stream = f"bench-ceiling-c-{time.time_ns()}"
    try:
        _fill(r, stream, n)
        progress = Progress("bare consume (XREADGROUP+XACK+XDEL)", n)
        cpu0, t0 = redis_cpu_s(r), time.perf_counter()
        done, last = 0, []
        while True:
            pipe = r.pipeline(transaction=False)
            if last:
                pipe.xack(stream, GROUP, *last)
                pipe.xdel(stream, *last)
            pipe.xreadgroup(GROUP, "c1", {stream: ">"}, count=BATCH)
            last = _entries(pipe.execute()[-1])
            if not last:
                break
            done += len(last)
            progress.update(done)
        took, cpu = time.perf_counter() - t0, redis_cpu_s(r) - cpu0
        progress.done()
        if done != n or r.xlen(stream) != 0:
            raise RuntimeError(f"bare consume saw {done} of {n} entries")
        return {
            "jobs": n,
            "seconds": took,
            "per_s": n / took,
            "redis_cpu_us_per_job": cpu / n * 1e6,
        }
    finally:
        r.delete(stream)
        r.close()


def loop(url: str, n: int) -> dict[str, float]:
    """XADD x500 + XACK/XDEL of the previous batch + XREADGROUP, one round trip per batch."""
    r = client(url)
    stream = f"bench-ceiling-l-{time.time_ns()}"
    try:
        r.xgroup_create(stream, GROUP, id="0", mkstream=True)
        progress = Progress("bare loop (XADD+XREADGROUP+XACK+XDEL)", n)
        cpu0, t0 = redis_cpu_s(r), time.perf_counter()
        done, added, last = 0, 0, []
        while done < n:
            pipe = r.pipeline(transaction=False)
            for j in range(added, min(added + BATCH, n)):
                pipe.xadd(stream, {"i": j, "n": "noop", "d": j})
            added = min(added + BATCH, n)
            if last:
                pipe.xack(stream, GROUP, *last)
                pipe.xdel(stream, *last)
            pipe.xreadgroup(GROUP, "c1", {stream: ">"}, count=BATCH)
            last = _entries(pipe.execute()[-1])
            done += len(last)
            progress.update(done)
        if last:
            r.xack(stream, GROUP, *last)
            r.xdel(stream, *last)
        took, cpu = time.perf_counter() - t0, redis_cpu_s(r) - cpu0
        progress.done()
        return {
            "jobs": n,
            "seconds": took,
            "per_s": n / took,
            "redis_cpu_us_per_job": cpu / n * 1e6,
        }
    finally:
        r.delete(stream)
        r.close()


def run(ctx: Context) -> dict[str, Any]:
    """Measure and print the ceiling table."""
    c = consume(ctx.url, ctx.jobs)
    lp = loop(ctx.url, ctx.jobs)
    show(
        f"bare Streams ceiling (redis-py + hiredis, one process, batches of {BATCH})",
        ["loop", "jobs", "seconds", "jobs/s", "Redis CPU us/job"],
        [
            (
                "consume: XREADGROUP + XACK + XDEL",
                c["jobs"],
                c["seconds"],
                c["per_s"],
                c["redis_cpu_us_per_job"],
            ),
            (
                "full: XADD + XREADGROUP + XACK + XDEL",
                lp["jobs"],
                lp["seconds"],
                lp["per_s"],
                lp["redis_cpu_us_per_job"],
            ),
        ],
    )
    result = {"batch": BATCH, "consume": c, "loop": lp}
    write_json(ctx.out_dir, "ceiling", result)
    return result
