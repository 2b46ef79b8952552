"""Guarantee 1, at-least-once across worker crashes: a SIGKILLed worker's jobs are reclaimed
by another worker once their lease expires; a job that kills every worker that runs it is
dead after ``max_stalls`` reclaims instead of looping forever.

Subprocess workers on a fresh redis7 server (``server_factory``)."""

from __future__ import annotations

import redis
from _worker_support import Spawner, entry_job_id, pel, pending_count, wait_until
from apps import read_ledger, runs

import streamq


def test_jobs_of_a_killed_worker_are_reclaimed_and_none_is_lost(
    spawner: Spawner, producer: streamq.Producer, client: redis.Redis, queue_name: str
) -> None:
    specs = [streamq.JobSpec("sleep", {"ms": 200}) for _ in range(50)]
    ids = [r.job_id for r in producer.enqueue_many(queue_name, specs)]
    a = spawner.start(queue_name, concurrency=5)  # default lease: 30 s
    wait_until(lambda: len(read_ledger(spawner.ledger)) >= 12, 15, what="a dozen runs")
    a.kill()

    held = pel(client, queue_name)
    assert held, "the killed worker held nothing: the scenario did not happen"
    assert len(held) <= 5  # never more than its concurrency, even at the moment of death
    assert {e["consumer"] for e in held} == {a.consumer()}
    held_ids = {entry_job_id(client, queue_name, e["entry_id"]) for e in held}
    started_by_a = set(runs(spawner.ledger))

    b = spawner.start(queue_name, concurrency=5, burst=True, STREAMQ_LEASE="1000")
    assert b.wait(30) == 0

    status = producer.status(queue_name)
    assert status.completed_total == 50 and status.completed == 50
    assert (status.waiting, status.active, status.delayed, status.dead) == (0, 0, 0, 0)
    assert pending_count(client, queue_name) == 0
    assert client.xlen(f"sq:{{{queue_name}}}:stream") == 0
    for jid in ids:
        job = producer.get_job(queue_name, jid)
        assert job is not None and job.state is streamq.JobState.COMPLETED, jid
    # A job ran twice only if the dead worker held it mid-run; every other job ran once.
    count = runs(spawner.ledger)
    assert set(count) == set(ids)
    for jid in ids:
        expected = 2 if jid in held_ids and jid in started_by_a else 1
        assert count[jid] == expected, (jid, count[jid])
    assert len(b.events("reclaimed")) == len(held)
    assert {e["job_id"] for e in b.events("reclaimed")} == held_ids


def test_a_job_that_kills_its_worker_every_time_is_dead_after_max_stalls(
    spawner: Spawner, producer: streamq.Producer, client: redis.Redis, queue_name: str
) -> None:
    job_id = producer.enqueue(queue_name, "exit").job_id
    ok = producer.enqueue(queue_name, "noop", "after").job_id
    exits = []
    for _ in range(6):  # bounded: the engine must settle it well before this
        w = spawner.start(
            queue_name,
            concurrency=1,
            burst=True,
            STREAMQ_LEASE="500",
            STREAMQ_MAX_STALLS="1",
        )
        rc = w.wait(15)
        exits.append(rc)
        if rc == 0:
            break
    # The first worker died running it, the reclaiming second one too (stall 1 is within
    # max_stalls=1); the third finds it stalled twice and sends it to the DLQ unrun.
    assert exits == [1, 1, 0]
    assert runs(spawner.ledger)[job_id] == 2
    assert [e["job_id"] for e in w.events("dead")] == [job_id]
    job = producer.get_job(queue_name, job_id)
    assert job is not None and job.state is streamq.JobState.FAILED
    assert job.dead_reason == "stalled"
    assert job.error is not None and "stalled 2 times" in job.error
    dead = producer.dead_letters(queue_name)
    assert [(d.job_id, d.reason) for d in dead] == [(job_id, "stalled")]
    assert pending_count(client, queue_name) == 0
    done = producer.get_job(queue_name, ok)
    assert done is not None and done.state is streamq.JobState.COMPLETED
