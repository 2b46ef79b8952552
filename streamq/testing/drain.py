"""Run an app's handlers in-process until its queues are idle: the real
:class:`~streamq.worker.Worker` against the real server, stopped by a watch of our own.

Why not ``Worker.run(burst=True)``: a burst worker waits for *every* delayed job, so one job
scheduled an hour ahead would hold a test for an hour. Here "idle" means nothing waiting,
nothing running and nothing delayed that is due now; jobs due later are left alone unless
``run_delayed`` makes them due (retries included) each time the queues go quiet.

Idleness is read from Redis, where every transition is one atomic script: an entry is in
the group's PEL (``active``) from the fetch until its completion or failure is recorded, and a
handler's own enqueues land before its completion. Two consecutive idle readings are needed,
so a job that a handler on one queue enqueues into another (read a moment earlier) is seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from streamq import connection
from streamq._driver import AsyncDriver
from streamq.config import Settings
from streamq.errors import ConfigError, WaitTimeoutError
from streamq.protocol import queues as queue_ops
from streamq.protocol import testing as tops
from streamq.protocol import worker as worker_ops
from streamq.protocol.calls import server_time
from streamq.protocol.keys import QueueKeys
from streamq.protocol.limits import flow_status
from streamq.results import QueueStatus
from streamq.worker.app import App
from streamq.worker.runner import Worker

__all__ = ["DrainResult", "DrainTimeoutError", "drain"]

#: How often the watch reads the queues' state (seconds).
POLL_S = 0.02
#: Consecutive idle readings before the drain ends.
IDLE_READINGS = 2


class DrainTimeoutError(WaitTimeoutError):
    """The queues were not idle within the drain's timeout; the message says what was
    still waiting, running or delayed."""


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What one drain did: jobs completed, failed attempts scheduled for a retry, and jobs
    dead-lettered (retries exhausted, :class:`~streamq.PermanentJobError`, no handler...).

    Compare it whole: ``assert tester.drain(app) == DrainResult(completed=2, dead=1)``.
    ``made_due`` (delayed jobs and retries made due by ``run_delayed``) is informative and
    left out of comparisons.
    """

    completed: int = 0
    retried: int = 0
    dead: int = 0
    made_due: int = field(default=0, compare=False)

    @property
    def failed(self) -> int:
        """Failed attempts: retried ones plus dead-lettered ones."""
        return self.retried + self.dead


@dataclass(frozen=True, slots=True)
class _Reading:
    status: list[QueueStatus]
    due_now: list[int]
    #: Per queue: flow jobs that may start now (their key can run) plus running ones.
    flow_now: list[int]

    @property
    def idle(self) -> bool:
        plain = all(s.waiting == 0 and s.active == 0 for s in self.status)
        return plain and not any(self.due_now) and not any(self.flow_now)

    @property
    def delayed(self) -> int:
        return sum(s.delayed for s in self.status)


async def _read(driver: AsyncDriver, keys: Sequence[QueueKeys]) -> _Reading:
    calls = [c for k in keys for c in (queue_ops.status(k), worker_ops.due(k, 1))]
    replies = await driver.run(calls)
    # Held jobs of a key waiting for a rate window count like delayed jobs not due yet.
    flows = [await driver.run(flow_status(k, top=1)) for k in keys]
    return _Reading(
        list(replies[0::2]),
        [len(d.ids) for d in replies[1::2]],
        [(f.held if f.keys_ready else 0) + f.running for f in flows],
    )


def _result(before: Sequence[QueueStatus], after: Sequence[QueueStatus], made: int) -> DrainResult:
    pairs = list(zip(after, before, strict=True))
    return DrainResult(
        completed=sum(a.completed_total - b.completed_total for a, b in pairs),
        retried=sum(a.retried_total - b.retried_total for a, b in pairs),
        dead=sum(a.failed_total - b.failed_total for a, b in pairs),
        made_due=made,
    )


async def _describe(driver: AsyncDriver, keys: Sequence[QueueKeys], worker: Worker) -> str:
    reading = await _read(driver, keys)
    now = await driver.run(server_time())
    parts = []
    for k, s, held in zip(keys, reading.status, reading.flow_now, strict=True):
        due = await driver.run(tops.next_due(k))
        nxt = ""
        if due is not None:
            due_in = max(due - now, 0) / 1000
            nxt = f" (next due in {due_in:.1f} s)"
        parts.append(
            f"{k.queue!r}: {s.waiting} waiting, {s.active} running, {s.delayed} delayed{nxt}"
            + (f", {held} flow jobs held or running" if held else "")
        )
    running = sorted(
        {f"{r.name} (job {r.job_id}, attempt {r.attempt})" for r in worker.running.values()}
    )
    text = "; ".join(parts)
    if running:
        text += "; still running here: " + ", ".join(running)
    return text


async def drain(
    app: App,
    queues: Sequence[str],
    settings: Settings,
    *,
    timeout: float = 10.0,
    run_delayed: bool = False,
    concurrency: int = 1,
) -> DrainResult:
    """Run ``app``'s handlers for ``queues`` until they are idle (see the module doc).

    Raises :class:`DrainTimeoutError` after ``timeout`` seconds (the worker is stopped first,
    running jobs handed back), and re-raises whatever ended the worker early.
    """
    if not (isinstance(timeout, int | float) and timeout > 0):
        raise ConfigError(f"drain timeout must be a number of seconds > 0, got {timeout!r}")
    if not queues:
        raise ConfigError("drain needs at least one queue")
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigError(f"drain concurrency must be an int >= 1, got {concurrency!r}")
    keys = [QueueKeys(q, settings.prefix) for q in queues]
    client = connection.async_client(settings.redis, retry_attempts=1)
    driver = AsyncDriver(client, settings.redis.describe())
    try:
        before = await driver.run([queue_ops.status(k) for k in keys])
        worker = Worker(
            app,
            list(queues),
            settings=settings,
            concurrency=concurrency,
            block_ms=100,
            promote_poll_ms=20,
        )
        made = await _watch(worker, driver, keys, timeout, run_delayed)
        after = await driver.run([queue_ops.status(k) for k in keys])
        return _result(before, after, made)
    finally:
        await client.aclose()


async def _watch(
    worker: Worker,
    driver: AsyncDriver,
    keys: Sequence[QueueKeys],
    timeout: float,
    run_delayed: bool,
) -> int:
    """Run ``worker`` until the queues are idle; returns how many jobs were made due."""
    task = asyncio.create_task(worker.run())
    try:
        made = await _until_idle(worker, task, driver, keys, timeout, run_delayed)
    except BaseException:
        await _stop(worker, task)
        if not task.cancelled():
            task.exception()  # retrieved: what we raise says enough
        raise
    await _stop(worker, task)
    task.result()  # a failure during the shutdown itself
    return made


async def _stop(worker: Worker, task: asyncio.Task[None]) -> None:
    if not task.done():
        worker.stop(hurry=True)  # nothing runs after an idle reading; after a timeout, hand back
    await asyncio.wait({task})


async def _until_idle(
    worker: Worker,
    task: asyncio.Task[None],
    driver: AsyncDriver,
    keys: Sequence[QueueKeys],
    timeout: float,
    run_delayed: bool,
) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    made = idle = 0
    while True:
        await asyncio.wait({task}, timeout=POLL_S)
        if task.done():
            task.result()  # the worker ended by itself: it crashed, raise why
            raise RuntimeError("the worker stopped before the queues were idle")
        if loop.time() >= deadline:
            what = await _describe(driver, keys, worker)
            raise DrainTimeoutError(f"queues not idle after {timeout} s: {what}")
        reading = await _read(driver, keys)
        if worker.running or not reading.idle:
            idle = 0
            continue
        if run_delayed and reading.delayed:
            for k in keys:
                made += await driver.run(tops.make_due(k))
            idle = 0
            continue
        idle += 1
        if idle >= IDLE_READINGS:
            return made
