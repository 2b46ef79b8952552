"""Operating queues: discovery, status, job listings, the DLQ, pause/resume, flow-control
limits and the live-worker registry. The CLI and the web dashboard share this module.

Every operation is written once, without I/O, in :mod:`streamq.protocol` (a
:class:`~streamq.protocol.calls.Call` or a flow of them). :class:`Admin` runs them on the
sync driver and :class:`AsyncAdmin` on the asyncio one; nothing else happens here. A test
checks that both classes have the same methods with the same signatures.

Ages (oldest waiting job, heartbeat age) are measured against the Redis clock (``TIME``),
the one clock streamq uses for due times, not against the local clock of the caller.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TypeVar

from streamq import connection
from streamq._driver import AsyncDriver, SyncDriver
from streamq.config import Settings
from streamq.errors import ConfigError
from streamq.job import Job
from streamq.limits import Limit, period_ms_of
from streamq.protocol import limits as limit_ops
from streamq.protocol import partitions as partition_ops
from streamq.protocol import queues as queue_ops
from streamq.protocol import routed
from streamq.protocol import schedules as schedule_ops
from streamq.protocol.calls import Flow, ping, server_time
from streamq.protocol.keys import QueueKeys, validate_queue_name
from streamq.protocol.partitions import PartitionMeta
from streamq.protocol.queues import LIST_STATES, LIVE_WINDOW_MS, ListState, discover
from streamq.protocol.schedules import Schedule
from streamq.results import DeadEntry, FlowStatus, JobEntry, QueueInfo, WorkerInfo

__all__ = [
    "LIST_STATES",
    "LIVE_WINDOW_MS",
    "Admin",
    "AsyncAdmin",
    "FlowStatus",
    "JobEntry",
    "ListState",
    "QueueInfo",
    "WorkerInfo",
    # Kept importable from here (the protocol holds them now).
    "discover",
    "server_time",
]


T = TypeVar("T")


def _renamed(old: str, new: str) -> None:
    warnings.warn(
        f"Admin.{old} is deprecated: use {new} (same arguments)", DeprecationWarning, stacklevel=3
    )


# ---------------------------------------------------------------------------- drivers


class _Base:
    """What both admins share: settings and validated keys (no I/O)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _routed(self, queue: str, op: Callable[[QueueKeys, PartitionMeta], Flow[T]]) -> Flow[T]:
        """``op`` on the queue's home keys and partitions, read fresh (see
        :mod:`streamq.protocol.routed`)."""
        home = self.keys(queue)
        meta: PartitionMeta = yield partition_ops.read_meta(home)
        return (yield from op(home, meta))

    def keys(self, queue: str) -> QueueKeys:
        """The key schema of ``queue`` (ConfigError if the name is invalid)."""
        return QueueKeys(validate_queue_name(queue), self.settings.prefix)

    def _many(self, queues: Sequence[str]) -> list[QueueKeys]:
        return [self.keys(q) for q in queues]

    @staticmethod
    def _limit(
        pattern: str,
        rate: int | None,
        per: float | timedelta | None,
        concurrency: int | None,
        shared: bool,
    ) -> Limit:
        """The :class:`Limit` that :meth:`Admin.set_limit` stores (ConfigError if invalid)."""
        if rate is not None and per is None:
            raise ConfigError(f"limit {pattern!r}: a rate needs per= (seconds or a timedelta)")
        if per is not None and rate is None:
            raise ConfigError(f"limit {pattern!r}: per= needs a rate")
        period = None if per is None else period_ms_of(per)
        return Limit(pattern, rate, period, concurrency, shared)

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
        return self._driver.run(ping())

    def server_time_ms(self) -> int:
        """The Redis clock, in ms since the epoch."""
        return self._driver.run(server_time())

    def queues(self) -> list[str]:
        """Names of every queue under the prefix, sorted."""
        return self._driver.run(queue_ops.discover(self.settings.prefix))

    def status(self, queues: Sequence[str] | None = None) -> list[QueueInfo]:
        """:class:`QueueInfo` of ``queues`` (default: every queue found)."""
        if queues is None:
            return self._driver.run(queue_ops.status_all(self.settings.prefix))
        return self._driver.run(queue_ops.queue_status(self._many(queues)))

    def jobs(self, queue: str, state: str, *, limit: int = 20, offset: int = 0) -> list[JobEntry]:
        """Up to ``limit`` jobs of ``queue`` in ``state`` (one of :data:`LIST_STATES`),
        after skipping ``offset`` (see :func:`list_jobs` for the order)."""
        return self._driver.run(
            self._routed(queue, lambda h, m: routed.list_jobs(h, m, state, limit, offset))
        )

    def get_job(self, queue: str, job_id: str) -> Job | None:
        """The job's full record, or None."""
        return self._driver.run(self._routed(queue, lambda h, m: routed.get_job(h, m, job_id)))

    def job(self, queue: str, job_id: str) -> Job | None:
        """Deprecated alias of :meth:`get_job`."""
        _renamed("job", "get_job")
        return self.get_job(queue, job_id)

    def find_job(self, job_id: str) -> list[Job]:
        """Every record of ``job_id`` in any queue under the prefix (ids are unique per
        queue only, so there may be several), sorted by queue."""
        return self._driver.run(queue_ops.find_job(self.settings.prefix, job_id))

    def known(self, queue: str) -> bool:
        """True when ``queue`` has left any trace in Redis (jobs, DLQ, schedules, workers,
        counters): False for a name nothing ever used, e.g. a typo."""
        return self._driver.run(queue_ops.queue_known(self.keys(queue)))

    def dead_letters(self, queue: str, *, limit: int = 100, after: str = "-") -> list[DeadEntry]:
        """DLQ entries, oldest first, after entry id ``after``."""
        return self._driver.run(
            self._routed(queue, lambda h, m: routed.dead_letters(h, m, limit, after))
        )

    def dead_letter(self, queue: str, ident: str) -> DeadEntry | None:
        """One DLQ entry by entry id or job id, or None."""
        return self._driver.run(self._routed(queue, lambda h, m: routed.find_dead(h, m, ident)))

    def dead_count(self, queue: str) -> int:
        """How many entries the DLQ holds."""
        return self._driver.run(self._routed(queue, routed.dead_count))

    def replay_dead(self, queue: str, ident: str) -> DeadEntry:
        """Replay one DLQ entry (entry id or job id); returns the entry replayed.
        JobNotFoundError if there is none (or another client replayed it first)."""
        return self._driver.run(self._routed(queue, lambda h, m: routed.replay_entry(h, m, ident)))

    def replay_all_dead(self, queue: str, progress: Callable[[int], None] | None = None) -> int:
        """Replay every DLQ entry present now; ``progress(moved_so_far)`` after each batch."""
        return self._driver.run(
            self._routed(queue, lambda h, m: routed.replay_all_dead(h, m, progress))
        )

    def delete_dead(self, queue: str, dead_id: str) -> bool:
        """Delete one DLQ entry by its entry id; False if it was not there."""
        return self._driver.run(self._routed(queue, lambda h, m: routed.delete_dead(h, m, dead_id)))

    def retry_dead(self, queue: str, ident: str) -> DeadEntry:
        """Deprecated alias of :meth:`replay_dead`."""
        _renamed("retry_dead", "replay_dead")
        return self.replay_dead(queue, ident)

    def retry_all_dead(self, queue: str, progress: Callable[[int], None] | None = None) -> int:
        """Deprecated alias of :meth:`replay_all_dead`."""
        _renamed("retry_all_dead", "replay_all_dead")
        return self.replay_all_dead(queue, progress)

    def purge_dead(self, queue: str) -> int:
        """Delete every DLQ entry; returns how many."""
        return self._driver.run(self._routed(queue, routed.purge_dead))

    def pause(self, queue: str) -> bool:
        """Pause ``queue`` (workers stop fetching); False if it was already paused."""
        return self._driver.run(queue_ops.set_paused(self.keys(queue)))

    def resume(self, queue: str) -> bool:
        """Resume ``queue``; False if it was not paused."""
        return self._driver.run(queue_ops.clear_paused(self.keys(queue)))

    def is_paused(self, queue: str) -> bool:
        """True while ``queue`` is paused."""
        return self._driver.run(queue_ops.paused_flag(self.keys(queue)))

    def partitions(self, queue: str) -> PartitionMeta:
        """How many partitions ``queue`` has, and every count it has had."""
        return self._driver.run(partition_ops.read_meta(self.keys(queue)))

    def set_partitions(self, queue: str, count: int) -> PartitionMeta:
        """Spread ``queue`` over ``count`` partitions (1-64; it can only grow): new plain
        jobs go to the new partitions at once, jobs already written stay where they are
        and are still found and consumed (see :mod:`streamq.protocol.partitions`).
        Producers see the count within 5 s, workers within a second."""
        return self._driver.run(partition_ops.set_partitions(self.keys(queue), count))

    def workers(self, queues: Sequence[str] | None = None) -> list[WorkerInfo]:
        """Workers of ``queues`` (default: every queue found), by queue and name."""
        if queues is None:
            return self._driver.run(queue_ops.list_workers_all(self.settings.prefix))
        return self._driver.run(queue_ops.list_workers(self._many(queues)))

    def list_schedules(self, queue: str) -> list[Schedule]:
        """The repeating schedules of ``queue``, soonest first."""
        return self._driver.run(schedule_ops.list_schedules(self.keys(queue)))

    def schedules(self, queue: str) -> list[Schedule]:
        """Deprecated alias of :meth:`list_schedules`."""
        _renamed("schedules", "list_schedules")
        return self.list_schedules(queue)

    def remove_schedule(self, queue: str, key: str) -> bool:
        """Delete a repeating schedule; True when it existed."""
        return self._driver.run(schedule_ops.remove_schedule(self.keys(queue), key))

    def set_limit(
        self,
        queue: str,
        pattern: str,
        *,
        rate: int | None = None,
        per: float | timedelta | None = None,
        concurrency: int | None = None,
        shared: bool = False,
    ) -> Limit:
        """Limit the keyed jobs of ``queue`` whose key matches ``pattern`` (``*`` is any run
        of characters): at most ``rate`` starts per ``per`` (seconds or a timedelta, a
        sliding window on the Redis clock) and/or at most ``concurrency`` running at once
        per key. Each matching key has its own budget, or with ``shared`` all matching keys
        share one (no concurrency then). Replaces the rule of the same pattern and kind;
        keys waiting on the old limits are re-checked at once. ConfigError if invalid."""
        limit = self._limit(pattern, rate, per, concurrency, shared)
        self._driver.run(limit_ops.set_limit(self.keys(queue), limit))
        return limit

    def remove_limit(self, queue: str, pattern: str, *, shared: bool = False) -> bool:
        """Delete the rule of ``pattern`` (the shared one with ``shared``); True when it
        existed. Keys waiting on it are re-checked at once."""
        dropped, _ = self._driver.run(limit_ops.remove_limit(self.keys(queue), pattern, shared))
        return bool(dropped)

    def limits(self, queue: str) -> list[Limit]:
        """The rules of ``queue``, by pattern (each before shared)."""
        return self._driver.run(limit_ops.list_limits(self.keys(queue)))

    def set_flow_mode(self, queue: str, mode: str) -> str:
        """Priorities of ``queue``: ``strict`` (higher first, always) or ``weighted`` (lower
        levels get a share of the turns too); returns the mode. ConfigError otherwise."""
        return self._driver.run(limit_ops.set_mode(self.keys(queue), mode))

    def flow_status(self, queue: str) -> FlowStatus:
        """The flow-control figures of ``queue`` (also in :attr:`QueueInfo.flow`)."""
        return self._driver.run(limit_ops.flow_status(self.keys(queue)))

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
        return await self._driver.run(ping())

    async def server_time_ms(self) -> int:
        """See :meth:`Admin.server_time_ms`."""
        return await self._driver.run(server_time())

    async def queues(self) -> list[str]:
        """See :meth:`Admin.queues`."""
        return await self._driver.run(queue_ops.discover(self.settings.prefix))

    async def status(self, queues: Sequence[str] | None = None) -> list[QueueInfo]:
        """See :meth:`Admin.status`."""
        if queues is None:
            return await self._driver.run(queue_ops.status_all(self.settings.prefix))
        return await self._driver.run(queue_ops.queue_status(self._many(queues)))

    async def jobs(
        self, queue: str, state: str, *, limit: int = 20, offset: int = 0
    ) -> list[JobEntry]:
        """See :meth:`Admin.jobs`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.list_jobs(h, m, state, limit, offset))
        )

    async def get_job(self, queue: str, job_id: str) -> Job | None:
        """See :meth:`Admin.get_job`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.get_job(h, m, job_id))
        )

    async def job(self, queue: str, job_id: str) -> Job | None:
        """Deprecated alias of :meth:`get_job`."""
        _renamed("job", "get_job")
        return await self.get_job(queue, job_id)

    async def find_job(self, job_id: str) -> list[Job]:
        """See :meth:`Admin.find_job`."""
        return await self._driver.run(queue_ops.find_job(self.settings.prefix, job_id))

    async def known(self, queue: str) -> bool:
        """See :meth:`Admin.known`."""
        return await self._driver.run(queue_ops.queue_known(self.keys(queue)))

    async def dead_letters(
        self, queue: str, *, limit: int = 100, after: str = "-"
    ) -> list[DeadEntry]:
        """See :meth:`Admin.dead_letters`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.dead_letters(h, m, limit, after))
        )

    async def dead_letter(self, queue: str, ident: str) -> DeadEntry | None:
        """See :meth:`Admin.dead_letter`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.find_dead(h, m, ident))
        )

    async def dead_count(self, queue: str) -> int:
        """See :meth:`Admin.dead_count`."""
        return await self._driver.run(self._routed(queue, routed.dead_count))

    async def replay_dead(self, queue: str, ident: str) -> DeadEntry:
        """See :meth:`Admin.replay_dead`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.replay_entry(h, m, ident))
        )

    async def replay_all_dead(
        self, queue: str, progress: Callable[[int], None] | None = None
    ) -> int:
        """See :meth:`Admin.replay_all_dead`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.replay_all_dead(h, m, progress))
        )

    async def delete_dead(self, queue: str, dead_id: str) -> bool:
        """See :meth:`Admin.delete_dead`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.delete_dead(h, m, dead_id))
        )

    async def retry_dead(self, queue: str, ident: str) -> DeadEntry:
        """Deprecated alias of :meth:`replay_dead`."""
        _renamed("retry_dead", "replay_dead")
        return await self.replay_dead(queue, ident)

    async def retry_all_dead(
        self, queue: str, progress: Callable[[int], None] | None = None
    ) -> int:
        """Deprecated alias of :meth:`replay_all_dead`."""
        _renamed("retry_all_dead", "replay_all_dead")
        return await self.replay_all_dead(queue, progress)

    async def purge_dead(self, queue: str) -> int:
        """See :meth:`Admin.purge_dead`."""
        return await self._driver.run(self._routed(queue, routed.purge_dead))

    async def pause(self, queue: str) -> bool:
        """See :meth:`Admin.pause`."""
        return await self._driver.run(queue_ops.set_paused(self.keys(queue)))

    async def resume(self, queue: str) -> bool:
        """See :meth:`Admin.resume`."""
        return await self._driver.run(queue_ops.clear_paused(self.keys(queue)))

    async def is_paused(self, queue: str) -> bool:
        """See :meth:`Admin.is_paused`."""
        return await self._driver.run(queue_ops.paused_flag(self.keys(queue)))

    async def partitions(self, queue: str) -> PartitionMeta:
        """See :meth:`Admin.partitions`."""
        return await self._driver.run(partition_ops.read_meta(self.keys(queue)))

    async def set_partitions(self, queue: str, count: int) -> PartitionMeta:
        """See :meth:`Admin.set_partitions`."""
        return await self._driver.run(partition_ops.set_partitions(self.keys(queue), count))

    async def workers(self, queues: Sequence[str] | None = None) -> list[WorkerInfo]:
        """See :meth:`Admin.workers`."""
        if queues is None:
            return await self._driver.run(queue_ops.list_workers_all(self.settings.prefix))
        return await self._driver.run(queue_ops.list_workers(self._many(queues)))

    async def list_schedules(self, queue: str) -> list[Schedule]:
        """See :meth:`Admin.list_schedules`."""
        return await self._driver.run(schedule_ops.list_schedules(self.keys(queue)))

    async def schedules(self, queue: str) -> list[Schedule]:
        """Deprecated alias of :meth:`list_schedules`."""
        _renamed("schedules", "list_schedules")
        return await self.list_schedules(queue)

    async def remove_schedule(self, queue: str, key: str) -> bool:
        """See :meth:`Admin.remove_schedule`."""
        return await self._driver.run(schedule_ops.remove_schedule(self.keys(queue), key))

    async def set_limit(
        self,
        queue: str,
        pattern: str,
        *,
        rate: int | None = None,
        per: float | timedelta | None = None,
        concurrency: int | None = None,
        shared: bool = False,
    ) -> Limit:
        """See :meth:`Admin.set_limit`."""
        limit = self._limit(pattern, rate, per, concurrency, shared)
        await self._driver.run(limit_ops.set_limit(self.keys(queue), limit))
        return limit

    async def remove_limit(self, queue: str, pattern: str, *, shared: bool = False) -> bool:
        """See :meth:`Admin.remove_limit`."""
        ops = limit_ops.remove_limit(self.keys(queue), pattern, shared)
        dropped, _ = await self._driver.run(ops)
        return bool(dropped)

    async def limits(self, queue: str) -> list[Limit]:
        """See :meth:`Admin.limits`."""
        return await self._driver.run(limit_ops.list_limits(self.keys(queue)))

    async def set_flow_mode(self, queue: str, mode: str) -> str:
        """See :meth:`Admin.set_flow_mode`."""
        return await self._driver.run(limit_ops.set_mode(self.keys(queue), mode))

    async def flow_status(self, queue: str) -> FlowStatus:
        """See :meth:`Admin.flow_status`."""
        return await self._driver.run(limit_ops.flow_status(self.keys(queue)))

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
