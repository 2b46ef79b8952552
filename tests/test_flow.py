"""Flow control: job keys, fairness across keys, priorities, per-key concurrency, rate
limits and handler-driven back-off (``RateLimited``), on real servers."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis
from _worker_support import run_burst, run_until, settings

import streamq
from streamq.protocol.keys import QueueKeys
from streamq.worker import App, Worker

app = App()
#: What the handlers saw, per test run: (job id, key, priority, attempt, start, end).
RUNS: list[tuple[str, str | None, int, int, float, float]] = []
_running: dict[str | None, int] = defaultdict(int)
MAX_RUNNING: dict[str | None, int] = defaultdict(int)
#: Job ids whose first run raises RateLimited (with the data's retry_after / key_wide).
LIMITED_ONCE: set[str] = set()


@app.handler("work")
async def work(job: streamq.Job) -> None:
    start = time.monotonic()
    _running[job.key] += 1
    MAX_RUNNING[job.key] = max(MAX_RUNNING[job.key], _running[job.key])
    try:
        if job.id in LIMITED_ONCE:
            LIMITED_ONCE.discard(job.id)
            d = job.data or {}
            raise streamq.RateLimited(
                "429", retry_after=d.get("retry_after", 0.2), key_wide=d.get("key_wide", False)
            )
        ms = (job.data or {}).get("ms", 0)
        if ms:
            await asyncio.sleep(ms / 1000)
    finally:
        _running[job.key] -= 1
    RUNS.append((job.id, job.key, job.priority, job.attempt, start, time.monotonic()))


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()
    _running.clear()
    MAX_RUNNING.clear()
    LIMITED_ONCE.clear()


def set_limit(
    client: redis.Redis,
    queue: str,
    pattern: str,
    *,
    rate: int | None = None,
    period_ms: int | None = None,
    concurrency: int | None = None,
    shared: bool = False,
) -> None:
    rule = {
        "pattern": pattern,
        "shared": shared,
        "rate": rate,
        "period_ms": period_ms,
        "concurrency": concurrency,
    }
    field = f"{'shared' if shared else 'each'}|{pattern}"
    client.hset(QueueKeys(queue).limits, field, orjson.dumps(rule))


def _order(key: str | None = None) -> list[str]:
    return [r[0] for r in RUNS if key is None or r[1] == key]


def test_a_keyed_job_is_held_then_runs_with_its_key(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        r = p.enqueue(queue_name, "work", key="x:conn-42")
        assert r.state == "held" and r.created
        job = p.get_job(queue_name, r.job_id)
        assert job is not None and job.state == "held" and job.key == "x:conn-42"
        run_burst(Worker(app, [queue_name], settings=s))
        job = p.get_job(queue_name, r.job_id)
        assert job is not None and job.state == "completed" and job.attempt == 1
    assert RUNS[0][1] == "x:conn-42"
    keys = QueueKeys(queue_name)
    assert redis_client.zcard(keys.held) == 0
    assert not redis_client.hgetall(keys.inflight)


def test_bad_keys_and_priorities_are_refused_and_nothing_is_written(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        with pytest.raises(streamq.ConfigError, match="invalid job key"):
            p.enqueue(queue_name, "work", key="has space")
        with pytest.raises(streamq.ConfigError, match="priority"):
            p.enqueue(queue_name, "work", priority=10)
        with pytest.raises(streamq.ConfigError, match="priority"):
            p.enqueue(queue_name, "work", priority=True)  # type: ignore[arg-type]
        with pytest.raises(streamq.ConfigError, match="invalid job key"):
            p.enqueue_many(
                queue_name,
                [streamq.JobSpec("work", key="ok"), streamq.JobSpec("work", key="")],
            )
    assert redis_client.keys(f"sq:{{{queue_name}}}:*") == []


def test_keys_take_turns_so_a_big_key_does_not_delay_small_ones(
    redis_url: str, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        p.enqueue_many(queue_name, [streamq.JobSpec("work", key="big") for _ in range(300)])
        small = [f"small-{i}" for i in range(10)]
        for k in small:
            p.enqueue_many(queue_name, [streamq.JobSpec("work", key=k) for _ in range(3)])
        run_burst(Worker(app, [queue_name], settings=s, concurrency=1))
    order = [r[1] for r in RUNS]
    assert len(order) == 330
    last_small = max(i for i, k in enumerate(order) if k != "big")
    # Round-robin: 3 turns of 11 keys; the small keys are done within the first 33 jobs.
    assert last_small < 33, order[:40]


def test_higher_priority_runs_first_fifo_within_a_level(redis_url: str, queue_name: str) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        ids = {}
        for prio in (0, 3, 9, 3, 1):
            r = p.enqueue(queue_name, "work", priority=prio)
            ids.setdefault(prio, []).append(r.job_id)
        run_burst(Worker(app, [queue_name], settings=s, concurrency=1))
    assert [r[2] for r in RUNS] == [9, 3, 3, 1, 0]
    assert [r[0] for r in RUNS if r[2] == 3] == ids[3]


def test_weighted_mode_gives_low_priority_turns_too(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    redis_client.hset(QueueKeys(queue_name).flow, "mode", "weighted")
    with streamq.Producer(settings=s) as p:
        p.enqueue_many(queue_name, [streamq.JobSpec("work", priority=9) for _ in range(100)])
        p.enqueue_many(queue_name, [streamq.JobSpec("work", priority=1) for _ in range(100)])
        run_burst(Worker(app, [queue_name], settings=s, concurrency=1))
    first = [r[2] for r in RUNS[:60]]
    # Weights 10 : 2, so about 1 in 6 of the first jobs is low priority; strict gives 0.
    assert 5 <= first.count(1) <= 20, first


def test_at_most_k_jobs_of_a_key_run_at_once(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    set_limit(redis_client, queue_name, "refresh:*", concurrency=1)
    set_limit(redis_client, queue_name, "two:*", concurrency=2)
    with streamq.Producer(settings=s) as p:
        for k in ("refresh:a", "refresh:b", "two:c"):
            p.enqueue_many(
                queue_name, [streamq.JobSpec("work", {"ms": 30}, key=k) for _ in range(6)]
            )
        run_burst(Worker(app, [queue_name], settings=s, concurrency=20))
    assert len(RUNS) == 18
    assert MAX_RUNNING["refresh:a"] == 1 and MAX_RUNNING["refresh:b"] == 1
    assert MAX_RUNNING["two:c"] == 2
    assert not redis_client.hgetall(QueueKeys(queue_name).inflight)


def test_a_rate_limit_holds_jobs_until_the_window_allows_in_fifo_order(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    set_limit(redis_client, queue_name, "x:*", rate=3, period_ms=400)
    with streamq.Producer(settings=s) as p:
        ids = [
            p.enqueue(queue_name, "work", key="x:conn-1", max_retries=0).job_id for _ in range(9)
        ]
        p.enqueue(queue_name, "work", key="other")  # not limited
        run_burst(Worker(app, [queue_name], settings=s, concurrency=10))
        for i in ids:
            job = p.get_job(queue_name, i)
            assert job is not None and job.state == "completed" and job.attempt == 1
    starts = [r[4] for r in RUNS if r[1] == "x:conn-1"]
    assert _order("x:conn-1") == ids
    # No window of 400 ms holds more than 3 starts (a small margin for the clocks).
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] >= 0.38, starts
    assert int(redis_client.hget(QueueKeys(queue_name).stats, "rate_limited") or 0) > 0


def test_a_shared_limit_is_one_budget_for_every_matching_key(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    set_limit(redis_client, queue_name, "x:*", rate=4, period_ms=500, shared=True)
    with streamq.Producer(settings=s) as p:
        for k in ("x:a", "x:b", "x:c"):
            p.enqueue_many(queue_name, [streamq.JobSpec("work", key=k) for _ in range(3)])
        run_burst(Worker(app, [queue_name], settings=s, concurrency=10))
    starts = sorted(r[4] for r in RUNS)
    assert len(starts) == 9
    for i in range(len(starts) - 4):
        assert starts[i + 4] - starts[i] >= 0.48, starts


def test_rate_limited_waits_without_using_an_attempt(redis_url: str, queue_name: str) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        keyed = p.enqueue(queue_name, "work", {"retry_after": 0.3}, key="k", max_retries=0)
        plain = p.enqueue(queue_name, "work", {"retry_after": 0.3}, max_retries=0)
        LIMITED_ONCE.update({keyed.job_id, plain.job_id})
        t0 = time.monotonic()
        run_burst(Worker(app, [queue_name], settings=s))
        for r in (keyed, plain):
            job = p.get_job(queue_name, r.job_id)
            assert job is not None and job.state == "completed", job
            assert job.attempt == 1  # the limited run did not count
    assert all(r[4] - t0 >= 0.29 for r in RUNS), RUNS
    assert len(RUNS) == 2


def test_key_wide_rate_limited_holds_every_job_of_the_key(redis_url: str, queue_name: str) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        first = p.enqueue(queue_name, "work", {"retry_after": 0.5, "key_wide": True}, key="k")
        rest = [p.enqueue(queue_name, "work", key="k").job_id for _ in range(3)]
        other = p.enqueue(queue_name, "work", key="other").job_id
        LIMITED_ONCE.add(first.job_id)
        t0 = time.monotonic()
        run_burst(Worker(app, [queue_name], settings=s, concurrency=1))
    k_runs = [r for r in RUNS if r[1] == "k"]
    # The limited job keeps its place: first of its key once the wait is over.
    assert [r[0] for r in k_runs] == [first.job_id, *rest]
    assert all(r[4] - t0 >= 0.49 for r in k_runs)
    assert next(r for r in RUNS if r[0] == other)[4] - t0 < 0.45


def test_a_held_job_can_be_cancelled_or_moved_until_it_is_taken(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        a = p.enqueue(queue_name, "work", key="k").job_id
        b = p.enqueue(queue_name, "work", key="k").job_id
        p.cancel(queue_name, a)
        due = p.reschedule(queue_name, b, delay=60)
        job = p.get_job(queue_name, b)
        assert job is not None and job.state == "delayed" and job.due_at_ms == due
        p.reschedule(queue_name, b, delay=0)
        job = p.get_job(queue_name, b)
        assert job is not None and job.state == "held"
        run_burst(Worker(app, [queue_name], settings=s))
        assert [r[0] for r in RUNS] == [b]
        job = p.get_job(queue_name, a)
        assert job is not None and job.state == "cancelled"
    keys = QueueKeys(queue_name)
    assert redis_client.hlen(keys.held_data) == 0
    assert redis_client.zcard(keys.held_keys) == 0


def test_an_idle_worker_wakes_for_a_held_job(redis_url: str, queue_name: str) -> None:
    s = settings(redis_url, log_level="warning")

    async def scenario() -> None:
        w = Worker(app, [queue_name], settings=s, block_ms=5000)
        task = asyncio.create_task(w.run())
        await asyncio.sleep(0.3)  # the worker is blocked on its read by now
        t0 = time.monotonic()
        async with streamq.AsyncProducer(settings=s) as p:
            await p.enqueue(queue_name, "work", key="k")
        try:
            await asyncio.wait_for(_until(lambda: len(RUNS) == 1), 3)
        finally:
            w.stop()
            await task
        assert RUNS[0][4] - t0 < 1.0  # woken, not the 5 s block's timeout

    asyncio.run(scenario())


async def _until(pred: Any) -> None:
    while not pred():
        await asyncio.sleep(0.01)


def test_retries_of_a_keyed_job_come_back_under_flow_control(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    fails = App()
    seen: list[tuple[int, str | None]] = []

    @fails.handler("flaky")
    async def flaky(job: streamq.Job) -> None:
        seen.append((job.attempt, job.key))
        if job.attempt < 2:
            raise RuntimeError("first try fails")

    with streamq.Producer(settings=s) as p:
        jid = p.enqueue(queue_name, "flaky", key="k", backoff=streamq.Backoff("fixed", 50)).job_id
        w = Worker(fails, [queue_name], settings=s, promote_poll_ms=20)
        asyncio.run(run_until([w], lambda: len(seen) >= 2, what="the retry"))
        job = p.get_job(queue_name, jid)
    assert seen == [(1, "k"), (2, "k")]
    assert job is not None and job.state == "completed" and job.attempt == 2


def test_a_schedule_with_a_job_key_enqueues_held_jobs(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    set_limit(redis_client, queue_name, "refresh:*", concurrency=1)
    with streamq.Producer(settings=s) as p:
        p.add_schedule(
            queue_name,
            "refresh-conn-1",
            "work",
            every=3600,
            job_key="refresh:conn-1",
            priority=2,
            first_at=datetime.now(UTC),
        )
        sch = p.list_schedules(queue_name)[0]
        assert sch.job_key == "refresh:conn-1" and sch.priority == 2
        w = Worker(app, [queue_name], settings=s)
        asyncio.run(run_until([w], lambda: len(RUNS) == 1, what="the tick's job"))
    assert RUNS[0][1:3] == ("refresh:conn-1", 2)


def test_a_dead_keyed_job_replayed_from_the_dlq_is_held_again(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    dies = App()
    tries: list[str | None] = []

    @dies.handler("once")
    async def once(job: streamq.Job) -> None:
        tries.append(job.key)
        if len(tries) == 1:
            raise streamq.PermanentJobError("first run fails")

    with streamq.Producer(settings=s) as p:
        jid = p.enqueue(queue_name, "once", key="x:conn-1", priority=4).job_id
        run_burst(Worker(dies, [queue_name], settings=s))
        assert p.get_job(queue_name, jid).state == "failed"  # type: ignore[union-attr]
        assert p.replay_all_dead(queue_name) == 1
        job = p.get_job(queue_name, jid)
        assert job is not None and job.state == "held" and job.key == "x:conn-1"
        assert job.priority == 4
        run_burst(Worker(dies, [queue_name], settings=s))
        assert p.get_job(queue_name, jid).state == "completed"  # type: ignore[union-attr]
    assert tries == ["x:conn-1", "x:conn-1"]


def test_a_delayed_keyed_job_is_held_once_due_and_keeps_its_key(
    redis_url: str, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        r = p.enqueue(queue_name, "work", key="x:conn-7", delay=0.2)
        assert r.state == "delayed"
        w = Worker(app, [queue_name], settings=s, promote_poll_ms=20)
        asyncio.run(run_until([w], lambda: len(RUNS) == 1, what="the delayed keyed job"))
        job = p.get_job(queue_name, r.job_id)
    assert job is not None and job.state == "completed" and job.key == "x:conn-7"
    assert RUNS[0][1] == "x:conn-7"


def test_a_stopping_worker_leaves_no_flow_entry_behind(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        p.enqueue_many(queue_name, [streamq.JobSpec("work", key=f"k{i % 3}") for i in range(9)])
        run_burst(Worker(app, [queue_name], settings=s))
    keys = QueueKeys(queue_name)
    assert redis_client.xlen(keys.kstream) == 0
    assert redis_client.xinfo_consumers(keys.kstream, "streamq") == []


def test_rate_logs_of_idle_keys_are_pruned_and_live_windows_kept(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    from streamq._driver import SyncDriver
    from streamq.protocol import worker as wops

    keys = QueueKeys(queue_name)
    set_limit(redis_client, queue_name, "x:*", rate=100, period_ms=60_000)
    now = int(redis_client.time()[0]) * 1000
    old = [f"e\0x:*\0x:{i}\0{now - 120_000:015d}\0job{i}" for i in range(1200)]
    live = f"e\0x:*\0x:live\0{now:015d}\0jobL"
    gone = f"e\0y:*\0y:1\0{now:015d}\0jobY"  # its rule was removed
    redis_client.zadd(keys.rlog, {m: 0 for m in [*old, live, gone]})
    driver = SyncDriver(redis_client, "test")
    cursor, removed = "", 0
    while True:
        cursor, n = driver.run(wops.rlog_prune(keys, cursor))
        removed += n
        if not cursor:
            break
    assert removed == 1201
    assert redis_client.zrange(keys.rlog, 0, -1) == [live.encode()]


def test_held_and_running_flow_jobs_are_listed(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    from streamq.admin import Admin

    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        ids = [p.enqueue(queue_name, "work", key=f"k{i}").job_id for i in range(3)]
    with Admin(settings=s) as admin:
        held = admin.jobs(queue_name, "held")
        assert sorted(r.job_id for r in held) == sorted(ids)
        assert all(r.job is not None and r.job.state == "held" for r in held)


def test_every_idle_worker_joins_when_one_cannot_take_all(redis_url: str, queue_name: str) -> None:
    s = settings(redis_url, log_level="warning")
    two = App()

    @two.handler("slow")
    async def slow(job: streamq.Job) -> None:
        await asyncio.sleep(0.05)

    async def scenario() -> list[Worker]:
        workers = [
            Worker(two, [queue_name], settings=s, concurrency=2, block_ms=5000) for _ in range(2)
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        await asyncio.sleep(0.3)  # both blocked on their reads, having seen no flow work
        async with streamq.AsyncProducer(settings=s) as p:
            await p.enqueue_many(
                queue_name, [streamq.JobSpec("slow", key=f"k{i}") for i in range(40)]
            )
        try:
            await asyncio.wait_for(_until(lambda: sum(w.processed for w in workers) == 40), 10)
        finally:
            for w in workers:
                w.stop()
            await asyncio.gather(*tasks)
        return workers

    workers = asyncio.run(scenario())
    # 40 jobs of 50 ms on 2 + 2 slots: both workers took a fair part, none waited for a
    # 5 s block to end.
    assert all(w.processed >= 10 for w in workers), [w.processed for w in workers]


def test_one_take_serves_keys_in_ring_order_across_priority_levels(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    from streamq._driver import SyncDriver
    from streamq.protocol import worker as wops

    # Key a (two jobs) and b (one) at priority 5, c (one) at 1, taken in one call: a's
    # second job still runs before c's (a is back on the ring at priority 5), then c.
    s = settings(redis_url, log_level="warning")
    jobs = [("a1", "a", 5), ("a2", "a", 5), ("b1", "b", 5), ("c1", "c", 1)]
    with streamq.Producer(settings=s) as p:
        p.enqueue_many(
            queue_name, [streamq.JobSpec("work", job_id=i, key=k, priority=pr) for i, k, pr in jobs]
        )
    taken = SyncDriver(redis_client, "test").run(wops.take(QueueKeys(queue_name), "c", 10))
    assert [f.entry.job_id for f in taken.fetched if f.entry] == ["a1", "b1", "a2", "c1"]
