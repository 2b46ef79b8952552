"""The vocabulary every operation is written in: a :class:`Call` (one script or command and
how to read its reply) or a :data:`Flow` (a generator that yields calls, or lists of calls
sent as one pipeline, and receives the parsed replies, like httpx's auth flows). The
drivers in :mod:`streamq._driver` run both; nothing here does I/O.

Every Redis operation streamq sends is built from these names inside
:mod:`streamq.protocol` (``tests/test_layers.py`` fails on one built anywhere else).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, TypeVar

__all__ = [
    "EVERY_MASTER",
    "Arg",
    "Call",
    "Code",
    "Flow",
    "Step",
    "TolerantCall",
    "on_every_master",
    "parse_time_ms",
    "ping",
    "raw",
    "score_pairs",
    "server_time",
    "text",
]

T = TypeVar("T")
#: One argument of a command or script.
Arg = bytes | str | int | float


class Code(IntEnum):
    """Result codes of the Lua scripts (``lua/lib/codes.lua``)."""

    OK = 1
    DONE = 2
    EXISTS = 0
    FENCED = -1
    MISSING = -2
    BAD_STATE = -3


def _identity(reply: Any) -> Any:
    return reply


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One round-trip unit: a script (by name) or a raw command, and its reply parser."""

    script: str | None
    keys: Sequence[str] = ()
    args: Sequence[Arg] = ()
    parse: Callable[[Any], T] = field(default=_identity)
    command: tuple[Arg, ...] | None = None
    #: redis-py parse options for raw commands (e.g. ``parse_detail`` for XPENDING ranges).
    options: dict[str, Any] = field(default_factory=dict)
    #: Script args for any send but the first one on a connection (a retry after a
    #: connection error, when the first may have run) and in pipelines (which redis-py
    #: may resend whole); None: ``args``.
    resend_args: Sequence[Arg] | None = None


@dataclass(frozen=True, slots=True)
class TolerantCall(Call[T]):
    """A :class:`Call` whose server error reply, in a pipeline, goes to ``on_error`` (the
    error's message) instead of being raised, so a flow sees it beside the other calls'
    replies: a WAITAOF refused after the script before it wrote. A subclass, not a field
    of :class:`Call`: one more field costs every call ~0.1 us to build."""

    on_error: Callable[[str], T] = field(default=_identity)


#: What a flow yields: one call, or a list of calls sent as one pipeline.
Step = Call[Any] | list[Call[Any]]

#: A multi-step operation: yields steps, receives their parsed replies, returns ``T``.
Flow = Generator[Step, Any, T]


#: The :attr:`Call.options` flag the drivers act on instead of passing it to redis-py: send
#: the raw command to every master of a cluster (one server: to it) and hand ``parse`` a
#: ``(node, reply)`` pair per master (``host:port`` on a cluster; on one server, where the
#: driver points). Only for a call on its own, never in a pipeline.
EVERY_MASTER = "streamq_every_master"


def on_every_master(*command: Arg, parse: Callable[[list[tuple[str, Any]]], T]) -> Call[T]:
    """A raw, keyless command sent to every master (a server-wide fact such as INFO, where
    the one node a cluster client would pick is not the one that matters): ``parse`` gets
    one ``(node, reply)`` pair per master, the node named so a message can name the one at
    fault (one pair in all on a single server or behind Sentinel)."""
    return Call(None, command=command, parse=parse, options={EVERY_MASTER: True})


def raw(*command: Arg, parse: Callable[[Any], Any] = _identity, **options: Any) -> Call[Any]:
    """A plain Redis command as a :class:`Call`."""
    return Call(None, command=command, parse=parse, options=options)


def text(value: Any) -> str:
    """A reply value as str: bytes are decoded (UTF-8), anything else goes through ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def score_pairs(reply: Any) -> list[tuple[Any, Any]]:
    """ZRANGE ... WITHSCORES as (member, score) pairs, whether or not the client paired them."""
    items = list(reply or [])
    if items and not isinstance(items[0], list | tuple):
        return list(zip(items[::2], items[1::2], strict=True))
    return [(m, sc) for m, sc in items]


def parse_time_ms(reply: Sequence[Any]) -> int:
    """A ``TIME`` reply (seconds, microseconds) as ms since the epoch."""
    return int(reply[0]) * 1000 + int(reply[1]) // 1000


def server_time() -> Call[int]:
    """The Redis clock, in ms since the epoch: the one clock streamq uses for due times."""
    return raw("TIME", parse=parse_time_ms)


def ping() -> Call[bool]:
    """PING: True when the server answers."""
    return raw("PING", parse=bool)
