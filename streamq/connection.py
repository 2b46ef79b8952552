"""Building redis-py clients from settings (sync and asyncio), with a bounded retry budget.

Connection errors are retried; authentication errors are not (redis-py files them under
``ConnectionError``, but no retry can fix a wrong password, and its nested connect/command
retries would multiply the wait before the error is reported).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hiredis
import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from streamq.config import RedisSettings

__all__ = ["async_client", "sync_client"]

T = TypeVar("T")


class _Retry(Retry):
    """redis-py's ``Retry``, except that an authentication error ends the retries."""

    def call_with_retry(
        self, do: Callable[[], T], fail: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> T:
        def fail_fast(error: Exception, *rest: Any) -> Any:
            out = fail(error, *rest)  # let redis-py clean up the connection first
            if isinstance(error, AuthenticationError):
                raise error
            return out

        return super().call_with_retry(do, fail_fast, *args, **kwargs)


class _AsyncRetry(AsyncRetry):
    """The asyncio twin of :class:`_Retry`."""

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> T:
        async def fail_fast(error: Exception, *rest: Any) -> Any:
            out = await fail(error, *rest)
            if isinstance(error, AuthenticationError):
                raise error
            return out

        return await super().call_with_retry(do, fail_fast, *args, **kwargs)


def _kwargs(settings: RedisSettings) -> dict[str, Any]:
    kw = settings.client_kwargs()
    kw["retry_on_error"] = [RedisConnectionError, RedisTimeoutError, ConnectionResetError]
    kw["health_check_interval"] = 30
    return kw


def sync_client(settings: RedisSettings, *, retry_attempts: int = 3) -> redis.Redis:
    """A pooled sync client; connection errors are retried ``retry_attempts`` times with
    exponential backoff (50 ms doubling, capped at 1 s), then raised. Authentication
    errors are raised at once."""
    kw = _kwargs(settings)
    kw["retry"] = _Retry(ExponentialBackoff(cap=1.0, base=0.05), retry_attempts)
    return redis.Redis.from_url(settings.to_url(), **kw)


class _HiredisPackConnection(aredis.Connection):
    """redis-py's asyncio TCP connection, packing commands with hiredis as its sync client
    does (the asyncio one packs in pure Python: ~16 % of a busy worker's CPU), and bounding
    writes without a Task per command."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        # Like redis-py: a command name given as "CONFIG GET" is sent as two arguments.
        if (isinstance(first, str) and " " in first) or (
            isinstance(first, bytes) and b" " in first
        ):
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a type hiredis does not take: redis-py's packer decides
            return super().pack_command(*args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """redis-py's, with the write timeout kept by ``asyncio.timeout`` rather than
        ``asyncio.wait_for``, which creates a Task per command (~10 % of a one-by-one
        enqueue). Same errors: a timeout disconnects and raises redis' TimeoutError."""
        timeout = self.socket_timeout
        if not timeout:
            return await super().send_packed_command(command, check_health)
        try:
            async with asyncio.timeout(timeout):
                # Without a socket timeout redis-py writes directly; this block bounds it.
                self.socket_timeout = None
                try:
                    await super().send_packed_command(command, check_health)
                finally:
                    self.socket_timeout = timeout
        except TimeoutError:  # only asyncio.timeout's: redis-py maps socket errors itself
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None


def async_client(settings: RedisSettings, *, retry_attempts: int = 3) -> aredis.Redis:
    """The asyncio twin of :func:`sync_client`."""
    kw = _kwargs(settings)
    if urlsplit(settings.to_url()).scheme == "redis":
        kw["connection_class"] = _HiredisPackConnection
    kw["retry"] = _AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), retry_attempts)
    return aredis.Redis.from_url(settings.to_url(), **kw)
