"""A cluster that cannot run a command right now (a failover or a slot migration under
way) is an outage streamq waits out: ``ConnectionFailedError``, which every worker loop
retries with its backoff, never an unknown error that stops the worker (a connection that
redis-py closed under a command being sent counts too). Other server
replies keep their meaning."""

from __future__ import annotations

import asyncio

import pytest
from redis import exceptions as rexc
from redis.asyncio import connection as aredis_connection

from streamq._driver import translate
from streamq.errors import ConnectionFailedError

WHERE = "redis+cluster://h1:7000"


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        # CLUSTERDOWN is a ResponseError too: it must not fall through as "not ours".
        (rexc.ClusterDownError("CLUSTERDOWN The cluster is down"), "failover may be under way"),
        (rexc.SlotNotCoveredError("slot 42 is not covered"), "failover may be under way"),
        # A script whose keys are split between two masters mid-migration.
        (rexc.TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"), "migrated"),
        # redis-py's 16 redirections (MOVED/ASK/TRYAGAIN) ran out during a migration.
        (rexc.ClusterError("TTL exhausted."), "migrated"),
    ],
)
def test_a_cluster_between_two_owners_of_a_slot_is_an_outage(exc: Exception, says: str) -> None:
    mapped = translate(exc, WHERE)
    assert isinstance(mapped, ConnectionFailedError)
    assert says in str(mapped) and WHERE in str(mapped)


def test_other_replies_are_not_taken_for_an_outage() -> None:
    assert translate(rexc.ResponseError("ERR unknown command"), WHERE) is None
    assert translate(rexc.DataError("bad"), WHERE) is None


def _send_error(conn: aredis_connection.Connection) -> Exception:
    """What sending a PING on ``conn`` raises (it must raise: nothing is connected)."""
    try:
        asyncio.run(conn._send_packed_command([b"PING"]))
    except Exception as exc:
        return exc
    raise AssertionError("a send on a closed connection raised nothing")


def test_a_connection_closed_under_a_command_being_sent_is_an_outage() -> None:
    # redis-py's asyncio cluster client closes every node's connections when one fails;
    # a command another task was sending then finds no socket (``_writer`` is None):
    # redis-py < 8.2 raised AttributeError from it, 8.2 raises ConnectionError itself.
    err = _send_error(aredis_connection.Connection())
    assert isinstance(err, AttributeError | rexc.ConnectionError), repr(err)
    mapped = translate(err, WHERE)
    assert isinstance(mapped, ConnectionFailedError), repr(err)
    if isinstance(err, AttributeError):
        assert "closed while sending" in str(mapped)
    # An AttributeError of anyone else's code is a bug to see, not an outage.
    assert translate(AttributeError("'NoneType' object has no attribute 'x'"), WHERE) is None


class _OpenTransport:
    """A transport not (yet) flagged closing: redis-py >= 8.2 checks it before writing."""

    def is_closing(self) -> bool:
        return False


class _ClosedWriter:
    """uvloop's writer once its transport was closed under it."""

    transport = _OpenTransport()

    def writelines(self, data: object) -> None:
        raise RuntimeError(
            "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
        )


def test_a_transport_closed_under_a_command_being_sent_is_an_outage_on_uvloop_too() -> None:
    # Seen in CI: a worker on uvloop died of this RuntimeError when a master was killed.
    conn = aredis_connection.Connection()
    conn._writer = _ClosedWriter()  # type: ignore[assignment]
    try:
        err = _send_error(conn)
    finally:
        conn._writer = None  # nothing to close: no socket was ever opened
    assert isinstance(err, RuntimeError), repr(err)
    mapped = translate(err, WHERE)
    assert isinstance(mapped, ConnectionFailedError)
    # A RuntimeError of anyone else's code is a bug to see, not an outage.
    assert translate(RuntimeError("the handler is closed"), WHERE) is None
