"""streamq.admin: discovery, status, listings, DLQ, pause and the worker registry, against
real servers (one queue per test)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import orjson
import pytest
import redis
from _producer_support import run_burst
from _support import redis_now_ms

import streamq.worker
from streamq import AsyncProducer, Producer, RedisSettings, Settings
from streamq.admin import LIVE_WINDOW_MS, Admin, AsyncAdmin
from streamq.errors import ConfigError, JobNotFoundError
from streamq.protocol.keys import GROUP, QueueKeys


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Explicit settings: nothing from the environment (which may point at another Redis)."""
    return Settings(redis=RedisSettings(url=redis_url))


@pytest.fixture
def admin(settings: Settings) -> Iterator[Admin]:
    with Admin(settings=settings) as a:
        yield a


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    with Producer(settings=settings) as p:
        yield p


def test_sync_and_async_admin_expose_the_same_signatures() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            n: inspect.signature(f)
            for n, f in vars(cls).items()  # own methods: the shared base is sync by design
            if inspect.isfunction(f) and (not n.startswith("_") or n == "__init__")
        }

    sync, asyn = public(Admin), public(AsyncAdmin)
    assert sync.keys() == asyn.keys() and "status" in sync
    for name in sync:
        assert sync[name] == asyn[name], name
        is_coro = inspect.iscoroutinefunction(getattr(AsyncAdmin, name))
        assert is_coro == (name != "__init__"), name


def test_discover_finds_queues_by_their_stream_only(
    admin: Admin, producer: Producer, settings: Settings, queue_name: str
) -> None:
    with_colon = f"{queue_name}:sub"
    producer.enqueue(queue_name, "a", job_id="x:stream")  # a job key ending in ":stream"
    producer.enqueue(with_colon, "a", delay=3600)
    with Producer(settings=settings.with_changes(prefix="other")) as other:
        other.enqueue(f"{queue_name}-other", "a")

    found = admin.queues()

    assert queue_name in found and with_colon in found
    assert f"{queue_name}-other" not in found
    assert not any("stream" in q or "job" in q for q in found if q.startswith(queue_name))


def test_status_reports_counts_lag_oldest_age_paused_and_live_workers(
    admin: Admin, producer: Producer, redis_client: redis.Redis, queue_name: str
) -> None:
    for i in range(3):
        producer.enqueue(queue_name, "a", {"i": i})
    producer.enqueue(queue_name, "a", delay=3600)
    keys = QueueKeys(queue_name)
    now = redis_now_ms(redis_client)
    beat = {"host": "h", "pid": 1, "running": 0, "concurrency": 5}
    redis_client.hset(keys.workers, "live", orjson.dumps({**beat, "seen_ms": now}))
    old = now - LIVE_WINDOW_MS - 5000
    redis_client.hset(keys.workers, "dead", orjson.dumps({**beat, "seen_ms": old}))
    admin.pause(queue_name)

    (info,) = admin.status([queue_name])

    assert info.status == producer.status(queue_name)
    assert (info.status.waiting, info.status.delayed) == (3, 1)
    assert info.lag == 3
    assert info.oldest_waiting_age_ms is not None and 0 <= info.oldest_waiting_age_ms < 60_000
    assert info.paused is True
    assert info.workers == 1
    assert info.as_dict()["queue"] == queue_name
    assert any(i.queue == queue_name for i in admin.status())


def test_status_of_an_unknown_queue_is_all_zero(admin: Admin, queue_name: str) -> None:
    (info,) = admin.status([queue_name])
    assert info.status.counts() == dict.fromkeys(info.status.counts(), 0)
    assert (info.lag, info.oldest_waiting_age_ms, info.paused, info.workers) == (0, None, False, 0)
    assert admin.jobs(queue_name, "waiting") == []
    assert admin.jobs(queue_name, "active") == []


def test_jobs_lists_each_state_with_its_record(
    admin: Admin,
    producer: Producer,
    settings: Settings,
    redis_client: redis.Redis,
    queue_name: str,
) -> None:
    app = streamq.worker.App()
    app.register("ok", lambda job: "done")
    producer.enqueue(queue_name, "ok", job_id="done-1")
    producer.enqueue(queue_name, "missing", job_id="dead-1")
    run_burst(app, [queue_name], settings)
    producer.enqueue(queue_name, "ok", job_id="later-1", delay=3600)
    producer.enqueue(queue_name, "ok", job_id="taken-1")
    producer.enqueue(queue_name, "ok", job_id="queued-1")
    # A consumer takes the first waiting entry: it becomes active.
    stream = QueueKeys(queue_name).stream
    redis_client.xreadgroup(GROUP, "probe", {stream: ">"}, count=1)

    by_state = {s: admin.jobs(queue_name, s) for s in ("waiting", "active", "delayed")}
    by_state |= {s: admin.jobs(queue_name, s) for s in ("completed", "failed")}

    assert [e.job_id for e in by_state["waiting"]] == ["queued-1"]
    (active,) = by_state["active"]
    assert (active.job_id, active.consumer, active.deliveries) == ("taken-1", "probe", 1)
    assert active.job is not None and active.job.state.value == "active"
    (delayed,) = by_state["delayed"]
    assert delayed.job is not None and delayed.score_ms == delayed.job.due_at_ms
    (completed,) = by_state["completed"]
    assert completed.job is not None and completed.job.result == "done"
    (failed,) = by_state["failed"]
    assert failed.job is not None and failed.job.dead_reason == "no-handler"
    with pytest.raises(ConfigError, match="state must be one of"):
        admin.jobs(queue_name, "cancelled")


def test_workers_merge_heartbeats_with_group_consumers(
    admin: Admin, producer: Producer, redis_client: redis.Redis, queue_name: str
) -> None:
    keys = QueueKeys(queue_name)
    producer.enqueue(queue_name, "a")
    redis_client.xreadgroup(GROUP, "ghost", {keys.stream: ">"}, count=1)  # holds one entry
    now = redis_now_ms(redis_client)
    beat = {"host": "box", "pid": 42, "running": 1, "concurrency": 5, "started_ms": now - 9000}
    redis_client.hset(keys.workers, "alive-1", orjson.dumps({**beat, "seen_ms": now - 500}))
    redis_client.hset(keys.workers, "stale-1", orjson.dumps({**beat, "seen_ms": now - 60_000}))

    got = {w.name: w for w in admin.workers([queue_name])}

    assert {n: w.state for n, w in got.items()} == {
        "alive-1": "alive",
        "ghost": "gone",
        "stale-1": "stale",
    }
    alive = got["alive-1"]
    assert (alive.host, alive.pid, alive.running, alive.concurrency) == ("box", 42, 1, 5)
    assert alive.seen_age_ms is not None and 500 <= alive.seen_age_ms < 10_000
    assert got["ghost"].pending == 1 and got["ghost"].idle_ms is not None


def test_dead_letters_found_by_entry_or_job_id_and_replayed(
    admin: Admin, producer: Producer, settings: Settings, queue_name: str
) -> None:
    for i in range(3):
        producer.enqueue(queue_name, "missing", job_id=f"j{i}")
    run_burst(streamq.worker.App(), [queue_name], settings)
    entries = admin.dead_letters(queue_name)
    assert sorted(e.job_id for e in entries) == ["j0", "j1", "j2"]

    j1 = next(e for e in entries if e.job_id == "j1")
    assert admin.dead_letter(queue_name, j1.dead_id) == admin.dead_letter(queue_name, "j1") == j1
    assert admin.dead_letter(queue_name, "nope") is None

    assert admin.replay_dead(queue_name, "j0").job_id == "j0"
    with pytest.raises(JobNotFoundError):
        admin.replay_dead(queue_name, "j0")
    seen: list[int] = []
    assert admin.replay_all_dead(queue_name, progress=seen.append) == 2
    assert seen == [2]
    assert admin.dead_count(queue_name) == 0
    assert producer.status(queue_name).waiting == 3


def test_delete_dead_removes_one_entry_and_says_whether_it_was_there(
    admin: Admin, producer: Producer, settings: Settings, queue_name: str
) -> None:
    for i in range(2):
        producer.enqueue(queue_name, "missing", job_id=f"j{i}")
    run_burst(streamq.worker.App(), [queue_name], settings)
    first, second = admin.dead_letters(queue_name)
    assert admin.delete_dead(queue_name, first.dead_id) is True
    assert admin.delete_dead(queue_name, first.dead_id) is False
    assert admin.dead_letters(queue_name) == [second]
    assert producer.delete_dead(queue_name, second.dead_id) is True
    assert producer.dead_letters(queue_name) == []


def test_the_old_dlq_names_still_work_and_warn(
    admin: Admin, producer: Producer, settings: Settings, queue_name: str
) -> None:
    for i in range(3):
        producer.enqueue(queue_name, "missing", job_id=f"j{i}")
    run_burst(streamq.worker.App(), [queue_name], settings)
    with pytest.warns(DeprecationWarning, match="replay_dead"):
        assert admin.retry_dead(queue_name, "j0").job_id == "j0"
    with pytest.warns(DeprecationWarning, match="limit"):
        assert len(producer.dead_letters(queue_name, count=1)) == 1
    with pytest.warns(DeprecationWarning, match="limit"):
        assert len(producer.dead_letters(queue_name, 5)) == 2  # positional, as before
    with pytest.warns(DeprecationWarning, match="replay_all_dead"):
        assert admin.retry_all_dead(queue_name) == 2
    assert admin.dead_count(queue_name) == 0
    with pytest.warns(DeprecationWarning, match="get_job"):
        assert admin.job(queue_name, "j0") == admin.get_job(queue_name, "j0") is not None
    with pytest.warns(DeprecationWarning, match="list_schedules"):
        assert admin.schedules(queue_name) == admin.list_schedules(queue_name) == []


def test_pause_and_resume_say_whether_they_changed_anything(
    admin: Admin, redis_client: redis.Redis, queue_name: str
) -> None:
    key = QueueKeys(queue_name).paused
    assert admin.pause(queue_name) is True
    assert admin.pause(queue_name) is False
    assert redis_client.exists(key) == 1 and admin.is_paused(queue_name)
    assert admin.resume(queue_name) is True
    assert admin.resume(queue_name) is False
    assert redis_client.exists(key) == 0 and not admin.is_paused(queue_name)


def test_async_admin_reads_what_the_sync_one_reads(
    admin: Admin, producer: Producer, settings: Settings, queue_name: str
) -> None:
    producer.enqueue(queue_name, "a", job_id="one")

    async def read() -> tuple[object, ...]:
        async with AsyncAdmin(settings=settings) as a:
            (info,) = await a.status([queue_name])
            return (
                info.status,
                await a.jobs(queue_name, "waiting"),
                await a.get_job(queue_name, "one"),
            )

    status, jobs, job = asyncio.run(read())
    assert status == admin.status([queue_name])[0].status
    assert jobs == admin.jobs(queue_name, "waiting")
    assert job == admin.get_job(queue_name, "one")


def test_async_admin_and_producer_replay_and_delete_dead_entries(
    producer: Producer, settings: Settings, queue_name: str
) -> None:
    for i in range(3):
        producer.enqueue(queue_name, "missing", job_id=f"j{i}")
    run_burst(streamq.worker.App(), [queue_name], settings)

    async def steer() -> tuple[object, ...]:
        async with AsyncAdmin(settings=settings) as a, AsyncProducer(settings=settings) as p:
            replayed = await a.replay_dead(queue_name, "j0")
            first, _second = await p.dead_letters(queue_name, limit=10)
            deleted = await a.delete_dead(queue_name, first.dead_id)
            again = await p.delete_dead(queue_name, first.dead_id)
            with pytest.warns(DeprecationWarning, match="replay_all_dead"):
                moved = await a.retry_all_dead(queue_name)
            return replayed.job_id, deleted, again, moved, await a.dead_count(queue_name)

    assert asyncio.run(steer()) == ("j0", True, False, 1, 0)
    assert producer.status(queue_name).waiting == 2


def test_find_job_searches_every_queue_and_known_tells_used_names_from_typos(
    settings: Settings, queue_name: str
) -> None:
    """Under a prefix of its own: ``find_job`` returns each queue's record of the id (a
    queue with only a delayed job counts), ``known`` is False for a name nothing used."""
    s = settings.with_changes(prefix=queue_name)
    with Producer(settings=s) as p:
        p.enqueue("b", "x", job_id="same")
        p.enqueue("a", "x", job_id="same", delay=3600)
        p.enqueue("c", "x", job_id="other")
        p.dead_letters("c")  # a read leaves no trace

    async def read() -> tuple[list[str], bool, bool]:
        async with AsyncAdmin(settings=s) as a:
            found = [j.queue for j in await a.find_job("same")]
            return found, await a.known("a"), await a.known("nothing")

    with Admin(settings=s) as admin:
        assert [(j.queue, j.state.value) for j in admin.find_job("same")] == [
            ("a", "delayed"),
            ("b", "waiting"),
        ]
        assert admin.find_job("missing") == [] and admin.find_job("sam*") == []
        assert admin.known("a") and admin.known("c") and not admin.known("nothing")
        admin.pause("nothing")
        assert not admin.known("nothing")  # the paused flag alone is no trace of use
    assert asyncio.run(read()) == (["a", "b"], True, False)


def test_invalid_queue_names_are_refused_before_any_io(admin: Admin) -> None:
    with pytest.raises(ConfigError, match="invalid queue name"):
        admin.status(["bad name{}"])


def test_job_listings_skip_offset_rows_in_every_state(
    admin: Admin, producer: Producer, queue_name: str, redis_client: redis.Redis
) -> None:
    for n in range(4):
        producer.enqueue(queue_name, "ok", job_id=f"later-{n}", delay=3600 + n)
    for n in range(6):
        producer.enqueue(queue_name, "ok", job_id=f"queued-{n}")
    redis_client.xreadgroup(GROUP, "probe", {QueueKeys(queue_name).stream: ">"}, count=3)

    def ids(state: str, offset: int) -> list[str]:
        return [e.job_id for e in admin.jobs(queue_name, state, limit=2, offset=offset)]

    assert ids("delayed", 1) == ["later-1", "later-2"]  # soonest first
    assert ids("delayed", 4) == []
    assert ids("active", 1) == ["queued-1", "queued-2"]  # PEL order
    assert ids("waiting", 2) == ["queued-5"]
    with pytest.raises(ConfigError, match="offset must be >= 0"):
        admin.jobs(queue_name, "waiting", offset=-1)
