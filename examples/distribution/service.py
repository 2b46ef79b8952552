"""``QueueService``: the distribution backend's view of streamq, in one facade.

The engine knows nothing about distribution; this module maps the backend's four job types
onto three queues with the defaults of the original spec::

    with QueueService() as queues:  # settings from the environment
        queues.add_dispatch_job({"scheduleId": "s1", "postId": "p1", "targetId": "li-42"})
        queues.add_dispatch_job({"scheduleId": 11, "postId": 1, "targetId": 42})  # db keys
        queues.add_scheduled_publish_job(
            {"scheduleId": "s2", "scheduledFor": "2030-01-01T09:00:00Z"}
        )
        queues.reschedule_publish("s2", datetime(2030, 1, 2, 9, tzinfo=UTC))
        queues.add_token_refresh_job("conn-7")  # every 24 h, keyed by connection
        queues.refresh_token_now("conn-7")  # never at the same time as the scheduled one
        queues.get_queue_status("dispatch").counts()

Ids are integers (database keys) or strings, as in the original backend's TypeScript
interfaces (:mod:`~examples.distribution.types` says which); every method that takes an
id takes either.

:class:`AsyncQueueService` is the asyncio twin (same methods, awaited). Each operation is
written once as a *flow* (a generator yielding producer calls, like the engine's protocol
layer); the two classes only run the flows on a :class:`~streamq.Producer` or
:class:`~streamq.AsyncProducer`.

Defaults: 3 retries with exponential backoff 5 s, 25 s, 125 s for dispatch, retry and
scheduled-publish jobs (``DISTRIBUTION_BACKOFF_MS`` / ``DISTRIBUTION_BACKOFF_FACTOR`` override
the base delay and factor, for demos and tests); token refresh gets 5 attempts
(``max_retries=4``). Retention (keep the last 100 completed and 500 failed records) is applied
by the workers: :data:`KEEP_COMPLETED`/:data:`KEEP_FAILED` equal the engine's defaults
(``STREAMQ_KEEP_COMPLETED``/``STREAMQ_KEEP_FAILED``); :func:`worker_settings` pins them.

Flow control (:mod:`~examples.distribution.limits`): dispatch and retry jobs carry the key
``<platform>:<connection id>`` and token refreshes ``refresh:<connection id>``; call
:meth:`QueueService.declare_limits` at start-up to write the per-platform and
per-connection rate limits and the one-refresh-at-a-time rule those keys are paced by.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, TypeVar

from examples.distribution.limits import (
    FlowLimits,
    declare_limits,
    declare_limits_async,
    dispatch_key,
    refresh_key,
)
from examples.distribution.types import (
    DispatchData,
    Id,
    JobDataError,
    RetryData,
    ScheduledPublishData,
    TokenRefreshData,
    id_key,
    parse_time,
    validate_id,
)
from streamq import (
    AsyncProducer,
    Backoff,
    ConfigError,
    EnqueueResult,
    Job,
    JobNotFoundError,
    JobSpec,
    JobState,
    Producer,
    QueueStatus,
    Settings,
    StreamQError,
)
from streamq.scheduler import Schedule

__all__ = [
    "DISPATCH_QUEUE",
    "JOB_DISPATCH",
    "JOB_RETRY",
    "JOB_SCHEDULED_PUBLISH",
    "JOB_TOKEN_REFRESH",
    "KEEP_COMPLETED",
    "KEEP_FAILED",
    "QUEUES",
    "SCHEDULED_QUEUE",
    "TOKEN_REFRESH_QUEUE",
    "AsyncQueueService",
    "QueueService",
    "backoff_from_env",
    "publish_job_id",
    "worker_settings",
]

DISPATCH_QUEUE: Final = "distribution:dispatch"
SCHEDULED_QUEUE: Final = "distribution:scheduled"
TOKEN_REFRESH_QUEUE: Final = "distribution:token-refresh"

#: Health/status aliases -> queue names (the keys of ``GET /api/queue/health``).
QUEUES: Final[Mapping[str, str]] = {
    "dispatch": DISPATCH_QUEUE,
    "scheduled": SCHEDULED_QUEUE,
    "tokenRefresh": TOKEN_REFRESH_QUEUE,
}

JOB_DISPATCH: Final = "dispatch"
JOB_RETRY: Final = "retry"
JOB_SCHEDULED_PUBLISH: Final = "scheduled_publish"
JOB_TOKEN_REFRESH: Final = "token_refresh"

DISPATCH_MAX_RETRIES: Final = 3
TOKEN_REFRESH_MAX_RETRIES: Final = 4  # 5 attempts in all
TOKEN_REFRESH_EVERY: Final = timedelta(hours=24)
KEEP_COMPLETED: Final = 100
KEEP_FAILED: Final = 500
#: Upper bound of cancel-then-add-again cycles per schedule (see :func:`publish_job_id`).
MAX_PUBLISH_GENERATIONS: Final = 50

T = TypeVar("T")


def backoff_from_env(env: Mapping[str, str] | None = None) -> Backoff:
    """Exponential backoff, 5 s x 5 by default (5 s, 25 s, 125 s).

    ``DISTRIBUTION_BACKOFF_MS`` replaces the base delay and ``DISTRIBUTION_BACKOFF_FACTOR``
    the factor (the demo uses 250 ms x 2 so that retries and the DLQ show within seconds).
    """
    env = os.environ if env is None else env
    delay_raw = (env.get("DISTRIBUTION_BACKOFF_MS") or "").strip()
    factor_raw = (env.get("DISTRIBUTION_BACKOFF_FACTOR") or "").strip()
    try:
        delay = int(delay_raw) if delay_raw else 5000
    except ValueError:
        raise ConfigError(
            f"DISTRIBUTION_BACKOFF_MS must be an integer (ms), got {delay_raw!r}"
        ) from None
    try:
        factor = float(factor_raw) if factor_raw else 5.0
    except ValueError:
        raise ConfigError(
            f"DISTRIBUTION_BACKOFF_FACTOR must be a number, got {factor_raw!r}"
        ) from None
    if delay < 0:
        raise ConfigError(f"DISTRIBUTION_BACKOFF_MS must be >= 0, got {delay}")
    if factor < 1:
        raise ConfigError(f"DISTRIBUTION_BACKOFF_FACTOR must be >= 1, got {factor}")
    return Backoff.exponential(delay, factor)


def worker_settings(settings: Settings | None = None) -> Settings:
    """Engine settings for distribution workers: retention pinned to 100 completed /
    500 failed records per queue, the rest from ``settings`` (or the environment)."""
    base = settings or Settings.from_env()
    return base.with_changes(keep_completed=KEEP_COMPLETED, keep_failed=KEEP_FAILED)


def publish_job_id(schedule_id: Id, generation: int = 1) -> str:
    """The job id of a scheduled publish: ``publish.<generation>:<scheduleId>``, with the
    id in its text form (:func:`~examples.distribution.types.id_key`: ``1`` and ``"1"`` are
    one schedule).

    The id is derived from the schedule so the job can be found, cancelled and moved without
    storing anything. A cancelled job keeps its record (and so its id), so adding the same
    schedule again after a cancellation uses the next generation. The prefix before the
    first ``:`` holds no ``:``, so different (schedule, generation) pairs never collide.
    """
    key = id_key(validate_id(schedule_id, "scheduleId"))
    if generation < 1:
        raise ValueError(f"generation must be >= 1, got {generation}")
    return f"publish.{generation}:{key}"


def resolve_queue(name: str) -> str:
    """A queue name from an alias (``dispatch``, ``scheduled``, ``tokenRefresh``) or a name."""
    if name in QUEUES:
        return QUEUES[name]
    if name in QUEUES.values():
        return name
    choices = ", ".join([*QUEUES, *QUEUES.values()])
    raise ValueError(f"unknown distribution queue {name!r}: use one of {choices}")


# --------------------------------------------------------------------------- flows


@dataclass(frozen=True, slots=True)
class _Call:
    """One producer method call a flow wants made: ``producer.<method>(*args, **kwargs)``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


_Flow = Generator[_Call, Any, T]


class _Flows:
    """Every service operation, written once, without I/O."""

    def __init__(self, backoff: Backoff | None) -> None:
        self.backoff = backoff if backoff is not None else backoff_from_env()

    # -- dispatch ------------------------------------------------------------------------

    def dispatch_spec(
        self, data: DispatchData | Mapping[str, Any], job_id: str | None = None
    ) -> JobSpec:
        d = data if isinstance(data, DispatchData) else DispatchData.from_dict(data)
        return JobSpec(
            JOB_DISPATCH,
            d.to_dict(),
            job_id=job_id,
            max_retries=DISPATCH_MAX_RETRIES,
            backoff=self.backoff,
            key=dispatch_key(d.target_id),
        )

    def dispatch(
        self, data: DispatchData | Mapping[str, Any], job_id: str | None
    ) -> _Flow[EnqueueResult]:
        results = yield _Call("enqueue_many", (DISPATCH_QUEUE, [self.dispatch_spec(data, job_id)]))
        return results[0]  # type: ignore[no-any-return]

    def dispatch_many(
        self, items: Iterable[DispatchData | Mapping[str, Any]]
    ) -> _Flow[list[EnqueueResult]]:
        specs = [self.dispatch_spec(d) for d in items]  # validate all before sending any
        if not specs:
            return []
        results = yield _Call("enqueue_many", (DISPATCH_QUEUE, specs))
        return list(results)

    def retry(self, data: RetryData | Mapping[str, Any]) -> _Flow[EnqueueResult]:
        r = data if isinstance(data, RetryData) else RetryData.from_dict(data)
        spec = JobSpec(
            JOB_RETRY,
            r.to_dict(),
            max_retries=DISPATCH_MAX_RETRIES,
            backoff=self.backoff,
            key=dispatch_key(r.target_id),
        )
        results = yield _Call("enqueue_many", (DISPATCH_QUEUE, [spec]))
        return results[0]  # type: ignore[no-any-return]

    # -- scheduled publish ------------------------------------------------------------------

    def _latest_publish(self, schedule_id: Id) -> _Flow[tuple[int, Job | None]]:
        """(generation, job) of the newest publish job of a schedule; (0, None) if none."""
        validate_id(schedule_id, "scheduleId")
        generation: int = 0
        latest: Job | None = None
        while generation < MAX_PUBLISH_GENERATIONS:
            job = yield _Call(
                "get_job", (SCHEDULED_QUEUE, publish_job_id(schedule_id, generation + 1))
            )
            if job is None:
                return generation, latest
            generation, latest = generation + 1, job
        raise StreamQError(
            f"schedule {schedule_id!r} was cancelled and added again "
            f"{MAX_PUBLISH_GENERATIONS} times: use a new scheduleId"
        )

    def scheduled_publish(
        self,
        data: ScheduledPublishData | Mapping[str, Any],
        scheduled_for: datetime | str | None,
    ) -> _Flow[EnqueueResult]:
        d = data if isinstance(data, ScheduledPublishData) else ScheduledPublishData.from_dict(data)
        if scheduled_for is not None:
            d = ScheduledPublishData(d.schedule_id, parse_time(scheduled_for, "scheduledFor"))
        generation, latest = yield from self._latest_publish(d.schedule_id)
        if latest is None or latest.state is JobState.CANCELLED:
            generation += 1  # a fresh schedule, or one added again after a cancellation
        # For a live (or finished) job, enqueue with its id returns it unchanged: a schedule
        # publishes at most once unless it is cancelled.
        results = yield _Call(
            "enqueue_many",
            (
                SCHEDULED_QUEUE,
                [
                    JobSpec(
                        JOB_SCHEDULED_PUBLISH,
                        d.to_dict(),
                        job_id=publish_job_id(d.schedule_id, generation),
                        at=d.scheduled_for,
                        max_retries=DISPATCH_MAX_RETRIES,
                        backoff=self.backoff,
                    )
                ],
            ),
        )
        return results[0]  # type: ignore[no-any-return]

    def get_scheduled_publish(self, schedule_id: Id) -> _Flow[Job | None]:
        _, latest = yield from self._latest_publish(schedule_id)
        return latest

    def cancel_scheduled_publish(self, schedule_id: Id) -> _Flow[bool]:
        _, latest = yield from self._latest_publish(schedule_id)
        if latest is None or latest.state is JobState.CANCELLED:
            return False
        yield _Call("cancel", (SCHEDULED_QUEUE, latest.id))
        return True

    def reschedule_publish(self, schedule_id: Id, new_time: datetime | str) -> _Flow[datetime]:
        when = parse_time(new_time, "newTime")
        _, latest = yield from self._latest_publish(schedule_id)
        if latest is None or latest.state is JobState.CANCELLED:
            raise JobNotFoundError(f"no scheduled publish for schedule {schedule_id!r}")
        due_ms = yield _Call("reschedule", (SCHEDULED_QUEUE, latest.id), {"at": when})
        return datetime.fromtimestamp(int(due_ms) / 1000, tz=UTC)

    # -- token refresh ----------------------------------------------------------------------

    def token_refresh(
        self,
        connection_id: Id,
        every: timedelta | float,
        first_at: datetime | None,
    ) -> _Flow[datetime]:
        data = TokenRefreshData(connection_id)
        seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
        if seconds < 1:
            raise JobDataError("every", f"must be at least 1 second, got {seconds}")
        tick_ms = yield _Call(
            "add_schedule",
            (TOKEN_REFRESH_QUEUE, id_key(data.connection_id), JOB_TOKEN_REFRESH, data.to_dict()),
            {
                "every": every,
                "first_at": first_at,
                "max_retries": TOKEN_REFRESH_MAX_RETRIES,
                "backoff": self.backoff,
                "job_key": refresh_key(data.connection_id),
            },
        )
        return datetime.fromtimestamp(int(tick_ms) / 1000, tz=UTC)

    def refresh_now(self, connection_id: Id) -> _Flow[EnqueueResult]:
        data = TokenRefreshData(connection_id)
        spec = JobSpec(
            JOB_TOKEN_REFRESH,
            data.to_dict(),
            max_retries=TOKEN_REFRESH_MAX_RETRIES,
            backoff=self.backoff,
            key=refresh_key(data.connection_id),
        )
        results = yield _Call("enqueue_many", (TOKEN_REFRESH_QUEUE, [spec]))
        return results[0]  # type: ignore[no-any-return]

    def remove_token_refresh(self, connection_id: Id) -> _Flow[bool]:
        key = id_key(validate_id(connection_id, "connectionId"))
        removed = yield _Call("remove_schedule", (TOKEN_REFRESH_QUEUE, key))
        return bool(removed)

    def token_refresh_schedules(self) -> _Flow[list[Schedule]]:
        schedules = yield _Call("list_schedules", (TOKEN_REFRESH_QUEUE,))
        return list(schedules)

    # -- status -----------------------------------------------------------------------------

    def status(self, name: str) -> _Flow[QueueStatus]:
        status: QueueStatus = yield _Call("status", (resolve_queue(name),))
        return status

    def all_status(self) -> _Flow[dict[str, QueueStatus]]:
        out: dict[str, QueueStatus] = {}
        for alias, queue in QUEUES.items():
            out[alias] = yield _Call("status", (queue,))
        return out


def _run_sync(producer: Producer, flow: _Flow[T]) -> T:
    """Drive a flow on a sync producer; producer errors are thrown back into the flow."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            call = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        reply, error = None, None
        try:
            reply = getattr(producer, call.method)(*call.args, **call.kwargs)
        except StreamQError as exc:
            error = exc


async def _run_async(producer: AsyncProducer, flow: _Flow[T]) -> T:
    """Drive a flow on an async producer."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            call = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        reply, error = None, None
        try:
            reply = await getattr(producer, call.method)(*call.args, **call.kwargs)
        except StreamQError as exc:
            error = exc


# --------------------------------------------------------------------------- facades


class QueueService:
    """The distribution queues behind one object (sync).

    ``producer``: use this one (the caller keeps ownership); otherwise one is created from
    ``url`` or ``settings`` (default: the environment) and closed by :meth:`close`.
    ``backoff``: retry backoff of dispatch, retry and scheduled-publish jobs (default
    :func:`backoff_from_env`). Payloads are validated before anything is sent; a bad one
    raises :class:`~examples.distribution.types.JobDataError` naming the field.
    """

    def __init__(
        self,
        producer: Producer | None = None,
        *,
        url: str | None = None,
        settings: Settings | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._owns = producer is None
        self.producer = producer if producer is not None else Producer(url, settings=settings)
        self._flows = _Flows(backoff)

    @property
    def backoff(self) -> Backoff:
        """The retry backoff given to dispatch, retry and scheduled-publish jobs."""
        return self._flows.backoff

    def add_dispatch_job(
        self, data: DispatchData | Mapping[str, Any], *, job_id: str | None = None
    ) -> EnqueueResult:
        """Queue one ``dispatch`` job (3 retries, exponential backoff)."""
        return _run_sync(self.producer, self._flows.dispatch(data, job_id))

    def add_dispatch_jobs(
        self, items: Iterable[DispatchData | Mapping[str, Any]]
    ) -> list[EnqueueResult]:
        """Queue many ``dispatch`` jobs in one round trip; all are validated first."""
        return _run_sync(self.producer, self._flows.dispatch_many(items))

    def add_retry_job(self, data: RetryData | Mapping[str, Any]) -> EnqueueResult:
        """Queue a ``retry`` job: re-dispatch a schedule that failed."""
        return _run_sync(self.producer, self._flows.retry(data))

    def add_scheduled_publish_job(
        self,
        data: ScheduledPublishData | Mapping[str, Any],
        scheduled_for: datetime | str | None = None,
    ) -> EnqueueResult:
        """Queue a ``scheduled_publish`` job that fires at ``scheduled_for`` (default: the
        payload's ``scheduledFor``; when given, it also replaces the payload's value).

        Idempotent per ``scheduleId``: while a publish job of the schedule exists (waiting,
        running or finished) the existing one is returned with ``created=False``; after
        :meth:`cancel_scheduled_publish` a new job is created."""
        return _run_sync(self.producer, self._flows.scheduled_publish(data, scheduled_for))

    def get_scheduled_publish(self, schedule_id: Id) -> Job | None:
        """The newest publish job of a schedule, or None."""
        return _run_sync(self.producer, self._flows.get_scheduled_publish(schedule_id))

    def cancel_scheduled_publish(self, schedule_id: Id) -> bool:
        """Cancel the schedule's pending publish. False when there is none (never added, or
        already cancelled); InvalidStateError when it is running or has finished."""
        return _run_sync(self.producer, self._flows.cancel_scheduled_publish(schedule_id))

    def reschedule_publish(self, schedule_id: Id, new_time: datetime | str) -> datetime:
        """Move the schedule's pending publish to ``new_time`` (atomic); returns the new due
        time. JobNotFoundError without a pending publish, InvalidStateError once it runs.
        The payload keeps the ``scheduledFor`` it was created with."""
        return _run_sync(self.producer, self._flows.reschedule_publish(schedule_id, new_time))

    def add_token_refresh_job(
        self,
        connection_id: Id,
        every: timedelta | float = TOKEN_REFRESH_EVERY,
        *,
        first_at: datetime | None = None,
    ) -> datetime:
        """Refresh ``connection_id``'s token every ``every`` (default 24 h), 5 attempts per
        tick. One schedule per connection: adding it again updates it (an identical
        definition keeps its next tick). Its jobs carry the key ``refresh:<id>``, so they
        never run alongside :meth:`refresh_token_now`. Returns the next tick."""
        return _run_sync(self.producer, self._flows.token_refresh(connection_id, every, first_at))

    def refresh_token_now(self, connection_id: Id) -> EnqueueResult:
        """Queue one ``token_refresh`` of ``connection_id`` now (e.g. after the user
        reconnected). It shares the key of the connection's schedule, so it never runs at
        the same time as a scheduled refresh (declared by :meth:`declare_limits`)."""
        return _run_sync(self.producer, self._flows.refresh_now(connection_id))

    def remove_token_refresh_job(self, connection_id: Id) -> bool:
        """Stop refreshing ``connection_id``; True when a schedule existed."""
        return _run_sync(self.producer, self._flows.remove_token_refresh(connection_id))

    def token_refresh_schedules(self) -> list[Schedule]:
        """Every token-refresh schedule, soonest first."""
        return _run_sync(self.producer, self._flows.token_refresh_schedules())

    def get_queue_status(self, name: str) -> QueueStatus:
        """Counts of one queue, by alias (``dispatch``, ``scheduled``, ``tokenRefresh``) or
        by name; ``.counts()`` gives waiting/active/completed/failed/delayed."""
        return _run_sync(self.producer, self._flows.status(name))

    def get_all_status(self) -> dict[str, QueueStatus]:
        """:meth:`get_queue_status` of the three queues, by alias."""
        return _run_sync(self.producer, self._flows.all_status())

    def declare_limits(self, limits: FlowLimits | None = None) -> None:
        """Write the flow-control limits the job keys are paced by (default
        :meth:`~examples.distribution.limits.FlowLimits.from_env`): run at start-up; a
        second run replaces the rules with the same ones."""
        declare_limits(self.producer, limits)

    def close(self) -> None:
        """Close the producer if this service created it."""
        if self._owns:
            self.producer.close()

    def __enter__(self) -> QueueService:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncQueueService:
    """The asyncio twin of :class:`QueueService`: same methods, awaited."""

    def __init__(
        self,
        producer: AsyncProducer | None = None,
        *,
        url: str | None = None,
        settings: Settings | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._owns = producer is None
        self.producer = producer if producer is not None else AsyncProducer(url, settings=settings)
        self._flows = _Flows(backoff)

    @property
    def backoff(self) -> Backoff:
        """See :attr:`QueueService.backoff`."""
        return self._flows.backoff

    async def add_dispatch_job(
        self, data: DispatchData | Mapping[str, Any], *, job_id: str | None = None
    ) -> EnqueueResult:
        """See :meth:`QueueService.add_dispatch_job`."""
        return await _run_async(self.producer, self._flows.dispatch(data, job_id))

    async def add_dispatch_jobs(
        self, items: Iterable[DispatchData | Mapping[str, Any]]
    ) -> list[EnqueueResult]:
        """See :meth:`QueueService.add_dispatch_jobs`."""
        return await _run_async(self.producer, self._flows.dispatch_many(items))

    async def add_retry_job(self, data: RetryData | Mapping[str, Any]) -> EnqueueResult:
        """See :meth:`QueueService.add_retry_job`."""
        return await _run_async(self.producer, self._flows.retry(data))

    async def add_scheduled_publish_job(
        self,
        data: ScheduledPublishData | Mapping[str, Any],
        scheduled_for: datetime | str | None = None,
    ) -> EnqueueResult:
        """See :meth:`QueueService.add_scheduled_publish_job`."""
        return await _run_async(self.producer, self._flows.scheduled_publish(data, scheduled_for))

    async def get_scheduled_publish(self, schedule_id: Id) -> Job | None:
        """See :meth:`QueueService.get_scheduled_publish`."""
        return await _run_async(self.producer, self._flows.get_scheduled_publish(schedule_id))

    async def cancel_scheduled_publish(self, schedule_id: Id) -> bool:
        """See :meth:`QueueService.cancel_scheduled_publish`."""
        return await _run_async(self.producer, self._flows.cancel_scheduled_publish(schedule_id))

    async def reschedule_publish(self, schedule_id: Id, new_time: datetime | str) -> datetime:
        """See :meth:`QueueService.reschedule_publish`."""
        return await _run_async(
            self.producer, self._flows.reschedule_publish(schedule_id, new_time)
        )

    async def add_token_refresh_job(
        self,
        connection_id: Id,
        every: timedelta | float = TOKEN_REFRESH_EVERY,
        *,
        first_at: datetime | None = None,
    ) -> datetime:
        """See :meth:`QueueService.add_token_refresh_job`."""
        return await _run_async(
            self.producer, self._flows.token_refresh(connection_id, every, first_at)
        )

    async def refresh_token_now(self, connection_id: Id) -> EnqueueResult:
        """See :meth:`QueueService.refresh_token_now`."""
        return await _run_async(self.producer, self._flows.refresh_now(connection_id))

    async def remove_token_refresh_job(self, connection_id: Id) -> bool:
        """See :meth:`QueueService.remove_token_refresh_job`."""
        return await _run_async(self.producer, self._flows.remove_token_refresh(connection_id))

    async def token_refresh_schedules(self) -> list[Schedule]:
        """See :meth:`QueueService.token_refresh_schedules`."""
        return await _run_async(self.producer, self._flows.token_refresh_schedules())

    async def get_queue_status(self, name: str) -> QueueStatus:
        """See :meth:`QueueService.get_queue_status`."""
        return await _run_async(self.producer, self._flows.status(name))

    async def get_all_status(self) -> dict[str, QueueStatus]:
        """See :meth:`QueueService.get_all_status`."""
        return await _run_async(self.producer, self._flows.all_status())

    async def declare_limits(self, limits: FlowLimits | None = None) -> None:
        """See :meth:`QueueService.declare_limits`."""
        await declare_limits_async(self.producer, limits)

    async def close(self) -> None:
        """See :meth:`QueueService.close`."""
        if self._owns:
            await self.producer.close()

    async def __aenter__(self) -> AsyncQueueService:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
