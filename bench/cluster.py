"""``python -m bench -s cluster``: the same drain on one node and on a 3-master cluster.

Each drain pre-enqueues N no-op jobs, then one in-process worker
(``Worker(...).run(burst=True)``, concurrency as ``--concurrency``) drains them: on one
:class:`~streamq.server.EmbeddedServer`, then on an
:class:`~streamq.server.EmbeddedCluster` of 3 masters (no replicas) with a queue of 1, 3
and 6 partitions. Around each drain, ``INFO cpu`` (``used_cpu_sys + used_cpu_user``) is
read on every master, giving Redis CPU per job on each one.

This machine has 2 cores, shared by the Python worker and every Redis: wall time is bounded
by the worker, not by Redis. So beside the measured jobs/s the table shows the **projected
capacity**, 1 / (the busiest master's CPU per job): the rate at which that master would be
saturated if workers were added until Redis, not Python, was the limit. The issue's targets
(information only, never the exit code): with 6 partitions the busiest master carries <= 40 %
of the total Redis CPU, and the projected capacity is >= 2.5x one node's.

Two things are held the same for every setup, so the figures compare Redis, not luck:

* **CPU pinning** (Linux, 2 or more CPUs): every Redis process on one CPU, this process
  (producer and worker) on another. Unpinned, the busy Python worker and three masters
  share 2 cores by the scheduler's whim: the masters then paid a third more per command
  in context switches and cold caches than the one node did, a cost of the shared test
  machine, not of the cluster (a cluster's masters run on hosts of their own). The masters
  still share their one CPU with each other, which is the pessimistic side.
* **No retention pass in the window**: finished records are kept (``keep_completed``
  raised), since the once-a-second pass that deletes them fell inside a short drain or
  not, by chance, and moved a setup's figure by a tenth. Deleting a record costs the same
  on every setup; it is left out of all of them.

Every setup runs once per round, ``--repeat`` rounds interleaved; the table shows each
setup's run of median projected capacity (all rounds are in ``cluster.json``). A second
table, from ``INFO commandstats``, shows where the extra Redis time of a partitioned queue
goes. :func:`run_check` is the loose ``--check`` part (6 partitions, 5,000 jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.crc import key_slot

import streamq
from bench import apps, common
from bench.common import (
    BenchFailure,
    Context,
    Progress,
    client,
    fmt,
    pct,
    redis_cpu_s,
    say,
    show,
    write_json,
)
from streamq.admin import Admin
from streamq.protocol.keys import QueueKeys
from streamq.protocol.partitions import partition_tags
from streamq.server import EmbeddedCluster, find_server_binary
from streamq.server.cluster import cluster_mode_refusal, slot_ranges
from streamq.worker import Worker
from streamq.worker.__main__ import loop_runner

MASTERS = 3
PARTITIONS = (1, 3, 6)
BATCH = 500
#: The issue's targets, with 3 masters and 6 partitions.
TARGET_BUSIEST_SHARE = 0.40
TARGET_CAPACITY_RATIO = 2.5
TIMEOUT_S = 600.0
CHECK_JOBS = 5_000
CHECK_PARTITIONS = 6
CHECK_TIMEOUT_S = 60.0  # a --check drain not done by then hangs: it fails

HEADERS = [
    "setup",
    "partitions (per master)",
    "jobs per master",
    "jobs/s (measured)",
    "Redis CPU us/job per master",
    "total us/job",
    "busiest share",
    "projected capacity jobs/s",
    "vs one node",
]


#: Finished records kept during a drain (see the module docstring: no retention pass).
KEEP_ALL = 1_000_000_000


def settings_for(url: str) -> streamq.Settings:
    """The bench's settings, keeping every finished record (no retention in the window)."""
    return common.settings_for(url).with_changes(keep_completed=KEEP_ALL)


@contextlib.contextmanager
def pinned(redis_pids: list[int]) -> Iterator[str]:
    """Every Redis process on one CPU, this process on another (see the module docstring);
    this process's CPUs are given back on exit. Yields what was done, for the table."""
    if not hasattr(os, "sched_setaffinity"):
        yield "not pinned (no sched_setaffinity here)"
        return
    mine = os.sched_getaffinity(0)
    cpus = sorted(mine)
    if len(cpus) < 2:
        yield "not pinned (one CPU)"
        return
    try:
        for pid in redis_pids:
            os.sched_setaffinity(pid, {cpus[1]})
        os.sched_setaffinity(0, {cpus[0]})
        yield f"pinned: Redis on CPU {cpus[1]}, worker on CPU {cpus[0]}"
    finally:
        os.sched_setaffinity(0, mine)
        for pid in redis_pids:
            with contextlib.suppress(OSError):  # a server stopped meanwhile
                os.sched_setaffinity(pid, mine)


def _loop() -> str:
    return os.environ.get("STREAMQ_LOOP", "auto")


def _fill(url: str, queue: str, n: int, label: str) -> None:
    progress = Progress(f"{label}: enqueue", n)
    with streamq.Producer(settings=settings_for(url)) as producer:
        # One job first: a producer's first call to a queue goes home while it learns the
        # partition count; the batches after it spread.
        for start in [0, *range(1, n, BATCH)]:
            batch = range(start, min(start + (1 if start == 0 else BATCH), n))
            producer.enqueue_many(queue, [streamq.JobSpec("noop", i) for i in batch])
            progress.update(batch.stop)
    progress.done()


async def _bounded(worker: Worker, timeout_s: float) -> None:
    await asyncio.wait_for(worker.run(burst=True), timeout_s)


def _spread(queue: str, partitions: int, masters: int) -> list[int]:
    """How many of the queue's partitions each master owns (the slot ranges the cluster was
    formed with: :func:`~streamq.server.cluster.slot_ranges`)."""
    ranges = slot_ranges(masters)
    owned = [0] * masters
    for tag in partition_tags(queue, partitions):
        slot = key_slot(QueueKeys(queue, tag=tag).stream.encode())
        owned[next(i for i, (a, b) in enumerate(ranges) if a <= slot <= b)] += 1
    return owned


def _waiting(r: redis.Redis, queue: str) -> int:
    """Entries in the streams of one node: the jobs each master holds before the drain."""
    total = 0
    for key in r.scan_iter(match=f"sq:{{{queue}*}}:stream", count=1000, _type="stream"):
        total += int(r.xlen(key))
    return total


def _commands(r: redis.Redis, n: int) -> dict[str, dict[str, float]]:
    """One node's ``INFO commandstats`` since the reset: calls and usec per job."""
    return {
        name.removeprefix("cmdstat_"): {
            "calls_per_job": v["calls"] / n,
            "us_per_job": v["usec"] / n,
        }
        for name, v in r.info("commandstats").items()
    }


def _summed(by_node: list[dict[str, dict[str, float]]]) -> dict[str, tuple[float, float]]:
    """Calls and usec per job of each command, summed over the nodes."""
    out: dict[str, tuple[float, float]] = {}
    for stats in by_node:
        for name, v in stats.items():
            c, us = out.get(name, (0.0, 0.0))
            out[name] = (c + v["calls_per_job"], us + v["us_per_job"])
    return out


def drain(
    url: str,
    nodes: list[redis.Redis],
    queue: str,
    n: int,
    *,
    concurrency: int,
    label: str,
    timeout_s: float = TIMEOUT_S,
) -> dict[str, Any]:
    """One in-process worker drains ``queue`` (``n`` jobs waiting); each node's Redis CPU
    delta around the drain. Raises :class:`BenchFailure` when a job is lost or duplicated."""
    apps.reset()
    worker = Worker(apps.app, [queue], settings=settings_for(url), concurrency=concurrency)
    waiting = [_waiting(r, queue) for r in nodes]
    gc.collect()
    for r in nodes:
        r.config_resetstat()
    progress = Progress(f"{label}: drain", n)
    cpu0 = [redis_cpu_s(r) for r in nodes]
    t0 = time.perf_counter()
    try:
        loop_runner(_loop())(_bounded(worker, timeout_s))
    except TimeoutError:
        raise BenchFailure(
            f"{label}: not drained after {timeout_s:g} s ({len(apps.SEEN):,} of {n:,} jobs ran)"
        ) from None
    wall = time.perf_counter() - t0
    cpu = [redis_cpu_s(r) - c for r, c in zip(nodes, cpu0, strict=True)]
    progress.done(f"{n / wall:,.0f} jobs/s")
    commands = [_commands(r, n) for r in nodes]
    done, distinct = len(apps.SEEN), len(set(apps.SEEN))
    if done != n or distinct != n:
        raise BenchFailure(
            f"{label}: {done:,} completions of {distinct:,} distinct jobs, expected {n:,} "
            "each exactly once"
        )
    per_job = [c / n * 1e6 for c in cpu]
    calls = _summed(commands)
    hset = calls.get("hset", (0.0, 0.0))
    total = sum(per_job)
    busiest = max(per_job)
    return {
        "label": label,
        "jobs": n,
        "concurrency": concurrency,
        "seconds": wall,
        "per_s": n / wall,
        "jobs_waiting_by_node": waiting,
        "commands_by_node": commands,
        "redis_cpu_us_per_job_by_node": per_job,
        "redis_cpu_us_per_job_total": total,
        "busiest_share": busiest / total if total else None,
        # Same work per job everywhere: one HSET per job. Its time per call, set beside the
        # single node's, shows how much dearer every command is on the 2 shared cores.
        "hset_us_per_call": hset[1] / hset[0] if hset[0] else None,
        "evalsha_calls_per_job": calls.get("evalsha", (0.0, 0.0))[0],
        "evalsha_us_per_job": calls.get("evalsha", (0.0, 0.0))[1],
        "projected_per_s": 1e6 / busiest if busiest else None,
    }


@dataclass
class _Setup:
    """One configuration measured: where, which queue, and the nodes whose CPU counts."""

    setup: str
    url: str
    nodes: list[redis.Redis]
    queue: str
    partitions: int
    spread: list[int]
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.setup}, {self.partitions} partition(s)"


def _fresh(st: _Setup) -> None:
    """Empty servers before each run (outside the window), the partitions declared again:
    with no retention pass, what earlier rounds kept would make every later one dearer
    (larger sorted sets and key tables, rehashing) and the rounds unequal."""
    for r in st.nodes:
        r.flushall()
    if st.partitions > 1:
        with Admin(settings=settings_for(st.url)) as admin:
            admin.set_partitions(st.queue, st.partitions)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median projected capacity (one whole run, so its figures agree)."""
    ranked = sorted(runs, key=lambda m: m["projected_per_s"] or 0.0)
    return ranked[len(ranked) // 2]


def _measure(ctx: Context, n: int) -> tuple[list[dict[str, Any]], str]:
    """Every setup once per round, ``ctx.repeat`` rounds (interleaved, so a noisy spell on
    the machine hits them all alike); the median run of each, and how CPUs were pinned."""
    server = ctx.start_server("none", tag="cluster-single")
    base = ctx.tmp / f"cluster-{secrets.token_hex(3)}"
    setups: list[_Setup] = []
    try:
        with EmbeddedCluster(
            base, masters=MASTERS, replicas_per_master=0, password=secrets.token_urlsafe(16)
        ) as cluster:
            say(f"  cluster of {MASTERS} masters formed in {cluster.formation_seconds:.1f} s")
            setups.append(
                _Setup("single node", server.url, [client(server.url)], ctx.queue("one"), 1, [1])
            )
            for parts in PARTITIONS:
                queue = ctx.queue(f"p{parts}")
                setups.append(
                    _Setup(
                        f"cluster x{MASTERS}",
                        cluster.url,
                        # One plain connection per master: INFO cpu is per node.
                        [client(node.url) for node in cluster.nodes],
                        queue,
                        parts,
                        _spread(queue, parts, MASTERS),
                    )
                )
            pids = [server.pid, *(node.server.pid for node in cluster.nodes)]
            with pinned([p for p in pids if p is not None]) as how:
                for round_ in range(ctx.repeat):
                    for st in setups:
                        label = st.label + (f" #{round_ + 1}" if ctx.repeat > 1 else "")
                        _fresh(st)
                        _fill(st.url, st.queue, n, label)
                        m = drain(
                            st.url, st.nodes, st.queue, n, concurrency=ctx.concurrency, label=label
                        )
                        m.update(setup=st.setup, partitions=st.partitions, spread=st.spread)
                        st.runs.append(m)
    finally:
        for st in setups:
            for r in st.nodes:
                r.close()
        ctx.stop_server(server)
    out = []
    for st in setups:
        best = dict(_median_run(st.runs))
        best["repeats"] = [
            {k: m[k] for k in ("per_s", "redis_cpu_us_per_job_by_node", "projected_per_s")}
            for m in st.runs
        ]
        out.append(best)
    return out, how


def _row(m: dict[str, Any], one: float | None) -> list[Any]:
    cpus = " / ".join(f"{c:.1f}" for c in m["redis_cpu_us_per_job_by_node"])
    proj = m["projected_per_s"]
    return [
        m["setup"],
        f"{m['partitions']} ({'/'.join(map(str, m['spread']))})",
        " / ".join(f"{w:,}" for w in m["jobs_waiting_by_node"]),
        m["per_s"],
        cpus,
        m["redis_cpu_us_per_job_total"],
        pct(m["busiest_share"]) if len(m["redis_cpu_us_per_job_by_node"]) > 1 else "-",
        proj,
        f"{proj / one:.2f}x" if proj and one else "-",
    ]


def targets(single: dict[str, Any], six: dict[str, Any]) -> dict[str, Any]:
    """The issue's two targets for 3 masters x 6 partitions, measured."""
    one, proj, share = single["projected_per_s"], six["projected_per_s"], six["busiest_share"]
    capacity = proj / one if proj and one else None
    return {
        "busiest_share": share,
        "busiest_share_ok": share is not None and share <= TARGET_BUSIEST_SHARE,
        "capacity_ratio": capacity,
        "capacity_ratio_ok": capacity is not None and capacity >= TARGET_CAPACITY_RATIO,
    }


def run(ctx: Context) -> dict[str, Any]:
    """The cluster table: one node, then 3 masters with 1, 3 and 6 partitions."""
    n = ctx.jobs
    runs, how = _measure(ctx, n)
    one = runs[0]["projected_per_s"]
    med = f" (the run of median projected capacity of {ctx.repeat})" if ctx.repeat > 1 else ""
    show(
        f"cluster: one in-process worker x {ctx.concurrency} drains {n:,} no-op jobs{med}; "
        "Redis CPU from INFO cpu on each master; projected capacity = 1 / the busiest "
        "master's CPU per job (2 shared cores here: measured jobs/s is bounded by the "
        f"Python worker, not by Redis); {how}; finished records kept (no retention pass)",
        HEADERS,
        [_row(m, one) for m in runs],
    )
    show(
        "cluster: where the Redis time goes (INFO commandstats summed over the masters; a "
        "script's time includes the commands it calls; HSET, one per job everywhere, shows "
        "how dear a command is on the shared cores)",
        ["setup", "partitions", "EVALSHA calls/job", "EVALSHA us/job", "HSET us/call"],
        [
            [
                m["setup"],
                m["partitions"],
                f"{m['evalsha_calls_per_job']:.4f}",
                m["evalsha_us_per_job"],
                fmt(m["hset_us_per_call"], 2),
            ]
            for m in runs
        ],
    )
    for m in runs[1:]:
        if m["partitions"] > 1 and max(m["spread"]) - min(m["spread"]) > 0:
            say(
                f"  note: {m['partitions']} partitions of this run's queue land "
                f"{'/'.join(map(str, m['spread']))} on the masters, not evenly (partition_tags "
                "accepts a slot anywhere in the middle half of its stretch, which can cross a "
                "master's boundary): the busiest master's share follows"
            )
    six = next(m for m in runs if m["setup"] != "single node" and m["partitions"] == PARTITIONS[-1])
    result: dict[str, Any] = {"runs": runs, "cpus": how, "targets": targets(runs[0], six)}
    t = result["targets"]
    say(
        f"  targets ({MASTERS} masters, {six['partitions']} partitions): busiest master "
        f"{pct(t['busiest_share'])} of Redis CPU (<= {TARGET_BUSIEST_SHARE:.0%}: "
        f"{'met' if t['busiest_share_ok'] else 'NOT met'}); projected capacity "
        f"{fmt(t['capacity_ratio'], 2)}x one node (>= {TARGET_CAPACITY_RATIO}x: "
        f"{'met' if t['capacity_ratio_ok'] else 'NOT met'})"
    )
    write_json(ctx.out_dir, "cluster", result)
    return result


def run_check(ctx: Context, min_rate: float) -> list[str]:
    """The CI part, loose on purpose (a noisy machine): 5,000 jobs in a 6-partition queue
    on a 3-master cluster, drained by one in-process worker. Returns the failures: a lost
    or duplicated job (raised), a master holding none of the jobs, or below ``min_rate``
    jobs/s. Skipped, with the reason, when the server binary cannot run in cluster mode."""
    binary = find_server_binary()
    refusal = cluster_mode_refusal(binary)
    if refusal is not None:
        say(f"  cluster check skipped: {binary} cannot run in cluster mode ({refusal})")
        return []
    base = ctx.tmp / f"cluster-check-{secrets.token_hex(3)}"
    label = f"check cluster x{MASTERS}, {CHECK_PARTITIONS} partitions"
    with EmbeddedCluster(
        base, masters=MASTERS, replicas_per_master=0, password=secrets.token_urlsafe(16)
    ) as cluster:
        queue = ctx.queue("check-cluster")
        with Admin(settings=settings_for(cluster.url)) as admin:
            admin.set_partitions(queue, CHECK_PARTITIONS)
        nodes = [client(node.url) for node in cluster.nodes]
        try:
            _fill(cluster.url, queue, CHECK_JOBS, label)
            m = drain(
                cluster.url,
                nodes,
                queue,
                CHECK_JOBS,
                concurrency=ctx.concurrency,
                label=label,
                timeout_s=CHECK_TIMEOUT_S,
            )
        finally:
            for r in nodes:
                r.close()
    m.update(spread=_spread(queue, CHECK_PARTITIONS, MASTERS))
    show(
        "bench --check: a partitioned queue on a cluster",
        ["drain", "jobs", "jobs/s", "partitions per master", "jobs per master"],
        [
            (
                label,
                CHECK_JOBS,
                m["per_s"],
                "/".join(map(str, m["spread"])),
                " / ".join(f"{w:,}" for w in m["jobs_waiting_by_node"]),
            )
        ],
    )
    write_json(ctx.out_dir, "check-cluster", m)
    fails = []
    if min(m["jobs_waiting_by_node"]) == 0:
        fails.append(
            f"cluster: {CHECK_PARTITIONS} partitions left a master without jobs "
            f"({m['jobs_waiting_by_node']} jobs per master)"
        )
    if m["per_s"] < min_rate:
        fails.append(f"cluster: {fmt(m['per_s'])} jobs/s is below the required {min_rate:g} jobs/s")
    return fails
