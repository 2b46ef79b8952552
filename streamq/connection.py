"""Building redis-py clients from settings (sync and asyncio), with a bounded retry budget.

Connection errors are retried; authentication errors are not (redis-py files them under
``ConnectionError``, but no retry can fix a wrong password, and its nested connect/command
retries would multiply the wait before the error is reported).

The settings' :attr:`~streamq.config.RedisSettings.mode` picks the client:

* ``single``: ``redis.Redis`` (``redis.asyncio.Redis``) from the URL, as always;
* ``cluster``: ``redis.cluster.RedisCluster`` (asyncio: ``redis.asyncio.cluster``) from the
  startup nodes. It follows MOVED and ASK, patches its slot map on MOVED and reloads the
  whole topology after every 5th, and after a connection error it reloads the topology
  (trying the failed node last) and retries ``retry_attempts`` times; the sync client
  reads the topology when it is built, so an unreachable cluster fails here, as
  :class:`~streamq.errors.ConnectionFailedError`;
* ``sentinel``: a ``redis.Redis`` whose pool asks the sentinels for the primary's address
  on every new connection (``Sentinel.master_for``): after a failover, the connections
  to the old primary fail (it refuses writes as a replica: redis-py turns that into a
  connection error), are dropped, and the retries reconnect to the new one.

Password, ACL user, TLS files and timeouts apply to every node in every mode.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hiredis
import redis
import redis.asyncio as aredis
import redis.asyncio.cluster as acluster
import redis.asyncio.sentinel as asentinel
import redis.cluster
import redis.connection
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from streamq.config import Endpoints, RedisSettings
from streamq.errors import AuthenticationFailedError, ConnectionFailedError

__all__ = [
    "AsyncClient",
    "SyncClient",
    "async_client",
    "follow_primary",
    "is_cluster",
    "is_sentinel",
    "sync_client",
]

T = TypeVar("T")

#: What :func:`sync_client` returns: one server's (or Sentinel's primary's) client, or a
#: cluster client.
SyncClient = redis.Redis | redis.cluster.RedisCluster
#: What :func:`async_client` returns.
AsyncClient = aredis.Redis | acluster.RedisCluster


def is_cluster(client: object) -> bool:
    """True for a redis-py cluster client (sync or asyncio)."""
    return isinstance(client, redis.cluster.RedisCluster | acluster.RedisCluster)


def is_sentinel(client: object) -> bool:
    """True for a client of the primary that sentinels name (sync or asyncio)."""
    pool = getattr(client, "connection_pool", None)
    kinds = redis.sentinel.SentinelConnectionPool | asentinel.SentinelConnectionPool
    return isinstance(pool, kinds)


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


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=1.0, base=0.05)


def _node_kwargs(settings: RedisSettings, ep: Endpoints) -> dict[str, Any]:
    """Credentials, TLS and timeouts of the data nodes (cluster nodes, Sentinel's primary)."""
    kw = settings.client_kwargs()
    if ep.username:
        kw["username"] = ep.username
    if ep.password:
        kw["password"] = ep.password
    if ep.tls:
        kw["ssl"] = True
    return kw


def _sentinel_kwargs(settings: RedisSettings, ep: Endpoints) -> dict[str, Any]:
    """How to reach the sentinels themselves: the same TLS and timeouts, their own
    credentials (``sentinel_username``/``sentinel_password`` URL options)."""
    kw = settings.client_kwargs()
    if ep.sentinel_username:
        kw["username"] = ep.sentinel_username
    if ep.sentinel_password:
        kw["password"] = ep.sentinel_password
    if ep.tls:
        kw["ssl"] = True
    return kw


class _PrimaryConnection(redis.sentinel.SentinelManagedConnection):
    """A connection to Sentinel's primary that asks the sentinels for the address on every
    reconnect. redis-py's asks only when a connection is taken from the pool: a reconnect
    inside its retry loop (``send_packed_command``) goes back to the last address, which
    after a failover is the dead primary, until the retries run out."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Connect through the sentinels first when disconnected, then send."""
        base: Any = super()  # untyped in redis-py
        if not self._sock:
            base.connect()
        base.send_packed_command(command, check_health)


class _PrimarySSLConnection(_PrimaryConnection, redis.connection.SSLConnection):
    """:class:`_PrimaryConnection` over TLS."""


class _AsyncPrimaryConnection(asentinel.SentinelManagedConnection):
    """The asyncio twin of :class:`_PrimaryConnection`."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Connect through the sentinels first when disconnected, then send."""
        base: Any = super()
        if not self.is_connected:
            await base.connect()
        await base.send_packed_command(command, check_health)


class _AsyncPrimarySSLConnection(_AsyncPrimaryConnection, aredis.SSLConnection):
    """:class:`_AsyncPrimaryConnection` over TLS."""


class _SentinelRedis(redis.Redis):
    """The primary's client: :meth:`close` also closes the connections to the sentinels
    (``Sentinel`` keeps one client per sentinel that nothing else would close)."""

    def close(self) -> None:
        """Close the primary's pool, then every sentinel's."""
        try:
            super().close()
        finally:
            pool: Any = self.connection_pool
            for sentinel in pool.sentinel_manager.sentinels:
                sentinel.close()


class _AsyncSentinelRedis(aredis.Redis):
    """The asyncio twin of :class:`_SentinelRedis`."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the primary's pool, then every sentinel's."""
        try:
            await super().aclose(close_connection_pool)
        finally:
            pool: Any = self.connection_pool
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


#: How often a cluster client may reload the slot map after errors. redis-py 8.2 added the
#: limit with a default of 1 s: in a failover, the reload that finds the promoted replica
#: then came up to a second after the promotion (chaos scenario 14, 6 runs each: workers
#: completed jobs again 0.36-0.85 s after it on 8.2, 0.06-0.46 s on 8.1, and 0.03-0.39 s
#: on 8.2 with this limit; the issue's bound is node timeout + 2 s). A quarter second, the
#: outage backoff's cap: a client in an outage reloads at most four times a second.
TOPOLOGY_REFRESH_MIN_S = 0.25


def _cluster_kwargs(cls: type) -> dict[str, Any]:
    """``topology_refresh_min_interval`` for the redis-py releases that have it."""
    if "topology_refresh_min_interval" in inspect.signature(cls).parameters:
        return {"topology_refresh_min_interval": TOPOLOGY_REFRESH_MIN_S}
    return {}


_SYNC_CLUSTER_KW = _cluster_kwargs(redis.cluster.RedisCluster)
_ASYNC_CLUSTER_KW = _cluster_kwargs(acluster.RedisCluster)


def _node(host: str, port: int) -> redis.cluster.ClusterNode:
    node: Any = redis.cluster.ClusterNode  # untyped in redis-py
    made: redis.cluster.ClusterNode = node(host, port)
    return made


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or an exception it was raised from is a ``kind``."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _unreachable(settings: RedisSettings, exc: Exception) -> Exception:
    """A construction-time failure of the sync cluster client (it reads the topology at
    once), in streamq's terms; redis-py's message is not reused (it lists addresses)."""
    if _caused_by(exc, AuthenticationError):
        return AuthenticationFailedError(
            "Redis Cluster refused the credentials: check REDIS_PASSWORD / REDIS_USERNAME "
            "(or the password in REDIS_URL)"
        )
    return ConnectionFailedError(
        f"cannot reach Redis Cluster at {settings.describe()}: no startup node answered "
        f"with the cluster's topology ({type(exc).__name__})"
    )


def sync_client(settings: RedisSettings, *, retry_attempts: int = 3) -> SyncClient:
    """A pooled sync client; connection errors are retried ``retry_attempts`` times with
    exponential backoff (50 ms doubling, capped at 1 s), then raised. Authentication
    errors are raised at once. A cluster client (cluster mode) retries as redis-py's
    cluster client does (see the module doc)."""
    mode = settings.mode
    if mode == "cluster":
        ep = settings.endpoints()
        try:
            return redis.cluster.RedisCluster(
                startup_nodes=[_node(h, p) for h, p in ep.hosts],
                retry=Retry(_backoff(), retry_attempts),
                **_node_kwargs(settings, ep),
                **_SYNC_CLUSTER_KW,
            )
        except (RedisClusterException, redis.RedisError, OSError) as exc:
            raise _unreachable(settings, exc) from None
    kw = _kwargs(settings)
    kw["retry"] = _Retry(_backoff(), retry_attempts)
    if mode == "sentinel":
        ep = settings.endpoints()
        kw.update(_node_kwargs(settings, ep))
        kw["connection_class"] = _PrimarySSLConnection if ep.tls else _PrimaryConnection
        # Any: redis-py's Sentinel is untyped.
        sentinel: Any = redis.sentinel.Sentinel
        skw = _sentinel_kwargs(settings, ep) | {"retry": _Retry(_backoff(), retry_attempts)}
        manager = sentinel(list(ep.hosts), sentinel_kwargs=skw)
        client: _SentinelRedis = manager.master_for(
            ep.service, redis_class=_SentinelRedis, db=ep.db, **kw
        )
        return client
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


def async_client(settings: RedisSettings, *, retry_attempts: int = 3) -> AsyncClient:
    """The asyncio twin of :func:`sync_client` (the asyncio cluster client reads the
    topology on its first command, not here)."""
    mode = settings.mode
    if mode == "cluster":
        ep = settings.endpoints()
        return acluster.RedisCluster(
            startup_nodes=[acluster.ClusterNode(h, p) for h, p in ep.hosts],
            retry=AsyncRetry(_backoff(), retry_attempts),
            retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
            health_check_interval=30,
            **_node_kwargs(settings, ep),
            **_ASYNC_CLUSTER_KW,
        )
    kw = _kwargs(settings)
    kw["retry"] = _AsyncRetry(_backoff(), retry_attempts)
    if mode == "sentinel":
        ep = settings.endpoints()
        kw.update(_node_kwargs(settings, ep))
        kw["connection_class"] = _AsyncPrimarySSLConnection if ep.tls else _AsyncPrimaryConnection
        sentinel: Any = asentinel.Sentinel
        # The same retry budget for the sentinels (redis-py's default hangs on a refused
        # sentinel password with the asyncio client); a refused password ends it at once.
        skw = _sentinel_kwargs(settings, ep) | {"retry": _AsyncRetry(_backoff(), retry_attempts)}
        manager = sentinel(list(ep.hosts), sentinel_kwargs=skw)
        client: _AsyncSentinelRedis = manager.master_for(
            ep.service, redis_class=_AsyncSentinelRedis, db=ep.db, **kw
        )
        return client
    if urlsplit(settings.to_url()).scheme == "redis":
        kw["connection_class"] = _HiredisPackConnection
    return aredis.Redis.from_url(settings.to_url(), **kw)


async def follow_primary(client: AsyncClient) -> tuple[str, int] | None:
    """On a Sentinel client, ask the sentinels which node is the primary now; when it is not
    the one this client's connections reach, close them all, in use too, so the next
    command goes to the one named. Returns the new address when it moved (``None``: no move,
    or not a Sentinel client).

    redis-py asks the sentinels only when it opens a connection. A primary that stalled
    past ``down-after-milliseconds`` (a frozen VM, a disk stall) and came back is failed
    over, but stays a master to the clients still connected to it until the sentinels
    demote it (8 s or more after it answers again); whatever they do there meanwhile is
    discarded when it is. A command cut here fails like any connection error and is
    retried on the new primary."""
    pool = getattr(client, "connection_pool", None)  # a cluster client has none
    if not isinstance(pool, asentinel.SentinelConnectionPool):  # the asyncio one only
        return None
    sentinel_pool: Any = pool  # redis-py's Sentinel is untyped
    before = sentinel_pool.master_address
    now = await sentinel_pool.get_master_address()  # closes idle connections when it moved
    if before is None or now == before:
        return None
    await sentinel_pool.disconnect(inuse_connections=True)
    host, port = now
    return str(host), int(port)
