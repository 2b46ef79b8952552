"""Enqueue and inspect jobs: :class:`Producer` (sync) and :class:`AsyncProducer`.

Both are thin drivers over ``streamq.protocol``: each method builds an operation once and
runs it; a test checks the two classes expose the same signatures.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from streamq import connection
from streamq._driver import AsyncDriver, SyncDriver
from streamq.config import Settings
from streamq.errors import ConfigError, DurabilityError
from streamq.job import (
    EXPLICIT_BACKOFF,
    EXPLICIT_RETRIES,
    EXPLICIT_TIMEOUT,
    MAX_AT_S,
    MAX_DELAY_S,
    Backoff,
    Job,
    JobOptions,
    check_backoff,
    check_retries,
    timeout_ms,
)
from streamq.protocol import jobs, partitions, routed, schedules
from streamq.protocol.calls import Call, Flow, ping
from streamq.protocol.codec import encode_payload, new_job_id, new_job_ids
from streamq.protocol.jobs import PreparedJob
from streamq.protocol.keys import (
    QueueKeys,
    validate_job_id,
    validate_job_key,
    validate_priority,
    validate_queue_name,
)
from streamq.protocol.partitions import PartitionMeta
from streamq.protocol.schedules import Schedule
from streamq.results import DeadEntry, EnqueueResult, QueueStatus

__all__ = ["AsyncProducer", "JobSpec", "Producer"]

T = TypeVar("T")
#: Seconds a producer trusts what it read of a queue's partitions.
META_TTL_S = 5.0
#: The largest batch a producer sends to a partitioned queue's home beside the read of its
#: partitions (when that read is due): a larger one reads first and spreads, so a producer
#: whose batches come further apart than META_TTL_S does not put every one on one master.
HOME_BATCH_MAX = 16

Delay = float | int | timedelta
At = datetime | float | int


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job for :meth:`Producer.enqueue_many`."""

    name: str
    data: Any = None
    job_id: str | None = None
    delay: Delay | None = None
    at: At | None = None
    max_retries: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    #: Flow control: the job's key (rate limits, concurrency and fairness apply per key).
    key: str | None = None
    #: 0..9, higher first (flow control); None or 0: the default.
    priority: int | None = None


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigError(f"{what} must be a number of seconds, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return math.inf


def _delay_ms(delay: Delay | None) -> int:
    if delay is None:
        return 0
    seconds = _seconds(delay, "delay")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DELAY_S:
        raise ConfigError(
            f"delay must be a finite number of seconds within [0, {MAX_DELAY_S}] (100 years), "
            f"got {seconds}"
        )
    return int(seconds * 1000)


def _at_ms(at: At | None) -> int:
    if at is None:
        return -1
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ConfigError("at must be a timezone-aware datetime (or epoch seconds)")
        seconds = at.timestamp()
    else:
        seconds = _seconds(at, "at")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_AT_S:
        raise ConfigError(
            f"at must be an epoch time within [0, {MAX_AT_S}] seconds (year 9999), got {seconds}"
        )
    return int(seconds * 1000)


def _limit(count: int | None, limit: int) -> int:
    """``limit``, or the deprecated ``count`` when one was given (with a warning)."""
    if count is None:
        return limit
    warnings.warn(
        "dead_letters(count=...) is deprecated: use limit=... (keyword)",
        DeprecationWarning,
        stacklevel=3,
    )
    return count


class _Base:
    """What both producers share: settings, keys and job preparation (no I/O)."""

    def __init__(
        self, settings: Settings, durable: bool, durable_replicas: int, durable_timeout: float
    ) -> None:
        self.settings = settings
        if durable_replicas < 0 or not durable_timeout > 0:
            raise ConfigError("durable_replicas must be >= 0 and durable_timeout > 0 seconds")
        #: Enqueues wait for WAITAOF (local fsync, + ``durable_replicas``) unless told not to.
        self.durable = durable
        self.durable_replicas = durable_replicas
        self.durable_timeout_ms = max(1, int(durable_timeout * 1000))
        self._durable_checked = False
        self._keys: dict[str, QueueKeys] = {}
        #: Queue -> (its partitions, monotonic time to read them again).
        self._metas: dict[str, tuple[PartitionMeta, float]] = {}
        self._default_options = JobOptions(
            settings.max_retries,
            Backoff(
                settings.backoff_type,
                settings.backoff_delay_ms,
                settings.backoff_factor,
                settings.backoff_jitter,
            ),
            settings.job_timeout_ms,
        )
        self._default_options_raw = self._default_options.encode()
        # A blocking read must return well before the socket timeout fires.
        self._max_block_ms = max(1, min(5000, int(settings.redis.socket_timeout * 500)))

    def keys(self, queue: str) -> QueueKeys:
        """The key schema of ``queue`` (validated once)."""
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = QueueKeys(validate_queue_name(queue), self.settings.prefix)
        return k

    def _prepare(
        self,
        name: str,
        data: Any,
        job_id: str | None,
        delay: Delay | None,
        at: At | None,
        max_retries: int | None,
        backoff: Backoff | None,
        timeout: float | None,
        new_id: str | None = None,
        key: str | None = None,
        priority: int | None = None,
    ) -> PreparedJob:
        # Takes the fields rather than a JobSpec: one object less per enqueue() call.
        # ``new_id``: a generated id to use when ``job_id`` is None (batches make them all
        # at once).
        if delay is not None and at is not None:
            raise ConfigError("give a job delay= or at=, not both")
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ConfigError(f"job name must be a non-empty string of <= 200 chars: {name!r}")
        if max_retries is None and backoff is None and timeout is None:
            opts = self._default_options_raw
        else:
            d = self._default_options
            opts = JobOptions(
                d.max_retries if max_retries is None else check_retries(max_retries),
                d.backoff if backoff is None else check_backoff(backoff),
                d.timeout_ms if timeout is None else timeout_ms(timeout),
                # What this call set wins over a handler's defaults; the rest does not.
                (max_retries is not None) * EXPLICIT_RETRIES
                | (backoff is not None) * EXPLICIT_BACKOFF
                | (timeout is not None) * EXPLICIT_TIMEOUT,
            ).encode()
        return PreparedJob(
            (new_id or new_job_id()) if job_id is None else validate_job_id(job_id),
            name,
            encode_payload(data, self.settings.max_payload_bytes, job=name),
            opts,
            0 if delay is None else _delay_ms(delay),
            -1 if at is None else _at_ms(at),
            "" if key is None else validate_job_key(key),
            0 if priority is None else validate_priority(priority),
        )

    def _prepare_many(self, jobs: Iterable[JobSpec]) -> tuple[list[PreparedJob], bool]:
        """The batch prepared, and whether every id in it is generated (``fresh``)."""
        specs = list(jobs)
        ids = new_job_ids(len(specs))
        prepared = [
            self._prepare(
                s.name,
                s.data,
                s.job_id,
                s.delay,
                s.at,
                s.max_retries,
                s.backoff,
                s.timeout,
                i,
                s.key,
                s.priority,
            )
            for s, i in zip(specs, ids, strict=True)
        ]
        return prepared, all(s.job_id is None for s in specs)

    def _schedule(
        self,
        key: str,
        name: str,
        data: Any,
        every: float | timedelta | None,
        cron: str | None,
        tz: str,
        max_retries: int | None,
        backoff: Backoff | None,
        timeout: float | None,
        job_key: str | None = None,
        priority: int | None = None,
    ) -> Schedule:
        job = self._prepare(
            name, data, None, None, None, max_retries, backoff, timeout, None, job_key, priority
        )
        return Schedule(
            key,
            job.name,
            job.data,
            job.options,
            None if every is None else schedules.as_ms(every),
            cron,
            tz,
            job_key=job.key,
            priority=job.priority,
        )

    def _enqueue_op(
        self,
        queue: str,
        prepared: list[PreparedJob],
        durable: bool | None = None,
        fresh: bool = False,
    ) -> Call[list[EnqueueResult]] | Flow[list[EnqueueResult]]:
        # Everything is validated and encoded (``prepared``) before anything is sent: a bad
        # job in a batch means nothing of the batch is written. ``fresh``: no custom ids.
        hit = self._metas.get(queue)
        is_durable = self.durable if durable is None else durable
        if hit is None or hit[1] <= time.monotonic():
            # Unknown (first call) counts as unpartitioned, the common case: one round trip.
            known = hit[0].partitions if hit is not None else 1
            if fresh and not is_durable and (known == 1 or len(prepared) <= HOME_BATCH_MAX):
                # New ids cannot collide with a job elsewhere: send them home beside the
                # read of the partitions, still one round trip (home is where every
                # lookup also looks, and workers consume it). The next calls spread.
                return self._home_enqueue(queue, prepared)
            return self._routed_enqueue(queue, prepared, durable, fresh)
        if hit[0].partitions > 1:
            return self._routed_enqueue(queue, prepared, durable, fresh)
        call = jobs.enqueue(self.keys(queue), prepared, fresh=fresh)
        if not is_durable:
            return call
        return self._durable_flow(self._confirmed(call))

    def _home_enqueue(self, queue: str, prepared: list[PreparedJob]) -> Flow[list[EnqueueResult]]:
        home = self.keys(queue)
        meta, results = yield [
            partitions.read_meta(home),
            jobs.enqueue(home, prepared, fresh=True),
        ]
        self._metas[queue] = (meta, time.monotonic() + META_TTL_S)
        return results  # type: ignore[no-any-return]

    def _routed_enqueue(
        self, queue: str, prepared: list[PreparedJob], durable: bool | None, fresh: bool
    ) -> Flow[list[EnqueueResult]]:
        meta = yield from self._meta(queue)
        home = self.keys(queue)
        is_durable = self.durable if durable is None else durable
        if meta.partitions == 1:
            call = jobs.enqueue(home, prepared, fresh=fresh)
            if is_durable:
                return (yield from self._durable_flow(self._confirmed(call)))
            results: list[EnqueueResult] = yield call
            return results
        flow = routed.enqueue(
            home, meta, prepared, fresh, self._confirmed_many if is_durable else None
        )
        return (yield from (self._durable_flow(flow) if is_durable else flow))

    def _meta(self, queue: str) -> Flow[PartitionMeta]:
        """The queue's partitions, read again at most every :data:`META_TTL_S` (a raised
        count reaches every producer within that; jobs written meanwhile under the older
        count are still found and consumed: see :mod:`streamq.protocol.partitions`)."""
        hit = self._metas.get(queue)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        meta: PartitionMeta = yield partitions.read_meta(self.keys(queue))
        self._metas[queue] = (meta, now + META_TTL_S)
        return meta

    def _routed(self, queue: str, op: Callable[[QueueKeys, PartitionMeta], Flow[T]]) -> Flow[T]:
        """``op`` on the queue's home keys and partitions (one partition: the plain op)."""
        meta = yield from self._meta(queue)
        return (yield from op(self.keys(queue), meta))

    def _confirmed(self, call: Call[list[EnqueueResult]]) -> Flow[list[EnqueueResult]]:
        """``call`` with its WAITAOF (one partition's write of a durable enqueue)."""
        return jobs.durable_enqueue(call, self.durable_replicas, self.durable_timeout_ms)

    def _confirmed_many(
        self, calls: list[Call[list[EnqueueResult]]]
    ) -> Flow[list[list[EnqueueResult]]]:
        """``calls`` (one per partition) each with its WAITAOF, all in one pipeline."""
        return jobs.durable_enqueue_many(calls, self.durable_replicas, self.durable_timeout_ms)

    def _durable_flow(self, write: Flow[list[EnqueueResult]]) -> Flow[list[EnqueueResult]]:
        """``write`` (a durable enqueue, every partition of it) after the one-time check."""
        if not self._durable_checked:
            yield from jobs.check_waitaof()
            self._durable_checked = True
        try:
            return (yield from write)
        except DurabilityError:
            # The server may have changed since the check (AOF off, a failover): check
            # again before the next durable write, so it is refused before writing.
            self._durable_checked = False
            raise


class Producer(_Base):
    """Enqueue and inspect jobs (sync, pooled connections). Use as a context manager or
    call :meth:`close`.

    ``url`` overrides the connection settings; without it, ``settings`` (or the environment:
    ``REDIS_URL``, ``REDIS_HOST``...) decide. Connection errors are retried
    ``retry_attempts`` times, then raised as :class:`~streamq.errors.ConnectionFailedError`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        retry_attempts: int = 3,
        durable: bool = False,
        durable_replicas: int = 0,
        durable_timeout: float = 1.0,
    ) -> None:
        super().__init__(
            Settings.resolve(url, settings), durable, durable_replicas, durable_timeout
        )
        self._client = connection.sync_client(self.settings.redis, retry_attempts=retry_attempts)
        self._driver = SyncDriver(self._client, self.settings.redis.describe())

    def enqueue(
        self,
        queue: str,
        name: str,
        data: Any = None,
        *,
        job_id: str | None = None,
        delay: Delay | None = None,
        at: At | None = None,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        key: str | None = None,
        priority: int | None = None,
        durable: bool | None = None,
    ) -> EnqueueResult:
        """Add one job (one round trip). An existing ``job_id`` returns the existing job
        with ``created=False``. ``delay`` (seconds or timedelta) or ``at`` (aware datetime
        or epoch seconds) make it a delayed job. ``durable=True`` (default: the producer's
        ``durable``) returns only once WAITAOF confirms the fsync, still in one round trip;
        a server without WAITAOF (< 7.2) or AOF raises ServerError before anything is
        written. ``key`` and ``priority`` (0..9, higher first) put the job under flow
        control: it is held until its key's turn, rate limits and concurrency allow
        (see docs/flow-control.md)."""
        job = self._prepare(
            name, data, job_id, delay, at, max_retries, backoff, timeout, None, key, priority
        )
        op = self._enqueue_op(queue, [job], durable, fresh=job_id is None)
        return self._driver.run(op)[0]

    def enqueue_many(
        self, queue: str, jobs: Iterable[JobSpec], *, durable: bool | None = None
    ) -> list[EnqueueResult]:
        """Add many jobs in one round trip; all are validated before anything is sent."""
        prepared, fresh = self._prepare_many(jobs)
        return self._driver.run(self._enqueue_op(queue, prepared, durable, fresh))

    def get_job(self, queue: str, job_id: str) -> Job | None:
        """The job's record (state, attempts, result, last error, timestamps), or None."""
        return self._driver.run(self._routed(queue, lambda h, m: routed.get_job(h, m, job_id)))

    def cancel(self, queue: str, job_id: str) -> None:
        """Cancel a delayed or waiting job (InvalidStateError if it runs or has finished)."""
        self._driver.run(
            self._routed(
                queue, lambda h, m: routed.cancel(h, m, job_id, self.settings.events_maxlen)
            )
        )

    def reschedule(
        self, queue: str, job_id: str, *, delay: Delay | None = None, at: At | None = None
    ) -> int:
        """Move a delayed job to another time; returns the new due time (ms since epoch)."""
        if (delay is None) == (at is None):
            raise ConfigError("reschedule needs exactly one of delay= or at=")
        return self._driver.run(
            self._routed(
                queue, lambda h, m: routed.move(h, m, job_id, _delay_ms(delay), _at_ms(at))
            )
        )

    def status(self, queue: str) -> QueueStatus:
        """Waiting, active, completed, failed, delayed (and DLQ) counts of ``queue``."""
        return self._driver.run(self._routed(queue, routed.status))

    def wait(self, queue: str, job_id: str, timeout: float = 30.0) -> Job:
        """Block until the job completes, dies or is cancelled (no polling loop); raises
        WaitTimeoutError after ``timeout`` seconds."""
        return self._driver.run(
            self._routed(
                queue,
                lambda h, m: routed.wait_for(
                    h, m, job_id, timeout, time.monotonic, self._max_block_ms
                ),
            )
        )

    def dead_letters(
        self, queue: str, count: int | None = None, *, limit: int = 100, after: str = "-"
    ) -> list[DeadEntry]:
        """Up to ``limit`` DLQ entries, oldest first, after entry id ``after``. ``count``
        is the deprecated name of ``limit``."""
        limit = _limit(count, limit)
        return self._driver.run(
            self._routed(queue, lambda h, m: routed.dead_letters(h, m, limit, after))
        )

    def replay_dead(self, queue: str, dead_id: str) -> bool:
        """Move one DLQ entry back to the queue with a fresh retry budget."""
        return self._driver.run(self._routed(queue, lambda h, m: routed.replay_dead(h, m, dead_id)))

    def replay_all_dead(self, queue: str, progress: Callable[[int], None] | None = None) -> int:
        """Replay every DLQ entry of ``queue``; returns how many moved."""
        return self._driver.run(
            self._routed(queue, lambda h, m: routed.replay_all_dead(h, m, progress))
        )

    def delete_dead(self, queue: str, dead_id: str) -> bool:
        """Delete one DLQ entry by its entry id; False if it was not there."""
        return self._driver.run(self._routed(queue, lambda h, m: routed.delete_dead(h, m, dead_id)))

    def purge_dead(self, queue: str) -> int:
        """Delete every DLQ entry of ``queue``; returns how many."""
        return self._driver.run(self._routed(queue, routed.purge_dead))

    def add_schedule(
        self,
        queue: str,
        key: str,
        name: str,
        data: Any = None,
        *,
        every: float | timedelta | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        first_at: datetime | None = None,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        job_key: str | None = None,
        priority: int | None = None,
    ) -> int:
        """Create or update the repeating schedule ``key`` (``every`` seconds/timedelta, or a
        5-field ``cron`` in ``tz``); returns the next tick (ms since epoch). Re-adding an
        identical schedule keeps its next tick. ``job_key`` and ``priority`` put the jobs it
        enqueues under flow control (``key`` is the schedule's own name)."""
        sch = self._schedule(
            key, name, data, every, cron, tz, max_retries, backoff, timeout, job_key, priority
        )
        first = None if first_at is None else int(schedules.aware(first_at).timestamp() * 1000)
        return self._driver.run(schedules.add_schedule(self.keys(queue), sch, first))

    def list_schedules(self, queue: str) -> list[Schedule]:
        """The repeating schedules of ``queue``, soonest first."""
        return self._driver.run(schedules.list_schedules(self.keys(queue)))

    def remove_schedule(self, queue: str, key: str) -> bool:
        """Delete a schedule; True when it existed."""
        return self._driver.run(schedules.remove_schedule(self.keys(queue), key))

    def ping(self) -> bool:
        """True when the server answers."""
        return self._driver.run(ping())

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Producer({self.settings.redis.describe()!r})"


class AsyncProducer(_Base):
    """The asyncio twin of :class:`Producer`: same methods, awaited."""

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        retry_attempts: int = 3,
        durable: bool = False,
        durable_replicas: int = 0,
        durable_timeout: float = 1.0,
    ) -> None:
        super().__init__(
            Settings.resolve(url, settings), durable, durable_replicas, durable_timeout
        )
        self._client = connection.async_client(self.settings.redis, retry_attempts=retry_attempts)
        self._driver = AsyncDriver(self._client, self.settings.redis.describe())

    async def enqueue(
        self,
        queue: str,
        name: str,
        data: Any = None,
        *,
        job_id: str | None = None,
        delay: Delay | None = None,
        at: At | None = None,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        key: str | None = None,
        priority: int | None = None,
        durable: bool | None = None,
    ) -> EnqueueResult:
        """See :meth:`Producer.enqueue`."""
        job = self._prepare(
            name, data, job_id, delay, at, max_retries, backoff, timeout, None, key, priority
        )
        op = self._enqueue_op(queue, [job], durable, fresh=job_id is None)
        return (await self._driver.run(op))[0]

    async def enqueue_many(
        self, queue: str, jobs: Iterable[JobSpec], *, durable: bool | None = None
    ) -> list[EnqueueResult]:
        """See :meth:`Producer.enqueue_many`."""
        prepared, fresh = self._prepare_many(jobs)
        return await self._driver.run(self._enqueue_op(queue, prepared, durable, fresh))

    async def get_job(self, queue: str, job_id: str) -> Job | None:
        """See :meth:`Producer.get_job`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.get_job(h, m, job_id))
        )

    async def cancel(self, queue: str, job_id: str) -> None:
        """See :meth:`Producer.cancel`."""
        await self._driver.run(
            self._routed(
                queue, lambda h, m: routed.cancel(h, m, job_id, self.settings.events_maxlen)
            )
        )

    async def reschedule(
        self, queue: str, job_id: str, *, delay: Delay | None = None, at: At | None = None
    ) -> int:
        """See :meth:`Producer.reschedule`."""
        if (delay is None) == (at is None):
            raise ConfigError("reschedule needs exactly one of delay= or at=")
        return await self._driver.run(
            self._routed(
                queue, lambda h, m: routed.move(h, m, job_id, _delay_ms(delay), _at_ms(at))
            )
        )

    async def status(self, queue: str) -> QueueStatus:
        """See :meth:`Producer.status`."""
        return await self._driver.run(self._routed(queue, routed.status))

    async def wait(self, queue: str, job_id: str, timeout: float = 30.0) -> Job:
        """See :meth:`Producer.wait`."""
        return await self._driver.run(
            self._routed(
                queue,
                lambda h, m: routed.wait_for(
                    h, m, job_id, timeout, time.monotonic, self._max_block_ms
                ),
            )
        )

    async def dead_letters(
        self, queue: str, count: int | None = None, *, limit: int = 100, after: str = "-"
    ) -> list[DeadEntry]:
        """See :meth:`Producer.dead_letters`."""
        limit = _limit(count, limit)
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.dead_letters(h, m, limit, after))
        )

    async def replay_dead(self, queue: str, dead_id: str) -> bool:
        """See :meth:`Producer.replay_dead`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.replay_dead(h, m, dead_id))
        )

    async def replay_all_dead(
        self, queue: str, progress: Callable[[int], None] | None = None
    ) -> int:
        """See :meth:`Producer.replay_all_dead`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.replay_all_dead(h, m, progress))
        )

    async def delete_dead(self, queue: str, dead_id: str) -> bool:
        """See :meth:`Producer.delete_dead`."""
        return await self._driver.run(
            self._routed(queue, lambda h, m: routed.delete_dead(h, m, dead_id))
        )

    async def purge_dead(self, queue: str) -> int:
        """See :meth:`Producer.purge_dead`."""
        return await self._driver.run(self._routed(queue, routed.purge_dead))

    async def add_schedule(
        self,
        queue: str,
        key: str,
        name: str,
        data: Any = None,
        *,
        every: float | timedelta | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        first_at: datetime | None = None,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        job_key: str | None = None,
        priority: int | None = None,
    ) -> int:
        """See :meth:`Producer.add_schedule`."""
        sch = self._schedule(
            key, name, data, every, cron, tz, max_retries, backoff, timeout, job_key, priority
        )
        first = None if first_at is None else int(schedules.aware(first_at).timestamp() * 1000)
        return await self._driver.run(schedules.add_schedule(self.keys(queue), sch, first))

    async def list_schedules(self, queue: str) -> list[Schedule]:
        """See :meth:`Producer.list_schedules`."""
        return await self._driver.run(schedules.list_schedules(self.keys(queue)))

    async def remove_schedule(self, queue: str, key: str) -> bool:
        """See :meth:`Producer.remove_schedule`."""
        return await self._driver.run(schedules.remove_schedule(self.keys(queue), key))

    async def ping(self) -> bool:
        """See :meth:`Producer.ping`."""
        return await self._driver.run(ping())

    async def close(self) -> None:
        """See :meth:`Producer.close`."""
        await self._client.aclose()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncProducer({self.settings.redis.describe()!r})"
