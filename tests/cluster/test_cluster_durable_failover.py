"""A durable enqueue (the script and WAITAOF in one cluster pipeline) does not depend on
the client's *default node*: redis-py asks that node for an EVALSHA's keys (``COMMAND
GETKEYS``) unless the pipeline names the script's node, so once it died every durable
enqueue failed, whichever master held the queue (seen under chaos scenario 14)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

import streamq
from streamq.protocol.keys import QueueKeys
from streamq.server import EmbeddedCluster


def test_a_durable_enqueue_goes_on_when_the_clients_default_node_dies(
    cluster_factory: Callable[..., EmbeddedCluster], queue_name: str
) -> None:
    embedded = cluster_factory(profile="default", node_timeout_ms=1000)
    server = embedded.nodes[0].server
    if not server.is_valkey and server.version < (7, 2):
        pytest.skip("WAITAOF needs Redis >= 7.2 (this kind has no durable enqueue)")
    with streamq.Producer(embedded.url, durable=True, durable_timeout=10) as producer:
        assert producer.enqueue(queue_name, "noop", {"n": 1}).created
        client = producer._client  # the cluster client whose default node matters here
        default = client.get_default_node()
        owner = client.get_node_from_key(QueueKeys(queue_name).stream)
        victim = next(n for n in embedded.nodes if n.port == default.port)
        if owner.port == default.port:  # the queue must live elsewhere: another queue
            other = next(
                f"{queue_name}-{i}"
                for i in range(1000)
                if client.get_node_from_key(QueueKeys(f"{queue_name}-{i}").stream).port
                != default.port
            )
            queue_name = other
        embedded.kill(victim)
        embedded.wait_ok(timeout=20)
        # The queue's master is alive throughout: a refused enqueue here is the bug.
        ok = 0
        for n in range(5):
            # The first may meet the dead node's pooled connection: one miss is allowed.
            with contextlib.suppress(streamq.ConnectionFailedError):
                ok += producer.enqueue(queue_name, "noop", {"n": n}).created
        assert ok >= 4, f"only {ok} of 5 durable enqueues got through"
