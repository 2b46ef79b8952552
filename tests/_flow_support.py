"""Flow-control states written by hand, for the operator-side tests (status figures, CLI,
metrics, dashboard): keys parked in ``blocked``/``full``, running flow jobs and counters
are states a worker passes through too briefly to observe deterministically. The tests
that can use real enqueues and workers do (tests/test_limits.py, "with the engine").

Everything here MIRRORS the engine's layout (the QueueKeys flow properties and
``lib/flow.lua``'s ``hold_job``): the lex member of ``held``
(``<key>\\0<9-priority>\\0<seq 16 digits>\\0<id>``), the ``held:keys`` and ``lvl:`` counts,
``blocked``/``full``/``ring``, the kstream and its group, the ``rate_limited`` counter.
It writes no ``held:data`` nor job record: nothing a worker could take.
"""

from __future__ import annotations

import redis

GROUP = "streamq"
LEVEL = 2**40


def base(queue: str, prefix: str = "sq") -> str:
    return f"{prefix}:{{{queue}}}"


def hold(
    client: redis.Redis,
    queue: str,
    key: str,
    job_id: str,
    *,
    priority: int = 0,
    prefix: str = "sq",
) -> str:
    """One held flow job, as the engine's enqueue stores it; returns its member."""
    b = base(queue, prefix)
    seq = int(client.hincrby(f"{b}:flow", "seq", 1))
    member = f"{key}\0{9 - priority}\0{seq:016d}\0{job_id}"
    client.zadd(f"{b}:held", {member: 0})
    client.hincrby(f"{b}:flow", f"lvl:{9 - priority}", 1)
    client.zincrby(f"{b}:held:keys", 1, key)
    return member


def block(client: redis.Redis, queue: str, key: str, until_ms: int, *, prefix: str = "sq") -> None:
    """Park ``key`` in ``blocked`` until ``until_ms`` (a rate window)."""
    client.zadd(f"{base(queue, prefix)}:blocked", {key: until_ms})


def park_full(client: redis.Redis, queue: str, key: str, *, prefix: str = "sq") -> None:
    """Park ``key`` in ``full`` (waiting for a concurrency slot)."""
    client.sadd(f"{base(queue, prefix)}:full", key)


def ready(client: redis.Redis, queue: str, key: str, score: int, *, prefix: str = "sq") -> None:
    """Put ``key`` in the ring with ``score``."""
    client.zadd(f"{base(queue, prefix)}:ring", {key: score})


def run_flow_jobs(client: redis.Redis, queue: str, n: int, *, prefix: str = "sq") -> None:
    """``n`` admitted flow jobs delivered to a worker: the kstream PEL holds ``n``."""
    stream = f"{base(queue, prefix)}:kstream"
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    for i in range(n):
        client.xadd(stream, {"i": f"flow-{i}"})
    client.xreadgroup(GROUP, "w-1", {stream: ">"}, count=n)


def count_rate_limited(client: redis.Redis, queue: str, n: int, *, prefix: str = "sq") -> None:
    """Add ``n`` to the ``rate_limited`` counter of the stats hash."""
    client.hincrby(f"{base(queue, prefix)}:stats", "rate_limited", n)
