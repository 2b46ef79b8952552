"""What a handler can tell the worker: retry after a delay it knows (``RetryJobError``), its
own defaults for retries/backoff/timeout (``@app.handler(..., max_retries=...)``), and what
happens to sync handlers that outlive their time limit."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
import pytest
import redis
from _support import redis_now_ms
from _worker_support import await_until, run_burst, run_until, settings

import streamq
from streamq.job import EXPLICIT_ALL, EXPLICIT_RETRIES
from streamq.protocol.keys import QueueKeys
from streamq.worker import App, Worker

app = App()


@app.handler("rate-limited")
async def rate_limited(job: streamq.Job) -> None:
    raise streamq.RetryJobError("HTTP 429 from the platform", delay=40)


def test_a_retry_job_error_waits_its_own_delay_instead_of_the_backoff(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    keys = QueueKeys(queue_name)
    with streamq.Producer(settings=s) as p:
        job_id = p.enqueue(queue_name, "rate-limited", max_retries=2).job_id
        before = redis_now_ms(redis_client)
        w = Worker(app, [queue_name], settings=s)
        asyncio.run(
            run_until([w], lambda: redis_client.zscore(keys.delayed, job_id), what="the retry")
        )
        after = redis_now_ms(redis_client)
        due = redis_client.zscore(keys.delayed, job_id)
        assert due is not None
        assert before + 40_000 <= due <= after + 40_000
        job = p.get_job(queue_name, job_id)
        assert job is not None and job.state == "delayed" and job.attempt == 1
        assert job.error is not None and "retry after 40 s" in job.error


def test_a_retry_job_error_past_max_retries_is_dead(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        job_id = p.enqueue(queue_name, "rate-limited", max_retries=0).job_id
        run_burst(Worker(app, [queue_name], settings=s))
        job = p.get_job(queue_name, job_id)
        assert job is not None and job.state == "failed"
        assert job.error is not None and job.error.startswith("RetryJobError: HTTP 429")
        assert [d.job_id for d in p.dead_letters(queue_name)] == [job_id]


def test_a_retry_job_error_refuses_a_bad_delay() -> None:
    for bad in (-1, float("nan"), float("inf"), "5", True):
        try:
            streamq.RetryJobError("x", delay=bad)  # type: ignore[arg-type]
        except streamq.ConfigError as exc:
            assert "delay" in str(exc)
        else:
            raise AssertionError(f"delay={bad!r} was accepted")


# ---------------------------------------------------------------------- handler defaults

defaults_app = App()


@defaults_app.handler("no-retries", max_retries=0)
async def no_retries(job: streamq.Job) -> None:
    raise RuntimeError("fails every time")


@defaults_app.handler("quick-retry", backoff=streamq.Backoff.fixed(30_000))
async def quick_retry(job: streamq.Job) -> None:
    raise RuntimeError("fails every time")


@defaults_app.handler("slow", timeout=0.2)
async def slow(job: streamq.Job) -> str:
    await asyncio.sleep(float(job.data))
    return "finished"


def _due_in_ms(client: redis.Redis, keys: QueueKeys, job_id: str) -> float:
    due = client.zscore(keys.delayed, job_id)
    assert due is not None, f"{job_id} is not delayed"
    return due - redis_now_ms(client)


def test_handler_defaults_apply_to_jobs_that_did_not_set_the_option(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    # The producer's own defaults (STREAMQ_MAX_RETRIES=5 here) are what a handler's
    # defaults replace; an option given to enqueue() itself is never replaced.
    s = settings(redis_url, log_level="warning", max_retries=5)
    keys = QueueKeys(queue_name)
    with streamq.Producer(settings=s) as p:
        dead = p.enqueue(queue_name, "no-retries").job_id
        kept = p.enqueue(queue_name, "no-retries", max_retries=2).job_id
        fixed = p.enqueue(queue_name, "quick-retry").job_id
        own = p.enqueue(queue_name, "quick-retry", backoff=streamq.Backoff.fixed(90_000)).job_id
        timed = p.enqueue(queue_name, "slow", 5).job_id
        fast = p.enqueue(queue_name, "slow", 0, timeout=10).job_id
        quick_enough = p.enqueue(queue_name, "slow", 0.5, timeout=10, max_retries=0).job_id

        def settled() -> bool:
            jobs = [p.get_job(queue_name, i) for i in (dead, kept, fixed, own, timed, fast)]
            done = p.get_job(queue_name, quick_enough)
            return all(j is not None and j.state != "waiting" and j.attempt for j in jobs) and (
                done is not None and done.state == "completed"
            )

        asyncio.run(
            run_until([Worker(defaults_app, [queue_name], settings=s)], settled, what="jobs")
        )
        states = {i: p.get_job(queue_name, i) for i in (dead, kept, timed, fast)}
    assert states[dead].state == "failed"  # type: ignore[union-attr]
    assert states[kept].state == "delayed"  # type: ignore[union-attr]
    assert 0 < _due_in_ms(redis_client, keys, fixed) <= 30_000
    assert 30_000 < _due_in_ms(redis_client, keys, own) <= 90_000
    # The handler's 0.2 s limit: the 5 s job timed out; the job's own 10 s let 0.5 s finish.
    assert states[timed].error == "timed out after 0.2 s"  # type: ignore[union-attr]
    assert states[fast].state == "completed"  # type: ignore[union-attr]


def test_a_handler_job_sees_the_options_it_runs_with(redis_url: str, queue_name: str) -> None:
    seen: list[streamq.JobOptions] = []
    local = App()

    @local.handler("look", max_retries=9, timeout=3)
    async def look(job: streamq.Job) -> None:
        seen.append(job.options)

    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        p.enqueue(queue_name, "look")
        p.enqueue(queue_name, "look", max_retries=1)
        run_burst(Worker(local, [queue_name], settings=s))
    assert sorted((o.max_retries, o.timeout_ms) for o in seen) == [(1, 3000), (9, 3000)]


@pytest.mark.parametrize(
    "options",
    [{"max_retries": -1}, {"max_retries": 10**30}, {"timeout": float("nan")}, {"backoff": 5}],
    ids=["negative", "huge", "nan-timeout", "not-a-backoff"],
)
def test_bad_handler_defaults_raise_config_error_naming_the_handler(
    options: dict[str, Any],
) -> None:
    with pytest.raises(streamq.ConfigError, match="handler 'x'"):
        App().register("x", no_retries, **options)


def test_options_stored_before_the_explicit_mask_keep_what_they_carry() -> None:
    # The 6-item form earlier versions wrote cannot say what the enqueuer set: it reads as
    # all given, so a job queued before an upgrade runs with exactly its options.
    legacy = b'[10,"f",250,1.0,0.0,3000]'
    opts = streamq.JobOptions.decode(legacy)
    assert opts.explicit == EXPLICIT_ALL
    assert opts.with_defaults(2, streamq.Backoff.fixed(9), 1) == opts
    assert streamq.JobOptions.decode(b"") == streamq.JobOptions()  # nothing given
    assert streamq.JobOptions.decode(b"").explicit == 0
    given = streamq.JobOptions(2, explicit=EXPLICIT_RETRIES)
    assert streamq.JobOptions.decode(given.encode()).explicit == EXPLICIT_RETRIES
    # A producer's own defaults (STREAMQ_MAX_RETRIES=5) are stored with an empty mask.
    env_default = streamq.JobOptions(5)
    assert streamq.JobOptions.decode(env_default.encode()).explicit == 0
    assert streamq.JobOptions(explicit=EXPLICIT_RETRIES).encode() != b""


# ---------------------------------------------------------------------- hung sync handlers

hung_app = App()
release = threading.Event()
threads_seen: set[str] = set()


@hung_app.handler("hang")
def hang(job: streamq.Job) -> str:
    threads_seen.add(threading.current_thread().name)
    release.wait(30)  # a handler that ignores its time limit (a call with no timeout)
    return "late"


@hung_app.handler("quick")
def quick(job: streamq.Job) -> str:
    threads_seen.add(threading.current_thread().name)
    return "ran"


def _health_and_metrics(s: streamq.Settings, queue: str) -> tuple[dict[str, Any], str]:
    from starlette.testclient import TestClient

    from streamq.web import create_app

    auth = {"Authorization": "Bearer t0ken-for-this-test"}
    with TestClient(create_app(s, queues={"q": queue}, api_token="t0ken-for-this-test")) as c:
        health = c.get("/api/queue/health", headers=auth)
        metrics = c.get("/metrics", headers=auth)
    assert health.status_code == 200 and metrics.status_code == 200
    return health.json(), metrics.text


def test_a_sync_handler_past_its_timeout_holds_its_slot_and_later_jobs_run_in_full(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    """Two hung handlers take both slots: later jobs wait in the queue (they neither run
    nor "time out" waiting for a thread) until a stuck thread returns; the stuck handlers
    are in the heartbeat meanwhile."""
    release.clear()
    threads_seen.clear()
    keys = QueueKeys(queue_name)
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        hung = [p.enqueue(queue_name, "hang", timeout=0.3, max_retries=0).job_id for _ in "ab"]
        w = Worker(hung_app, [queue_name], settings=s, concurrency=2)

        def beat() -> dict[str, Any]:
            raw = redis_client.hget(keys.workers, w.consumer)
            return orjson.loads(raw) if raw else {}

        async def scenario() -> None:
            task = asyncio.create_task(w.run())
            try:
                await await_until(
                    lambda: all(p.get_job(queue_name, i).state == "failed" for i in hung),  # type: ignore[union-attr]
                    what="both hung jobs to time out",
                )
                assert len(w.stuck) == 2
                later = [p.enqueue(queue_name, "quick", timeout=0.3).job_id for _ in range(3)]
                info = await await_until(
                    lambda: (b := beat()).get("stuck_count") == 2 and b, what="the heartbeat"
                )
                assert {h["job_id"] for h in info["stuck"]} == set(hung)
                assert all(h["timeout_ms"] == 300 for h in info["stuck"])
                # Operators see them: health says degraded (still 200), /metrics counts them.
                health, metrics = await asyncio.to_thread(_health_and_metrics, s, queue_name)
                assert health["status"] == "degraded"
                assert health["stuck_handlers"] == {"q": 2} and health["workers"] == {"q": 1}
                assert f'streamq_stuck_handlers{{queue="{queue_name}"}} 2.0' in metrics
                # Both slots are held: the new jobs stay waiting, untouched.
                await asyncio.sleep(0.8)  # several fetch rounds; nothing may start
                assert p.status(queue_name).waiting == 3
                assert all(p.get_job(queue_name, i).attempt == 0 for i in later)  # type: ignore[union-attr]
                release.set()
                await await_until(
                    lambda: all(p.get_job(queue_name, i).state == "completed" for i in later),  # type: ignore[union-attr]
                    what="the later jobs",
                )
                assert all(p.get_job(queue_name, i).attempt == 1 for i in later)  # type: ignore[union-attr]
                assert w.stuck == []
                await await_until(lambda: beat().get("stuck_count") == 0, what="a clear beat")
            finally:
                release.set()
                w.stop()
                await task

        asyncio.run(scenario())
        for i in hung:
            job = p.get_job(queue_name, i)
            assert job is not None and job.error == "timed out after 0.3 s"
            assert job.result is None  # the late return is not recorded
    assert len(threads_seen) <= 2  # never more threads than slots


def test_a_job_without_a_timeout_runs_beside_a_stuck_handler(
    redis_url: str, queue_name: str
) -> None:
    release.clear()
    s = settings(redis_url, log_level="warning")
    with streamq.Producer(settings=s) as p:
        stuck = p.enqueue(queue_name, "hang", timeout=0.2, max_retries=0).job_id
        w = Worker(hung_app, [queue_name], settings=s, concurrency=2)

        async def scenario() -> None:
            task = asyncio.create_task(w.run())
            try:
                await await_until(lambda: len(w.stuck) == 1, what="a stuck handler")
                free = p.enqueue(queue_name, "quick").job_id  # no timeout at all
                await await_until(
                    lambda: p.get_job(queue_name, free).state == "completed",  # type: ignore[union-attr]
                    what="the job on the free slot",
                )
            finally:
                release.set()
                w.stop()
                await task

        asyncio.run(scenario())
        assert p.get_job(queue_name, stuck).state == "failed"  # type: ignore[union-attr]
