"""``python -m bench.peers``: the e2e no-op scenario with other Python queues, against the
same embedded server in one run, printed as ratios to streamq.

Peers (optional; each is skipped with the reason when it cannot be imported):

* taskiq-redis ``RedisStreamBroker`` (Redis Streams; XACK only, no job record or result),
* arq (sorted set + one key per job, results kept an hour by default, polls every 0.5 s),
* bullmq's Python port (BullMQ's Lua scripts; completed jobs kept by default).

Each runs with its defaults except the concurrency (``--concurrency``, the same for all)
and what a pre-filled queue needs (taskiq's consumer group starts at id 0). Every peer
drains N pre-filled no-op jobs (``data`` = 0..N-1) with one worker process; the handler
records its id, so each peer also passes or fails the exactly-once check. Throughput is
measured as for streamq: N / (last handler call - first handler call).

Install the peers in a scratch environment, never in the project's venv::

    python -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install -e . taskiq-redis arq bullmq
    /tmp/peers-venv/bin/python -m bench.peers

(arq 0.28 declares ``redis<6`` and taskiq-redis ``redis>=8``; with both installed pip
warns, and arq runs on redis-py 8 in this harness.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import multiprocessing as mp
import queue as queue_mod
import shutil
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import apps, e2e
from bench.common import (
    BenchFailure,
    Context,
    Progress,
    client,
    machine_facts,
    new_tmp,
    pct,
    ratio,
    redis_cpu_s,
    say,
    server_facts,
    show,
    write_json,
)
from bench.workers import check_exactly_once

_SPAWN = mp.get_context("spawn")
CHUNK = 500


# --------------------------------------------------------------------------- recording

_done: asyncio.Event | None = None
_target = 0


def _record(seq: int) -> None:
    """What every peer's handler does: the same bookkeeping as bench.apps.noop."""
    now = time.time()
    if not apps.WINDOW:
        apps.WINDOW.extend((now, now))
    apps.WINDOW[1] = now
    apps.SEEN.append(seq)
    if len(apps.SEEN) >= _target and _done is not None:
        _done.set()


# --------------------------------------------------------------------------- peers


async def _taskiq_fill(url: str, queue: str, n: int) -> None:
    broker, task = _taskiq(url, queue)
    await broker.startup()
    for i in range(0, n, CHUNK):
        await asyncio.gather(*(task.kiq(j) for j in range(i, min(i + CHUNK, n))))
    await broker.shutdown()


async def _taskiq_drain(url: str, queue: str, concurrency: int, done: asyncio.Event) -> None:
    from taskiq.api import run_receiver_task

    broker, _task = _taskiq(url, queue)
    runner = asyncio.create_task(
        run_receiver_task(broker, max_async_tasks=concurrency, run_startup=True)
    )
    await done.wait()
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await broker.shutdown()


def _taskiq(url: str, queue: str) -> tuple[Any, Any]:
    from taskiq_redis import RedisStreamBroker

    broker = RedisStreamBroker(
        url=url, queue_name=queue, consumer_group_name="bench", consumer_id="0"
    )

    async def noop(i: int) -> None:
        _record(i)

    return broker, broker.task(task_name="noop")(noop)


async def _arq_fill(url: str, queue: str, n: int) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(url))
    step = 50  # each enqueue_job holds a connection (WATCH/MULTI) while it runs
    for i in range(0, n, step):
        await asyncio.gather(
            *(pool.enqueue_job("noop", j, _queue_name=queue) for j in range(i, min(i + step, n)))
        )
    await pool.aclose()


async def _arq_noop(ctx: Any, i: int) -> None:
    _record(i)


async def _arq_drain(url: str, queue: str, concurrency: int, done: asyncio.Event) -> None:
    from arq import Worker, func
    from arq.connections import RedisSettings

    worker = Worker(
        functions=[func(_arq_noop, name="noop")],
        redis_settings=RedisSettings.from_dsn(url),
        queue_name=queue,
        max_jobs=concurrency,
        handle_signals=False,
    )
    runner = asyncio.create_task(worker.async_run())
    await done.wait()
    # Let the last jobs record their results, then stop: close() of a worker that does not
    # handle signals cancels its own job tasks and re-raises that cancellation.
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    with contextlib.suppress(asyncio.CancelledError):
        await worker.close()


async def _bullmq_fill(url: str, queue: str, n: int) -> None:
    from bullmq import Queue

    q = Queue(queue, {"connection": url})
    for i in range(0, n, CHUNK):
        await q.addBulk([{"name": "noop", "data": {"i": j}} for j in range(i, min(i + CHUNK, n))])
    await q.close()


async def _bullmq_drain(url: str, queue: str, concurrency: int, done: asyncio.Event) -> None:
    from bullmq import Worker

    async def process(job: Any, token: str) -> None:
        _record(job.data["i"])

    worker = Worker(queue, process, {"connection": url, "concurrency": concurrency})
    await done.wait()
    await worker.close()


@dataclass(frozen=True)
class Peer:
    """One other queue: how to import it, fill a queue, and drain it in a worker child."""

    name: str
    module: str
    dist: str
    fill: Callable[[str, str, int], Awaitable[None]]
    drain: Callable[[str, str, int, asyncio.Event], Awaitable[None]]
    notes: str


PEERS: dict[str, Peer] = {
    "taskiq-redis": Peer(
        "taskiq-redis",
        "taskiq_redis",
        "taskiq-redis",
        _taskiq_fill,
        _taskiq_drain,
        "RedisStreamBroker, no result backend",
    ),
    "arq": Peer("arq", "arq", "arq", _arq_fill, _arq_drain, "defaults (poll_delay 0.5 s)"),
    "bullmq": Peer("bullmq", "bullmq", "bullmq", _bullmq_fill, _bullmq_drain, "defaults"),
}


def _missing(peer: Peer) -> str | None:
    try:
        found = importlib.util.find_spec(peer.module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"{peer.dist} is not installed (pip install {peer.dist}, in a scratch venv)"
    try:
        importlib.import_module(peer.module)
    except Exception as exc:
        return f"{peer.dist} cannot be imported: {type(exc).__name__}: {exc}"
    return None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------- child


def _child(
    name: str,
    url: str,
    queue: str,
    n: int,
    concurrency: int,
    timeout_s: float,
    out_dir: Path,
    go: Any,
    out: Any,
) -> None:
    """One peer's worker process. It reports as soon as the last job has run, then gives
    the peer a few seconds to shut down (some do not stop promptly when cancelled); the
    parent ends the process if it is still there."""
    try:
        import logging

        logging.basicConfig(level=logging.WARNING)
        peer = PEERS[name]
        out.put(("ready", None))
        if not go.wait(timeout=600):
            return
        asyncio.run(_child_main(peer, url, queue, n, concurrency, timeout_s, out_dir, out))
    except BaseException:
        out.put(("error", traceback.format_exc()))


async def _child_main(
    peer: Peer,
    url: str,
    queue: str,
    n: int,
    concurrency: int,
    timeout_s: float,
    out_dir: Path,
    out: Any,
) -> None:
    global _done, _target
    _done, _target = asyncio.Event(), n
    cpu0 = time.process_time()
    drain = asyncio.create_task(peer.drain(url, queue, concurrency, _done))
    finished = asyncio.create_task(_done.wait())
    await asyncio.wait({drain, finished}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    cpu = time.process_time() - cpu0
    if drain.done() and not finished.done():
        drain.result()  # the peer's worker died: raise its error
    ids, _ = apps.write_records(out_dir, peer.name)
    window = apps.WINDOW or [None, None]
    out.put(("result", (ids, window[0], window[1], cpu, not finished.done())))
    finished.cancel()
    await asyncio.wait({drain}, timeout=5)


def measure_peer(ctx: Context, url: str, peer: Peer, n: int) -> dict[str, Any]:
    """Fill and drain one peer's queue; raises BenchFailure on a worker error or timeout.
    Lost or duplicated jobs are reported, not raised: a peer's loss is a finding."""
    queue = ctx.queue(peer.name)
    progress = Progress(f"{peer.name}: enqueue", n)
    t0 = time.perf_counter()
    asyncio.run(peer.fill(url, queue, n))
    progress.done()
    enqueue_s = time.perf_counter() - t0
    go, out = _SPAWN.Event(), _SPAWN.Queue()
    timeout = max(120.0, n / 100)
    args = (peer.name, url, queue, n, ctx.concurrency, timeout, ctx.tmp / queue, go, out)
    proc = _SPAWN.Process(target=_child, args=args, daemon=True)
    proc.start()
    r = client(url)
    try:
        kind, payload = out.get(timeout=60)
        if kind != "ready":
            raise BenchFailure(f"{peer.name} worker failed to start:\n{payload}")
        progress = Progress(f"{peer.name}: drain", n)
        cpu0, t_go = redis_cpu_s(r), time.time()
        go.set()
        deadline = time.monotonic() + timeout + 30
        while True:
            try:
                kind, payload = out.get(timeout=0.5)
                break
            except queue_mod.Empty:
                if time.monotonic() > deadline or not proc.is_alive():
                    raise BenchFailure(f"{peer.name}: worker gave no result") from None
        wall = time.time() - t_go
        cpu = redis_cpu_s(r) - cpu0
        progress.done()
    finally:
        r.close()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
    if kind == "error":
        raise BenchFailure(f"{peer.name} worker failed:\n{payload}")
    ids, first, last, worker_cpu, timed_out = payload
    check = check_exactly_once([ids], n)
    drain = (last - first) if first is not None and last is not None else wall
    return {
        "peer": peer.name,
        "version": _version(peer.dist),
        "notes": peer.notes,
        "jobs": n,
        "concurrency": ctx.concurrency,
        "enqueue_s": enqueue_s,
        "drain_s": drain,
        "per_s": n / drain if drain > 0 else None,
        "redis_cpu_us_per_job": cpu / n * 1e6,
        "worker_cpu_us_per_job": worker_cpu / n * 1e6,
        "missing": check.missing,
        "duplicated": check.duplicated,
        "timed_out": timed_out,
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--jobs", "-n", type=int, default=20_000, help="jobs per peer (20,000)")
    p.add_argument("--concurrency", "-c", type=int, default=100, help="per worker (100)")
    p.add_argument("--peer", action="append", choices=list(PEERS), help="only this peer")
    p.add_argument("--out", type=Path, default=None, help="results directory")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (1 when streamq itself fails its check)."""
    from bench.common import RESULTS

    args = parse_args(argv)
    ctx = Context(
        jobs=args.jobs,
        workers=[1],
        concurrency=args.concurrency,
        repeat=1,
        quick=False,
        check=False,
        out_dir=args.out or RESULTS,
        tmp=new_tmp(),
    )
    rows, results, skipped = [], [], {}
    try:
        server = ctx.start_server("none", tag="peers")
        ctx.server = server
        say(f"peers against {server_facts(server)['kind']} {server_facts(server)['version']}")
        ours = e2e.measure(ctx, server.url, 1, ctx.jobs, label="streamq", retention=False)
        base = ours["per_s"]
        rows.append(
            (
                "streamq",
                "this tree",
                ours["per_s"],
                "100%",
                ours["redis_cpu_us_per_job"],
                ours["worker_cpu_us_per_job"],
                f"{ours['missing']}/{ours['duplicated']}",
                "",
            )
        )
        for name in args.peer or list(PEERS):
            peer = PEERS[name]
            reason = _missing(peer)
            if reason is not None:
                say(f"skip {name}: {reason}")
                skipped[name] = reason
                continue
            try:
                m = measure_peer(ctx, server.url, peer, ctx.jobs)
            except Exception as exc:
                say(f"{name} failed: {type(exc).__name__}: {exc}")
                skipped[name] = f"failed: {type(exc).__name__}: {exc}"
                continue
            results.append(m)
            rows.append(
                (
                    name,
                    m["version"],
                    m["per_s"],
                    pct(ratio(m["per_s"], base)),
                    m["redis_cpu_us_per_job"],
                    m["worker_cpu_us_per_job"],
                    f"{m['missing']}/{m['duplicated']}",
                    m["notes"],
                )
            )
        show(
            f"peers: {ctx.jobs:,} pre-filled no-op jobs, 1 worker process x {ctx.concurrency}, "
            "same server (vs streamq = peer jobs/s over streamq's)",
            [
                "queue",
                "version",
                "jobs/s",
                "vs streamq",
                "Redis CPU us/job",
                "worker CPU us/job",
                "lost/dup",
                "settings",
            ],
            rows,
        )
        for name, reason in skipped.items():
            print(f"skipped {name}: {reason}")
        write_json(
            ctx.out_dir,
            "peers",
            {
                "machine": machine_facts(ctx.tmp),
                "server": server_facts(server),
                "streamq": ours,
                "peers": results,
                "skipped": skipped,
            },
        )
        return 0 if ours["exactly_once"] else 1
    except BenchFailure as exc:
        say(f"FAIL: {exc}")
        return 1
    finally:
        ctx.stop_all()
        shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
