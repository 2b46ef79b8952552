"""A partitioned queue with one master down (its partitions unreachable, the others up:
``cluster-require-full-coverage no``): a worker runs what the partitions on the live
masters deliver at once. A read that met the dead master after other partitions had
delivered used to drop their entries: each then waited in the worker's PEL for a reclaim
after the lease, and counted as a stall (chaos scenario 14 saw 8 in one run)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import redis
from redis.cluster import RedisCluster

import streamq
from streamq.admin import Admin
from streamq.protocol.keys import QueueKeys
from streamq.protocol.partitions import partition_keys, partition_of, partition_tags
from streamq.server import EmbeddedCluster
from tests._support import wait_until
from tests._worker_support import Spawner

PARTITIONS = 6


def test_a_worker_runs_what_the_live_partitions_deliver_while_a_master_is_down(
    cluster_factory: Callable[..., EmbeddedCluster], tmp_path: Path
) -> None:
    embedded = cluster_factory(replicas_per_master=0, node_timeout_ms=500)
    for node in embedded.nodes:
        with redis.Redis.from_url(node.url) as direct:
            direct.config_set("cluster-require-full-coverage", "no")
    queue = f"t-po-{secrets.token_hex(3)}"
    home = QueueKeys(queue)
    with Admin(embedded.url) as admin:
        meta = admin.set_partitions(queue, PARTITIONS)
    lanes = partition_keys(home, meta)
    live = embedded.nodes[0]
    with RedisCluster(host=live.host, port=live.port, password=embedded.password) as probe:
        owner = {k.tag: probe.get_node_from_key(k.stream).port for k in lanes}
    # The victim: a master without the home partition (the worker's pause flags and
    # partition count stay readable), owning at least one partition.
    victim = next(n for n in embedded.masters() if n.port in set(owner.values()) - {owner[""]})
    tags = partition_tags(queue, PARTITIONS)
    alive = {i for i, t in enumerate(tags) if owner[t] != victim.port}
    spawner = Spawner(embedded.url, tmp_path, tmp_path / "ledger")
    try:
        # A lease far longer than the test: an entry dropped after delivery never runs.
        worker = spawner.start(queue, concurrency=8, STREAMQ_LEASE="120000")
        worker.consumer()
        embedded.kill(victim)
        ids: list[str] = []
        with streamq.Producer(embedded.url) as producer:
            n = 0
            while len(ids) < 200:
                job_id = f"po-{n}"
                n += 1
                if partition_of(job_id, PARTITIONS) in alive:
                    producer.enqueue(queue, "noop", {}, job_id=job_id)
                    ids.append(job_id)

            def done() -> bool:
                jobs = [producer.get_job(queue, j) for j in ids]
                return all(j is not None and j.state is streamq.JobState.COMPLETED for j in jobs)

            wait_until(done, 30, "every job of the live partitions to complete")
        assert worker.alive
        assert not worker.events("reclaimed")
    finally:
        spawner.close()
