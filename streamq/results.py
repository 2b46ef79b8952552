"""The data streamq hands back to its users, in one place: what an enqueue did, the counts
and health of a queue, dead-letter entries, job listings, workers and metrics. Plain frozen
dataclasses, no I/O; :mod:`streamq.protocol` builds them from replies. Each name is also
importable from where it was first defined (``streamq.admin``, ``streamq.web.fleet``);
the top-level ``streamq`` exports the common ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamq.job import Job, JobState

__all__ = [
    "Counters",
    "DeadEntry",
    "EnqueueResult",
    "FlowStatus",
    "Histogram",
    "JobEntry",
    "MinuteCount",
    "QueueInfo",
    "QueueMetrics",
    "QueueStatus",
    "WorkerInfo",
]

# ---------------------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What enqueue did: ``created`` False means a job with that id already existed."""

    job_id: str
    state: JobState
    created: bool
    entry_id: str | None = None
    due_at_ms: int | None = None


# ---------------------------------------------------------------------------- queues


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """Counts of one queue.

    A job is *failed* when it ended in the failed state: retries exhausted, timed out on its
    last attempt, stalled too often, or not runnable (no handler, undecodable); each such
    job also got a dead-letter entry. An attempt that failed and will run again is a
    *retry*, never counted as failed. So: ``failed`` is the retained records of failed jobs
    (the last ``STREAMQ_KEEP_FAILED``), ``failed_total`` every job that ever ended failed,
    ``dead`` the dead-letter entries now (replay and purge remove them), ``retried_total``
    every retry scheduled. ``completed`` / ``completed_total`` likewise."""

    queue: str
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    dead: int
    completed_total: int
    failed_total: int
    retried_total: int
    oldest_waiting_ms: int | None

    def counts(self) -> dict[str, int]:
        """The five counts of the original spec."""
        return {
            "waiting": self.waiting,
            "active": self.active,
            "completed": self.completed,
            "failed": self.failed,
            "delayed": self.delayed,
        }


@dataclass(frozen=True, slots=True)
class FlowStatus:
    """Flow control of one queue at a glance (all 0 for a queue without keyed jobs).

    ``held``: flow jobs waiting (their key's turn, a rate window, a concurrency slot or a
    ``RateLimited`` back-off). ``keys_rate_limited``: keys waiting for a rate window or a
    handler's key-wide back-off. ``keys_at_concurrency``: keys waiting for one of their own
    jobs to finish. ``keys_ready``: keys with a job that may start now. ``running``: flow
    jobs admitted and not finished. ``busiest_keys``: the keys with the most held jobs,
    (key, held) pairs, most first. ``rate_limited_total``: times a key was parked on a
    limit (once per take that found it over) or a job held by ``RateLimited`` (lifetime
    counter ``rate_limited`` of the stats hash). ``mode``: ``strict`` or ``weighted``."""

    held: int = 0
    keys_rate_limited: int = 0
    keys_at_concurrency: int = 0
    keys_ready: int = 0
    running: int = 0
    busiest_keys: tuple[tuple[str, int], ...] = ()
    rate_limited_total: int = 0
    mode: str = "strict"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; ``busiest_keys`` as ``[{"key", "held"}]``."""
        return {
            "held": self.held,
            "keys_rate_limited": self.keys_rate_limited,
            "keys_at_concurrency": self.keys_at_concurrency,
            "keys_ready": self.keys_ready,
            "running": self.running,
            "busiest_keys": [{"key": k, "held": n} for k, n in self.busiest_keys],
            "rate_limited_total": self.rate_limited_total,
            "mode": self.mode,
        }


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue at a glance: the counts of :class:`QueueStatus`, the consumer group's lag,
    the age of the oldest waiting job, whether it is paused and how many workers are live."""

    status: QueueStatus
    lag: int
    oldest_waiting_age_ms: int | None
    paused: bool
    workers: int
    #: Sync handlers of live workers still running past their job's time limit (each
    #: holds a worker slot until it returns).
    stuck_handlers: int = 0
    #: Flow control: held jobs, keys waiting on a limit, busiest keys, counters.
    flow: FlowStatus = field(default_factory=FlowStatus)
    #: A partitioned queue's counts per partition (home first); empty when it has one.
    #: :attr:`status` is their sum.
    partitions: tuple[QueueStatus, ...] = ()
    #: The name of each of :attr:`partitions`, in order: ``"0"`` (home) to ``"N-1"`` for
    #: the current count, ``"p/n"`` for partition ``p`` of an earlier count ``n`` (see
    #: :func:`~streamq.protocol.partitions.partition_labels`).
    partition_labels: tuple[str, ...] = ()
    #: How many partitions new jobs are spread over (1: unpartitioned).
    partition_count: int = 1

    @property
    def queue(self) -> str:
        """The queue name."""
        return self.status.queue

    @property
    def held(self) -> int:
        """Flow jobs waiting on their key's turn or a limit (:attr:`FlowStatus.held`)."""
        return self.flow.held

    def labels(self) -> tuple[str, ...]:
        """:attr:`partition_labels`, or the indexes when they were not given."""
        if len(self.partition_labels) == len(self.partitions):
            return self.partition_labels
        return tuple(str(i) for i in range(len(self.partitions)))

    def as_dict(self) -> dict[str, Any]:
        """A flat, JSON-ready mapping (every :class:`QueueStatus` field plus the others;
        the flow figures under their :meth:`FlowStatus.as_dict` names, ``running`` as
        ``running_flow`` and ``mode`` as ``flow_mode``)."""
        s = self.status
        return {
            "queue": s.queue,
            "waiting": s.waiting,
            "active": s.active,
            "delayed": s.delayed,
            "completed": s.completed,
            "failed": s.failed,
            "dead": s.dead,
            "completed_total": s.completed_total,
            "failed_total": s.failed_total,
            "retried_total": s.retried_total,
            "oldest_waiting_ms": s.oldest_waiting_ms,
            "oldest_waiting_age_ms": self.oldest_waiting_age_ms,
            "lag": self.lag,
            "paused": self.paused,
            "workers": self.workers,
            "stuck_handlers": self.stuck_handlers,
            **_flow_fields(self.flow),
            "partition_count": self.partition_count,
            "partitions": [
                {
                    "partition": label,
                    "waiting": p.waiting,
                    "active": p.active,
                    "delayed": p.delayed,
                    "failed": p.failed,
                    "dead": p.dead,
                }
                for label, p in zip(self.labels(), self.partitions, strict=True)
            ],
        }


def _flow_fields(flow: FlowStatus) -> dict[str, Any]:
    out = flow.as_dict()
    out["running_flow"] = out.pop("running")
    out["flow_mode"] = out.pop("mode")
    return out


@dataclass(frozen=True, slots=True)
class JobEntry:
    """One row of a job listing. ``job`` is the record (None when retention removed it).

    ``entry_id`` is set for waiting and active jobs; ``consumer``, ``idle_ms`` and
    ``deliveries`` for active ones (from the group's PEL); ``score_ms`` is the due time of a
    delayed job or the finish time of a completed/failed one; ``key`` and ``priority`` are
    set for held jobs (from their place in flow control).
    """

    job_id: str
    state: str
    job: Job | None
    entry_id: str | None = None
    consumer: str | None = None
    idle_ms: int | None = None
    deliveries: int | None = None
    score_ms: int | None = None
    key: str | None = None
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker of one queue, from its heartbeat and the consumer group.

    ``state``: ``alive`` (heartbeat within :data:`~streamq.protocol.queues.LIVE_WINDOW_MS`),
    ``stale`` (an old heartbeat: the worker died without unregistering) or ``gone`` (a
    consumer of the group with no heartbeat at all, e.g. a crashed worker still holding
    entries). Fields the
    heartbeat did not provide are None. ``processed`` counts the jobs this worker completed
    since it started, ``failed`` its *failed attempts* (retried or not), not the jobs that
    ended failed (those are :attr:`QueueStatus.failed_total`).
    """

    queue: str
    name: str
    state: str
    host: str | None = None
    pid: int | None = None
    running: int | None = None
    concurrency: int | None = None
    processed: int | None = None
    failed: int | None = None
    started_ms: int | None = None
    seen_age_ms: int | None = None
    idle_ms: int | None = None
    pending: int = 0
    #: Sync handlers of this worker past their time limit (see :attr:`QueueInfo.stuck_handlers`).
    stuck: int | None = None


# ---------------------------------------------------------------------------- DLQ


@dataclass(frozen=True, slots=True)
class DeadEntry:
    """One dead-letter entry."""

    dead_id: str
    job_id: str
    name: str
    data: Any
    attempts: int
    error: str
    traceback: str
    reason: str
    failed_at_ms: int | None


# ---------------------------------------------------------------------------- metrics


@dataclass(frozen=True, slots=True)
class Counters:
    """Lifetime counters of one queue (``sq:{Q}:stats``)."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    reclaimed: int = 0


@dataclass(frozen=True, slots=True)
class Histogram:
    """A histogram in Prometheus shape: ``buckets`` are (upper bound in ms, cumulative count)
    pairs in increasing order, the last one ``math.inf``; ``count`` equals its count."""

    buckets: tuple[tuple[float, int], ...]
    sum_ms: float
    count: int


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """Jobs completed and attempts failed in one minute (epoch minutes, Redis clock)."""

    minute: int
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """Everything ``/metrics`` exposes about one queue."""

    info: QueueInfo
    counters: Counters
    duration: Histogram
    lateness: Histogram
