"""Chaos scenarios about time: workers with skewed clocks, and schedulers and promoters
racing while some of them are killed. Each ends with the exact ledger."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

import streamq
from streamq.server import EmbeddedServer
from tests._support import redis_now_ms
from tests.chaos._chaos_support import (
    Fleet,
    Ledger,
    WorkerProcess,
    keys_of,
    settle,
    verify_ledger,
)
from tests.chaos.skewed_worker import SKEW_ENV

pytestmark = pytest.mark.chaos

# Scenario 9.
SKEW_S = 3600
DELAYED_JOBS = 40
RETRY_JOBS = 5
RETRY_DELAY_MS = 1000
LATE_LIMIT_MS = 500


def _log_skew_s(worker: WorkerProcess) -> float:
    """How far the worker's clock is from ours, from the ``ts`` of its last log line (written
    a moment ago: the result is good to a few seconds, plenty to tell an hour)."""
    last = worker.events()[-1]
    logged = datetime.strptime(last["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return logged.timestamp() - time.time()


def test_workers_with_skewed_clocks_fire_delayed_jobs_on_the_redis_clock(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """9. Clock skew.

    Two worker processes whose own clocks are one hour ahead and one hour behind (time.time
    patched in the child) run 40 jobs delayed by 1-2 s and 5 jobs whose first attempt fails
    with a 1 s backoff. Judged by the Redis clock (TIME read in the handler), every delayed
    job and every retry must start within [due, due + 500 ms]."""
    rng = random.Random()
    fleet = fleet_factory(srv.url, queue_name, concurrency=8, module="tests.chaos.skewed_worker")
    ahead = fleet.start(**{SKEW_ENV: str(SKEW_S)})
    behind = fleet.start(**{SKEW_ENV: str(-SKEW_S)})
    for w in (ahead, behind):
        w.consumer()  # started
    # Prove the skew is real: each worker's log timestamps come from its own clock.
    skews = {w.pid: _log_skew_s(w) for w in (ahead, behind)}
    assert abs(skews[ahead.pid] - SKEW_S) < 60 and abs(skews[behind.pid] + SKEW_S) < 60, skews
    due: dict[str, int] = {}
    with streamq.Producer(srv.url) as producer:
        specs = [
            streamq.JobSpec("stamp", None, delay=rng.uniform(1.0, 2.0)) for _ in range(DELAYED_JOBS)
        ]
        for r in producer.enqueue_many(queue_name, specs):
            assert r.due_at_ms is not None
            due[r.job_id] = r.due_at_ms
        ledger.accept(due)
        retry_specs = [
            streamq.JobSpec(
                "stamp_retry", None, max_retries=1, backoff=streamq.Backoff.fixed(RETRY_DELAY_MS)
            )
            for _ in range(RETRY_JOBS)
        ]
        retries = [r.job_id for r in producer.enqueue_many(queue_name, retry_specs)]
        ledger.accept(retries)
    final = settle(client, queue_name, ledger.accepted, timeout=20)
    check = verify_ledger(client, queue_name, ledger, final_states=final)
    starts: dict[tuple[str, int], int] = {}
    for r in ledger.runs():
        assert r.redis_ms is not None
        starts[(r.job_id, r.attempt)] = r.redis_ms
    delayed_lateness = [starts.get((j, 1), 0) - d for j, d in due.items()]
    retry_lateness = [
        starts.get((j, 2), 0) - (starts.get((j, 1), 0) + RETRY_DELAY_MS) for j in retries
    ]
    figures.update(
        check.figures(),
        faults="worker clocks skewed +1 h and -1 h",
        measured_skew_s=sorted(round(v) for v in skews.values()),
        delayed_lateness_ms={"min": min(delayed_lateness), "max": max(delayed_lateness)},
        retry_lateness_ms={"min": min(retry_lateness), "max": max(retry_lateness)},
    )
    check.assert_exact()
    assert check.completed == DELAYED_JOBS + RETRY_JOBS
    assert all(0 <= late <= LATE_LIMIT_MS for late in delayed_lateness), delayed_lateness
    assert all(0 <= late <= LATE_LIMIT_MS for late in retry_lateness), retry_lateness


# Scenario 13.
SCHEDULES = 20
SCHEDULE_RUN_S = 15.0
SCHEDULER_KILL_EVERY_S = (2.0, 3.0)
DELAYED_RACE_JOBS = 300


def test_racing_schedulers_and_promoters_under_kills_fire_each_tick_once(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """13. Racing schedulers and promoters.

    Three worker processes (each runs the scheduler and the promoter) serve 20 schedules
    repeating every second for 15 s, and 300 delayed jobs due over the same 15 s; every
    2-3 s one of them is SIGKILLed and replaced. Every tick must be enqueued exactly once
    (ids rep:KEY:TICK cover each schedule's ticks from first to last without a gap, and
    each ran once), and no delayed job may be lost or run twice."""
    rng = random.Random()
    env = {"STREAMQ_LEASE": "1000", "STREAMQ_MAX_STALLS": "100"}
    fleet = fleet_factory(srv.url, queue_name, concurrency=8, env=env)
    for _ in range(3):
        fleet.start()
    kills = 0
    with streamq.Producer(srv.url) as producer:
        keys = [f"s{i}" for i in range(SCHEDULES)]
        for key in keys:
            producer.add_schedule(queue_name, key, "work", {"ms": 0}, every=1)
        specs = [
            streamq.JobSpec("work", {"ms": 0}, delay=rng.uniform(0.2, SCHEDULE_RUN_S))
            for _ in range(DELAYED_RACE_JOBS)
        ]
        ledger.accept(r.job_id for r in producer.enqueue_many(queue_name, specs))
        t_end = time.monotonic() + SCHEDULE_RUN_S
        while time.monotonic() < t_end:
            time.sleep(rng.uniform(*SCHEDULER_KILL_EVERY_S))  # fault pacing
            fleet.kill_random(rng)
            fleet.start()
            kills += 1
        for key in keys:
            assert producer.remove_schedule(queue_name, key)
        removed_ms = redis_now_ms(client)
    k = keys_of(queue_name)
    tick_ids = sorted(
        key.decode().removeprefix(k.job(""))
        for key in client.scan_iter(match=k.job("rep:*"), count=1000)
    )
    final = settle(client, queue_name, [*ledger.accepted, *tick_ids])
    check = verify_ledger(
        client,
        queue_name,
        ledger,
        interrupted_pids=fleet.interrupted,
        interrupted_jobs=fleet.lease_losses(),
        final_states=final,
        extra_ids=tick_ids,
    )
    ticks: dict[str, list[int]] = defaultdict(list)
    for jid in tick_ids:
        _, key, tick = jid.split(":")
        ticks[key].append(int(tick))
    gaps = {
        key: [b - a for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False) if b - a != 1000]
        for key, ts in ticks.items()
    }
    ran = {r.job_id for r in ledger.runs()}
    fired_by = Counter(
        {w.pid: sum(e.get("ticks", 0) for e in w.events("scheduled")) for w in fleet.procs}
    )
    figures.update(
        check.figures(),
        faults=f"{kills} scheduler/promoter SIGKILLs",
        scheduler_kills=kills,
        schedules=SCHEDULES,
        ticks=len(tick_ids),
        ticks_min_per_schedule=min((len(v) for v in ticks.values()), default=0),
        tick_gaps=sum(len(v) for v in gaps.values()),
        ticks_not_run=sum(1 for j in tick_ids if j not in ran),
        delayed_jobs=DELAYED_RACE_JOBS,
        processes_that_fired_ticks=sum(1 for n in fired_by.values() if n),
        ticks_fired_logged=sum(fired_by.values()),
    )
    check.assert_exact()
    assert set(ticks) == set(keys)
    assert not any(gaps.values()), gaps
    last_due = max(max(ts) for ts in ticks.values())
    assert removed_ms - last_due <= 2000  # ticking went on until the schedules were removed
    assert figures["ticks_min_per_schedule"] >= SCHEDULE_RUN_S - 2
    assert figures["ticks_not_run"] == 0
    assert check.completed == len(tick_ids) + DELAYED_RACE_JOBS
    assert kills >= 4
    # No tick fired twice (a scheduler killed between firing and logging logs less).
    assert figures["ticks_fired_logged"] <= len(tick_ids)
    assert figures["processes_that_fired_ticks"] >= 2  # they did race
