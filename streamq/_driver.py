"""The two thin I/O shells that run protocol operations: one sync, one asyncio.

Both run EVALSHA and reload on NOSCRIPT (redis-py ``Script.__call__`` style), send a list of
calls as one pipeline, and translate server errors into streamq's error tree.

On a cluster client (``redis+cluster://``) each driver swaps in, at construction, the few
methods that differ, so the single-server path does no extra work per command:

* a script goes to the master of its first key's slot (all keys of a queue share one hash
  tag); redis-py follows MOVED/ASK. The first send is not retried by redis-py (it may have
  run); after a connection error the resend form goes through the cluster's own retries;
* a pipeline is split by redis-py per node; a ``WAITAOF`` in it goes to the node of
  the script before it (on the same connection, so it waits for that script's writes);
* an ``UNLINK`` of keys in several slots is split by slot (redis-py's ``unlink()``);
* ``SCRIPT LOAD`` goes to every master (a script must be known wherever its keys live),
  and so does a call flagged :data:`~streamq.protocol.calls.EVERY_MASTER` (on one server
  it runs once; either way its parser gets a (node, reply) pair per master: ``host:port``
  on a cluster, the driver's ``where`` on one server);
* a ``SCAN`` step scans every master to its end and answers with cursor 0, so the
  protocol's SCAN loops (queue discovery, find-by-id) see the whole keyspace.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import replace
from typing import Any, NoReturn, TypeVar, overload

import hiredis
from redis import exceptions as rexc
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.sentinel import MasterNotFoundError

from streamq.connection import AsyncClient, SyncClient, _caused_by, is_cluster
from streamq.errors import (
    AuthenticationFailedError,
    ConnectionFailedError,
    QueueFullError,
    StreamQError,
)
from streamq.protocol.calls import EVERY_MASTER, Call, Flow, Step, TolerantCall
from streamq.protocol.scripts import ScriptLibrary, load_library

__all__ = ["AsyncDriver", "SyncDriver"]

T = TypeVar("T")

AUTH_HINT = (
    "Redis refused the credentials: check REDIS_PASSWORD / REDIS_USERNAME "
    "(or the password in REDIS_URL)"
)


def translate(exc: Exception, where: str) -> StreamQError | None:
    """Map a redis-py error to streamq's tree (None: not ours to translate)."""
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthenticationWrongNumberOfArgsError):
        return AuthenticationFailedError(AUTH_HINT)
    cluster = _cluster_transient(exc, where)
    if cluster is not None:
        return cluster
    if (isinstance(exc, AttributeError) and _raised_in_redis_connection(exc)) or (
        isinstance(exc, RuntimeError) and "closed" in str(exc) and _through_redis_send(exc)
    ):
        # redis-py's asyncio cluster client closes every node's connections when one of
        # them fails (a master died): a command another task was sending at that moment
        # finds its socket gone (``_writer`` is None, or uvloop's "the handler is closed"
        # from the writer) before anything was written.
        return ConnectionFailedError(
            f"cannot reach Redis at {where}: the connection was closed while sending"
        )
    if isinstance(exc, rexc.ResponseError):
        msg = str(exc)
        if msg.startswith(("NOAUTH", "WRONGPASS")) or "NOAUTH" in msg[:40]:
            return AuthenticationFailedError(AUTH_HINT)
        # redis-py strips the "OOM" code from the message and raises OutOfMemoryError.
        if (
            isinstance(exc, rexc.OutOfMemoryError)
            or msg.startswith("OOM")
            or "command not allowed when used memory" in msg
        ):
            return QueueFullError(
                "Redis is full (maxmemory reached under noeviction): the job was not "
                "enqueued; drain the queues or raise maxmemory"
            )
        return None
    if isinstance(exc, MasterNotFoundError | AsyncMasterNotFoundError):
        # redis-py lists what each sentinel answered: only the kind of failure is used.
        if "AuthenticationError" in str(exc):
            return AuthenticationFailedError(
                "the sentinels refused the credentials: check the sentinel_password (and "
                "sentinel_username) option of the redis+sentinel:// URL"
            )
        return ConnectionFailedError(
            f"no sentinel at {where} named a reachable primary (MasterNotFoundError)"
        )
    if isinstance(exc, rexc.RedisClusterException) and "cannot be connected" in str(exc):
        # The asyncio cluster client reads the topology on first use; what it ran into is
        # in the exception's chain (a refused password, a refused connection).
        if _caused_by(exc, rexc.AuthenticationError):
            return AuthenticationFailedError(AUTH_HINT)
        return ConnectionFailedError(f"cannot reach any node of Redis Cluster at {where}")
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError):
        tls = _tls_failure(exc)
        if tls is not None:
            return ConnectionFailedError(
                f"TLS handshake with Redis at {where} failed: {tls}; set REDIS_TLS_CA_FILE "
                "to the CA that signed the server's certificate (and check that the "
                "certificate names the host in the URL)"
            )
        # Never include the URL: it may carry the password.
        return ConnectionFailedError(f"cannot reach Redis at {where}: {type(exc).__name__}")
    return None


def _raised_in_redis_connection(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside redis-py's connection module (sync or asyncio)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__") in ("redis.connection", "redis.asyncio.connection")


def _through_redis_send(exc: BaseException) -> bool:
    """Whether ``exc`` came up through redis-py's asyncio send (the write to a socket)."""
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if (
            frame.f_globals.get("__name__") == "redis.asyncio.connection"
            and frame.f_code.co_name == "_send_packed_command"
        ):
            return True
        tb = tb.tb_next
    return False


def _cluster_transient(exc: Exception, where: str) -> ConnectionFailedError | None:
    """A cluster that cannot run the command *now* (nothing ran): an outage to wait out.

    Checked before the ``ResponseError`` branch, which ``ClusterDownError`` and
    ``TryAgainError`` also are."""
    if isinstance(exc, rexc.ClusterDownError | rexc.SlotNotCoveredError):
        # Mid-failover: a master is gone and no replica has taken its slots over yet.
        return ConnectionFailedError(
            f"Redis Cluster at {where} does not serve the key's slot right now "
            f"({type(exc).__name__}): a failover may be under way"
        )
    # Mid-migration: a script's keys are split between the two masters (TRYAGAIN), or
    # redis-py's 16 redirections (MOVED/ASK/TRYAGAIN, ~0.4 s) ran out ("TTL exhausted"):
    # the slot is being moved; every reply so far was a refusal, so nothing ran.
    if isinstance(exc, rexc.TryAgainError) or type(exc) is rexc.ClusterError:
        return ConnectionFailedError(
            f"Redis Cluster at {where} kept redirecting the command ({type(exc).__name__}): "
            "the key's slot is being migrated; nothing ran"
        )
    return None


def _reraise(exc: Exception, where: str) -> NoReturn:
    """Raise ``exc`` as streamq's error when :func:`translate` maps it, else as it is."""
    mapped = translate(exc, where)
    if mapped is None:
        raise exc
    raise mapped from None


def _tls_failure(exc: BaseException) -> str | None:
    """The reason of a TLS failure behind ``exc`` (redis-py wraps it), else None. Only the
    ssl module's reason is used: it names no credential."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return f"certificate verify failed ({cur.verify_message})"
        if isinstance(cur, ssl.SSLError):
            return f"TLS error ({cur.reason or type(cur).__name__})"
        cur = cur.__cause__ or cur.__context__
    return None


def _is_noscript(exc: BaseException) -> bool:
    return isinstance(exc, rexc.NoScriptError) or (
        isinstance(exc, rexc.ResponseError) and str(exc).startswith("NOSCRIPT")
    )


def _pipeline_plan(calls: list[Call[Any]]) -> Generator[tuple[str, Any], Any, list[Any]]:
    """How both drivers run a list of calls as one pipeline, written once: yields
    ``("pipe", calls)`` and ``("load", script name)`` steps and receives their replies.
    Scripts the server forgot (NOSCRIPT after a restart or SCRIPT FLUSH) are loaded and
    only the calls that failed (and a WAITAOF after one) are sent again. An error reply
    is raised, the first in order, unless its call is a
    :class:`~streamq.protocol.calls.TolerantCall`."""
    replies: list[Any] = yield ("pipe", calls)
    missing = {
        c.script for c, r in zip(calls, replies, strict=True) if c.script and _is_noscript(r)
    }
    if missing:
        for name in sorted(missing):
            yield ("load", name)
        failed = [i for i, r in enumerate(replies) if _is_noscript(r)]
        # A WAITAOF after a refused script waited for nothing: it goes again after it. Only
        # that one: on a cluster each WAITAOF waits on the node of the script before it (a
        # partitioned durable batch has one per partition), and one of a script that ran
        # is already its confirmation; sent again it would land behind another script.
        waits, last = [], None
        for i, c in enumerate(calls):
            if c.script is not None:
                last = i
            elif _is_waitaof(c) and last in failed:
                waits.append(i)
        redo = sorted({*failed, *waits})
        again = yield ("pipe", [calls[i] for i in redo])
        for i, r in zip(redo, again, strict=True):
            replies[i] = r
    out = []
    for c, r in zip(calls, replies, strict=True):
        if isinstance(r, Exception):
            # In order: an earlier call's error is raised before a later one is read.
            if not isinstance(c, TolerantCall) or not isinstance(r, rexc.ResponseError):
                raise r
            out.append(c.on_error(str(r)))
            continue
        out.append(c.parse(r))
    return out


def _exec_args(lib: ScriptLibrary, call: Call[Any], resend: bool = False) -> tuple[Any, ...]:
    if call.script is None:
        assert call.command is not None
        return call.command
    args = call.resend_args if resend and call.resend_args is not None else call.args
    return ("EVALSHA", lib[call.script].sha, len(call.keys), *call.keys, *args)


def _sends(lib: ScriptLibrary, call: Call[Any]) -> Callable[[], tuple[Any, ...]]:
    """The args of each send of a script call: the first form once, then (retries after a
    connection error, when the first may have run) the resend form, built only if needed."""
    first: list[tuple[Any, ...]] = [_exec_args(lib, call)]

    def next_send() -> tuple[Any, ...]:
        return first.pop() if first else _exec_args(lib, call, resend=True)

    return next_send


#: What a cluster client retries itself: the first send of a script may have run, so it
#: is sent once, and on one of these the resend form goes through the client's retries.
_CLUSTER_RETRYABLE = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ClusterDownError,
    rexc.SlotNotCoveredError,
)


def _word(arg: Any) -> str:
    return arg.decode() if isinstance(arg, bytes) else str(arg)


def _is_scan(call: Call[Any]) -> bool:
    return call.command is not None and str(call.command[0]).upper() == "SCAN"


def _is_waitaof(call: Call[Any]) -> bool:
    return call.command is not None and _word(call.command[0]).upper() == "WAITAOF"


def _is_unlink(call: Call[Any]) -> bool:
    # Keys of many queues (a prefix's cleanup): redis-py's cluster unlink() splits them
    # by slot and adds the counts up; one UNLINK across slots would be refused.
    return call.command is not None and _word(call.command[0]).upper() == "UNLINK"


def _scan_args(call: Call[Any]) -> tuple[Any, ...]:
    assert call.command is not None
    if int(call.command[1]) != 0:  # our answer's cursor is always 0: no one resumes
        raise ValueError("a cluster SCAN step starts at cursor 0")
    return call.command[2:]


def _read_routed(client: Any, call: Call[T]) -> Call[T]:
    """An XREAD/XREADGROUP given the node of its first stream (every stream of one read
    shares a slot). Its keys are "movable", so redis-py would otherwise ask its default
    node for them (``COMMAND GETKEYS``): a round trip per read, two thirds of the fetch's
    own cost on that node, and refused while that node is down."""
    command = call.command
    if command is None or _word(command[0]).upper() not in ("XREAD", "XREADGROUP"):
        return call
    start = 4 if _word(command[0]).upper() == "XREADGROUP" else 1  # past GROUP g consumer
    for i in range(start, len(command) - 1):
        if _word(command[i]).upper() == "STREAMS":
            try:
                node = client.get_node_from_key(command[i + 1])
            except rexc.SlotNotCoveredError:  # mid-failover: redis-py routes it
                return call
            return replace(call, options={**call.options, "target_nodes": node})
    return call


def _key_node(client: Any, args: tuple[Any, ...]) -> Any:
    """The master of an EVALSHA's first key (None without keys or a known slot)."""
    if not int(args[2]):
        return None
    try:
        return client.get_node_from_key(args[3])
    except rexc.SlotNotCoveredError:
        return None


def _pipeline_commands(
    client: Any, lib: ScriptLibrary, calls: list[Call[Any]]
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Each call's args and options in a cluster pipeline: a script goes to the master of
    its first key, and WAITAOF to the node of the last script before it (it waits for the
    writes of that connection).

    A script is given its node because redis-py would otherwise ask its *default node*
    for the keys of an EVALSHA (``COMMAND GETKEYS``, movable keys): when that node is a
    master that died, every durable enqueue failed until something replaced the default
    node (chaos scenario 14: for the whole 2 s after the failover, in 2 runs of 3)."""
    last_key: str | None = None
    for c in calls:
        options = c.options
        if c.script is not None and c.keys:
            last_key = c.keys[0]
            # Mid-failover (slot not covered): redis-py routes it; its error is an outage.
            with suppress(rexc.SlotNotCoveredError):
                options = {**options, "target_nodes": client.get_node_from_key(last_key)}
        elif (
            c.command is not None
            and last_key is not None
            and _word(c.command[0]).upper() == "WAITAOF"
        ):
            options = {**options, "target_nodes": client.get_node_from_key(last_key)}
        yield _exec_args(lib, c, resend=True), options


class SyncDriver:
    """Runs operations on a ``redis.Redis`` client."""

    def __init__(self, client: SyncClient, where: str, library: ScriptLibrary | None = None):
        # Any: redis-py's execute_command is untyped.
        self.client: Any = client
        self.where = where
        self.library = library or load_library()
        #: At most one idle connection kept out of the pool for script calls (see _script).
        self._parked: list[tuple[int, Any]] = []
        if is_cluster(client):
            # Any: instance attributes shadow the single-server methods.
            me: Any = self
            me._script = self._cluster_script
            me._pipeline = self._cluster_pipeline
            me._one = self._cluster_one
            me.load_all = self._cluster_load_all

    def _cluster_script(self, sends: Callable[[], tuple[Any, ...]]) -> Any:
        args = sends()
        node = _key_node(self.client, args)
        if node is None:
            return self.client.execute_command(*args)
        try:
            return self.client.execute_command(*args, target_nodes=node)
        except _CLUSTER_RETRYABLE:
            pass  # it may have run: resend, the cluster client retrying on its own
        return self.client.execute_command(*sends())

    def _cluster_one(self, call: Call[T]) -> T:
        if _is_unlink(call):
            assert call.command is not None
            return call.parse(self.client.unlink(*call.command[1:]))
        if call.options and EVERY_MASTER in call.options:
            every = call.command or ()
            nodes = self.client.get_primaries()
            return call.parse(
                [(n.name, self.client.execute_command(*every, target_nodes=n)) for n in nodes]
            )
        if not _is_scan(call):
            return SyncDriver._one(self, _read_routed(self.client, call))
        rest, names = _scan_args(call), []
        for node in self.client.get_primaries():
            cursor: Any = 0
            while True:
                cursors, page = self.client.execute_command(
                    "SCAN", cursor, *rest, target_nodes=node
                )
                names += page
                cursor = next(iter(cursors.values()))
                if int(cursor) == 0:
                    break
        return call.parse([0, names])

    def _cluster_pipeline(self, calls: list[Call[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for args, options in _pipeline_commands(self.client, self.library, calls):
            pipe.execute_command(*args, **options)
        return list(pipe.execute(raise_on_error=False))

    def _cluster_load_all(self) -> None:
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            for node in self.client.get_primaries():
                for s in self.library:
                    pipe.execute_command("SCRIPT", "LOAD", s.source, target_nodes=node)
            pipe.execute()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except StreamQError:
            raise
        except Exception as exc:
            _reraise(exc, self.where)

    def _load(self, name: str) -> None:
        self.client.execute_command("SCRIPT", "LOAD", self.library[name].source)

    def _one(self, call: Call[T]) -> T:
        if call.script is None:
            if call.options and EVERY_MASTER in call.options:
                return call.parse([(self.where, self.client.execute_command(*call.command or ()))])
            return call.parse(self.client.execute_command(*call.command or (), **call.options))
        try:
            reply = self._script(_sends(self.library, call))
        except rexc.ResponseError as exc:
            if not _is_noscript(exc):  # NOSCRIPT: it did not run, the first form is right
                raise
            self._load(call.script)
            reply = self._script(_sends(self.library, call))
        return call.parse(reply)

    def _script(self, sends: Callable[[], tuple[Any, ...]]) -> Any:
        """EVALSHA: redis-py's ``execute_command`` minus what a script reply does not need
        (response callbacks, per-command metrics: ~15 us of client CPU per call) and, on
        the parked connection, minus the pool's checkout (~13 us). Retries, health checks
        and reconnects are redis-py's own; ``sends()`` gives each attempt's args."""
        conn = self._take()
        try:
            reply = conn.retry.call_with_retry(
                lambda: _roundtrip(conn, sends()), lambda _error: conn.disconnect()
            )
        except BaseException:
            # It may still owe a reply (an interrupted read): never reuse it as it is.
            conn.disconnect()
            self.client.connection_pool.release(conn)
            raise
        self._park(conn)
        return reply

    def _take(self) -> Any:
        """The parked connection if there is one (list.pop is atomic: threads never share
        it), else one from the pool. A connection parked before a fork is left alone: the
        socket is the parent's."""
        try:
            pid, conn = self._parked.pop()
        except IndexError:
            return self.client.connection_pool.get_connection()
        return conn if pid == os.getpid() else self.client.connection_pool.get_connection()

    def _park(self, conn: Any) -> None:
        """Keep one idle connection out of the pool for the next script call; the pool
        (unbounded) gets any other, and ``client.close()`` still disconnects it."""
        if _moving(conn):  # the server announced a maintenance move
            conn.disconnect()
        elif not self._parked:
            self._parked.append((os.getpid(), conn))
            return
        self.client.connection_pool.release(conn)

    def _many(self, calls: list[Call[Any]]) -> list[Any]:
        plan = _pipeline_plan(calls)
        reply: Any = None
        try:
            while True:
                kind, arg = plan.send(reply)
                if kind == "pipe":
                    reply = self._pipeline(arg)
                else:
                    self._load(arg)
                    reply = None
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _pipeline(self, calls: list[Call[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for c in calls:  # the resend form: redis-py may send a pipeline again, whole
            pipe.execute_command(*_exec_args(self.library, c, resend=True), **c.options)
        return list(pipe.execute(raise_on_error=False))

    def _step(self, step: Step) -> Any:
        return self._many(step) if isinstance(step, list) else self._one(step)

    @overload
    def run(self, op: list[Call[Any]]) -> list[Any]: ...
    @overload
    def run(self, op: Call[T] | Flow[T]) -> T: ...
    def run(self, op: Call[T] | Flow[T] | list[Call[Any]]) -> T | list[Any]:
        """Run a call, a list of calls (one pipeline) or a flow to its result."""
        # try/except rather than the _errors() context manager: this is every enqueue's path.
        try:
            if isinstance(op, Call):
                return self._one(op)
            if isinstance(op, list):
                return self._many(op)
            return _drive_sync(op, self._step)
        except StreamQError:
            raise
        except Exception as exc:
            _reraise(exc, self.where)

    def load_all(self) -> None:
        """SCRIPT LOAD every script (one pipeline), so first calls skip the NOSCRIPT trip."""
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            for s in self.library:
                pipe.execute_command("SCRIPT", "LOAD", s.source)
            pipe.execute()


def _moving(conn: Any) -> bool:
    """True when the server announced a maintenance move of this connection (redis-py's
    maintenance notifications; older redis-py has no such check)."""
    check = getattr(conn, "should_reconnect", None)
    return bool(check is not None and check())


def _pack(conn: Any, args: tuple[Any, ...]) -> Any:
    # hiredis directly: redis-py's packer re-wraps every argument first (3x the time), and
    # its asyncio TLS connection packs in pure Python. A type hiredis refuses: redis-py's.
    try:
        return [hiredis.pack_command(args)]  # a list: the sync connection iterates over it
    except TypeError:
        return conn.pack_command(*args)


def _roundtrip(conn: Any, args: tuple[Any, ...]) -> Any:
    conn.send_packed_command(_pack(conn, args))
    return conn.read_response()


async def _roundtrip_async(conn: Any, args: tuple[Any, ...]) -> Any:
    await conn.send_packed_command(_pack(conn, args))
    return await conn.read_response()


def _drive_sync(flow: Generator[Step, Any, T], step: Any) -> T:
    reply: Any = None
    try:
        while True:
            reply = step(flow.send(reply))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class AsyncDriver:
    """Runs operations on a ``redis.asyncio.Redis`` client."""

    def __init__(
        self, client: AsyncClient, where: str, library: ScriptLibrary | None = None
    ) -> None:
        self.client: Any = client
        self.where = where
        self.library = library or load_library()
        #: At most one idle connection kept out of the pool for script calls (see _script).
        self._parked: list[Any] = []
        if is_cluster(client):
            me: Any = self
            me._script = self._cluster_script
            me._pipeline = self._cluster_pipeline
            me._one = self._cluster_one
            me._load = self._cluster_load
            me.load_all = self._cluster_load_all

    async def _cluster_load(self, name: str) -> None:
        # One word: the asyncio cluster client routes "SCRIPT" "LOAD" as a keyed command;
        # "SCRIPT LOAD" goes to every master.
        await self.client.execute_command("SCRIPT LOAD", self.library[name].source)

    async def _cluster_script(self, sends: Callable[[], tuple[Any, ...]]) -> Any:
        """See :meth:`SyncDriver._cluster_script`."""
        args = sends()
        if self.client._initialize:  # the asyncio client reads the topology lazily
            await self.client.initialize()
        node = _key_node(self.client, args)
        if node is None:
            return await self.client.execute_command(*args)
        try:
            return await self.client.execute_command(*args, target_nodes=node)
        except _CLUSTER_RETRYABLE:
            pass
        return await self.client.execute_command(*sends())

    async def _cluster_one(self, call: Call[T]) -> T:
        if _is_unlink(call):
            assert call.command is not None
            return call.parse(await self.client.unlink(*call.command[1:]))
        if call.options and EVERY_MASTER in call.options:
            if self.client._initialize:
                await self.client.initialize()
            every = call.command or ()
            nodes = self.client.get_primaries()
            return call.parse(
                [(n.name, await self.client.execute_command(*every, target_nodes=n)) for n in nodes]
            )
        if not _is_scan(call):
            command = call.command
            if command is not None and len(command) > 1:
                # The asyncio cluster client routes by the first word only: "CONFIG GET"
                # as two words is taken for a keyed command. Joined, it is sent the same.
                name = f"{_word(command[0])} {_word(command[1])}".upper()
                if name in self.client.command_flags:
                    call = replace(call, command=(name, *command[2:]))
            if self.client._initialize:  # the asyncio client reads the topology lazily
                await self.client.initialize()
            return await AsyncDriver._one(self, _read_routed(self.client, call))
        rest, names = _scan_args(call), []
        if self.client._initialize:
            await self.client.initialize()
        for node in self.client.get_primaries():
            cursor: Any = 0
            while True:
                cursors, page = await self.client.execute_command(
                    "SCAN", cursor, *rest, target_nodes=node
                )
                names += page
                cursor = next(iter(cursors.values()))
                if int(cursor) == 0:
                    break
        return call.parse([0, names])

    async def _cluster_pipeline(self, calls: list[Call[Any]]) -> list[Any]:
        if self.client._initialize:
            await self.client.initialize()
        pipe = self.client.pipeline(transaction=False)
        for args, options in _pipeline_commands(self.client, self.library, calls):
            pipe.execute_command(*args, **options)
        return list(await pipe.execute(raise_on_error=False))

    async def _cluster_load_all(self) -> None:
        async with self._errors():
            if self.client._initialize:
                await self.client.initialize()
            pipe = self.client.pipeline(transaction=False)
            for node in self.client.get_primaries():
                for s in self.library:
                    pipe.execute_command("SCRIPT", "LOAD", s.source, target_nodes=node)
            await pipe.execute()

    @asynccontextmanager
    async def _errors(self) -> Any:
        try:
            yield
        except StreamQError:
            raise
        except Exception as exc:
            _reraise(exc, self.where)

    async def _load(self, name: str) -> None:
        await self.client.execute_command("SCRIPT", "LOAD", self.library[name].source)

    async def _one(self, call: Call[T]) -> T:
        if call.script is None:
            if call.options and EVERY_MASTER in call.options:
                reply = await self.client.execute_command(*call.command or ())
                return call.parse([(self.where, reply)])
            reply = await self.client.execute_command(*call.command or (), **call.options)
            return call.parse(reply)
        try:
            reply = await self._script(_sends(self.library, call))
        except rexc.ResponseError as exc:
            if not _is_noscript(exc):  # NOSCRIPT: it did not run, the first form is right
                raise
            await self._load(call.script)
            reply = await self._script(_sends(self.library, call))
        return call.parse(reply)

    async def _script(self, sends: Callable[[], tuple[Any, ...]]) -> Any:
        """See :meth:`SyncDriver._script` (one event loop: no pid or thread concerns)."""
        pool = self.client.connection_pool
        try:
            conn = self._parked.pop()
        except IndexError:
            conn = await pool.get_connection()

        async def drop(_error: Exception) -> None:
            await conn.disconnect()

        try:
            reply = await conn.retry.call_with_retry(lambda: _roundtrip_async(conn, sends()), drop)
        except BaseException:
            # Cancelled or failed mid-call, it may still owe a reply: never reuse it as is.
            await conn.disconnect(nowait=True)
            await pool.release(conn)
            raise
        if _moving(conn):
            await conn.disconnect()
            await pool.release(conn)
        elif self._parked:
            await pool.release(conn)
        else:
            self._parked.append(conn)
        return reply

    async def _pipeline(self, calls: list[Call[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for c in calls:  # the resend form: redis-py may send a pipeline again, whole
            pipe.execute_command(*_exec_args(self.library, c, resend=True), **c.options)
        return list(await pipe.execute(raise_on_error=False))

    async def _many(self, calls: list[Call[Any]]) -> list[Any]:
        plan = _pipeline_plan(calls)
        reply: Any = None
        try:
            while True:
                kind, arg = plan.send(reply)
                if kind == "pipe":
                    reply = await self._pipeline(arg)
                else:
                    await self._load(arg)
                    reply = None
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _step(self, step: Step) -> Any:
        return await (self._many(step) if isinstance(step, list) else self._one(step))

    @overload
    async def run(self, op: list[Call[Any]]) -> list[Any]: ...
    @overload
    async def run(self, op: Call[T] | Flow[T]) -> T: ...
    async def run(self, op: Call[T] | Flow[T] | list[Call[Any]]) -> T | list[Any]:
        """Run a call, a list of calls (one pipeline) or a flow to its result."""
        try:
            if isinstance(op, Call):
                return await self._one(op)
            if isinstance(op, list):
                return await self._many(op)
            reply: Any = None
            try:
                while True:
                    reply = await self._step(op.send(reply))
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        except StreamQError:
            raise
        except Exception as exc:
            _reraise(exc, self.where)

    async def load_all(self) -> None:
        """SCRIPT LOAD every script (one pipeline)."""
        async with self._errors():
            pipe = self.client.pipeline(transaction=False)
            for s in self.library:
                pipe.execute_command("SCRIPT", "LOAD", s.source)
            await pipe.execute()
