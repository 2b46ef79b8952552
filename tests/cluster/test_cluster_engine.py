"""The engine's behaviours that matter, on the cluster with a partitioned queue (6
partitions over 3 masters): dedup, delays, retries to the DLQ, reclaim after SIGKILL,
graceful shutdown, schedules exactly once and status counts. Worker subprocesses on
``redis+cluster://`` (tests.apps handlers), an outside ledger of runs."""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

import streamq
from streamq import JobSpec
from streamq.admin import Admin
from streamq.server import EmbeddedCluster
from tests._support import wait_until
from tests._worker_support import Spawner
from tests.apps import read_ledger, runs


@pytest.fixture
def spawner(cluster: EmbeddedCluster, tmp_path: Path) -> Iterator[Spawner]:
    s = Spawner(cluster.url, tmp_path, tmp_path / "ledger")
    yield s
    s.close()


@pytest.fixture
def queue(cluster: EmbeddedCluster) -> str:
    """A fresh queue in 6 partitions."""
    name = f"eng-{secrets.token_hex(3)}"
    with Admin(cluster.url) as admin:
        admin.set_partitions(name, 6)
    return name


def test_dedup_delays_retries_and_counts_on_a_partitioned_queue(
    cluster: EmbeddedCluster, queue: str, spawner: Spawner
) -> None:
    with streamq.Producer(cluster.url) as p:
        p.enqueue(queue, "noop")  # reads the partition count (this one goes home)
        ids = [r.job_id for r in p.enqueue_many(queue, [JobSpec("noop")] * 30)]
        custom = [p.enqueue(queue, "noop", job_id=f"order-{i}") for i in range(10)]
        again = [p.enqueue(queue, "noop", job_id=f"order-{i}") for i in range(10)]
        assert all(r.created for r in custom) and not any(r.created for r in again)
        later = p.enqueue(queue, "noop", delay=1).job_id
        dead = p.enqueue(queue, "fail", "x", max_retries=1, backoff=streamq.Backoff.fixed(100))
        assert p.status(queue).waiting == 42 and p.status(queue).delayed == 1
        w = spawner.start(queue, burst=True)
        assert w.wait(60) == 0, w.output()[-2000:]
        for jid in [*ids, *(r.job_id for r in custom), later]:
            job = p.get_job(queue, jid)
            assert job is not None and job.state == "completed", jid
        failed = p.get_job(queue, dead.job_id)
        assert failed is not None and failed.state == "failed" and failed.attempt == 2
        assert [d.job_id for d in p.dead_letters(queue)] == [dead.job_id]
        st = p.status(queue)
        assert (st.waiting, st.active, st.delayed, st.dead) == (0, 0, 0, 1)
        assert (st.completed_total, st.failed_total, st.retried_total) == (42, 1, 1)
    count = runs(spawner.ledger)
    assert all(count[j] == 1 for j in ids)


def test_a_killed_workers_jobs_are_reclaimed_and_a_stopped_one_hands_back(
    cluster: EmbeddedCluster, queue: str, spawner: Spawner
) -> None:
    with streamq.Producer(cluster.url) as p:
        p.enqueue(queue, "noop")
        ids = [r.job_id for r in p.enqueue_many(queue, [JobSpec("sleep", {"ms": 300})] * 24)]
        a = spawner.start(queue, concurrency=6, STREAMQ_LEASE="1000")
        wait_until(lambda: len(read_ledger(spawner.ledger)) >= 6, 20, what="a's first runs")
        a.kill()
        b = spawner.start(queue, concurrency=6, STREAMQ_LEASE="1000")
        wait_until(lambda: len(read_ledger(spawner.ledger)) >= 14, 20, what="b running")
        b.signal(signal.SIGTERM)  # graceful: running jobs finish or are handed back
        assert b.wait(30) == 0
        c = spawner.start(queue, burst=True, STREAMQ_LEASE="1000")
        assert c.wait(60) == 0, c.output()[-2000:]
        for jid in ids:
            job = p.get_job(queue, jid)
            assert job is not None and job.state == "completed", jid
        assert p.status(queue).active == 0
    # At-least-once: only jobs running at the kill ran twice.
    count = runs(spawner.ledger)
    assert set(ids) <= set(count) and sum(count[j] - 1 for j in ids) <= 6


def test_a_schedule_on_a_partitioned_queue_fires_each_tick_once_with_two_workers(
    cluster: EmbeddedCluster, queue: str, spawner: Spawner
) -> None:
    with streamq.Producer(cluster.url) as p:
        p.add_schedule(
            queue, "tick", "noop", every=timedelta(seconds=1), first_at=datetime.now(UTC)
        )
        workers = [spawner.start(queue) for _ in range(2)]
        wait_until(lambda: len(read_ledger(spawner.ledger)) >= 3, 20, what="three ticks")
        p.remove_schedule(queue, "tick")
        for w in workers:
            w.signal(signal.SIGTERM)
        for w in workers:
            assert w.wait(30) == 0
    count = runs(spawner.ledger)
    ticks = [j for j in count if j.startswith("rep:tick:")]
    assert len(ticks) >= 3 and all(count[j] == 1 for j in ticks), count


def test_a_workers_reads_go_to_each_streams_master_without_asking_another_node(
    cluster: EmbeddedCluster, queue: str, spawner: Spawner
) -> None:
    # XREADGROUP's keys are "movable": left to redis-py, each read first asks the client's
    # default node for them (COMMAND GETKEYS), a round trip per read and a read refused
    # while that node is down. Only this test's traffic runs meanwhile (no parallel tests).
    masters = [redis.Redis.from_url(n.url) for n in cluster.nodes if n.role() == "master"]
    with streamq.Producer(cluster.url) as p:
        p.enqueue_many(queue, [JobSpec("noop")] * 300)
        for node in masters:
            node.config_resetstat()
        w = spawner.start(queue, burst=True)
        assert w.wait(60) == 0, w.output()[-2000:]
        assert p.status(queue).completed_total == 300
    stats = [node.info("commandstats") for node in masters]
    for node in masters:
        node.close()
    reads = sum(s.get("cmdstat_xreadgroup", {}).get("calls", 0) for s in stats)
    getkeys = sum(s.get("cmdstat_command|getkeys", {}).get("calls", 0) for s in stats)
    assert reads >= 6, stats  # each partition's stream was read
    assert getkeys == 0, f"{getkeys} COMMAND GETKEYS for {reads} reads"


def test_one_worker_serves_every_partition_in_turn_none_starved_none_hoarded(
    cluster: EmbeddedCluster, queue: str, spawner: Spawner
) -> None:
    # 6 partitions over 3 masters, 240 jobs (~40 a partition) of 20 ms each, one worker of
    # concurrency 6: it reads the partitions' slots in turn. In the order the jobs started,
    # every stretch of 60 starts (a quarter of the queue) holds jobs of every partition:
    # none waits for the others to drain first, and none takes many times its turn.
    from streamq.protocol.partitions import partition_of

    # 40 ids per partition: random ids left a partition under 25 in 2 % of the runs.
    balanced: dict[int, list[str]] = {n: [] for n in range(6)}
    for i in range(2000):
        bucket = balanced[partition_of(f"fair-{i}", 6)]
        if len(bucket) < 40:
            bucket.append(f"fair-{i}")
    with streamq.Producer(cluster.url) as p:
        jobs = [JobSpec("sleep", {"ms": 20}, job_id=j) for b in balanced.values() for j in b]
        ids = [r.job_id for r in p.enqueue_many(queue, jobs)]
        per = [sum(1 for j in ids if partition_of(j, 6) == n) for n in range(6)]
        assert per == [40] * 6, per
        w = spawner.start(queue, concurrency=6, burst=True)
        assert w.wait(90) == 0, w.output()[-2000:]
    order = [job_id for job_id, *_ in sorted(read_ledger(spawner.ledger), key=lambda r: r[3])]
    assert sorted(order) == sorted(ids)
    for start in range(0, 180, 60):
        stretch = order[start : start + 60]
        counts = [sum(1 for j in stretch if partition_of(j, 6) == n) for n in range(6)]
        expected = [60 * c / 240 for c in per]
        later = [sum(1 for j in order[start + 60 :] if partition_of(j, 6) == n) for n in range(6)]
        # Not starved: a partition with jobs still to start after the stretch started some
        # in it. Not hoarded: none takes more than 3x its share (a read may fill all free
        # slots from one partition; the turn moves on with every read).
        starved = [n for n in range(6) if counts[n] == 0 and later[n] > 0]
        assert not starved, (start, counts, later)
        assert all(c <= 3 * e for c, e in zip(counts, expected, strict=True)), (
            start,
            counts,
            expected,
        )
