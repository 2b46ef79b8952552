"""What the worker does for operators: pause/resume, fleet metrics kept in Redis, the
live-worker registry on the Redis clock, cancelled-record retention and id reuse,
permanent failures, and a pending entry deleted by someone else."""

from __future__ import annotations

import asyncio
import time

import orjson
import redis
from _support import redis_now_ms
from _worker_support import await_until, job_hash, run_burst, run_until, settings

import streamq
from streamq.protocol.keys import BUCKETS_MS, QueueKeys
from streamq.worker import App, Worker

ok_app = App()


@ok_app.handler("ok")
async def ok(job: streamq.Job) -> str:
    return "done"


@ok_app.handler("boom")
async def boom(job: streamq.Job) -> None:
    raise RuntimeError("nope")


@ok_app.handler("permanent")
async def permanent(job: streamq.Job) -> None:
    raise streamq.PermanentJobError("the payload can never work")


def test_a_paused_queue_is_not_fetched_until_resumed(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    other = queue_name + "-other"
    keys = QueueKeys(queue_name)
    redis_client.set(keys.paused, "1")
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        paused_ids = [p.enqueue(queue_name, "ok").job_id for _ in range(5)]
        live_id = p.enqueue(other, "ok").job_id
        w = Worker(ok_app, [queue_name, other], settings=s)

        async def scenario() -> None:
            task = asyncio.create_task(w.run())
            # The unpaused queue is served while the paused one keeps its jobs waiting.
            await await_until(lambda: p.get_job(other, live_id).state == "completed")  # type: ignore[union-attr]
            assert p.status(queue_name).waiting == 5
            assert w.paused == {queue_name}
            redis_client.delete(keys.paused)
            await await_until(lambda: p.status(queue_name).completed == 5, timeout=10)
            w.stop()
            await task

        asyncio.run(scenario())
        assert {p.get_job(queue_name, i).state for i in paused_ids} == {"completed"}  # type: ignore[union-attr]


def test_workers_keep_fleet_metrics_in_redis(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    keys = QueueKeys(queue_name)
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        for _ in range(7):
            p.enqueue(queue_name, "ok")
        p.enqueue(queue_name, "boom", max_retries=0)
        p.enqueue(queue_name, "ok", delay=0.2)
        before = redis_now_ms(redis_client) // 60000
        run_burst(Worker(ok_app, [queue_name], settings=s))
    stats = {k.decode(): int(v) for k, v in redis_client.hgetall(keys.stats).items()}
    assert stats["completed"] == 8 and stats["failed"] == 1 and stats["dead"] == 1
    tput = {k.decode(): int(v) for k, v in redis_client.hgetall(keys.throughput).items()}
    minutes = {str(m) for m in range(before, before + 2)}
    assert sum(v for k, v in tput.items() if k in minutes) == 8
    assert sum(v for k, v in tput.items() if k.endswith(":f")) == 1
    hist = {k.decode(): float(v) for k, v in redis_client.hgetall(keys.histograms).items()}
    labels = {f"dur:{le}" for le in BUCKETS_MS} | {"dur:inf"}
    assert sum(v for k, v in hist.items() if k in labels) == hist["dur:count"] == 8
    assert hist["dur:sum"] >= 0
    # The delayed job's lateness (promotion - due, Redis clock) went into the late: buckets.
    assert hist["late:count"] == 1
    assert (
        sum(v for k, v in hist.items() if k.startswith("late:") and k[5:].isdigit())
        + hist.get("late:inf", 0)
        == 1
    )


def test_heartbeats_use_the_redis_clock_and_carry_the_lease(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning", lease_ms=4321)
    w = Worker(ok_app, [queue_name], settings=s)
    keys = QueueKeys(queue_name)
    real_time = time.time

    async def scenario() -> None:
        seen: dict[str, object] = {}

        def beat() -> bool:
            raw = redis_client.hget(keys.workers, w.consumer)
            if raw:
                seen.update(orjson.loads(raw))
            return bool(raw)

        # The worker's host clock is an hour off: the heartbeat must not be.
        time.time = lambda: real_time() + 3600  # type: ignore[assignment]
        try:
            await run_until([w], beat, what="a heartbeat")
        finally:
            time.time = real_time  # type: ignore[assignment]
        assert abs(int(seen["seen_ms"]) - redis_now_ms(redis_client)) < 60_000  # type: ignore[call-overload]
        assert seen["lease_ms"] == 4321

    asyncio.run(scenario())
    # A clean stop leaves the registry.
    assert redis_client.hget(keys.workers, w.consumer) is None


def test_a_cancelled_id_can_be_enqueued_again_and_its_record_is_retained_like_completed(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    keys = QueueKeys(queue_name)
    s = settings(redis_url, log_level="warning", keep_completed=2)
    with streamq.Producer(settings=s) as p:
        first = p.enqueue(queue_name, "ok", {"v": 1}, job_id="post-1", delay=60)
        p.cancel(queue_name, "post-1")
        assert redis_client.zscore(keys.cancelled, "post-1") is not None
        again = p.enqueue(queue_name, "ok", {"v": 2}, job_id="post-1", delay=0)
        assert first.created and again.created and again.state == "waiting"
        assert redis_client.zscore(keys.cancelled, "post-1") is None
        assert p.get_job(queue_name, "post-1").data == {"v": 2}  # type: ignore[union-attr]
        # Cancel five more: retention keeps the newest two cancelled records only.
        for i in range(5):
            p.enqueue(queue_name, "ok", job_id=f"c-{i}", delay=60)
            p.cancel(queue_name, f"c-{i}")
        run_burst(Worker(ok_app, [queue_name], settings=s))

        async def trimmed() -> None:
            w = Worker(ok_app, [queue_name], settings=s)
            await run_until([w], lambda: redis_client.zcard(keys.cancelled) == 2)

        asyncio.run(trimmed())
        assert redis_client.exists(keys.job("c-0")) == 0
        assert redis_client.exists(keys.job("c-4")) == 1
        assert p.get_job(queue_name, "post-1").state == "completed"  # type: ignore[union-attr]


def test_a_permanent_error_dead_letters_without_retries(redis_url: str, queue_name: str) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        job = p.enqueue(queue_name, "permanent", max_retries=3)
        run_burst(Worker(ok_app, [queue_name], settings=s))
        rec = p.get_job(queue_name, job.job_id)
        assert rec is not None and rec.state == "failed" and rec.attempt == 1
        assert rec.dead_reason == "permanent"
        dead = p.dead_letters(queue_name)
        assert [d.job_id for d in dead] == [job.job_id]
        assert "can never work" in dead[0].error


def test_a_pending_entry_deleted_by_someone_else_dead_letters_its_job(
    server_factory, queue_name: str
) -> None:
    srv = server_factory()  # Redis 7: XAUTOCLAIM reports deleted ids
    client = redis.Redis.from_url(srv.url)
    keys = QueueKeys(queue_name)
    s = settings(srv.url, log_level="warning", lease_ms=300)
    with streamq.Producer(settings=s) as p:
        job = p.enqueue(queue_name, "ok", {"x": 1})
        # A worker that died holding the job: the entry sits in the PEL of "ghost".
        client.xreadgroup("streamq", "ghost", {keys.stream: ">"}, count=1)
        eid = job_hash(client, queue_name, job.job_id)["x"]
        client.xdel(keys.stream, eid)

        async def scenario() -> None:
            w = Worker(ok_app, [queue_name], settings=s)
            await run_until(
                [w],
                lambda: p.get_job(queue_name, job.job_id).state == "failed",  # type: ignore[union-attr]
            )

        asyncio.run(scenario())
        rec = p.get_job(queue_name, job.job_id)
        assert rec is not None and rec.dead_reason == "deleted"
        dead = p.dead_letters(queue_name)
        assert [d.job_id for d in dead] == [job.job_id]
        assert eid in dead[0].error and dead[0].data == {"x": 1}
        assert client.xpending(keys.stream, "streamq")["pending"] == 0
    client.close()


def test_a_retried_completion_is_recognised_not_fenced(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    """A completion whose reply was lost (Redis restarted between running the script and
    answering) is sent again: the script sees its own record and answers OK, writing
    nothing twice; another consumer's retry of it is still fenced."""
    from streamq._driver import SyncDriver
    from streamq.protocol import worker as wops

    keys = QueueKeys(queue_name)
    with streamq.Producer(redis_url) as p:
        job = p.enqueue(queue_name, "ok")
    redis_client.xreadgroup("streamq", "me", {keys.stream: ">"}, count=1)
    eid = job_hash(redis_client, queue_name, job.job_id)["x"]
    driver = SyncDriver(redis_client, "test")
    done = wops.Done(job.job_id, eid, 1, b'"r"', 0, 1.0)
    assert driver.run(wops.complete(keys, "me", [done], 100)) == [True]
    assert driver.run(wops.complete(keys, "me", [done], 100)) == [True]
    assert driver.run(wops.complete(keys, "someone-else", [done], 100)) == [False]
    assert int(redis_client.hget(keys.stats, "completed") or 0) == 1
    assert redis_client.zcard(keys.completed) == 1


def test_a_completion_batch_is_fenced_entry_by_entry(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    """complete.lua checks ownership of a whole batch with one XPENDING over its id range.
    Entries another consumer took over are refused, the rest recorded, whatever else this
    consumer holds in between (here 300 running entries, more than the range read returns
    in one go, so the entry-by-entry fallback is exercised too)."""
    from streamq._driver import SyncDriver
    from streamq.protocol import worker as wops

    keys = QueueKeys(queue_name)
    with streamq.Producer(redis_url) as p:
        jobs = p.enqueue_many(queue_name, [streamq.JobSpec("ok", i) for i in range(304)])
    got = redis_client.xreadgroup("streamq", "me", {keys.stream: ">"}, count=304)
    eids = [e.decode() for e, _ in got[0][1]]
    assert eids == [j.entry_id for j in jobs]
    # The second entry was taken over by another worker (its lease had lapsed).
    redis_client.xclaim(keys.stream, "streamq", "thief", 0, [eids[1]])
    driver = SyncDriver(redis_client, "test")

    def done(i: int) -> wops.Done:
        return wops.Done(jobs[i].job_id, eids[i], 1, b"null", 0, 1.0)

    # First, last and two in the middle: the range spans all 304, most of them still
    # running here (pending for "me", not in the batch).
    batch = [done(0), done(1), done(150), done(303)]
    assert driver.run(wops.complete(keys, "me", batch, 100)) == [True, False, True, True]
    states = {j.job_id: p_state(redis_client, queue_name, j.job_id) for j in jobs[:2]}
    assert states == {jobs[0].job_id: "completed", jobs[1].job_id: "waiting"}
    assert redis_client.xpending(keys.stream, "streamq")["pending"] == 301
    # A batch of one whose range holds only itself, and an empty batch.
    assert driver.run(wops.complete(keys, "me", [done(2)], 100)) == [True]
    assert driver.run(wops.complete(keys, "me", [], 100)) == []


def p_state(client: redis.Redis, queue: str, job_id: str) -> str:
    return job_hash(client, queue, job_id)["s"]


def test_trim_drops_only_records_still_in_the_index(
    redis_client: redis.Redis, queue_name: str
) -> None:
    """Retention's trim takes ids read earlier: one that left the index meanwhile (replayed
    by an operator, trimmed by another worker) keeps its record; the rest go, index entry
    and record together, in slices (here 2,500 ids: three slices)."""
    from streamq._driver import SyncDriver
    from streamq.protocol import worker as wops

    keys = QueueKeys(queue_name)
    ids = [f"job-{i}" for i in range(2500)]
    pipe = redis_client.pipeline(transaction=False)
    for i, job_id in enumerate(ids):
        pipe.zadd(keys.completed, {job_id: i})
        pipe.hset(keys.job(job_id), mapping={"s": "completed"})
    pipe.execute()
    replayed = ids[1200]
    redis_client.zrem(keys.completed, replayed)  # left the index after the ids were read
    driver = SyncDriver(redis_client, "test")
    assert driver.run(wops.trim(keys, keys.completed, ids[:2000])) == 1999
    assert redis_client.exists(keys.job(replayed)) == 1
    assert redis_client.exists(keys.job(ids[0]), keys.job(ids[1999])) == 0
    assert redis_client.zrange(keys.completed, 0, -1) == [i.encode() for i in ids[2000:]]
    assert redis_client.exists(keys.job(ids[2000])) == 1
    # Trimming the same ids again removes nothing (a racing trimmer).
    assert driver.run(wops.trim(keys, keys.completed, ids[:2000])) == 0
    assert driver.run(wops.trim(keys, keys.completed, [])) == 0
