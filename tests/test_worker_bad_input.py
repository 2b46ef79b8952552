"""Guarantee 6, no silent loss on bad input: an entry the worker cannot decode, a job with
no handler and a result JSON cannot carry all end in the DLQ with the reason, and the
worker keeps processing the good jobs after them.

In-process workers on the session servers (redis7 and valkey8)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from _worker_support import (
    capture_logs,
    entries,
    job_hash,
    pending_count,
    run_burst,
    settings,
)
from apps import app, runs

import streamq
from streamq.job import JobOptions
from streamq.protocol.keys import QueueKeys
from streamq.worker.runner import Worker

OPTS = JobOptions(max_retries=0).encode()


@pytest.fixture
def producer(redis_url: str) -> Iterator[streamq.Producer]:
    with streamq.Producer(redis_url) as p:
        yield p


# Entries XADDed by hand, as a foreign producer or a bug might: (fields, what the DLQ
# error must say). Invalid UTF-8 and wrong types included.
GARBAGE: list[tuple[dict[bytes, bytes], str]] = [
    ({b"x": b"y"}, "missing field b'i'"),
    ({b"i": b"\xff\xfe", b"n": b"noop", b"d": b"1", b"a": b"1", b"o": OPTS}, "malformed field"),
    ({b"i": b"g-name", b"n": b"\xc3\x28", b"d": b"1", b"a": b"1", b"o": OPTS}, "malformed field"),
    ({b"i": b"g-attempt", b"n": b"noop", b"d": b"1", b"a": b"many", b"o": OPTS}, "malformed"),
    ({b"i": b"g-zero", b"n": b"noop", b"d": b"1", b"a": b"0", b"o": OPTS}, "attempt < 1"),
    ({b"i": b"g-opts", b"n": b"noop", b"d": b"1", b"a": b"1", b"o": b"\xff"}, "undecodable"),
    ({b"i": b"g-opts2", b"n": b"noop", b"d": b"1", b"a": b"1", b"o": b"[1]"}, "6-item list"),
    ({b"i": b"g-data", b"n": b"noop", b"d": b"{nope", b"a": b"1", b"o": OPTS}, "undecodable"),
]


def test_undecodable_entries_go_to_the_dlq_and_the_worker_keeps_going(
    redis_url: str,
    redis_client: redis.Redis,
    producer: streamq.Producer,
    queue_name: str,
    ledger: Path,
) -> None:
    stream = QueueKeys(queue_name).stream
    before = [producer.enqueue(queue_name, "noop", i).job_id for i in range(3)]
    for fields, _ in GARBAGE:
        redis_client.xadd(stream, fields)  # type: ignore[arg-type]
    after = [producer.enqueue(queue_name, "noop", i).job_id for i in range(3)]

    worker = Worker(app, [queue_name], settings=settings(redis_url), concurrency=2)
    with capture_logs() as logs:
        run_burst(worker)

    # Every good job ran, once, before and after the garbage.
    assert runs(ledger) == dict.fromkeys(before + after, 1)
    for jid in before + after:
        job = producer.get_job(queue_name, jid)
        assert job is not None and job.state is streamq.JobState.COMPLETED
    # Every bad entry is in the DLQ with its reason; nothing is left in the stream or PEL.
    dead = producer.dead_letters(queue_name)
    assert len(dead) == len(GARBAGE)
    assert all(d.reason == "undecodable" for d in dead)
    for _, expected in GARBAGE:
        assert any(expected in d.error for d in dead), (expected, [d.error for d in dead])
    assert redis_client.xlen(stream) == 0
    assert pending_count(redis_client, queue_name) == 0
    assert len(logs.named("dead")) == len(GARBAGE)
    assert worker.processed == 6
    # An entry without a usable job id is kept as it came, raw fields included.
    raw = entries(redis_client, QueueKeys(queue_name).dead)
    first = next(f for _, f in raw if f.get(b"raw:x") == b"y")
    assert first[b"rs"] == b"undecodable" and b"src" in first
    # A job id in a stray entry creates no job record.
    assert job_hash(redis_client, queue_name, "g-attempt") == {}


def test_a_job_without_a_handler_goes_to_the_dlq_with_reason_no_handler(
    redis_url: str, producer: streamq.Producer, queue_name: str, ledger: Path
) -> None:
    lost = producer.enqueue(queue_name, "nobody_handles_this", {"k": 1}).job_id
    ok = producer.enqueue(queue_name, "noop", 2).job_id
    run_burst(Worker(app, [queue_name], settings=settings(redis_url)))

    job = producer.get_job(queue_name, lost)
    assert job is not None and job.state is streamq.JobState.FAILED
    assert job.dead_reason == "no-handler"
    assert job.error == "no handler registered for job name 'nobody_handles_this'"
    (dead,) = producer.dead_letters(queue_name)
    assert (dead.job_id, dead.reason, dead.data) == (lost, "no-handler", {"k": 1})
    # Not retried: no handler will appear by waiting (the default budget is 3 retries).
    assert dead.attempts == 1 and producer.status(queue_name).retried_total == 0
    assert runs(ledger) == {ok: 1}


def test_a_result_json_cannot_carry_is_dead_at_once_with_a_clear_error(
    redis_url: str, producer: streamq.Producer, queue_name: str, ledger: Path
) -> None:
    job_id = producer.enqueue(
        queue_name, "bad_result", max_retries=1, backoff=streamq.Backoff.fixed(10)
    ).job_id
    with capture_logs() as logs:
        run_burst(Worker(app, [queue_name], settings=settings(redis_url)))

    # The handler did its work; running it again would only repeat its side effects.
    assert runs(ledger)[job_id] == 1
    job = producer.get_job(queue_name, job_id)
    assert job is not None and job.state is streamq.JobState.FAILED
    assert job.dead_reason == "bad-result" and job.result is None
    assert job.error is not None
    assert f"result of job {job_id!r} is not JSON-serialisable" in job.error
    assert [e["event"] for e in logs.events if e.get("job_id") == job_id] == [
        "processing",
        "failed",
        "dead",
    ]


def test_a_stray_entry_naming_an_existing_job_does_not_touch_its_record(
    redis_url: str,
    redis_client: redis.Redis,
    producer: streamq.Producer,
    queue_name: str,
    ledger: Path,
) -> None:
    done = producer.enqueue(queue_name, "noop", "kept").job_id
    run_burst(Worker(app, [queue_name], settings=settings(redis_url)))
    before = job_hash(redis_client, queue_name, done)
    assert before["s"] == "completed"
    stream = QueueKeys(queue_name).stream
    fields = {b"i": done.encode(), b"n": b"noop", b"d": b"1", b"a": b"x", b"o": OPTS}
    redis_client.xadd(stream, fields)  # type: ignore[arg-type]

    run_burst(Worker(app, [queue_name], settings=settings(redis_url)))
    assert job_hash(redis_client, queue_name, done) == before  # still completed, same result
    (dead,) = producer.dead_letters(queue_name)
    assert dead.reason == "undecodable" and "malformed field" in dead.error
    assert producer.status(queue_name).failed == 0
    assert redis_client.xlen(stream) == 0 and pending_count(redis_client, queue_name) == 0


def test_a_corrupt_entry_of_a_real_job_marks_that_job_dead(
    redis_url: str,
    redis_client: redis.Redis,
    producer: streamq.Producer,
    queue_name: str,
    ledger: Path,
) -> None:
    # The job's record points at the corrupt entry (as if it had been written for it):
    # the job itself is dead, with the reason, rather than silently left waiting.
    job_id = producer.enqueue(queue_name, "noop", 1, delay=3600).job_id
    keys = QueueKeys(queue_name)
    fields = {b"i": job_id.encode(), b"n": b"noop", b"d": b"1", b"a": b"x", b"o": OPTS}
    eid = redis_client.xadd(keys.stream, fields)  # type: ignore[arg-type]
    redis_client.zrem(keys.delayed, job_id)
    redis_client.hset(keys.job(job_id), mapping={"s": "waiting", "x": eid})

    run_burst(Worker(app, [queue_name], settings=settings(redis_url)))
    job = producer.get_job(queue_name, job_id)
    assert job is not None and job.state is streamq.JobState.FAILED
    assert job.dead_reason == "undecodable"
    assert job.error is not None and "malformed field" in job.error
    (dead,) = producer.dead_letters(queue_name)
    assert (dead.job_id, dead.reason) == (job_id, "undecodable")
    assert runs(ledger) == {}
