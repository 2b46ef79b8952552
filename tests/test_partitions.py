"""Partitioned queues on one server: a queue's jobs spread over its partitions by id,
found by id, consumed by every worker, counted as one queue; the count only grows and a
raise loses nothing."""

from __future__ import annotations

import asyncio

import pytest
import redis
from _worker_support import run_burst, run_until, settings

import streamq
from streamq._driver import SyncDriver
from streamq.admin import Admin
from streamq.protocol import partitions
from streamq.protocol.keys import QueueKeys
from streamq.worker import App, Worker
from tests._support import await_until

app = App()
DONE: list[str] = []


@app.handler("work")
async def work(job: streamq.Job) -> str:
    DONE.append(job.id)
    return job.id


@pytest.fixture(autouse=True)
def _reset() -> None:
    DONE.clear()


def _set(client: redis.Redis, queue: str, n: int) -> partitions.PartitionMeta:
    return SyncDriver(client, "test").run(partitions.set_partitions(QueueKeys(queue), n))


def test_partition_tags_are_a_pure_function_and_spread_over_the_slot_space() -> None:
    from redis.crc import key_slot

    tags = partitions.partition_tags("dispatch", 6)
    assert tags == partitions.partition_tags("dispatch", 6)
    assert tags[0] == "" and len(set(tags)) == 6
    home = key_slot(b"dispatch")
    offsets = [(key_slot(t.encode()) - home) % 16384 for t in tags[1:]]
    # Evenly spaced from the home's slot: partition p near p/6 of the way round.
    for p, off in enumerate(offsets, start=1):
        assert abs(off - p * 16384 / 6) < 16384 / 24, (p, off)
    assert all("~" in t for t in tags[1:])  # "~" is never in a queue name
    with pytest.raises(streamq.ConfigError, match="partitions must be from 1 to 64"):
        partitions.partition_tags("q", 65)


def test_the_count_only_grows_and_keeps_its_history(
    redis_client: redis.Redis, queue_name: str
) -> None:
    assert _set(redis_client, queue_name, 3) == partitions.PartitionMeta(3, (1, 3))
    assert _set(redis_client, queue_name, 3) == partitions.PartitionMeta(3, (1, 3))
    with pytest.raises(streamq.ConfigError, match="can only grow"):
        _set(redis_client, queue_name, 2)


def test_jobs_spread_over_the_partitions_and_are_found_by_id(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    _set(redis_client, queue_name, 4)
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        # A producer's first call (and one each META_TTL_S) sends new jobs home while it
        # reads the partition count beside them: one round trip. The next calls spread.
        first = p.enqueue(queue_name, "work").job_id
        ids = [r.job_id for r in p.enqueue_many(queue_name, [streamq.JobSpec("work")] * 200)]
        ids.append(first)
        custom = p.enqueue(queue_name, "work", job_id="order-17")
        again = p.enqueue(queue_name, "work", job_id="order-17")  # dedup, same partition
        assert custom.created and not again.created
        later = p.enqueue(queue_name, "work", job_id="later-1", delay=3600)
        p.reschedule(queue_name, later.job_id, delay=7200)
        p.cancel(queue_name, later.job_id)
        assert p.get_job(queue_name, later.job_id).state == "cancelled"  # type: ignore[union-attr]
        per = [
            redis_client.xlen(QueueKeys(queue_name, tag=t).stream)
            for t in partitions.partition_tags(queue_name, 4)
        ]
        assert sum(per) == 202 and min(per) > 20, per  # crc32 of random ids: even-ish
        assert p.status(queue_name).waiting == 202
        run_burst(Worker(app, [queue_name], settings=s, concurrency=20))
        assert sorted(DONE) == sorted([*ids, "order-17"])
        job = p.get_job(queue_name, ids[7])
        assert job is not None and job.state == "completed" and job.result == ids[7]
        st = p.status(queue_name)
        assert (st.waiting, st.active, st.completed_total) == (0, 0, 202)


def test_a_large_batch_spreads_when_the_producers_count_is_due(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    _set(redis_client, queue_name, 4)
    with streamq.Producer(settings=settings(redis_url, log_level="warning")) as p:
        p.enqueue(queue_name, "work")  # the first call goes home and learns the count
        p._metas[queue_name] = (p._metas[queue_name][0], 0.0)  # as META_TTL_S later
        # Larger than HOME_BATCH_MAX, to a queue known to be partitioned: the count is read
        # first, so the batch spreads instead of landing whole at home (a producer whose
        # batches come further apart than META_TTL_S would put every one there).
        p.enqueue_many(queue_name, [streamq.JobSpec("work")] * 400)
    per = [
        redis_client.xlen(QueueKeys(queue_name, tag=t).stream)
        for t in partitions.partition_tags(queue_name, 4)
    ]
    assert sum(per) == 401 and max(per) < 160, per  # ~100 each, give or take crc32


def test_raising_the_count_loses_nothing_written_under_the_old_one(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        old = [p.enqueue(queue_name, "work", job_id=f"old-{i}").job_id for i in range(30)]
        _set(redis_client, queue_name, 3)

        async def scenario() -> None:
            w = Worker(app, [queue_name], settings=s)  # started before the producer knows
            await run_until([w], lambda: len(DONE) >= 30, what="the old jobs")

        asyncio.run(scenario())
        p._metas.clear()  # what the producer read ages out after META_TTL_S; skip the wait
        new = [p.enqueue(queue_name, "work", job_id=f"new-{i}").job_id for i in range(30)]
        for jid in old:
            assert p.get_job(queue_name, jid).state == "completed"  # type: ignore[union-attr]
        run_burst(Worker(app, [queue_name], settings=s))
        for jid in new:
            assert p.get_job(queue_name, jid).state == "completed"  # type: ignore[union-attr]
    assert sorted(DONE) == sorted(old + new)


def test_flow_jobs_of_a_partitioned_queue_stay_home_so_limits_hold(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    _set(redis_client, queue_name, 3)
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        ids = [p.enqueue(queue_name, "work", key=f"k{i % 4}").job_id for i in range(12)]
        assert redis_client.zcard(QueueKeys(queue_name).held) == 12
        run_burst(Worker(app, [queue_name], settings=s))
        assert all(p.get_job(queue_name, i).state == "completed" for i in ids)  # type: ignore[union-attr]
    assert sorted(DONE) == sorted(ids)


def test_a_failed_job_of_a_partition_reaches_the_queues_dlq_and_replays(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    _set(redis_client, queue_name, 3)
    s = settings(redis_url, log_level="warning")
    fails = App()
    runs: list[str] = []

    @fails.handler("once")
    async def once(job: streamq.Job) -> None:
        runs.append(job.id)
        if runs.count(job.id) == 1:
            raise streamq.PermanentJobError("first run")

    with streamq.Producer(settings=s) as p:
        ids = [p.enqueue(queue_name, "once", job_id=f"j{i}").job_id for i in range(6)]
        run_burst(Worker(fails, [queue_name], settings=s))
        dead = p.dead_letters(queue_name)
        assert sorted(d.job_id for d in dead) == sorted(ids)
        assert p.status(queue_name).dead == 6
        assert p.replay_all_dead(queue_name) == 6
        run_burst(Worker(fails, [queue_name], settings=s))
        assert all(p.get_job(queue_name, i).state == "completed" for i in ids)  # type: ignore[union-attr]


def test_operators_see_a_partitioned_queue_as_one(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    from streamq.admin import Admin

    _set(redis_client, queue_name, 3)
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        p.enqueue(queue_name, "work")  # reads the count (this one goes home)
        ids = [r.job_id for r in p.enqueue_many(queue_name, [streamq.JobSpec("work")] * 59)]
    with Admin(settings=s) as admin:
        names = admin.queues()  # the server is shared: other tests' queues are there too
        assert queue_name in names and not any("~" in q for q in names)
        (info,) = admin.status([queue_name])
        assert info.status.waiting == 60 and info.lag == 60
        (again,) = [i for i in admin.status() if i.queue == queue_name]
        assert again.status.waiting == 60
        listed = admin.jobs(queue_name, "waiting", limit=100)
        assert len(listed) == 60 and set(ids) <= {r.job_id for r in listed}
        page = admin.jobs(queue_name, "waiting", limit=10, offset=55)
        assert [r.job_id for r in page] == [r.job_id for r in listed[55:]]
        found = admin.find_job(ids[5])
        assert [j.id for j in found] == [ids[5]] and found[0].state == "waiting"


def test_pausing_a_partitioned_queue_stops_every_partition_until_resumed(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    _set(redis_client, queue_name, 3)
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p, Admin(settings=s) as admin:
        ids = [p.enqueue(queue_name, "work").job_id]  # goes home and learns the count
        ids += [r.job_id for r in p.enqueue_many(queue_name, [streamq.JobSpec("work")] * 59)]
        per = [
            redis_client.xlen(QueueKeys(queue_name, tag=t).stream)
            for t in partitions.partition_tags(queue_name, 3)
        ]
        assert min(per) > 0, per  # every partition holds some
        admin.pause(queue_name)  # the flag lives at home; it covers every partition

        async def scenario() -> None:
            w = Worker(app, [queue_name], settings=s)
            task = asyncio.create_task(w.run())
            try:
                await await_until(lambda: w.paused == {queue_name}, 10, "the pause seen")
                # A bounded look at a negative: a second of the paused worker, nothing runs.
                await asyncio.sleep(1.0)
                assert DONE == []
                admin.resume(queue_name)
                await await_until(lambda: len(DONE) >= 60, 15, "the jobs after the resume")
            finally:
                w.stop()
                await task

        asyncio.run(scenario())
    assert sorted(DONE) == sorted(ids)


def test_partition_labels_name_every_key_set_in_order() -> None:
    home = QueueKeys("dispatch")
    for meta, labels in [
        (partitions.PartitionMeta(), ["0"]),
        (partitions.PartitionMeta(4, (1, 4)), ["0", "1", "2", "3"]),
        (partitions.PartitionMeta(3, (1, 2, 3)), ["0", "1/2", "1", "2"]),
    ]:
        assert partitions.partition_labels(meta) == labels
        assert len(partitions.partition_keys(home, meta)) == len(labels)
