"""The asyncio twin: AsyncProducer runs the same operations through the async driver, so the
same guarantees are proven again on that code path (its own EVALSHA/NOSCRIPT handling, error
translation and flows). Workers run in the same event loop as the producer.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
import traceback
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aredis
from _producer_support import queue_keys, redis_now_ms
from _support import closed_port

from streamq import (
    AsyncProducer,
    AuthenticationFailedError,
    Backoff,
    ConfigError,
    ConnectionFailedError,
    InvalidStateError,
    Job,
    JobNotFoundError,
    JobSpec,
    JobState,
    PayloadError,
    QueueFullError,
    RedisSettings,
    Settings,
    WaitTimeoutError,
)
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.server import EmbeddedServer
from streamq.worker import App, Worker

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis=RedisSettings(url=redis_url))


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


def with_producer(settings: Settings, body: Callable[[AsyncProducer], Awaitable[T]]) -> T:
    async def main() -> T:
        async with AsyncProducer(settings=settings) as producer:
            return await body(producer)

    return run(main())


async def drain(app: App, queue: str, settings: Settings) -> None:
    await Worker(app, [queue], settings=settings).run(burst=True)


def recording_app() -> tuple[App, list[Any], dict[str, bool]]:
    app = App()
    calls: list[Any] = []
    flags = {"failing": True}

    async def ok(job: Job) -> Any:
        calls.append(job.data)
        return {"echo": job.data}

    async def boom(job: Job) -> Any:
        calls.append(job.data)
        if flags["failing"]:
            raise ValueError(f"bad token for {job.data}")
        return "fixed"

    app.register("ok", ok)
    app.register("boom", boom)
    return app, calls, flags


# ---------------------------------------------------------------------------- enqueue


def test_async_enqueue_returns_an_id_and_status_counts_it(
    settings: Settings, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    async def body(p: AsyncProducer) -> None:
        r = await p.enqueue(queue_name, "dispatch", {"post": 1})
        assert r.job_id and r.created and r.state is JobState.WAITING
        await p.enqueue(queue_name, "dispatch", {"post": 2}, delay=60)
        st = await p.status(queue_name)
        assert st.counts() == {
            "waiting": 1,
            "active": 0,
            "completed": 0,
            "failed": 0,
            "delayed": 1,
        }
        assert await p.ping() is True

    with_producer(settings, body)
    assert redis_client.xlen(keys.stream) == 1


def test_async_enqueue_on_a_pooled_connection_the_server_dropped_reconnects(
    settings: Settings, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    async def body(p: AsyncProducer) -> None:
        await p.enqueue(queue_name, "dispatch", 1)  # a connection now waits in the pool
        assert redis_client.client_kill_filter(_type="normal", skipme=True) >= 1
        r = await p.enqueue(queue_name, "dispatch", 2)
        assert r.created and redis_client.xlen(keys.stream) == 2

    with_producer(settings, body)


def test_async_call_cancelled_mid_read_leaves_no_stale_reply_for_the_next(
    settings: Settings,
    redis_client: redis.Redis,
    queue_name: str,
    keys: QueueKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from redis.asyncio.connection import AbstractConnection

    real_read = AbstractConnection.read_response
    cancelled: list[bool] = []

    async def read_once_cancelled(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        if not cancelled:
            cancelled.append(True)
            raise asyncio.CancelledError  # after the send: the server still answers this call
        return await real_read(self, *args, **kwargs)

    async def body(p: AsyncProducer) -> None:
        await p.enqueue(queue_name, "dispatch", 0)  # the producer keeps this connection parked
        monkeypatch.setattr(AbstractConnection, "read_response", read_once_cancelled)
        with pytest.raises(asyncio.CancelledError):
            await p.enqueue(queue_name, "dispatch", 1, job_id="cancelled")
        monkeypatch.undo()
        r = await p.enqueue(queue_name, "dispatch", 2, job_id="next")
        entries = {f[b"i"].decode(): e.decode() for e, f in redis_client.xrange(keys.stream)}
        assert (r.job_id, r.created, r.entry_id) == ("next", True, entries["next"])

    with_producer(settings, body)


def test_async_write_to_a_server_that_stopped_reading_times_out(
    server_factory: Callable[..., EmbeddedServer], queue_name: str
) -> None:
    srv = server_factory(profile="none")
    rs = RedisSettings(url=srv.url, socket_timeout=1.0)
    settings = Settings(redis=rs).with_changes(max_payload_bytes=2**21)
    # ~64 MB: more than the loopback socket buffers take while nobody reads.
    batch = [JobSpec("dispatch", "x" * 2**20) for _ in range(64)]

    async def main() -> None:
        async with AsyncProducer(settings=settings, retry_attempts=0) as p:
            await p.ping()
            assert srv.pid is not None
            os.kill(srv.pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                with pytest.raises(ConnectionFailedError):
                    await p.enqueue_many(queue_name, batch)
                assert time.monotonic() - t0 < 5  # bounded by the 1 s socket timeout
            finally:
                os.kill(srv.pid, signal.SIGCONT)
            assert (await p.enqueue(queue_name, "dispatch", 1)).created  # usable again

    run(main())
    # redis-py closes a connection whose write timed out without aborting its transport,
    # which is still "closing" (unsent data) when collected: expected here, not a leak.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_async_lost_reply_is_retried_without_adding_the_job_twice(
    settings: Settings,
    redis_client: redis.Redis,
    queue_name: str,
    keys: QueueKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from redis.asyncio.connection import AbstractConnection

    real_read = AbstractConnection.read_response
    lost: list[bool] = []

    async def lose_first_reply(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        reply = await real_read(self, *args, **kwargs)  # the script ran and answered...
        if not lost:
            lost.append(True)
            raise redis.ConnectionError("connection reset")  # ...but the answer is lost
        return reply

    async def body(p: AsyncProducer) -> None:
        await p.enqueue(queue_name, "dispatch", 0)
        monkeypatch.setattr(AbstractConnection, "read_response", lose_first_reply)
        r = await p.enqueue(queue_name, "dispatch", 1)  # redis-py sends it again
        monkeypatch.undo()
        assert lost
        ids = [f[b"i"].decode() for _, f in redis_client.xrange(keys.stream)]
        assert len(ids) == 2 and ids.count(r.job_id) == 1

    with_producer(settings, body)


def test_async_custom_job_id_deduplicates(
    settings: Settings, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    async def body(p: AsyncProducer) -> None:
        a = await p.enqueue(queue_name, "dispatch", 1, job_id="conn-9:refresh")
        b = await p.enqueue(queue_name, "dispatch", 2, job_id="conn-9:refresh")
        assert (a.created, b.created) == (True, False)
        [c, d] = await p.enqueue_many(
            queue_name, [JobSpec("dispatch", 3, job_id="x"), JobSpec("dispatch", 4, job_id="x")]
        )
        assert (c.created, d.created) == (True, False)

    with_producer(settings, body)
    assert redis_client.xlen(keys.stream) == 2


def test_async_delay_is_due_on_the_redis_clock(
    settings: Settings,
    redis_client: redis.Redis,
    queue_name: str,
    keys: QueueKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 7200)  # this host is two hours slow

    r = with_producer(settings, lambda p: p.enqueue(queue_name, "dispatch", {}, delay=45))
    now = redis_now_ms(redis_client)
    score = redis_client.zscore(keys.delayed, r.job_id)
    assert score is not None and score == r.due_at_ms
    assert now + 45_000 - 1000 <= score <= now + 45_000


def test_async_enqueue_many_validates_the_whole_batch_before_writing(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    settings = Settings(redis=RedisSettings(url=redis_url), max_payload_bytes=64)

    async def body(p: AsyncProducer) -> None:
        with pytest.raises(PayloadError):
            await p.enqueue_many(
                queue_name,
                [JobSpec("dispatch", {"n": 1}), JobSpec("dispatch", "x" * 100)],
            )
        with pytest.raises(PayloadError):
            await p.enqueue_many(
                queue_name, [JobSpec("dispatch", {"n": 1}), JobSpec("dispatch", {1j})]
            )
        with pytest.raises(ConfigError):
            await p.enqueue_many(
                queue_name,
                [JobSpec("dispatch", 1), JobSpec("dispatch", 2, at=datetime(2031, 1, 1))],
            )

    with_producer(settings, body)
    assert queue_keys(redis_client, queue_name) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"queue": "bad queue"}, ConfigError),
        ({"job_id": "bad{id}"}, ConfigError),
        ({"at": datetime(2031, 1, 1, 9, 30)}, ConfigError),
        ({"data": object()}, PayloadError),
        ({"data": "y" * 600}, PayloadError),
    ],
    ids=["queue", "job-id", "naive-at", "unserialisable", "oversized"],
)
def test_async_bad_input_is_refused_and_nothing_is_written(
    redis_url: str,
    redis_client: redis.Redis,
    queue_name: str,
    kwargs: dict[str, Any],
    error: type[Exception],
) -> None:
    settings = Settings(redis=RedisSettings(url=redis_url), max_payload_bytes=512)
    kwargs = dict(kwargs)  # shared by both server kinds' runs
    queue = kwargs.pop("queue", queue_name)
    data = kwargs.pop("data", {})

    async def body(p: AsyncProducer) -> None:
        with pytest.raises(error):
            await p.enqueue(queue, "dispatch", data, **kwargs)

    with_producer(settings, body)
    assert queue_keys(redis_client, queue_name) == []


# ---------------------------------------------------------------------------- lifecycle


def test_async_get_job_before_and_after_processing(settings: Settings, queue_name: str) -> None:
    app, calls, _ = recording_app()

    async def body(p: AsyncProducer) -> None:
        r = await p.enqueue(queue_name, "ok", [3])
        before = await p.get_job(queue_name, r.job_id)
        assert before is not None and before.state is JobState.WAITING and before.attempt == 0
        await drain(app, queue_name, settings)
        after = await p.get_job(queue_name, r.job_id)
        assert after is not None
        assert after.state is JobState.COMPLETED and after.attempt == 1
        assert after.result == {"echo": [3]}
        assert after.finished_at_ms is not None and after.created_at_ms is not None
        assert await p.get_job(queue_name, "missing") is None

    with_producer(settings, body)
    assert calls == [[3]]


def test_async_cancel_and_reschedule(
    settings: Settings, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    app, calls, _ = recording_app()

    async def body(p: AsyncProducer) -> None:
        waiting = await p.enqueue(queue_name, "ok", "w")
        delayed = await p.enqueue(queue_name, "ok", "d", delay=120)
        moved = await p.enqueue(queue_name, "ok", "m", delay=120)
        await p.cancel(queue_name, waiting.job_id)
        await p.cancel(queue_name, delayed.job_id)
        with pytest.raises(InvalidStateError):
            await p.cancel(queue_name, delayed.job_id)
        with pytest.raises(JobNotFoundError):
            await p.cancel(queue_name, "ghost")

        due = await p.reschedule(queue_name, moved.job_id, delay=300)
        now = redis_now_ms(redis_client)
        assert now + 299_000 <= due <= now + 300_000
        assert redis_client.zscore(keys.delayed, moved.job_id) == due
        at = datetime(2020, 6, 1, tzinfo=UTC)
        await p.reschedule(queue_name, moved.job_id, at=at)  # past: ready at once
        with pytest.raises(ConfigError):
            await p.reschedule(queue_name, moved.job_id)
        with pytest.raises(InvalidStateError):
            await p.reschedule(queue_name, moved.job_id, delay=5)  # waiting now

        await drain(app, queue_name, settings)
        done = await p.get_job(queue_name, moved.job_id)
        assert done is not None and done.state is JobState.COMPLETED
        for job_id in (waiting.job_id, delayed.job_id):
            job = await p.get_job(queue_name, job_id)
            assert job is not None and job.state is JobState.CANCELLED

    with_producer(settings, body)
    assert calls == ["m"]


def test_async_wait_sees_a_job_finish_while_waiting(
    settings: Settings, redis_url: str, queue_name: str
) -> None:
    app = App()
    gate = asyncio.Event()

    async def gated(job: Job) -> str:
        await asyncio.wait_for(gate.wait(), 15)
        return "late"

    app.register("gated", gated)

    async def open_gate_once_the_waiter_blocks() -> None:
        admin = aredis.Redis.from_url(redis_url)
        try:
            deadline = time.monotonic() + 10
            while True:
                clients = await admin.client_list()
                if any(c["cmd"] == "xread" and "b" in c["flags"] for c in clients):
                    break
                assert time.monotonic() < deadline, "wait() never blocked on the events"
                await asyncio.sleep(0.01)
        finally:
            gate.set()
            await admin.aclose()

    async def body(p: AsyncProducer) -> Job:
        r = await p.enqueue(queue_name, "gated", None)
        job, _, _ = await asyncio.gather(
            p.wait(queue_name, r.job_id, timeout=15),
            drain(app, queue_name, settings),
            open_gate_once_the_waiter_blocks(),
        )
        return job

    job = with_producer(settings, body)
    assert job.state is JobState.COMPLETED and job.result == "late"


def test_async_wait_returns_finished_jobs_and_times_out(
    settings: Settings, queue_name: str
) -> None:
    app, _, _ = recording_app()

    async def body(p: AsyncProducer) -> None:
        done = await p.enqueue(queue_name, "ok", 5)
        await drain(app, queue_name, settings)
        job = await p.wait(queue_name, done.job_id, timeout=2)
        assert job.result == {"echo": 5}

        stuck = await p.enqueue(queue_name, "ok", 6, delay=3600)
        t0 = time.monotonic()
        with pytest.raises(WaitTimeoutError):
            await p.wait(queue_name, stuck.job_id, timeout=0.25)
        assert 0.25 <= time.monotonic() - t0 < 3
        with pytest.raises(JobNotFoundError):
            await p.wait(queue_name, "ghost", timeout=0.25)

    with_producer(settings, body)


def test_async_wait_longer_than_the_socket_timeout_is_not_a_connection_error(
    redis_url: str, queue_name: str
) -> None:
    settings = Settings(redis=RedisSettings(url=redis_url, socket_timeout=0.3))

    async def body(p: AsyncProducer) -> None:
        r = await p.enqueue(queue_name, "dispatch", {})
        with pytest.raises(WaitTimeoutError):
            await p.wait(queue_name, r.job_id, timeout=0.8)

    with_producer(settings, body)


def test_async_dead_letters_replay_and_purge(settings: Settings, queue_name: str) -> None:
    app, calls, flags = recording_app()

    async def body(p: AsyncProducer) -> None:
        ids = [
            (
                await p.enqueue(
                    queue_name, "boom", f"t{i}", max_retries=1, backoff=Backoff.fixed(10)
                )
            ).job_id
            for i in range(3)
        ]
        await drain(app, queue_name, settings)
        dead = await p.dead_letters(queue_name)
        assert sorted(d.job_id for d in dead) == sorted(ids)
        assert all(d.attempts == 2 and d.error.startswith("ValueError: bad token") for d in dead)
        assert all("Traceback" in d.traceback for d in dead)

        flags["failing"] = False
        assert await p.replay_dead(queue_name, dead[0].dead_id) is True
        seen: list[int] = []
        assert await p.replay_all_dead(queue_name, progress=seen.append) == 2
        assert seen == [2]
        assert await p.dead_letters(queue_name) == []
        await drain(app, queue_name, settings)
        for job_id in ids:
            job = await p.get_job(queue_name, job_id)
            assert job is not None and job.state is JobState.COMPLETED

        flags["failing"] = True
        await p.enqueue(queue_name, "boom", "again", max_retries=0)
        await drain(app, queue_name, settings)
        assert await p.purge_dead(queue_name) == 1
        assert await p.dead_letters(queue_name) == []
        assert (await p.status(queue_name)).dead == 0

    with_producer(settings, body)
    assert len(calls) == 3 * 2 + 3 + 1


# ---------------------------------------------------------------------------- failures


def test_async_queue_full_raises_queue_full_error(
    server_factory: Callable[..., EmbeddedServer], queue_name: str
) -> None:
    srv = server_factory(maxmemory="2mb", profile="none")
    keys = QueueKeys(queue_name)

    async def main() -> int:
        async with AsyncProducer(srv.url) as p:
            for i in range(100):
                try:
                    await p.enqueue(queue_name, "dispatch", "z" * 100_000, job_id=f"j{i}")
                except QueueFullError:
                    return i
        raise AssertionError("never full")

    refused = run(main())
    client = redis.Redis.from_url(srv.url)
    assert not client.exists(keys.job(f"j{refused}"))
    assert client.xlen(keys.stream) == refused
    client.close()


def test_async_wrong_password_raises_authentication_failed_without_echoing_it(
    server: EmbeddedServer, queue_name: str
) -> None:
    secret = "not-the-Right-one-42"

    async def main() -> BaseException:
        url = f"redis://:{secret}@{server.host}:{server.port}/0"
        async with AsyncProducer(url) as p:
            assert secret not in repr(p)
            with pytest.raises(AuthenticationFailedError) as info:
                await p.enqueue(queue_name, "dispatch", {})
            return info.value

    t0 = time.monotonic()
    exc = run(main())
    assert time.monotonic() - t0 < 2.0
    assert secret not in "".join(traceback.format_exception(exc))


def test_async_unreachable_server_raises_connection_failed_within_the_budget(
    queue_name: str,
) -> None:
    secret = "Unreachable-pw-7"
    port = closed_port()

    async def main() -> BaseException:
        async with AsyncProducer(f"redis://:{secret}@127.0.0.1:{port}/0", retry_attempts=2) as p:
            with pytest.raises(ConnectionFailedError) as info:
                await p.get_job(queue_name, "x")
            return info.value

    t0 = time.monotonic()
    exc = run(main())
    assert time.monotonic() - t0 < 3.0
    assert f"127.0.0.1:{port}" in str(exc)
    assert secret not in "".join(traceback.format_exception(exc))


def test_async_fetched_job_cannot_be_cancelled(
    settings: Settings, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    async def body(p: AsyncProducer) -> None:
        r = await p.enqueue(queue_name, "dispatch", {})
        redis_client.xreadgroup(GROUP, "someone", {keys.stream: ">"}, count=1)
        job = await p.get_job(queue_name, r.job_id)
        assert job is not None and job.state is JobState.ACTIVE and job.worker == "someone"
        with pytest.raises(InvalidStateError):
            await p.cancel(queue_name, r.job_id)

    with_producer(settings, body)
