"""Building redis-py clients from settings (sync and asyncio), with a bounded retry budget."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamq.config import RedisSettings

__all__ = ["async_client", "sync_client"]


def _kwargs(settings: RedisSettings, retry_attempts: int) -> dict[str, Any]:
    kw = settings.client_kwargs()
    kw["retry_on_error"] = [RedisConnectionError, RedisTimeoutError, ConnectionResetError]
    kw["health_check_interval"] = 30
    return kw


def sync_client(settings: RedisSettings, *, retry_attempts: int = 3) -> redis.Redis:
    """A pooled sync client; connection errors are retried ``retry_attempts`` times with
    exponential backoff (50 ms doubling, capped at 1 s), then raised."""
    from redis.retry import Retry

    kw = _kwargs(settings, retry_attempts)
    kw["retry"] = Retry(ExponentialBackoff(cap=1.0, base=0.05), retry_attempts)
    return redis.Redis.from_url(settings.to_url(), **kw)


def async_client(settings: RedisSettings, *, retry_attempts: int = 3) -> aredis.Redis:
    """The asyncio twin of :func:`sync_client`."""
    from redis.asyncio.retry import Retry

    kw = _kwargs(settings, retry_attempts)
    kw["retry"] = Retry(ExponentialBackoff(cap=1.0, base=0.05), retry_attempts)
    return aredis.Redis.from_url(settings.to_url(), **kw)
