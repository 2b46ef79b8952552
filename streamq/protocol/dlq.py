"""The dead-letter queue (``sq:{Q}:dead``): list, find, replay (one, by entry or job id, or
all), delete one entry, purge, count. Pure builders and parsers; the drivers run them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from streamq.errors import JobNotFoundError
from streamq.protocol.calls import Call, Code, Flow, raw
from streamq.protocol.calls import text as _s
from streamq.protocol.codec import decode_json
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.results import DeadEntry

__all__ = [
    "dead_count",
    "delete_dead",
    "find_dead",
    "list_dead",
    "parse_dead",
    "purge_dead",
    "replay_all",
    "replay_dead",
    "replay_entry",
    "replay_one",
]

_ENTRY_ID = re.compile(r"^\d+(-\d+)?$")


def _entry_job_id(fields: Any) -> str:
    return _s((fields or {}).get(b"i", b""))


def parse_dead(eid: Any, fields: dict[bytes, bytes]) -> DeadEntry:
    """A DLQ stream entry (id, fields) as a :class:`DeadEntry`."""

    def g(k: str) -> str:
        return _s(fields.get(k.encode(), b""))

    try:
        data = decode_json(fields.get(b"d"))
    except orjson.JSONDecodeError:
        data = g("d")
    return DeadEntry(
        _s(eid),
        g("i"),
        g("n"),
        data,
        int(g("a") or 0),
        g("e"),
        g("tb"),
        g("rs"),
        int(g("f")) if g("f") else None,
    )


def list_dead(keys: QueueKeys, count: int = 100, after: str = "-") -> Call[list[DeadEntry]]:
    """DLQ entries, oldest first, starting after entry id ``after``."""
    start = after if after == "-" else f"({after}"

    def parse(reply: list[Any]) -> list[DeadEntry]:
        return [parse_dead(eid, f) for eid, f in reply]

    return raw("XRANGE", keys.dead, start, "+", "COUNT", count, parse=parse)


def replay_dead(keys: QueueKeys, entry: DeadEntry) -> Call[bool]:
    """Move one DLQ entry back to the queue; False if someone else already did."""
    return Call(
        "replay",
        [keys.dead, keys.stream, keys.failed, keys.job(entry.job_id), *keys.flow_keys()],
        [GROUP, entry.dead_id, entry.job_id],
        lambda r: int(r[0]) == Code.OK,
    )


def replay_one(keys: QueueKeys, dead_id: str) -> Flow[bool]:
    """Replay the DLQ entry with id ``dead_id``."""
    found = yield raw(
        "XRANGE", keys.dead, dead_id, dead_id, parse=lambda r: [parse_dead(e, f) for e, f in r]
    )
    if not found:
        raise JobNotFoundError(f"no dead-letter entry {dead_id!r}")
    ok = yield replay_dead(keys, found[0])
    return bool(ok)


def _entry_key(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


def replay_all(
    keys: QueueKeys, batch: int = 200, progress: Callable[[int], None] | None = None
) -> Flow[int]:
    """Replay every DLQ entry present when called (not those that die meanwhile), a
    pipeline per batch; returns how many moved."""
    newest = yield raw(
        "XREVRANGE", keys.dead, "+", "-", "COUNT", 1, parse=lambda r: _s(r[0][0]) if r else None
    )
    if newest is None:
        return 0
    stop = _entry_key(newest)
    moved = 0
    after = "-"
    while True:
        entries = yield list_dead(keys, batch, after)
        entries = [e for e in entries if _entry_key(e.dead_id) <= stop]
        if not entries:
            return moved
        results = yield [replay_dead(keys, e) for e in entries]
        moved += sum(1 for r in results if r)
        if progress is not None:
            progress(moved)
        after = entries[-1].dead_id


def purge_dead(keys: QueueKeys) -> Call[int]:
    """Delete every DLQ entry; returns how many were removed."""
    return raw("XTRIM", keys.dead, "MAXLEN", 0, parse=int)


def find_dead(keys: QueueKeys, ident: str, *, batch: int = 500) -> Flow[DeadEntry | None]:
    """The DLQ entry ``ident``: a dead-letter entry id (``1700000000000-0``), or a job id
    (its most recent dead-letter entry)."""
    if _ENTRY_ID.match(ident):
        entries = yield raw("XRANGE", keys.dead, ident, ident, "COUNT", 1)
        if entries:
            return parse_dead(*entries[0])
    end = "+"
    while True:
        entries = yield raw("XREVRANGE", keys.dead, end, "-", "COUNT", batch)
        for eid, fields in entries:
            if _entry_job_id(fields) == ident:
                return parse_dead(eid, fields)
        if len(entries) < batch:
            return None
        end = "(" + _s(entries[-1][0])


def replay_entry(keys: QueueKeys, ident: str) -> Flow[DeadEntry]:
    """Replay one DLQ entry (by entry id or job id); returns the entry replayed. Raises
    :class:`JobNotFoundError` if there is none (or another client replayed it first)."""
    entry = yield from find_dead(keys, ident)
    if entry is None:
        raise JobNotFoundError(f"no dead-letter entry {ident!r} in queue {keys.queue!r}")
    if not (yield replay_dead(keys, entry)):
        raise JobNotFoundError(f"dead-letter entry {entry.dead_id!r} was replayed or purged")
    return entry


def dead_count(keys: QueueKeys) -> Call[int]:
    """How many entries the DLQ holds."""
    return raw("XLEN", keys.dead, parse=int)


def delete_dead(keys: QueueKeys, dead_id: str) -> Call[bool]:
    """Delete one dead-letter entry (XDEL); False if there was none with that id."""
    return raw("XDEL", keys.dead, dead_id, parse=lambda r: int(r) > 0)
