"""Operating queues: discovery, status, job listings, the DLQ, pause/resume and the
live-worker registry. The CLI and the web dashboard share this module.

Every operation is written once, without I/O, as a :class:`~streamq.protocol.ops.Call` or a
flow (a generator of calls, see :mod:`streamq.protocol.ops`). :class:`Admin` runs them on
the sync driver and :class:`AsyncAdmin` on the asyncio one. A test checks that both classes
have the same methods with the same signatures.

Ages (oldest waiting job, heartbeat age) are measured against the Redis clock (``TIME``),
the one clock streamq uses for due times, not against the local clock of the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, get_args

import orjson

from streamq import connection, scheduler
from streamq._driver import AsyncDriver, SyncDriver
from streamq.config import Settings
from streamq.errors import ConfigError, JobNotFoundError
from streamq.job import Job
from streamq.protocol import ops
from streamq.protocol.keys import GROUP, QueueKeys, validate_queue_name
from streamq.protocol.ops import Call, DeadEntry, Flow, QueueStatus, _s, raw
from streamq.scheduler import Schedule

__all__ = [
    "LIST_STATES",
    "LIVE_WINDOW_MS",
    "Admin",
    "AsyncAdmin",
    "JobEntry",
    "ListState",
    "QueueInfo",
    "WorkerInfo",
]

#: A worker whose last heartbeat is younger than this counts as alive.
LIVE_WINDOW_MS = 10_000

ListState = Literal["waiting", "active", "delayed", "completed", "failed"]
#: The states :meth:`Admin.jobs` can list.
LIST_STATES: tuple[str, ...] = get_args(ListState)

_ENTRY_ID = re.compile(r"^\d+(-\d+)?$")


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue at a glance: the counts of :class:`QueueStatus`, the consumer group's lag,
    the age of the oldest waiting job, whether it is paused and how many workers are live."""

    status: QueueStatus
    lag: int
    oldest_waiting_age_ms: int | None
    paused: bool
    workers: int
    #: Sync handlers of live workers still running past their job's time limit (each
    #: holds a worker slot until it returns).
    stuck_handlers: int = 0

    @property
    def queue(self) -> str:
        """The queue name."""
        return self.status.queue

    def as_dict(self) -> dict[str, Any]:
        """A flat, JSON-ready mapping (every :class:`QueueStatus` field plus the others)."""
        s = self.status
        return {
            "queue": s.queue,
            "waiting": s.waiting,
            "active": s.active,
            "delayed": s.delayed,
            "completed": s.completed,
            "failed": s.failed,
            "dead": s.dead,
            "completed_total": s.completed_total,
            "failed_total": s.failed_total,
            "retried_total": s.retried_total,
            "oldest_waiting_ms": s.oldest_waiting_ms,
            "oldest_waiting_age_ms": self.oldest_waiting_age_ms,
            "lag": self.lag,
            "paused": self.paused,
            "workers": self.workers,
            "stuck_handlers": self.stuck_handlers,
        }


@dataclass(frozen=True, slots=True)
class JobEntry:
    """One row of a job listing. ``job`` is the record (None when retention removed it).

    ``entry_id`` is set for waiting and active jobs; ``consumer``, ``idle_ms`` and
    ``deliveries`` for active ones (from the group's PEL); ``score_ms`` is the due time of a
    delayed job or the finish time of a completed/failed one.
    """

    job_id: str
    state: str
    job: Job | None
    entry_id: str | None = None
    consumer: str | None = None
    idle_ms: int | None = None
    deliveries: int | None = None
    score_ms: int | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker of one queue, from its heartbeat and the consumer group.

    ``state``: ``alive`` (heartbeat within :data:`LIVE_WINDOW_MS`), ``stale`` (an old
    heartbeat: the worker died without unregistering) or ``gone`` (a consumer of the group
    with no heartbeat at all, e.g. a crashed worker still holding entries). Fields the
    heartbeat did not provide are None. ``processed`` counts the jobs this worker completed
    since it started, ``failed`` its *failed attempts* (retried or not), not the jobs that
    ended failed (those are :attr:`QueueStatus.failed_total`).
    """

    queue: str
    name: str
    state: str
    host: str | None = None
    pid: int | None = None
    running: int | None = None
    concurrency: int | None = None
    processed: int | None = None
    failed: int | None = None
    started_ms: int | None = None
    seen_age_ms: int | None = None
    idle_ms: int | None = None
    pending: int = 0
    #: Sync handlers of this worker past their time limit (see :attr:`QueueInfo.stuck_handlers`).
    stuck: int | None = None


# ---------------------------------------------------------------------------- reply helpers


def _now_ms(reply: Sequence[Any]) -> int:
    return int(reply[0]) * 1000 + int(reply[1]) // 1000


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


def _score_pairs(reply: Any) -> list[tuple[Any, Any]]:
    """ZRANGE ... WITHSCORES as (member, score) pairs, whether or not the client paired them."""
    items = list(reply or [])
    if items and not isinstance(items[0], list | tuple):
        return list(zip(items[::2], items[1::2], strict=True))
    return [(m, sc) for m, sc in items]


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


# ---------------------------------------------------------------------------- flows


def server_time() -> Call[int]:
    """The Redis clock, in ms since the epoch."""
    return raw("TIME", parse=_now_ms)


def discover(prefix: str, *, batch: int = 1000) -> Flow[list[str]]:
    """Every queue under ``prefix``: SCAN for ``{prefix}:{Q}:stream`` streams; sorted names."""
    pattern = re.compile(rf"^{re.escape(prefix)}:\{{([^{{}}]+)\}}:stream$")
    match = f"{_glob_escape(prefix)}:{{*}}:stream"
    found: set[str] = set()
    cursor: Any = 0
    while True:
        cursor, names = yield raw("SCAN", cursor, "MATCH", match, "COUNT", batch, "TYPE", "stream")
        for name in names:
            m = pattern.match(_s(name))
            if m:
                found.add(m.group(1))
        if int(cursor) == 0:
            return sorted(found)


def queue_known(keys: QueueKeys) -> Call[bool]:
    """True when the queue has left any trace: a stream, delayed or finished jobs, DLQ
    entries, schedules, worker heartbeats or counters (one EXISTS, all keys in one slot)."""
    k = keys
    present = (k.stream, k.delayed, k.completed, k.failed, k.cancelled, k.dead, k.repeat)
    return raw("EXISTS", *present, k.workers, k.stats, parse=lambda r: int(r) > 0)


def locate_job(prefix: str, job_id: str, *, batch: int = 1000) -> Flow[list[Job]]:
    """Every record of job ``job_id`` under ``prefix``, whichever queue holds it: SCAN for
    ``{prefix}:{*}:job:<id>`` (so a queue with only delayed jobs, and no stream yet, counts
    too), then read each record; sorted by queue. Ids are unique per queue, not across
    queues, so there may be several."""
    pattern = re.compile(rf"^{re.escape(prefix)}:\{{([^{{}}]+)\}}:job:(.+)$")
    match = f"{_glob_escape(prefix)}:{{*}}:job:{_glob_escape(job_id)}"
    queues: set[str] = set()
    cursor: Any = 0
    while True:
        cursor, names = yield raw("SCAN", cursor, "MATCH", match, "COUNT", batch, "TYPE", "hash")
        for name in names:
            m = pattern.match(_s(name))
            if m and m.group(2) == job_id:
                queues.add(m.group(1))
        if int(cursor) == 0:
            break
    if not queues:
        return []
    ordered = sorted(queues)
    records = yield [ops.get_job(QueueKeys(q, prefix), job_id) for q in ordered]
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


def queue_status(keys: Sequence[QueueKeys]) -> Flow[list[QueueInfo]]:
    """:class:`QueueInfo` of each queue, in three round trips however many queues."""
    replies = yield [
        server_time(),
        *(
            c
            for k in keys
            for c in (ops.status(k), raw("HGETALL", k.workers), raw("EXISTS", k.paused))
        ),
    ]
    now = replies[0]
    groups = yield from _groups(keys)
    out = []
    for i in range(len(keys)):
        st, beats, paused = replies[1 + 3 * i : 4 + 3 * i]
        group = groups[i]
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
            )
        )
    return out


def status_all(prefix: str) -> Flow[list[QueueInfo]]:
    """:class:`QueueInfo` of every queue found under ``prefix``."""
    queues = yield from discover(prefix)
    return (yield from queue_status([QueueKeys(q, prefix) for q in queues]))


def _with_records(keys: QueueKeys, rows: list[JobEntry]) -> Flow[list[JobEntry]]:
    known = [r for r in rows if r.job_id]
    if not known:
        return rows
    jobs = yield [ops.get_job(keys, r.job_id) for r in known]
    by_id = {r.job_id: j for r, j in zip(known, jobs, strict=True)}
    return [replace(r, job=by_id.get(r.job_id)) for r in rows]


def _entry_job_id(fields: Any) -> str:
    return _s((fields or {}).get(b"i", b""))


def list_jobs(
    keys: QueueKeys, state: str, limit: int = 20, offset: int = 0
) -> Flow[list[JobEntry]]:
    """Up to ``limit`` jobs in ``state`` with their records, skipping the first ``offset``:
    waiting and delayed oldest / soonest first, active in PEL order, completed and failed
    newest first. Skipping is O(log N) for delayed/completed/failed; for waiting and active
    (stream and PEL, which cannot seek by position) it reads and drops ``offset`` entries."""
    if state not in LIST_STATES:
        raise ConfigError(f"state must be one of {', '.join(LIST_STATES)}, got {state!r}")
    if limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    if offset < 0:
        raise ConfigError(f"offset must be >= 0, got {offset}")
    rows: list[JobEntry] = []
    if state in ("delayed", "completed", "failed"):
        index = {"delayed": keys.delayed, "completed": keys.completed, "failed": keys.failed}
        order = "ZRANGE" if state == "delayed" else "ZREVRANGE"
        pairs = yield raw(order, index[state], offset, offset + limit - 1, "WITHSCORES")
        rows = [
            JobEntry(_s(m), state, None, score_ms=int(float(s))) for m, s in _score_pairs(pairs)
        ]
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
            pend = yield raw(
                "XPENDING", keys.stream, GROUP, "-", "+", offset + limit, parse_detail=True
            )
            pend = pend[offset:] if pend else pend
            if not pend:
                return []
            eids = [_s(p["message_id"]) for p in pend]
            found = yield [raw("XRANGE", keys.stream, e, e) for e in eids]
            for p, eid, got in zip(pend, eids, found, strict=True):
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


def find_dead(keys: QueueKeys, ident: str, *, batch: int = 500) -> Flow[DeadEntry | None]:
    """The DLQ entry ``ident``: a dead-letter entry id (``1700000000000-0``), or a job id
    (its most recent dead-letter entry)."""
    if _ENTRY_ID.match(ident):
        entries = yield raw("XRANGE", keys.dead, ident, ident, "COUNT", 1)
        if entries:
            return ops._parse_dead(*entries[0])
    end = "+"
    while True:
        entries = yield raw("XREVRANGE", keys.dead, end, "-", "COUNT", batch)
        for eid, fields in entries:
            if _entry_job_id(fields) == ident:
                return ops._parse_dead(eid, fields)
        if len(entries) < batch:
            return None
        end = "(" + _s(entries[-1][0])


def retry_dead(keys: QueueKeys, ident: str) -> Flow[DeadEntry]:
    """Replay one DLQ entry (by entry id or job id); returns the entry replayed. Raises
    :class:`JobNotFoundError` if there is none (or another client replayed it first)."""
    entry = yield from find_dead(keys, ident)
    if entry is None:
        raise JobNotFoundError(f"no dead-letter entry {ident!r} in queue {keys.queue!r}")
    if not (yield ops.replay_dead(keys, entry)):
        raise JobNotFoundError(f"dead-letter entry {entry.dead_id!r} was replayed or purged")
    return entry


def dead_count(keys: QueueKeys) -> Call[int]:
    """How many entries the DLQ holds."""
    return Call(None, command=("XLEN", keys.dead), parse=int)


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


# ---------------------------------------------------------------------------- drivers


class _Base:
    """What both admins share: settings and validated keys (no I/O)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def keys(self, queue: str) -> QueueKeys:
        """The key schema of ``queue`` (ConfigError if the name is invalid)."""
        return QueueKeys(validate_queue_name(queue), self.settings.prefix)

    def _many(self, queues: Sequence[str]) -> list[QueueKeys]:
        return [self.keys(q) for q in queues]

    @property
    def where(self) -> str:
        """The server, for display: scheme, host, port and db, never credentials."""
        return self.settings.redis.describe()


class Admin(_Base):
    """Inspect and steer queues (sync). Use as a context manager or call :meth:`close`.

    ``url`` overrides the connection URL; without it ``settings`` (or the environment)
    decide, as for :class:`~streamq.Producer`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        retry_attempts: int = 3,
    ) -> None:
        super().__init__(Settings.resolve(url, settings))
        self._client = connection.sync_client(self.settings.redis, retry_attempts=retry_attempts)
        self._driver = SyncDriver(self._client, self.where)

    def ping(self) -> bool:
        """True when the server answers (ConnectionFailedError otherwise)."""
        return bool(self._driver.run(raw("PING", parse=bool)))

    def server_time_ms(self) -> int:
        """The Redis clock, in ms since the epoch."""
        return self._driver.run(server_time())

    def queues(self) -> list[str]:
        """Names of every queue under the prefix, sorted."""
        return self._driver.run(discover(self.settings.prefix))

    def status(self, queues: Sequence[str] | None = None) -> list[QueueInfo]:
        """:class:`QueueInfo` of ``queues`` (default: every queue found)."""
        if queues is None:
            return self._driver.run(status_all(self.settings.prefix))
        return self._driver.run(queue_status(self._many(queues)))

    def jobs(self, queue: str, state: str, *, limit: int = 20, offset: int = 0) -> list[JobEntry]:
        """Up to ``limit`` jobs of ``queue`` in ``state`` (one of :data:`LIST_STATES`),
        after skipping ``offset`` (see :func:`list_jobs` for the order)."""
        return self._driver.run(list_jobs(self.keys(queue), state, limit, offset))

    def job(self, queue: str, job_id: str) -> Job | None:
        """The job's full record, or None."""
        return self._driver.run(ops.get_job(self.keys(queue), job_id))

    def find_job(self, job_id: str) -> list[Job]:
        """Every record of ``job_id`` in any queue under the prefix (ids are unique per
        queue only, so there may be several), sorted by queue."""
        return self._driver.run(locate_job(self.settings.prefix, job_id))

    def known(self, queue: str) -> bool:
        """True when ``queue`` has left any trace in Redis (jobs, DLQ, schedules, workers,
        counters): False for a name nothing ever used, e.g. a typo."""
        return self._driver.run(queue_known(self.keys(queue)))

    def dead_letters(self, queue: str, *, limit: int = 100, after: str = "-") -> list[DeadEntry]:
        """DLQ entries, oldest first, after entry id ``after``."""
        return self._driver.run(ops.list_dead(self.keys(queue), limit, after))

    def dead_letter(self, queue: str, ident: str) -> DeadEntry | None:
        """One DLQ entry by entry id or job id, or None."""
        return self._driver.run(find_dead(self.keys(queue), ident))

    def dead_count(self, queue: str) -> int:
        """How many entries the DLQ holds."""
        return self._driver.run(dead_count(self.keys(queue)))

    def retry_dead(self, queue: str, ident: str) -> DeadEntry:
        """Replay one DLQ entry (entry id or job id); JobNotFoundError if there is none."""
        return self._driver.run(retry_dead(self.keys(queue), ident))

    def retry_all_dead(self, queue: str, progress: Callable[[int], None] | None = None) -> int:
        """Replay every DLQ entry present now; ``progress(moved_so_far)`` after each batch."""
        return self._driver.run(ops.replay_all(self.keys(queue), progress=progress))

    def purge_dead(self, queue: str) -> int:
        """Delete every DLQ entry; returns how many."""
        return self._driver.run(ops.purge_dead(self.keys(queue)))

    def pause(self, queue: str) -> bool:
        """Pause ``queue`` (workers stop fetching); False if it was already paused."""
        return self._driver.run(set_paused(self.keys(queue)))

    def resume(self, queue: str) -> bool:
        """Resume ``queue``; False if it was not paused."""
        return self._driver.run(clear_paused(self.keys(queue)))

    def is_paused(self, queue: str) -> bool:
        """True while ``queue`` is paused."""
        return self._driver.run(paused_flag(self.keys(queue)))

    def workers(self, queues: Sequence[str] | None = None) -> list[WorkerInfo]:
        """Workers of ``queues`` (default: every queue found), by queue and name."""
        if queues is None:
            return self._driver.run(list_workers_all(self.settings.prefix))
        return self._driver.run(list_workers(self._many(queues)))

    def schedules(self, queue: str) -> list[Schedule]:
        """The repeating schedules of ``queue``, soonest first."""
        return self._driver.run(scheduler.list_schedules(self.keys(queue)))

    def remove_schedule(self, queue: str, key: str) -> bool:
        """Delete a repeating schedule; True when it existed."""
        return self._driver.run(scheduler.remove_schedule(self.keys(queue), key))

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Admin({self.where!r})"


class AsyncAdmin(_Base):
    """The asyncio twin of :class:`Admin`: same methods, awaited."""

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        retry_attempts: int = 3,
    ) -> None:
        super().__init__(Settings.resolve(url, settings))
        self._client = connection.async_client(self.settings.redis, retry_attempts=retry_attempts)
        self._driver = AsyncDriver(self._client, self.where)

    async def ping(self) -> bool:
        """See :meth:`Admin.ping`."""
        return bool(await self._driver.run(raw("PING", parse=bool)))

    async def server_time_ms(self) -> int:
        """See :meth:`Admin.server_time_ms`."""
        return await self._driver.run(server_time())

    async def queues(self) -> list[str]:
        """See :meth:`Admin.queues`."""
        return await self._driver.run(discover(self.settings.prefix))

    async def status(self, queues: Sequence[str] | None = None) -> list[QueueInfo]:
        """See :meth:`Admin.status`."""
        if queues is None:
            return await self._driver.run(status_all(self.settings.prefix))
        return await self._driver.run(queue_status(self._many(queues)))

    async def jobs(
        self, queue: str, state: str, *, limit: int = 20, offset: int = 0
    ) -> list[JobEntry]:
        """See :meth:`Admin.jobs`."""
        return await self._driver.run(list_jobs(self.keys(queue), state, limit, offset))

    async def job(self, queue: str, job_id: str) -> Job | None:
        """See :meth:`Admin.job`."""
        return await self._driver.run(ops.get_job(self.keys(queue), job_id))

    async def find_job(self, job_id: str) -> list[Job]:
        """See :meth:`Admin.find_job`."""
        return await self._driver.run(locate_job(self.settings.prefix, job_id))

    async def known(self, queue: str) -> bool:
        """See :meth:`Admin.known`."""
        return await self._driver.run(queue_known(self.keys(queue)))

    async def dead_letters(
        self, queue: str, *, limit: int = 100, after: str = "-"
    ) -> list[DeadEntry]:
        """See :meth:`Admin.dead_letters`."""
        return await self._driver.run(ops.list_dead(self.keys(queue), limit, after))

    async def dead_letter(self, queue: str, ident: str) -> DeadEntry | None:
        """See :meth:`Admin.dead_letter`."""
        return await self._driver.run(find_dead(self.keys(queue), ident))

    async def dead_count(self, queue: str) -> int:
        """See :meth:`Admin.dead_count`."""
        return await self._driver.run(dead_count(self.keys(queue)))

    async def retry_dead(self, queue: str, ident: str) -> DeadEntry:
        """See :meth:`Admin.retry_dead`."""
        return await self._driver.run(retry_dead(self.keys(queue), ident))

    async def retry_all_dead(
        self, queue: str, progress: Callable[[int], None] | None = None
    ) -> int:
        """See :meth:`Admin.retry_all_dead`."""
        return await self._driver.run(ops.replay_all(self.keys(queue), progress=progress))

    async def purge_dead(self, queue: str) -> int:
        """See :meth:`Admin.purge_dead`."""
        return await self._driver.run(ops.purge_dead(self.keys(queue)))

    async def pause(self, queue: str) -> bool:
        """See :meth:`Admin.pause`."""
        return await self._driver.run(set_paused(self.keys(queue)))

    async def resume(self, queue: str) -> bool:
        """See :meth:`Admin.resume`."""
        return await self._driver.run(clear_paused(self.keys(queue)))

    async def is_paused(self, queue: str) -> bool:
        """See :meth:`Admin.is_paused`."""
        return await self._driver.run(paused_flag(self.keys(queue)))

    async def workers(self, queues: Sequence[str] | None = None) -> list[WorkerInfo]:
        """See :meth:`Admin.workers`."""
        if queues is None:
            return await self._driver.run(list_workers_all(self.settings.prefix))
        return await self._driver.run(list_workers(self._many(queues)))

    async def schedules(self, queue: str) -> list[Schedule]:
        """See :meth:`Admin.schedules`."""
        return await self._driver.run(scheduler.list_schedules(self.keys(queue)))

    async def remove_schedule(self, queue: str, key: str) -> bool:
        """See :meth:`Admin.remove_schedule`."""
        return await self._driver.run(scheduler.remove_schedule(self.keys(queue), key))

    async def close(self) -> None:
        """See :meth:`Admin.close`."""
        await self._client.aclose()

    async def __aenter__(self) -> AsyncAdmin:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncAdmin({self.where!r})"
