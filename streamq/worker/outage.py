"""Riding out a Redis outage: back off 50 ms, doubling to 0.25 s, and log each miss.

One policy for every loop of the worker (fetch, flush, maintenance, start-up, hand-back):
a full Redis (``QueueFullError``, which refuses writes for a while) is treated as an outage
too, since waiting is what helps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from streamq.errors import ConnectionFailedError, QueueFullError
from streamq.worker.logs import log_event

__all__ = ["OUTAGE", "Backoff", "retrying"]

#: The errors that mean "Redis cannot take this now": retried, never fatal.
OUTAGE = (ConnectionFailedError, QueueFullError)

FIRST_S = 0.05
#: A Cluster or Sentinel failover is an outage of about two seconds, and a loop asleep when
#: the new master takes over sleeps on for up to this long. Issue #12 wants consuming again
#: within cluster-node-timeout + 2 s of a master's SIGKILL, of which the election takes all
#: but about 1 s - half the timeout (chaos scenarios 14/14b): at 0.5 s the first
#: completion came 0.14-0.35 s after the promotion (node timeout 1 s); at 0.25 s (node
#: timeout 0.5 s, 16 runs each) 0.01-0.23 s with cluster-require-full-coverage no, and
#: 0.03-0.47 s with the default yes, where redis-py also pauses 0.25 s after each
#: CLUSTERDOWN reply. Four tries a second per loop is still nothing for a server that is
#: back.
MAX_S = 0.25


class Backoff:
    """The wait before the next try: 50 ms, doubling to 0.25 s; :meth:`reset` after a success."""

    __slots__ = ("delay",)

    def __init__(self) -> None:
        self.delay = FIRST_S

    def reset(self) -> None:
        """Back to the first delay (the operation got through)."""
        self.delay = FIRST_S

    def missed(self, during: str, exc: BaseException) -> float:
        """Log the miss and return the seconds to wait (then doubles the next wait)."""
        delay = self.delay
        log_event(
            "redis_unavailable",
            logging.WARNING,
            during=during,
            error=str(exc),
            retry_in_s=round(delay, 3),
        )
        self.delay = min(delay * 2, MAX_S)
        return delay

    async def wait(
        self, during: str, exc: BaseException, stop: asyncio.Event | None = None
    ) -> None:
        """Log the miss and sleep the delay; a set ``stop`` cuts the sleep short."""
        delay = self.missed(during, exc)
        if stop is None:
            await asyncio.sleep(delay)
            return
        waiter = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter}, timeout=delay)
        finally:
            waiter.cancel()


async def retrying(what: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``await fn(*args)`` until it gets through a Redis outage (``fn`` is often the
    driver's overloaded ``run``: the caller annotates the result)."""
    backoff = Backoff()
    while True:
        try:
            return await fn(*args)
        except OUTAGE as exc:
            await backoff.wait(what, exc)
