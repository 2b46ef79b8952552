"""Leases: a live slow job is never stolen (renewal), a stalled worker cannot steal it back,
and a worker that lost its lease cannot record a result (fencing).

In-process workers on the session servers (redis7 and valkey8)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
from _worker_support import (
    LogCapture,
    await_until,
    capture_logs,
    job_hash,
    pel,
    run_burst,
    run_until,
    settings,
)
from apps import app, runs

import streamq
from streamq.protocol.keys import GROUP
from streamq.worker import maintenance
from streamq.worker.runner import Worker


async def _no_renewal(w: Worker) -> None:
    await asyncio.Event().wait()


def _long_job_scenario(
    redis_url: str,
    client: redis.Redis,
    queue: str,
    n_workers: int,
    max_stalls: int,
) -> tuple[str, list[tuple[str, int]]]:
    """Run a 2 s job under a 500 ms lease with ``n_workers`` workers; return the job id and
    (consumer, deliveries) of its PEL entry sampled while it ran."""
    with streamq.Producer(redis_url) as p:
        job_id = p.enqueue(queue, "sleep", {"ms": 2000}, max_retries=0).job_id
    s = settings(redis_url, lease_ms=500, max_stalls=max_stalls, shutdown_grace_ms=100)
    samples: list[tuple[str, int]] = []

    def sample_until_done() -> bool:
        samples.extend((e["consumer"], e["deliveries"]) for e in pel(client, queue))
        return job_hash(client, queue, job_id).get("s") in ("completed", "failed")

    async def main() -> None:
        # concurrency 1: the worker running the job has no free slot, so its own reclaim
        # sweep cannot touch the entry; only renewal keeps it from the idle worker.
        workers = [Worker(app, [queue], settings=s, concurrency=1) for _ in range(n_workers)]
        await run_until(workers, sample_until_done, timeout=12, what="the job to finish")

    asyncio.run(main())
    return job_id, samples


def test_a_job_longer_than_its_lease_is_renewed_and_runs_once(
    redis_url: str, redis_client: redis.Redis, queue_name: str, ledger: Path
) -> None:
    job_id, samples = _long_job_scenario(redis_url, redis_client, queue_name, 2, max_stalls=5)
    assert runs(ledger)[job_id] == 1
    assert len(samples) > 20  # it was watched for the whole 2 s
    assert {d for _, d in samples} == {1}  # never re-delivered
    assert len({c for c, _ in samples}) == 1  # never changed hands
    assert job_hash(redis_client, queue_name, job_id)["s"] == "completed"


def test_without_renewal_the_same_job_is_stolen_proving_the_test_can_fail(
    redis_url: str,
    redis_client: redis.Redis,
    queue_name: str,
    ledger: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(maintenance, "renew_loop", _no_renewal)
    job_id, samples = _long_job_scenario(redis_url, redis_client, queue_name, 2, max_stalls=1)
    assert runs(ledger)[job_id] >= 2
    assert max(d for _, d in samples) >= 2


def test_a_worker_never_reclaims_a_job_it_is_still_running(
    redis_url: str,
    redis_client: redis.Redis,
    queue_name: str,
    ledger: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker whose renewals lapse (event loop blocked, Redis outage longer than the
    # lease, Redis restarted) finds its own running entries idle past the lease. Taking
    # them over must not start a second copy in the same process, nor count a stall.
    monkeypatch.setattr(maintenance, "renew_loop", _no_renewal)
    with streamq.Producer(redis_url) as p:
        job_id = p.enqueue(queue_name, "sleep", {"ms": 1500}, max_retries=0).job_id
    s = settings(redis_url, lease_ms=300, max_stalls=1)
    with capture_logs() as logs:
        run_burst(Worker(app, [queue_name], settings=s, concurrency=2))
    assert runs(ledger)[job_id] == 1
    rec = job_hash(redis_client, queue_name, job_id)
    assert rec["s"] == "completed", rec
    assert logs.named("dead") == [] and logs.named("fenced") == []


@pytest.mark.parametrize("name", ["gated", "gated_fail"])
def test_a_worker_that_lost_its_lease_cannot_record_its_result(
    name: str,
    redis_url: str,
    redis_client: redis.Redis,
    queue_name: str,
    ledger: Path,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    with streamq.Producer(redis_url) as p:
        job_id = p.enqueue(queue_name, name, {"gate": str(gate)}, max_retries=3).job_id
    stream = f"sq:{{{queue_name}}}:stream"
    # concurrency 1: no free slot, so the worker's own reclaim loop cannot take it back.
    s = settings(redis_url, lease_ms=1500, shutdown_grace_ms=200)
    worker = Worker(app, [queue_name], settings=s, concurrency=1)

    async def main(logs: LogCapture) -> None:
        task = asyncio.create_task(worker.run())
        try:
            held = await await_until(
                lambda: [e for e in pel(redis_client, queue_name) if e["consumer"]], 10
            )
            assert held[0]["consumer"] == worker.consumer
            eid = held[0]["entry_id"]
            # Another worker takes the job over (as XAUTOCLAIM would after a lease expiry).
            redis_client.xclaim(stream, GROUP, "thief", 0, [eid])
            # Renewal notices the loss and does not steal it back.
            await await_until(lambda: logs.named("lease_lost", job_id=job_id), 5, what="loss")
            assert [e["consumer"] for e in pel(redis_client, queue_name)] == ["thief"]
            gate.touch()
            await await_until(lambda: logs.named("fenced", job_id=job_id), 5, what="fenced")
        finally:
            gate.touch()
            worker.stop()
            await asyncio.wait_for(task, 10)

    with capture_logs() as logs:
        asyncio.run(main(logs))

    assert runs(ledger)[job_id] == 1
    # The record is untouched by the zombie: not completed, not failed, no retry, no DLQ.
    rec = job_hash(redis_client, queue_name, job_id)
    assert rec["s"] == "waiting"
    assert "w" not in rec and "r" not in rec and "e" not in rec
    assert redis_client.zscore(f"sq:{{{queue_name}}}:completed", job_id) is None
    assert redis_client.zcard(f"sq:{{{queue_name}}}:delayed") == 0
    assert redis_client.xlen(f"sq:{{{queue_name}}}:dead") == 0
    # The new owner still holds the entry: it can finish the job.
    assert [(e["consumer"], e["entry_id"]) for e in pel(redis_client, queue_name)] == [
        ("thief", rec["x"])
    ]
    assert logs.named("completed") == [] and logs.named("dead") == []
    assert logs.named("retrying") == []
