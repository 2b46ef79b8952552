"""Chaos scenarios where the workers misbehave: killed, frozen, stopped under load, fed
poison, or robbed of a running entry. Each ends with the exact ledger."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

import streamq
from streamq.protocol.keys import GROUP
from streamq.server import EmbeddedServer
from tests._support import wait_until
from tests.chaos._chaos_support import (
    Fleet,
    Ledger,
    keys_of,
    pending_count,
    settle,
    verify_ledger,
)

pytestmark = pytest.mark.chaos

# Scenario 1: scaled so the storm lasts ~15 s (the engine drains ~3,000 jobs/s here).
STORM_JOBS = 15_000
STORM_WORKERS = 4
STORM_FEED_S = 15.0  # jobs arrive over this long, so every kill hits a busy fleet
STORM_MAX_S = 50.0


def _seed(figures: dict[str, Any]) -> random.Random:
    seed = random.randrange(2**32)
    figures["seed"] = seed
    return random.Random(seed)


def test_sigkill_storm_on_workers_loses_no_job(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """1. Worker SIGKILL storm.

    Four worker processes (concurrency 8, lease 1 s, max_stalls 1000) run jobs of 0-5 ms
    fed at ~1,000/s for 15 s; about every second a random worker is SIGKILLed and a new
    one started. Every accepted job must end completed, the PEL empty, and a job may run
    twice only if a killed process was running it."""
    rng = _seed(figures)
    fleet = fleet_factory(
        srv.url,
        queue_name,
        concurrency=8,
        env={"STREAMQ_LEASE": "1000", "STREAMQ_MAX_STALLS": "1000", "STREAMQ_LOG_LEVEL": "warning"},
    )
    for _ in range(STORM_WORKERS):
        fleet.start()
    batch = 100
    period = STORM_FEED_S / (STORM_JOBS / batch)
    kills = 0
    t0 = time.monotonic()
    next_kill = t0 + rng.uniform(0.7, 1.3)
    with streamq.Producer(srv.url) as producer:
        while time.monotonic() - t0 < STORM_MAX_S:
            if len(ledger.accepted) < STORM_JOBS:
                specs = [streamq.JobSpec("work", {"ms": rng.randint(0, 5)}) for _ in range(batch)]
                ledger.accept(r.job_id for r in producer.enqueue_many(queue_name, specs))
            elif _drained(producer, queue_name):
                break
            if time.monotonic() >= next_kill:
                fleet.kill_random(rng)
                fleet.start()
                kills += 1
                next_kill = time.monotonic() + rng.uniform(0.7, 1.3)
            time.sleep(period)  # pacing of the feed and the kills
    final = settle(client, queue_name, ledger.accepted)
    losses = fleet.lease_losses()
    check = verify_ledger(
        client,
        queue_name,
        ledger,
        interrupted_pids=fleet.interrupted,
        interrupted_jobs=losses,
        final_states=final,
    )
    reclaimed = len(fleet.events("reclaimed"))
    figures.update(
        check.figures(),
        faults=f"{kills} worker SIGKILLs",
        fenced_in_live_workers=sum(losses.values()),
        spurious_lease_lost_warnings=fleet.spurious_lease_losses(ledger),
        worker_kills=kills,
        reclaimed_entries=reclaimed,
        elapsed_s=round(time.monotonic() - t0, 1),
    )
    check.assert_exact()
    assert check.completed == STORM_JOBS  # no healthy job was dead-lettered by the stalls
    assert kills >= 8, "the storm was too short to prove anything"
    assert reclaimed > 0, "no kill hit a running job: the scenario did not happen"


def _drained(producer: streamq.Producer, queue: str) -> bool:
    s = producer.status(queue)
    return s.waiting == 0 and s.active == 0 and s.delayed == 0


# Scenario 6.
LEASE_MS = 1000


def test_long_jobs_keep_their_lease_and_a_frozen_worker_is_fenced(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """6. Leases and fencing.

    (a) A job running 3x longer than the 1 s lease, with an idle worker ready to steal it,
    is never re-delivered and runs once. (b) A worker frozen with SIGSTOP mid-job past the
    lease loses the job to another worker, which completes it; after SIGCONT the frozen
    worker's late completion is refused and logged as "fenced", and the job record stays
    the new owner's (field w)."""
    env = {"STREAMQ_LEASE": str(LEASE_MS), "STREAMQ_MAX_STALLS": "5"}
    fleet = fleet_factory(srv.url, queue_name, concurrency=2, env=env)
    k = keys_of(queue_name)
    with streamq.Producer(srv.url) as producer:
        # (a) the long job, two workers.
        w1, w2 = fleet.start(), fleet.start()
        [long_job] = _accept(ledger, producer, queue_name, [{"ms": 3 * LEASE_MS}])
        samples: list[tuple[str, int]] = []

        def sample() -> bool:
            rows = client.xpending_range(k.stream, GROUP, "-", "+", 10)
            samples.extend((r["consumer"].decode(), int(r["times_delivered"])) for r in rows)
            return client.hget(k.job(long_job), "s") == b"completed"

        wait_until(sample, 15, "the long job to complete")
        for w in (w1, w2):
            w.signal(signal.SIGTERM)
        assert [w.wait(15) for w in (w1, w2)] == [0, 0]
        long_runs = ledger.counts()[long_job]

        # (b) freeze the worker running a job past the lease.
        frozen = fleet.start(concurrency=1)
        [job] = _accept(ledger, producer, queue_name, [{"ms": 1500}])
        wait_until(lambda: ledger.counts()[job] == 1, 10, "the job to start")
        frozen_consumer = frozen.consumer()
        frozen.signal(signal.SIGSTOP)
        fleet.interrupted.add(frozen.pid)
        t_stop = time.monotonic()
        thief = fleet.start()
        thief_consumer = thief.consumer()
        wait_until(
            lambda: client.hget(k.job(job), "s") == b"completed", 15, "the thief to complete it"
        )
        frozen_for = time.monotonic() - t_stop
        frozen.signal(signal.SIGCONT)
        fenced = wait_until(
            lambda: [e for e in frozen.events("fenced") if e.get("job_id") == job],
            10,
            "the late completion to be fenced",
        )
        record = {kk.decode(): v.decode() for kk, v in client.hgetall(k.job(job)).items()}
        for w in (frozen, thief):
            w.signal(signal.SIGTERM)
        assert [w.wait(15) for w in (frozen, thief)] == [0, 0]

    final = settle(client, queue_name, ledger.accepted)
    check = verify_ledger(
        client, queue_name, ledger, interrupted_pids=fleet.interrupted, final_states=final
    )
    figures.update(
        check.figures(),
        faults="1 job at 3x the lease; 1 worker SIGSTOPped mid-job",
        long_job_runs=long_runs,
        long_job_max_deliveries=max((d for _, d in samples), default=0),
        long_job_owners=len({c for c, _ in samples}),
        frozen_s=round(frozen_for, 2),
        fenced_log_lines=len(fenced),
        completed_counter=int(client.hget(k.stats, "completed") or 0),
    )
    check.assert_exact()
    assert long_runs == 1
    assert len(samples) > 20 and {d for _, d in samples} == {1}
    assert len({c for c, _ in samples}) == 1
    assert frozen_for > LEASE_MS / 1000
    assert ledger.counts()[job] == 2  # the frozen run, and the thief's
    assert record["s"] == "completed" and record["w"] == thief_consumer != frozen_consumer
    assert figures["completed_counter"] == 2  # the zombie's completion was not counted
    assert check.completed == 2


def _accept(
    ledger: Ledger,
    producer: streamq.Producer,
    queue: str,
    payloads: list[dict[str, Any]],
    name: str = "work",
    **options: Any,
) -> list[str]:
    res = producer.enqueue_many(queue, [streamq.JobSpec(name, p, **options) for p in payloads])
    ids = [r.job_id for r in res]
    ledger.accept(ids)
    return ids


# Scenario 7.
MAX_STALLS = 2
FAIL_RETRIES = 2
HANG_RETRIES = 1


def test_poison_jobs_end_in_the_dlq_after_bounded_attempts(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """7. Poison jobs.

    Three workers (lease 1 s, max_stalls 2) get, among healthy jobs, one job that always
    raises (2 retries) and one that hangs past its 0.5 s timeout (1 retry); then, alone,
    one that kills its own worker process with os._exit (a supervisor restarts dead
    workers); then healthy jobs again. Each poison job must end in the DLQ with reason
    failed / timeout / stalled after exactly its bounded number of runs, and the fleet
    must keep serving."""
    env = {"STREAMQ_LEASE": "1000", "STREAMQ_MAX_STALLS": str(MAX_STALLS)}
    fleet = fleet_factory(srv.url, queue_name, concurrency=4, env=env)
    for _ in range(3):
        fleet.start()
    fast = streamq.Backoff.fixed(50)
    k = keys_of(queue_name)
    restarts = 0

    def supervise_until(ids: list[str], what: str) -> None:
        nonlocal restarts
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for _ in fleet.note_deaths():
                if restarts < 10:  # a bounded supervisor
                    fleet.start()
                    restarts += 1
            if all(client.hget(k.job(j), "s") in (b"completed", b"failed") for j in ids):
                return
            time.sleep(0.05)  # supervisor pacing
        raise AssertionError(f"timed out after 30 s waiting for {what}")

    with streamq.Producer(srv.url) as producer:
        healthy = _accept(ledger, producer, queue_name, [{"ms": 20}] * 20)
        [failing] = _accept(
            ledger, producer, queue_name, [{}], "fail", max_retries=FAIL_RETRIES, backoff=fast
        )
        [hanging] = _accept(
            ledger,
            producer,
            queue_name,
            [{}],
            "hang",
            max_retries=HANG_RETRIES,
            backoff=fast,
            timeout=0.5,
        )
        healthy += _accept(ledger, producer, queue_name, [{"ms": 20}] * 20)
        supervise_until([*healthy, failing, hanging], "the first wave")
        [killer] = _accept(ledger, producer, queue_name, [{}], "exit", max_retries=0)
        supervise_until([killer], "the killer job to die")
        healthy += _accept(ledger, producer, queue_name, [{"ms": 20}] * 20)
        supervise_until(healthy, "the last wave")
        dead = {d.job_id: d for d in producer.dead_letters(queue_name, limit=100)}
    final = settle(client, queue_name, ledger.accepted)
    check = verify_ledger(
        client,
        queue_name,
        ledger,
        interrupted_pids=fleet.interrupted,
        interrupted_jobs=fleet.lease_losses(),
        final_states=final,
    )
    counts = ledger.counts()
    poison = {failing: "failed", hanging: "timeout", killer: "stalled"}
    figures.update(
        check.figures(),
        faults=f"3 poison jobs; {restarts} worker deaths caused by the os._exit job",
        runs={"fail": counts[failing], "hang": counts[hanging], "exit": counts[killer]},
        dlq_reasons={poison[j]: dead[j].reason for j in poison if j in dead},
        worker_deaths=restarts,
    )
    check.assert_exact()
    assert {j: d.reason for j, d in dead.items()} == poison
    assert check.dead == 3
    assert counts[failing] == FAIL_RETRIES + 1
    assert counts[hanging] == HANG_RETRIES + 1
    assert counts[killer] == MAX_STALLS + 1
    assert restarts == MAX_STALLS + 1  # each run of the killer took one worker with it
    assert all(final[j] == "completed" for j in healthy)


# Scenario 10.
SHUTDOWN_JOBS = 600
GRACE_MS = 300


def test_sigterm_to_every_worker_under_load_hands_back_and_loses_nothing(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """10. Graceful shutdown under load.

    Three workers (concurrency 8, grace 300 ms) run a mix of short jobs and 1-2 s jobs;
    all of them get SIGTERM at once. They must exit 0 leaving the PEL empty (unfinished
    jobs handed back, logged "handed_back"); after a restart every job completes, and a
    job ran twice only if it was handed back unfinished."""
    rng = _seed(figures)
    env = {"STREAMQ_SHUTDOWN_GRACE": str(GRACE_MS), "STREAMQ_LEASE": "30000"}
    fleet = fleet_factory(srv.url, queue_name, concurrency=8, env=env)
    payloads = [
        {"ms": rng.randint(1000, 2000)} if rng.random() < 0.1 else {"ms": rng.randint(0, 20)}
        for _ in range(SHUTDOWN_JOBS)
    ]
    with streamq.Producer(srv.url) as producer:
        _accept(ledger, producer, queue_name, payloads)
        first = [fleet.start() for _ in range(3)]
        wait_until(lambda: len(ledger.runs()) >= SHUTDOWN_JOBS // 4, 20, "a quarter of the runs")
        t_term = time.monotonic()
        for w in first:
            w.signal(signal.SIGTERM)
        codes = [w.wait(GRACE_MS / 1000 + 15) for w in first]
        shutdown_s = time.monotonic() - t_term
        pel_after_stop = pending_count(client, queue_name)
        handed = Counter(e["job_id"] for e in fleet.events("handed_back"))
        status = producer.status(queue_name)
        for _ in range(2):
            fleet.start()
        final = settle(client, queue_name, ledger.accepted)
    losses = fleet.lease_losses()
    check = verify_ledger(
        client, queue_name, ledger, interrupted_jobs=handed + losses, final_states=final
    )
    figures.update(
        check.figures(),
        faults="SIGTERM to 3 workers at once",
        exit_codes=codes,
        shutdown_s=round(shutdown_s, 2),
        handed_back=sum(handed.values()),
        fenced_in_live_workers=sum(losses.values()),
        pel_after_shutdown=pel_after_stop,
        waiting_after_shutdown=status.waiting,
    )
    check.assert_exact()
    assert codes == [0, 0, 0]
    assert pel_after_stop == 0  # everything unfinished was handed back, nothing left leased
    assert handed, "no job was running past the grace: the scenario did not happen"
    assert check.completed == SHUTDOWN_JOBS


# Scenario 12.


def test_a_running_entry_deleted_while_its_worker_is_dead_ends_in_the_dlq(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """12. A running job's entry deleted under a dead worker.

    A worker runs a 5 s job and is SIGKILLed; someone XDELs the job's stream entry while
    it is pending. Another worker's reclaim sees the deleted id (Redis 7 XAUTOCLAIM
    reports it): the job must end dead in the DLQ with that reason, never vanish."""
    env = {"STREAMQ_LEASE": "1000"}
    fleet = fleet_factory(srv.url, queue_name, concurrency=1, env=env)
    k = keys_of(queue_name)
    with streamq.Producer(srv.url) as producer:
        victim = fleet.start()
        [job] = _accept(ledger, producer, queue_name, [{"ms": 5000}])
        wait_until(lambda: ledger.counts()[job] == 1, 10, "the job to start")
        fleet.kill(victim)
        eid = client.hget(k.job(job), "x")
        assert eid is not None
        deleted = client.xdel(k.stream, eid)
        others = _accept(ledger, producer, queue_name, [{"ms": 1}] * 5)
        fleet.start()
        final = settle(client, queue_name, ledger.accepted, timeout=8)
        dead = [d for d in producer.dead_letters(queue_name) if d.job_id == job]
    check = verify_ledger(
        client, queue_name, ledger, interrupted_pids=fleet.interrupted, final_states=final
    )
    figures.update(
        check.figures(),
        faults="1 worker SIGKILLed, its pending entry XDELed",
        dlq_entries_for_job=len(dead),
        dlq_entries_total=int(client.xlen(k.dead)),
        job_state=final[job],
    )
    assert deleted == 1
    assert all(final[j] == "completed" for j in others)
    check.assert_exact()
    assert final[job] == "failed"
    assert len(dead) == 1 and dead[0].reason == "deleted" and "deleted" in dead[0].error
