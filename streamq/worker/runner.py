"""The worker: fetch, run, finish. Maintenance loops (leases, reclaim, promotion, retention)
live in :mod:`streamq.worker.maintenance`; this module owns the job path.

One asyncio process. Handlers run under a slot count (``concurrency``); sync handlers run in
a thread pool. Completions are batched into few script calls; failures are recorded one by
one (they are rare and carry tracebacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.crc import key_slot
from redis.exceptions import ResponseError

from streamq import connection
from streamq._driver import AsyncDriver
from streamq.config import Settings
from streamq.errors import (
    PayloadError,
    PermanentJobError,
    QueueFullError,
    RateLimited,
    RetryJobError,
    ServerError,
)
from streamq.job import MAX_BACKOFF_MS, Job, JobState, decode_options
from streamq.protocol import worker as wops
from streamq.protocol.codec import encode_payload
from streamq.protocol.keys import QueueKeys, validate_queue_name
from streamq.worker import maintenance
from streamq.worker.app import App, Registered
from streamq.worker.checks import ServerInfo, check_masters
from streamq.worker.flowview import FlowView as _FlowView
from streamq.worker.logs import log_event
from streamq.worker.outage import OUTAGE, Backoff, retrying
from streamq.worker.pool import RunnerPool
from streamq.worker.state import Failure, Running, WorkerState, local_ms
from streamq.worker.threads import HandlerThreads, StuckHandler

__all__ = ["Worker"]

WARN = logging.WARNING
#: How long a stopping worker keeps trying to hand its running jobs back through an outage.
HAND_BACK_TIMEOUT_S = 5.0
#: On a Redis Cluster, the longest a worker on queues in several slots blocks on one of
#: them: the others are read again after at most this long.
CLUSTER_IDLE_BLOCK_MS = 100
#: How long a worker leaves alone a slot group whose read met an outage (its master down)
#: before reading it again: the live groups are read meanwhile.
GROUP_DOWN_S = 0.5
#: Name prefix of the threads that run sync handlers.
JOB_THREAD = "streamq-job"


_log = logging.getLogger("streamq")


async def _cancel_and_wait(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they are done, cancelling again while they are not.

    One ``cancel()`` is not always enough: on Python 3.11, ``asyncio.wait_for`` (which
    redis-py uses to send every command) swallows a cancellation that arrives just as the
    inner operation completes, and the task carries on as if nothing happened.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for t in tasks:
        if not t.cancelled():
            t.exception()  # retrieve it: a loop that died is reported by its own logs


def _per_stream(lanes: list[QueueKeys], free: int) -> int:
    """XREADGROUP's COUNT is per stream: with several plain streams (queues, partitions)
    ask each for its share of the free slots, so the read cannot deliver many times more
    than the worker can run (at most one each beyond, when there are more streams than
    free slots)."""
    plain = sum(1 for k in lanes if not k.is_flow)
    return free if plain <= 1 else max(1, free // plain)


def _slot_groups(lanes: list[QueueKeys]) -> list[list[QueueKeys]]:
    """``lanes`` grouped by Cluster hash slot, in first-seen order."""
    by_slot: dict[int, list[QueueKeys]] = {}
    for k in lanes:
        by_slot.setdefault(key_slot(k.stream.encode()), []).append(k)
    return list(by_slot.values())


class _TimedOut(Exception):
    """The job's time limit expired (a sync handler's thread runs on: see :mod:`.threads`)."""


@dataclass(slots=True)
class _Pending:
    done: list[tuple[wops.Done, Running, float]] = field(default_factory=list)


class Worker:
    """Runs the handlers of ``app`` for jobs of ``queues``.

    ``await worker.run()`` until :meth:`stop` (or a signal, from the process entry);
    ``burst=True`` returns once the queues are empty and nothing is running or delayed.
    """

    def __init__(
        self,
        app: App,
        queues: Sequence[str],
        *,
        settings: Settings | None = None,
        concurrency: int | None = None,
        consumer: str | None = None,
        block_ms: int = 1000,
        promote_poll_ms: int = 200,
    ) -> None:
        if not queues:
            raise ServerError("a worker needs at least one queue")
        self.app = app
        self.settings = settings or Settings.from_env()
        self.concurrency = concurrency or self.settings.concurrency
        self.keys = [QueueKeys(validate_queue_name(q), self.settings.prefix) for q in queues]
        self.consumer = consumer or (f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}")
        self.block_ms = block_ms
        self.promote_poll_ms = promote_poll_ms
        self.server: ServerInfo | None = None
        self.client = connection.async_client(self.settings.redis, retry_attempts=1)
        self.client.set_response_callback("XREADGROUP", wops.raw_reply)
        self.driver = AsyncDriver(self.client, self.settings.redis.describe())
        #: On a Cluster a read cannot span slots: see :meth:`_read_by_slot`.
        self._cluster = connection.is_cluster(self.client)
        self._turn = 0
        #: Slot group (its first stream) -> until when it is left alone (see _read_by_slot).
        self._group_down: dict[str, float] = {}
        #: What the job path and the maintenance loops share (see :mod:`.state`).
        self.state = st = WorkerState(
            self.settings,
            self.keys,
            self.consumer,
            self.driver,
            self.concurrency,
            promote_poll_ms,
        )
        st.start, st.fail, st.stop = self.start, self._fail, self.stop
        #: (stream, entry id) -> job (executing or awaiting flush); the state's dict, shared.
        self.running: dict[tuple[str, str], Running] = st.running
        #: Sync handlers still running past their time limit; each holds a slot.
        self.stuck: list[StuckHandler] = st.stuck
        self._pool_runners: RunnerPool[tuple[wops.Fetched, Running | None]] = RunnerPool(
            self.concurrency, self._run_fetched, self._release_slot
        )
        self._pending = _Pending()
        self._flush_wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self._flush_busy = False  # a completion batch is being sent
        self._flush_backoff = Backoff()
        self._hurry = asyncio.Event()
        self._threads = HandlerThreads(JOB_THREAD)
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def paused(self) -> set[str]:
        """Queues paused by an operator (``sq:{Q}:paused``): not fetched nor reclaimed from."""
        return self.state.paused

    @property
    def processed(self) -> int:
        """Jobs completed by this worker."""
        return self.state.processed

    @property
    def failed(self) -> int:
        """Failed attempts recorded by this worker (retried or dead)."""
        return self.state.failed

    @property
    def executing(self) -> int:
        """Slots taken: entries queued for a runner or running, and stuck sync handlers."""
        return self.state.executing

    # ------------------------------------------------------------------ lifecycle

    def stop(self, *, hurry: bool = False) -> None:
        """Ask the worker to stop: no new fetches, running jobs get the grace period.

        ``hurry=True`` (a second signal) ends the grace period now: whatever still runs is
        handed back at once."""
        if hurry:
            self._hurry.set()
        self.state.stopping.set()
        self.state.slot.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self.state.stopping.is_set()

    async def startup(self) -> None:
        """Check the server (every master of a cluster), load scripts and create the
        consumer groups."""
        infos = await self.driver.run(wops.server_info())
        saves: dict[str, str]
        try:
            # Through the driver, so an outage here is retried like the rest of startup.
            saves = await self.driver.run(wops.save_setting())
        except ResponseError:
            saves = {}  # CONFIG not allowed for this user (least-privilege ACL): skip
        self.server = check_masters({n: (i, saves.get(n)) for n, i in infos.items()})
        await self.driver.load_all()
        await maintenance.refresh_partitions(self.state)  # every partition from the start
        await self.ensure_groups()
        await maintenance.refresh_paused(self.state)  # never fetch from a queue paused at start
        log_event(
            "worker_started",
            queues=[k.queue for k in self.keys],
            concurrency=self.concurrency,
            consumer=self.consumer,
            server=self.settings.redis.describe(),
            version=".".join(map(str, self.server.version)),
            loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )

    async def ensure_groups(self) -> None:
        """XGROUP CREATE ... MKSTREAM for each queue; an existing group is fine."""
        for k in self.state.lanes:
            try:
                await self.driver.run(wops.ensure_group(k))
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            except QueueFullError:
                # A full Redis refuses XGROUP CREATE even for a group that exists; a worker
                # is what a full Redis needs most (draining frees memory), so start anyway
                # when the group is there.
                if k.is_flow:
                    try:
                        exists = await self.driver.run(wops.group_exists(k))
                    except ResponseError:  # no such key: the lane was never made
                        exists = False
                    if not exists:
                        # No flow job can exist without its lane: run the plain jobs, and
                        # try the lane again after each reclaim sweep.
                        self.state.flow_missing.add(k.queue)
                        continue
                elif not await self.driver.run(wops.group_exists(k)):
                    raise
            if k.is_flow:
                self.state.flow_missing.discard(k.queue)

    async def run(self, *, burst: bool = False) -> None:
        """Run until stopped (or, with ``burst``, until there is nothing left to do)."""
        if not await self._start():
            await self.client.aclose()
            log_event("worker_stopped", consumer=self.consumer, processed=0, failed=0)
            return
        loops = [
            self._fetch_loop(),
            self._flush_loop(),
            maintenance.renew_loop(self.state),
            maintenance.promote_loop(self.state),
            maintenance.schedule_loop(self.state),
            maintenance.housekeeping_loop(self.state),
            maintenance.pause_watch(self.state),
        ]
        if connection.is_sentinel(self.client):
            loops.append(maintenance.primary_watch(self.state))
        if burst:
            loops.append(maintenance.burst_watch(self.state))
        self._tasks = [asyncio.create_task(c) for c in loops]
        crashed: BaseException | None = None
        stopping = asyncio.ensure_future(self.state.stopping.wait())
        try:
            # A loop ends only when told to (burst_watch returns after stop()): one that
            # raises (NOPERM from a too-narrow ACL, a script error...) would otherwise leave
            # a worker that looks alive but never records a completion again.
            done, _ = await asyncio.wait(
                {stopping, *self._tasks}, return_when=asyncio.FIRST_COMPLETED
            )
            for t in done:
                if t is not stopping and not t.cancelled() and t.exception() is not None:
                    crashed = t.exception()
                    log_event(
                        "worker_crashed",
                        logging.ERROR,
                        loop=t.get_coro().__qualname__,  # type: ignore[union-attr]
                        error=f"{type(crashed).__name__}: {crashed}",
                        detail="stopping: running jobs get the grace period, the rest is "
                        "handed back",
                    )
                    break
        finally:
            stopping.cancel()
            self.stop()
            await self._shutdown()
        if crashed is not None:
            raise crashed

    async def _shutdown(self) -> None:
        fetch, flush, renew, *rest = self._tasks
        await _cancel_and_wait([fetch, *rest])
        grace = self.settings.shutdown_grace_ms / 1000
        # Entries fetched but not started stay in our PEL: the hand-back below returns them.
        self.state.executing -= len(self._pool_runners.close())
        active = list(self._pool_runners.busy)
        if active:
            log_event("draining", running=len(active), grace_s=grace)
            still = await self._grace(active, grace)
            for t in still:
                t.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        await self._pool_runners.aclose()
        await self._drain_completions()
        handed = await self._hand_back()
        await _cancel_and_wait([renew, flush])
        await maintenance.unregister(self.state)
        self._threads.close()
        await self.client.aclose()
        log_event(
            "worker_stopped",
            consumer=self.consumer,
            processed=self.state.processed,
            failed=self.state.failed,
            handed_back=handed,
        )

    async def _hand_back(self) -> int:
        """Hand what still runs back to the queue, retried through a short outage but not
        for ever: past ``HAND_BACK_TIMEOUT_S`` the entries are left in our PEL and other
        workers reclaim them after the lease. Nothing is lost either way, and a SIGTERM
        never waits for Redis to come back."""
        try:
            handed: int = await asyncio.wait_for(
                retrying("hand_back", maintenance.hand_back, self.state), HAND_BACK_TIMEOUT_S
            )
        except TimeoutError:
            log_event(
                "hand_back_abandoned",
                WARN,
                running=len(self.running),
                detail="Redis unreachable: the entries stay pending and are reclaimed "
                "after the lease",
            )
            return 0
        return handed

    async def _grace(
        self, active: list[asyncio.Task[None]], grace: float
    ) -> set[asyncio.Task[None]]:
        """Wait for ``active`` to finish, at most ``grace`` seconds or until told to hurry;
        return the tasks still running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        pending: set[asyncio.Task[None]] = set(active)
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            while pending and not self._hurry.is_set():
                left = deadline - loop.time()
                if left <= 0:
                    break
                done, _ = await asyncio.wait(
                    {*pending, hurry}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
        finally:
            hurry.cancel()
        return pending

    async def _drain_completions(self) -> None:
        # Wait for queued completions AND for a batch already in flight: cancelling the
        # flush loop mid-call would drop the reply (no log, no count) or, worse, let the
        # hand-back race the completion script and re-queue a job that just finished.
        deadline = time.monotonic() + 10
        while (self._pending.done or self._flush_busy) and time.monotonic() < deadline:
            self._flushed.clear()
            self._flush_wake.set()
            try:
                await asyncio.wait_for(self._flushed.wait(), timeout=1.0)
            except TimeoutError:
                continue

    async def _start(self) -> bool:
        """:meth:`startup`, retried through a Redis outage until it works (True) or the
        worker is told to stop (False): a SIGTERM must not wait for Redis to come back."""
        backoff = Backoff()
        while not self.stopping:
            try:
                await self.startup()
                return True
            except OUTAGE as exc:
                await backoff.wait("startup", exc, self.state.stopping)  # a stop cuts it short
        return False

    # ------------------------------------------------------------------ fetch

    async def _fetch_loop(self) -> None:
        """Read new entries (XREADGROUP, COUNT = free slots) and, every reclaim period,
        sweep for stalled ones: both in this one loop, so they never promise the same free
        slots twice (see :func:`maintenance.reclaim_pass`). Queues with flow jobs held are
        served by takes (:meth:`_take`) in the same loop, for the same reason."""
        st = self.state
        backoff = Backoff()
        cursors: dict[str, str] = {}
        period = maintenance.reclaim_period(st)
        next_reclaim = 0.0  # at once: a fresh worker first picks up a dead one's jobs
        flow = _FlowView(self.keys)
        while not self.stopping:
            free = st.free
            if free <= 0:
                st.slot.clear()
                await st.slot.wait()
                continue
            live = [k for k in self.keys if k.queue not in st.paused]
            if not live:
                # Every queue is paused: wait for a resume (seen by the pause watch).
                st.unpaused.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(st.unpaused.wait(), timeout=1.0)
                continue
            try:
                now = time.monotonic()
                wait = next_reclaim - now
                if wait <= 0:
                    next_reclaim = now + period
                    await maintenance.reclaim_pass(st, cursors)
                    if st.flow_missing:
                        await self.ensure_groups()
                    continue
                if flow.due(live, now):
                    free -= await self._take(flow, live, free, now)
                    backoff.reset()
                    if free <= 0:
                        continue
                    now = time.monotonic()
                until = min(wait, flow.next_in(live, now))
                block = None if until <= 0 else max(1, min(self.block_ms, int(until * 1000) + 1))
                lanes = flow.lanes(live, st.flow_missing)
                if self._cluster:
                    got = await self._read_by_slot(lanes, free, block)
                else:
                    got = await self.driver.run(
                        wops.fetch(lanes, self.consumer, _per_stream(lanes, free), block)
                    )
                backoff.reset()
            except OUTAGE as exc:
                await backoff.wait("fetch", exc)
                continue
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the server lost our group (FLUSHALL, new server)
                    await retrying("ensure_groups", self.ensure_groups)
                    continue
                raise
            wakeups = flow.read(live, got, timed_out=not got and block is not None)
            for f in got[: len(got) - wakeups] if wakeups else got:
                self.start(f)

    async def _read_by_slot(
        self, lanes: list[QueueKeys], free: int, block: int | None
    ) -> list[wops.Fetched]:
        """A read on a Redis Cluster, where one XREADGROUP cannot span hash slots: one read
        per slot group (each queue or partition is one), without blocking, starting from
        the next group in turn, until the free slots are spoken for. A group whose read met
        an outage (its master down) is skipped for ``GROUP_DOWN_S`` while the others go on.
        When none had anything, one short blocking read on the next group in turn. No read
        left in flight; idle queues in other slots are seen within ``CLUSTER_IDLE_BLOCK_MS``."""
        groups = _slot_groups(lanes)
        if len(groups) == 1:
            count = _per_stream(lanes, free)
            return await self.driver.run(wops.fetch(lanes, self.consumer, count, block))
        self._turn = (self._turn + 1) % len(groups)
        order = groups[self._turn :] + groups[: self._turn]
        now = time.monotonic()
        # A group whose master is down is left alone for a moment: each read of it costs a
        # failed connection and the cluster client's pause, which would slow the live ones.
        up = [g for g in order if self._group_down.get(g[0].stream, 0.0) <= now]
        order = up or order  # all down: read anyway, so the outage reaches the backoff
        got: list[wops.Fetched] = []
        left = free
        failure: BaseException | None = None
        for group in order:
            if left <= 0:
                break
            # The first group in turn may fill every free slot: a complete call per
            # partition then covers a full batch (asking each for a sixth of the slots made
            # the batches, and so the Redis calls per job, six times smaller). The turn
            # moves on every read, so over a few reads each partition gets its share.
            count = _per_stream(group, left)
            try:
                part = await self.driver.run(wops.fetch(group, self.consumer, count, None))
            except OUTAGE as exc:
                # One master down (a partition's failover): the others go on; what they
                # delivered is in our PEL already (dropped, it would wait for a reclaim).
                self._group_down[group[0].stream] = time.monotonic() + GROUP_DOWN_S
                failure = exc
                continue
            self._group_down.pop(group[0].stream, None)
            got += part
            left -= sum(1 for f in part if not f.wakeup)
        if not got and failure is not None:
            raise failure
        if not got and block is not None:
            short = min(block, CLUSTER_IDLE_BLOCK_MS)
            first = up[0] if up else groups[self._turn]
            count = _per_stream(first, free)
            got = await self.driver.run(wops.fetch(first, self.consumer, count, short))
        # Wake-ups last, as a single read returns them (see _FlowView.read).
        return [f for f in got if not f.wakeup] + [f for f in got if f.wakeup]

    async def _take(self, flow: _FlowView, live: list[QueueKeys], free: int, now: float) -> int:
        """Take held flow jobs of the queues whose turn it is; returns how many started."""
        started = 0
        for k in live:
            if not k.is_home or free - started <= 0 or not flow.due_queue(k.queue, now):
                continue
            n = flow.share(k.queue, free - started)
            try:
                taken = await self.driver.run(
                    wops.take(k, self.consumer, n, flow.wakeups.pop(k.queue, []))
                )
            except QueueFullError:
                # Redis is full: a take writes, so it waits; the plain path drains meanwhile.
                flow.later(k.queue, time.monotonic() + 1.0)
                continue
            flow.took(k.queue, taken, time.monotonic())
            for f in taken.fetched:
                self.start(f)
            started += len(taken.fetched)
        return started

    def start(self, f: wops.Fetched) -> None:
        """Begin running one delivered (or reclaimed) entry: a runner of the pool takes it."""
        e = f.entry
        st = self.state
        run = None
        if e is not None:
            # Registered now, not when a runner starts it: its lease is renewed from here.
            # keys_of(f), the common case (a home's plain lane) first: once per job.
            keys = st.by_queue[f.queue] if not (f.lane or f.tag) else st.keys_of(f)
            run = Running(keys, e.job_id, e.entry_id, e.name, e.attempt, local_ms())
            st.running[(keys.stream, e.entry_id)] = run
        st.executing += 1
        self._pool_runners.submit((f, run))

    async def _run_fetched(self, item: tuple[wops.Fetched, Running | None]) -> None:
        f, run = item
        e = f.entry
        if e is None or run is None:
            await self._dead_undecodable(self.state.keys_of(f), f)
            return
        if self.running.get((run.keys.stream, e.entry_id)) is not run:
            return  # handed back meanwhile (shutdown): not ours to run any more
        await self._execute(run, e.data, e.options, e.key, e.priority)

    def _release_slot(self) -> None:
        st = self.state
        st.executing -= 1
        # Fetch loop first, flush loop second: the next XREADGROUP then reaches Redis
        # before the completion batch, so the runners work on the next batch while Redis
        # records the last one, instead of waiting behind it.
        st.slot.set()
        if self._pending.done:
            self._flush_wake.set()

    # ------------------------------------------------------------------ execute

    async def _execute(
        self,
        run: Running,
        raw_data: bytes,
        raw_opts: bytes,
        key: str | None = None,
        priority: int = 0,
    ) -> None:
        if _log.isEnabledFor(logging.INFO):  # checked first: the fields cost a dict per job
            log_event(
                "processing",
                queue=run.keys.queue,
                job_id=run.job_id,
                name=run.name,
                attempt=run.attempt,
            )
        reg = self.app.handlers.get(run.name)
        try:
            opts = decode_options(raw_opts)
            data = orjson.loads(raw_data)
        except (ValueError, orjson.JSONDecodeError) as exc:
            error = f"undecodable payload or options: {exc}"
            await self._fail(Failure(run, error, "undecodable", dead_now=True))
            return
        if reg is None:
            error = f"no handler registered for job name {run.name!r}"
            await self._fail(Failure(run, error, "no-handler", options=opts, dead_now=True))
            return
        if reg.has_defaults:
            opts = reg.options(raw_opts, opts)
        job = Job(
            run.keys.queue,
            run.job_id,
            run.name,
            data,
            JobState.ACTIVE,
            run.attempt,
            opts,
            started_at_ms=run.started_ms,
            worker=self.consumer,
            entry_id=run.entry_id,
            key=key,
            priority=priority,
        )
        t0 = time.perf_counter()
        ran = False
        try:
            if reg.is_async and not opts.timeout_ms:
                result = await reg.fn(job)  # the common case, without a coroutine of ours
            else:
                result = await self._invoke(reg, job, run, opts.timeout_ms)
            ran = True
            raw_result = encode_payload(
                result, self.settings.max_payload_bytes, what="result", job=run.job_id
            )
        except asyncio.CancelledError:
            raise  # shutdown past the grace: the entry is handed back
        except _TimedOut:
            error = f"timed out after {opts.timeout_ms / 1000} s"
            await self._fail(Failure(run, error, "timeout", options=opts, started=t0))
            return
        except PayloadError as exc:
            if ran:
                # The handler did its work; its result cannot be stored (not JSON, NaN, too
                # large). Running it again would repeat its side effects for the same
                # outcome: dead now, replayable from the DLQ once the handler is fixed.
                f = Failure(run, str(exc), "bad-result", options=opts, dead_now=True, started=t0)
                await self._fail(f)
            else:  # raised by the handler itself (e.g. a bad payload it enqueued)
                tb = traceback.format_exc()
                await self._fail(Failure(run, str(exc), traceback=tb, options=opts, started=t0))
            return
        except PermanentJobError as exc:
            error, tb = f"PermanentJobError: {exc}", traceback.format_exc()
            await self._fail(Failure(run, error, "permanent", tb, opts, dead_now=True, started=t0))
            return
        except RateLimited as exc:
            await self._rate_limited(run, exc)
            return
        except RetryJobError as exc:
            # The handler knows when a retry can work (a Retry-After): its delay, not the
            # backoff's; the attempt still counts, so a job that never gets through ends.
            error = f"RetryJobError: {exc} (retry after {exc.delay:g} s)"
            delay = min(int(exc.delay * 1000), MAX_BACKOFF_MS)
            tb = traceback.format_exc()
            await self._fail(
                Failure(run, error, traceback=tb, options=opts, retry_after_ms=delay, started=t0)
            )
            return
        except Exception as exc:
            error, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
            await self._fail(Failure(run, error, traceback=tb, options=opts, started=t0))
            return
        took = time.perf_counter() - t0
        done = wops.Done(
            run.job_id, run.entry_id, run.attempt, raw_result, run.started_ms, took * 1000
        )
        self._pending.done.append((done, run, took))
        # The flush loop is woken by _release_slot, after the fetch loop (see there).

    async def _invoke(self, reg: Registered, job: Job, run: Running, timeout_ms: int) -> Any:
        """Run the handler under the job's time limit; :class:`_TimedOut` when it expires
        (a ``TimeoutError`` of the handler's own is an ordinary failure)."""
        if not reg.is_async:
            return await self._run_sync(reg, job, run, timeout_ms)
        if not timeout_ms:
            return await reg.fn(job)
        # asyncio.timeout, not wait_for: wait_for runs the handler in a task of its own.
        limit = asyncio.timeout(timeout_ms / 1000)
        try:
            async with limit:
                return await reg.fn(job)
        except TimeoutError:
            if limit.expired():
                raise _TimedOut from None
            raise

    async def _run_sync(self, reg: Registered, job: Job, run: Running, timeout_ms: int) -> Any:
        """Run a sync handler on a free thread; its time limit starts when it starts. One
        that outlives the limit raises :class:`_TimedOut` and becomes *stuck*: its
        thread runs on and keeps a slot until it returns (see :mod:`.threads`)."""
        started, done = self._threads.submit(reg.fn, job, signal_start=timeout_ms > 0)
        if started is None:
            return await done  # a cancellation (shutdown) cancels ``done``: it is dropped
        try:
            await started
            t_start = time.monotonic()
            await asyncio.wait((done,), timeout=timeout_ms / 1000)
        except asyncio.CancelledError:
            done.cancel()
            raise
        if done.done():
            return done.result()
        stuck = StuckHandler(run.keys.queue, run.job_id, run.name, timeout_ms, t_start)
        self.stuck.append(stuck)
        self.state.executing += 1  # released by _unstuck when the thread returns
        log_event(
            "handler_stuck",
            WARN,
            queue=run.keys.queue,
            job_id=run.job_id,
            name=run.name,
            attempt=run.attempt,
            timeout_ms=timeout_ms,
            stuck=len(self.stuck),
            concurrency=self.concurrency,
            detail="a sync handler outlived its time limit: the job fails as timed out, its "
            "thread runs on and holds a slot until the handler returns",
        )
        done.add_done_callback(lambda f: self._unstuck(stuck, f))
        raise _TimedOut

    def _unstuck(self, stuck: StuckHandler, done: asyncio.Future[Any]) -> None:
        with contextlib.suppress(ValueError):
            self.stuck.remove(stuck)
        self.state.executing -= 1
        self.state.slot.set()
        failed = not done.cancelled() and done.exception() is not None  # retrieved: no warning
        log_event(
            "handler_unstuck",
            WARN,
            queue=stuck.queue,
            job_id=stuck.job_id,
            name=stuck.name,
            ran_ms=int((time.monotonic() - stuck.started) * 1000),
            outcome="raised" if failed else "returned",
            detail="the late result is discarded: the attempt was already recorded as timed out",
        )

    async def _fail(self, f: Failure) -> None:
        """Record a failed attempt: retried after its delay, or dead (see :class:`Failure`)."""
        run = f.run
        retry_delay_ms = f.retry_delay_ms()
        call = wops.fail(
            run.keys,
            self.consumer,
            run.job_id,
            run.entry_id,
            run.attempt,
            f.error,
            f.traceback,
            retry_delay_ms,
            f.reason if retry_delay_ms < 0 else "",
            run.started_ms,
            self.settings.events_maxlen,
            skip_owner_check=f.skip_owner_check,
        )
        out: wops.FailOutcome = await retrying("fail", self.driver.run, call)
        self.running.pop((run.keys.stream, run.entry_id), None)
        duration = round((time.perf_counter() - f.started) * 1000, 3) if f.started else None
        common = dict(
            queue=run.keys.queue,
            job_id=run.job_id,
            name=run.name,
            attempt=run.attempt,
            duration_ms=duration,
            error=f.error,
        )
        self.state.failed += 1
        if out.fenced:
            log_event(
                "fenced",
                WARN,
                **common,
                detail="lease lost: another worker owns this job now; result refused",
            )
        elif out.state == "delayed":
            log_event("retrying", WARN, **common, retry_in_ms=retry_delay_ms, due_ms=out.due_ms)
        else:
            log_event("failed", WARN, **common)
            log_event("dead", logging.ERROR, **common, reason=f.reason)

    async def _rate_limited(self, run: Running, exc: RateLimited) -> None:
        """The handler said "too early": the job waits without using an attempt."""
        after_ms = min(int(exc.retry_after * 1000), MAX_BACKOFF_MS)
        call = wops.hold(run.keys, self.consumer, run.job_id, run.entry_id, after_ms, exc.key_wide)
        out: wops.FailOutcome = await retrying("hold", self.driver.run, call)
        self.running.pop((run.keys.stream, run.entry_id), None)
        log_event(
            "fenced" if out.fenced else "rate_limited",
            WARN,
            queue=run.keys.queue,
            job_id=run.job_id,
            name=run.name,
            attempt=run.attempt,
            retry_in_ms=after_ms,
            key_wide=exc.key_wide,
            detail=str(exc) or None,
        )

    async def _dead_undecodable(self, keys: QueueKeys, f: wops.Fetched) -> None:
        """An entry the worker cannot decode goes to the DLQ with the reason; keep going.

        When it names a job whose record points at this very entry, that job is marked
        dead. Otherwise (no id, or the id of a record that does not own this entry: a
        foreign or forged entry) it is moved to the DLQ as it was, and no job record is
        touched: a stray entry must not overwrite, say, a completed job's record.
        """
        reason = f.error or "undecodable entry"
        run = self.driver.run
        if f.raw_job_id:
            owner: str | None = await retrying(
                "dead_entry", run, wops.entry_owner(keys, f.raw_job_id)
            )
            if owner == f.entry_id:
                held = Running(keys, f.raw_job_id, f.entry_id, "", 1, local_ms())
                await self._fail(Failure(held, reason, "undecodable", dead_now=True))
                return
        fields = await run(wops.entry_fields(keys, f.entry_id))
        await retrying("dead_entry", run, wops.dead_entry(keys, f.entry_id, fields, reason))
        await retrying("ack_drop", run, wops.ack_drop(keys, f.entry_id))
        log_event("dead", logging.ERROR, queue=keys.queue, entry_id=f.entry_id, reason=reason)

    # ------------------------------------------------------------------ flush

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            batch, self._pending.done = self._pending.done, []
            if not batch:
                self._flushed.set()
                continue
            self._flush_busy = True
            try:
                await self._flush_batch(batch)
            finally:
                self._flush_busy = False
            self._flushed.set()

    async def _flush_batch(self, batch: list[tuple[wops.Done, Running, float]]) -> None:
        # By stream name, not by QueueKeys: a str caches its hash, a dataclass computes it
        # from every field, once per job here.
        by_lane: dict[str, list[tuple[wops.Done, Running, float]]] = {}
        for item in batch:
            by_lane.setdefault(item[1].keys.stream, []).append(item)
        failed_back: list[tuple[wops.Done, Running, float]] = []
        last: BaseException | None = None
        for items in by_lane.values():
            call = wops.complete(
                items[0][1].keys,
                self.consumer,
                [d for d, _, _ in items],
                self.settings.events_maxlen,
            )
            try:
                oks = await self.driver.run(call)
            except OUTAGE as exc:
                failed_back += items
                last = exc
                continue
            self._after_complete(items, oks)
        if failed_back and last is not None:
            # Keep them: the entries stay in our PEL, so nothing is lost; retry shortly.
            self._pending.done = failed_back + self._pending.done
            await self._flush_backoff.wait("complete", last)
            self._flush_wake.set()
        else:
            self._flush_backoff.reset()

    def _after_complete(
        self, items: list[tuple[wops.Done, Running, float]], oks: list[bool]
    ) -> None:
        info = logging.getLogger("streamq").isEnabledFor(logging.INFO)
        for (d, run, took), ok in zip(items, oks, strict=True):
            self.running.pop((run.keys.stream, d.entry_id), None)
            if ok:
                self.state.processed += 1
                if info:
                    log_event(
                        "completed",
                        queue=run.keys.queue,
                        job_id=run.job_id,
                        name=run.name,
                        attempt=run.attempt,
                        duration_ms=round(took * 1000, 3),
                    )
            else:
                log_event(
                    "fenced",
                    WARN,
                    queue=run.keys.queue,
                    job_id=run.job_id,
                    name=run.name,
                    attempt=run.attempt,
                    detail="lease lost: another worker owns this job now; result refused",
                )
