"""Every operation, described once without I/O: which script or command, which keys and
arguments, and how to read the reply. The sync and async drivers run them.

An operation is either a :class:`Call` or a *flow*: a generator that yields a ``Call`` (or a
list of them, sent as one pipeline) and receives the parsed reply, like httpx's auth flows.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, NamedTuple, TypeVar

import orjson

from streamq.errors import (
    DurabilityError,
    InvalidStateError,
    JobNotFoundError,
    ScriptError,
    ServerError,
    WaitTimeoutError,
)
from streamq.job import Job, JobOptions, JobState
from streamq.protocol.codec import decode_json
from streamq.protocol.keys import GROUP, QueueKeys

__all__ = [
    "Call",
    "Code",
    "DeadEntry",
    "EnqueueResult",
    "Flow",
    "QueueStatus",
    "raw",
]

T = TypeVar("T")
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


Step = Call[Any] | list[Call[Any]]


def raw(*command: Arg, parse: Callable[[Any], Any] = _identity, **options: Any) -> Call[Any]:
    """A plain Redis command as a :class:`Call`."""
    return Call(None, command=command, parse=parse, options=options)


Flow = Generator[Step, Any, T]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------- enqueue


class PreparedJob(NamedTuple):
    """A job ready to send: payload and options already encoded and validated. The field
    order is the script's ARGV order for one job (a tuple: cheap to build per job)."""

    job_id: str
    name: str
    data: bytes
    options: bytes
    delay_ms: int = 0
    at_ms: int = -1


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What enqueue did: ``created`` False means a job with that id already existed."""

    job_id: str
    state: JobState
    created: bool
    entry_id: str | None = None
    due_at_ms: int | None = None


_STATES = {s.value.encode(): s for s in JobState}
_WAITING, _DELAYED = JobState.WAITING, JobState.DELAYED  # module globals: faster per job


def _enqueue_result(job_id: str, ref: Any) -> EnqueueResult:
    # enqueue.lua: the entry id of a new waiting job, the due ms of a new delayed one, or
    # [state] when the job existed.
    if isinstance(ref, list):
        state = ref[0]
        return EnqueueResult(job_id, _STATES.get(state) or JobState(_s(state)), False)
    if isinstance(ref, int):
        return EnqueueResult(job_id, _DELAYED, True, None, ref)
    return EnqueueResult(job_id, _WAITING, True, _s(ref))


def enqueue(
    keys: QueueKeys, jobs: Sequence[PreparedJob], *, fresh: bool = False
) -> Call[list[EnqueueResult]]:
    """Add jobs in one script call (one round trip however many jobs). ``fresh``: every
    job id was just generated (:func:`~streamq.protocol.codec.new_job_id`), so the script
    need not look for an existing record; custom ids always are looked up."""
    args: list[Arg] = [GROUP, len(jobs), "1" if fresh else "0"]
    job_key = keys.job("")
    job_keys = []
    for j in jobs:
        args += j  # id, name, data, opts, delay_ms, at_ms: the script's order
        job_keys.append(job_key + j.job_id)
    # A resend (redis-py retrying after a lost reply) must find the records the first send
    # may have written, or a job would be added twice: resends always look ids up.
    resend = [GROUP, len(jobs), "0", *args[3:]] if fresh else None

    def parse(reply: list[Any]) -> list[EnqueueResult]:
        return [_enqueue_result(j.job_id, r) for j, r in zip(jobs, reply, strict=True)]

    return Call(
        "enqueue",
        [keys.stream, keys.delayed, keys.cancelled, *job_keys],
        args,
        parse,
        resend_args=resend,
    )


def check_waitaof() -> Flow[None]:
    """Refuse durable enqueues on a server without WAITAOF (Redis < 7.2) or without AOF,
    before anything is written."""
    info = yield raw("INFO")
    version = tuple(int(p) for p in str(info.get("redis_version", "0")).split(".")[:2])
    # Valkey reports redis_version 7.2.x for compatibility and has WAITAOF.
    if version < (7, 2):
        raise ServerError(
            "durable enqueue needs WAITAOF (Redis >= 7.2 or Valkey >= 8); this server lacks "
            "it: use durable=False, or the strict profile (appendfsync always) instead"
        )
    if str(info.get("aof_enabled", "0")) != "1":
        raise ServerError(
            "durable enqueue needs AOF: the server has appendonly off (see redis.conf)"
        )


def durable_enqueue(
    call: Call[list[EnqueueResult]], replicas: int, timeout_ms: int
) -> Flow[list[EnqueueResult]]:
    """The enqueue script and WAITAOF in one pipeline (one round trip): returns once the
    write is fsynced locally (and on ``replicas`` replicas)."""
    results, ack = yield [call, raw("WAITAOF", 1, replicas, timeout_ms)]
    local, remote = int(ack[0]), int(ack[1])
    if local < 1 or remote < replicas:
        raise DurabilityError(
            f"WAITAOF confirmed {local} local and {remote} replica fsyncs within "
            f"{timeout_ms} ms (wanted 1 and {replicas})",
            [r.job_id for r in results],
        )
    return results  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- reading


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def parse_job(queue: str, job_id: str, flat: Sequence[Any], run: Sequence[Any]) -> Job:
    """Build a :class:`Job` from a job hash (flat HGETALL) and its PEL entry, if any."""
    rec = {_s(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
    state = JobState(_s(rec.get("s", b"waiting")))
    if state is JobState.WAITING and run:
        state = JobState.ACTIVE
    try:
        options = JobOptions.decode(rec["o"]) if "o" in rec else JobOptions()
    except ValueError:
        options = JobOptions()
    attempts = int(rec.get("a", 0))
    return Job(
        queue=queue,
        id=job_id,
        name=_s(rec.get("n", b"")),
        data=decode_json(rec.get("d")),
        state=state,
        attempt=attempts + 1 if state is JobState.ACTIVE else attempts,
        options=options,
        created_at_ms=_int_or_none(rec.get("c")),
        started_at_ms=_int_or_none(rec.get("st")),
        finished_at_ms=_int_or_none(rec.get("f")),
        due_at_ms=_int_or_none(rec.get("due")),
        result=decode_json(rec.get("r")),
        error=_s(rec["e"]) if rec.get("e") else None,
        traceback=_s(rec["tb"]) if rec.get("tb") else None,
        dead_reason=_s(rec["rs"]) if rec.get("rs") else None,
        worker=_s(run[0]) if run else (_s(rec["w"]) if rec.get("w") else None),
        entry_id=_s(rec["x"]) if rec.get("x") else None,
        lease_idle_ms=int(run[1]) if run else None,
        deliveries=int(run[2]) if run else None,
    )


def get_job(keys: QueueKeys, job_id: str) -> Call[Job | None]:
    """Read a job back; None when there is no record."""

    def parse(reply: list[Any]) -> Job | None:
        flat, run = reply
        return parse_job(keys.queue, job_id, flat, run) if flat else None

    return Call("get_job", [keys.job(job_id), keys.stream], [GROUP], parse)


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """Counts of one queue.

    A job is *failed* when it ended in the failed state: retries exhausted, timed out on its
    last attempt, stalled too often, or not runnable (no handler, undecodable); each such
    job also got a dead-letter entry. An attempt that failed and will run again is a
    *retry*, never counted as failed. So: ``failed`` is the retained records of failed jobs
    (the last ``STREAMQ_KEEP_FAILED``), ``failed_total`` every job that ever ended failed,
    ``dead`` the dead-letter entries now (replay and purge remove them), ``retried_total``
    every retry scheduled. ``completed`` / ``completed_total`` likewise."""

    queue: str
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    dead: int
    completed_total: int
    failed_total: int
    retried_total: int
    oldest_waiting_ms: int | None

    def counts(self) -> dict[str, int]:
        """The five counts of the original spec."""
        return {
            "waiting": self.waiting,
            "active": self.active,
            "completed": self.completed,
            "failed": self.failed,
            "delayed": self.delayed,
        }


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


# ---------------------------------------------------------------------------- changes


def _check(code: int, state: str, job_id: str, what: str) -> None:
    if code == Code.MISSING:
        raise JobNotFoundError(f"no job {job_id!r}")
    if code == Code.BAD_STATE:
        raise InvalidStateError(f"cannot {what} job {job_id!r}: it is {state}", state)
    if code != Code.OK:
        raise ScriptError(f"{what}: unexpected code {code}")


def cancel(keys: QueueKeys, job_id: str, events_maxlen: int) -> Call[None]:
    """Cancel a delayed or waiting job; a running or finished one raises InvalidStateError."""

    def parse(r: list[Any]) -> None:
        _check(int(r[0]), _s(r[1]), job_id, "cancel")

    return Call(
        "cancel",
        [keys.job(job_id), keys.delayed, keys.stream, keys.events, keys.cancelled],
        [GROUP, job_id, events_maxlen],
        parse,
    )


def move(keys: QueueKeys, job_id: str, delay_ms: int, at_ms: int) -> Call[int]:
    """Change when a delayed job is due; returns the new due time (ms)."""

    def parse(r: list[Any]) -> int:
        _check(int(r[0]), _s(r[1]), job_id, "move")
        return int(r[2])

    return Call(
        "move",
        [keys.job(job_id), keys.delayed, keys.stream],
        [GROUP, job_id, delay_ms, at_ms],
        parse,
    )


# ---------------------------------------------------------------------------- waiting


#: A waiter re-reads the job's state at least this often (seconds), so an end event it
#: never saw (trimmed from the capped events stream, or the stream deleted) cannot leave it
#: waiting until the timeout.
WAIT_RECHECK_S = 5.0
_FINAL = ("completed", "failed", "cancelled")


def wait_for(
    keys: QueueKeys,
    job_id: str,
    timeout_s: float,
    clock: Callable[[], float],
    max_block_ms: int = 5000,
) -> Flow[Job]:
    """Block until the job reaches an end state, reading the events stream (no polling).

    Each ``XREAD BLOCK`` lasts at most ``max_block_ms``: keep it below the client's socket
    timeout, or a long wait would surface as a connection error."""
    deadline = clock() + timeout_s
    peek = Call("peek", [keys.job(job_id), keys.events], [], lambda r: (_s(r[0]), _s(r[1])))
    last, state = yield peek
    checked = clock()
    if not state:
        raise JobNotFoundError(f"no job {job_id!r}")
    target = job_id.encode()
    while state not in _FINAL:
        now = clock()
        left = deadline - now
        if left <= 0:
            raise WaitTimeoutError(f"job {job_id!r} did not finish within {timeout_s} s")
        if now - checked >= WAIT_RECHECK_S:
            last, state = yield peek
            checked = now
            if not state:
                raise JobNotFoundError(f"job {job_id!r} is gone (retention)")
            continue
        block = max(1, min(int(left * 1000), int(WAIT_RECHECK_S * 1000), max_block_ms))
        reply = yield Call(
            None, command=("XREAD", "COUNT", 1000, "BLOCK", block, "STREAMS", keys.events, last)
        )
        for _stream, entries in reply or []:
            for eid, fields in entries:
                last = _s(eid)
                ev = fields.get(target)
                if ev in (b"completed", b"failed", b"cancelled"):
                    state = _s(ev)
    job = yield get_job(keys, job_id)
    if job is None:
        raise JobNotFoundError(f"job {job_id!r} finished but its record is gone (retention)")
    return job  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- DLQ


@dataclass(frozen=True, slots=True)
class DeadEntry:
    """One dead-letter entry."""

    dead_id: str
    job_id: str
    name: str
    data: Any
    attempts: int
    error: str
    traceback: str
    reason: str
    failed_at_ms: int | None


def _parse_dead(eid: Any, fields: dict[bytes, bytes]) -> DeadEntry:
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
        return [_parse_dead(eid, f) for eid, f in reply]

    return Call(None, command=("XRANGE", keys.dead, start, "+", "COUNT", count), parse=parse)


def replay_dead(keys: QueueKeys, entry: DeadEntry) -> Call[bool]:
    """Move one DLQ entry back to the queue; False if someone else already did."""
    return Call(
        "replay",
        [keys.dead, keys.stream, keys.failed, keys.job(entry.job_id)],
        [GROUP, entry.dead_id, entry.job_id],
        lambda r: int(r[0]) == Code.OK,
    )


def replay_one(keys: QueueKeys, dead_id: str) -> Flow[bool]:
    """Replay the DLQ entry with id ``dead_id``."""
    found = yield Call(
        None,
        command=("XRANGE", keys.dead, dead_id, dead_id),
        parse=lambda r: [_parse_dead(e, f) for e, f in r],
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
    newest = yield Call(
        None,
        command=("XREVRANGE", keys.dead, "+", "-", "COUNT", 1),
        parse=lambda r: _s(r[0][0]) if r else None,
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
    return Call(None, command=("XTRIM", keys.dead, "MAXLEN", 0), parse=int)
