"""Queues as a whole: status counts, discovery under a prefix, whether a name was ever
used, job listings by state, finding a job in any queue, pause/resume and the live-worker
registry. Pure builders and parsers; the drivers run them.

Ages (oldest waiting job, heartbeat age) are measured against the Redis clock (``TIME``),
the one clock streamq uses for due times, not against the local clock of the caller.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, get_args

import orjson

from streamq.errors import ConfigError
from streamq.job import Job
from streamq.protocol import limits as limit_ops
from streamq.protocol import partitions as partition_ops
from streamq.protocol.calls import Call, Flow, raw, score_pairs, server_time
from streamq.protocol.calls import text as _s
from streamq.protocol.jobs import get_job
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.protocol.partitions import PartitionMeta
from streamq.results import JobEntry, QueueInfo, QueueStatus, WorkerInfo

__all__ = [
    "LIST_STATES",
    "LIVE_WINDOW_MS",
    "ListState",
    "clear_paused",
    "discover",
    "find_job",
    "list_jobs",
    "list_workers",
    "list_workers_all",
    "paused_flag",
    "queue_known",
    "queue_status",
    "set_paused",
    "status",
    "status_all",
]

#: A worker whose last heartbeat is younger than this counts as alive.
LIVE_WINDOW_MS = 10_000

ListState = Literal["waiting", "held", "active", "delayed", "completed", "failed"]
#: The states :func:`list_jobs` can list.
LIST_STATES: tuple[str, ...] = get_args(ListState)


# ---------------------------------------------------------------------------- reply helpers


def _record(item: Any) -> dict[str, Any]:
    """An XINFO record (a dict under redis-py's parsers, a flat list otherwise) as str keys."""
    if isinstance(item, Mapping):
        return {_s(k): v for k, v in item.items()}
    return {_s(item[i]): item[i + 1] for i in range(0, len(item), 2)}


def _opt_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _find_group(reply: Any) -> dict[str, Any] | None:
    for item in reply or []:
        rec = _record(item)
        if _s(rec.get("name", b"")) == GROUP:
            return rec
    return None


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


# ---------------------------------------------------------------------------- status


def status(keys: QueueKeys) -> Call[QueueStatus]:
    """Counts of one queue in one script call."""

    def parse(r: list[Any]) -> QueueStatus:
        oldest = _s(r[9])
        n = [int(v) for v in r[:9]]
        return QueueStatus(
            keys.queue,
            n[0],
            n[1],
            n[2],
            n[3],
            n[4],
            n[5],
            n[6],
            n[7],
            n[8],
            oldest_waiting_ms=int(oldest.split("-")[0]) if oldest else None,
        )

    k = keys
    return Call(
        "status", [k.stream, k.delayed, k.completed, k.failed, k.dead, k.stats], [GROUP], parse
    )


# ---------------------------------------------------------------------------- discovery, lists


def _scan(match: str, kind: str, batch: int) -> Flow[list[str]]:
    """Every key name matching ``match`` of type ``kind`` (one SCAN pass, all pages)."""
    out: list[str] = []
    cursor: Any = 0
    while True:
        cursor, names = yield raw("SCAN", cursor, "MATCH", match, "COUNT", batch, "TYPE", kind)
        out += [_s(n) for n in names]
        if int(cursor) == 0:
            return out


def discover(prefix: str, *, batch: int = 1000) -> Flow[list[str]]:
    """Every queue under ``prefix``: SCAN for ``{prefix}:{Q}:stream`` streams; sorted names."""
    pattern = re.compile(rf"^{re.escape(prefix)}:\{{([^{{}}]+)\}}:stream$")
    names = yield from _scan(f"{_glob_escape(prefix)}:{{*}}:stream", "stream", batch)
    # A partition's tag is "<queue>~...": "~" is never in a queue name (keys.py).
    return sorted({m.group(1).split("~", 1)[0] for n in names if (m := pattern.match(n))})


def queue_known(keys: QueueKeys) -> Call[bool]:
    """True when the queue has left any trace: a stream, delayed or finished jobs, DLQ
    entries, schedules, worker heartbeats or counters (one EXISTS, all keys in one slot)."""
    k = keys
    present = (k.stream, k.delayed, k.completed, k.failed, k.cancelled, k.dead, k.repeat)
    return raw("EXISTS", *present, k.workers, k.stats, parse=lambda r: int(r) > 0)


def find_job(prefix: str, job_id: str, *, batch: int = 1000) -> Flow[list[Job]]:
    """Every record of job ``job_id`` under ``prefix``, whichever queue holds it: SCAN for
    ``{prefix}:{*}:job:<id>`` (so a queue with only delayed jobs, and no stream yet, counts
    too), then read each record; sorted by queue. Ids are unique per queue, not across
    queues, so there may be several."""
    pattern = re.compile(rf"^{re.escape(prefix)}:\{{([^{{}}]+)\}}:job:(.+)$")
    match = f"{_glob_escape(prefix)}:{{*}}:job:{_glob_escape(job_id)}"
    names = yield from _scan(match, "hash", batch)
    tags = {m.group(1) for n in names if (m := pattern.match(n)) and m.group(2) == job_id}
    if not tags:
        return []
    # A partition's tag is "<queue>~...", the home's the queue name itself.
    where = sorted((t.split("~", 1)[0], t if "~" in t else "") for t in tags)
    records = yield [get_job(QueueKeys(q, prefix, tag=t), job_id) for q, t in where]
    return [j for j in records if j is not None]


def _groups(keys: Sequence[QueueKeys]) -> Flow[list[dict[str, Any] | None]]:
    """The streamq group record (XINFO GROUPS) of each queue; None if no stream or group."""
    exists = yield [raw("EXISTS", k.stream) for k in keys]
    present = [k for k, e in zip(keys, exists, strict=True) if int(e)]
    infos = (yield [raw("XINFO", "GROUPS", k.stream) for k in present]) if present else []
    by_queue = {k.queue: _find_group(r) for k, r in zip(present, infos, strict=True)}
    return [by_queue.get(k.queue) for k in keys]


def _heartbeats(reply: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in (reply or {}).items():
        try:
            beat = orjson.loads(value)
        except orjson.JSONDecodeError:
            beat = {}
        out[_s(name)] = beat if isinstance(beat, dict) else {}
    return out


def _alive(beat: Mapping[str, Any], now_ms: int) -> bool:
    seen = _opt_int(beat.get("seen_ms"))
    return seen is not None and now_ms - seen <= LIVE_WINDOW_MS


def _stuck_in(beat: Mapping[str, Any], queue: str) -> int:
    counts = beat.get("stuck_by_queue")
    return (_opt_int(counts.get(queue)) or 0) if isinstance(counts, dict) else 0


def queue_status(keys: Sequence[QueueKeys], *, expand: bool = True) -> Flow[list[QueueInfo]]:
    """:class:`QueueInfo` of each queue, flow-control figures included, in two round trips
    however many queues: one pipeline of counts, heartbeats, flags, flow reads, partition
    counts and which streams exist, then XINFO GROUPS of the streams (plain and flow) that
    do. A partitioned queue costs one more pair for its other partitions, and is reported
    as one queue (``expand=False``: each of ``keys`` as it is)."""
    per = 5 + limit_ops.FLOW_READS
    replies = yield [
        server_time(),
        *(
            c
            for k in keys
            for c in (
                status(k),
                raw("HGETALL", k.workers),
                raw("EXISTS", k.paused),
                raw("EXISTS", k.stream),
                partition_ops.read_meta(k),
                *limit_ops.flow_reads(k),
            )
        ),
    ]
    now = replies[0]
    rows = [replies[1 + per * i : 1 + per * (i + 1)] for i in range(len(keys))]
    # The flow reads end with EXISTS kstream; a missing stream cannot be asked XINFO.
    plain = [i for i, r in enumerate(rows) if int(r[3])]
    flow = [i for i, r in enumerate(rows) if r[-1]]
    infos = (
        (
            yield [
                *(raw("XINFO", "GROUPS", keys[i].stream) for i in plain),
                *(limit_ops.kstream_groups(keys[i]) for i in flow),
            ]
        )
        if plain or flow
        else []
    )
    groups = {i: _find_group(r) for i, r in zip(plain, infos[: len(plain)], strict=True)}
    running = {
        i: limit_ops.parse_kstream_group(r) for i, r in zip(flow, infos[len(plain) :], strict=True)
    }
    out = []
    for i in range(len(keys)):
        st, beats, paused = rows[i][:3]
        group = groups.get(i)
        live = [b for b in _heartbeats(beats).values() if _alive(b, now)]
        lag = _opt_int(group.get("lag")) if group else None
        oldest = st.oldest_waiting_ms
        out.append(
            QueueInfo(
                st,
                lag=st.waiting if lag is None else lag,
                oldest_waiting_age_ms=None if oldest is None else max(now - oldest, 0),
                paused=bool(int(paused)),
                workers=sum(1 for b in live),
                stuck_handlers=sum(_stuck_in(b, keys[i].queue) for b in live),
                flow=limit_ops.parse_flow_reads(rows[i][5:], running.get(i, 0)),
            )
        )
    metas = [rows[i][4] for i in range(len(keys))]
    if expand and any(m.partitions > 1 or len(m.history) > 1 for m in metas):
        return (yield from _with_partitions(keys, metas, out))
    return out


def _with_partitions(
    keys: Sequence[QueueKeys], metas: Sequence[PartitionMeta], homes: list[QueueInfo]
) -> Flow[list[QueueInfo]]:
    """``homes`` with the counts of each queue's other partitions added: one queue each."""
    pairs = enumerate(zip(keys, metas, strict=True))
    extra = {i: partition_ops.partition_keys(k, m)[1:] for i, (k, m) in pairs}
    flat = [k for ks in extra.values() for k in ks]
    if not flat:
        return homes
    parts = yield from queue_status(flat, expand=False)
    out, at = [], 0
    for i, home in enumerate(homes):
        mine = parts[at : at + len(extra[i])]
        at += len(extra[i])
        if not mine:
            out.append(home)
            continue
        ages = [
            p.oldest_waiting_age_ms for p in (home, *mine) if p.oldest_waiting_age_ms is not None
        ]
        out.append(
            replace(
                home,
                status=sum_status([home.status, *(p.status for p in mine)]),
                partitions=(home.status, *(p.status for p in mine)),
                partition_labels=tuple(partition_ops.partition_labels(metas[i])),
                partition_count=metas[i].partitions,
                lag=home.lag + sum(p.lag for p in mine),
                oldest_waiting_age_ms=max(ages) if ages else None,
            )
        )
    return out


def sum_status(found: Sequence[QueueStatus]) -> QueueStatus:
    """One :class:`QueueStatus` for the partitions of one queue (named as the first)."""
    first = found[0]
    oldest = [s.oldest_waiting_ms for s in found if s.oldest_waiting_ms is not None]
    total: dict[str, Any] = {
        f: sum(getattr(s, f) for s in found)
        for f in (
            "waiting",
            "active",
            "completed",
            "failed",
            "delayed",
            "dead",
            "completed_total",
            "failed_total",
            "retried_total",
        )
    }
    return replace(first, **total, oldest_waiting_ms=min(oldest) if oldest else None)


def status_all(prefix: str) -> Flow[list[QueueInfo]]:
    """:class:`QueueInfo` of every queue found under ``prefix``."""
    queues = yield from discover(prefix)
    return (yield from queue_status([QueueKeys(q, prefix) for q in queues]))


def _with_records(keys: QueueKeys, rows: list[JobEntry]) -> Flow[list[JobEntry]]:
    known = [r for r in rows if r.job_id]
    if not known:
        return rows
    jobs = yield [get_job(keys, r.job_id) for r in known]
    by_id = {r.job_id: j for r, j in zip(known, jobs, strict=True)}
    return [replace(r, job=by_id.get(r.job_id)) for r in rows]


def _entry_job_id(fields: Any) -> str:
    return _s((fields or {}).get(b"i", b""))


def list_jobs(
    keys: QueueKeys, state: str, limit: int = 20, offset: int = 0
) -> Flow[list[JobEntry]]:
    """Up to ``limit`` jobs in ``state`` with their records, skipping the first ``offset``:
    waiting and delayed oldest / soonest first, active in PEL order, completed and failed
    newest first, held by key, then highest priority, then FIFO (with ``key`` and
    ``priority`` from the held entry). Skipping is O(log N) for delayed/completed/failed/
    held; for waiting and active (stream and PEL, which cannot seek by position) it reads
    and drops ``offset`` entries."""
    if state not in LIST_STATES:
        raise ConfigError(f"state must be one of {', '.join(LIST_STATES)}, got {state!r}")
    if limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    if offset < 0:
        raise ConfigError(f"offset must be >= 0, got {offset}")
    rows: list[JobEntry] = []
    if state == "held":
        members = yield limit_ops.held_range(keys, offset, limit)
        rows = [limit_ops.held_entry(m) for m in members]
    elif state in ("delayed", "completed", "failed"):
        index = {"delayed": keys.delayed, "completed": keys.completed, "failed": keys.failed}
        order = "ZRANGE" if state == "delayed" else "ZREVRANGE"
        pairs = yield raw(order, index[state], offset, offset + limit - 1, "WITHSCORES")
        rows = [JobEntry(_s(m), state, None, score_ms=int(float(s))) for m, s in score_pairs(pairs)]
    else:
        (group,) = yield from _groups([keys])
        if group is None:
            return []
        if state == "waiting":
            start = "(" + _s(group.get("last-delivered-id") or b"0-0")
            entries = yield raw("XRANGE", keys.stream, start, "+", "COUNT", offset + limit)
            rows = [
                JobEntry(_entry_job_id(f), state, None, entry_id=_s(e)) for e, f in entries[offset:]
            ]
        else:
            plain = yield raw(
                "XPENDING", keys.stream, GROUP, "-", "+", offset + limit, parse_detail=True
            )
            flow = yield from _flow_pending(keys, offset + limit)
            pend = [(keys.stream, p) for p in plain or []] + [(keys.kstream, p) for p in flow]
            pend = pend[offset : offset + limit]
            if not pend:
                return []
            eids = [_s(p["message_id"]) for _, p in pend]
            found = yield [raw("XRANGE", st, e, e) for (st, _), e in zip(pend, eids, strict=True)]
            for (_, p), eid, got in zip(pend, eids, found, strict=True):
                if got and b"i" not in (got[0][1] or {}):
                    continue  # a wake-up entry of the flow lane, not a job
                rows.append(
                    JobEntry(
                        _entry_job_id(got[0][1]) if got else "",
                        state,
                        None,
                        entry_id=eid,
                        consumer=_s(p["consumer"]),
                        idle_ms=int(p["time_since_delivered"]),
                        deliveries=int(p["times_delivered"]),
                    )
                )
    return (yield from _with_records(keys, rows))


def _flow_pending(keys: QueueKeys, count: int) -> Flow[list[Any]]:
    """The flow lane's pending entries (running flow jobs); none when it does not exist."""
    exists = yield raw("EXISTS", keys.kstream, parse=int)
    if not exists:
        return []
    got = yield raw("XPENDING", keys.kstream, GROUP, "-", "+", count, parse_detail=True)
    return list(got or [])


def set_paused(keys: QueueKeys) -> Call[bool]:
    """Set the paused flag (workers stop fetching from the queue); False if already set."""
    return raw("SET", keys.paused, "1", "NX", parse=bool)


def clear_paused(keys: QueueKeys) -> Call[bool]:
    """Clear the paused flag; False if the queue was not paused."""
    return raw("DEL", keys.paused, parse=lambda r: int(r) > 0)


def paused_flag(keys: QueueKeys) -> Call[bool]:
    """True while the paused flag is set."""
    return raw("EXISTS", keys.paused, parse=lambda r: int(r) > 0)


def list_workers(keys: Sequence[QueueKeys]) -> Flow[list[WorkerInfo]]:
    """Every worker of each queue: heartbeats merged with XINFO CONSUMERS of the group."""
    replies = yield [server_time(), *(raw("HGETALL", k.workers) for k in keys)]
    now = replies[0]
    groups = yield from _groups(keys)
    with_group = [k for k, g in zip(keys, groups, strict=True) if g is not None]
    consumers = (
        (yield [raw("XINFO", "CONSUMERS", k.stream, GROUP) for k in with_group])
        if with_group
        else []
    )
    by_queue = {k.queue: c for k, c in zip(with_group, consumers, strict=True)}
    out: list[WorkerInfo] = []
    for k, beats_reply in zip(keys, replies[1:], strict=True):
        group_members = {}
        for item in by_queue.get(k.queue) or []:
            rec = _record(item)
            group_members[_s(rec.get("name", b""))] = rec
        beats = _heartbeats(beats_reply)
        for name in sorted(set(beats) | set(group_members)):
            beat, member = beats.get(name), group_members.get(name, {})
            idle, pending = _opt_int(member.get("idle")), _opt_int(member.get("pending")) or 0
            if beat is None:
                out.append(WorkerInfo(k.queue, name, "gone", idle_ms=idle, pending=pending))
                continue
            seen = _opt_int(beat.get("seen_ms"))
            out.append(
                WorkerInfo(
                    k.queue,
                    name,
                    "alive" if _alive(beat, now) else "stale",
                    host=str(beat["host"]) if beat.get("host") is not None else None,
                    pid=_opt_int(beat.get("pid")),
                    running=_opt_int(beat.get("running")),
                    concurrency=_opt_int(beat.get("concurrency")),
                    processed=_opt_int(beat.get("processed")),
                    failed=_opt_int(beat.get("failed")),
                    started_ms=_opt_int(beat.get("started_ms")),
                    seen_age_ms=None if seen is None else max(now - seen, 0),
                    idle_ms=idle,
                    pending=pending,
                    stuck=_opt_int(beat.get("stuck_count")),
                )
            )
    return out


def list_workers_all(prefix: str) -> Flow[list[WorkerInfo]]:
    """:func:`list_workers` of every queue found under ``prefix``."""
    queues = yield from discover(prefix)
    return (yield from list_workers([QueueKeys(q, prefix) for q in queues]))
