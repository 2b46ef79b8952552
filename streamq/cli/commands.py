"""The queue and job subcommands: ``status``, ``jobs``, ``job``, ``enqueue``,
``pause``/``resume`` and ``workers``. Each takes a :class:`Context` and returns the exit
code; errors propagate to :func:`streamq.cli.entry._dispatch`."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any

from streamq.cli.context import EXIT_OK, EXIT_USAGE, Context, _listing
from streamq.cli.limits import flow_lines, partition_lines
from streamq.cli.output import (
    _block,
    _data_text,
    _duration,
    _fields,
    _relative,
    _short,
    _timestamp,
    table,
)
from streamq.errors import JobNotFoundError
from streamq.job import Job
from streamq.results import EnqueueResult, JobEntry, QueueInfo, WorkerInfo


def _status_tail(i: QueueInfo) -> tuple[str, int, str]:
    return _duration(i.oldest_waiting_age_ms), i.workers, "paused" if i.paused else "running"


def cmd_status(ctx: Context) -> int:
    """``streamq status [Q ...]``. An empty server is a healthy answer, not an error: with
    no queue at all it says so and exits 0 (``[]`` with ``--json``)."""
    admin = ctx.admin
    infos: list[QueueInfo] = admin.status(ctx.args.queues or None)
    if ctx.json:
        ctx.emit_json([i.as_dict() for i in infos])
        return EXIT_OK
    ctx.say(f"server {admin.where}  prefix {admin.settings.prefix}")
    if not infos:
        ctx.say(f"no queues yet under prefix {admin.settings.prefix!r} (nothing enqueued)")
        return EXIT_OK
    counts = ("waiting", "active", "delayed", "completed", "failed", "dead")
    rows = [
        [i.queue, *(getattr(i.status, c) for c in counts), i.held, i.lag, *_status_tail(i)]
        for i in infos
    ]
    headers = ["QUEUE", *(c.upper() for c in counts), "HELD", "LAG", "OLDEST", "WORKERS"]
    table([*headers, "STATE"], rows, ctx.out)
    for line in [*partition_lines(infos), *flow_lines(infos)]:
        ctx.say(line)
    return EXIT_OK


def _job_row(e: JobEntry, now: int) -> list[Any]:
    j = e.job
    name = j.name if j else "?"
    attempts = j.attempt if j else None
    if e.state == "waiting":
        return [
            e.job_id,
            name,
            attempts,
            e.entry_id,
            _relative(j.created_at_ms if j else None, now),
        ]
    if e.state == "active":
        return [e.job_id, name, e.consumer, attempts, e.deliveries, _duration(e.idle_ms)]
    if e.state == "held":
        created = _relative(j.created_at_ms if j else None, now)
        return [e.job_id, name, e.key, e.priority, attempts, created]
    if e.state == "delayed":
        return [e.job_id, name, attempts, _relative(e.score_ms, now)]
    took = (
        j.finished_at_ms - j.started_at_ms if j and j.finished_at_ms and j.started_at_ms else None
    )
    row = [e.job_id, name, attempts, _relative(e.score_ms, now), _duration(took)]
    if e.state == "failed":
        row += [j.dead_reason if j else None, _short(j.error if j else None)]
    return row


_JOB_HEADERS = {
    "waiting": ["ID", "NAME", "ATTEMPTS", "ENTRY", "ENQUEUED"],
    "active": ["ID", "NAME", "WORKER", "ATTEMPT", "DELIVERIES", "IDLE"],
    "delayed": ["ID", "NAME", "ATTEMPTS", "DUE"],
    "held": ["ID", "NAME", "KEY", "PRIORITY", "ATTEMPTS", "ENQUEUED"],
    "completed": ["ID", "NAME", "ATTEMPTS", "FINISHED", "TOOK"],
    "failed": ["ID", "NAME", "ATTEMPTS", "FINISHED", "TOOK", "REASON", "ERROR"],
}


def cmd_jobs(ctx: Context) -> int:
    """``streamq jobs Q --state S [--limit N]``."""
    a = ctx.args
    entries = ctx.admin.jobs(a.queue, a.state, limit=a.limit)

    def human() -> None:
        now = ctx.admin.server_time_ms()
        table(_JOB_HEADERS[a.state], [_job_row(e, now) for e in entries], ctx.out)

    if not entries and not ctx.json:
        print(f"no {a.state} jobs in {a.queue!r}", file=ctx.err)
    return _listing(ctx, entries, entries, human)


def _find_job(ctx: Context, job_id: str) -> Job | int:
    """The one job ``job_id`` of any queue; an exit code when there is none or several."""
    found = ctx.admin.find_job(job_id)
    prefix = ctx.admin.settings.prefix
    if not found:
        raise JobNotFoundError(f"no job {job_id!r} in any queue under prefix {prefix!r}")
    if len(found) > 1:
        # Ids are unique per queue only: showing one of them could mislead.
        print(
            f"error: job id {job_id!r} exists in {len(found)} queues; name one "
            f"(streamq job QUEUE {job_id}):",
            file=ctx.err,
        )
        for j in found:
            print(f"  {j.queue}  ({j.state.value})", file=ctx.err)
        return EXIT_USAGE
    return found[0]


def cmd_job(ctx: Context) -> int:
    """``streamq job [Q] ID``: the full record. Without the queue, every queue under the
    prefix is searched (an id held by several queues asks for the queue, exit 2)."""
    a = ctx.args
    job: Job | None
    if a.queue is None:
        got = _find_job(ctx, a.job_id)
        if isinstance(got, int):
            return got
        job = got
    else:
        job = ctx.admin.get_job(a.queue, a.job_id)
    if job is None:
        raise JobNotFoundError(f"no job {a.job_id!r} in queue {a.queue!r}")
    if ctx.json:
        ctx.emit_json(job)
        return EXIT_OK
    now = ctx.admin.server_time_ms()
    o = job.options
    state = f"{job.state.value} ({job.dead_reason})" if job.dead_reason else job.state.value
    pairs: list[tuple[str, Any]] = [
        ("queue", job.queue),
        ("id", job.id),
        ("name", job.name),
        ("state", state),
        ("attempts", f"{job.attempt} of {o.max_retries + 1}"),
        ("backoff", f"{o.backoff.type} {o.backoff.delay_ms} ms x{o.backoff.factor:g}"),
        ("timeout", _duration(o.timeout_ms) if o.timeout_ms else "none"),
        ("created", _timestamp(job.created_at_ms, now)),
        ("started", _timestamp(job.started_at_ms, now)),
        ("finished", _timestamp(job.finished_at_ms, now)),
        ("due", _timestamp(job.due_at_ms, now)),
        ("worker", job.worker),
        ("entry", job.entry_id),
    ]
    if job.lease_idle_ms is not None:
        pairs += [("idle", _duration(job.lease_idle_ms)), ("deliveries", job.deliveries)]
    pairs += [("data", _data_text(job.data)), ("result", _data_text(job.result))]
    pairs += [("error", job.error)]
    _fields(ctx, pairs)
    _block(ctx, "traceback", job.traceback)
    return EXIT_OK


def cmd_enqueue(ctx: Context) -> int:
    """``streamq enqueue Q NAME --data JSON [--delay S] [--job-id ID] [--key K]
    [--priority P]``."""
    from streamq.producer import Producer

    a = ctx.args
    with Producer(settings=ctx.settings, retry_attempts=1) as producer:
        res: EnqueueResult = producer.enqueue(
            a.queue,
            a.name,
            a.data,
            job_id=a.job_id,
            delay=a.delay or None,
            max_retries=a.max_retries,
            key=a.key,
            priority=a.priority,
        )
    if ctx.json:
        ctx.emit_json(res)
    elif not res.created:
        ctx.say(f"job {res.job_id} already exists ({res.state.value}): not enqueued again")
    elif res.state == "held":
        ctx.say(f"enqueued job {res.job_id} (held for flow control)")
    elif res.due_at_ms is not None:
        due = datetime.fromtimestamp(res.due_at_ms / 1000, tz=UTC).isoformat()
        ctx.say(f"enqueued job {res.job_id} (delayed until {due})")
    else:
        ctx.say(f"enqueued job {res.job_id} (waiting, entry {res.entry_id})")
    return EXIT_OK


def _warn_unknown(ctx: Context, queue: str) -> None:
    """Pausing a name nothing uses is allowed (pause a queue before its first job), but it
    is most often a typo: say so on stderr, with the closest known names."""
    prefix = ctx.admin.settings.prefix
    hint = ""
    close = difflib.get_close_matches(queue, ctx.admin.queues(), n=3)
    if close:
        hint = "; did you mean " + " or ".join(repr(q) for q in close) + "?"
    print(
        f"warning: no queue {queue!r} is known under prefix {prefix!r} (no jobs, dead "
        f"letters, schedules or workers): pausing it anyway{hint}",
        file=ctx.err,
    )


def cmd_partitions(ctx: Context) -> int:
    """``streamq partitions Q [N]``: show the partition count, or raise it to N."""
    a = ctx.args
    if a.count is None:
        meta = ctx.admin.partitions(a.queue)
    else:
        meta = ctx.admin.set_partitions(a.queue, a.count)
    if ctx.json:
        ctx.emit_json(
            {"queue": a.queue, "partitions": meta.partitions, "history": list(meta.history)}
        )
    else:
        history = " -> ".join(str(n) for n in meta.history)
        ctx.say(f"{a.queue}: {meta.partitions} partition(s) (history {history})")
    return EXIT_OK


def cmd_pause(ctx: Context) -> int:
    """``streamq pause Q`` / ``streamq resume Q``."""
    a = ctx.args
    pausing = a.command == "pause"
    if pausing and not ctx.admin.known(a.queue):
        _warn_unknown(ctx, a.queue)
    changed = ctx.admin.pause(a.queue) if pausing else ctx.admin.resume(a.queue)
    state = "paused" if pausing else "running"
    if ctx.json:
        ctx.emit_json({"queue": a.queue, "paused": pausing, "changed": changed})
    elif changed:
        ctx.say(f"{a.queue}: {state}")
    else:
        ctx.say(f"{a.queue}: already {state}")
    return EXIT_OK


def cmd_workers(ctx: Context) -> int:
    """``streamq workers [Q ...]``."""
    a = ctx.args
    items: list[WorkerInfo] = ctx.admin.workers(a.queues or None)

    def human() -> None:
        fields = ["queue", "name", "state", "host", "pid", "running", "concurrency"]
        fields += ["processed", "failed", "pending"]
        rows = [
            [getattr(w, f) for f in fields] + [_duration(w.seen_age_ms), _duration(w.idle_ms)]
            for w in items
        ]
        headers = ["QUEUE", "WORKER", "STATE", "HOST", "PID", "RUNNING", "CONC", "DONE"]
        # The heartbeat counts failed *attempts* (retries included), not failed jobs.
        table([*headers, "FAILED-ATT", "HELD", "SEEN", "IDLE"], rows, ctx.out)

    if not items and not ctx.json:
        print("no workers", file=ctx.err)
    return _listing(ctx, items, items, human)
