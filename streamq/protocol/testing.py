"""Operations the test harness (:mod:`streamq.testing`) needs and nothing else does: make
delayed jobs due now, list a queue's job records and lifecycle events, and delete every key
under a (per-test) prefix. Pure like the rest of the protocol layer: calls and flows, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamq.job import Job
from streamq.protocol import worker as worker_ops
from streamq.protocol.calls import Call, Flow, raw, score_pairs
from streamq.protocol.calls import text as _s
from streamq.protocol.jobs import get_job
from streamq.protocol.keys import QueueKeys

__all__ = [
    "delete_prefix",
    "events",
    "job_ids",
    "jobs",
    "make_due",
    "next_due",
    "promote_due",
]

#: Ids per script call or pipeline: bounded, so a big queue never builds one huge command.
BATCH = 500


def _glob_escape(text: str) -> str:
    """``text`` with the glob metacharacters of SCAN MATCH escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def promote_due(keys: QueueKeys) -> Flow[int]:
    """Move every due delayed id into the stream (the workers' promote path); returns how
    many moved."""
    total = 0
    while True:
        info = yield worker_ops.due(keys, BATCH)
        if not info.ids:
            return total
        total += yield worker_ops.promote(keys, info.ids)


def next_due(keys: QueueKeys) -> Call[int | None]:
    """The due time (ms, Redis clock) of the soonest delayed job or retry; None if none."""

    def parse(reply: Any) -> int | None:
        pairs = score_pairs(reply)
        return int(float(pairs[0][1])) if pairs else None

    return raw("ZRANGE", keys.delayed, 0, 0, "WITHSCORES", parse=parse)


def make_due(keys: QueueKeys, job_ids: Sequence[str] | None = None) -> Flow[int]:
    """Make delayed jobs and retries of ``keys`` due now (Redis clock), then promote them
    into the stream. ``job_ids`` limits it to those jobs (default: every delayed one).
    Returns how many jobs were made due; ids that are not delayed are ignored."""
    if job_ids is None:
        ids = [_s(m) for m in (yield raw("ZRANGE", keys.delayed, 0, -1))]
    else:
        ids = list(job_ids)
    moved = 0
    for i in range(0, len(ids), BATCH):
        chunk = ids[i : i + BATCH]
        moved += yield Call("make_due", [keys.delayed, *(keys.job(j) for j in chunk)], chunk, int)
    yield from promote_due(keys)
    return moved


def job_ids(keys: QueueKeys) -> Flow[list[str]]:
    """Ids of every job record of the queue (SCAN: for tests and small namespaces)."""
    stem = keys.job("")
    match = _glob_escape(stem) + "*"
    found: set[str] = set()
    cursor: Any = 0
    while True:
        cursor, names = yield raw("SCAN", cursor, "MATCH", match, "COUNT", 1000, "TYPE", "hash")
        found.update(_s(n)[len(stem) :] for n in names)
        if int(cursor) == 0:
            return sorted(found)


def jobs(keys: QueueKeys) -> Flow[list[Job]]:
    """Every job record of the queue, read in pipelines of :data:`BATCH`."""
    ids = yield from job_ids(keys)
    out: list[Job] = []
    for i in range(0, len(ids), BATCH):
        got = yield [get_job(keys, j) for j in ids[i : i + BATCH]]
        out += [j for j in got if j is not None]
    return out


def events(keys: QueueKeys) -> Call[list[tuple[str, str]]]:
    """The queue's lifecycle events, oldest first, as ``(job id, event)`` pairs (one entry
    of the capped events stream may carry several jobs)."""

    def parse(reply: Any) -> list[tuple[str, str]]:
        return [(_s(k), _s(v)) for _, fields in reply or [] for k, v in fields.items()]

    return raw("XRANGE", keys.events, "-", "+", parse=parse)


def delete_prefix(prefix: str) -> Flow[int]:
    """UNLINK every key under ``prefix:`` (a test's own namespace; never FLUSHALL)."""
    match = _glob_escape(prefix) + ":*"
    deleted = 0
    cursor: Any = 0
    while True:
        cursor, names = yield raw("SCAN", cursor, "MATCH", match, "COUNT", 1000)
        for i in range(0, len(names), BATCH):
            deleted += yield raw("UNLINK", *names[i : i + BATCH], parse=int)
        if int(cursor) == 0:
            return deleted
