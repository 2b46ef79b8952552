"""Guarantee 2, durable: with the shipped configuration a clean Redis restart loses no job,
and the ``strict`` profile loses nothing acknowledged even when Redis is killed.

Each test has a server of its own (``server_factory``), stopped and restarted on the same
data directory and port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import redis
from _worker_support import pending_count, run_burst, settings
from apps import app, runs

import streamq
from streamq.server import EmbeddedServer
from streamq.worker.runner import Worker


def test_a_clean_restart_keeps_every_waiting_job_and_a_worker_then_runs_them_all(
    server_factory: Callable[..., EmbeddedServer], queue_name: str, ledger: Path
) -> None:
    srv = server_factory()
    with streamq.Producer(srv.url) as p:
        ids = [
            r.job_id
            for r in p.enqueue_many(queue_name, [streamq.JobSpec("noop", i) for i in range(1000)])
        ]
        delayed = p.enqueue(queue_name, "noop", "later", delay=0.5).job_id
    port = srv.port

    srv.stop()  # SHUTDOWN: a clean stop
    assert not srv.running
    srv.restart()
    assert srv.port == port

    with streamq.Producer(srv.url) as p:
        st = p.status(queue_name)
        assert (st.waiting, st.active, st.delayed) == (1000, 0, 1)
        job = p.get_job(queue_name, ids[500])
        assert job is not None and job.state is streamq.JobState.WAITING and job.data == 500
        run_burst(Worker(app, [queue_name], settings=settings(srv.url), concurrency=50), 30)
        st = p.status(queue_name)
        assert (st.waiting, st.active, st.delayed, st.completed_total) == (0, 0, 0, 1001)
    assert runs(ledger) == dict.fromkeys([*ids, delayed], 1)


def test_the_strict_profile_keeps_every_acknowledged_job_when_redis_is_killed(
    server_factory: Callable[..., EmbeddedServer], queue_name: str, ledger: Path
) -> None:
    srv = server_factory(profile="strict")
    with streamq.Producer(srv.url) as p:
        ids = [p.enqueue(queue_name, "noop", i).job_id for i in range(200)]
    srv.kill()  # SIGKILL right after the last acknowledgement: no chance to flush
    srv.restart()
    with streamq.Producer(srv.url) as p:
        assert p.status(queue_name).waiting == 200
        run_burst(Worker(app, [queue_name], settings=settings(srv.url), concurrency=20))
        assert p.status(queue_name).completed_total == 200
    assert runs(ledger) == dict.fromkeys(ids, 1)


def test_running_jobs_survive_a_restart_and_are_reclaimed_after_it(
    server_factory: Callable[..., EmbeddedServer], queue_name: str, ledger: Path
) -> None:
    # The group and its PEL are persisted too: jobs a worker held when Redis restarted
    # (and that worker died meanwhile) are still owed, and get reclaimed.
    srv = server_factory()
    with streamq.Producer(srv.url) as p:
        ids = [p.enqueue(queue_name, "noop", i).job_id for i in range(5)]
    client = redis.Redis.from_url(srv.url)
    try:
        stream = f"sq:{{{queue_name}}}:stream"
        client.xreadgroup("streamq", "died-before-restart", {stream: ">"}, count=5)
        assert pending_count(client, queue_name) == 5
    finally:
        client.close()
    srv.restart()
    client = redis.Redis.from_url(srv.url)
    try:
        assert pending_count(client, queue_name) == 5
        s = settings(srv.url, lease_ms=200)
        asyncio.run(asyncio.wait_for(Worker(app, [queue_name], settings=s).run(burst=True), 15))
        assert pending_count(client, queue_name) == 0
    finally:
        client.close()
    assert runs(ledger) == dict.fromkeys(ids, 1)
