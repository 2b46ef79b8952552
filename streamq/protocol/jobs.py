"""Operations on one job: enqueue (plain and durable), read back, cancel, move (reschedule)
and wait for the end state. Pure builders and parsers; the drivers run them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from streamq.errors import (
    DurabilityError,
    InvalidStateError,
    JobNotFoundError,
    ScriptError,
    ServerError,
    WaitTimeoutError,
)
from streamq.job import Job, JobOptions, JobState
from streamq.protocol.calls import Arg, Call, Code, Flow, TolerantCall, on_every_master, raw
from streamq.protocol.calls import text as _s
from streamq.protocol.codec import decode_json
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.results import EnqueueResult

__all__ = [
    "WAIT_RECHECK_S",
    "PreparedJob",
    "cancel",
    "check_waitaof",
    "durable_enqueue",
    "enqueue",
    "get_job",
    "move",
    "parse_job",
    "wait_for",
]


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
    #: Flow control: the job's key ('' = none) and priority (0..9).
    key: str = ""
    priority: int = 0

    @property
    def is_flow(self) -> bool:
        """True for a job flow control holds (a key or a priority)."""
        return bool(self.key) or self.priority > 0


_STATES = {s.value.encode(): s for s in JobState}
_WAITING, _DELAYED = JobState.WAITING, JobState.DELAYED  # module globals: faster per job


def _enqueue_result(job_id: str, ref: Any) -> EnqueueResult:
    # enqueue.lua: the entry id of a new waiting job, the due ms of a new delayed one, or
    # [state] when the job existed.
    if isinstance(ref, list):
        if len(ref) == 2:  # enqueue_flow.lua: a new held job
            return EnqueueResult(job_id, JobState.HELD, True)
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
    if any(j.key or j.priority for j in jobs):
        return _enqueue_flow(keys, jobs, fresh)
    args: list[Arg] = [GROUP, len(jobs), "1" if fresh else "0"]
    job_key = keys.job("")
    job_keys = []
    for j in jobs:
        args += j[:6]  # id, name, data, opts, delay_ms, at_ms: the script's order
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


def _enqueue_flow(
    keys: QueueKeys, jobs: Sequence[PreparedJob], fresh: bool
) -> Call[list[EnqueueResult]]:
    """:func:`enqueue` for a batch with flow jobs: enqueue_flow.lua holds those."""
    args: list[Arg] = [GROUP, len(jobs), "1" if fresh else "0"]
    for j in jobs:
        args += j  # the 8 fields, the script's order
    resend = [GROUP, len(jobs), "0", *args[3:]] if fresh else None

    def parse(reply: list[Any]) -> list[EnqueueResult]:
        return [_enqueue_result(j.job_id, r) for j, r in zip(jobs, reply, strict=True)]

    return Call(
        "enqueue_flow",
        [
            keys.stream,
            keys.delayed,
            keys.cancelled,
            *keys.flow_keys(),
            *(keys.job(j.job_id) for j in jobs),
        ],
        args,
        parse,
        resend_args=resend,
    )


def _version(info: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(p) for p in str(info.get("redis_version", "0")).split(".")[:2])


def _names(masters: Sequence[tuple[str, dict[str, Any]]]) -> str:
    return ", ".join(name for name, _ in masters)


def _refuse_without_waitaof(infos: list[tuple[str, dict[str, Any]]]) -> None:
    """ServerError unless every server of ``infos`` (one, or every master of a cluster:
    a durable write may land on any of them) has WAITAOF and AOF on."""
    # Valkey reports redis_version 7.2.x for compatibility and has WAITAOF.
    lacking = [(n, i) for n, i in infos if _version(i) < (7, 2)]
    if lacking:
        which = (
            "this server lacks"
            if len(infos) == 1
            else f"{len(lacking)} of {len(infos)} masters ({_names(lacking)}) lack"
        )
        raise ServerError(
            f"durable enqueue needs WAITAOF (Redis >= 7.2 or Valkey >= 8); {which} "
            "it: use durable=False, or the strict profile (appendfsync always) instead"
        )
    off = [(n, i) for n, i in infos if str(i.get("aof_enabled", "0")) != "1"]
    if off:
        which = (
            "the server has"
            if len(infos) == 1
            else f"{len(off)} of {len(infos)} masters ({_names(off)}) have"
        )
        raise ServerError(f"durable enqueue needs AOF: {which} appendonly off (see redis.conf)")


def check_waitaof() -> Flow[None]:
    """Refuse durable enqueues on a server without WAITAOF (Redis < 7.2) or without AOF,
    before anything is written. On a cluster every master is asked: the write goes to the
    master of its queue's (or partition's) slot, any of them, and a check made once must
    hold for the next queue too. A master that changes afterwards (a replica without AOF
    promoted, ``CONFIG SET appendonly no``) is caught by WAITAOF itself: the enqueue then
    raises :class:`DurabilityError` or the server's error, not a silent success."""
    yield on_every_master("INFO", parse=_refuse_without_waitaof)


class _Refused(NamedTuple):
    """WAITAOF's error reply (the server's message), as the flow receives it."""

    message: str


def _waitaof(replicas: int, timeout_ms: int) -> TolerantCall[Any]:
    return TolerantCall(None, command=("WAITAOF", 1, replicas, timeout_ms), on_error=_Refused)


def _confirmed(
    results: list[EnqueueResult], ack: Any, replicas: int, timeout_ms: int
) -> list[EnqueueResult]:
    """``results`` when ``ack`` (WAITAOF's reply after their write) confirms them, else
    :class:`DurabilityError` naming their jobs."""
    if isinstance(ack, _Refused):
        why = (
            "AOF is off there now (turned off, or a replica without AOF took over, since "
            "this producer checked it)"
            if "appendonly" in ack.message
            else "it cannot confirm the fsync"
        )
        raise DurabilityError(
            f"the jobs were written but are not confirmed durable: the server that took "
            f"the write refused WAITAOF ({ack.message.rstrip('.')}): {why}; check or "
            "cancel them by id (DurabilityError.job_ids)",
            [r.job_id for r in results],
        )
    local, remote = int(ack[0]), int(ack[1])
    if local < 1 or remote < replicas:
        raise DurabilityError(
            f"WAITAOF confirmed {local} local and {remote} replica fsyncs within "
            f"{timeout_ms} ms (wanted 1 and {replicas})",
            [r.job_id for r in results],
        )
    return results


def durable_enqueue(
    call: Call[list[EnqueueResult]], replicas: int, timeout_ms: int
) -> Flow[list[EnqueueResult]]:
    """The enqueue script and WAITAOF in one pipeline (one round trip): returns once the
    write is fsynced locally (and on ``replicas`` replicas). Raises
    :class:`DurabilityError` (with the job ids) when WAITAOF does not confirm it, or
    refuses to run once the script has written (AOF turned off since
    :func:`check_waitaof`, a replica without AOF promoted)."""
    results, ack = yield [call, _waitaof(replicas, timeout_ms)]
    return _confirmed(results, ack, replicas, timeout_ms)


def durable_enqueue_many(
    calls: Sequence[Call[list[EnqueueResult]]], replicas: int, timeout_ms: int
) -> Flow[list[list[EnqueueResult]]]:
    """:func:`durable_enqueue` of several enqueue scripts (one per partition of a queue,
    so on several masters) in one pipeline, each followed by its own WAITAOF (a cluster
    pipeline sends it to the node of the script before it): the fsync waits overlap
    instead of adding up, one per partition (with appendfsync everysec, up to a second
    each). Every call is written; one :class:`DurabilityError` at the end names every job
    not confirmed."""
    replies = yield [x for c in calls for x in (c, _waitaof(replicas, timeout_ms))]
    out: list[list[EnqueueResult]] = []
    failed: list[DurabilityError] = []
    for results, ack in zip(replies[::2], replies[1::2], strict=True):
        try:
            out.append(_confirmed(results, ack, replicas, timeout_ms))
        except DurabilityError as exc:
            failed.append(exc)
    if failed:
        raise DurabilityError(
            str(failed[0])
            if len(failed) == 1
            else f"{len(failed)} of {len(calls)} partitions: {failed[0]}",
            [job_id for exc in failed for job_id in exc.job_ids],
        )
    return out


# ---------------------------------------------------------------------------- reading


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def parse_job(
    queue: str, job_id: str, flat: Sequence[Any], run: Sequence[Any], admitted: bool = False
) -> Job:
    """Build a :class:`Job` from a job hash (flat HGETALL) and its PEL entry, if any.
    ``admitted``: a held job flow control has handed to a worker (it runs)."""
    rec = {_s(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
    state = JobState(_s(rec.get("s", b"waiting")))
    if (state is JobState.WAITING and run) or (state is JobState.HELD and admitted):
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
        key=_s(rec["k"]) if rec.get("k") else None,
        priority=int(rec.get("p", 0)),
    )


def get_job(keys: QueueKeys, job_id: str) -> Call[Job | None]:
    """Read a job back; None when there is no record."""

    def parse(reply: list[Any]) -> Job | None:
        flat, run, admitted = reply
        return parse_job(keys.queue, job_id, flat, run, bool(admitted)) if flat else None

    return Call("get_job", [keys.job(job_id), keys.stream, keys.held], [GROUP], parse)


# ---------------------------------------------------------------------------- changes


def _check(code: int, state: str, job_id: str, what: str) -> None:
    if code == Code.MISSING:
        raise JobNotFoundError(f"no job {job_id!r}")
    if code == Code.BAD_STATE:
        raise InvalidStateError(f"cannot {what} job {job_id!r}: it is {state}", state)
    if code != Code.OK:
        raise ScriptError(f"{what}: unexpected code {code}")


def cancel(keys: QueueKeys, job_id: str, events_maxlen: int) -> Call[None]:
    """Cancel a delayed, waiting or held job; a running or finished one raises
    InvalidStateError."""

    def parse(r: list[Any]) -> None:
        _check(int(r[0]), _s(r[1]), job_id, "cancel")

    return Call(
        "cancel",
        [
            keys.job(job_id),
            keys.delayed,
            keys.stream,
            keys.events,
            keys.cancelled,
            keys.held,
            keys.held_data,
            keys.held_keys,
            keys.flow,
        ],
        [GROUP, job_id, events_maxlen],
        parse,
    )


def move(keys: QueueKeys, job_id: str, delay_ms: int, at_ms: int) -> Call[int]:
    """Change when a delayed (or held) job is due; returns the new due time (ms)."""

    def parse(r: list[Any]) -> int:
        _check(int(r[0]), _s(r[1]), job_id, "move")
        return int(r[2])

    return Call(
        "move",
        [keys.job(job_id), keys.delayed, keys.stream, *keys.flow_keys()],
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
        reply = yield raw("XREAD", "COUNT", 1000, "BLOCK", block, "STREAMS", keys.events, last)
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
