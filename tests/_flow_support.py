"""Flow-control structures written by hand, for the operator-side tests (limits, status
figures, CLI, metrics) while the engine of issue 11 is being built.

Everything here MIRRORS /tmp/flow_spec.md (the issue-11 design): the key names under
``sq:{Q}:``, the lex member of ``held`` (``<key>\\0<9-priority>\\0<seq 16 digits>\\0<id>``),
``held:keys`` counts, ``blocked``/``full``/``ring``, the kstream and its group, and the
``rate_limited`` counter. Once the engine lands, the tests that use it should switch to
real enqueues with ``key=``/``priority=`` (TODO(lead)).
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
