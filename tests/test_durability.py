"""Durable enqueues (WAITAOF): confirmed fsync in the same round trip, refused up front on
servers that cannot confirm."""

from __future__ import annotations

import asyncio

import pytest
import redis

import streamq
from streamq.protocol.keys import QueueKeys


def _commands(client: redis.Redis) -> dict[str, int]:
    return {k: int(v["calls"]) for k, v in client.info("commandstats").items()}


def test_a_durable_enqueue_waits_for_waitaof_in_the_same_round_trip(
    server_factory, queue_name: str
) -> None:
    srv = server_factory(prefer="valkey")  # Valkey 8 has WAITAOF; AOF on (default profile)
    client = redis.Redis.from_url(srv.url)
    with streamq.Producer(srv.url, durable=True) as p:
        p.enqueue(queue_name, "warmup")  # the one-time capability check happens here
        before = _commands(client)
        r = p.enqueue(queue_name, "send", {"n": 1})
        many = p.enqueue_many(queue_name, [streamq.JobSpec("send", i) for i in range(3)])
        after = _commands(client)
    assert r.created and all(m.created for m in many)
    assert after["cmdstat_waitaof"] - before["cmdstat_waitaof"] == 2
    assert after["cmdstat_evalsha"] - before["cmdstat_evalsha"] == 2
    assert client.xlen(QueueKeys(queue_name).stream) == 5
    client.close()


def test_durable_enqueue_is_refused_before_writing_on_redis_without_waitaof(
    server_factory, queue_name: str
) -> None:
    srv = server_factory(prefer="redis")  # Redis 7.0: no WAITAOF
    client = redis.Redis.from_url(srv.url)
    with streamq.Producer(srv.url) as p:
        with pytest.raises(streamq.ServerError, match="WAITAOF"):
            p.enqueue(queue_name, "send", durable=True)
        assert client.keys(f"*{queue_name}*") == []
        assert p.enqueue(queue_name, "send").created  # non-durable still works
    client.close()


def test_durable_enqueue_is_refused_when_aof_is_off(server_factory, queue_name: str) -> None:
    srv = server_factory(prefer="valkey", profile="none")
    client = redis.Redis.from_url(srv.url)

    async def scenario() -> None:
        async with streamq.AsyncProducer(srv.url, durable=True) as p:
            with pytest.raises(streamq.ServerError, match="appendonly"):
                await p.enqueue(queue_name, "send")

    asyncio.run(scenario())
    assert client.keys(f"*{queue_name}*") == []
    client.close()


def test_bad_durability_settings_are_refused() -> None:
    with pytest.raises(streamq.ConfigError):
        streamq.Producer("redis://127.0.0.1:1/0", durable=True, durable_timeout=0)
