"""A worker rides out a Redis outage: while its server is down for ~2 s it logs and backs
off; once the server is back on the same port it resumes, finishes what it was running and
processes new jobs. Nothing enqueued before the outage is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import redis
from _worker_support import await_until, capture_logs, pending_count, settings
from apps import app, runs

import streamq
from streamq.server import EmbeddedServer
from streamq.worker.runner import Worker

OUTAGE_S = 2.0


def test_a_worker_resumes_after_its_server_restarts_and_loses_nothing(
    server_factory: Callable[..., EmbeddedServer], queue_name: str, ledger: Path
) -> None:
    srv = server_factory()
    producer = streamq.Producer(srv.url)
    client = redis.Redis.from_url(srv.url)
    before = [
        r.job_id
        for r in producer.enqueue_many(queue_name, [streamq.JobSpec("sleep", {"ms": 150})] * 12)
    ]
    after: list[str] = []
    worker = Worker(app, [queue_name], settings=settings(srv.url), concurrency=2)

    def all_done() -> bool:
        try:
            st = producer.status(queue_name)
        except streamq.ConnectionFailedError:
            return False
        return st.completed_total == 24 and pending_count(client, queue_name) == 0

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        try:
            # Stop the server while jobs run: their completions must wait for it.
            await await_until(lambda: len(runs(ledger)) >= 4, 10, what="a few jobs")
            await asyncio.to_thread(srv.stop)
            await asyncio.sleep(OUTAGE_S)  # the outage itself, not a synchronisation
            await asyncio.to_thread(srv.restart)
            after.extend(
                r.job_id
                for r in producer.enqueue_many(
                    queue_name, [streamq.JobSpec("noop", i) for i in range(12)]
                )
            )
            await await_until(all_done, 20, what="every job to complete")
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)

    try:
        with capture_logs() as logs:
            asyncio.run(main())
        count = runs(ledger)
        assert set(count) == set(before) | set(after)
        # Nothing was reclaimed (the lease is 30 s): each job ran exactly once, and the
        # completions that failed during the outage were recorded after it.
        assert all(n == 1 for n in count.values()), count
        for jid in before + after:
            job = producer.get_job(queue_name, jid)
            assert job is not None and job.state is streamq.JobState.COMPLETED, jid
        assert logs.named("redis_unavailable")
        assert logs.named("fenced") == [] and logs.named("dead") == []
        assert worker.processed == 24
    finally:
        producer.close()
        client.close()
