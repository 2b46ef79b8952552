"""Operations a worker runs: start-up checks, fetch, finish, lease renewal, reclaim,
promotion, retention, heartbeat, pause flags and the shutdown hand-back. Pure builders and
parsers, like the rest of :mod:`streamq.protocol`: every Redis command a worker sends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from streamq.protocol.calls import Arg, Call, Code, Flow, on_every_master
from streamq.protocol.calls import text as _s
from streamq.protocol.codec import Entry, decode_entry
from streamq.protocol.keys import GROUP, QueueKeys

__all__ = [
    "DeadRecord",
    "Done",
    "DueInfo",
    "FailOutcome",
    "Fetched",
    "Reclaimed",
    "Released",
    "Taken",
]


class Fetched(NamedTuple):
    """One delivered entry: decoded, or the reason it could not be (a NamedTuple: one is
    built per job)."""

    queue: str
    entry_id: str
    entry: Entry | None
    error: str | None = None
    raw_job_id: str | None = None
    #: The entry's lane: "" (the plain stream) or FLOW (kstream).
    lane: str = ""
    #: A wake-up entry of kstream (flow jobs are held): no job, the worker takes.
    wakeup: bool = False
    #: The partition's hash tag ('' = the queue's home).
    tag: str = ""


def _decode(queue: str, eid: Any, fields: Any, lane: str = "", tag: str = "") -> Fetched:
    try:
        entry = decode_entry(eid, fields)
        if lane or tag:
            return Fetched(queue, entry.entry_id, entry, None, None, lane, False, tag)
        return Fetched(queue, entry.entry_id, entry)  # positional, defaults: once per job
    except ValueError as exc:
        if lane and _is_wakeup(fields):
            return Fetched(queue, _s(eid), None, lane=lane, wakeup=True, tag=tag)
        raw = _raw_job_id(fields)
        try:
            job_id = raw.decode("utf-8") if isinstance(raw, bytes) and raw else None
        except UnicodeDecodeError:
            job_id = None
        return Fetched(queue, _s(eid), None, f"undecodable entry: {exc}", job_id, lane, tag=tag)


def _is_wakeup(fields: Any) -> bool:
    if isinstance(fields, dict):
        return list(fields) == [b"w"]
    return isinstance(fields, list) and len(fields) == 2 and fields[0] == b"w"


def _raw_job_id(fields: Any) -> Any:
    if isinstance(fields, dict):
        return fields.get(b"i")
    if isinstance(fields, list) and len(fields) % 2 == 0:
        for name, value in zip(fields[0::2], fields[1::2], strict=True):
            if name == b"i":
                return value
    return None


def raw_reply(response: Any, **_: Any) -> Any:
    """A redis-py response callback that keeps a reply as the server sent it: the worker
    installs it for XREADGROUP, whose stock callback builds a dict per entry only for
    :func:`~streamq.protocol.codec.decode_entry` to take it apart again."""
    return response


def ensure_group(keys: QueueKeys) -> Call[None]:
    """Create the stream and consumer group (from id 0) unless they exist."""

    return Call(
        None,
        command=("XGROUP", "CREATE", keys.stream, GROUP, "0", "MKSTREAM"),
        parse=lambda r: None,
    )


def group_exists(keys: QueueKeys) -> Call[bool]:
    """Whether the queue's stream has the consumer group (read-only: allowed when full)."""

    def parse(reply: Any) -> bool:
        return any(_s(g.get("name", g.get(b"name", b""))) == GROUP for g in reply or [])

    return Call(None, command=("XINFO", "GROUPS", keys.stream), parse=parse)


def fetch(
    streams: Sequence[QueueKeys], consumer: str, count: int, block_ms: int | None
) -> Call[list[Fetched]]:
    """XREADGROUP up to ``count`` new entries across queues (never more than free slots).
    ``streams`` may hold flow lanes: entries read there are wake-ups. Parses the raw
    reply (the worker installs :func:`raw_reply`) as well as redis-py's."""
    by_stream = {k.stream.encode(): (k.queue, k.lane, k.tag) for k in streams}

    def parse(reply: Any) -> list[Fetched]:
        out: list[Fetched] = []
        if not reply:
            return out
        items = reply.items() if isinstance(reply, dict) else reply
        for stream, entries in items:
            queue, lane, tag = by_stream[
                stream if isinstance(stream, bytes) else str(stream).encode()
            ]
            for eid, fields in entries:
                out.append(_decode(queue, eid, fields, lane, tag))
        return out

    cmd: tuple[Arg, ...] = (
        "XREADGROUP",
        "GROUP",
        GROUP,
        consumer,
        "COUNT",
        count,
        *(() if block_ms is None else ("BLOCK", block_ms)),
        "STREAMS",
        *(k.stream for k in streams),
        *(">" for _ in streams),
    )
    return Call(None, command=cmd, parse=parse)


@dataclass(slots=True)
class Done:
    """A finished attempt waiting to be recorded (not frozen: a frozen dataclass's
    ``__init__`` costs a microsecond more, once per job)."""

    job_id: str
    entry_id: str
    attempt: int
    result: bytes
    started_ms: int
    duration_ms: float = 0.0


def complete(
    keys: QueueKeys, consumer: str, done: Sequence[Done], events_maxlen: int
) -> Call[list[bool]]:
    """Record a batch of completions in one script call; False = fenced (lease lost).
    Idempotent for the caller: sending the same batch again reports True without writing."""
    args: list[Arg] = [GROUP, consumer, events_maxlen, len(done)]
    for d in done:
        args += [d.job_id, d.entry_id, d.attempt, d.result, d.started_ms, round(d.duration_ms, 3)]
    return Call(
        "complete",
        [
            keys.stream,
            keys.completed,
            keys.events,
            keys.stats,
            keys.throughput,
            keys.histograms,
            *(keys.job(d.job_id) for d in done),
            *(keys.flow_keys() if keys.is_flow else ()),
        ],
        args,
        # DONE: a retried call found its own earlier completion (the reply had been lost).
        lambda r: [int(c) in (Code.OK, Code.DONE) for c in r],
    )


@dataclass(frozen=True, slots=True)
class FailOutcome:
    """What :func:`fail` did: ``state`` is 'delayed' (retry), 'failed' (dead) or '' (fenced)."""

    fenced: bool
    state: str
    due_ms: int


def fail(
    keys: QueueKeys,
    consumer: str,
    job_id: str,
    entry_id: str,
    attempt: int,
    error: str,
    traceback: str,
    retry_delay_ms: int,
    reason: str,
    started_ms: int,
    events_maxlen: int,
    *,
    skip_owner_check: bool = False,
) -> Call[FailOutcome]:
    """Record a failed attempt: retry after ``retry_delay_ms`` (Redis clock), or dead when
    it is negative."""
    k = keys
    return Call(
        "fail",
        [
            k.stream,
            k.delayed,
            k.dead,
            k.failed,
            k.events,
            k.stats,
            k.job(job_id),
            k.throughput,
            *(k.flow_keys() if k.is_flow else ()),
        ],
        [
            GROUP,
            consumer,
            events_maxlen,
            job_id,
            entry_id,
            attempt,
            error[:4000],
            traceback[:16000],
            retry_delay_ms,
            reason,
            started_ms,
            "1" if skip_owner_check else "0",
        ],
        lambda r: FailOutcome(int(r[0]) == Code.FENCED, _s(r[1]), int(r[2])),
    )


def dead_entry(keys: QueueKeys, entry_id: str, fields: Any, reason: str) -> Call[str]:
    """Move an undecodable entry (no usable job id) to the DLQ as it was, and drop it."""
    flat: list[Arg] = []
    if isinstance(fields, dict):
        for k, v in list(fields.items())[:64]:
            flat += [b"raw:" + (k if isinstance(k, bytes) else str(k).encode()), v]
    cmd_fields: list[Arg] = [
        "i",
        "",
        "n",
        "",
        "d",
        "null",
        "o",
        "",
        "a",
        0,
        "e",
        reason,
        "tb",
        "",
        "rs",
        "undecodable",
        "src",
        entry_id,
        *flat,
    ]
    return Call(None, command=("XADD", keys.dead, "*", *cmd_fields), parse=_s)


def ack_drop(keys: QueueKeys, entry_id: str) -> list[Call[Any]]:
    """XACK + XDEL one entry (used after it was copied to the DLQ)."""
    return [
        Call(None, command=("XACK", keys.stream, GROUP, entry_id)),
        Call(None, command=("XDEL", keys.stream, entry_id)),
    ]


def renew(keys: QueueKeys, consumer: str, entry_ids: Sequence[str]) -> Call[list[str]]:
    """Re-claim own running entries (lease renewal); returns the ids this consumer lost."""
    return Call("renew", [keys.stream], [GROUP, consumer, *entry_ids], lambda r: [_s(x) for x in r])


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """Result of one XAUTOCLAIM pass."""

    cursor: str
    entries: list[tuple[Fetched, int]]
    deleted: list[str]


def reclaim(
    keys: QueueKeys, consumer: str, min_idle_ms: int, cursor: str, count: int
) -> Call[Reclaimed]:
    """Take over up to ``count`` entries idle past ``min_idle_ms``, with delivery counts."""

    def parse(r: list[Any]) -> Reclaimed:
        entries = []
        for eid, fields, deliveries in r[1]:
            flat = fields or []
            fdict = dict(zip(flat[0::2], flat[1::2], strict=False))
            entries.append((_decode(keys.queue, eid, fdict, keys.lane, keys.tag), int(deliveries)))
        return Reclaimed(_s(r[0]), entries, [_s(x) for x in r[2]])

    return Call("reclaim", [keys.stream], [GROUP, consumer, min_idle_ms, cursor, count], parse)


class Released(NamedTuple):
    """What :func:`release` did: how many jobs went back, and the ids past max stalls
    (left in the caller's PEL, to dead-letter)."""

    handed_back: int
    stalled: list[str]


def release(
    keys: QueueKeys, consumer: str, jobs: Sequence[tuple[str, str]], max_stalls: int = -1
) -> Call[Released]:
    """Hand running jobs (job id, entry id) back to the queue at once; on the flow lane
    they are held again at their old place. ``max_stalls >= 0`` counts a stall per job
    (a flow job reclaimed from a dead worker) and keeps a job past it."""
    args: list[Arg] = [GROUP, consumer, max_stalls]
    for job_id, eid in jobs:
        args += [job_id, eid]
    flow = keys.flow_keys() if keys.is_flow else []
    return Call(
        "release",
        [keys.stream, *flow, *(keys.job(j) for j, _ in jobs)],
        args,
        lambda r: Released(int(r[0]), [_s(x) for x in r[1]]),
    )


def hold(
    keys: QueueKeys, consumer: str, job_id: str, entry_id: str, after_ms: int, key_wide: bool
) -> Call[FailOutcome]:
    """A handler raised RateLimited: the job waits ``after_ms`` without using an attempt
    (``key_wide``: its whole key waits, on the flow lane)."""
    return Call(
        "hold",
        [keys.stream, keys.delayed, keys.job(job_id), keys.stats, *keys.flow_keys()],
        [GROUP, consumer, job_id, entry_id, after_ms, "1" if key_wide else "0"],
        lambda r: FailOutcome(int(r[0]) == Code.FENCED, _s(r[1]), int(r[2])),
    )


def rlog_prune(keys: QueueKeys, cursor: str, count: int = 500) -> Call[tuple[str, int]]:
    """Drop rate-log starts that have left every window (a slice of ``count``, from
    ``cursor``); returns the next cursor ('' = done) and how many went."""
    return Call(
        "rlog_prune",
        [keys.rlog, keys.limits],
        [cursor, count],
        lambda r: (_s(r[0]), int(r[1])),
    )


def flow_busy(keys: QueueKeys) -> Flow[int]:
    """Flow jobs held or running (kstream's PEL, wake-ups included) on ``keys``' queue."""
    held, pending = yield [
        Call(None, command=("ZCARD", keys.held), parse=int),
        Call(None, command=("XPENDING", keys.kstream, GROUP), parse=lambda r: r),
    ]
    running = 0
    if isinstance(pending, dict):
        running = int(pending.get("pending") or 0)
    elif isinstance(pending, list | tuple) and pending:
        running = int(pending[0] or 0)
    return int(held) + running


@dataclass(frozen=True, slots=True)
class Taken:
    """What a take handed this consumer: the entries (on the flow lane), the Redis time,
    when the next rate window opens (-1: no key waits for one) and the highest priority
    still able to run now (-1: none)."""

    fetched: list[Fetched]
    now_ms: int
    opens_ms: int
    top_priority: int


def take(keys: QueueKeys, consumer: str, count: int, wakeups: Sequence[str] = ()) -> Call[Taken]:
    """Admit up to ``count`` held flow jobs of ``keys``' queue and deliver them to
    ``consumer`` (take.lua); ``wakeups``: wake-up entry ids the consumer read, to drop."""
    lane = keys.flow_lane()

    def parse(r: list[Any]) -> Taken:
        got = [_decode(lane.queue, eid, fields, lane.lane) for eid, fields in r[0] or []]
        return Taken(got, int(r[1]), int(r[2]), int(r[3]))

    return Call(
        "take",
        [*keys.flow_keys(), keys.rlog, keys.limits, keys.stats],
        [GROUP, consumer, count, *wakeups],
        parse,
    )


@dataclass(frozen=True, slots=True)
class DueInfo:
    """Due delayed ids now, the Redis time, and the next due time (-1: none)."""

    now_ms: int
    next_due_ms: int
    ids: list[str]


def due(keys: QueueKeys, limit: int) -> Call[DueInfo]:
    """Which delayed jobs are due by the Redis clock."""
    return Call(
        "due",
        [keys.delayed],
        [limit],
        lambda r: DueInfo(int(r[0]), int(r[1]), [_s(x) for x in r[2]]),
    )


def promote(keys: QueueKeys, ids: Sequence[str]) -> Call[int]:
    """Move due ids into the stream (each exactly once, however many promoters race)."""
    return Call(
        "promote",
        [
            keys.delayed,
            keys.stream,
            keys.histograms,
            *keys.flow_keys(),
            *(keys.job(i) for i in ids),
        ],
        [GROUP, *ids],
        int,
    )


def retention(index: str, keep: int, max_age_ms: int, limit: int) -> Call[list[str]]:
    """Ids of finished records beyond the keep-count or max age, oldest first."""
    return Call("retention", [index], [keep, max_age_ms, limit], lambda r: [_s(x) for x in r])


def trim(keys: QueueKeys, index: str, ids: Sequence[str]) -> Call[int]:
    """Drop the records of ``ids`` still in ``index``."""
    return Call("trim", [index, *(keys.job(i) for i in ids)], list(ids), int)


def heartbeat(keys: QueueKeys, consumer: str, now_ms: int, info: bytes) -> list[Call[Any]]:
    """Register this worker as alive on the queue (for operators)."""
    return [
        Call(None, command=("HSET", keys.workers, consumer, info)),
    ]


# ---------------------------------------------------------------------- start-up


def server_info() -> Call[dict[str, dict[str, Any]]]:
    """INFO of every master (one server: of it), by node, for
    :func:`streamq.worker.checks.check_masters`: each master holds queues of its own."""
    return on_every_master("INFO", parse=dict)


def _save(cfg: Any) -> str:
    pairs = dict(zip(cfg[0::2], cfg[1::2], strict=False)) if isinstance(cfg, list) else cfg
    return _s(pairs.get(b"save", pairs.get("save", b"")))


def save_setting() -> Call[dict[str, str]]:
    """Every master's ``save`` setting, by node (CONFIG GET; a least-privilege user may be
    refused: the caller tolerates NOPERM)."""
    return on_every_master(
        "CONFIG", "GET", "save", parse=lambda replies: {n: _save(r) for n, r in replies}
    )


# ---------------------------------------------------------------------- odd entries


def entry_owner(keys: QueueKeys, job_id: str) -> Call[str | None]:
    """The entry id a job's record names as its current one (field ``x``), or None."""
    return Call(
        None,
        command=("HGET", keys.job(job_id), "x"),
        parse=lambda r: None if r is None else r.decode(errors="replace"),
    )


def entry_fields(keys: QueueKeys, entry_id: str) -> Call[dict[Any, Any]]:
    """The raw fields of one stream entry ({} when it is gone)."""

    def parse(rows: Any) -> dict[Any, Any]:
        return dict(rows[0][1]) if rows else {}

    return Call(None, command=("XRANGE", keys.stream, entry_id, entry_id), parse=parse)


@dataclass(frozen=True, slots=True)
class DeadRecord:
    """A waiting job's record that names a given stream entry."""

    job_id: str
    name: str
    attempts: int


def job_of_entry(keys: QueueKeys, entry_id: str) -> Flow[DeadRecord | None]:
    """Find the waiting job whose record names ``entry_id`` (a SCAN of the queue's job
    records: only for the rare entry deleted under a pending claim)."""
    prefix = keys.job("")
    cursor: int | str = 0
    target = entry_id.encode()
    while True:
        cursor, names = yield Call(
            None, command=("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000)
        )
        if names:
            recs = yield [Call(None, command=("HMGET", n, "x", "s", "n", "a")) for n in names]
            for key, (x, state, name, attempts) in zip(names, recs, strict=True):
                if x == target and state == b"waiting":
                    return DeadRecord(_s(key)[len(prefix) :], _s(name or b""), int(attempts or 0))
        if int(cursor) == 0:
            return None


def count_reclaimed(keys: QueueKeys, n: int) -> Call[int]:
    """Add ``n`` to the queue's reclaimed counter (once per sweep, not per job)."""
    return Call(None, command=("HINCRBY", keys.stats, "reclaimed", n), parse=int)


# ---------------------------------------------------------------------- registry, pauses


def forget_stale(keys: QueueKeys, now_ms: int, stale_ms: int, keep_minutes: int) -> Flow[None]:
    """Drop heartbeats older than ``stale_ms`` (crashed workers) and per-minute throughput
    counters older than ``keep_minutes``, so the registry and the counters stay bounded."""
    beats = yield Call(None, command=("HGETALL", keys.workers))
    stale = [name for name, blob in (beats or {}).items() if now_ms - _seen_ms(blob) > stale_ms]
    if stale:
        yield Call(None, command=("HDEL", keys.workers, *stale))
    fields = yield Call(None, command=("HKEYS", keys.throughput))
    oldest = now_ms // 60000 - keep_minutes
    old = [f for f in fields or [] if _minute(f) < oldest]
    if old:
        yield Call(None, command=("HDEL", keys.throughput, *old))


def _seen_ms(blob: Any) -> int:
    try:
        return int(orjson.loads(blob).get("seen_ms", 0))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 0


def _minute(field: bytes | str) -> int:
    head = _s(field).split(":", 1)[0]
    return int(head) if head.isdigit() else 0


def paused_queues(keys: Sequence[QueueKeys]) -> list[Call[bool]]:
    """Whether each queue is paused by an operator (one pipeline)."""
    return [Call(None, command=("EXISTS", k.paused), parse=lambda r: bool(int(r))) for k in keys]


def unregister(keys: QueueKeys, consumer: str) -> Flow[None]:
    """Leave the live-worker registry, and drop the consumer if it holds no entry."""
    yield Call(None, command=("HDEL", keys.workers, consumer))
    pending = yield _pending(keys, consumer, 1)
    if not pending:
        yield Call(None, command=("XGROUP", "DELCONSUMER", keys.stream, GROUP, consumer))


# ---------------------------------------------------------------------- hand-back


def _pending(keys: QueueKeys, consumer: str, count: int) -> Call[list[str]]:
    return Call(
        None,
        command=("XPENDING", keys.stream, GROUP, "-", "+", count, consumer),
        parse=lambda r: [_s(p["message_id"]) for p in r or []],
        options={"parse_detail": True},
    )


def hand_back(
    keys: QueueKeys, consumer: str, known: Mapping[str, str], limit: int = 10_000
) -> Flow[tuple[int, list[tuple[str, str]]]]:
    """Return every entry in ``consumer``'s PEL to the queue at once (others start it now,
    not after the lease): those in ``known`` (entry id -> job id) and entries fetched in
    flight, whose job ids are read off the stream in one pipeline. Returns how many the
    script released and the (job id, entry id) pairs it was given."""
    eids = yield _pending(keys, consumer, limit)
    if not eids:
        return 0, []
    jobs = [(known[eid], eid) for eid in eids if eid in known]
    unknown = [eid for eid in eids if eid not in known]
    if unknown:
        found = yield [entry_fields(keys, e) for e in unknown]
        wakeups = []
        for eid, fields in zip(unknown, found, strict=True):
            jid = fields.get(b"i")
            if jid:
                jobs.append((jid.decode(errors="replace"), eid))
            elif keys.is_flow and list(fields) == [b"w"]:
                wakeups.append(eid)
        if wakeups:  # read but not yet passed to a take: drop them, the take re-arms
            yield [c for eid in wakeups for c in ack_drop(keys, eid)]
    released = (yield release(keys, consumer, jobs)).handed_back if jobs else 0
    return released, jobs
