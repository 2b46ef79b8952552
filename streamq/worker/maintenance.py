"""The worker's maintenance loops: lease renewal, reclaim of stalled entries, promotion of
due delayed jobs, repeat schedules, retention, heartbeat, pause flags, and the shutdown
hand-back.

Each loop is cheap when idle and survives Redis outages (it logs, backs off and resumes).
Every loop is safe to run in every worker at once: the scripts decide races atomically.
They work on the worker's :class:`~streamq.worker.state.WorkerState`; reclaimed entries
and failures go to the job path through its ``start`` and ``fail`` hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

import orjson
from redis.exceptions import RedisError, ResponseError

from streamq import connection
from streamq.errors import ConnectionFailedError
from streamq.protocol import partitions as partition_ops
from streamq.protocol import queues as queue_ops
from streamq.protocol import schedules as schedule_ops
from streamq.protocol import worker as wops
from streamq.protocol.calls import server_time
from streamq.protocol.keys import QueueKeys
from streamq.worker.logs import log_event
from streamq.worker.outage import OUTAGE, Backoff
from streamq.worker.state import Failure, Running, WorkerState, local_ms

__all__ = [
    "burst_watch",
    "hand_back",
    "housekeeping_loop",
    "pause_watch",
    "primary_watch",
    "promote_loop",
    "reclaim_pass",
    "reclaim_period",
    "refresh_paused",
    "renew_loop",
    "schedule_loop",
    "unregister",
]

WARN = logging.WARNING

#: Heartbeats older than this are dropped from the registry (a worker that crashed).
STALE_WORKER_MS = 3_600_000
#: Per-minute throughput counters are kept this long.
THROUGHPUT_KEEP_MIN = 120
#: Stuck handlers listed in a heartbeat (the count is always whole).
STUCK_LISTED = 20
#: How often a worker on Sentinel asks the sentinels which node is the primary: one
#: command a second per worker, against a rerun window of 8 s or more (primary_watch).
PRIMARY_WATCH_S = 1.0


async def _forever(what: str, period_s: float, body: Callable[[], Awaitable[float | None]]) -> None:
    """Run ``body`` every ``period_s`` (or after the delay it returns), riding out outages."""
    backoff = Backoff()
    while True:
        try:
            wait = await body()
            backoff.reset()
        except OUTAGE as exc:
            # A full Redis refuses some writes (heartbeat, counters) for a while: back off
            # and go on; one refusal must never end a loop for good.
            await backoff.wait(what, exc)
            continue
        await asyncio.sleep(period_s if wait is None else wait)


# ---------------------------------------------------------------------- leases


async def renew_loop(st: WorkerState) -> None:
    """Re-claim our running entries every lease/3 so a live slow job is never stolen."""

    async def body() -> None:
        by_lane: dict[str, tuple[QueueKeys, list[str]]] = {}
        for (stream, eid), run in list(st.running.items()):
            if not run.lost:
                by_lane.setdefault(stream, (run.keys, []))[1].append(eid)
        for keys, eids in by_lane.values():
            queue = keys.queue
            for i in range(0, len(eids), 500):
                lost = await st.driver.run(wops.renew(keys, st.consumer, eids[i : i + 500]))
                for eid in lost:
                    held = st.running.get((keys.stream, eid))
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

    await _forever("renew", st.settings.lease_ms / 3000, body)


def reclaim_period(st: WorkerState) -> float:
    """Seconds between two reclaim sweeps: a quarter of the lease (at least 0.1 s)."""
    return max(st.settings.lease_ms / 4000, 0.1)


async def reclaim_pass(st: WorkerState, cursors: dict[str, str]) -> None:
    """One XAUTOCLAIM sweep: take over entries idle past the lease (a crashed or frozen
    worker's jobs), only as many as we have free slots. A job reclaimed more than
    ``max_stalls`` times is dead.

    The fetch loop runs it between two reads, never beside one: a blocked XREADGROUP has
    already asked for every free slot, so a sweep running concurrently would fill the same
    slots and the worker would run more than ``concurrency`` jobs at once.
    """
    for keys in st.lanes:
        if keys.queue in st.paused:
            continue  # a paused queue's stalled jobs wait for the resume like the rest
        if keys.is_flow and keys.queue in st.flow_missing:
            continue  # no lane yet (a full Redis at start-up): nothing can be pending there
        while not st.stopping.is_set():
            free = st.free
            if free <= 0:
                return
            cursor = cursors.get(keys.stream, "0-0")
            r = await st.driver.run(
                wops.reclaim(keys, st.consumer, st.settings.lease_ms, cursor, free)
            )
            cursors[keys.stream] = r.cursor
            for eid in r.deleted:
                await _dead_deleted(st, keys, eid)
            taken = 0
            for fetched, deliveries in r.entries:
                taken += await _take_over(st, fetched, deliveries)
            if taken:
                # One counter update per sweep, not a round trip per reclaimed job.
                await st.driver.run(wops.count_reclaimed(keys, taken))
            if r.cursor == "0-0" or not r.entries:
                break


async def _take_over(st: WorkerState, fetched: wops.Fetched, deliveries: int) -> bool:
    """Start a reclaimed entry here (True), or dead-letter it past ``max_stalls``, or leave
    our own still-running entry alone (False)."""
    if (st.keys_of(fetched).stream, fetched.entry_id) in st.running:
        # Our own entry, still running here: its renewals lapsed (event loop blocked, an
        # outage or a Redis restart longer than the lease) and XAUTOCLAIM handed it back to
        # us. The claim renewed it; starting it again would run the job twice in this
        # process, and counting it as a stall could kill a job that is alive.
        log_event("lease_recovered", WARN, queue=fetched.queue, entry_id=fetched.entry_id)
        return False
    stalls = max(deliveries - 1, 0)
    e = fetched.entry
    keys = st.keys_of(fetched)
    if keys.is_flow:
        await _hold_reclaimed(st, keys, fetched)
        return False
    if e is not None and stalls > st.settings.max_stalls:
        run = Running(keys, e.job_id, e.entry_id, e.name, e.attempt, local_ms())
        st.running[(keys.stream, e.entry_id)] = run
        error = f"stalled {stalls} times (worker died or froze mid-job)"
        await st.fail(Failure(run, error, "stalled", dead_now=True))
        return False
    log_event(
        "reclaimed",
        WARN,
        queue=fetched.queue,
        entry_id=fetched.entry_id,
        stalls=stalls,
        job_id=e.job_id if e else None,
    )
    st.start(fetched)
    return True


async def _hold_reclaimed(st: WorkerState, keys: QueueKeys, fetched: wops.Fetched) -> None:
    """A flow job reclaimed from a dead worker goes back to its key's held jobs, at its old
    place, rather than running here: the next take charges its rate limit and takes its
    concurrency slot again, so a re-run never exceeds the key's limits. The stall count
    lives in the job's record (each take makes a new entry); past ``max_stalls`` it is dead."""
    e = fetched.entry
    if e is None:
        if not fetched.wakeup:  # an undecodable entry: the plain path's treatment
            st.start(fetched)
            return
        await st.driver.run(wops.ack_drop(keys, fetched.entry_id))
        return
    out = await st.driver.run(
        wops.release(keys, st.consumer, [(e.job_id, e.entry_id)], st.settings.max_stalls)
    )
    if out.stalled:
        run = Running(keys, e.job_id, e.entry_id, e.name, e.attempt, local_ms())
        st.running[(keys.stream, e.entry_id)] = run
        error = f"stalled more than {st.settings.max_stalls} times (worker died or froze mid-job)"
        await st.fail(Failure(run, error, "stalled", dead_now=True))
        return
    log_event(
        "reclaimed",
        WARN,
        queue=keys.queue,
        entry_id=e.entry_id,
        job_id=e.job_id,
        detail="a flow job: held again for its key's next turn",
    )


async def _dead_deleted(st: WorkerState, keys: QueueKeys, eid: str) -> None:
    """Redis >= 7 reports pending entries deleted from the stream by someone else. The
    entry is gone, but the job record still names it (field ``x``): find that job and
    dead-letter it with the reason, so it never silently vanishes. A rare event, so a SCAN
    of the queue's job records is acceptable here."""
    reason = f"stream entry {eid} was deleted while pending (XDEL/XTRIM by someone else)"
    found = await st.driver.run(wops.job_of_entry(keys, eid))
    if found is None:
        await st.driver.run(wops.dead_entry(keys, eid, {}, reason))
        log_event("dead", logging.ERROR, queue=keys.queue, entry_id=eid, reason=reason)
        return
    run = Running(keys, found.job_id, eid, found.name, found.attempts + 1, local_ms())
    st.running[(keys.stream, eid)] = run
    await st.fail(Failure(run, reason, "deleted", dead_now=True, skip_owner_check=True))


# ---------------------------------------------------------------------- promotion


async def promote_loop(st: WorkerState) -> None:
    """Move due delayed jobs into their streams; sleep until the next due time (capped, so
    a newly enqueued earlier job is seen within ``promote_poll_ms``)."""
    cap = st.promote_poll_ms / 1000

    async def body() -> float:
        sleep = cap
        for keys in st.keys:
            while True:
                info = await st.driver.run(wops.due(keys, 500))
                if info.ids:
                    moved = await st.driver.run(wops.promote(keys, info.ids))
                    if moved:
                        log_event("promoted", logging.DEBUG, queue=keys.queue, count=moved)
                    continue  # ask again: more may be due, and we learn the next due time
                if info.next_due_ms > 0:
                    sleep = min(sleep, max((info.next_due_ms - info.now_ms) / 1000, 0.001))
                break
        return sleep

    await _forever("promote", cap, body)


async def schedule_loop(st: WorkerState) -> None:
    """Fire due ticks of repeating schedules (exactly once per tick across all workers);
    sleep until the next tick, capped like promotion so new schedules are seen quickly."""
    cap = max(st.promote_poll_ms / 1000, 0.2)

    async def body() -> float:
        sleep = cap
        for keys in st.homes:  # schedules live in the home partition
            fired, wait = await st.driver.run(schedule_ops.fire_due(keys))
            if fired:
                log_event("scheduled", queue=keys.queue, ticks=fired)
            if wait >= 0:
                sleep = min(sleep, max(wait, 0.001))
        return sleep

    await _forever("schedule", cap, body)


# ---------------------------------------------------------------------- housekeeping


async def housekeeping_loop(st: WorkerState) -> None:
    """Heartbeat in the live-worker registry, and retention of finished records."""
    s = st.settings
    started = local_ms()
    host, pid = socket.gethostname(), os.getpid()
    ticks = 0

    async def body() -> None:
        nonlocal ticks
        now = await st.driver.run(server_time())  # one clock for every heartbeat
        info = orjson.dumps(
            {
                "host": host,
                "pid": pid,
                "started_ms": started,
                "seen_ms": now,
                "running": len(st.running),
                "concurrency": st.concurrency,
                "lease_ms": s.lease_ms,
                "processed": st.processed,
                "failed": st.failed,
                # Sync handlers past their time limit, each holding a slot (worker/threads.py).
                "stuck": [h.as_dict() for h in st.stuck[:STUCK_LISTED]],
                "stuck_count": len(st.stuck),
                "stuck_by_queue": _stuck_by_queue(st),
            }
        )
        ticks += 1
        for keys in st.keys:
            await st.driver.run(wops.heartbeat(keys, st.consumer, now, info))
            if ticks % 60 == 1:  # once a minute
                await st.driver.run(
                    wops.forget_stale(keys, now, STALE_WORKER_MS, THROUGHPUT_KEEP_MIN)
                )
                cursor = ""
                while True:  # the rate logs of keys that got no job for a while
                    cursor, _ = await st.driver.run(wops.rlog_prune(keys, cursor))
                    if not cursor:
                        break
            for index, keep, age_s in (
                (keys.completed, s.keep_completed, s.completed_max_age_s),
                (keys.failed, s.keep_failed, s.failed_max_age_s),
                (keys.cancelled, s.keep_completed, s.completed_max_age_s),
            ):
                while True:
                    ids = await st.driver.run(wops.retention(index, keep, age_s * 1000, 500))
                    if not ids:
                        break
                    await st.driver.run(wops.trim(keys, index, ids))
                    if len(ids) < 500:
                        break
        return None

    await _forever("housekeeping", 1.0, body)


def _stuck_by_queue(st: WorkerState) -> dict[str, int]:
    out: dict[str, int] = {}
    for h in st.stuck:
        out[h.queue] = out.get(h.queue, 0) + 1
    return out


# ---------------------------------------------------------------------- pauses, burst


async def refresh_paused(st: WorkerState) -> None:
    """Read the pause flags of our queues (one pipeline) and log changes. A flag lives at
    the queue's home only (see Admin.pause): a partition's would always be absent."""
    homes = st.homes
    flags = await st.driver.run(wops.paused_queues(homes))
    now = {k.queue for k, paused in zip(homes, flags, strict=True) if paused}
    for q in now - st.paused:
        log_event("paused", queue=q, detail="no new jobs fetched until resumed")
    for q in st.paused - now:
        log_event("resumed", queue=q)
    st.paused = now
    if len(now) < len(homes):
        st.unpaused.set()


async def refresh_partitions(st: WorkerState) -> None:
    """Read each queue's partitions; start consuming the ones a raised count added."""
    homes = st.homes
    metas = await st.driver.run([partition_ops.read_meta(k) for k in homes])
    for home, meta in zip(homes, metas, strict=True):
        added = st.add_partitions(partition_ops.partition_keys(home, meta))
        if added:
            log_event(
                "partitions",
                queue=home.queue,
                partitions=meta.partitions,
                consumed=len([k for k in st.keys if k.queue == home.queue]),
            )
            for k in added:
                with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
                    await st.driver.run(wops.ensure_group(k))


async def pause_watch(st: WorkerState) -> None:
    """Follow pause/resume within half a second (running jobs keep their leases), and a
    raised partition count."""

    async def body() -> None:
        await refresh_paused(st)
        await refresh_partitions(st)

    await _forever("pause", 0.5, body)


async def primary_watch(st: WorkerState) -> None:
    """On Sentinel, follow a failover within a second even while every connection stays
    up: a primary that stalled, was failed over and came back would otherwise keep this
    worker (reads, completions) until the sentinels demote it, work that is then rolled
    back and run again (see :func:`streamq.connection.follow_primary`)."""

    async def body() -> None:
        try:
            moved = await connection.follow_primary(st.driver.client)
        except RedisError as exc:  # no sentinel answered: each new connection asks again
            raise ConnectionFailedError(f"no sentinel answered: {exc}") from exc
        if moved is not None:
            log_event("primary_moved", WARN, primary=f"{moved[0]}:{moved[1]}")

    await _forever("primary", PRIMARY_WATCH_S, body)


async def burst_watch(st: WorkerState) -> None:
    """Stop the worker once every queue is drained: nothing waiting, delayed or running."""
    while True:
        await asyncio.sleep(0.05)
        # A stuck sync handler (past its time limit, attempt recorded) is not a job any
        # more: it holds a slot, but burst mode does not wait for it.
        if st.running or st.executing > len(st.stuck):
            continue
        try:
            sts = [await st.driver.run(queue_ops.status(k)) for k in st.keys]
        except ConnectionFailedError:
            continue
        if not all(s.waiting == 0 and s.active == 0 and s.delayed == 0 for s in sts):
            continue
        try:
            flow = [await st.driver.run(wops.flow_busy(k)) for k in st.homes]
        except ConnectionFailedError:
            continue
        except ResponseError:  # no flow lane yet (NOGROUP): nothing held
            flow = [0]
        if not any(flow):
            st.stop()
            return


# ---------------------------------------------------------------------- shutdown


async def hand_back(st: WorkerState) -> int:
    """Return every entry still in our PEL to its queue at once (so other workers start it
    now, not after the lease), including entries fetched in flight when we stopped."""
    total = 0
    for keys in st.lanes:
        known = {e: r.job_id for (_, e), r in st.running.items() if r.keys == keys}
        n, jobs = await st.driver.run(wops.hand_back(keys, st.consumer, known))
        total += n
        for job_id, eid in jobs:
            st.running.pop((keys.stream, eid), None)
            log_event("handed_back", WARN, queue=keys.queue, job_id=job_id, entry_id=eid)
    return total


async def unregister(st: WorkerState) -> None:
    """Leave the live-worker registry and drop our consumer if it holds nothing."""
    for keys in st.lanes:
        try:
            await st.driver.run(wops.unregister(keys, st.consumer))
        except ConnectionFailedError:
            return
