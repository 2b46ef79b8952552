"""A worker's startup check of the server reads every master of a cluster, not only the
node a cluster client sends a keyless INFO to (its *default node*): each master holds
queues of its own, and one that may evict jobs or has no persistence is named in the
warning."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis

import streamq
from streamq.server import EmbeddedCluster
from streamq.worker.checks import ServerInfo
from streamq.worker.runner import Worker
from tests._worker_support import LogCapture, capture_logs, settings
from tests.apps import app


def test_the_worker_names_the_masters_that_may_evict_or_lose_jobs_beside_its_default_node(
    cluster_factory: Callable[..., EmbeddedCluster], queue_name: str
) -> None:
    embedded = cluster_factory(profile="default")  # AOF on, noeviction on every node
    with streamq.Producer(embedded.url) as producer:
        job = producer.enqueue(queue_name, "noop", {}).job_id

    async def scenario() -> tuple[ServerInfo, LogCapture, str, list[str]]:
        worker = Worker(app, [queue_name], settings=settings(embedded.url))
        client = worker.driver.client
        await client.initialize()
        default = client.get_default_node()  # where a keyless INFO would go
        others = [m for m in embedded.masters() if m.port != default.port]
        assert len(others) == 2
        names = [f"{m.host}:{m.port}" for m in others]
        with redis.Redis.from_url(others[0].url) as direct:
            direct.config_set("maxmemory-policy", "allkeys-lru")
        with redis.Redis.from_url(others[1].url) as direct:
            direct.config_set("appendonly", "no")
            direct.config_set("save", "")
        with capture_logs() as logs:
            await asyncio.wait_for(worker.run(burst=True), 30)
        assert worker.server is not None
        return worker.server, logs, default.name, names

    server, logs, default, (evicting, volatile) = asyncio.run(scenario())
    warnings = [e["warning"] for e in logs.named("server_warning")]
    assert len(warnings) == 2, warnings
    evict = f"'allkeys-lru', not 'noeviction' on 1 of 3 masters ({evicting})"
    assert any(evict in w for w in warnings), warnings
    lost = f"persistence is off on 1 of 3 masters ({volatile})"
    assert any(lost in w for w in warnings), warnings
    assert not any(default in w for w in warnings), (default, warnings)
    assert len(server.masters) == 3 and default in server.masters
    assert server.maxmemory_policy == "allkeys-lru" and not server.aof_enabled
    assert server.rdb_enabled is False
    # Warnings, not refusals: the worker started and ran the job.
    assert logs.named("worker_started")
    with streamq.Producer(embedded.url) as producer:
        done = producer.get_job(queue_name, job)
    assert done is not None and done.state == "completed"
