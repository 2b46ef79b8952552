"""What a worker's loops share, and the values they pass each other.

The job path (:mod:`streamq.worker.runner`) and the maintenance loops
(:mod:`streamq.worker.maintenance`) both read and change one :class:`WorkerState`: the
queues, the connection, the jobs held, the slot count. Maintenance hands reclaimed entries
and failures to the job path through the state's ``start`` and ``fail`` hooks, so neither
module imports the other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from streamq._driver import AsyncDriver
from streamq.config import Settings
from streamq.job import JobOptions
from streamq.protocol.keys import QueueKeys
from streamq.protocol.worker import Fetched
from streamq.worker.threads import StuckHandler

__all__ = ["Failure", "Running", "WorkerState", "local_ms"]

_DEFAULT_OPTIONS = JobOptions()


def local_ms() -> int:
    """This host's clock in ms: only for started/duration figures shown to people, never
    for due times (those use the Redis clock)."""
    return int(time.time() * 1000)


@dataclass(slots=True)
class Running:
    """A job this worker holds: its entry is in our PEL until finished or handed back."""

    keys: QueueKeys
    job_id: str
    entry_id: str
    name: str
    attempt: int
    started_ms: int
    lost: bool = False


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt to record.

    Whether it is retried: never when ``dead_now`` (permanent, undecodable, no handler,
    stalled...) or once the attempts pass ``options.max_retries``; otherwise after
    ``retry_after_ms`` when the handler named a delay (``RetryJobError``), else after the
    backoff's delay. ``reason`` is the dead-letter reason if it ends dead.
    """

    run: Running
    error: str
    reason: str = "failed"
    traceback: str = ""
    options: JobOptions = _DEFAULT_OPTIONS
    dead_now: bool = False
    retry_after_ms: int | None = None
    #: ``time.perf_counter()`` when the handler started (for the logged duration).
    started: float | None = None
    #: The entry was claimed by this very call (a deleted entry's job): no PEL check.
    skip_owner_check: bool = False

    def retry_delay_ms(self) -> int:
        """Milliseconds until the retry, or -1 for dead now."""
        if self.dead_now or self.run.attempt > self.options.max_retries:
            return -1
        if self.retry_after_ms is not None:
            return self.retry_after_ms
        return self.options.backoff.delay_for(self.run.attempt)


def _no_start(f: Fetched) -> None:
    raise RuntimeError("the worker's job path is not attached")


async def _no_fail(f: Failure) -> None:
    raise RuntimeError("the worker's job path is not attached")


def _no_stop() -> None:
    raise RuntimeError("the worker is not attached")


@dataclass(eq=False)
class WorkerState:
    """A worker's shared state: set up by :class:`~streamq.worker.runner.Worker`."""

    settings: Settings
    keys: list[QueueKeys]
    consumer: str
    driver: AsyncDriver
    concurrency: int
    promote_poll_ms: int
    by_queue: dict[str, QueueKeys] = field(init=False)
    #: Every queue's two lanes: the plain stream and the flow lane (kstream).
    lanes: list[QueueKeys] = field(init=False)
    #: (queue, lane, partition tag) -> that lane's keys.
    by_lane: dict[tuple[str, str, str], QueueKeys] = field(init=False)
    #: Queues whose flow lane (kstream and its group) could not be created (a full Redis).
    flow_missing: set[str] = field(default_factory=set)
    #: (stream, entry id) -> job, from delivery until its result is recorded or it is
    #: handed back. The stream too: ids are unique per stream only (two queues, a queue's
    #: partitions or its flow lane can each have an entry ``T-0`` at once).
    running: dict[tuple[str, str], Running] = field(default_factory=dict)
    #: Slots taken: entries queued for a runner or running, and stuck sync handlers.
    executing: int = 0
    #: Queues paused by an operator (``sq:{Q}:paused``): not fetched nor reclaimed from.
    paused: set[str] = field(default_factory=set)
    #: Sync handlers still running past their time limit; each holds a slot.
    stuck: list[StuckHandler] = field(default_factory=list)
    processed: int = 0
    failed: int = 0
    unpaused: asyncio.Event = field(default_factory=asyncio.Event)
    slot: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # The job path's hooks (attached by the Worker).
    start: Callable[[Fetched], None] = _no_start
    fail: Callable[[Failure], Awaitable[None]] = _no_fail
    stop: Callable[[], None] = _no_stop

    def __post_init__(self) -> None:
        self.by_queue = {k.queue: k for k in self.keys}
        self.lanes = [*self.keys, *(k.flow_lane() for k in self.keys if k.is_home)]
        self.by_lane = {(k.queue, k.lane, k.tag): k for k in self.lanes}

    def keys_of(self, f: Fetched) -> QueueKeys:
        """The keys of the lane (and partition) a delivered entry came from."""
        return self.by_lane[(f.queue, f.lane, f.tag)]

    @property
    def homes(self) -> list[QueueKeys]:
        """The home keys of each queue (flow control, schedules and flags live there)."""
        return [k for k in self.keys if k.is_home]

    def add_partitions(self, found: list[QueueKeys]) -> list[QueueKeys]:
        """Consume the partitions of ``found`` not consumed yet (a queue's partition count
        grew); returns those added. ``keys`` is the list the worker reads from."""
        have = {(k.queue, k.tag) for k in self.keys}
        added = [k for k in found if (k.queue, k.tag) not in have]
        for k in added:
            self.keys.append(k)
            self.lanes.append(k)
            self.by_lane[(k.queue, k.lane, k.tag)] = k
        return added

    @property
    def free(self) -> int:
        """Slots free for new entries."""
        return self.concurrency - self.executing
