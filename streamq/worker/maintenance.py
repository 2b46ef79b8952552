"""The worker's maintenance loops: lease renewal, reclaim of stalled entries, promotion of
due delayed jobs, retention, heartbeat, and the shutdown hand-back.

Each loop is cheap when idle and survives Redis outages (it logs, backs off and resumes).
Every loop is safe to run in every worker at once: the scripts decide races atomically.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from streamq.errors import ConnectionFailedError, QueueFullError
from streamq.job import JobOptions
from streamq.protocol import worker_ops as wops
from streamq.protocol.keys import GROUP
from streamq.protocol.ops import _s, raw
from streamq.worker.logs import log_event

if TYPE_CHECKING:
    from streamq.worker.runner import Worker

__all__ = [
    "burst_watch",
    "hand_back",
    "housekeeping_loop",
    "pause_watch",
    "promote_loop",
    "reclaim_pass",
    "reclaim_period",
    "refresh_paused",
    "renew_loop",
    "schedule_loop",
    "unregister",
]

WARN = logging.WARNING


async def _forever(what: str, period_s: float, body: Callable[[], Awaitable[float | None]]) -> None:
    """Run ``body`` every ``period_s`` (or after the delay it returns), riding out outages."""
    delay = 0.05
    while True:
        try:
            wait = await body()
            delay = 0.05
        except (ConnectionFailedError, QueueFullError) as exc:
            # A full Redis refuses some writes (heartbeat, counters) for a while: back off
            # and go on; one refusal must never end a loop for good.
            log_event("redis_unavailable", WARN, during=what, error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        await asyncio.sleep(period_s if wait is None else wait)


# ---------------------------------------------------------------------- leases


async def renew_loop(w: Worker) -> None:
    """Re-claim our running entries every lease/3 so a live slow job is never stolen."""

    async def body() -> None:
        by_queue: dict[str, list[str]] = {}
        for eid, run in list(w.running.items()):
            if not run.lost:
                by_queue.setdefault(run.keys.queue, []).append(eid)
        for queue, eids in by_queue.items():
            keys = w._by_queue[queue]
            for i in range(0, len(eids), 500):
                lost = await w.driver.run(wops.renew(keys, w.consumer, eids[i : i + 500]))
                for eid in lost:
                    held = w.running.get(eid)
                    if held is None:
                        continue  # finished meanwhile
                    held.lost = True
                    log_event(
                        "lease_lost",
                        WARN,
                        queue=queue,
                        job_id=held.job_id,
                        name=held.name,
                        attempt=held.attempt,
                        detail="another worker reclaimed this job; our result will be refused",
                    )
        return None

    await _forever("renew", w.settings.lease_ms / 3000, body)


def reclaim_period(w: Worker) -> float:
    """Seconds between two reclaim sweeps: a quarter of the lease (at least 0.1 s)."""
    return max(w.settings.lease_ms / 4000, 0.1)


async def reclaim_pass(w: Worker, cursors: dict[str, str]) -> None:
    """One XAUTOCLAIM sweep: take over entries idle past the lease (a crashed or frozen
    worker's jobs), only as many as we have free slots. A job reclaimed more than
    ``max_stalls`` times is dead.

    The fetch loop runs it between two reads, never beside one: a blocked XREADGROUP has
    already asked for every free slot, so a sweep running concurrently would fill the same
    slots and the worker would run more than ``concurrency`` jobs at once.
    """
    for keys in w.keys:
        if keys.queue in w.paused:
            continue  # a paused queue's stalled jobs wait for the resume like the rest
        while not w.stopping:
            free = w.concurrency - w._executing
            if free <= 0:
                return
            r = await w.driver.run(
                wops.reclaim(keys, w.consumer, w.settings.lease_ms, cursors[keys.queue], free)
            )
            cursors[keys.queue] = r.cursor
            for eid in r.deleted:
                await _dead_deleted(w, keys, eid)
            taken = 0
            for fetched, deliveries in r.entries:
                taken += await _take_over(w, fetched, deliveries)
            if taken:
                # One counter update per sweep, not a round trip per reclaimed job.
                await w.driver.run(raw("HINCRBY", keys.stats, "reclaimed", taken))
            if r.cursor == "0-0" or not r.entries:
                break


async def _take_over(w: Worker, fetched: wops.Fetched, deliveries: int) -> bool:
    """Start a reclaimed entry here (True), or dead-letter it past ``max_stalls``, or leave
    our own still-running entry alone (False)."""
    if fetched.entry_id in w.running:
        # Our own entry, still running here: its renewals lapsed (event loop blocked, an
        # outage or a Redis restart longer than the lease) and XAUTOCLAIM handed it back to
        # us. The claim renewed it; starting it again would run the job twice in this
        # process, and counting it as a stall could kill a job that is alive.
        log_event("lease_recovered", WARN, queue=fetched.queue, entry_id=fetched.entry_id)
        return False
    stalls = max(deliveries - 1, 0)
    e = fetched.entry
    keys = w._by_queue[fetched.queue]
    common = dict(queue=fetched.queue, entry_id=fetched.entry_id, stalls=stalls)
    if e is not None and stalls > w.settings.max_stalls:
        from streamq.worker.runner import Running

        run = Running(keys, e.job_id, e.entry_id, e.name, e.attempt, int(time.time() * 1000))
        w.running[e.entry_id] = run
        await w._fail(
            run,
            f"stalled {stalls} times (worker died or froze mid-job)",
            "",
            -1,
            "stalled",
            JobOptions(),
        )
        return False
    log_event("reclaimed", WARN, **common, job_id=e.job_id if e else None)
    w.start(fetched)
    return True


async def _dead_deleted(w: Worker, keys: Any, eid: str) -> None:
    """Redis >= 7 reports pending entries deleted from the stream by someone else. The
    entry is gone, but the job record still names it (field ``x``): find that job and
    dead-letter it with the reason, so it never silently vanishes. A rare event, so a SCAN
    of the queue's job records is acceptable here."""
    reason = f"stream entry {eid} was deleted while pending (XDEL/XTRIM by someone else)"
    found = await _job_of_entry(w, keys, eid)
    if found is None:
        await w.driver.run(wops.dead_entry(keys, eid, {}, reason))
        log_event("dead", logging.ERROR, queue=keys.queue, entry_id=eid, reason=reason)
        return
    from streamq.worker.runner import Running

    job_id, name, attempts = found
    run = Running(keys, job_id, eid, name, attempts + 1, int(time.time() * 1000))
    w.running[eid] = run
    await w._fail(run, reason, "", -1, "deleted", JobOptions(), skip_owner_check=True)


async def _job_of_entry(w: Worker, keys: Any, eid: str) -> tuple[str, str, int] | None:
    prefix = keys.job("")
    cursor: int | str = 0
    target = eid.encode()
    while True:
        cursor, names = await w.driver.run(
            raw("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000)
        )
        if names:
            recs = await w.driver.run([raw("HMGET", n, "x", "s", "n", "a") for n in names])
            for key, (x, state, name, attempts) in zip(names, recs, strict=True):
                if x == target and state == b"waiting":
                    return _s(key)[len(prefix) :], _s(name or b""), int(attempts or 0)
        if int(cursor) == 0:
            return None


# ---------------------------------------------------------------------- promotion


async def promote_loop(w: Worker) -> None:
    """Move due delayed jobs into their streams; sleep until the next due time (capped, so
    a newly enqueued earlier job is seen within ``promote_poll_ms``)."""
    cap = w.promote_poll_ms / 1000

    async def body() -> float:
        sleep = cap
        for keys in w.keys:
            while True:
                info = await w.driver.run(wops.due(keys, 500))
                if info.ids:
                    moved = await w.driver.run(wops.promote(keys, info.ids))
                    if moved:
                        log_event("promoted", logging.DEBUG, queue=keys.queue, count=moved)
                    continue  # ask again: more may be due, and we learn the next due time
                if info.next_due_ms > 0:
                    sleep = min(sleep, max((info.next_due_ms - info.now_ms) / 1000, 0.001))
                break
        return sleep

    await _forever("promote", cap, body)


async def schedule_loop(w: Worker) -> None:
    """Fire due ticks of repeating schedules (exactly once per tick across all workers);
    sleep until the next tick, capped like promotion so new schedules are seen quickly."""
    from streamq import scheduler

    cap = max(w.promote_poll_ms / 1000, 0.2)

    async def body() -> float:
        sleep = cap
        for keys in w.keys:
            fired, wait = await w.driver.run(scheduler.fire_due(keys))
            if fired:
                log_event("scheduled", queue=keys.queue, ticks=fired)
            if wait >= 0:
                sleep = min(sleep, max(wait, 0.001))
        return sleep

    await _forever("schedule", cap, body)


# ---------------------------------------------------------------------- housekeeping


async def housekeeping_loop(w: Worker) -> None:
    """Heartbeat in the live-worker registry, and retention of finished records."""
    s = w.settings
    started = int(time.time() * 1000)
    host, pid = socket.gethostname(), os.getpid()

    ticks = 0

    async def body() -> None:
        nonlocal ticks
        # The Redis clock, so operators compare heartbeats with one clock, not each host's.
        now = await w.driver.run(raw("TIME", parse=lambda r: int(r[0]) * 1000 + int(r[1]) // 1000))
        info = orjson.dumps(
            {
                "host": host,
                "pid": pid,
                "started_ms": started,
                "seen_ms": now,
                "running": len(w.running),
                "concurrency": w.concurrency,
                "lease_ms": s.lease_ms,
                "processed": w.processed,
                "failed": w.failed,
                # Sync handlers past their time limit, each holding a slot (worker/threads.py).
                "stuck": [h.as_dict() for h in w.stuck[:STUCK_LISTED]],
                "stuck_count": len(w.stuck),
                "stuck_by_queue": _count_by_queue(w),
            }
        )
        ticks += 1
        for keys in w.keys:
            await w.driver.run(wops.heartbeat(keys, w.consumer, now, info))
            if ticks % 60 == 1:
                await _forget_old(w, keys, now)
            for index, keep, age_s in (
                (keys.completed, s.keep_completed, s.completed_max_age_s),
                (keys.failed, s.keep_failed, s.failed_max_age_s),
                (keys.cancelled, s.keep_completed, s.completed_max_age_s),
            ):
                while True:
                    ids = await w.driver.run(wops.retention(index, keep, age_s * 1000, 500))
                    if not ids:
                        break
                    await w.driver.run(wops.trim(keys, index, ids))
                    if len(ids) < 500:
                        break
        return None

    await _forever("housekeeping", 1.0, body)


def _count_by_queue(w: Worker) -> dict[str, int]:
    out: dict[str, int] = {}
    for h in w.stuck:
        out[h.queue] = out.get(h.queue, 0) + 1
    return out


#: Stuck handlers listed in a heartbeat (the count is always whole).
STUCK_LISTED = 20
#: Heartbeats older than this are dropped from the registry (a worker that crashed).
STALE_WORKER_MS = 3_600_000
#: Per-minute throughput counters are kept this long.
THROUGHPUT_KEEP_MIN = 120


async def _forget_old(w: Worker, keys: Any, now_ms: int) -> None:
    """Once a minute: drop crashed workers' heartbeats and old per-minute counters, so the
    registry and the throughput hash stay bounded."""
    beats = await w.driver.run(raw("HGETALL", keys.workers))
    stale = []
    for name, blob in (beats or {}).items():
        try:
            seen = int(orjson.loads(blob).get("seen_ms", 0))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            seen = 0
        if now_ms - seen > STALE_WORKER_MS:
            stale.append(name)
    if stale:
        await w.driver.run(raw("HDEL", keys.workers, *stale))
    fields = await w.driver.run(raw("HKEYS", keys.throughput))
    oldest = now_ms // 60000 - THROUGHPUT_KEEP_MIN
    old = [f for f in fields or [] if _minute(f) < oldest]
    if old:
        await w.driver.run(raw("HDEL", keys.throughput, *old))


def _minute(field: bytes | str) -> int:
    text = field.decode() if isinstance(field, bytes) else field
    head = text.split(":", 1)[0]
    return int(head) if head.isdigit() else 0


async def refresh_paused(w: Worker) -> None:
    """Read the pause flags of our queues (one pipeline) and log changes."""
    flags = await w.driver.run([raw("EXISTS", k.paused) for k in w.keys])
    now = {k.queue for k, f in zip(w.keys, flags, strict=True) if int(f)}
    for q in now - w.paused:
        log_event("paused", queue=q, detail="no new jobs fetched until resumed")
    for q in w.paused - now:
        log_event("resumed", queue=q)
    w.paused = now
    if len(now) < len(w.keys):
        w._unpaused.set()


async def pause_watch(w: Worker) -> None:
    """Follow pause/resume within half a second (running jobs keep their leases)."""

    async def body() -> None:
        await refresh_paused(w)

    await _forever("pause", 0.5, body)


async def burst_watch(w: Worker) -> None:
    """Stop the worker once every queue is drained: nothing waiting, delayed or running."""
    from streamq.protocol import ops

    while True:
        await asyncio.sleep(0.05)
        # A stuck sync handler (past its time limit, attempt recorded) is not a job any
        # more: it holds a slot, but burst mode does not wait for it.
        if w.running or w._executing > len(w.stuck):
            continue
        try:
            sts = [await w.driver.run(ops.status(k)) for k in w.keys]
        except ConnectionFailedError:
            continue
        if all(s.waiting == 0 and s.active == 0 and s.delayed == 0 for s in sts):
            w.stop()
            return


# ---------------------------------------------------------------------- shutdown


async def hand_back(w: Worker) -> int:
    """Return every entry still in our PEL to its queue at once (so other workers start it
    now, not after the lease), including entries fetched in flight when we stopped."""
    total = 0
    for keys in w.keys:
        pend = await w.driver.run(
            raw("XPENDING", keys.stream, GROUP, "-", "+", 10_000, w.consumer, parse_detail=True)
        )
        eids = [_s(p["message_id"]) for p in pend or []]
        if not eids:
            continue
        jobs = [(run.job_id, eid) for eid in eids if (run := w.running.get(eid)) is not None]
        unknown = [eid for eid in eids if eid not in w.running]
        if unknown:
            # Entries fetched in flight: their job ids, in one pipeline rather than a round
            # trip each.
            found = await w.driver.run([raw("XRANGE", keys.stream, e, e) for e in unknown])
            for eid, rows in zip(unknown, found, strict=True):
                jid = rows[0][1].get(b"i") if rows else None
                if jid:
                    jobs.append((jid.decode(errors="replace"), eid))
        if jobs:
            n = await w.driver.run(wops.release(keys, w.consumer, jobs))
            total += n
            for job_id, eid in jobs:
                w.running.pop(eid, None)
                log_event("handed_back", WARN, queue=keys.queue, job_id=job_id, entry_id=eid)
    return total


async def unregister(w: Worker) -> None:
    """Leave the live-worker registry and drop our consumer if it holds nothing."""
    for keys in w.keys:
        try:
            await w.driver.run(raw("HDEL", keys.workers, w.consumer))
            pend = await w.driver.run(
                raw("XPENDING", keys.stream, GROUP, "-", "+", 1, w.consumer, parse_detail=True)
            )
            if not pend:
                await w.driver.run(raw("XGROUP", "DELCONSUMER", keys.stream, GROUP, w.consumer))
        except ConnectionFailedError:
            return
