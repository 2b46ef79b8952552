"""streamq connects to Redis Cluster by settings alone: ``redis+cluster://`` (or
``STREAMQ_CLUSTER=1``) URLs parse, or fail naming the wrong part and quoting none of the
URL; producers, admins and a worker process run queues whose slots live on different
masters; a wrong password or an unreachable cluster is streamq's own error."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

import streamq
from streamq import ConfigError, RedisSettings, Settings
from streamq.admin import Admin
from streamq.errors import AuthenticationFailedError, ConnectionFailedError
from streamq.producer import JobSpec
from streamq.protocol.keys import QueueKeys
from streamq.protocol.partitions import partition_keys
from streamq.server import EmbeddedCluster, EmbeddedNode
from streamq.testing import QueueTester
from tests._worker_support import Spawner

SECRET = "Top-Secret-1"

# ------------------------------------------------------------------ URL forms (no server)


@pytest.mark.parametrize(
    ("url", "part"),
    [
        (f"redis+cluster://:{SECRET}@", "no host given"),
        (f"redis+cluster://:{SECRET}@h1:7000,,h3:7002", "host 2 of 3 has no host name"),
        (f"redis+cluster://:{SECRET}@h1:7000,h2:port", "port of host 2 of 2"),
        (f"redis+cluster://:{SECRET}@h1:70000", "port of host 1 of 1"),
        (f"redis+cluster://:{SECRET}@h1:7000/2", "single database"),
        (f"redis+cluster://:{SECRET}@h1:7000?read_from_replicas=1", "not supported"),
        # An unescaped "/" in the password: every later part shifts; none of it is quoted.
        (f"redis+cluster://:{SECRET[:3]}/{SECRET[3:]}@h1:7000", "has no host name"),
        (f"redis+sentinel://:{SECRET}@s1:26379", "service after the hosts"),
        (f"redis+sentinel://:{SECRET}@s1:26379/main/zero", "database after the service"),
        (f"redis+sentinel://:{SECRET}@s1/main/0/x", "more parts"),
        (f"redis+sentinel://:{SECRET}@s1/main?nope=1", "not supported by sentinel URLs"),
        (f"rediss+sentinel://:{SECRET}@[::1/main", "malformed [IPv6]"),
    ],
)
def test_a_bad_cluster_or_sentinel_url_names_the_part_and_never_echoes_it(
    url: str, part: str
) -> None:
    with pytest.raises(ConfigError, match=r"^REDIS_URL") as info:
        Settings.from_env({"REDIS_URL": url})
    message = str(info.value)
    assert part in message
    assert SECRET[:3] not in message and SECRET[3:] not in message
    assert "h1" not in message and "s1" not in message


@pytest.mark.parametrize(
    ("env", "part"),
    [
        ({"REDIS_DB": "2"}, "single database"),
        ({"REDIS_URL": "unix:///tmp/redis.sock"}, "unix:// socket"),
        ({"REDIS_URL": "redis+sentinel://s1/main"}, "Sentinel serves one primary"),
        ({"REDIS_URL": "redis://:pw@h:7000/3"}, "single database"),
    ],
)
def test_streamq_cluster_refuses_what_a_cluster_cannot_be(env: dict[str, str], part: str) -> None:
    with pytest.raises(ConfigError, match="STREAMQ_CLUSTER") as info:
        Settings.from_env({"STREAMQ_CLUSTER": "1", **env})
    assert part in str(info.value)


def test_cluster_and_sentinel_settings_say_their_mode_and_show_no_secret() -> None:
    cluster = RedisSettings.from_env(
        {"REDIS_URL": f"redis+cluster://app:{SECRET}@h1:7000,[::1]:7001", "REDIS_TLS": "1"}
    )
    assert cluster.mode == "cluster" and cluster.use_tls
    assert cluster.endpoints().hosts == (("h1", 7000), ("::1", 7001))
    assert (cluster.endpoints().username, cluster.endpoints().password) == ("app", SECRET)
    assert cluster.describe() == "rediss+cluster://h1:7000,[::1]:7001"
    assert cluster.to_url().startswith("rediss+cluster://")  # REDIS_TLS upgrades it

    sentinel = RedisSettings.from_env(
        {"REDIS_URL": f"redis+sentinel://:{SECRET}@s1,s2:26380/main/3?sentinel_password=S-2"}
    )
    ep = sentinel.endpoints()
    assert sentinel.mode == "sentinel"
    assert (ep.hosts, ep.service, ep.db) == ((("s1", 26379), ("s2", 26380)), "main", 3)
    assert (ep.password, ep.sentinel_password) == (SECRET, "S-2")
    assert sentinel.describe() == "redis+sentinel://s1:26379,s2:26380/main/3"

    flagged = RedisSettings.from_env(
        {"STREAMQ_CLUSTER": "yes", "REDIS_HOST": "node", "REDIS_PORT": "7000"}
        | {"REDIS_PASSWORD": SECRET}
    )
    assert flagged.mode == "cluster"
    assert flagged.describe() == "redis+cluster://node:7000"
    # The URL alone says how to connect, so child processes need no STREAMQ_CLUSTER.
    assert RedisSettings.from_env({"REDIS_URL": flagged.to_url()}).endpoints() == (
        flagged.endpoints()
    )
    for settings in (cluster, sentinel, flagged):
        for shown in (settings.describe(), repr(settings), repr(settings.endpoints())):
            assert SECRET not in shown and "S-2" not in shown
    assert RedisSettings.from_env({"REDIS_URL": "redis://h:1/0"}).mode == "single"


# ------------------------------------------------------------------ on a real cluster


def _queues_on_every_master(cluster: EmbeddedCluster, count: int = 3) -> list[str]:
    """One fresh queue name per master (by the slot of its hash tag)."""
    tag = secrets.token_hex(3)
    found: dict[str, str] = {}
    with RedisCluster(
        startup_nodes=[],
        host=cluster.nodes[0].host,
        port=cluster.nodes[0].port,
        password=cluster.password,
    ) as client:
        for i in range(2000):
            queue = f"t-cl-{tag}-{i}"
            node = client.get_node_from_key(QueueKeys(queue).stream)
            found.setdefault(node.name, queue)
            if len(found) == count:
                return sorted(found.values())
    raise AssertionError(f"no queue names reached {count} masters")


def _slot(queue: str) -> int:
    return int(key_slot(QueueKeys(queue).stream.encode()))


@pytest.fixture
def queues(cluster: EmbeddedCluster) -> list[str]:
    """Three queue names, each living on another master."""
    return _queues_on_every_master(cluster)


def test_a_producer_enqueues_reads_and_cancels_jobs_of_queues_on_every_master(
    cluster: EmbeddedCluster, queues: list[str]
) -> None:
    with streamq.Producer(cluster.url) as producer:
        assert cluster.password not in repr(producer)
        made = {q: producer.enqueue(q, "noop", {"q": q}, job_id=f"id-{q}") for q in queues}
        delayed = {q: producer.enqueue(q, "noop", {}, delay=3600).job_id for q in queues}
        # A custom id deduplicates, on every master.
        assert [producer.enqueue(q, "noop", {}, job_id=f"id-{q}").created for q in queues] == [
            False
        ] * 3
        for q, result in made.items():
            job = producer.get_job(q, result.job_id)
            assert job is not None and job.data == {"q": q}
            assert job.state is streamq.JobState.WAITING
            producer.cancel(q, delayed[q])
            cancelled = producer.get_job(q, delayed[q])
            assert cancelled is not None and cancelled.state is streamq.JobState.CANCELLED


def test_an_async_producer_enqueues_on_the_cluster_too(
    cluster: EmbeddedCluster, queues: list[str]
) -> None:
    async def main() -> list[streamq.JobState | None]:
        async with streamq.AsyncProducer(cluster.url) as producer:
            ids = [(await producer.enqueue(q, "noop", {"n": 1})).job_id for q in queues]
            jobs = [await producer.get_job(q, i) for q, i in zip(queues, ids, strict=True)]
            return [j.state if j else None for j in jobs]

    assert asyncio.run(main()) == [streamq.JobState.WAITING] * 3


def test_admin_sees_queues_and_finds_jobs_on_every_master(
    cluster: EmbeddedCluster, queues: list[str]
) -> None:
    with streamq.Producer(cluster.url) as producer:
        for n, q in enumerate(queues, 1):
            for _ in range(n):
                producer.enqueue(q, "noop", {})
        shared = f"shared-{secrets.token_hex(3)}"
        producer.enqueue(queues[-1], "noop", {}, job_id=shared)
    with Admin(cluster.url) as admin:
        assert set(queues) <= set(admin.queues())  # SCAN reached every master
        waiting = {info.status.queue: info.status.waiting for info in admin.status(queues)}
        assert waiting == {queues[0]: 1, queues[1]: 2, queues[2]: 4}
        everything = {info.status.queue for info in admin.status()}
        assert set(queues) <= everything
        assert [j.queue for j in admin.find_job(shared)] == [queues[-1]]
        assert admin.known(queues[0]) and not admin.known(f"never-{secrets.token_hex(3)}")


def test_a_wrong_password_or_no_reachable_node_is_streamqs_own_error(
    cluster: EmbeddedCluster,
) -> None:
    wrong = cluster.url.replace(cluster.password or "", "not-the-password")
    with pytest.raises(AuthenticationFailedError) as auth:
        streamq.Producer(wrong).enqueue("q", "noop", {})
    assert "not-the-password" not in str(auth.value)

    async def enqueue(url: str) -> None:
        async with streamq.AsyncProducer(url) as producer:
            await producer.enqueue("q", "noop", {})

    with pytest.raises(AuthenticationFailedError):
        asyncio.run(enqueue(wrong))
    closed = f"redis+cluster://:{SECRET}@127.0.0.1:1"
    with pytest.raises(ConnectionFailedError, match=r"redis\+cluster://127\.0\.0\.1:1") as down:
        streamq.Producer(closed)
    assert SECRET not in str(down.value)
    with pytest.raises(ConnectionFailedError):
        asyncio.run(enqueue(closed))


@pytest.fixture
def cluster_spawner(cluster: EmbeddedCluster, tmp_path: Path) -> Iterator[Spawner]:
    """Worker subprocesses on the session cluster (``redis+cluster://``)."""
    spawner = Spawner(cluster.url, tmp_path, tmp_path / "ledger")
    yield spawner
    spawner.close()


def test_a_worker_process_on_the_cluster_completes_every_job_of_its_queue(
    cluster: EmbeddedCluster, queues: list[str], cluster_spawner: Spawner
) -> None:
    queue = queues[-1]  # not on the first node: the worker must follow the slot map
    with streamq.Producer(cluster.url) as producer:
        specs = [JobSpec("noop", {"i": i}) for i in range(100)]
        ids = [r.job_id for r in producer.enqueue_many(queue, specs)]
        dead = producer.enqueue(queue, "fail", {}, max_retries=0).job_id
        worker = cluster_spawner.start(queue, burst=True)
        assert worker.wait(60) == 0
        states = {producer.get_job(queue, i).state for i in ids}  # type: ignore[union-attr]
        assert states == {streamq.JobState.COMPLETED}
        failed = producer.get_job(queue, dead)
        assert failed is not None and failed.state is streamq.JobState.FAILED


def test_a_durable_enqueue_waits_for_the_fsync_on_the_master_that_took_the_write(
    cluster: EmbeddedCluster, cluster_factory: Callable[..., EmbeddedCluster]
) -> None:
    kind = cluster.nodes[0].server  # the session cluster tells the kind's version
    if kind.version < (7, 2) and not kind.is_valkey:
        pytest.skip("WAITAOF needs Redis >= 7.2 (this kind has no durable enqueue)")
    embedded = cluster_factory(profile="default")  # durable enqueues need AOF
    queues = _queues_on_every_master(embedded)
    # A slow machine's replica may take over a second to fsync (appendfsync everysec).
    with streamq.Producer(embedded.url, durable=True, durable_replicas=1, durable_timeout=10) as p:
        target = queues[-1]
        assert p.enqueue(target, "noop", {}).created
    calls = {}
    for node in embedded.masters():
        with redis.Redis.from_url(node.url) as direct:
            stats = direct.info("commandstats").get("cmdstat_waitaof", {})
            owner = direct.execute_command("CLUSTER", "COUNTKEYSINSLOT", _slot(target)) > 0
            calls[owner] = calls.get(owner, 0) + int(stats.get("calls", 0))
    # WAITAOF ran on the connection that ran the script, not on some default node. Twice:
    # on a fresh cluster the script is not loaded yet, so the first pipeline's EVALSHA is
    # refused (NOSCRIPT) and its WAITAOF waits for nothing; the script goes again after
    # SCRIPT LOAD, and a WAITAOF with it (before, none did: the write went unconfirmed).
    assert calls == {True: 2, False: 0}


def test_a_durable_batch_on_a_partitioned_queue_waits_for_every_fsync_in_one_round_trip(
    cluster: EmbeddedCluster,
    cluster_factory: Callable[..., EmbeddedCluster],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each partition's enqueue and its WAITAOF go in one pipeline: the fsync waits overlap.
    They were sent one partition after the other, so a durable batch over 6 partitions
    waited for up to 6 fsyncs in turn (appendfsync everysec: ~3 s a batch, measured)."""
    kind = cluster.nodes[0].server
    if kind.version < (7, 2) and not kind.is_valkey:
        pytest.skip("WAITAOF needs Redis >= 7.2 (this kind has no durable enqueue)")
    embedded = cluster_factory(profile="default")
    queue = f"t-dp-{secrets.token_hex(3)}"
    with Admin(embedded.url) as admin:
        meta = admin.set_partitions(queue, 6)
    lanes = partition_keys(QueueKeys(queue), meta)[-6:]  # the 6 partitions of the count 6
    node = embedded.nodes[0]
    with RedisCluster(host=node.host, port=node.port, password=embedded.password) as probe:
        owners = [probe.get_node_from_key(k.stream).port for k in lanes]
    with streamq.Producer(embedded.url, durable=True, durable_replicas=1, durable_timeout=10) as p:
        p.enqueue(queue, "noop", {})  # reads the partition count
        driver: Any = p._driver
        sent = driver._pipeline
        pipelines: list[int] = []

        def counted(calls: list[Any]) -> list[Any]:
            pipelines.append(len(calls))
            return sent(calls)  # type: ignore[no-any-return]

        monkeypatch.setattr(driver, "_pipeline", counted)
        before = _waitaof_calls(embedded)
        specs = [JobSpec("noop", {}) for _ in range(120)]  # every partition gets some
        ids = [r.job_id for r in p.enqueue_many(queue, specs)]
        after = _waitaof_calls(embedded)
        found = {p.get_job(queue, j).state for j in ids}  # type: ignore[union-attr]
    assert found == {streamq.JobState.WAITING}
    assert pipelines[:1] == [12], pipelines  # 6 scripts, each with its WAITAOF
    # Each master waited for the fsync of each of its partitions' writes, itself.
    waited = {port: n - before.get(port, 0) for port, n in after.items()}
    assert waited == {port: owners.count(port) for port in after}, (waited, owners)


def _waitaof_calls(embedded: EmbeddedCluster) -> dict[int, int]:
    """WAITAOF commands each master has run."""
    calls = {}
    for node in embedded.masters():
        with redis.Redis.from_url(node.url) as direct:
            stats = direct.info("commandstats").get("cmdstat_waitaof", {})
            calls[node.port] = int(stats.get("calls", 0))
    return calls


def test_scripts_flushed_from_every_master_are_loaded_again_unseen(
    cluster: EmbeddedCluster, queues: list[str]
) -> None:
    def flush() -> None:
        for node in cluster.masters():
            with redis.Redis.from_url(node.url) as direct:
                direct.script_flush()

    flush()
    with streamq.Producer(cluster.url) as producer:
        assert all(producer.enqueue(q, "noop", {}).created for q in queues)

    async def main() -> list[bool]:
        async with streamq.AsyncProducer(cluster.url) as producer:
            flush()
            return [(await producer.enqueue(q, "noop", {})).created for q in queues]

    assert asyncio.run(main()) == [True] * 3


def test_a_testers_cleanup_removes_its_prefix_from_every_master(
    cluster: EmbeddedCluster, queues: list[str]
) -> None:
    prefix = f"tc{secrets.token_hex(3)}"
    tester = QueueTester(Settings(redis=RedisSettings(url=cluster.url), prefix=prefix))
    try:
        for q in queues:
            tester.enqueue(q, "noop", {})
        assert tester.queues() == sorted(queues)
        assert tester.cleanup() > 3  # one UNLINK would refuse keys of several slots
        assert tester.queues() == []
    finally:
        tester.close()


def _migrate_slot(embedded: EmbeddedCluster, slot: int, source: EmbeddedNode) -> EmbeddedNode:
    """Move ``slot`` with its keys from ``source`` to another master (what ``redis-cli
    --cluster reshard`` does); return the new owner."""
    target = next(n for n in embedded.masters() if n is not source)
    password = embedded.password or ""
    with (
        redis.Redis.from_url(source.url) as src,
        redis.Redis.from_url(target.url) as dst,
    ):
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command(
                "MIGRATE", target.host, target.port, "", 0, 5000, "AUTH", password, "KEYS", *keys
            )
    for node in embedded.masters():
        with redis.Redis.from_url(node.url) as direct:
            direct.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
    embedded.wait_ok()
    return target


@pytest.mark.slow
def test_producers_follow_a_slot_migration_and_resume_after_its_new_master_dies(
    cluster_factory: Callable[..., EmbeddedCluster],
) -> None:
    embedded = cluster_factory(node_timeout_ms=1000)
    queue = _queues_on_every_master(embedded)[0]
    with RedisCluster(
        host=embedded.nodes[0].host, port=embedded.nodes[0].port, password=embedded.password
    ) as probe:
        owner = probe.get_node_from_key(QueueKeys(queue).stream).port
    source = next(n for n in embedded.nodes if n.port == owner)

    async def scenario() -> None:
        async with streamq.AsyncProducer(embedded.url) as aproducer:
            with streamq.Producer(embedded.url) as producer:
                ids = [
                    producer.enqueue(queue, "noop", {"n": 1}).job_id,
                    (await aproducer.enqueue(queue, "noop", {"n": 2})).job_id,
                ]
                # Both clients still map the slot to the old master: MOVED sends them on.
                target = _migrate_slot(embedded, _slot(queue), source)
                ids += [
                    producer.enqueue(queue, "noop", {"n": 3}).job_id,
                    (await aproducer.enqueue(queue, "noop", {"n": 4})).job_id,
                ]
                with redis.Redis.from_url(target.url) as direct:
                    assert direct.execute_command("WAIT", 1, 5000) == 1  # its replica has all
                embedded.kill(target)
                embedded.wait_ok(timeout=embedded.node_timeout_ms / 1000 + 15)
                # The first command after the failover: the connection to the dead master
                # fails, the topology is read again, and the command goes to the new master.
                ids += [
                    producer.enqueue(queue, "noop", {"n": 5}).job_id,
                    (await aproducer.enqueue(queue, "noop", {"n": 6})).job_id,
                ]
                found = [await aproducer.get_job(queue, i) for i in ids]
                assert [j.data if j else None for j in found] == [{"n": n} for n in range(1, 7)]

    asyncio.run(scenario())


def test_a_worker_on_queues_of_every_master_completes_all_their_jobs_flow_jobs_too(
    cluster: EmbeddedCluster, queues: list[str], cluster_spawner: Spawner
) -> None:
    # One XREADGROUP cannot span slots: the worker reads each slot's queue in turn.
    with streamq.Producer(cluster.url) as producer:
        ids = {
            q: [r.job_id for r in producer.enqueue_many(q, [JobSpec("noop") for _ in range(30)])]
            for q in queues
        }
        keyed = {q: producer.enqueue(q, "noop", key="x:conn-1").job_id for q in queues}
        args: list[str] = []
        for q in queues[1:]:
            args += ["--queue", q]
        worker = cluster_spawner.start(queues[0], burst=True, extra_args=tuple(args))
        assert worker.wait(60) == 0, worker.output()[-2000:]
        for q in queues:
            for jid in [*ids[q], keyed[q]]:
                job = producer.get_job(q, jid)
                assert job is not None and job.state is streamq.JobState.COMPLETED, (q, jid)


def test_a_partitioned_queue_spreads_over_the_masters_and_one_worker_drains_it(
    cluster: EmbeddedCluster, cluster_spawner: Spawner
) -> None:
    from streamq.admin import Admin
    from streamq.protocol.partitions import partition_tags

    queue = f"parted-{secrets.token_hex(3)}"
    with Admin(cluster.url) as admin:
        admin.set_partitions(queue, 6)
    with RedisCluster(
        host=cluster.nodes[0].host, port=cluster.nodes[0].port, password=cluster.password
    ) as client:
        owners = [
            client.get_node_from_key(QueueKeys(queue, tag=t).stream).name
            for t in partition_tags(queue, 6)
        ]
    # Spread evenly over the slot space: two partitions on each of the three masters.
    assert sorted(owners.count(o) for o in set(owners)) == [2, 2, 2], owners
    with streamq.Producer(cluster.url) as producer:
        producer.enqueue(queue, "noop")  # the first call reads the count
        ids = [r.job_id for r in producer.enqueue_many(queue, [JobSpec("noop")] * 120)]
        worker = cluster_spawner.start(queue, burst=True)
        assert worker.wait(60) == 0, worker.output()[-2000:]
        for jid in ids:
            job = producer.get_job(queue, jid)
            assert job is not None and job.state is streamq.JobState.COMPLETED, jid
        assert producer.status(queue).completed_total == 121
