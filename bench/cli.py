"""``python -m bench [--scenario NAME ...] [--jobs N] [--workers 1,2,4] [--quick]`` and
``python -m bench --check``.

Scenarios, run in this order (the ceiling first, so later tables can show ratios to it):

=============  ==========================================================================
ceiling        bare redis-py + hiredis XREADGROUP/XACK/XDEL (and full XADD loop) ceiling
enqueue        Producer/AsyncProducer enqueue and enqueue_many vs bare XADD / pipelined
e2e            no-op jobs drained by W worker processes x C; exactly-once check
latency        pickup latency p50/p95/p99 at 100 and 1,000 jobs/s
delayed        delayed-job lateness (handler start - due)
resources      Redis memory per waiting job, Redis CPU per processed job
persistence    the one-process e2e run with AOF off and with appendfsync everysec
flow           flow control: keyed drains with and without limits, the take alone, fairness
cluster        one node vs 3 cluster masters with 1/3/6 partitions: Redis CPU per master,
               the busiest master's share, projected capacity
=============  ==========================================================================

Every run ends with a summary table of the headline figures against the project's targets
(for information: targets never change the exit code). ``--check`` is the CI run: a short
e2e drain (5,000 jobs by one worker process, then by two sharing the queue) that fails
only when a job is lost or duplicated, a worker errs or hangs, or throughput is below
10 jobs/s. It prints the throughput but compares it with nothing else. Then a short flow
drain (5,000 jobs over 1,000 limited keys) and a short fairness drain (one key x 10,000
jobs, then 20 keys x 10): they fail on a lost or duplicated job, flow state left behind, a
small key finishing later than round-robin allows (or past 5 % of the drain), or below
10 jobs/s. Last, 5,000 jobs in a 6-partition queue on a 3-master cluster (no replicas): it
fails on a lost or duplicated job, a master holding none of the jobs, or below 10 jobs/s
(skipped, saying why, when the server binary cannot run in cluster mode).

Exit codes: 0 fine, 1 a correctness failure (lost/duplicated job, worker error, or below
10 jobs/s with ``--check``), 2 bad usage or no server binary.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import ceiling, cluster, e2e, enqueue, flow, latency, resources, summary
from bench.common import (
    RESULTS,
    BenchFailure,
    Context,
    fmt,
    machine_facts,
    new_tmp,
    say,
    server_facts,
    show,
    tree_facts,
    write_json,
)
from streamq.errors import ServerError
from streamq.server import find_server_binary
from streamq.worker.__main__ import LOOPS

Runner = Callable[[Context], dict[str, Any]]

SCENARIOS: dict[str, Runner] = {
    "ceiling": ceiling.run,
    "enqueue": enqueue.run,
    "e2e": e2e.run,
    "latency": latency.run_pickup,
    "delayed": latency.run_delayed,
    "resources": resources.run,
    "persistence": e2e.run_persistence,
    "flow": flow.run,
    "cluster": cluster.run,
}
# Scenarios whose tables show ratios to the bare ceiling pull it in.
NEEDS_CEILING = {"e2e", "resources"}

CHECK_JOBS = 5_000
CHECK_MIN_RATE = 10.0  # jobs/s: the original requirement, the only fixed number --check uses
DEFAULT_CONCURRENCY = 100


def _workers(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,2,4, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("worker counts must be >= 1")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scenario",
        "-s",
        action="append",
        choices=list(SCENARIOS),
        help="run only this scenario (repeatable; default: all)",
    )
    p.add_argument("--jobs", "-n", type=int, help="jobs per throughput run (default 50,000)")
    p.add_argument(
        "--workers",
        "-w",
        type=_workers,
        help="worker-process counts for e2e, comma-separated (default 1,2,4)",
    )
    p.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"jobs each worker process runs at once (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--repeat",
        "-r",
        type=int,
        help="repetitions of each e2e/persistence drain, median reported (default 3; 1 quick)",
    )
    p.add_argument("--quick", action="store_true", help="smaller runs (10,000 jobs, 2 s rates)")
    p.add_argument(
        "--check",
        action="store_true",
        help=f"CI run: {CHECK_JOBS:,} jobs by 1 then 2 processes; fails on loss/duplication "
        f"or below {CHECK_MIN_RATE:g} jobs/s",
    )
    p.add_argument(
        "--loop",
        choices=LOOPS,
        default=os.environ.get("STREAMQ_LOOP", "auto"),
        help="worker event loop, as python -m streamq.worker --loop (default auto: uvloop "
        "when installed)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = p.parse_args(argv)
    os.environ["STREAMQ_LOOP"] = args.loop  # the worker children read it
    if args.jobs is not None and args.jobs < 1:
        p.error("--jobs must be >= 1")
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.concurrency < 1:
        p.error("--concurrency must be >= 1")
    if args.check and args.scenario:
        p.error("--check runs its own fixed scenario; drop --scenario")
    return args


def _selected(args: argparse.Namespace) -> list[str]:
    chosen = set(args.scenario or SCENARIOS)
    if chosen & NEEDS_CEILING:
        chosen.add("ceiling")
    return [name for name in SCENARIOS if name in chosen]


def _context(args: argparse.Namespace) -> Context:
    jobs = args.jobs or (CHECK_JOBS if args.check else 10_000 if args.quick else 50_000)
    workers = args.workers or ([1, 2] if args.check else [1, 2, 4])
    return Context(
        jobs=jobs,
        workers=workers,
        concurrency=args.concurrency,
        repeat=args.repeat or (1 if args.quick or args.check else 3),
        quick=args.quick,
        check=args.check,
        out_dir=args.out,
        tmp=new_tmp(),
    )


def run_check(ctx: Context) -> int:
    """The CI check: e2e drains (one worker process, then two sharing the queue), every job
    exactly once, and at least 10 jobs/s. Each drain has a deadline, so a hang fails. Then
    the flow drains of :func:`bench.flow.run_check`."""
    runs = [
        e2e.measure(
            ctx, ctx.url, w, ctx.jobs, label=f"check e2e {w} proc", timeout_s=25.0, retention=False
        )
        for w in ctx.workers
    ]
    show("bench --check: end-to-end no-op drain", e2e.HEADERS, [e2e._row(m, None) for m in runs])
    write_json(ctx.out_dir, "check", {"runs": runs})
    slow = [m for m in runs if m["per_s"] is None or m["per_s"] < CHECK_MIN_RATE]
    for m in slow:
        say(
            f"FAIL: {m['processes']} process(es): {fmt(m['per_s'])} jobs/s is below the "
            f"required {CHECK_MIN_RATE:g} jobs/s"
        )
    if slow:
        return 1
    flow_fails = flow.run_check(ctx, CHECK_MIN_RATE)
    for text in flow_fails:
        say(f"FAIL: {text}")
    if flow_fails:
        return 1
    cluster_fails = cluster.run_check(ctx, CHECK_MIN_RATE)
    for text in cluster_fails:
        say(f"FAIL: {text}")
    if cluster_fails:
        return 1
    rates = ", ".join(f"{m['processes']} proc {fmt(m['per_s'])} jobs/s" for m in runs)
    say(
        f"check passed: {ctx.jobs:,} jobs per run, each exactly once; {rates}; flow control: "
        "limited keys and fairness in round-robin order; a 6-partition queue on a 3-master "
        "cluster, every master holding jobs"
    )
    return 0


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        binary = find_server_binary()
    except ServerError as exc:
        say(f"error: {exc}")
        return 2
    ctx = _context(args)
    try:
        ctx.server = ctx.start_server("none")
        meta = {
            "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine_facts(ctx.tmp),
            "tree": tree_facts(),
            "server": server_facts(ctx.server),
            "binary": str(binary),
            "jobs": ctx.jobs,
            "workers": ctx.workers,
            "concurrency": ctx.concurrency,
            "repeat": ctx.repeat,
            "quick": ctx.quick,
            "load_avg_start": _load(),
        }
        m, s, t = meta["machine"], meta["server"], meta["tree"]
        dirty = (
            f" + {t['engine_files_changed']} changed engine files"
            if t["engine_files_changed"]
            else ""
        )
        say(
            f"streamq bench: tree {t['commit']}{dirty}; {s['kind']} {s['version']} (AOF off), "
            f"{m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, "
            f"hiredis {m['hiredis'] or 'absent'}, worker loop {m['worker_loop']}; "
            f"results in {ctx.out_dir}"
        )
        if meta["load_avg_start"] and meta["load_avg_start"][0] >= 0.5:
            say(
                f"note: the machine is busy (load average {meta['load_avg_start'][0]:.2f}): "
                "figures will be noisy"
            )
        if args.check:
            code = run_check(ctx)
        else:
            for name in _selected(args):
                say(f"== {name}")
                ctx.results[name] = SCENARIOS[name](ctx)
            summary.summarize(ctx, meta)
            code = 0
        meta["seconds"] = time.perf_counter() - t0
        meta["load_avg_end"] = _load()
        write_json(ctx.out_dir, "run", meta)
        say(f"done in {meta['seconds']:.1f} s")
        return code
    except BenchFailure as exc:
        say(f"FAIL: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        ctx.stop_all()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
