"""Flow control through crashes: a SIGKILLed worker's concurrency slot comes back after
the lease (its job is held again, never run twice at once), a frozen worker's late
completion cannot free a slot twice, and a flow job that kills every worker is dead after
``max_stalls``. Worker subprocesses on a real server."""

from __future__ import annotations

import itertools
import signal

import orjson
import redis
from _support import wait_until
from _worker_support import Spawner
from apps import read_ledger, runs

import streamq
from streamq.protocol.keys import QueueKeys


def _one_at_a_time(client: redis.Redis, queue: str, pattern: str) -> None:
    rule = {"pattern": pattern, "shared": False, "rate": None, "period_ms": None}
    rule["concurrency"] = 1
    client.hset(QueueKeys(queue).limits, f"each|{pattern}", orjson.dumps(rule))


def test_a_killed_workers_slot_comes_back_after_the_lease_and_never_doubles(
    spawner: Spawner, producer: streamq.Producer, client: redis.Redis, queue_name: str
) -> None:
    _one_at_a_time(client, queue_name, "refresh:*")
    specs = [streamq.JobSpec("sleep", {"ms": 300}, key="refresh:a") for _ in range(4)]
    ids = [r.job_id for r in producer.enqueue_many(queue_name, specs)]
    a = spawner.start(queue_name, concurrency=5, STREAMQ_LEASE="1000")
    wait_until(lambda: read_ledger(spawner.ledger), 15, what="the first run")
    a.kill()
    keys = QueueKeys(queue_name)
    assert client.hget(keys.inflight, "refresh:a") == b"1"  # the dead worker's slot
    b = spawner.start(queue_name, concurrency=5, burst=True, STREAMQ_LEASE="1000")
    assert b.wait(30) == 0
    for jid in ids:
        job = producer.get_job(queue_name, jid)
        assert job is not None and job.state == "completed", job
    count = runs(spawner.ledger)
    assert count[ids[0]] == 2 and all(count[j] == 1 for j in ids[1:])
    # After the kill, one run at a time: each starts after the previous one's 300 ms.
    starts = [t for _, _, pid, t in read_ledger(spawner.ledger) if pid == b.pid]
    assert len(starts) == 4
    assert all(later - earlier >= 0.29 for earlier, later in itertools.pairwise(starts))
    assert not client.hgetall(keys.inflight)
    assert client.xlen(keys.kstream) == 0


def test_a_frozen_workers_late_completion_frees_no_second_slot(
    spawner: Spawner, producer: streamq.Producer, client: redis.Redis, queue_name: str
) -> None:
    _one_at_a_time(client, queue_name, "k")
    specs = [streamq.JobSpec("sleep", {"ms": 1200}, key="k") for _ in range(3)]
    ids = [r.job_id for r in producer.enqueue_many(queue_name, specs)]
    a = spawner.start(queue_name, concurrency=5, STREAMQ_LEASE="600")
    wait_until(lambda: read_ledger(spawner.ledger), 15, what="the first run")
    a.signal(signal.SIGSTOP)
    b = spawner.start(queue_name, concurrency=5, burst=True, STREAMQ_LEASE="600")
    # b reclaims job 1 from the frozen a, runs it, then job 2; a wakes during job 2 and
    # tries to complete job 1: fenced, so job 3 must still wait for job 2.
    wait_until(lambda: runs(spawner.ledger)[ids[1]] == 1, 20, what="job 2 running")
    a.signal(signal.SIGCONT)
    assert b.wait(30) == 0
    a.signal(signal.SIGTERM)
    assert a.wait(15) == 0
    # The last start of each job (job 1 ran twice); a may take job 3 once it wakes.
    by_job = {jid: t for jid, _, _, t in read_ledger(spawner.ledger)}
    assert by_job[ids[2]] - by_job[ids[1]] >= 1.19
    assert any(e.get("job_id") == ids[0] for e in a.events("fenced"))
    assert not client.hgetall(QueueKeys(queue_name).inflight)


def test_a_flow_job_that_kills_every_worker_is_dead_after_max_stalls(
    spawner: Spawner, producer: streamq.Producer, client: redis.Redis, queue_name: str
) -> None:
    _one_at_a_time(client, queue_name, "k")
    job_id = producer.enqueue(queue_name, "exit", key="k").job_id
    ok = producer.enqueue(queue_name, "noop", "after", key="k").job_id
    exits = []
    for _ in range(6):
        w = spawner.start(
            queue_name, concurrency=1, burst=True, STREAMQ_LEASE="500", STREAMQ_MAX_STALLS="1"
        )
        rc = w.wait(15)
        exits.append(rc)
        if rc == 0:
            break
    assert exits == [1, 1, 0]
    assert runs(spawner.ledger)[job_id] == 2
    job = producer.get_job(queue_name, job_id)
    assert job is not None and job.state == "failed" and job.dead_reason == "stalled"
    done = producer.get_job(queue_name, ok)
    assert done is not None and done.state == "completed"
    assert not client.hgetall(QueueKeys(queue_name).inflight)
