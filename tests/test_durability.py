"""Durable enqueues (WAITAOF): confirmed fsync in the same round trip, refused up front on
servers that cannot confirm."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import streamq
from streamq.protocol import jobs as job_ops
from streamq.protocol.keys import QueueKeys
from streamq.server import EmbeddedServer


def _commands(client: redis.Redis) -> dict[str, int]:
    return {k: int(v["calls"]) for k, v in client.info("commandstats").items()}


def _kind(srv: EmbeddedServer) -> str:
    name = "valkey" if srv.is_valkey else "redis"
    return f"{name} {'.'.join(map(str, srv.version))}"


def _spy_on_durable_flows(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """Record the round trips of each durable enqueue flow (the real one still runs):
    one list per flow, holding the reply of each batch it sent."""
    real: Callable[..., Any] = job_ops.durable_enqueue
    flows: list[list[Any]] = []

    def spy(*args: Any) -> Any:
        flow = real(*args)
        replies: list[Any] = []
        flows.append(replies)
        batch = next(flow)
        while True:
            reply = yield batch
            replies.append(reply)
            try:
                batch = flow.send(reply)
            except StopIteration as done:
                return done.value

    monkeypatch.setattr(job_ops, "durable_enqueue", spy)
    return flows


def _median_ms(fn: Callable[[], object], n: int = 25) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 3)


def test_a_durable_enqueue_waits_for_waitaof_in_the_same_round_trip(
    server_factory, queue_name: str, figures: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = server_factory(prefer="valkey")  # Valkey 8 has WAITAOF; AOF on (default profile)
    figures["server"] = _kind(srv)
    client = redis.Redis.from_url(srv.url)
    (fsync,) = client.config_get("appendfsync").values()
    figures["appendfsync"] = fsync.decode() if isinstance(fsync, bytes) else fsync
    flows = _spy_on_durable_flows(monkeypatch)
    with streamq.Producer(srv.url, durable=True) as p:
        p.enqueue(queue_name, "warmup")  # the one-time capability check happens here
        before = _commands(client)
        del flows[:]
        r = p.enqueue(queue_name, "send", {"n": 1})
        many = p.enqueue_many(queue_name, [streamq.JobSpec("send", i) for i in range(3)])
        after = _commands(client)
        figures["jobs"] = 1 + len(many)
        figures["enqueue_calls"] = len(flows)
        figures["round_trips_per_durable_enqueue"] = [len(f) for f in flows]
        # The last reply of each batch is WAITAOF's: [local fsyncs, replica fsyncs].
        figures["waitaof_replies"] = [[int(x) for x in f[-1][-1]] for f in flows]
        figures["commands_sent"] = {
            k.removeprefix("cmdstat_"): after[k] - before.get(k, 0)
            for k in sorted(after)
            if after[k] - before.get(k, 0) and k != "cmdstat_info"
        }
        # Timing, on a queue of its own (after the counts above were taken).
        timing_q = f"{queue_name}-timing"
        figures["durable_enqueue_median_ms"] = _median_ms(lambda: p.enqueue(timing_q, "send"))
        figures["plain_enqueue_median_ms"] = _median_ms(
            lambda: p.enqueue(timing_q, "send", durable=False)
        )
        figures["timed_enqueues_each"] = 25
    assert r.created and all(m.created for m in many)
    assert after["cmdstat_waitaof"] - before["cmdstat_waitaof"] == 2
    assert after["cmdstat_evalsha"] - before["cmdstat_evalsha"] == 2
    assert client.xlen(QueueKeys(queue_name).stream) == 5
    figures["stream_length"] = client.xlen(QueueKeys(queue_name).stream)
    client.close()


def test_durable_enqueue_is_refused_before_writing_on_redis_without_waitaof(
    server_factory, queue_name: str, figures: dict[str, Any]
) -> None:
    srv = server_factory(prefer="redis")  # Redis 7.0: no WAITAOF
    figures["server"] = _kind(srv)
    client = redis.Redis.from_url(srv.url)
    with streamq.Producer(srv.url) as p:
        before = _commands(client)
        with pytest.raises(streamq.ServerError, match="WAITAOF") as refused:
            p.enqueue(queue_name, "send", durable=True)
        after = _commands(client)
        figures["refused_with"] = str(refused.value)
        figures["scripts_run_before_refusal"] = after.get("cmdstat_evalsha", 0) - before.get(
            "cmdstat_evalsha", 0
        )
        figures["keys_after_refusal"] = len(client.keys(f"*{queue_name}*"))
        assert client.keys(f"*{queue_name}*") == []
        assert p.enqueue(queue_name, "send").created  # non-durable still works
        figures["plain_enqueue_after_refusal"] = "created"
    client.close()


def test_durable_enqueue_is_refused_when_aof_is_off(
    server_factory, queue_name: str, figures: dict[str, Any]
) -> None:
    srv = server_factory(prefer="valkey", profile="none")
    figures["server"] = _kind(srv)
    client = redis.Redis.from_url(srv.url)
    (appendonly,) = client.config_get("appendonly").values()
    figures["appendonly"] = appendonly.decode() if isinstance(appendonly, bytes) else appendonly

    async def scenario() -> None:
        async with streamq.AsyncProducer(srv.url, durable=True) as p:
            with pytest.raises(streamq.ServerError, match="appendonly") as refused:
                await p.enqueue(queue_name, "send")
            figures["refused_with"] = str(refused.value)

    asyncio.run(scenario())
    figures["keys_after_refusal"] = len(client.keys(f"*{queue_name}*"))
    figures["dbsize_after_refusal"] = client.dbsize()
    assert client.keys(f"*{queue_name}*") == []
    client.close()


def test_bad_durability_settings_are_refused() -> None:
    with pytest.raises(streamq.ConfigError):
        streamq.Producer("redis://127.0.0.1:1/0", durable=True, durable_timeout=0)


def test_a_durable_enqueue_after_aof_was_turned_off_raises_durability_error_with_its_ids(
    server_factory, queue_name: str, figures: dict[str, Any]
) -> None:
    """AOF turned off after the producer's one-time check: WAITAOF refuses, the job is
    written, and the caller gets a DurabilityError naming it (not redis-py's error)."""
    srv = server_factory(prefer="valkey")  # Valkey 8 has WAITAOF; AOF on (default profile)
    figures["server"] = _kind(srv)
    client = redis.Redis.from_url(srv.url)
    with streamq.Producer(srv.url, durable=True) as p:
        assert p.enqueue(queue_name, "send", {"n": 0}).created  # checked once, here
        client.config_set("appendonly", "no")
        with pytest.raises(streamq.DurabilityError, match="appendonly") as refused:
            p.enqueue(queue_name, "send", {"n": 1}, job_id="after-aof-off")
        figures["sync_error"] = str(refused.value)
        assert refused.value.job_ids == ["after-aof-off"]
        assert "written" in str(refused.value)
        job = p.get_job(queue_name, "after-aof-off")
        assert job is not None and job.data == {"n": 1}
        # The next durable enqueue checks the server again: refused before any write.
        with pytest.raises(streamq.ServerError, match="appendonly off"):
            p.enqueue(queue_name, "send", job_id="never-written")
        assert p.get_job(queue_name, "never-written") is None

    async def scenario() -> None:
        async with streamq.AsyncProducer(srv.url, durable=True) as ap:
            client.config_set("appendonly", "yes")
            assert (await ap.enqueue(queue_name, "send", {"n": 2})).created
            client.config_set("appendonly", "no")
            with pytest.raises(streamq.DurabilityError, match="appendonly") as refused:
                await ap.enqueue_many(
                    queue_name, [streamq.JobSpec("send", n, job_id=f"async-{n}") for n in (3, 4)]
                )
            figures["async_error"] = str(refused.value)
            assert refused.value.job_ids == ["async-3", "async-4"]
            assert all([await ap.get_job(queue_name, f"async-{n}") for n in (3, 4)])

    asyncio.run(scenario())
    figures["stream_length"] = client.xlen(QueueKeys(queue_name).stream)
    assert client.xlen(QueueKeys(queue_name).stream) == 5
    client.close()


def test_a_durable_enqueue_the_server_forgot_the_script_of_still_waits_after_its_write(
    server_factory, queue_name: str, figures: dict[str, Any]
) -> None:
    """SCRIPT FLUSH (or a restart) between two durable enqueues: the first pipeline's
    script is refused (NOSCRIPT) and its WAITAOF waits for nothing; the script sent again
    must take a WAITAOF of its own along, or its write is never confirmed."""
    srv = server_factory(prefer="valkey")
    client = redis.Redis.from_url(srv.url)
    with streamq.Producer(srv.url, durable=True) as p:
        p.enqueue(queue_name, "warmup")
        client.script_flush()
        before = _commands(client)
        assert p.enqueue(queue_name, "send").created
        after = _commands(client)
    sent = {
        k.removeprefix("cmdstat_"): after[k] - before.get(k, 0)
        for k in ("cmdstat_evalsha", "cmdstat_script|load", "cmdstat_waitaof")
    }
    figures["commands_sent_after_script_flush"] = sent
    # EVALSHA (NOSCRIPT) + WAITAOF, SCRIPT LOAD, then EVALSHA + WAITAOF again.
    assert sent == {"evalsha": 2, "script|load": 1, "waitaof": 2}
    client.close()
