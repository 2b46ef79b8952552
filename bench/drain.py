"""``python -m bench.drain``: one in-process worker drains a pre-filled queue, optionally
under cProfile: the quick loop for working on the worker's hot path.

Prints jobs/s (N / wall time of ``Worker.run(burst=True)``), the worker's CPU per job, the
server's CPU per job (``INFO cpu`` delta), and with ``--commandstats`` the server's time
per command. ``--profile`` adds cProfile's top functions by self time and the share of
self time by area. Unlike ``python -m bench`` it checks nothing and keeps no results: it
is for A/B comparisons of a change, run a few times each (the figures move by ±15 % here).

    python -m bench.drain -n 20000 -c 100 [--loop uvloop] [--profile] [--commandstats]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Sequence

import streamq
from bench import apps
from bench.common import client, settings_for
from streamq.server import EmbeddedServer
from streamq.worker import Worker
from streamq.worker.__main__ import LOOPS, loop_runner

QUEUE = "bench"

#: Where self time goes, by the file a function lives in (first match wins).
AREAS = (
    ("epoll (idle)", "poll"),
    ("streamq worker", "/streamq/worker/"),
    ("streamq protocol + drivers", "/streamq/"),
    ("redis-py", "/redis/"),
    ("asyncio / uvloop", "asyncio"),
    ("benchmark handler", "/bench/"),
)


def _area(filename: str, function: str) -> str:
    for name, needle in AREAS:
        if needle in (function if name.startswith("epoll") else filename):
            return name
    return "builtins and C (sockets, hiredis, orjson, ...)"


def _redis_cpu(r: object) -> float:
    info = r.info("cpu")  # type: ignore[attr-defined]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__)
    p.add_argument("-n", "--jobs", type=int, default=20_000)
    p.add_argument("-c", "--concurrency", type=int, default=100)
    p.add_argument("--loop", choices=LOOPS, default="asyncio")
    p.add_argument("--profile", action="store_true", help="run the drain under cProfile")
    p.add_argument("--commandstats", action="store_true", help="print INFO commandstats")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.concurrency < 1:
        p.error("--jobs and --concurrency must be >= 1")

    with EmbeddedServer(password="bench-drain", profile="none") as srv:
        r = client(srv.url)
        with streamq.Producer(srv.url) as producer:
            for start in range(0, args.jobs, 500):
                batch = range(start, min(start + 500, args.jobs))
                producer.enqueue_many(QUEUE, [streamq.JobSpec("noop", i) for i in batch])
        worker = Worker(
            apps.app, [QUEUE], settings=settings_for(srv.url), concurrency=args.concurrency
        )
        r.config_resetstat()
        cpu0, t0, c0 = _redis_cpu(r), time.perf_counter(), time.process_time()
        prof = cProfile.Profile() if args.profile else None
        if prof is not None:
            prof.enable()
        loop_runner(args.loop)(worker.run(burst=True))
        if prof is not None:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        server_cpu = _redis_cpu(r) - cpu0
        n = len(apps.SEEN)
        print(
            f"{n:,} jobs in {wall:.2f} s: {n / wall:,.0f} jobs/s; worker CPU "
            f"{cpu / n * 1e6:.1f} us/job, Redis CPU {server_cpu / n * 1e6:.1f} us/job "
            f"(loop {args.loop}{', under cProfile' if prof else ''})"
        )
        if args.commandstats:
            stats = r.info("commandstats")
            for name, v in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:15]:
                print(
                    f"  {name[8:]:16} {v['calls'] / n:8.3f} calls/job {v['usec'] / n:7.2f} us/job"
                )
        r.close()
    if prof is not None:
        out = io.StringIO()
        st = pstats.Stats(prof, stream=out)
        st.sort_stats("tottime").print_stats(25)
        print(out.getvalue())
        total = st.total_tt  # type: ignore[attr-defined]
        shares: dict[str, float] = {}
        for (filename, _, function), row in st.stats.items():  # type: ignore[attr-defined]
            area = _area(filename, function)
            shares[area] = shares.get(area, 0.0) + row[2]
        for area, t in sorted(shares.items(), key=lambda kv: -kv[1]):
            print(f"  {area:48} {t / total * 100:5.1f} % of self time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
