"""Scenario ``flow`` (issue 11): keyed drains with and without limits, the take's own Redis
time, and fairness across keys.

Each drain is one in-process worker (``Worker(...).run(burst=True)``, as in
:mod:`bench.drain`) on a queue filled before it starts:

* ``plain``: N jobs without a key (the stream path), for reference in the same run;
* ``keys``: N jobs round-robin over 1,000 keys, no limits: the cost of holding a job and of
  the take (ring, held set, kstream) without any limit check;
* ``limited``: the same with every key limited (``each|k:*``: 1,000 starts per 1 s and at
  most 50 running per key): never binding at one process's rate, yet checked and charged
  on every take (the issue: >= 10,000 jobs/s on one process "when the limits allow it");
* ``fairness``: one key holding 50,000 jobs and 100 keys holding 10 each, all enqueued
  before the worker starts (the big key first); the handler records the completion order
  and each small key's last completion is reported as a fraction of the drain (target:
  every one within the first 5 %).

A drain reports jobs/s (N / wall time of the burst run: start-up and shut-down included),
the worker's CPU per job (``time.process_time``: nothing else runs in the process), Redis
CPU per job (``INFO cpu`` delta over the drain; unlike ``e2e`` without the deferred
retention pass) and ``INFO commandstats``. Every job must run exactly once and the flow
structures (held jobs, ring, in-flight counts) must be empty afterwards, or the run FAILS.

``take alone`` isolates the take script: the same keyed queue is emptied by calling take
directly (100 jobs a call, through the protocol's Call and the sync driver, no handler, no
completion), so the ``EVALSHA`` time in ``INFO commandstats`` is the take's alone.

``python -m bench.flow`` runs one measurement on its own, for work on the take path:
``--profile`` (cProfile of the worker), ``--commandstats`` (Redis time per command) and
``--scripts`` (Redis time per script during the drain, from a SLOWLOG of every command:
it slows Redis down, so compare its figures only with each other)::

    python -m bench.flow [limited|keys|plain|fairness|take] [-n 20000] [-c 100]
        [--keys 1000] [--loop auto] [--profile] [--commandstats] [--scripts]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import os
import pstats
import sys
import time
from array import array
from collections.abc import Sequence
from typing import Any

import redis

import streamq
from bench.common import (
    BenchFailure,
    Context,
    Progress,
    client,
    fmt,
    pct,
    redis_cpu_s,
    settings_for,
    show,
    write_json,
)
from streamq._driver import SyncDriver
from streamq.admin import Admin
from streamq.job import Job
from streamq.protocol import worker as wops
from streamq.protocol.keys import QueueKeys
from streamq.protocol.scripts import load_library
from streamq.server import EmbeddedServer
from streamq.worker import App, Worker
from streamq.worker.__main__ import LOOPS, loop_runner

KEYS = 1_000
#: The limit of the ``limited`` drain: never binding at the rates one process reaches
#: (1,000 starts per second per key, 50 running per key), yet checked on every take.
RATE, PERIOD_MS, CONCURRENCY = 1_000, 1_000, 50
#: The fairness backlog: the big key's jobs, then SMALL_KEYS keys of SMALL_JOBS each.
BIG_JOBS, SMALL_KEYS, SMALL_JOBS = 50_000, 100, 10
#: ``--check``: a smaller backlog with the same shape, where 5 % still leaves room.
CHECK_BIG_JOBS, CHECK_SMALL_KEYS = 10_000, 20
CHECK_TIMEOUT_S = 60.0  # a --check drain not done by then hangs: it fails
FAIR_TARGET = 0.05  # every small key's last job within the first 5 % of the drain
KEYED_TARGET = 10_000.0  # jobs/s, one worker process, 1,000 limited keys
TAKE_COUNT = 100  # jobs per take call in ``take alone`` (the worker asks for free slots)
BATCH = 500

HEADERS = [
    "drain",
    "jobs",
    "keys",
    "limits",
    "jobs/s",
    "range",
    "worker CPU us/job",
    "Redis CPU us/job",
    "scripts us/job",
]

app = App()
#: One drain's completions in order: the job's sequence number and its key's index (-1: no
#: key; in the fairness backlog 0 is the big key and 1..100 the small ones).
DONE: array[int] = array("q")
DONE_KEY: array[int] = array("q")


@app.handler("flow")
async def flow(job: Job) -> None:
    """Record the job (``data`` = ``[seq, key index]``) in completion order."""
    seq, key = job.data
    DONE.append(seq)
    DONE_KEY.append(key)


# --------------------------------------------------------------------------- set-up


def set_limit(url: str, queue: str) -> None:
    """Limit every key of ``queue`` matching ``k:*`` (each its own budget) to RATE starts
    per PERIOD_MS and CONCURRENCY running, through the public admin API."""
    with Admin(settings=settings_for(url)) as admin:
        admin.set_limit(queue, "k:*", rate=RATE, per=PERIOD_MS / 1000, concurrency=CONCURRENCY)


def key_name(i: int) -> str:
    """The key of index ``i`` (``k:0000``...): the limited drains' pattern is ``k:*``."""
    return f"k:{i:04d}"


def keyed_specs(n: int, keys: int) -> list[streamq.JobSpec]:
    """N jobs round-robin over ``keys`` keys (0: no key, plain jobs)."""
    if keys == 0:
        return [streamq.JobSpec("flow", [i, -1]) for i in range(n)]
    return [streamq.JobSpec("flow", [i, i % keys], key=key_name(i % keys)) for i in range(n)]


def fair_specs(big: int, small_keys: int) -> list[streamq.JobSpec]:
    """The fairness backlog: ``big`` jobs of key ``big`` first, then ``small_keys`` keys of
    SMALL_JOBS jobs each (key index 1..small_keys)."""
    specs = [streamq.JobSpec("flow", [i, 0], key="big") for i in range(big)]
    for s in range(small_keys):
        for j in range(SMALL_JOBS):
            seq = big + s * SMALL_JOBS + j
            specs.append(streamq.JobSpec("flow", [seq, s + 1], key=f"small:{s:03d}"))
    return specs


def fill(url: str, queue: str, specs: Sequence[streamq.JobSpec], label: str) -> float:
    """Enqueue ``specs`` in order, in batches of 500; returns the seconds it took."""
    progress = Progress(f"{label}: enqueue", len(specs))
    t0 = time.perf_counter()
    with streamq.Producer(settings=settings_for(url)) as producer:
        for start in range(0, len(specs), BATCH):
            producer.enqueue_many(queue, specs[start : start + BATCH])
            progress.update(start + BATCH)
    took = time.perf_counter() - t0
    progress.done()
    return took


def _drop(url: str, queue: str) -> None:
    """Delete the queue's keys: the main server serves the later scenarios too."""
    r = client(url)
    try:
        names = list(r.scan_iter(match=f"sq:{{{queue}}}:*", count=1000))
        for i in range(0, len(names), 500):
            r.delete(*names[i : i + 500])
    finally:
        r.close()


# --------------------------------------------------------------------------- measuring


def _commands(r: redis.Redis, n: int) -> dict[str, dict[str, float]]:
    """INFO commandstats since the last CONFIG RESETSTAT, per job (scripts include the
    commands they call, which are listed too)."""
    out = {}
    for name, v in r.info("commandstats").items():
        calls, usec = int(v["calls"]), int(v["usec"])
        out[name.removeprefix("cmdstat_")] = {
            "calls_per_job": calls / n,
            "usec_per_job": usec / n,
            "usec_per_call": usec / calls if calls else 0.0,
        }
    return out


def _scripts_us(commands: dict[str, dict[str, float]]) -> float:
    """Redis time in scripts per job (EVALSHA and EVAL)."""
    return sum(commands.get(c, {}).get("usec_per_job", 0.0) for c in ("evalsha", "eval"))


def _flow_left(r: redis.Redis, queue: str) -> dict[str, int]:
    """What flow control still holds on ``queue``: all zero after a clean drain."""
    k = QueueKeys(queue)
    return {
        "held": int(r.zcard(k.held)),
        "ring": int(r.zcard(k.ring)),
        "blocked": int(r.zcard(k.blocked)),
        "full": int(r.scard(k.full)),
        "inflight": int(r.hlen(k.inflight)),
        "held_data": int(r.hlen(k.held_data)),
    }


def _slowlog_on(r: redis.Redis) -> None:
    r.config_set("slowlog-log-slower-than", 0)
    r.config_set("slowlog-max-len", 2_000_000)
    r.slowlog_reset()


def by_script(r: redis.Redis, n: int) -> dict[str, dict[str, float]]:
    """Redis time per script since :func:`_slowlog_on`, from the SLOWLOG (a script's time
    includes the commands it calls, which the slow log lists too: they are left out here,
    INFO commandstats has them); turns the slow log back to its defaults."""
    shas = {s.sha: s.name for s in load_library()}
    agg: dict[str, list[int]] = {}
    entries = r.slowlog_get(2_000_000)
    r.config_set("slowlog-log-slower-than", 10_000)
    r.config_set("slowlog-max-len", 128)
    r.slowlog_reset()
    for e in entries:
        words = e["command"].split()
        if len(words) < 2 or words[0].upper() not in (b"EVALSHA", b"EVAL"):
            continue
        slot = agg.setdefault(shas.get(words[1].decode(), "(unknown script)"), [0, 0])
        slot[0] += 1
        slot[1] += int(e["duration"])
    return {
        name: {
            "calls_per_job": calls / n,
            "usec_per_call": usec / calls,
            "usec_per_job": usec / n,
        }
        for name, (calls, usec) in sorted(agg.items(), key=lambda kv: -kv[1][1])
    }


async def _bounded(worker: Worker, timeout_s: float | None) -> None:
    await asyncio.wait_for(worker.run(burst=True), timeout_s)


def drain(
    url: str,
    queue: str,
    n: int,
    *,
    concurrency: int,
    loop: str,
    label: str,
    profile: cProfile.Profile | None = None,
    scripts: bool = False,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """One in-process worker drains ``queue`` (``n`` jobs waiting) in burst mode: the
    drain's figures; the completion order stays in :data:`DONE` / :data:`DONE_KEY`.
    Past ``timeout_s`` the drain FAILS (a hang in CI)."""
    r = client(url)
    del DONE[:], DONE_KEY[:]
    worker = Worker(app, [queue], settings=settings_for(url), concurrency=concurrency)
    gc.collect()
    r.config_resetstat()
    if scripts:
        _slowlog_on(r)
    progress = Progress(f"{label}: drain", n)
    cpu0, t0, c0 = redis_cpu_s(r), time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    try:
        loop_runner(loop)(_bounded(worker, timeout_s))
    except TimeoutError:
        raise BenchFailure(
            f"{label}: not drained after {timeout_s:g} s ({len(DONE):,} of {n:,} jobs ran)"
        ) from None
    finally:
        if profile is not None:
            profile.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    server_cpu = redis_cpu_s(r) - cpu0
    progress.done(f"{n / wall:,.0f} jobs/s")
    commands = _commands(r, n)
    per_script = by_script(r, n) if scripts else None
    left = _flow_left(r, queue)
    r.close()
    done, distinct = len(DONE), len(set(DONE))
    if done != n or distinct != n:
        raise BenchFailure(
            f"{label}: {done:,} completions of {distinct:,} distinct jobs, expected {n:,} "
            "each exactly once"
        )
    if any(left.values()):
        raise BenchFailure(f"{label}: flow control still holds {left} after the drain")
    out: dict[str, Any] = {
        "label": label,
        "jobs": n,
        "concurrency": concurrency,
        "seconds": wall,
        "per_s": n / wall,
        "worker_cpu_us_per_job": cpu / n * 1e6,
        "redis_cpu_us_per_job": server_cpu / n * 1e6,
        "scripts_us_per_job": _scripts_us(commands),
        "commandstats": commands,
    }
    if per_script is not None:
        out["by_script"] = per_script
    return out


def keyed(
    url: str,
    kind: str,
    n: int,
    *,
    keys: int = KEYS,
    concurrency: int,
    loop: str,
    profile: cProfile.Profile | None = None,
    scripts: bool = False,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """One drain of kind ``plain`` (no key), ``keys`` (``keys`` keys, no limit) or
    ``limited`` (``keys`` keys, each limited) on a fresh queue."""
    queue = f"bench-flow-{kind}-{os.urandom(3).hex()}"
    if kind == "limited":
        set_limit(url, queue)
    nkeys = 0 if kind == "plain" else keys
    enqueue_s = fill(url, queue, keyed_specs(n, nkeys), f"flow {kind}")
    try:
        m = drain(
            url,
            queue,
            n,
            concurrency=concurrency,
            loop=loop,
            label=f"flow {kind}",
            profile=profile,
            scripts=scripts,
            timeout_s=timeout_s,
        )
    finally:
        _drop(url, queue)
    m.update(kind=kind, keys=nkeys, limited=kind == "limited", enqueue_s=enqueue_s)
    return m


def take_alone(url: str, kind: str, n: int, *, keys: int = KEYS) -> dict[str, Any]:
    """Empty a keyed queue (``keys`` or ``limited``) by calling the take script directly,
    TAKE_COUNT jobs a call, with nothing else running: its Redis time per call and per
    job (EVALSHA in INFO commandstats) and the client's round trip per call."""
    queue = f"bench-flow-take-{kind}-{os.urandom(3).hex()}"
    if kind == "limited":
        set_limit(url, queue)
    fill(url, queue, keyed_specs(n, keys), f"take alone {kind}")
    r = client(url)
    driver = SyncDriver(r, "bench")
    k = QueueKeys(queue)
    try:
        driver.run(wops.take(k, "bench-take", 1))  # loads the script, makes the group
        got, calls = 1, 0
        r.config_resetstat()
        cpu0, t0 = redis_cpu_s(r), time.perf_counter()
        while True:
            taken = driver.run(wops.take(k, "bench-take", TAKE_COUNT))
            calls += 1
            got += len(taken.fetched)
            if not taken.fetched:
                break
        wall, cpu = time.perf_counter() - t0, redis_cpu_s(r) - cpu0
        stats = r.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    finally:
        r.close()
        _drop(url, queue)
    if got != n:
        raise BenchFailure(f"take alone {kind}: took {got:,} of {n:,} jobs")
    usec = int(stats["usec"])
    return {
        "kind": kind,
        "jobs": n,
        "keys": keys,
        "count": TAKE_COUNT,
        "calls": calls,
        "take_us_per_job": usec / (n - 1),
        "redis_cpu_us_per_job": cpu / (n - 1) * 1e6,
        "take_us_per_call": usec / max(1, int(stats["calls"])),
        "roundtrip_us_per_call": wall / calls * 1e6,
        "per_s": (n - 1) / wall,
    }


def fairness(
    url: str,
    *,
    big: int = BIG_JOBS,
    small_keys: int = SMALL_KEYS,
    concurrency: int,
    loop: str,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """The fairness drain: at what fraction of the drain each small key's last job
    finished (completion order as the handler saw it)."""
    queue = f"bench-flow-fair-{os.urandom(3).hex()}"
    specs = fair_specs(big, small_keys)
    n = len(specs)
    enqueue_s = fill(url, queue, specs, "flow fairness")
    try:
        m = drain(
            url,
            queue,
            n,
            concurrency=concurrency,
            loop=loop,
            label="flow fairness",
            timeout_s=timeout_s,
        )
    finally:
        _drop(url, queue)
    last: dict[int, int] = {}
    for pos, key in enumerate(DONE_KEY):
        if key > 0:
            last[key] = pos + 1
    if len(last) != small_keys:
        raise BenchFailure(f"flow fairness: {len(last)} small keys finished of {small_keys}")
    fractions = sorted(p / n for p in last.values())
    small_jobs = small_keys * SMALL_JOBS
    # Strict round-robin: the small keys are done after SMALL_JOBS turns of every key
    # (the big one included), give or take the jobs one take hands out at once.
    bound = SMALL_JOBS * (small_keys + 1) + concurrency
    m.update(
        kind="fairness",
        keys=small_keys + 1,
        limited=False,
        enqueue_s=enqueue_s,
        big_jobs=big,
        small_keys=small_keys,
        small_jobs=small_jobs,
        last_small_positions=sorted(last.values()),
        last_small_max_fraction=fractions[-1],
        last_small_median_fraction=fractions[len(fractions) // 2],
        round_robin_bound=bound,
        big_share_until_small_done=sum(1 for k in DONE_KEY[: max(last.values())] if k == 0)
        / max(last.values()),
        target_fraction=FAIR_TARGET,
    )
    return m


# --------------------------------------------------------------------------- harness


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    runs = sorted(runs, key=lambda m: m["per_s"])
    med = dict(runs[len(runs) // 2])
    med["all_per_s"] = [m["per_s"] for m in runs]
    return med


def _spread(m: dict[str, Any]) -> str:
    rates = m.get("all_per_s") or [m["per_s"]]
    return "-" if len(rates) < 2 else f"{min(rates):,.0f}-{max(rates):,.0f}"


def _row(m: dict[str, Any]) -> tuple[Any, ...]:
    limits = f"{RATE:,}/{PERIOD_MS / 1000:g} s, {CONCURRENCY} running" if m["limited"] else "none"
    return (
        m["kind"],
        m["jobs"],
        m["keys"],
        limits,
        m["per_s"],
        _spread(m),
        m["worker_cpu_us_per_job"],
        m["redis_cpu_us_per_job"],
        m["scripts_us_per_job"],
    )


def _loop() -> str:
    return os.environ.get("STREAMQ_LOOP", "auto")


def run(ctx: Context) -> dict[str, Any]:
    """The flow tables: plain / keys / limited drains (median of ``ctx.repeat``), the take
    alone, and fairness."""
    n, loop, c = ctx.jobs, _loop(), ctx.concurrency
    drains = {
        kind: _median(
            [keyed(ctx.url, kind, n, concurrency=c, loop=loop) for _ in range(ctx.repeat)]
        )
        for kind in ("plain", "keys", "limited")
    }
    takes = {kind: take_alone(ctx.url, kind, min(n, 20_000)) for kind in ("keys", "limited")}
    fair = fairness(ctx.url, concurrency=c, loop=loop)
    med = f" (median of {ctx.repeat} runs)" if ctx.repeat > 1 else ""
    show(
        f"flow control: one in-process worker x {c} drains a pre-filled queue{med}; "
        "scripts = Redis time in Lua scripts",
        HEADERS,
        [_row(m) for m in drains.values()],
    )
    plain = drains["plain"]["per_s"]
    show(
        f"the take script alone: {TAKE_COUNT} jobs a call, {KEYS:,} keys, nothing else running",
        [
            "keys",
            "jobs",
            "take us/job (Redis)",
            "take us/call (Redis)",
            "Redis CPU us/job",
            "round trip us/call",
        ],
        [
            (
                "limited" if t["kind"] == "limited" else "no limits",
                t["jobs"],
                t["take_us_per_job"],
                t["take_us_per_call"],
                t["redis_cpu_us_per_job"],
                t["roundtrip_us_per_call"],
            )
            for t in takes.values()
        ],
    )
    show(
        f"fairness: 1 key x {fair['big_jobs']:,} jobs then {fair['small_keys']} keys x "
        f"{SMALL_JOBS}, one worker x {c}",
        ["jobs", "jobs/s", "small keys' last job: max", "median", "round-robin bound", "target"],
        [
            (
                fair["jobs"],
                fair["per_s"],
                f"{fair['last_small_max_fraction'] * 100:.2f}% of the drain",
                f"{fair['last_small_median_fraction'] * 100:.2f}%",
                f"{fair['round_robin_bound'] / fair['jobs'] * 100:.2f}%",
                f"<= {FAIR_TARGET:.0%}",
            )
        ],
    )
    print(
        f"keyed vs plain in this run: keys {pct(drains['keys']['per_s'] / plain)}, "
        f"limited {pct(drains['limited']['per_s'] / plain)}",
        flush=True,
    )
    result = {"drains": drains, "take_alone": takes, "fairness": fair}
    write_json(ctx.out_dir, "flow", result)
    return result


def run_check(ctx: Context, min_rate: float) -> list[str]:
    """The CI part: a short limited drain and a short fairness drain. Returns the failures:
    a lost or duplicated job (raised), flow state left behind (raised), a small key
    finishing later than round-robin allows or past 5 % of the drain, or below
    ``min_rate`` jobs/s (CI machines are noisy: only that loose floor)."""
    c, loop = ctx.concurrency, _loop()
    limited = keyed(
        ctx.url, "limited", ctx.jobs, concurrency=c, loop=loop, timeout_s=CHECK_TIMEOUT_S
    )
    fair = fairness(
        ctx.url,
        big=CHECK_BIG_JOBS,
        small_keys=CHECK_SMALL_KEYS,
        concurrency=c,
        loop=loop,
        timeout_s=CHECK_TIMEOUT_S,
    )
    show(
        "bench --check: flow control (one in-process worker)",
        ["drain", "jobs", "jobs/s", "small keys' last job: max", "round-robin bound"],
        [
            (
                f"limited, {KEYS:,} keys",
                limited["jobs"],
                limited["per_s"],
                "-",
                "-",
            ),
            (
                f"fairness 1 x {CHECK_BIG_JOBS:,} + {CHECK_SMALL_KEYS} x {SMALL_JOBS}",
                fair["jobs"],
                fair["per_s"],
                f"{fair['last_small_max_fraction'] * 100:.2f}%",
                f"{fair['round_robin_bound'] / fair['jobs'] * 100:.2f}%",
            ),
        ],
    )
    write_json(ctx.out_dir, "check-flow", {"limited": limited, "fairness": fair})
    fails = []
    for m in (limited, fair):
        if m["per_s"] < min_rate:
            fails.append(
                f"flow {m['kind']}: {fmt(m['per_s'])} jobs/s is below the required "
                f"{min_rate:g} jobs/s"
            )
    worst = max(fair["last_small_positions"])
    if worst > fair["round_robin_bound"] or fair["last_small_max_fraction"] > FAIR_TARGET:
        fails.append(
            f"flow fairness: a small key's last job finished at job {worst:,} of "
            f"{fair['jobs']:,} ({fair['last_small_max_fraction']:.2%}); round-robin allows "
            f"{fair['round_robin_bound']:,}, the target {FAIR_TARGET:.0%}"
        )
    return fails


# --------------------------------------------------------------------------- CLI

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


def _print_profile(prof: cProfile.Profile) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.flow``: one measurement, on its own server."""
    p = argparse.ArgumentParser(
        prog="python -m bench.flow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "kind",
        nargs="?",
        default="limited",
        choices=["limited", "keys", "plain", "fairness", "take"],
    )
    p.add_argument("-n", "--jobs", type=int, default=20_000)
    p.add_argument("-c", "--concurrency", type=int, default=100)
    p.add_argument("--keys", type=int, default=KEYS, help=f"keys (default {KEYS:,})")
    p.add_argument("--loop", choices=LOOPS, default="auto")
    p.add_argument("--profile", action="store_true", help="run the drain under cProfile")
    p.add_argument("--commandstats", action="store_true", help="print INFO commandstats")
    p.add_argument(
        "--scripts", action="store_true", help="Redis time per script (SLOWLOG: slows Redis)"
    )
    args = p.parse_args(argv)
    if args.jobs < 1 or args.concurrency < 1 or args.keys < 1:
        p.error("--jobs, --concurrency and --keys must be >= 1")
    prof = cProfile.Profile() if args.profile else None
    with EmbeddedServer(password="bench-flow", profile="none") as srv:
        if args.kind == "take":
            for kind in ("keys", "limited"):
                t = take_alone(srv.url, kind, args.jobs, keys=args.keys)
                print(
                    f"take alone, {kind}: {t['take_us_per_job']:.1f} us/job and "
                    f"{t['take_us_per_call']:,.0f} us/call of Redis time ({TAKE_COUNT} a "
                    f"call), Redis CPU {t['redis_cpu_us_per_job']:.1f} us/job, round trip "
                    f"{t['roundtrip_us_per_call']:,.0f} us/call"
                )
            return 0
        if args.kind == "fairness":
            m = fairness(srv.url, concurrency=args.concurrency, loop=args.loop)
            print(
                f"small keys' last jobs: max {m['last_small_max_fraction']:.2%}, median "
                f"{m['last_small_median_fraction']:.2%} of {m['jobs']:,} (round-robin bound "
                f"{m['round_robin_bound']:,} jobs); big key's share until then "
                f"{m['big_share_until_small_done']:.1%}"
            )
        else:
            m = keyed(
                srv.url,
                args.kind,
                args.jobs,
                keys=args.keys,
                concurrency=args.concurrency,
                loop=args.loop,
                profile=prof,
                scripts=args.scripts,
            )
        print(
            f"{args.kind}: {m['jobs']:,} jobs in {m['seconds']:.2f} s: {m['per_s']:,.0f} "
            f"jobs/s; worker CPU {m['worker_cpu_us_per_job']:.1f} us/job, Redis CPU "
            f"{m['redis_cpu_us_per_job']:.1f} us/job, of which scripts "
            f"{m['scripts_us_per_job']:.1f} us/job (loop {args.loop}"
            f"{', under cProfile' if prof else ''}{', SLOWLOG on' if args.scripts else ''})"
        )
        if args.commandstats:
            top = sorted(m["commandstats"].items(), key=lambda kv: -kv[1]["usec_per_job"])
            for name, v in top[:20]:
                print(
                    f"  {name:16} {v['calls_per_job']:8.3f} calls/job "
                    f"{v['usec_per_job']:7.2f} us/job {v['usec_per_call']:8.1f} us/call"
                )
        if args.scripts:
            print("Redis time per script (SLOWLOG durations; commands they call included):")
            for name, v in m["by_script"].items():
                print(
                    f"  {name:16} {v['calls_per_job']:8.3f} calls/job "
                    f"{v['usec_per_job']:7.2f} us/job {v['usec_per_call']:8.1f} us/call"
                )
    if prof is not None:
        _print_profile(prof)
    return 0


if __name__ == "__main__":
    sys.exit(main())
