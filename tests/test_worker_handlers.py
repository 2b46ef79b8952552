"""What a handler can tell the worker: retry after a delay it knows (``RetryJobError``), its
own defaults for retries/backoff/timeout (``@app.handler(..., max_retries=...)``), and what
happens to sync handlers that outlive their time limit."""

from __future__ import annotations

import asyncio

import redis
from _worker_support import run_burst, run_until, settings

import streamq
from streamq.protocol.keys import QueueKeys
from streamq.worker import App, Worker

app = App()


@app.handler("rate-limited")
async def rate_limited(job: streamq.Job) -> None:
    raise streamq.RetryJobError("HTTP 429 from the platform", delay=40)


def _redis_now_ms(client: redis.Redis) -> int:
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def test_a_retry_job_error_waits_its_own_delay_instead_of_the_backoff(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    s = settings(redis_url, log_level="warning")
    keys = QueueKeys(queue_name)
    with streamq.Producer(settings=s) as p:
        job_id = p.enqueue(queue_name, "rate-limited", max_retries=2).job_id
        before = _redis_now_ms(redis_client)
        w = Worker(app, [queue_name], settings=s)
        asyncio.run(
            run_until([w], lambda: redis_client.zscore(keys.delayed, job_id), what="the retry")
        )
        after = _redis_now_ms(redis_client)
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
