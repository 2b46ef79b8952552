"""A durable enqueue on a cluster is checked on every master, not on the one node a
cluster client sends a keyless INFO to (its *default node*): the write goes to the master
of its queue's or partition's slot, and a master with AOF off there must refuse the
enqueue before anything is written, as a single server without AOF does."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
import redis

import streamq
from streamq.admin import Admin
from streamq.protocol.keys import QueueKeys
from streamq.protocol.partitions import partition_of
from streamq.server import EmbeddedCluster


def _has_waitaof(embedded: EmbeddedCluster) -> bool:
    server = embedded.nodes[0].server
    return server.is_valkey or server.version >= (7, 2)


def _keys_of(embedded: EmbeddedCluster, queue: str) -> list[bytes]:
    """Every key of ``queue`` (its partitions too) on every master."""
    found: list[bytes] = []
    for node in embedded.masters():
        with redis.Redis.from_url(node.url) as direct:
            found += direct.keys(f"*{queue}*")
    return found


def test_a_durable_enqueue_is_refused_when_the_master_taking_the_write_has_aof_off(
    cluster_factory: Callable[..., EmbeddedCluster], queue_name: str
) -> None:
    embedded = cluster_factory(profile="default")  # AOF everysec on every node
    if not _has_waitaof(embedded):
        # Redis 7.0: no master has WAITAOF; the refusal says how many, before any write.
        lack = r"3 of 3 masters \(127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+\) lack"
        with (
            streamq.Producer(embedded.url, durable=True) as producer,
            pytest.raises(streamq.ServerError, match=lack),
        ):
            producer.enqueue(queue_name, "noop", {})
        assert _keys_of(embedded, queue_name) == []
        return
    # Every master has AOF: durable enqueues go through, on a queue spread over all three.
    with Admin(url=embedded.url) as admin:
        admin.set_partitions(queue_name, 6)
    # One job per partition, by id (12 random ids left a master empty 2 % of the time).
    ids = {partition_of(f"job-{i}", 6): f"job-{i}" for i in range(200)}
    assert sorted(ids) == list(range(6))
    with streamq.Producer(embedded.url, durable=True, durable_timeout=10) as producer:
        assert all(producer.enqueue(queue_name, "noop", {}, job_id=j).created for j in ids.values())
    assert sum(1 for n in embedded.masters() if _keys_of_node(n.url, queue_name)) == 3
    with streamq.Producer(embedded.url, durable=True) as producer:
        client = producer._client  # whose default node a keyless INFO would go to
        default = client.get_default_node()
        # A queue whose master is not that node: a check of the default node alone passes.
        target = next(
            f"{queue_name}-{i}"
            for i in range(1000)
            if client.get_node_from_key(QueueKeys(f"{queue_name}-{i}").stream).port != default.port
        )
        owner = client.get_node_from_key(QueueKeys(target).stream).port
        master = next(n for n in embedded.masters() if n.port == owner)
        with redis.Redis.from_url(master.url) as direct:
            direct.config_set("appendonly", "no")
        # The master at fault is named by its address (ports alone repeat across hosts).
        refusal = (
            rf"needs AOF: 1 of 3 masters \({re.escape(master.host)}:{owner}\) have appendonly off"
        )
        with pytest.raises(streamq.ServerError, match=refusal):
            producer.enqueue(target, "noop", {})
        assert producer.enqueue(target, "noop", {}, durable=False).created  # plain still works

    async def refused_async() -> None:
        async with streamq.AsyncProducer(embedded.url, durable=True) as producer:
            with pytest.raises(streamq.ServerError, match=refusal):
                await producer.enqueue(f"{target}-async", "noop", {})

    asyncio.run(refused_async())
    # Nothing was written by the refused enqueues: the one plain job is all there is.
    with Admin(url=embedded.url) as admin:
        (info,) = admin.status([target])
    assert info.status.waiting == 1
    assert _keys_of(embedded, f"{target}-async") == []


def _keys_of_node(url: str, queue: str) -> list[bytes]:
    with redis.Redis.from_url(url) as direct:
        return direct.keys(f"*{queue}~*") + direct.keys(f"*{{{queue}}}*")


def _queue_off_the_default_node(client: redis.RedisCluster, prefix: str) -> tuple[str, int]:
    """A queue whose slot's master is not the client's default node, and that master's port."""
    default = client.get_default_node()
    for i in range(1000):
        port = client.get_node_from_key(QueueKeys(f"{prefix}-{i}").stream).port
        if port != default.port:
            return f"{prefix}-{i}", port
    raise AssertionError("every queue name hashed to the default node")


def test_a_durable_enqueue_to_a_master_whose_aof_was_turned_off_raises_durability_error(
    cluster_factory: Callable[..., EmbeddedCluster], queue_name: str
) -> None:
    """AOF turned off on one master after the producer's one-time check: the enqueue to a
    queue there is written, WAITAOF refuses, and the caller gets a DurabilityError with the
    job ids (sync and asyncio); the next durable enqueue is refused before writing."""
    embedded = cluster_factory(profile="default")
    if not _has_waitaof(embedded):
        pytest.skip("Redis 7.0 has no WAITAOF: durable enqueues are refused up front there")
    with streamq.Producer(embedded.url, durable=True) as producer:
        queue, owner = _queue_off_the_default_node(producer._client, queue_name)
        master = next(n for n in embedded.masters() if n.port == owner)
        assert producer.enqueue(queue, "noop", {"n": 0}).created  # checked here, AOF on
        direct = redis.Redis.from_url(master.url)
        direct.config_set("appendonly", "no")
        with pytest.raises(streamq.DurabilityError, match="appendonly") as refused:
            producer.enqueue(queue, "noop", {"n": 1}, job_id="c-1")
        assert refused.value.job_ids == ["c-1"]
        assert "written but are not confirmed durable" in str(refused.value)
        job = producer.get_job(queue, "c-1")
        assert job is not None and job.data == {"n": 1}
        named = rf"1 of 3 masters \({re.escape(master.host)}:{owner}\) have appendonly off"
        with pytest.raises(streamq.ServerError, match=named):
            producer.enqueue(queue, "noop", job_id="c-never")
        assert producer.get_job(queue, "c-never") is None

    async def refused_async() -> None:
        direct.config_set("appendonly", "yes")
        async with streamq.AsyncProducer(embedded.url, durable=True) as producer:
            assert (await producer.enqueue(queue, "noop", {"n": 2})).created
            direct.config_set("appendonly", "no")
            specs = [streamq.JobSpec("noop", {"n": n}, job_id=f"a-{n}") for n in (3, 4)]
            with pytest.raises(streamq.DurabilityError, match="appendonly") as refused:
                await producer.enqueue_many(queue, specs)
            assert refused.value.job_ids == ["a-3", "a-4"]
            assert all([await producer.get_job(queue, f"a-{n}") for n in (3, 4)])

    asyncio.run(refused_async())
    direct.close()
    with Admin(url=embedded.url) as admin:
        (info,) = admin.status([queue])
    assert info.status.waiting == 5  # n = 0..4: every written job is there, none lost


def test_a_durable_batch_over_partitions_is_all_written_and_names_every_unconfirmed_job(
    cluster_factory: Callable[..., EmbeddedCluster], queue_name: str
) -> None:
    """A batch over 6 partitions (3 masters), one master's AOF turned off after the check:
    the partitions there are refused WAITAOF, the others confirm; every job is written and
    the DurabilityError names exactly the jobs on that master."""
    embedded = cluster_factory(profile="default")
    if not _has_waitaof(embedded):
        pytest.skip("Redis 7.0 has no WAITAOF: durable enqueues are refused up front there")
    with Admin(url=embedded.url) as admin:
        admin.set_partitions(queue_name, 6)
    with streamq.Producer(embedded.url, durable=True) as producer:
        assert producer.enqueue(queue_name, "noop", {}).created  # checked here, AOF on
        client = producer._client
        master = next(n for n in embedded.masters() if n.port != client.get_default_node().port)
        with redis.Redis.from_url(master.url) as direct:
            direct.config_set("appendonly", "no")
        ids = [f"b-{n}" for n in range(24)]
        with pytest.raises(streamq.DurabilityError, match="appendonly") as refused:
            producer.enqueue_many(
                queue_name, [streamq.JobSpec("noop", {"n": i}, job_id=i) for i in ids]
            )
        assert all(producer.get_job(queue_name, i) is not None for i in ids)  # all written
    with redis.Redis.from_url(master.url) as direct:
        there = {k.decode().rsplit(":", 1)[1] for k in direct.keys(f"*{queue_name}*:job:b-*")}
    assert there and len(there) < len(ids)  # some partitions on that master, not all
    assert sorted(refused.value.job_ids) == sorted(there)
