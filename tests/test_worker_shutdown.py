"""Guarantee 7, lossless shutdown: on SIGTERM a worker stops fetching, lets running jobs
finish within the grace period, hands the rest back at once, and exits 0.

Subprocess workers on a fresh redis7 server (``server_factory``)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis
from _support import closed_port
from _worker_support import Spawner, job_hash, pel, wait_until
from apps import read_ledger, runs

import streamq


@pytest.mark.parametrize("name", ["sleep", "sync_sleep"])
def test_sigterm_lets_the_running_job_finish_stops_fetching_and_exits_0(
    name: str,
    spawner: Spawner,
    producer: streamq.Producer,
    client: redis.Redis,
    queue_name: str,
) -> None:
    first = producer.enqueue(queue_name, name, {"ms": 800}).job_id
    later = [producer.enqueue(queue_name, "noop", i).job_id for i in range(3)]
    w = spawner.start(queue_name, concurrency=1, STREAMQ_SHUTDOWN_GRACE="10000")
    wait_until(lambda: runs(spawner.ledger)[first], 10, what="the first job to start")

    w.signal(signal.SIGTERM)
    assert w.wait(10) == 0

    job = producer.get_job(queue_name, first)
    assert job is not None and job.state is streamq.JobState.COMPLETED
    assert job.result == "slept"
    # It stopped fetching: the later jobs were never started and still wait, unclaimed.
    assert set(runs(spawner.ledger)) == {first}
    for jid in later:
        j = producer.get_job(queue_name, jid)
        assert j is not None and j.state is streamq.JobState.WAITING
    assert pel(client, queue_name) == []
    assert w.events("handed_back") == []
    stopped = w.events("worker_stopped")
    assert stopped and stopped[0]["processed"] == 1 and stopped[0]["handed_back"] == 0
    # It left the group's consumer list (it holds nothing).
    assert client.xinfo_consumers(f"sq:{{{queue_name}}}:stream", "streamq") == []


@pytest.mark.parametrize("name", ["slow_first", "sync_slow_first"])
def test_a_job_longer_than_the_grace_is_handed_back_and_another_worker_starts_it_at_once(
    name: str,
    spawner: Spawner,
    producer: streamq.Producer,
    client: redis.Redis,
    queue_name: str,
) -> None:
    job_id = producer.enqueue(queue_name, name, {"ms": 5000}).job_id
    a = spawner.start(queue_name, concurrency=2, STREAMQ_SHUTDOWN_GRACE="300")
    wait_until(lambda: runs(spawner.ledger)[job_id], 10, what="the job to start")
    entry = pel(client, queue_name)
    assert [e["consumer"] for e in entry] == [a.consumer()]

    t0 = time.monotonic()
    a.signal(signal.SIGTERM)
    assert a.wait(4) == 0  # grace 0.3 s: no waiting for the 5 s job (sync ones included)
    assert time.monotonic() - t0 < 4
    assert [e["job_id"] for e in a.events("handed_back")] == [job_id]
    # Handed back atomically: a fresh entry, in nobody's PEL, the old one gone.
    assert pel(client, queue_name) == []
    rec = job_hash(client, queue_name, job_id)
    assert rec["s"] == "waiting" and rec["x"] != entry[0]["entry_id"]
    # The interrupted attempt is not counted against the job (no 'a' field reads as 0).
    assert rec.get("a", "0") == "0"

    # A LONG lease: the new worker cannot have it through lease expiry, only by hand-back.
    t1 = time.monotonic()
    b = spawner.start(queue_name, burst=True, STREAMQ_LEASE="60000")
    assert b.wait(10) == 0
    assert time.monotonic() - t1 < 8
    job = producer.get_job(queue_name, job_id)
    assert job is not None and job.state is streamq.JobState.COMPLETED
    assert job.result == "fast" and job.attempt == 1
    assert runs(spawner.ledger)[job_id] == 2
    assert b.events("reclaimed") == []
    pids = [pid for jid, _, pid, _ in read_ledger(spawner.ledger) if jid == job_id]
    assert pids == [a.pid, b.pid]


def test_a_second_signal_skips_the_rest_of_the_grace(
    spawner: Spawner, producer: streamq.Producer, client: redis.Redis, queue_name: str
) -> None:
    job_id = producer.enqueue(queue_name, "slow_first", {"ms": 20_000}).job_id
    w = spawner.start(queue_name, STREAMQ_SHUTDOWN_GRACE="60000")
    wait_until(lambda: runs(spawner.ledger)[job_id], 10, what="the job to start")
    w.signal(signal.SIGTERM)
    wait_until(lambda: w.events("draining"), 5, what="draining")
    w.signal(signal.SIGINT)
    assert w.wait(5) == 0
    assert [e["job_id"] for e in w.events("handed_back")] == [job_id]
    assert pel(client, queue_name) == []
    assert job_hash(client, queue_name, job_id)["s"] == "waiting"


def test_sigterm_stops_a_worker_still_waiting_for_redis_at_startup(
    tmp_path: Path, queue_name: str
) -> None:
    port = closed_port()
    sp = Spawner(f"redis://127.0.0.1:{port}/0", tmp_path, tmp_path / "ledger")
    try:
        w = sp.start(queue_name)
        wait_until(lambda: w.events("redis_unavailable"), 10, what="a failed startup")
        w.signal(signal.SIGTERM)
        assert w.wait(5) == 0
        assert w.events("worker_stopped")
    finally:
        sp.close()
